"""The channels pgnotify itself notifies on (docs/wire-format.md, "Other notifications"), named
once for the listener, the handlers and the settings."""

SYSTEM = "system"  # the listeners' state notices
CACHE_INVALIDATE = "cache_invalidate"  # the tags the cache trigger (or the WAL source) names
CHECKPOINT_PREFIX = "pgnotify_checkpoint_"  # + the LISTEN backend's pid: a NOTIFY listener's markers

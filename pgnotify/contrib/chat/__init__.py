"""pgnotify's live chat: an optional app (INSTALLED_APPS: "pgnotify.contrib.chat").

Messages are rows of `ChatMessage`; they reach every room's websockets through the same durable
path as any watched table (trigger, event log, NOTIFY on channel `chat`, the listener).
"""

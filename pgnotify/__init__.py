"""PostgreSQL LISTEN/NOTIFY change-data notifications for Django.

The sending API is loaded on first use (PEP 562), so that importing the Django-free listener core
(`pgnotify.listener`) does not import Django.
"""

import importlib

__version__ = "0.2.0"

# public name -> module that defines it
_LAZY = {
    "MAX_PAYLOAD_BYTES": "pgnotify.sending",
    "anotify": "pgnotify.sending",
    "notify": "pgnotify.sending",
    "validate_channel": "pgnotify.sending",
    "InvalidChannelError": "pgnotify.exceptions",
    "PayloadTooLarge": "pgnotify.exceptions",
    "PgNotifyError": "pgnotify.exceptions",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pgnotify' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

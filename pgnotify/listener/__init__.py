"""The listener core: LISTEN loop, event log, snapshots, notifications, statistics.

psycopg and the standard library only: no Django, no channels, no web code (a test keeps it so).
Django-side glue (connection settings, handlers, the command) lives outside this package.
"""

from .loop import Listener, ListenerOptions, Sink
from .notification import Notification

__all__ = ["Listener", "ListenerOptions", "Notification", "Sink"]

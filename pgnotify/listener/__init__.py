"""The listener core: LISTEN loop, event log, snapshots, notifications, statistics.

psycopg and the standard library only: no Django, no channels, no web code (a test keeps it so).
Django-side glue (connection settings, handlers, the command) lives outside this package.
"""

from .notification import Notification
from .notify_source import Listener, ListenerOptions, Sink

__all__ = ["Listener", "ListenerOptions", "Notification", "Sink"]

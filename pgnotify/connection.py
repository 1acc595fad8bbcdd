"""Connection parameters for the listener's dedicated connections, taken from Django's settings
(so tests listen on the test database) but outside Django's pool: LISTEN belongs to a session.
They reach the database directly when PGNOTIFY["DIRECT"] names another alias for it."""

from django.db import connections

from . import conf

# Django-specific parameters that mean nothing to a plain psycopg connection.
_DJANGO_ONLY = {"cursor_factory", "context", "prepare_threshold", "pool", "server_side_binding"}


def listener_conninfo(alias: str = "default") -> dict:
    params = connections[conf.direct_alias(alias)].get_connection_params()
    return {key: value for key, value in params.items() if key not in _DJANGO_ONLY}

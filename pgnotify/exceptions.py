"""Every error pgnotify raises. Importing this module imports no Django (the listener core uses it)."""

import psycopg


class PgNotifyError(Exception):
    """pgnotify could not do what was asked."""

    def __init__(self, message: str | None = None):
        super().__init__(message or self.__doc__)


class InvalidChannelError(PgNotifyError, ValueError):
    """Invalid channel name: use 1 to 63 letters, digits, '_', '-', '.' or ':'."""


class PayloadTooLarge(PgNotifyError, ValueError):
    """The payload is too large for NOTIFY."""

    def __init__(self, size: int, limit: int):
        self.size, self.limit = size, limit
        super().__init__(
            f"payload is {size} bytes; NOTIFY accepts at most {limit} bytes "
            "(send a key and keep the data in a table)"
        )


class MissingExtraError(PgNotifyError, ImportError):
    """An optional part of pgnotify is used but the package it needs is not installed."""

    def __init__(self, feature: str, module: str, extra: str):
        self.feature, self.module, self.extra = feature, module, extra
        super().__init__(f'{feature} needs the package {module!r}: pip install "django-pgnotify[{extra}]"')


class HandlerConfigError(PgNotifyError):
    """Invalid entry in PGNOTIFY['HANDLERS']: use a dotted path or {"handler": path, "channels": [...]}."""


class HandlersBehindError(PgNotifyError):
    """A handler has not taken every event yet: the listener's position is held back."""


class HandlerTimeoutError(PgNotifyError, TimeoutError):
    """A handler did not answer within its timeout: the call is given up and retried."""


class MetricsPortError(PgNotifyError):
    """The metrics server could not bind its address: choose another --metrics-port."""


class WalSetupError(PgNotifyError):
    """The database is not set up for the WAL source: see `manage.py check`."""


class CannotListenError(PgNotifyError):
    """The listener's session gets no notification from other sessions: see PGNOTIFY["DIRECT"]."""


class ConnectionDeadError(psycopg.OperationalError):
    """The server did not answer the heartbeat in time: the connection is taken for dead."""


def one_line(error: BaseException) -> str:
    """`Type: first line of the message`, for logs and state notices that must stay on one line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")

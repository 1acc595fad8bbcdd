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

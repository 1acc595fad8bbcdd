"""What happens to a notification after the listener: the dispatcher hands it to each handler
in turn (output, websocket groups, cache invalidation, configured ones)."""

import logging

logger = logging.getLogger(__name__)


class Dispatcher:
    """The listener's sink: fans out to handlers, each with optional handle/notice/flush."""

    def __init__(self, handlers):
        self.handlers = list(handlers)

    async def handle(self, notification) -> None:
        for handler in self.handlers:
            if hasattr(handler, "handle"):
                try:
                    await handler.handle(notification)
                except Exception:
                    logger.exception("handler %r failed on a %s notification", handler, notification.channel)

    async def notice(self, notice: dict) -> None:
        for handler in self.handlers:
            if hasattr(handler, "notice"):
                try:
                    await handler.notice(notice)
                except Exception:
                    logger.exception("handler %r failed on a state notice", handler)

    async def flush(self) -> None:
        for handler in self.handlers:
            if hasattr(handler, "flush"):
                await handler.flush()

"""What every pgnotify websocket consumer shares: it leaves whatever ended it, and refuses with a
close code a browser can read."""

import asyncio

from channels.generic.websocket import AsyncWebsocketConsumer

from . import collector, rights


class GuardedConsumer(AsyncWebsocketConsumer):
    """Whatever ends the consumer (a disconnect, an error in a handler, the server cancelling it),
    `leave()` runs, shielded: a subclass extends it to undo what its `connect()` did, once.

    `refuse(code)` accepts first, then closes with the reason's code (rights.FORBIDDEN, 4404...):
    a refused handshake reaches a browser as 1006, which it cannot tell from a network failure."""

    async def __call__(self, scope, receive, send):
        collector.socket_opened()
        try:
            await super().__call__(scope, receive, send)
        finally:
            collector.socket_closed()
            await asyncio.shield(self.leave())

    async def refuse(self, code: int) -> None:
        await self.accept()
        await self.close(code=code)

    async def disconnect(self, code):
        await self.leave()

    async def leave(self) -> None:
        rights.unwatch(self)

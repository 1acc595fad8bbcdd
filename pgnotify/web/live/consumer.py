"""/ws/live/: one websocket per page, several subscriptions on it (docs/live.md)."""

from channels.layers import get_channel_layer

from ...listener import exactjson
from .. import rights
from ..daphne import Connection, daphne_websocket
from ..guarded import GuardedConsumer
from . import recheck
from .session import LiveSession
from .streams import any_anonymous

MAX_FRAME_CHARS = 64 * 1024  # a client frame longer than this is refused


class LiveConsumer(GuardedConsumer):
    """Client frames: subscribe and unsubscribe; server frames: snapshot, change, resync, error.

    Anonymous users are refused at the handshake (403) unless a stream allows them. A logged-in
    user who loses the right to the socket (logged out, deactivated, password changed) gets it
    closed with 4403 (pgnotify.web.rights); a change of their rights reconciles their views on the
    same tick (pgnotify.web.live.recheck)."""

    # Frames come through the per-process router, not a channel per socket (channels' stubs allow only a str).
    channel_layer_alias = None  # type: ignore[assignment]
    session: LiveSession | None = None
    connection: Connection | None = None  # under daphne: frames written straight to the socket

    async def connect(self):
        user = self.scope.get("user")
        authenticated = user is not None and user.is_authenticated
        if not authenticated and not any_anonymous():
            await self.close()  # 403 at the handshake
            return
        await self.accept()
        protocol = daphne_websocket(self)
        if protocol is not None:
            self.connection = Connection(protocol)
        if authenticated:
            rights.watch(self)
        self.session = LiveSession(user, get_channel_layer(), self.send_frame)

    @staticmethod
    async def refresh_rights(users: dict) -> None:
        """The rights tick (pgnotify.web.rights): re-evaluate the rights of every subscription."""
        await recheck.refresh({consumer.session: user for consumer, user in users.items()
                               if consumer.session is not None})

    async def send_frame(self, frame: dict) -> None:
        text = exactjson.dumps(frame)
        connection = self.connection
        if connection is not None and connection.open():
            # As the dashboards' fan-out does: one send() for the frame, not daphne's reply path,
            # autobahn's framing queue and a writer registered with the event loop per frame.
            connection.write(connection.protocol.factory.prepareMessage(text.encode()))
        else:
            await self.send(text_data=text)

    async def receive(self, text_data=None, bytes_data=None):
        if self.session is None:
            return
        if text_data is None or len(text_data) > MAX_FRAME_CHARS:
            await self.session.error(None, f"frames are JSON text of at most {MAX_FRAME_CHARS} characters")
            return
        try:
            message = exactjson.loads(text_data)
        except ValueError:
            await self.session.error(None, "not JSON")
            return
        await self.session.receive(message)

    async def leave(self) -> None:
        await super().leave()
        session, self.session = self.session, None
        if session is not None:
            await session.close()

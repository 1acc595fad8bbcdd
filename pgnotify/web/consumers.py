"""The staff dashboard's websocket consumer."""

from channels.layers import get_channel_layer

from . import fanout, rights
from .frames import DASHBOARD_GROUP
from .guarded import GuardedConsumer


class DashboardConsumer(GuardedConsumer):
    """Pushes the listener's `changes`, `stats` and `notice` frames to staff browsers.

    Frames arrive already serialised (see pgnotify.web.frames) on one subscription per process
    (see fanout), which writes each to every dashboard of the process: one channel-layer
    delivery per process and frame, not one per browser. So a dashboard has no channel of its
    own: no channel name, no receive loop on the layer per connection.

    A user who is not (or no longer, see pgnotify.web.rights) active staff with a live session
    gets the socket closed with 4403 (pgnotify.web.guarded)."""

    # get_channel_layer(None) is None: channels sets up no channel (its stubs allow only a str).
    channel_layer_alias = None  # type: ignore[assignment]
    joined = False

    async def connect(self):
        user = self.scope.get("user")
        # A custom user model need not have is_staff: its users are refused, not an error.
        if user is None or not user.is_authenticated or not getattr(user, "is_staff", False):
            await self.refuse(rights.FORBIDDEN)
            return
        self.joined = True
        rights.watch(self, staff=True)
        await fanout.join(self, get_channel_layer(), DASHBOARD_GROUP, accept=self.accept)

    async def leave(self) -> None:
        await super().leave()
        if self.joined:
            self.joined = False
            await fanout.leave(self, get_channel_layer(), DASHBOARD_GROUP)

    async def receive(self, text_data=None, bytes_data=None):
        pass  # the dashboard only listens

    async def dashboard_frame(self, message):
        # A frame the fan-out hands over as a message (it writes frames itself as a rule).
        await self.send(text_data=message["text"])

"""The staff dashboard's websocket consumer."""

from channels.generic.websocket import AsyncWebsocketConsumer

from .groups import DASHBOARD_GROUP

FORBIDDEN = 4403


class DashboardConsumer(AsyncWebsocketConsumer):
    """Pushes the listener's `changes`, `stats` and `notice` frames to staff browsers.

    Frames arrive already serialised (see groups.frame), so each client costs one send."""

    joined = False

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=FORBIDDEN)
            return
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code):
        if self.joined:
            await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        pass  # the dashboard only listens

    async def dashboard_frame(self, message):
        await self.send(text_data=message["text"])

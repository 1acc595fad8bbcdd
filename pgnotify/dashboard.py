"""The staff dashboard's websocket consumer."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .groups import DASHBOARD_GROUP

FORBIDDEN = 4403


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """Pushes `changes` and `stats` frames from the listener to staff browsers."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=FORBIDDEN)
            return
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)

    async def dashboard_frame(self, message):
        await self.send(text_data=message["text"])

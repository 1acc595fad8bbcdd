"""The chat's listener handler: each new chat row, arrived as a change event on channel `chat`,
goes to its room's channel-layer group as a `chat.message`."""

import asyncio
import logging

from channels.layers import get_channel_layer

from ...exceptions import one_line
from ...web.layers import dispatch
from .rules import CHAT_CHANNEL, chat_message

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 5.0  # seconds one group_send may take; the message stays in the room's history meanwhile


class ChatRoomSender:
    channels = frozenset({CHAT_CHANNEL})

    def __init__(self, channel_layer=None):
        self._layer = channel_layer

    @property
    def layer(self):
        if self._layer is None:
            self._layer = get_channel_layer()
        return self._layer

    async def handle(self, notification) -> None:
        routed = chat_message(notification.event) if notification.event is not None else None
        if routed is None:
            return
        group, message = routed
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await dispatch.group_send(self.layer, group, message)
        except Exception as error:  # the layer's own errors vary by backend; the listener must go on
            logger.warning("chat message %s not sent to %s: %s", message["id"], group, one_line(error))

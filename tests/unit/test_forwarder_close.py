"""A forwarder's close() ends even when its delivering task lost a cancel: on Python 3.11,
asyncio.wait_for (a disconnect's, between two attempts) swallows a cancel that comes as what it
waits for completes, and the task went on retrying while close() waited for it."""

import asyncio
import json

from pgnotify.handlers.forwarding.base import Forwarder
from pgnotify.listener.notification import Notification


class LosesOneCancel(Forwarder):
    """A destination that is away, and a disconnect that loses the first cancel it gets."""

    def __init__(self, **options):
        super().__init__(**options)
        self.attempts = 0
        self.disconnecting = asyncio.Event()
        self.lost_cancels = 0

    async def send(self, batch) -> None:
        self.attempts += 1
        raise ConnectionError("the destination is away")

    async def disconnect(self) -> None:
        if self.lost_cancels:
            return
        self.disconnecting.set()
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            self.lost_cancels += 1  # what wait_for did: the cancel is gone, the task goes on


async def test_close_ends_even_when_the_task_lost_a_cancel():
    forwarder = LosesOneCancel(timeout=1.0)
    event = {"id": 1, "txid": 1, "table": "t", "op": "INSERT"}
    await forwarder.handle(Notification("orders", json.dumps(event)))
    await asyncio.wait_for(forwarder.disconnecting.wait(), 5)  # the first attempt failed
    await asyncio.wait_for(forwarder.close(), 5)
    assert forwarder.lost_cancels == 1
    assert forwarder.waiting == 1  # what waits stays, for a later start

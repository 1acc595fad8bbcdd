"""Handlers of the tests: named in PGNOTIFY["HANDLERS"] by their dotted path, or handed to a
Dispatcher."""

import asyncio
import threading

from tests.helpers.waiting import eventually_async

RECEIVED: dict[str, list] = {"sync": [], "async": []}
SYNC_THREADS: list[int] = []


def record_sync(notification):
    SYNC_THREADS.append(threading.get_ident())
    RECEIVED["sync"].append(notification.payload)


async def record_async(notification):
    RECEIVED["async"].append(notification.payload)


class Flaky:
    """Fails while `failing` is set; records what it took, in order."""

    def __init__(self, failing: bool = False):
        self.failing = failing
        self.taken: list[str] = []
        self.attempts = 0
        self.changed = asyncio.Event()

    async def handle(self, notification):
        self.attempts += 1
        self.changed.set()
        if self.failing:
            raise ConnectionError("downstream unreachable\nsecond line")
        self.taken.append(notification.payload)

    async def wait_until(self, predicate, within: float = 10.0):
        return await eventually_async(predicate, within, wake=self.changed)

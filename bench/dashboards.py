"""Dashboard websocket clients: many connections with one staff session, each counting the change
events it receives (de-duplicated by id) and timing them from the event's `ts` to the frame's
arrival (the database and the clients share this machine's clock)."""

import asyncio
import json
import time
from datetime import datetime

import websockets

CONNECTS_AT_ONCE = 25  # handshakes in flight: daphne checks each session in the database


class Tally:
    """What all clients of one measurement saw of the rows of `table` with a pk above `after_pk`."""

    def __init__(self, table: str):
        self.table = table
        self.after_pk: int | None = None  # None while warming up: nothing is counted yet
        self.latencies: list[float] = []
        self._epochs: dict[str, float] = {}

    def epoch(self, ts: str) -> float:
        # Every client receives the same events: each timestamp is parsed once.
        value = self._epochs.get(ts)
        if value is None:
            value = self._epochs[ts] = datetime.fromisoformat(ts).timestamp()
        return value


class Dashboard:
    def __init__(self, tally: Tally):
        self.tally = tally
        self.seen: set[int] = set()
        self.warm = asyncio.Event()  # a first `changes` frame arrived

    def on_frame(self, text: str, received: float) -> None:
        frame = json.loads(text)
        if frame.get("type") != "changes":
            return
        self.warm.set()
        tally = self.tally
        if tally.after_pk is None:
            return
        for event in frame["events"]:
            if event.get("table") != tally.table or event.get("op") != "INSERT" or event["pk"] <= tally.after_pk:
                continue
            if event["id"] not in self.seen:
                self.seen.add(event["id"])
                tally.latencies.append(received - tally.epoch(event["ts"]))


class DashboardPool:
    """`count` dashboards connected to `url`; `async with` connects them all and closes them."""

    def __init__(self, url: str, cookie: str, origin: str, count: int, tally: Tally):
        self.url, self.cookie, self.origin = url, cookie, origin
        self.dashboards = [Dashboard(tally) for _ in range(count)]
        self._tasks: list[asyncio.Task] = []
        self._gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

    async def __aenter__(self) -> "DashboardPool":
        opened = [asyncio.get_running_loop().create_future() for _ in self.dashboards]
        self._tasks = [asyncio.create_task(self._run(d, f)) for d, f in zip(self.dashboards, opened, strict=True)]
        await asyncio.wait_for(asyncio.gather(*opened), 120)
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, dashboard: Dashboard, opened: asyncio.Future) -> None:
        try:
            async with self._gate:
                ws = await websockets.connect(self.url, origin=self.origin, compression=None, ping_interval=None,
                                              additional_headers={"Cookie": self.cookie}, max_size=2**24,
                                              open_timeout=60)
        except Exception as error:
            opened.set_exception(error)
            return
        opened.set_result(None)
        async with ws:
            async for message in ws:
                dashboard.on_frame(message, time.time())

    async def wait_warm(self, seconds: float) -> None:
        await asyncio.wait_for(asyncio.gather(*(d.warm.wait() for d in self.dashboards)), seconds)

    async def wait_received(self, expected: int, seconds: float) -> None:
        """Until every dashboard has `expected` events, or `seconds` (what is missing then is lost)."""
        deadline = time.monotonic() + seconds
        # Polled, bounded: an event per client per frame would cost more than the clients' own work.
        while time.monotonic() < deadline and any(len(d.seen) < expected for d in self.dashboards):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    def delivered(self) -> int:
        return sum(len(d.seen) for d in self.dashboards)

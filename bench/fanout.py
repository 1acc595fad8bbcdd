"""Fan-out over 2 daphne processes (`fanout_2_procs`): staff dashboards spread evenly over the two
daphne processes of one stack (Redis layer, one listener), rows written at a fixed rate.

The dashboards are bench.dashboards clients in CLIENT_PROCESSES processes, one per daphne port
(as in bench.live). Every dashboard's frames are read and its events counted (the delivered
ratio), but only every TIMED_EVERY-th dashboard is timed, reading as its frames arrive; the others
read what waits on their socket every BULK_READ_INTERVAL. Read as they arrive, 2,000 clients' reads
(a recv() and a parse each, 10 to 15 µs) took more than one of the 2 cores the servers under
measurement run on (the clients of a real deployment are elsewhere); `client_cores` (their CPU
while measuring) shows what they take. Each process keeps its arrivals and reports its latencies
as counts per 10 µs, the resolution of the figures: the arrivals themselves stay where they were
received.

Subcommand (run by the bench itself): `client`.
"""

import asyncio
import contextlib
import gc
import json
import sys
import time
from array import array
from collections import Counter

from bench.dashboards import Dashboard, DashboardPool, Tally, WebsocketClient
from bench.e2e import PGNOTIFY, max_pk, run_writer, warm_up
from bench.live import DRAIN_TIMEOUT, ClientProcess, answer, cpu_seconds, raise_open_files, settle
from bench.stack import WebStack

SERVERS = 2
CLIENT_PROCESSES = 2  # one per daphne process
RATE = 100
FULL = (2000, 60)  # dashboards, seconds
QUICK = (200, 5)
TICKS_PER_S = 100_000  # 10 µs: the figures are in ms with 2 decimals
TIMED_EVERY = 10
BULK_READ_INTERVAL = 0.25  # seconds


class BulkReader(WebsocketClient):
    """A dashboard that reads its socket only when let (one recv() for whatever waits), untimed."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.upgraded:
            self.transport.pause_reading()


async def read_in_bulk(clients: list[WebsocketClient], slices: int = 10) -> None:
    """Each client let read once per BULK_READ_INTERVAL, a tenth of them at a time: all at once,
    their reads would hold up the timed dashboards' for up to 20 ms."""
    while True:
        for start in range(slices):
            await asyncio.sleep(BULK_READ_INTERVAL / slices)
            for client in clients[start::slices]:
                if client.transport is not None and not client.transport.is_closing():
                    client.transport.resume_reading()


# -- `client`: this process's dashboards; reports what they received

class Arrivals:
    """(pk, time received) of every event, in two arrays: as tuples, 6 million (a full-size client
    process's) would take 0.7 GB and their allocation the clients' time."""

    def __init__(self):
        self.pks, self.times = array("q"), array("d")

    def append(self, arrival: tuple[int, float]) -> None:
        self.pks.append(arrival[0])
        self.times.append(arrival[1])


def compact_tally(table: str) -> Tally:
    tally = Tally(table)
    tally.arrivals, tally.latencies = Arrivals(), array("d")  # Dashboard.on_frame appends to them alike
    return tally


def ticks(seconds: float) -> int:
    return round(seconds * TICKS_PER_S)


def latency_counts(tally: Tally, commits: list[list]) -> dict:
    """Latencies from each row's commit and from its event's `ts`, as counts per tick."""
    committed = dict(commits)
    arrivals = tally.arrivals
    from_commit = Counter(ticks(received - committed[pk])
                          for pk, received in zip(arrivals.pks, arrivals.times, strict=True) if pk in committed)
    return {"from_commit": from_commit, "from_trigger": Counter(map(ticks, tally.latencies))}


async def all_warm(dashboards: list[Dashboard], seconds: float) -> bool:
    try:
        await asyncio.wait_for(asyncio.gather(*(d.warm.wait() for d in dashboards)), seconds)
    except TimeoutError:
        return False
    return True


def measuring(tallies: list[Tally], after_pk: int) -> None:
    """Counts the rows above `after_pk` from now on; the collector's pauses of this process (2,000
    sockets' objects) are not the stack's latency."""
    for tally in tallies:
        tally.after_pk = after_pk
    gc.collect()
    gc.freeze()
    gc.disable()


async def client_main() -> None:
    """stdin: {"sockets": [[url, origin, cookie], ...]} (one dashboard each) on the first line, then
    commands: `warm`, `start AFTER_PK`, `count`, `stop COMMITS` (JSON). stdout: a JSON line per answer."""
    raise_open_files()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    wanted = Counter(tuple(socket) for socket in json.loads(await reader.readline())["sockets"])
    tally, untimed, dashboards, bulk = compact_tally(PGNOTIFY.table), compact_tally(PGNOTIFY.table), [], []
    async with contextlib.AsyncExitStack() as pools:
        for (url, origin, cookie), count in wanted.items():
            timed = -(-count // TIMED_EVERY)
            dashboards += (await pools.enter_async_context(DashboardPool(url, cookie, origin, timed, tally))).dashboards
            pool = await pools.enter_async_context(
                DashboardPool(url, cookie, origin, count - timed, untimed, BulkReader))
            dashboards += pool.dashboards
            bulk += pool.clients
        bulk_task = asyncio.create_task(read_in_bulk(bulk))
        answer({"ready": len(dashboards)})
        while line := (await reader.readline()).decode().strip():
            command, _, argument = line.partition(" ")
            if command == "warm":
                answer({"warm": await all_warm(dashboards, 1.0)})
            elif command == "start":
                measuring([tally, untimed], int(argument))
                answer({"started": True})
            elif command == "count":
                answer({"received": sum(d.received for d in dashboards)})
            elif command == "stop":
                commits = json.loads(argument)
                answer({"delivered": sum(d.received for d in dashboards), **latency_counts(tally, commits)})
                break
        bulk_task.cancel()
    await asyncio.sleep(1.0)  # the close frames go out before the process ends


# -- the measurement

def sockets_for(stack: WebStack, clients: int, client_processes: int) -> list[list[list]]:
    """Half the dashboards on each daphne port, in `client_processes` processes (2: one per port)."""
    share = clients // len(stack.ports)
    sockets = [[f"ws://127.0.0.1:{port}/ws/dashboard/", f"http://127.0.0.1:{port}", stack.cookie]
               for port in stack.ports for _ in range(share)]
    size = -(-len(sockets) // client_processes)
    return [sockets[start:start + size] for start in range(0, len(sockets), size)]


class ClientProcesses:
    """The client processes, warmed up as one DashboardPool is (bench.e2e.warm_up)."""

    def __init__(self, processes: list[ClientProcess]):
        self.processes = processes

    async def ask(self, command: str) -> list[dict]:
        return await asyncio.gather(*(process.ask(command) for process in self.processes))

    async def wait_warm(self, seconds: float) -> None:
        if not all(reply["warm"] for reply in await self.ask("warm")):
            raise TimeoutError("a dashboard has seen no `changes` frame yet")

    async def wait_received(self, expected: int) -> None:
        """Until the dashboards have `expected` events in all, or DRAIN_TIMEOUT (what is missing then is lost)."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        # Polled: the counts are in the other processes.
        while time.monotonic() < deadline and sum(r["received"] for r in await self.ask("count")) < expected:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def measure(stack: WebStack, database_url: str, clients: int, seconds: float, client_processes: int) -> dict:
    daphnes = stack.processes[:len(stack.ports)]
    processes = [ClientProcess(sockets, "bench.fanout") for sockets in sockets_for(stack, clients, client_processes)]
    group = ClientProcesses(processes)
    try:
        ready = sum(reply["ready"] for reply in await asyncio.gather(*(p.start() for p in processes)))
        await settle(daphnes, busy=0.5)  # steady state, not the connection storm
        await warm_up(group, PGNOTIFY, database_url)
        await group.ask(f"start {max_pk(database_url, PGNOTIFY.table)}")
        started, cpu_before = time.monotonic(), cpu_seconds(p.process for p in processes)
        daphne_before = cpu_seconds(daphnes)
        written = await run_writer(["-m", PGNOTIFY.writer, database_url, str(RATE), str(seconds)])
        await group.wait_received(written["written"] * ready)
        elapsed = time.monotonic() - started
        client_cores = (cpu_seconds(p.process for p in processes) - cpu_before) / elapsed
        daphne_cores = (cpu_seconds(daphnes) - daphne_before) / elapsed
        reports = await group.ask(f"stop {json.dumps(written['commits'])}")
    finally:
        await asyncio.gather(*(process.end() for process in processes))
    return {**summary(reports, written, ready, client_processes, client_cores), "daphne_cores": round(daphne_cores, 2)}


def merged(reports: list[dict], key: str) -> list[tuple[int, int]]:
    counts: Counter = Counter()
    for report in reports:
        counts.update({int(tick): count for tick, count in report[key].items()})
    return sorted(counts.items())


def percentile_ms(counts: list[tuple[int, int]], fraction: float) -> float | None:
    """bench.e2e.percentile of the latencies counted per tick, in ms."""
    total = sum(count for _, count in counts)
    index, seen = min(total - 1, int(fraction * total)), 0
    for tick, count in counts:
        seen += count
        if seen > index:
            return round(tick * 1000 / TICKS_PER_S, 2)
    return None


def summary(reports: list[dict], written: dict, clients: int, client_processes: int, client_cores: float) -> dict:
    from_commit, from_trigger = merged(reports, "from_commit"), merged(reports, "from_trigger")
    expected = written["written"] * clients
    return {
        "rate": RATE, "achieved_rate": round(written["written"] / written["seconds"], 1), "clients": clients,
        "servers": SERVERS, "client_processes": client_processes, "written": written["written"],
        "delivered_ratio": round(sum(r["delivered"] for r in reports) / expected, 5) if expected else None,
        "p50_ms": percentile_ms(from_commit, 0.50), "p90_ms": percentile_ms(from_commit, 0.90),
        "p99_ms": percentile_ms(from_commit, 0.99), "max_ms": percentile_ms(from_commit, 1.0),
        "p50_from_trigger_ms": percentile_ms(from_trigger, 0.50),
        "p99_from_trigger_ms": percentile_ms(from_trigger, 0.99),
        "client_cores": round(client_cores, 2),  # the client processes' CPU while measuring, all together
    }


def fanout_2_procs(database_url: str, quick: bool, client_processes: int = CLIENT_PROCESSES,
                   size: tuple[int, float] | None = None) -> dict:
    """The `fanout_2_procs_*` figures, on a stack of their own (Redis must be reachable); `size`:
    (dashboards, seconds) instead of the full or quick run's."""
    clients, seconds = size or (QUICK if quick else FULL)
    raise_open_files()  # 1,000 sockets per daphne process, inherited
    with WebStack(database_url, "redis", servers=SERVERS) as stack:
        point = asyncio.run(measure(stack, database_url, clients, seconds, client_processes))
    return {"fanout_2_procs_delivered_ratio": point["delivered_ratio"], "fanout_2_procs_p50_ms": point["p50_ms"],
            "fanout_2_procs_p99_ms": point["p99_ms"], "fanout_2_procs_clients": point["clients"],
            "fanout_2_procs_servers": SERVERS, "fanout_2_procs_rate": RATE, "fanout_2_procs_seconds": seconds,
            "fanout_2_procs_daphne_cores": point["daphne_cores"], "fanout_2_procs_client_cores": point["client_cores"],
            "fanout_2_procs_point": point}


def main() -> None:
    if sys.argv[1:] != ["client"]:
        raise SystemExit("usage: python -m bench.fanout client")
    asyncio.run(client_main())


if __name__ == "__main__":
    main()

"""Fault tests of the delivery guarantees (docs/guarantees.md): 4 concurrent writers while the listener is
SIGKILLed, has its backends terminated, loses its database to a restart, or its connection
goes silent. Every committed row's event must be handed on; none twice within one process."""

import asyncio
import time
import uuid
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
from django.db import connection

from pgnotify.connection import listener_conninfo
from pgnotify.listener import ListenerOptions
from pgnotify.sources import make_listener
from tests.helpers.faults import (
    ChangeCuttingProxy,
    PrivateServer,
    RecordingSink,
    SilenceableProxy,
    Writers,
    assert_stable_ids,
    catch_up_block,
    duplicates,
    order_events,
    out_of_order,
    parse_output,
    rate,
    record_figures,
    sort_key,
)
from tests.helpers.sources import source_env
from tests.helpers.support import ManagedProcess, database_url_for_tests, process_env, start_listener

pytestmark = pytest.mark.slow
WRITERS, ROWS = 4, 1000


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def committed(url: str, since_event: int, since_row: int) -> tuple[dict[int, int] | None, set[int]]:
    """Events (id -> pk) of shop_order committed after the marks (None with the WAL source: no
    event log), and the rows themselves."""
    with psycopg.connect(url, autocommit=True) as conn:
        events = dict(conn.execute(
            "SELECT id, (payload->>'pk')::bigint FROM pgnotify_event WHERE channel = 'orders' AND id > %s",
            [since_event]).fetchall())
        rows = {row for (row,) in conn.execute("SELECT id FROM shop_order WHERE id > %s", [since_row])}
    return events or None, rows


def marks(url: str) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT (SELECT coalesce(max(id), 0) FROM pgnotify_event), "
                            "(SELECT coalesce(max(id), 0) FROM shop_order)").fetchone()


def delivered(runs: list[ManagedProcess]) -> list[list[dict]]:
    return [order_events(parse_output(run.stdout_lines)[0]) for run in runs]


def wait_all_delivered(runs, url: str, since: tuple[int, int], timeout: float = 30.0) -> None:
    """Until every committed row's event was handed on (by id from the event log; by primary key
    with the WAL source)."""
    events, rows = committed(url, *since)
    last = runs[-1]

    def complete(_):
        seen = delivered(runs)
        if events is None:
            return rows <= {event["pk"] for run in seen for event in run}
        return set(events) <= {event["id"] for run in seen for event in run}

    last.wait_for(complete, timeout=timeout)


def check_and_measure(runs, killed: int, url: str, since: tuple[int, int], rows_written: int) -> dict:
    events, rows = committed(url, *since)
    assert len(rows) == rows_written, "the writers' count and the table disagree"
    per_run = delivered(runs)
    all_events = [event for events in per_run for event in events]
    ids = Counter(event["id"] for event in all_events)
    # At least once: the full sets of ids and of primary keys.
    wal = events is None
    if wal:  # the WAL source: one id per row, the same in every run that hands it on
        events = {event["id"]: event["pk"] for event in all_events}
        assert len(events) == len(rows), "a row's event came with two ids, or two rows' with one"
    assert set(ids) == set(events), f"lost: {sorted(set(events) - set(ids))[:20]}"
    pks = {event["pk"] for event in all_events}
    assert pks == rows, f"lost rows: {sorted(rows - pks)[:20]}"
    assert all(events[event["id"]] == event["pk"] for event in all_events)
    # Never twice within one process, reconnects included; a repeat with its first id.
    assert_stable_ids(per_run)
    # A SIGKILL may cut a line in half; nothing else may be unreadable.
    assert sum(parse_output(run.stdout_lines)[1] for run in runs) <= killed
    # Each restart begins with a catch-up, announced, in (txid, id) order, before anything live.
    catch_ups = [catch_up_block(events, run.stderr_lines) for run, events in zip(runs, per_run, strict=True)]
    for block in catch_ups:
        assert all(event["replayed"] for event in block)
        assert block == sorted(block, key=sort_key)
    replayed = [[e for e in events if e["replayed"]] for events in per_run]
    rates = [r for block in catch_ups if (r := rate(block))]
    return {
        "rows_written": rows_written,
        "events_committed": len(events),
        "delivered": len(all_events),
        "delivered_unique": len(ids),
        "duplicates_across_runs": duplicates(ids),
        "replayed": sum(map(len, replayed)),
        "catch_up_sizes": [len(block) for block in catch_ups],
        "replayed_adjacent_out_of_txid_order": sum(out_of_order(r) for r in replayed),
        "replay_rate_events_per_s": max(rates) if rates else None,
        "listener_runs": len(runs),
    }


def test_kill_and_terminate_lose_nothing(event_source):
    name = unique_name("durable")
    url = database_url_for_tests()
    env = source_env(event_source)
    runs = [start_listener("--name", name, env=env)]
    since = marks(url)
    writers = Writers(url, WRITERS, ROWS).start()
    started = time.monotonic()
    try:
        for kill in range(3):
            runs[-1].wait_for(lambda lines: len(lines) >= 300, timeout=20)
            if kill == 2:
                # Once: the server ends the listener's backends; the process must reconnect by itself.
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND application_name LIKE 'pgnotify%%' "
                        "AND position(%s in application_name) > 0", [name])
                    assert cursor.fetchone()[0] >= 1
                runs[-1].wait_for(lambda lines: sum(": live" in line for line in lines) >= 2,
                                  timeout=15, stream="stderr")
                assert any(": lost" in line for line in runs[-1].stderr_lines)
                seen = len(runs[-1].stdout_lines)
                runs[-1].wait_for(lambda lines, seen=seen: len(lines) >= seen + 200, timeout=20)
            runs[-1].kill()
            runs.append(start_listener("--name", name, env=env))
        writers.wait_rows(ROWS, timeout=60)
        rows_written = writers.finish()
        written_in = time.monotonic() - started
        wait_all_delivered(runs, url, since)
    finally:
        writers.finish()
        for run in runs:
            run.stop()
    figures = check_and_measure(runs, 3, url, since, rows_written)
    figures["writing_s"] = round(written_in, 1)
    figures["reconnects_after_terminate"] = 1
    record_figures(f"kill_and_terminate_{event_source}", figures)
    assert figures["duplicates_across_runs"] <= figures["replayed"]


def migrate(url: str, source: str = "notify") -> None:
    process = ManagedProcess("migrate", "--noinput", env=process_env(DATABASE_URL=url, PGNOTIFY_SOURCE=source))
    assert process.proc.wait(120) == 0, "\n".join(process.stderr_lines[-20:])
    process.stop()


@pytest.mark.parametrize("source", ["notify", "wal"])
def test_database_restart_loses_nothing(tmp_path, source):
    server = PrivateServer(tmp_path / "pgdata")
    try:
        url = server.create_database("pgnotify_restart")
        migrate(url, source)
        env = process_env(DATABASE_URL=url, PGNOTIFY_SOURCE=source)
        name = unique_name("restart")
        listener = start_listener("--name", name, env=env)
        since = marks(url)
        writers = Writers(url, WRITERS, ROWS).start()
        try:
            listener.wait_for(lambda lines: len(lines) >= 500, timeout=20)
            server.stop()
            listener.wait_for_line(": lost", timeout=15, stream="stderr")
            server.start()
            listener.wait_for(lambda lines: sum(": live" in line for line in lines) >= 2, timeout=20, stream="stderr")
            writers.wait_rows(ROWS, timeout=60)
            rows_written = writers.finish()
            wait_all_delivered([listener], url, since)
        finally:
            writers.finish()
            listener.stop()
        figures = check_and_measure([listener], 0, url, since, rows_written)
        figures["writer_errors_during_restart"] = writers.errors
        assert figures["duplicates_across_runs"] == 0, "one process handed an event on twice"
        record_figures(f"database_restart_{source}", figures)
    finally:
        server.stop()


async def test_silent_connection_is_detected_within_10_s(event_source):
    """The LISTEN connection's peer (the replication connection's, with the WAL source) vanishes
    without a word (the proxy goes silent): the listener notices within 10 s, ends its stale
    backend (it still holds the lock, or the slot) and goes on."""
    conninfo = listener_conninfo()
    name = unique_name("silent")
    with SilenceableProxy(conninfo["host"] or "127.0.0.1", conninfo.get("port") or 5432) as proxy:
        via_proxy = {**conninfo, "host": "127.0.0.1", "port": proxy.port, "sslmode": "disable"}
        sink, stop = RecordingSink(), asyncio.Event()
        listener = make_listener(via_proxy, ListenerOptions(channels=["orders"], name=name,
                                                            retention=timedelta(hours=1)), sink)
        role = "listen" if event_source == "notify" else "wal"
        task = asyncio.create_task(listener.run(stop))
        async with await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as writer:
            try:
                await sink.wait_for(lambda: "live" in sink.states())
                await writer.execute("INSERT INTO shop_order DEFAULT VALUES")
                await sink.wait_for(lambda: len(sink.events()) == 1)
                assert proxy.silence(f"pgnotify {role}{listener._token}{name}") == 1
                silenced_at = time.monotonic()
                await writer.execute("INSERT INTO shop_order DEFAULT VALUES")  # while the connection is dead
                await sink.wait_for(lambda: "lost" in sink.states(), within=12)
                detected_s = time.monotonic() - silenced_at
                await sink.wait_for(lambda: sink.states().count("live") == 2, within=10)
                await writer.execute("INSERT INTO shop_order DEFAULT VALUES")
                await sink.wait_for(lambda: len(sink.events()) == 3, within=5)
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)
    assert len(sink.events()) == 3
    assert_stable_ids([[n.event for n in sink.events()]])
    assert detected_s < 10
    assert listener.stats.reconnects == 1
    record_figures(f"silent_connection_{event_source}", {"detected_s": round(detected_s, 2),
                                         "states": " > ".join(sink.states())})


async def _write_rows(writer, statement: bool) -> None:
    async with writer.transaction():
        if statement:
            await writer.execute("INSERT INTO shop_order DEFAULT VALUES")
            await writer.execute("INSERT INTO shop_order DEFAULT VALUES")
        else:  # one COPY: its rows share one WAL record, hence one LSN
            async with writer.cursor().copy("COPY shop_order (quantity) FROM STDIN") as copy:
                for quantity in (1, 2):
                    await copy.write_row([quantity])


@pytest.mark.parametrize("statement", [True, False], ids=["two_inserts", "copy"])
async def test_a_change_sent_again_after_a_cut_is_handed_on_once_with_its_id(event_source, statement):
    """The connection that brings the changes (LISTEN's; the replication stream's) is cut right
    after the first change of a two-row transaction reached the listener and was handed on, before
    the rest (with the WAL source: before the transaction's Commit), so the server sends it again
    after the reconnect. Each change is handed on once, with the id a listener not cut gives it."""
    conninfo = listener_conninfo()
    options = {"channels": ["orders"], "retention": timedelta(hours=1)}
    with ChangeCuttingProxy(conninfo["host"] or "127.0.0.1", conninfo.get("port") or 5432) as proxy:
        via_proxy = {**conninfo, "host": "127.0.0.1", "port": proxy.port, "sslmode": "disable"}
        cut_name, reference_name = unique_name("cut"), unique_name("reference")
        cut_sink, reference_sink, stop = RecordingSink(), RecordingSink(), asyncio.Event()
        cut = make_listener(via_proxy, ListenerOptions(name=cut_name, **options), cut_sink)
        reference = make_listener(conninfo, ListenerOptions(name=reference_name, **options), reference_sink)
        tasks = [asyncio.create_task(listener.run(stop)) for listener in (cut, reference)]
        marker = f"pgnotify {'listen' if event_source == 'notify' else 'wal'}{cut._token}{cut_name}"
        async with await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as writer:
            try:
                for sink in (cut_sink, reference_sink):
                    await sink.wait_for(lambda sink=sink: "live" in sink.states(), within=20)
                proxy.hold_after_change(marker)
                await _write_rows(writer, statement)
                await cut_sink.wait_for(lambda: cut_sink.events(), within=10)
                assert proxy.held.is_set()
                proxy.cut(marker)
                await cut_sink.wait_for(lambda: cut_sink.states().count("live") == 2, within=15)
                await writer.execute("INSERT INTO shop_order DEFAULT VALUES")  # after the reconnect
                for sink in (cut_sink, reference_sink):
                    await sink.wait_for(lambda sink=sink: len(sink.events()) >= 3, within=10)
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 10)

    def seen(sink):
        return [(n.event["id"], n.event["op"], n.event["pk"]) for n in sink.events()]

    assert "lost" in cut_sink.states() and cut.stats.reconnects == 1
    assert seen(cut_sink) == seen(reference_sink)
    assert_stable_ids([[n.event for n in sink.events()] for sink in (cut_sink, reference_sink)])
    assert len(seen(reference_sink)) == len({id for id, *_ in seen(reference_sink)}) == 3

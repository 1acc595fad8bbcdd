"""Hot standby (docs/guarantees.md): two listeners with one name; the active one is SIGKILLed while a row
is written every 50 ms; the standby, silent until then, hands on the first new event within
2 s and nothing is lost."""

import re
import socket
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime

import psycopg
import pytest

from tests.helpers.faults import order_events, parse_output, record_figures
from tests.helpers.sources import source_env
from tests.helpers.support import ManagedProcess, database_url_for_tests, start_listener

pytestmark = pytest.mark.slow


def write_every(url: str, interval: float, stop: threading.Event, pks: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(interval):
            pks.append(conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id").fetchone()[0])


def test_standby_takes_over_within_2_s(event_source):
    name = f"takeover-{uuid.uuid4().hex[:8]}"
    url = database_url_for_tests()
    env = source_env(event_source)
    active = start_listener("--name", name, env=env)
    standby = ManagedProcess("listen_notify", "--json", "--stats-interval", "0", "--name", name, env=env)
    pks: list[int] = []
    stop = threading.Event()
    writer = threading.Thread(target=write_every, args=(url, 0.05, stop, pks), daemon=True)
    try:
        standby.wait_for_line(": standby", timeout=20, stream="stderr")
        writer.start()
        active.wait_for(lambda lines: len(order_events(parse_output(lines)[0])) >= 20, timeout=10)
        assert standby.stdout_lines == [], "a standby printed while waiting"
        killed_at = datetime.now(UTC)
        active.kill()
        standby.wait_for_line(": live", timeout=5, stream="stderr")
        # The first event committed after the kill, as the standby hands it on.
        first_new = standby.wait_for(lambda lines: next(
            (e for e in order_events(parse_output(lines)[0]) if datetime.fromisoformat(e["ts"]) > killed_at), None),
            timeout=5)
        standby.wait_for(lambda lines: len(order_events(parse_output(lines)[0])) >= 20, timeout=10)
    finally:
        stop.set()
        writer.join(5)
    try:
        # Nothing lost: every row written, handed on by one or the other.
        standby.wait_for(lambda _: {e["pk"] for run in (active, standby)
                                    for e in order_events(parse_output(run.stdout_lines)[0])} >= set(pks), timeout=10)
    finally:
        standby.stop()
        active.stop()
    before, after = (order_events(parse_output(run.stdout_lines)[0]) for run in (active, standby))
    assert not [i for i, n in Counter(e["id"] for e in after).items() if n > 1]
    takeover_ms = (datetime.fromisoformat(first_new["received"]) - killed_at).total_seconds() * 1000
    first_line_ms = (datetime.fromisoformat(parse_output(standby.stdout_lines)[0][0]["received"])
                     - killed_at).total_seconds() * 1000
    record_figures(f"takeover_{event_source}", {
        "rows_written": len(pks),
        "delivered": len(before) + len(after),
        "duplicates": len(before) + len(after) - len({e["id"] for e in before + after}),
        "takeover_ms": round(takeover_ms, 1),
        "standby_first_line_ms": round(first_line_ms, 1),
        "replayed_by_standby": sum(e["replayed"] for e in after),
    })
    assert takeover_ms < 2000, f"the standby took {takeover_ms:.0f} ms"


@pytest.mark.django_db(transaction=True)
def test_a_standby_says_who_holds_its_name_and_how_to_run_another():
    name = f"holder-{uuid.uuid4().hex[:8]}"
    active = start_listener("--name", name)
    standby = ManagedProcess("listen_notify", "--json", "--stats-interval", "0", "--name", name)
    try:
        line = standby.wait_for_line(": standby", timeout=20, stream="stderr")
    finally:
        standby.stop()
        active.stop()
    held_by = re.search(r"held_by=pid (\d+) on (\S+)(?: \([^)]*\))?, connected since "
                        r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)", line)
    assert held_by, line
    assert int(held_by.group(1)) == active.proc.pid
    assert held_by.group(2) == socket.gethostname()[:20]
    since = datetime.strptime(held_by.group(3), "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - since).total_seconds()) < 120
    assert "another name (listen_notify --name OTHER)" in line

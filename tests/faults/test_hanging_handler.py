"""A handler that hangs (a stuck HTTP call, a lock) or keeps failing, in a `listen_notify`
process: the other handlers and the output go on, the position stays where every handler had
taken everything, and SIGTERM or SIGINT stops the process within 10 s whatever the handler does."""

import re
import signal
import subprocess
import time
import uuid

import psycopg
import pytest

from tests.helpers.faults import order_events, parse_output, record_figures, settings_with_handlers
from tests.helpers.support import ManagedProcess, database_url_for_tests, process_env, start_listener

pytestmark = pytest.mark.slow

STOP_WITHIN_S = 10.0
WAITING = 120_000  # more than a handler may keep waiting (MAX_BACKLOG) before the listener is held back


def handed_on(summary_line: str) -> int:
    """How many notifications on `orders` a --quiet summary line counts."""
    match = re.search(r"notifications orders (\d+)", summary_line)
    return int(match.group(1)) if match else 0


def insert_orders(count: int) -> list[int]:
    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        return [conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id").fetchone()[0] for _ in range(count)]


def saved_position_sees(name: str, event_id: int) -> bool:
    """Whether the recorded position of `name` covers the transaction of event `event_id`."""
    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        return conn.execute(
            "SELECT pg_visible_in_snapshot(e.txid, l.snapshot::pg_snapshot) FROM pgnotify_event e, pgnotify_listener l"
            " WHERE e.id = %s AND l.name = %s", [event_id, name]).fetchone()[0]


def seconds_to_stop(process: ManagedProcess, signum: int) -> float:
    sent = time.monotonic()
    process.proc.send_signal(signum)
    try:
        process.proc.wait(30)
    except subprocess.TimeoutExpired:
        process.proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack to stderr
        process.proc.wait(10)
        process.stop()
        pytest.fail("still running 30 s after the signal:\n" + "\n".join(process.stderr_lines[-80:]))
    return time.monotonic() - sent


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("handler", "signum"), [("tests.helpers.faults.hang_forever", signal.SIGTERM),
                                                 ("tests.helpers.faults.hang_forever_async", signal.SIGINT)],
                         ids=["sync-sigterm", "async-sigint"])
def test_a_hung_handler_stops_nothing_else_and_the_process_stops_in_time(tmp_path, handler, signum):
    name = f"hung-{uuid.uuid4().hex[:8]}"
    env = process_env(PYTHONFAULTHANDLER="1",
                      **settings_with_handlers(tmp_path, [{"handler": handler, "channels": ["orders"]}]))
    listener = start_listener("--name", name, env=env)
    try:
        pks = insert_orders(5)  # the first one hangs the handler for good
        listener.wait_for(lambda lines: len(order_events(parse_output(lines)[0])) >= 5, timeout=10)
        pks += insert_orders(5)
        events = listener.wait_for(lambda lines: (e := order_events(parse_output(lines)[0])) and len(e) >= 10 and e,
                                   timeout=10)
        assert [e["pk"] for e in events] == pks  # the output and the other handlers go on, in order
        assert not saved_position_sees(name, events[0]["id"]), "the position passed an event the handler never took"
        stop_s = seconds_to_stop(listener, signum)
    finally:
        listener.stop()
    assert listener.proc.returncode == 0, listener.stderr_lines[-20:]
    assert "Traceback" not in "\n".join(listener.stderr_lines)
    # The position stayed where every handler had taken everything: a successor replays them all.
    successor = start_listener("--name", name)
    try:
        replayed = successor.wait_for(
            lambda lines: (e := [x for x in order_events(parse_output(lines)[0]) if x["replayed"]]) and len(e) >= 10
            and e, timeout=15)
    finally:
        successor.stop()
    assert [e["pk"] for e in replayed] == pks
    record_figures(f"hung_handler_{'sync' if 'async' not in handler else 'async'}",
                   {"stop_s": round(stop_s, 2), "signal": signal.Signals(signum).name})
    assert stop_s < STOP_WITHIN_S, f"the listener took {stop_s:.1f} s to stop"


@pytest.mark.django_db(transaction=True)
def test_sigterm_with_over_100_000_events_waiting_behind_a_failing_handler(tmp_path):
    name = f"failing-{uuid.uuid4().hex[:8]}"
    env = process_env(PYTHONFAULTHANDLER="1", **settings_with_handlers(tmp_path, [
        {"handler": "tests.helpers.faults.always_fail", "channels": ["orders"]}]))
    listener = ManagedProcess("listen_notify", "--quiet", "--stats-interval", "1", "--name", name, env=env)
    try:
        listener.wait_for_line(": live", timeout=20)
        with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
            conn.execute("INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, %s)", [WAITING])
        listener.wait_for(lambda lines: any(handed_on(line) >= 100_000 for line in lines), timeout=60)
        stop_s = seconds_to_stop(listener, signal.SIGTERM)
    finally:
        listener.stop()
    record_figures("failing_handler_100k", {"stop_s": round(stop_s, 2)})
    assert listener.proc.returncode == 0, listener.stdout_lines[-20:]
    assert stop_s < STOP_WITHIN_S, f"the listener took {stop_s:.1f} s to stop"

"""Log floods: a listener stopped (SIGSTOP) while 50,000 changes are written, then resumed, with
a channel layer it cannot reach. The dashboard handler keeps the newest 20,000 events for retry
and drops the rest: a handful of warning lines that count them all, not one line per event."""

import re
import signal
import uuid

import psycopg
import pytest

from pgnotify.handlers.groups import MAX_PENDING
from tests.helpers.faults import record_figures
from tests.helpers.support import ManagedProcess, database_url_for_tests, free_port, process_env

pytestmark = pytest.mark.slow

WRITTEN = 50_000


def handed_on(line: str) -> int:
    match = re.search(r"notifications orders (\d+)", line)
    return int(match.group(1)) if match else 0


@pytest.mark.django_db(transaction=True)
def test_a_flood_of_drops_is_a_handful_of_lines_with_the_right_total():
    unreachable_layer = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    env = process_env(REDIS_URL=unreachable_layer, PGNOTIFY_LOG_LEVEL="INFO")
    listener = ManagedProcess("listen_notify", "--quiet", "--stats-interval", "1", "--name",
                              f"flood-{uuid.uuid4().hex[:8]}", env=env)
    try:
        listener.wait_for_line(": live", timeout=20)
        listener.proc.send_signal(signal.SIGSTOP)
        try:
            with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
                conn.execute("INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, %s)", [WRITTEN])
        finally:
            listener.proc.send_signal(signal.SIGCONT)
        listener.wait_for(lambda lines: any(handed_on(line) >= WRITTEN for line in lines), timeout=60)
        listener.proc.send_signal(signal.SIGINT)
        assert listener.proc.wait(15) == 0
    finally:
        listener.stop()
    log = listener.stderr_lines
    dropped = [line for line in log if "dashboard events" in line]
    counts = [int(re.search(r"dropped ([\d,]+) dashboard events", line).group(1).replace(",", "")) for line in dropped]
    failed_sends = [line for line in log if "group_send" in line]
    record_figures("log_flood", {"lines": len(log), "dropped_lines": len(dropped), "dropped_total": sum(counts),
                                 "group_send_lines": len(failed_sends)})
    assert sum(counts) == WRITTEN - MAX_PENDING, dropped
    assert 1 <= len(dropped) <= 5, dropped[:10]
    assert len(failed_sends) <= 5, failed_sends[:10]
    assert len(log) < 40, log[:40]

"""A network that dies without a word (docs/guarantees.md): every connection of a `listen_notify` process,
its own and its handlers' Django ones, goes through a TCP proxy whose open connections freeze
while new ones still pass. The listener must be delivering again, through new connections,
within 15 s of the freeze, and nothing committed may be lost."""

import threading
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from django.db import connection

from tests.helpers.faults import SilenceableProxy, order_events, parse_output, record_figures
from tests.helpers.support import database_url_for_tests, process_env, start_listener

pytestmark = pytest.mark.slow

WITHIN_S = 15.0


def write_every(url: str, interval: float, stop: threading.Event, pks: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(interval):
            pks.append(conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id").fetchone()[0])


def delivered_after(lines: list[str], moment: datetime) -> list[dict]:
    return [e for e in order_events(parse_output(lines)[0]) if datetime.fromisoformat(e["ts"]) > moment]


@pytest.mark.django_db(transaction=True)
def test_delivery_resumes_within_15_s_when_the_network_freezes():
    settings = connection.settings_dict
    name = f"frozen-{uuid.uuid4().hex[:8]}"
    with SilenceableProxy(settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432) as proxy:
        via_proxy = f"postgresql://{settings['USER'] or 'postgres'}@127.0.0.1:{proxy.port}/{settings['NAME']}"
        listener = start_listener("--name", name, env=process_env(DATABASE_URL=f"{via_proxy}?sslmode=disable"))
        pks: list[int] = []
        stop = threading.Event()
        writer = threading.Thread(target=write_every, args=(database_url_for_tests(), 0.1, stop, pks), daemon=True)
        writer.start()
        try:
            listener.wait_for(lambda lines: len(order_events(parse_output(lines)[0])) >= 10, timeout=15)
            frozen = proxy.freeze()
            frozen_at, frozen_mono = datetime.now(UTC), time.monotonic()
            first = listener.wait_for(lambda lines: next(iter(delivered_after(lines, frozen_at)), None),
                                      timeout=WITHIN_S + 30)
            resumed_s = (datetime.fromisoformat(first["received"]) - frozen_at).total_seconds()
            delivered_s = time.monotonic() - frozen_mono
            # Still frozen: the old connections are gone for good; the new ones carry everything.
            listener.wait_for(lambda lines: len(delivered_after(lines, frozen_at)) >= 20, timeout=10)
            listener.wait_for(lambda lines: sum(": live" in line for line in lines) >= 2, timeout=10, stream="stderr")
            lost_line = next((line for line in listener.stderr_lines if ": lost" in line), "")
        finally:
            proxy.thaw()
            stop.set()
            writer.join(5)
        try:
            listener.wait_for(lambda lines: {e["pk"] for e in order_events(parse_output(lines)[0])} >= set(pks),
                              timeout=20)
        finally:
            listener.stop()
    record_figures("frozen_network", {"connections_frozen": frozen, "delivery_resumed_s": round(resumed_s, 2),
                                      "rows_written": len(pks)})
    assert lost_line, "the listener did not notice that its connection died"
    assert resumed_s < WITHIN_S and delivered_s < WITHIN_S + 2, \
        f"delivery resumed {resumed_s:.1f} s after the freeze"

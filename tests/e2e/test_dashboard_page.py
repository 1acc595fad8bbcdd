"""What a person sees on the dashboard, in Chromium against daphne, `listen_notify` and
PostgreSQL: round chart ticks, channel rates that follow the traffic, a feed that scrolls in its
card, KPI labels on one line at 1366 px, plurals, a capped DOM, and what the tab costs in CPU.

CPU is the renderer's main-thread busy time of the tab (Chrome DevTools Protocol
`Performance.getMetrics` TaskDuration: script, style, layout, paint) over a window of steady
traffic, divided by the window's length: the share of one core the page takes."""

import os
import re
import threading
import time

import pytest
from django.db import connection

from tests.helpers.support import ROOT
from tests.helpers.web import chromium, in_thread, login, make_user, terminate_backends, wait_websocket

pytestmark = [pytest.mark.once, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = ROOT / "build" / "screenshots"
STATE = "window.pgnotifyDashboard.state"




def insert_orders(count: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, %s)", [count])
    return count


def steady_traffic(rate: int, seconds: float) -> int:
    """About `rate` inserted orders a second for `seconds`, in commits of rate/20 rows."""
    batch, sent, started = max(1, rate // 20), 0, time.monotonic()
    while time.monotonic() - started < seconds:
        sent += insert_orders(batch)
        time.sleep(max(0.0, started + sent / rate - time.monotonic()))  # pacing, not waiting for a result
    return sent


def open_dashboard(browser, url: str, width: int, height: int):
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    login(page, url, "staff")
    page.goto(f"{url}/dashboard/")
    wait_websocket(page)
    return page


def tab_cpu(page, rate: int, seconds: float = 8.0) -> float:
    """Share of one core the tab's main thread was busy while `rate` events/s arrived."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    events_before = page.evaluate(f"{STATE}.events")
    writer = threading.Thread(target=lambda: rate and in_thread(steady_traffic, rate, seconds + 2))
    writer.start()
    page.wait_for_timeout(1500)  # the pipeline reaches its pace
    busy = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["TaskDuration"]
    started = time.monotonic()
    page.wait_for_timeout(seconds * 1000)
    after = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["TaskDuration"]
    elapsed = time.monotonic() - started
    writer.join()
    received = page.evaluate(f"{STATE}.events") - events_before
    cpu = (after - busy) / elapsed
    print(f"\ntab CPU at {rate} events/s: {cpu:.1%} of a core ({received} events received)")
    cdp.detach()
    return cpu


def test_what_a_person_sees_and_what_the_tab_costs(postgres_stack):
    in_thread(make_user, "staff", True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = open_dashboard(browser, postgres_stack.url, 1366, 768)

        # Round ticks.
        assert page.evaluate("window.pgnotifyDashboard.niceTicks(5)") == [0, 1, 2, 3, 4, 5]
        assert page.evaluate("window.pgnotifyDashboard.niceTicks(25)") == [0, 5, 10, 15, 20, 25]
        assert page.evaluate("window.pgnotifyDashboard.niceTicks(37)") == [0, 10, 20, 30, 40]
        assert page.evaluate("window.pgnotifyDashboard.niceTicks(0)") == [0, 1, 2, 3, 4, 5]

        # A single event is not a burst: its channel's rate stays small.
        in_thread(insert_orders, 1)
        page.wait_for_function(f"{STATE}.events >= 1 && {STATE}.stats && {STATE}.stats.channels.orders")
        page.wait_for_timeout(2500)
        single = float(page.inner_text("#channels-body tr:has(td:text-is('orders')) td:nth-child(3)"))
        assert single <= 0.5, single

        # Traffic, then none: the rate follows it down to 0.0 within RATE_WINDOW (5 s) and a tick.
        in_thread(steady_traffic, 40, 3.0)
        busy = float(page.inner_text("#channels-body tr:has(td:text-is('orders')) td:nth-child(3)"))
        page.wait_for_function(
            "document.querySelector('#channels-body tr td:nth-child(3)') && [...document.querySelectorAll("
            "'#channels-body tr')].find(r => r.cells[0].textContent === 'orders').cells[2].textContent === '0.0'",
            timeout=8000)
        print(f"\norders rate: {single} after one event, {busy} during 40/s, 0.0 at most 6 s after it stopped")
        assert busy >= 10
        rates = page.eval_on_selector_all("#channels-body td:nth-child(3)", "cells => cells.map(c => c.textContent)")
        assert all(re.fullmatch(r"–|\d{1,3}(,\d{3})*\.\d", rate) for rate in rates), rates  # one format

        # 400 more changes: the feed keeps 60 rows and scrolls inside its card; labels fit on one line.
        in_thread(insert_orders, 400)
        page.wait_for_function(f"{STATE}.events >= 521", timeout=15000)
        page.wait_for_timeout(300)
        assert page.eval_on_selector_all("#feed-body tr", "rows => rows.length") == 60
        height = page.evaluate("document.documentElement.scrollHeight")
        assert height <= 1400, height
        unfit = page.eval_on_selector_all(
            ".kpi .label, .kpi .hint", "nodes => nodes.filter(n => n.scrollWidth > n.clientWidth || "
            "n.getClientRects().length !== 1 || n.offsetHeight > 20).map(n => n.textContent)")
        assert unfit == [], unfit
        tops = page.eval_on_selector_all(".kpi .value", "nodes => nodes.map(n => n.getBoundingClientRect().top)")
        assert len(set(tops)) == 1, tops  # the values line up
        page.screenshot(path=str(SCREENSHOTS / "dashboard-1366x768.png"))
        page.screenshot(path=str(SCREENSHOTS / "dashboard-1366x768-full.png"), full_page=True)
        print(f"page height at 1366 px: {height} px")

        # One reconnect of the listener: "1 reconnect".
        database = connection.settings_dict["NAME"]
        assert in_thread(terminate_backends, "pgnotify %", database) >= 1
        page.wait_for_function("document.getElementById('kpi-reconnects').textContent === '1 reconnect'",
                               timeout=20000)

        wide = open_dashboard(browser, postgres_stack.url, 1600, 1000)
        writer = threading.Thread(target=lambda: in_thread(steady_traffic, 30, 4.0))
        writer.start()
        wide.wait_for_timeout(3000)
        wide.screenshot(path=str(SCREENSHOTS / "dashboard-1600x1000.png"))
        writer.join()


def test_what_the_tab_costs_in_cpu(postgres_stack):
    in_thread(make_user, "staff", True)
    with chromium() as browser:
        page = open_dashboard(browser, postgres_stack.url, 1366, 768)
        in_thread(insert_orders, 100)  # a full feed and table, as after a while
        page.wait_for_function(f"{STATE}.events >= 100", timeout=15000)
        if os.environ.get("DASHBOARD_PROFILE"):
            cdp = page.context.new_cdp_session(page)
            cdp.send("Profiler.enable")
            cdp.send("Profiler.start")
            in_thread(steady_traffic, 20, 4)
            profile = cdp.send("Profiler.stop")["profile"]
            nodes = {n["id"]: n for n in profile["nodes"]}
            hits = {}
            for sample in profile["samples"]:
                frame = nodes[sample]["callFrame"]
                name = f"{frame['functionName'] or '(anon)'} {frame['url'].rsplit('/', 1)[-1]}:{frame['lineNumber']}"
                hits[name] = hits.get(name, 0) + 1
            print(sorted(hits.items(), key=lambda item: -item[1])[:15])
        cpu = {rate: tab_cpu(page, rate) for rate in (0, 20, 1000)}
        assert cpu[20] < 0.3 and cpu[1000] < 0.97, cpu

"""Numbers reach every output with all their digits (a numeric of 29 digits, a JSON integer beyond
2^64): `listen_notify --json`, dashboard frames and the dashboard page in Chromium; durations are
ISO 8601. (The parsed event: tests/unit/test_exact_numbers.py.)"""

import json
from decimal import Decimal

import pytest
from django.db import connection, transaction

from tests.helpers.numbers import BIG, NUMERIC, SHOWN
from tests.helpers.web import login, make_user, wait_websocket
from tests.shapes.models import Amount, CompositeItem


@pytest.mark.django_db(transaction=True)
def test_listen_notify_json_prints_every_digit_and_iso_durations(listener):
    process = listener("--name", "exact-numbers")
    with transaction.atomic(), connection.cursor() as cursor:
        # The writer's IntervalStyle does not matter: events carry ISO 8601 durations.
        cursor.execute("SET LOCAL intervalstyle = postgres_verbose")
        cursor.execute(
            "INSERT INTO shapes_amount (amount, data, duration) VALUES "
            f"({NUMERIC}, '{{\"big\": {BIG}}}', interval '1 day 2 hours 3 minutes 4.5 seconds'), "
            # Over 8,000 bytes: the notification goes without its row, restored from the log.
            f"(-{NUMERIC}, '{{\"big\": -{BIG}, \"text\": \"{'x' * 9000}\"}}', interval '-1 month')")

    lines = process.wait_for(lambda lines: len(found := [line for line in lines if '"shapes_amount"' in line]) >= 2
                             and found)
    for line, sign, duration in zip(lines, ["", "-"], ["P1DT2H3M4.5S", "P-1M"], strict=True):
        assert f'"amount":{sign}{NUMERIC}' in line and f'"big":{sign}{BIG}' in line
        row = json.loads(line, parse_float=Decimal)["payload"]["row"]
        assert (row["amount"], row["data"]["big"], row["duration"]) == (Decimal(sign + NUMERIC), int(sign + str(BIG)),
                                                                        duration)
        assert "truncated" not in line


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("web_stack", ["postgres"], indirect=True)
def test_the_dashboard_shows_numbers_with_every_digit(web_stack, browser):
    make_user("staff", staff=True)
    page = browser.new_page()
    frames: list[str] = []
    page.on("websocket", lambda socket: socket.on("framereceived", lambda text: frames.append(text)))
    try:
        login(page, web_stack.url, "staff")
        page.goto(f"{web_stack.url}/dashboard/")
        wait_websocket(page)
        amount = Amount.objects.create(amount=Decimal("1.00"), data={"big": BIG})
        Amount.objects.filter(pk=amount.pk).update(amount=Decimal(SHOWN))
        Amount.objects.filter(pk=amount.pk).update(amount=Decimal(NUMERIC))
        page.wait_for_function(
            "window.pgnotifyDashboard.state.feed.filter(function (i) { return i.event.table === 'shapes_amount'; })"
            ".length >= 3", timeout=10_000)
        rows = page.evaluate(
            "window.pgnotifyDashboard.state.feed.filter(function (i) { return i.event.table === 'shapes_amount'; })"
            ".map(function (i) { return i.event.row; }).reverse()")
        # What a double cannot hold arrives as a string of its exact digits; the rest as numbers.
        assert [row["amount"] for row in rows] == [1, SHOWN, NUMERIC]
        assert {row["data"]["big"] for row in rows} == {str(BIG)}
        # And the page shows it, digit for digit, in the changed column's chip.
        chip = page.locator("#feed-body tr", has_text=SHOWN)
        chip.first.wait_for(timeout=5000)
        assert f"amount {SHOWN}" in chip.first.inner_text()
        # The frames themselves carried every digit (Playwright recorded them before the calls above returned).
        assert any(f'"amount":{NUMERIC}' in text and f'"big":{BIG}' in text for text in frames)

        # A composite key reads as its columns, not as "[object Object]".
        CompositeItem.objects.create(tenant=7, code="X-1", val=1)
        row = page.locator("#feed-body tr", has_text="shapes_compositeitem").first
        row.wait_for(timeout=5000)
        assert "code=X-1, tenant=7" in row.inner_text() and "object" not in row.inner_text()  # jsonb key order
    finally:
        page.close()

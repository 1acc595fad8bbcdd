"""The "My orders" demo in a real browser: daphne + listen_notify + PostgreSQL + channel layer
(channels_postgres, then Redis) + Chromium, alice's and bob's pages side by side, each live
through live-client.js on the `my-orders` stream (docs/live.md)."""

import base64
import time

import pytest
from django.db import connection

from notifyproject.shop.models import Order
from tests.helpers.support import ROOT
from tests.helpers.web import login, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = ROOT / "build" / "screenshots"
VIEWPORT = {"width": 1000, "height": 640}
HTML_NUMBER = '<b id="injected">A-2</b>'  # an order number that must show as text


def wait_ready(page, status: str = "") -> None:
    """The table's snapshot for this filter is in, and the bell's view is live."""
    page.wait_for_function(
        "(s) => window.pgnotifyLive && window.pgnotifyLive.ready && window.pgnotifyLive.bellReady && "
        "(window.pgnotifyLive.filter || '') === s", arg=status, timeout=10_000)


def shown(page) -> dict:
    """The table as the user sees it: order number -> status."""
    return dict(page.eval_on_selector_all(
        "#orders-body tr[data-number]", "rows => rows.map(r => [r.cells[0].textContent, r.dataset.status])"))


def wait_shown(page, number: str, status: str | None, timeout_ms: float = 5000) -> None:
    """Waits until the row of order `number` shows `status` (None: until the row is gone)."""
    page.wait_for_function(
        "([number, status]) => { const row = [...document.querySelectorAll('#orders-body tr[data-number]')]"
        ".find(r => r.cells[0].textContent === number); return status === null ? !row : !!row && "
        "row.dataset.status === status; }", arg=[number, status], timeout=timeout_ms)


def seen(page) -> list:
    return page.evaluate("window.pgnotifyLive.seen")


def open_my_orders(browser, url: str, username: str):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    login(page, url, username)
    page.goto(f"{url}/my-orders/")
    wait_ready(page)
    return context, page


def side_by_side(browser, pages: dict, path) -> None:
    """One picture of the pages next to each other (no image library: a page of two images)."""
    images = "".join(
        f'<figure><figcaption>{name}</figcaption><img src="data:image/png;base64,'
        f'{base64.b64encode(page.screenshot()).decode()}"></figure>' for name, page in pages.items())
    context = browser.new_context(viewport={"width": 2 * VIEWPORT["width"] + 60, "height": VIEWPORT["height"] + 60})
    try:
        sheet = context.new_page()
        sheet.set_content("<style>body{margin:0;display:flex;gap:20px;padding:10px;background:#222;"
                          "font:14px sans-serif;color:#eee}figure{margin:0}img{display:block;border:1px solid #555}"
                          f"</style>{images}")
        sheet.screenshot(path=str(path))
    finally:
        context.close()


def test_alice_sees_her_orders_live_and_bob_never_does(web_stack, browser):
    url = web_stack.url
    alice, bob = make_user("alice"), make_user("bob")
    make_user("staff", staff=True)
    first = Order.objects.create(customer=alice, quantity=1, total="10.00", status="new")
    second = Order.objects.create(customer=alice, quantity=2, total="20.50", status="paid", number=HTML_NUMBER)
    bobs = Order.objects.create(customer=bob, quantity=3, total="30.00", status="new")
    first.refresh_from_db()
    bobs.refresh_from_db()
    contexts = []
    try:
        alice_context, alice_page = open_my_orders(browser, url, "alice")
        bob_context, bob_page = open_my_orders(browser, url, "bob")
        contexts += [alice_context, bob_context]
        assert shown(alice_page) == {first.number: "new", HTML_NUMBER: "paid"}
        assert shown(bob_page) == {bobs.number: "new"}
        # Text is text: the number with markup shows as it is, and makes no element.
        assert alice_page.locator("#injected").count() == 0

        # An admin edit of alice's order reaches her page within a second.
        staff_context = browser.new_context(viewport=VIEWPORT)
        contexts.append(staff_context)
        admin = staff_context.new_page()
        login(admin, url, "staff")
        admin.goto(f"{url}/admin/shop/order/{first.pk}/change/")
        admin.select_option("#id_status", "paid")
        admin.fill("#id_quantity", "5")
        started = time.monotonic()
        admin.click("input[name=_save]")
        wait_shown(alice_page, first.number, "paid")
        admin_to_page = time.monotonic() - started
        print(f"\n[{web_stack.layer}] admin save -> alice's page: {admin_to_page * 1000:.0f} ms")
        assert admin_to_page < 1.0
        assert alice_page.locator(f"#orders-body tr[data-number='{first.number}'] td.num").first.inner_text() == "5"

        # The filter buttons: each shows the orders in that status, and follows changes live.
        alice_page.click("#filters button[data-status=paid]")
        wait_ready(alice_page, "paid")
        assert shown(alice_page) == {first.number: "paid", HTML_NUMBER: "paid"}
        alice_page.click("#filters button[data-status=new]")
        wait_ready(alice_page, "new")
        assert shown(alice_page) == {}
        assert "No new orders." in alice_page.inner_text("#orders-body")
        with connection.cursor() as cursor:  # a write outside Django's ORM
            cursor.execute("UPDATE shop_order SET status = 'new' WHERE id = %s", [second.pk])
        wait_shown(alice_page, HTML_NUMBER, "new")  # entered the "new" view
        Order.objects.filter(pk=second.pk).update(status="cancelled")
        wait_shown(alice_page, HTML_NUMBER, None)  # and left it
        alice_page.click("#filters button[data-status='']")
        wait_ready(alice_page, "")
        assert shown(alice_page) == {first.number: "paid", HTML_NUMBER: "cancelled"}

        # The bell: alice's order marked shipped tells her so.
        Order.objects.filter(pk=first.pk).update(status="shipped")
        alice_page.wait_for_function("window.pgnotifyLive.notifications.length === 1", timeout=5000)
        assert alice_page.evaluate("window.pgnotifyLive.notifications") == [f"Order {first.number} shipped"]
        assert alice_page.is_visible("#bell-count") and alice_page.inner_text("#bell-count") == "1"
        wait_shown(alice_page, first.number, "shipped")

        # Bob: events reach the pages in commit order, so once his own later change is on his page,
        # anything of alice's sent to him would be there too: nothing is, in his table or his bell.
        Order.objects.filter(pk=bobs.pk).update(status="paid")
        wait_shown(bob_page, bobs.number, "paid")
        assert seen(bob_page) == [["UPDATE", bobs.number, "paid"]]
        assert shown(bob_page) == {bobs.number: "paid"}
        assert bob_page.evaluate("window.pgnotifyLive.notifications") == []
        assert all(number in (first.number, HTML_NUMBER) for _, number, _ in seen(alice_page))

        if web_stack.layer == "postgres":
            alice_page.click("#bell-button")
            alice_page.wait_for_selector("#bell-list li:not(.empty)")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            side_by_side(browser, {"alice": alice_page, "bob": bob_page}, SCREENSHOTS / "my-orders.png")
    finally:
        for context in contexts:
            context.close()


"""The chat end to end: real daphne, `listen_notify`, PostgreSQL, channel layer and Chromium."""

import asyncio
import http.client
import statistics
from pathlib import Path

import pytest
from django.test import Client

from tests.helpers.web import Daphne, chromium, in_thread, login, make_user
from tests.helpers.wsclient import Closed, Refused, WebSocket

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# `make screenshots` copies them to docs/.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
XSS = "<img src=x onerror=alert(1)>"
VIEWPORT = {"width": 1280, "height": 760}


@pytest.fixture
def browser():
    """Headless Chromium for one test. Playwright's sync API keeps an event loop running in this
    thread while it is open, which Django's ORM refuses; a browser per test is closed before the
    database is flushed. Missing Chromium fails under CI, else skips."""
    with chromium() as browser:
        yield browser




def open_chat(browser, base_url: str, username: str, room: str, dialogs: list):
    """A logged-in page on the room, its websocket open; dialogs it raises are recorded."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    login(page, base_url, username)
    page.goto(f"{base_url}/chat/{room}/")
    wait_js(page, "window.websocketConnected === true")
    return page


STATE_JS = """() => ({url: location.href, connected: window.websocketConnected,
    connection: document.querySelector('#chat-connection')?.textContent.trim(),
    users: [...document.querySelectorAll('#chat-users .chat-user-name')].map(e => e.textContent),
    received: (window.chatReceived || []).map(m => m.user + ': ' + m.message),
    system: [...document.querySelectorAll('.chat-system span')].map(e => e.textContent),
    error: document.querySelector('#chat-error')?.textContent})"""


def wait_js(page, expression: str, arg=None, timeout_ms: float = 10_000) -> None:
    """page.wait_for_function that says what the page showed when it timed out."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(expression, arg=arg, timeout=timeout_ms)
    except PlaywrightTimeout:
        pytest.fail(f"timed out waiting for {expression} ({arg!r}); page state: {page.evaluate(STATE_JS)}")


def wait_users(page, names: list[str]) -> None:
    wait_js(page, "names => [...document.querySelectorAll('#chat-users .chat-user-name')].map(e => e.textContent)"
                  ".join() === names.join()", names)


def say(sender, receiver, text: str) -> float:
    """Sends text from one page; returns the ms until the other page received it."""
    sender.fill("#chat-input", text)
    sender.press("#chat-input", "Enter")
    wait_js(receiver, "t => window.chatReceived.some(m => m.message === t)", text)
    sent = sender.evaluate("t => window.chatSentAt[t]", text)
    received = receiver.evaluate("t => window.chatReceived.find(m => m.message === t).at", text)
    return received - sent


def report(label: str, latencies: list[float]) -> None:
    print(f"\n{label}: {len(latencies)} messages, median {statistics.median(latencies):.0f} ms, "
          f"max {max(latencies):.0f} ms ({', '.join(f'{ms:.0f}' for ms in latencies)})")


def test_two_users_chat_in_one_room(web_stack, browser):
    in_thread(make_user, "alice")
    in_thread(make_user, "bob")
    dialogs: list[str] = []
    alice = open_chat(browser, web_stack.url, "alice", "lobby", dialogs)
    bob = open_chat(browser, web_stack.url, "bob", "lobby", dialogs)
    wait_users(alice, ["alice", "bob"])
    wait_users(bob, ["alice", "bob"])
    assert alice.locator(".chat-system", has_text="bob joined").count() == 1

    latencies = [
        say(alice, bob, "Morning Bob! Order #1042 just showed up on the dashboard as paid."),
        say(bob, alice, "Saw it. I'm shipping it now, watch for the UPDATE."),
        say(alice, bob, "There it is: status → shipped, before I even refreshed anything."),
        say(bob, alice, XSS),
        say(alice, bob, "Nice try, Bob: that one stays plain text."),
    ]
    for page in (alice, bob):
        # `say` waits for the receiver: the sender's own copy of the last message may still be on its way.
        wait_js(page, "n => document.querySelectorAll('.chat-text').length >= n", 5)
        # The hostile message is shown as text: no element was made of it and nothing ran.
        assert page.locator("#chat-messages img").count() == 0
        assert page.locator(".chat-text", has_text=XSS).inner_text() == XSS
        texts = page.eval_on_selector_all(".chat-text", "nodes => nodes.map(n => n.textContent)")
        assert len(texts) == 5 and texts[3] == XSS
    assert dialogs == []

    if web_stack.layer == "postgres":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        alice.evaluate("document.activeElement.blur()")
        alice.screenshot(path=str(SCREENSHOTS / "chat.png"), animations="disabled")

    for i in range(8):  # more samples, alternating so no one nears the rate limit
        sender, receiver = (alice, bob) if i % 2 == 0 else (bob, alice)
        latencies.append(say(sender, receiver, f"ping {i}"))
    report(f"chat latency browser to browser ({web_stack.layer} layer)", latencies)
    assert max(latencies) < 2000

    bob.context.close()
    wait_users(alice, ["alice"])
    assert alice.locator(".chat-system", has_text="bob left").count() == 1
    alice.context.close()


def test_two_web_processes_share_a_room(postgres_stack, browser):
    second = Daphne(postgres_stack.env).wait_ready()
    try:
        in_thread(make_user, "alice")
        in_thread(make_user, "bob")
        dialogs: list[str] = []
        alice = open_chat(browser, postgres_stack.url, "alice", "bridge", dialogs)
        bob = open_chat(browser, second.url, "bob", "bridge", dialogs)
        # Presence crosses processes: each sees the other in the user list.
        wait_users(alice, ["alice", "bob"])
        wait_users(bob, ["alice", "bob"])
        latencies = [say(alice, bob, "from web process one"), say(bob, alice, "from web process two")]
        latencies += [say(alice, bob, f"across {i}") if i % 2 else say(bob, alice, f"across {i}") for i in range(4)]
        report("chat latency across two daphne processes", latencies)
        for page in (alice, bob):
            assert page.eval_on_selector_all(".chat-text", "n => n.length") == 6
        bob.context.close()
        wait_users(alice, ["alice"])
        alice.context.close()
    finally:
        second.stop()


def refusal(port: int, path: str, cookie: str | None = None) -> int:
    """How daphne answers a websocket: 101 for a socket that stays open (whatever frames it gets),
    the close code for one accepted then closed (refusals: 4403, 4404), or the HTTP status of a
    refused handshake."""
    async def open_socket():
        try:
            socket = await WebSocket.connect(port, path, cookie)
        except Refused as refused:
            return refused.status
        deadline = asyncio.get_running_loop().time() + 1.5
        try:
            while True:  # frames (history, joins, users) are fine: only a close is a refusal
                await socket.receive(wait=deadline - asyncio.get_running_loop().time())
        except Closed as closed:
            return closed.code
        except TimeoutError:
            return 101
        finally:
            socket.abort()
            await asyncio.sleep(0)  # the transport finishes closing before the loop does

    return asyncio.run(open_socket())


def page_status(port: int, path: str, cookie: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        return response.status, response.getheader("Location", "")
    finally:
        conn.close()


def test_refusals_over_daphne_are_4403_or_4404_never_500(postgres_stack):
    client = Client()
    client.force_login(make_user("carol"))
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    port = postgres_stack.daphne.port

    assert refusal(port, "/ws/chat/lobby/") == 4403  # anonymous
    for bad in ("bad%20name", "a" * 51, "dot.ted", "a/b", "%3Cscript%3E", ""):
        assert refusal(port, f"/ws/chat/{bad}/", cookie) == 4404, bad
    assert refusal(port, "/ws/chat/lobby/", cookie) == 101

    status, location = page_status(port, "/chat/lobby/")
    assert status == 302 and location.startswith("/accounts/login/?next=/chat/lobby/")
    assert page_status(port, "/chat/lobby/", cookie)[0] == 200
    assert page_status(port, "/chat/bad.name/", cookie)[0] == 404
    assert page_status(port, f"/chat/{'a' * 51}/", cookie)[0] == 404

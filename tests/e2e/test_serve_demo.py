"""`make run`'s last step: daphne and the listener together, both stopped by one Ctrl-C."""

import signal
import socket
import urllib.request

import psutil
import pytest
from django.db import connection

from tests.helpers.support import ManagedProcess, free_port


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status


@pytest.mark.django_db(transaction=True)
def test_serve_demo_serves_listens_and_stops_on_ctrl_c():
    port = free_port()
    stack = ManagedProcess("serve_demo", "--port", str(port), "-v", "2")
    try:
        stack.wait_for_line("listener 'default': live", timeout=30)
        stack.wait_for_line(f"Listening on TCP address 127.0.0.1:{port}", timeout=30, stream="stderr")
        assert _get(f"http://127.0.0.1:{port}/") == 200
        children = psutil.Process(stack.proc.pid).children()
        assert len(children) == 2

        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id")
            (order_id,) = cursor.fetchone()
        stack.wait_for_line(f"INSERT shop_order pk={order_id}", timeout=10)

        stack.proc.send_signal(signal.SIGINT)
        assert stack.proc.wait(20) == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
    finally:
        stack.kill() if stack.proc.poll() is None else stack.stop()


@pytest.mark.django_db(transaction=True)
def test_serve_demo_is_quiet_by_default():
    port = free_port()
    stack = ManagedProcess("serve_demo", "--port", str(port))
    try:
        stack.wait_for_line("listener 'default': live", timeout=30)
        stack.wait_for_line(f"Listening on TCP address 127.0.0.1:{port}", timeout=30, stream="stderr")
        for _ in range(3):
            assert _get(f"http://127.0.0.1:{port}/") == 200
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id")
        stack.proc.send_signal(signal.SIGINT)
        assert stack.proc.wait(20) == 0
    finally:
        stack.kill() if stack.proc.poll() is None else stack.stop()
    output = stack.stdout_lines + stack.stderr_lines
    # State changes (the stop too, printed after the Ctrl-C) and the summary, but no line per
    # notification and no access log.
    states = [line.split(": ", 1)[1].split()[0] for line in stack.stdout_lines if line.startswith("🔌 listener")]
    assert states == ["connected", "live", "stopped"], output
    assert any(line.startswith("📊 listener") and "orders 1" in line for line in output), output
    assert all(line.startswith(("Dashboard: ", "🔌 listener", "📊 listener")) for line in stack.stdout_lines), output
    assert not any("📨" in line or '"GET / HTTP' in line or "GET /" in line for line in output), output


def test_serve_demo_refuses_a_taken_port_in_one_line():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        stack = ManagedProcess("serve_demo", "--port", str(port))
        code = stack.proc.wait(30)
        stack.stop()
    assert code != 0
    assert len(stack.stderr_lines) == 1 and f"127.0.0.1:{port}" in stack.stderr_lines[0], stack.stderr_lines
    assert "Traceback" not in "\n".join(stack.stderr_lines + stack.stdout_lines)

"""`make run`'s last step: daphne and the listener together, both stopped by one Ctrl-C."""

import signal
import urllib.request

import psutil
import pytest
from django.db import connection

from tests.support import ManagedProcess, free_port


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status


@pytest.mark.django_db(transaction=True)
def test_serve_demo_serves_listens_and_stops_on_ctrl_c():
    port = free_port()
    stack = ManagedProcess("serve_demo", "--port", str(port))
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

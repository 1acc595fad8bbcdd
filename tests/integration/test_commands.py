"""listen_notify and notify as a user runs them: output formats, exit codes, signals, bad input."""

import json
import re
import signal
import subprocess
import sys
from datetime import datetime

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from notifyproject.shop.demo import Inbox
from notifyproject.shop.models import Order
from pgnotify import notify
from pgnotify.connection import listener_conninfo
from tests.helpers import support

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE_CHANNELS = ["", "x" * 64, "orders; DROP TABLE shop_order", 'or"ders', "or'ders", "two words",
                    "canal_ção", "😀"]
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nope"


def run_all(*commands, stdin: str | None = None, env=None) -> list[tuple[int, str, str]]:
    """Run manage.py commands side by side; (exit code, stdout, stderr) of each."""
    processes = [
        subprocess.Popen([sys.executable, str(support.ROOT / "manage.py"), *args], cwd=support.ROOT,
                         env=env or support.process_env(), text=True, encoding="utf-8",
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for args in commands
    ]
    results = []
    for process in processes:
        out, err = process.communicate(stdin, timeout=60)
        results.append((process.returncode, out, err))
    return results


def assert_one_line_error(code: int, out: str, err: str, text: str) -> None:
    assert code != 0 and out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("CommandError: ") and text in lines[0], err


def stop_with(process: support.ManagedProcess, signum: int) -> int:
    process.proc.send_signal(signum)
    process.proc.wait(10)
    return process.stop()


def test_listen_notify_prints_one_human_line_per_event_and_stops_on_sigint():
    process = support.ManagedProcess("listen_notify", "--name", "commands-human", "--stats-interval", "0")
    try:
        process.wait_for_line("live", timeout=20)
        order = Order.objects.create()
        Order.objects.filter(pk=order.pk).update(status="paid", total=10)
        update = process.wait_for_line("UPDATE shop_order")
    finally:
        code = stop_with(process, signal.SIGINT)
    assert re.fullmatch(rf"📨 \[orders\] #\d+ UPDATE shop_order pk={order.pk} changed=status,total \(pid \d+\)", update)
    inserted = [line for line in process.stdout_lines if "INSERT shop_order" in line]
    assert len(inserted) == 1 and re.fullmatch(rf"📨 \[orders\] #\d+ INSERT shop_order pk={order.pk} \(pid \d+\)",
                                               inserted[0])
    assert code == 0
    assert any(line.startswith("📊 listener stopped") for line in process.stdout_lines)
    assert "   - orders: 2 notifications" in "\n".join(process.stdout_lines)
    assert "Traceback" not in "\n".join(process.stdout_lines + process.stderr_lines)


def test_listen_notify_json_prints_only_json_on_stdout_and_stops_on_sigterm(listener):
    process = listener("--name", "commands-json")
    order = Order.objects.create()
    notify("orders", "plain text, not JSON")  # a non-JSON payload on a watched channel: passed on raw

    def two_on_orders(_):
        lines = [line for line in process.json_lines() if line["channel"] == "orders"]
        return lines if len(lines) >= 2 else None

    event_line, raw_line = process.wait_for(two_on_orders)
    code = stop_with(process, signal.SIGTERM)
    assert code == 0
    assert set(event_line) == {"channel", "payload", "pid", "received"} == set(raw_line)
    assert event_line["payload"]["op"] == "INSERT" and event_line["payload"]["pk"] == order.pk
    assert raw_line["payload"] == "plain text, not JSON"
    for line in (event_line, raw_line):
        assert isinstance(line["pid"], int) and datetime.fromisoformat(line["received"]).utcoffset() is not None
    for text in process.stdout_lines:  # nothing but JSON objects on stdout
        assert isinstance(json.loads(text), dict)
    errors = "\n".join(process.stderr_lines)
    assert "🔌 listener 'commands-json': live" in errors and "📊 listener stopped" in errors
    assert re.search(r"   - orders: 2 notifications, [\d.]+/s.*, 1 not JSON", errors), errors
    assert "Traceback" not in errors


def test_listen_notify_reports_the_database_checks_of_its_database_and_starts(listener):
    with connection.cursor() as cursor:  # a retired listener's position, older than the retention
        cursor.execute("INSERT INTO pgnotify_listener (name, snapshot, updated_at) "
                       "VALUES ('retired-name', pg_current_snapshot()::text, now() - interval '30 days')")
    process = listener("--name", "commands-checks")
    line = process.wait_for_line("pgnotify.W042", stream="stderr")
    assert "listener 'retired-name'" in line and "DELETE FROM pgnotify_listener" in line
    process.wait_for_line("'commands-checks': live", stream="stderr")


def test_notify_command_sends_its_argument_or_standard_input():
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as conn:
        inbox = Inbox(conn, "commands", timeout=5.0)
        inbox.listen("commands_stdin")
        payload = '{"from": "stdin", "text": "ação ☕"}'
        (code, out, err), (arg_code, _, _) = run_all(("notify", "commands_stdin", "-"),
                                                      ("notify", "commands_stdin", "from the argument"),
                                                      stdin=payload + "\n")
        assert (code, arg_code) == (0, 0), err
        assert out.strip() == f"📤 sent {len(payload.encode())} bytes on 'commands_stdin'"
        received = {inbox.next().payload, inbox.next().payload}
        assert received == {payload, "from the argument"}

        ((code, out, err),) = run_all(("notify", "commands_stdin", "-"), stdin="ç" * 4000)
        assert_one_line_error(code, out, err, "payload is 8000 bytes; NOTIFY accepts at most 7999 bytes")
        assert inbox.rest() == []


def test_hostile_channel_names_are_refused_by_the_commands():
    for name in [*HOSTILE_CHANNELS, "nul\x00byte"]:  # in-process: every name, a NUL included
        for command in (("notify", name, "x"), ("listen_notify", "--channel", name)):
            with pytest.raises(CommandError, match="invalid channel name") as refused:
                call_command(*command)
            assert "\n" not in str(refused.value)
    # As a user runs them: exit code, one line on stderr, no traceback (a sample, run side by side).
    samples = [("notify", name, "x") for name in ("", "orders; DROP TABLE shop_order", 'or"ders', "canal_ção")]
    samples += [("listen_notify", "--channel", name) for name in ("orders; DROP TABLE shop_order", "x" * 64)]
    for args, (code, out, err) in zip(samples, run_all(*samples), strict=True):
        name = args[1] if args[0] == "notify" else args[2]
        assert_one_line_error(code, out, err, f"invalid channel name {name!r}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('shop_order') IS NOT NULL, count(*) FROM shop_order")
        assert cursor.fetchone() == (True, 0)


def test_listener_keeps_retrying_an_unreachable_database_without_traceback():
    env = support.process_env(DATABASE_URL=UNREACHABLE)
    process = support.ManagedProcess("listen_notify", "--stats-interval", "0", env=env)

    def attempts(lines):
        found = [line for line in lines if ": unreachable " in line]
        return found if len(found) >= 4 else None

    try:
        lines = process.wait_for(attempts, timeout=15)
    finally:
        code = stop_with(process, signal.SIGINT)
    assert code == 0
    numbers = [int(re.search(r"attempt=(\d+)", line).group(1)) for line in lines]
    assert numbers == list(range(1, len(lines) + 1))  # one line per attempt
    for line in lines:
        assert "Connection refused" in line and "retry_in_s=" in line
    everything = "\n".join(process.stdout_lines + process.stderr_lines)
    assert "Traceback" not in everything
    assert "🔌 listener 'default': stopped" in everything

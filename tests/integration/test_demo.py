"""pgnotify_demo: the brief's walkthroughs against the test database."""

import re
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from notifyproject.shop.models import Order
from pgnotify.schema.triggers import sync_triggers
from tests.helpers import support

pytestmark = pytest.mark.django_db(transaction=True)

MARKERS = [
    "=== Listen/Notify example ===",
    "1. Connecting to the database...",
    "2. Example: basic listen/notify...",
    "   🎧 Waiting for notifications...",
    "   📤 Sending notification 1: 'First message'",
    "   📨 Notification received: Channel='test_channel_",
    "   ✅ Notification 1 sent successfully",
    "3. Example: multiple channels...",
    "   📤 [orders] Sending: 'New order #1001'",
    "   📨 [orders] Notification #1: 'New order #1001'",
    "   📊 Statistics per channel:",
    "   - orders: 3 notifications",
    "   - users: 2 notifications",
    "   - products: 1 notification\n",
    "   - system: 2 notifications",
    "4. Example: notifications with payload...",
    "   📤 Sending payload 3 (7999 bytes)...",
    "   ✅ Payload 3 parsed: 7999 bytes, identical to what was sent",
    "   ⛔ Refused before sending: PayloadTooLarge(size=8000, limit=7999)",
    "5. Example: simple chat...",
    "   📢 alice joined the chat",
    "   📢 bob left the chat",
    "6. Example: change monitoring...",
    "✅ Every walkthrough received exactly what it sent.",
]


def test_pgnotify_demo_exits_0_and_prints_the_walkthroughs():
    result = subprocess.run([sys.executable, str(support.ROOT / "manage.py"), "pgnotify_demo"], cwd=support.ROOT,
                            env=support.process_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for marker in MARKERS:
        assert marker in result.stdout, marker
    for op in ("INSERT", "UPDATE", "DELETE"):
        assert re.search(rf"📨 \[orders\] #\d+ {op} shop_order pk=\d+", result.stdout), op
    assert "changed=status" in result.stdout and "❌" not in result.stdout
    assert "Traceback" not in result.stderr
    assert Order.objects.count() == 0  # the walkthrough's order is gone again


def test_pgnotify_demo_fails_when_a_walkthrough_misses_what_it_sent():
    """With the orders trigger gone, change monitoring receives nothing: one line, non-zero exit."""
    without_orders = {label: options for label, options in settings.PGNOTIFY["WATCH"].items() if label != "shop.Order"}
    output = StringIO()
    try:
        with override_settings(PGNOTIFY={**settings.PGNOTIFY, "WATCH": without_orders}):
            assert sync_triggers() == ["dropped pgnotify_change on shop_order"]
        with pytest.raises(CommandError) as failed:
            call_command("pgnotify_demo", "--timeout", "0.5", stdout=output)
    finally:
        sync_triggers()
    message = str(failed.value)
    assert message.startswith("1 problem(s): change monitoring: the INSERT event of shop_order pk=")
    assert "\n" not in message
    assert "❌" in output.getvalue() and "✅ Every walkthrough" not in output.getvalue()
    assert Order.objects.count() == 0  # cleaned up even so


def test_pgnotify_demo_reports_an_unreachable_database_in_one_line():
    result = subprocess.run([sys.executable, str(support.ROOT / "manage.py"), "pgnotify_demo"], cwd=support.ROOT,
                            env=support.process_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nope"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("CommandError: cannot connect to the database: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

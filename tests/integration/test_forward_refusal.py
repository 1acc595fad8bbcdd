"""A forwarder configured wrongly: the listener refuses to start with the same line as `manage.py
check` (docs/forwarding.md)."""

import subprocess
import sys

import pytest

from tests.helpers import support
from tests.helpers.forwarding import handler_errors


@pytest.mark.parametrize(("handler", "options"), [
    ("Webhook", {"url": "https://example.com/h"}),  # no secret
    ("RabbitMQ", {"exchnage": "orders"}),  # a misspelt option
])
def test_the_listener_refuses_a_wrong_option_with_the_check_line(tmp_path, handler, options):
    """docs/forwarding.md: "the listener refuses to start with the same line" as `check`."""
    entry = {"handler": f"pgnotify.forwarding.{handler}", "options": options}
    [expected] = handler_errors(handler, **options)
    (tmp_path / "wrong_option_settings.py").write_text(
        "from notifyproject.settings import *  # noqa: F403\n"
        f"PGNOTIFY = {{**PGNOTIFY, 'HANDLERS': [{entry!r}]}}  # noqa: F405\n")
    env = support.process_env(DJANGO_SETTINGS_MODULE="wrong_option_settings", PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, str(support.ROOT / "manage.py"), "listen_notify", "--name",
                             f"wrong-option-{handler}"], cwd=support.ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"CommandError: {expected}"]
    assert "Traceback" not in result.stdout

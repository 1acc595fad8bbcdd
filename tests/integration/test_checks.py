"""pgnotify's checks as the commands run them, with the database's among them: `manage.py check` and
the listener's start against the test database (the checks one by one, with no database:
tests/unit/test_checks.py and tests/unit/test_forward_checks.py)."""

import subprocess
import sys

import pytest
from django.conf import settings
from django.core import checks as django_checks
from django.test import override_settings

from pgnotify import checks
from tests.helpers import support

pytestmark = pytest.mark.django_db


def handler_check_lines(handler: str, options: dict) -> list[str]:
    entry = {"handler": f"pgnotify.forwarding.{handler}", "channels": ["orders"], "options": options}
    with override_settings(PGNOTIFY={**settings.PGNOTIFY, "HANDLERS": [entry]}):
        return [error.msg for error in checks.check_handlers()]


def test_checks_are_registered_with_django():
    broken = {**settings.PGNOTIFY, "WATCH": {**settings.PGNOTIFY["WATCH"], "shop.Nope": {"channel": "nope"}},
              "CACHE_INVALIDATE": {"shop.Nope": ["x"]}}
    with override_settings(PGNOTIFY=broken):
        found = {error.id for error in django_checks.run_checks() if error.id.startswith("pgnotify.")}
    assert found == {"pgnotify.E003", "pgnotify.E016"}


def test_manage_py_check_fails_cleanly(tmp_path):
    (tmp_path / "bad_watch_settings.py").write_text(
        "from notifyproject.settings import *  # noqa: F403\n"
        "PGNOTIFY = {**PGNOTIFY, 'WATCH': {**PGNOTIFY['WATCH'], 'shop.Nope': {'channel': 'nope'}}}  # noqa: F405\n"
    )
    env = support.process_env(DJANGO_SETTINGS_MODULE="bad_watch_settings", PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, str(support.ROOT / "manage.py"), "check"], cwd=support.ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "pgnotify.E003" in result.stderr and "'shop.Nope'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_manage_py_check_prints_one_line_for_a_bad_forwarder(tmp_path):
    (tmp_path / "bad_forwarder_settings.py").write_text(
        "from notifyproject.settings import *  # noqa: F403\n"
        "PGNOTIFY = {**PGNOTIFY, 'HANDLERS': [{'handler': 'pgnotify.forwarding.JetStream',  # noqa: F405\n"
        "                                      'options': {'prefix': 'orders.>'}}]}\n"
    )
    env = support.process_env(DJANGO_SETTINGS_MODULE="bad_forwarder_settings", PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, str(support.ROOT / "manage.py"), "check"], cwd=support.ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if "pgnotify.E010" in line]
    assert "'pgnotify.forwarding.JetStream': prefix must be subject words" in line and "'orders.>'" in line
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(("handler", "options"), [
    ("Webhook", {"url": "https://example.com/h"}),  # no secret
    ("RabbitMQ", {"exchnage": "orders"}),  # a misspelt option
])
def test_the_listener_refuses_a_wrong_option_with_the_check_line(tmp_path, handler, options):
    """docs/forwarding.md: "the listener refuses to start with the same line" as `check`."""
    entry = {"handler": f"pgnotify.forwarding.{handler}", "options": options}
    [expected] = handler_check_lines(handler, options)
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

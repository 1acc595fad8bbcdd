"""The demo project's defaults are safe: DEBUG only when asked, never a publicly known
SECRET_KEY, and `check --deploy` clean with the production environment of docs/security.md."""

import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.helpers.support import ROOT, process_env
from tests.helpers.web import Daphne, layer_env

pytestmark = pytest.mark.django_db(transaction=True)
PUBLIC_KEY = "pgnotify-local-development-only-not-a-secret"  # the key the repository used to carry
PRODUCTION = {  # docs/security.md, "Production environment"
    "DEBUG": "0", "SECRET_KEY": "k" * 20 + "Q7-x_Z3pL9vR2mW8nT4yB6cF1hJ5sD0gA" + "e" * 10,
    "ALLOWED_HOSTS": "pgnotify.example.com", "HTTPS": "1",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1", "SECURE_HSTS_PRELOAD": "1",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
}


def clean_env(**extra) -> dict:
    env = process_env(**extra)
    for name in ("DEBUG", "SECRET_KEY", "HTTPS", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE"):
        if name not in extra:
            env.pop(name, None)
    return env


def manage(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def shown(run: subprocess.CompletedProcess) -> list[str]:
    """DEBUG and SECRET_KEY as SHOW printed them (its last line)."""
    return run.stdout.strip().splitlines()[-1].split()


SHOW = ("shell", "-c", "from django.conf import settings as s; print(s.DEBUG, s.SECRET_KEY)")


def test_without_settings_debug_is_off_and_the_key_is_generated_once_for_the_owner_only(tmp_path):
    key_file = tmp_path / "secret"
    env = clean_env(SECRET_KEY_FILE=str(key_file))
    first = manage(*SHOW, env=env)
    assert first.returncode == 0, first.stderr
    debug, key = shown(first)
    assert debug == "False"
    assert key != PUBLIC_KEY and len(key) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert shown(manage(*SHOW, env=env))[1] == key  # kept: sessions survive restarts
    assert shown(manage(*SHOW, env=clean_env(SECRET_KEY_FILE=str(key_file), DEBUG="1")))[0] == "True"


def test_a_key_file_readable_by_others_is_made_private(tmp_path):
    key_file = tmp_path / "secret"
    key_file.write_text("x" * 10 + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0" + "\n")
    key_file.chmod(0o644)
    shown = manage(*SHOW, env=clean_env(SECRET_KEY_FILE=str(key_file)))
    assert shown.returncode == 0 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "readable by others" in shown.stderr


def test_no_usable_key_refuses_to_start_with_one_line(tmp_path):
    blocked = tmp_path / "no-such-dir" / "secret"
    refused = manage("check", env=clean_env(SECRET_KEY_FILE=str(blocked)))
    assert refused.returncode != 0
    assert refused.stderr.strip().count("\n") == 0 and "Traceback" not in refused.stderr
    assert "SECRET_KEY is not set" in refused.stderr


def test_check_deploy_is_clean_with_the_documented_production_environment():
    production = manage("check", "--deploy", "--fail-level", "WARNING", env=clean_env(**PRODUCTION))
    assert production.returncode == 0, production.stderr
    assert "no issues" in production.stdout
    local = manage("check", "--deploy", env=clean_env())  # the local defaults say what is missing
    for warning in ("W004", "W008", "W012", "W016"):
        assert warning in local.stderr


def test_a_missing_page_is_not_the_technical_404_by_default():
    env = clean_env(**layer_env("postgres"))
    daphne = Daphne(env).wait_ready()
    try:
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{daphne.url}/no-such-page/", timeout=10)
        body = missing.value.read().decode()
        missing.value.close()
        assert missing.value.code == 404
        assert "URLconf" not in body and "DEBUG = True" not in body
    finally:
        daphne.stop()
    assert "DEBUG" not in os.environ or os.environ["DEBUG"] not in {"1", "true"}

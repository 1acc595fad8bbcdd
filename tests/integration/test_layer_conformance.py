"""channels_postgres's own test suite, as published on PyPI, run against pgnotify's layer.

The sdist of the installed channels_postgres version is fetched at test time (its tests are not
copied into this repository) and run unchanged in a subprocess, on this test database, with
tests/helpers/upstream_layer_plugin.py pointing it at `pgnotify.channel_layer.PostgresChannelLayer`.
Without PyPI the test is skipped, except under CI, where it fails.
"""

import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from importlib.metadata import version

import pytest

from tests.helpers.support import ROOT, process_env

pytestmark = [pytest.mark.once, pytest.mark.django_db(transaction=True)]

INI = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
timeout = 60
"""


def upstream_tests(directory) -> tuple[str, "os.PathLike"]:
    """(version, folder of the unpacked sdist) of the installed channels_postgres."""
    release = version("channels_postgres")
    fetch = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
         f"channels-postgres=={release}", "-d", str(directory)],
        capture_output=True, text=True, timeout=180, check=False)
    archives = sorted(directory.glob("channels_postgres-*.tar.gz"))
    if fetch.returncode != 0 or not archives:
        reason = f"channels-postgres {release} sdist not fetched from PyPI: {fetch.stderr.strip()[-300:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with tarfile.open(archives[0]) as archive:
        archive.extractall(directory, filter="data")
    return release, directory / f"channels_postgres-{release}"


def test_channels_postgres_own_suite_passes_on_pgnotify_layer(tmp_path):
    release, source = upstream_tests(tmp_path)
    (tmp_path / "pytest.ini").write_text(INI)
    report = tmp_path / "report.xml"
    env = process_env(UPSTREAM_LAYER="pgnotify", PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(source),
         "-p", "no:django", "-p", "no:cacheprovider", "-p", "tests.helpers.upstream_layer_plugin",
         f"--junitxml={report}", "-q", "tests/test_core.py"],
        cwd=source, env=env, capture_output=True, text=True, timeout=600, check=False)
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    print(f"\nchannels-postgres {release} test suite on pgnotify's layer: {counts}")
    assert run.returncode == 0, run.stdout[-3000:]
    assert counts["tests"] >= 22 and counts["failures"] == counts["errors"] == counts["skipped"] == 0, counts

"""Every shell command in README.md and docs/ works as written: each line of a ```bash block is
run here, in this checkout, against the test database (as on a fresh clone after `make run`'s
set-up), or is named below with the test that covers it instead. A new command in the docs that
this file does not know fails the test, so docs and tests stay together."""

import re
import signal
import subprocess

import pytest

from tests.helpers.support import ROOT, process_env

pytestmark = [pytest.mark.once, pytest.mark.django_db(transaction=True)]

# Commands covered elsewhere: each names the file that runs it and what in that file does (a test
# function, a CI line); test_commands_covered_elsewhere_are_run_there checks both are there.
COVERED_ELSEWHERE = {
    "make run": ("tests/e2e/test_serve_demo.py", "def test_serve_demo_serves_listens_and_stops_on_ctrl_c("),
    "make test": (".ci/run", "\nenv -u DATABASE_URL make test\n"),
    "make bench": ("tests/e2e/test_bench_live.py", "def test_smallest_live_bench_measures_every_row_and_cleans_up("),
    "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres make": (
        ".ci/run", "\nDATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres make test "),
    ".venv/bin/python -m pip install": ("tests/e2e/test_new_user.py", "def test_core_install_without_extras("),
    ".venv/bin/python manage.py runserver": ("tests/e2e/test_new_user.py", 'readme_command("runserver")'),
    # run by hand (a private server under valgrind, 15-20 minutes): the module is what the docs name
    ".venv/bin/python -m bench.": ("bench/writer_cost.py", "def main("),
}
# Long-running commands: started, awaited until ready, then stopped with Ctrl-C (SIGINT).
LONG_RUNNING = {"manage.py listen_notify": "': live"}


def documented_commands() -> list[tuple[str, str]]:
    commands = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
            for line in block.splitlines():
                command = re.sub(r"\s+#\s.*$", "", line).strip()  # without a trailing comment
                if command:
                    commands.append((str(path.relative_to(ROOT)), command))
    return commands


def kind(command: str) -> str:
    if any(command.startswith(prefix) for prefix in COVERED_ELSEWHERE):
        return "covered"
    if any(name in command and "--help" not in command for name in LONG_RUNNING):
        return "long"
    if ".venv/bin/python manage.py" in command:
        return "run"
    return "unknown"


def test_every_documented_command_is_known():
    unknown = [f"{where}: {command}" for where, command in documented_commands() if kind(command) == "unknown"]
    assert unknown == [], "documented commands no test runs: add them here"


def test_commands_covered_elsewhere_are_run_there():
    """Each exemption points at a file that holds what runs the command, and is still needed."""
    for prefix, (path, runs_it) in COVERED_ELSEWHERE.items():
        there = (ROOT / path).read_text() if (ROOT / path).is_file() else ""
        assert runs_it in there, f"{prefix!r}: {path} has no {runs_it!r}"
    documented = [command for _, command in documented_commands()]
    unused = [prefix for prefix in COVERED_ELSEWHERE if not any(c.startswith(prefix) for c in documented)]
    assert unused == [], "exemptions for commands the docs no longer have: remove them"


@pytest.mark.parametrize(("where", "command"), [c for c in documented_commands() if kind(c[1]) == "run"],
                         ids=lambda value: value[:60])
def test_documented_command_works(where, command):
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=process_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, f"{where}: `{command}` exited {result.returncode}: {result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("where", "command"), [c for c in documented_commands() if kind(c[1]) == "long"],
                         ids=lambda value: value[:60])
def test_documented_long_running_command_starts_and_stops(where, command):
    ready = next(text for name, text in LONG_RUNNING.items() if name in command)
    process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=process_env(PYTHONUNBUFFERED="1"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in process.stdout:  # until ready (the deadline is the test's timeout)
            seen.append(line)
            if ready in line:
                break
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0, seen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    assert any(ready in line for line in seen), f"{where}: `{command}` never printed {ready!r}: {seen[-10:]}"

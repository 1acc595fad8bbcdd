"""Every shell command in README.md and docs/ works as written: each line of a ```bash block is
run here, in this checkout, against the test database (as on a fresh clone after `make run`'s
set-up), or is named below with the test that covers it instead. A new command in the docs that
this file does not know fails the test, so docs and tests stay together."""

import re
import signal
import subprocess

import pytest

from tests.support import ROOT, process_env

pytestmark = [pytest.mark.once, pytest.mark.django_db(transaction=True)]

# Commands covered elsewhere (CI runs `make test`; the rest have tests of their own).
COVERED_ELSEWHERE = {
    "make run": "tests/test_serve_demo.py runs its last step; CI runs the set-up",
    "make test": "CI itself",
    "make bench": "bench/ (not part of the suite)",
    ".venv/bin/python -m bench.": "bench/ (not part of the suite: a private server, under valgrind for instructions)",
    "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres make": "CI runs make test with this DATABASE_URL",
    ".venv/bin/python -m pip install": "tests/test_new_user.py installs the wheel into fresh virtualenvs",
    ".venv/bin/python manage.py runserver": "tests/test_new_user.py serves the README's project with it",
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

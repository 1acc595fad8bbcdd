import pytest

from tests.support import ManagedProcess, start_listener

# Fixtures of the web side (daphne, channel layers, Chromium) for every test module.
pytest_plugins = ["tests.web"]


@pytest.fixture
def listener(transactional_db):
    """A live `listen_notify --json` subprocess on the test database."""
    started: list[ManagedProcess] = []

    def start(*args, **kwargs):
        process = start_listener(*args, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()

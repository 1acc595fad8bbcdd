"""Fixtures of the end-to-end tests."""

import uuid

import pytest

from bench import database
from bench.stack import redis_reachable


@pytest.fixture
def bench_database():
    """A database of the bench's own, migrated as `make bench` does, dropped after the test (the
    benches' smoke runs need the machine's Redis too)."""
    if not redis_reachable():
        pytest.skip("no Redis on 127.0.0.1:6379")
    server = database.with_database(database.base_url(), "postgres")
    name = f"pgnotify_bench_smoke_{uuid.uuid4().hex[:8]}"
    url = database.recreate(server, name)
    yield url
    database.drop(server, name)

"""Fixtures shared by the fault tests."""

import pytest

from tests.helpers.pooler import PgBouncer


@pytest.fixture
def pgbouncer(transactional_db):
    """A private PgBouncer in transaction mode in front of the test database."""
    bouncer = PgBouncer()
    yield bouncer
    bouncer.stop()

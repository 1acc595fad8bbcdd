"""Fixtures shared by the integration tests."""

import pytest

from tests.helpers import support


@pytest.fixture
def throwaway_database(db):
    """A database of its own, so migrating pgnotify back and forth leaves the test database alone."""
    with support.scratch_database("migrations") as name:
        yield name, support.database_url_for_tests().rsplit("/", 1)[0] + "/" + name

"""pytest fixtures for a project's own tests (pytest loads this plugin when pgnotify is installed).

    def test_a_shipped_order_sends_one_update(pgnotify_capture, order):
        with pgnotify_capture() as events:
            order.status = "shipped"
            order.save()
        assert [e["changed"] for e in events] == [["status"]]
"""

import pytest

from .testing import capture_events


@pytest.fixture
def pgnotify_capture(db):
    """`pgnotify.testing.capture_events`, in a test with pytest-django's database (one
    transaction per test, rolled back at its end)."""
    return capture_events

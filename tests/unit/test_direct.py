"""PGNOTIFY["DIRECT"] names known aliases (docs/operations.md; behind a real PgBouncer:
tests/faults/test_pooler.py)."""

import pytest
from django.conf import settings
from django.test import override_settings

from pgnotify import checks


@pytest.mark.once
@pytest.mark.parametrize(("direct", "expected"), [
    ({"default": "default"}, []),
    ({"default": "nope"}, ["pgnotify.E052"]),
    ({"nope": "default"}, ["pgnotify.E052"]),
    (["default"], ["pgnotify.E050"]),
])
def test_direct_names_known_aliases(direct, expected):
    with override_settings(PGNOTIFY={**settings.PGNOTIFY, "DIRECT": direct}):
        found = checks.check_settings() + checks.check_direct()
    assert [error.id for error in found] == expected
    assert all("\n" not in error.msg for error in found)

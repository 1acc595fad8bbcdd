"""Forwarders' configuration as the checks see it."""

from django.conf import settings
from django.test import override_settings

from pgnotify import checks


def handler_errors(handler: str, **options) -> list[str]:
    entry = {"handler": f"pgnotify.forwarding.{handler}", "channels": ["orders"], "options": options}
    with override_settings(PGNOTIFY={**settings.PGNOTIFY, "HANDLERS": [entry]}):
        found = checks.check_handlers()
    assert all(error.id == "pgnotify.E010" and "\n" not in error.msg for error in found)
    return [error.msg for error in found]

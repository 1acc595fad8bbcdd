"""Misconfiguration is reported by system checks (pgnotify.E00N), never by a traceback."""


import pytest
from django.conf import settings
from django.core import checks as django_checks
from django.test import override_settings

from pgnotify import checks

GOOD = settings.PGNOTIFY


PGNOTIFY_CHECKS = [checks.check_database, checks.check_settings, checks.check_watch, checks.check_cache_invalidate,
                   checks.check_listen, checks.check_retention, checks.check_handlers, checks.check_cache,
                   checks.check_channel_layer, checks.check_source, checks.check_collector]


def errors_with(**pgnotify) -> list:
    with override_settings(PGNOTIFY={**GOOD, **pgnotify}):
        found = [error for check in PGNOTIFY_CHECKS for error in check()]
    for error in found:
        assert error.level >= django_checks.WARNING and "\n" not in error.msg
    return found


def ids_with(**pgnotify) -> list[str]:
    return [error.id for error in errors_with(**pgnotify)]


def watching(label, options) -> dict:
    return {"WATCH": {**GOOD["WATCH"], label: options}}


def test_the_demo_settings_pass():
    assert errors_with() == []


@pytest.mark.parametrize(("pgnotify", "expected"), [
    ({"WATCH": ["shop.Order"]}, ["pgnotify.E002"]),
    ({"WATCH": "shop.Order"}, ["pgnotify.E002"]),
    (watching("shop.Nope", {"channel": "nope"}), ["pgnotify.E003"]),
    (watching("not-a-label", {"channel": "nope"}), ["pgnotify.E003"]),
    (watching("shop.Order", {"channel": "orders; DROP TABLE shop_order"}), ["pgnotify.E004"]),
    (watching("shop.Order", {"channel": "x" * 64}), ["pgnotify.E004"]),
    (watching("shop.Order", {"channel": ""}), ["pgnotify.E004"]),
    (watching("shop.Order", {}), ["pgnotify.E004"]),
    (watching("shop.Order", "orders"), ["pgnotify.E004"]),
    (watching("shop.Order", {"channel": "orders", "chanel": "typo"}), ["pgnotify.E014"]),
    (watching("auth.User", {"channel": "users", "exclude": ["pasword"]}), ["pgnotify.E015"]),
    (watching("auth.User", {"channel": "users", "exclude": "password"}), ["pgnotify.E005"]),
    ({"CACHE_INVALIDATE": ["users"]}, ["pgnotify.E006"]),
    ({"CACHE_INVALIDATE": {"shop.Nope": ["catalog"]}}, ["pgnotify.E016"]),
    ({"CACHE_INVALIDATE": {"shop.Product": []}}, ["pgnotify.E017"]),
    ({"CACHE_INVALIDATE": {"shop.Product": "catalog"}}, ["pgnotify.E017"]),
    ({"CACHE_INVALIDATE": {"shop.Product": [""]}}, ["pgnotify.E017"]),
    ({"LISTEN": ["system", "bad name"]}, ["pgnotify.E019"]),
    ({"LISTEN": "system"}, ["pgnotify.E007"]),
    ({"RETENSION": 3600}, ["pgnotify.E018"]),
    ({"RETENTION": "a day"}, ["pgnotify.E009"]),
    ({"RETENTION": 0}, ["pgnotify.E009"]),
    ({"RETENTION": True}, ["pgnotify.E009"]),
    ({"HANDLERS": "tests.helpers.handlers.record_sync"}, ["pgnotify.E023"]),
    ({"HANDLERS": ["tests.nowhere.handler"]}, ["pgnotify.E010"]),
    ({"HANDLERS": [{"handler": "tests.helpers.handlers.record_sync", "channel": ["orders"]}]},
     ["pgnotify.E010"]),
    ({"HANDLERS": [{"handler": "tests.helpers.handlers.record_sync", "options": {"x": 1}}]},
     ["pgnotify.E010"]),
    ({"HANDLERS": [{"handler": "pgnotify.forwarding.RedisStreamForwarder", "options": {"maxlength": 9}}]},
     ["pgnotify.E010"]),
    ({"HANDLERS": [{"handler": "tests.helpers.handlers.record_sync", "channels": ["bad name"]}]},
     ["pgnotify.E010"]),
    ({"CACHE": "nope"}, ["pgnotify.E011"]),
    ({"HANDLERS": [{"handler": "tests.helpers.faults.hang_forever", "timeout": "5"}]}, ["pgnotify.E010"]),
    ({"HANDLERS": [{"handler": "tests.helpers.faults.hang_forever", "timeout": 0}]}, ["pgnotify.E010"]),
    ({"HANDLERS": [{"handler": "tests.helpers.faults.hang_forever", "timout": 5}]}, ["pgnotify.E010"]),
    ({"HANDLERS": [{"handler": "tests.helpers.faults.hang_forever", "channels": ["orders"], "timeout": 2.5}]}, []),
    ({"SOURCE": "kafka"}, ["pgnotify.E030"]),
    (watching("shop.Order", {"channel": "orders", "replica_identity": "nothing"}), ["pgnotify.E031"]),
    ({"WAL_RETAINED_WARNING": 0}, ["pgnotify.E035"]),
    ({"WAL_RETAINED_WARNING": "1GB"}, ["pgnotify.E035"]),
    ({"GC_FREEZE": "yes"}, ["pgnotify.E087"]),
    ({"GC_THAW": 0}, ["pgnotify.E088"]),
    ({"GC_THAW": True}, ["pgnotify.E088"]),
], ids=lambda value: None if isinstance(value, dict) else str(value))
def test_bad_settings_are_reported(pgnotify, expected):
    assert ids_with(**pgnotify) == expected


def test_errors_name_what_is_wrong_and_hint_at_the_fix():
    (unknown,) = errors_with(**watching("shop.Nope", {"channel": "nope"}))
    assert "'shop.Nope'" in unknown.msg and "app_label.ModelName" in unknown.hint
    (excluded,) = errors_with(**watching("auth.User", {"channel": "users", "exclude": ["pasword"]}))
    assert "'pasword'" in excluded.msg and "password" in excluded.hint




def test_good_handler_entries_and_a_timedelta_retention_pass():
    from datetime import timedelta

    assert ids_with(RETENTION=timedelta(days=7), HANDLERS=[
        "tests.helpers.handlers.record_sync",
        {"handler": "pgnotify.forwarding.RedisStreamForwarder", "channels": ["orders"], "options": {"maxlen": 10}},
    ]) == []


def test_a_process_local_cache_is_a_warning():
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=caches):
        (warning,) = checks.check_cache()
    assert warning.id == "pgnotify.W001" and warning.level == django_checks.WARNING


def test_the_channel_layer_needs_its_app():
    layers = {"default": {"BACKEND": "pgnotify.channel_layer.PostgresChannelLayer"}}
    apps = [app for app in settings.INSTALLED_APPS if app != "channels_postgres"]
    with override_settings(CHANNEL_LAYERS=layers, INSTALLED_APPS=apps):
        (error,) = checks.check_channel_layer()
    assert error.id == "pgnotify.E013" and "channels_postgres" in error.hint


def test_an_installed_chat_whose_pages_are_not_routed_is_a_warning():
    from pgnotify.contrib.chat.checks import check_pages_routed

    assert check_pages_routed() == []  # the demo project includes them
    with override_settings(ROOT_URLCONF="pgnotify.urls"):
        (warning,) = check_pages_routed()
        assert warning.id in {e.id for e in django_checks.run_checks(tags=[django_checks.Tags.urls])}
    assert warning.id == "pgnotify_chat.W001" and 'include("pgnotify.contrib.chat.urls")' in warning.hint


def test_the_listener_refuses_handlers_that_are_not_a_list_with_the_checks_line():
    from pgnotify.exceptions import HandlerConfigError
    from pgnotify.handlers.entries import configured_handlers

    (error,) = errors_with(HANDLERS="tests.helpers.handlers.record_sync")
    with override_settings(PGNOTIFY={**GOOD, "HANDLERS": "tests.helpers.handlers.record_sync"}), \
            pytest.raises(HandlerConfigError) as refused:
        configured_handlers()
    assert str(refused.value) == error.msg

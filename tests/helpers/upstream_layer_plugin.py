"""A pytest plugin that runs channels_postgres's own test suite (from its sdist) against a layer.

Loaded with `-p tests.helpers.upstream_layer_plugin` by tests/integration/test_layer_conformance.py; configuration
only, the suite itself is run as published:
- Django is configured here (upstream's tests read `settings.DATABASES["channels_postgres"]`)
  from DATABASE_URL, the test database whose channels_postgres tables migrate created;
- with UPSTREAM_LAYER=pgnotify, the name `PostgresChannelLayer` in upstream's test module (which
  its fixture and its tests construct) is pgnotify's layer instead of channels_postgres's.
"""

import os

import dj_database_url
from django.conf import settings

_database = dj_database_url.parse(os.environ["DATABASE_URL"])
settings.configure(
    INSTALLED_APPS=["channels_postgres"],
    DATABASES={"default": _database, "channels_postgres": dict(_database)},
    USE_TZ=True,
)


def pytest_collection_modifyitems(session, config, items):
    if os.environ.get("UPSTREAM_LAYER") != "pgnotify":
        return
    from pgnotify.channel_layer import PostgresChannelLayer

    for module in {item.module for item in items}:
        module.PostgresChannelLayer = PostgresChannelLayer

"""Third-party internals pgnotify reaches into are all there under the versions it pins: when an
upgrade removes one, these fail loudly instead of a fast path turning itself off unnoticed. (The
daphne fast path is checked under a real daphne in tests/e2e/test_fanout_daphne.py.)"""

import ast
import inspect
import uuid

import pytest
from channels_postgres import core
from channels_postgres.db import DatabaseLayer
from channels_redis.core import RedisChannelLayer

from pgnotify.web.layers import postgres, redis

# pgnotify's subclasses of channels_postgres's classes, each with a way to make an upstream instance.
UPSTREAM = {
    postgres.PostgresChannelLayer: lambda: core.PostgresChannelLayer(**postgres.default_database()),
    postgres.PooledDatabaseLayer: lambda: DatabaseLayer({}, {"dbname": "x"}),
}


def upstream_attributes_read(ours: type) -> set[str]:
    """The `self.<name>` that the code of `ours` reads and neither defines in its class body nor
    assigns in its own __init__: what it expects upstream's class or __init__ to provide."""
    tree = ast.parse(inspect.getsource(ours).strip())
    read = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "self" and isinstance(node.ctx, ast.Load)}
    init = next((node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "__init__"),
                None)
    assigned = set() if init is None else {
        node.attr for node in ast.walk(init) if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)}
    return read - set(vars(ours)) - assigned


def test_the_redis_layer_takes_the_fast_path():
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:6379/3"], prefix=f"t{uuid.uuid4().hex[:8]}")
    missing = [name for name in redis.INTERNALS_USED if not hasattr(layer, name)]
    assert missing == [], f"channels_redis lacks {missing} (verified with {redis.VERIFIED_WITH})"
    assert redis.fast_path(layer)


@pytest.mark.parametrize("cls", list(postgres.INTERNALS_USED))
def test_the_postgres_layer_finds_what_it_overrides_and_calls(cls):
    missing = [name for name in postgres.INTERNALS_USED[cls] if not hasattr(cls, name)]
    assert missing == [], f"{cls.__qualname__} lacks {missing} (verified with {postgres.VERIFIED_WITH})"


@pytest.mark.parametrize("ours", list(UPSTREAM), ids=lambda cls: cls.__name__)
def test_the_postgres_layer_finds_the_instance_attributes_it_reads(ours):
    """What upstream's __init__ sets (`listener_task_is_running`, `_channel_advisory_locks`,
    `db_params`...) is not on the class: only an instance of upstream's class shows it."""
    upstream = UPSTREAM[ours]()
    missing = sorted(name for name in upstream_attributes_read(ours) if not hasattr(upstream, name))
    assert missing == [], f"{type(upstream).__qualname__} no longer provides {missing} " \
                          f"(verified with {postgres.VERIFIED_WITH})"


def test_the_reading_of_the_source_finds_the_attributes_upstream_sets():
    assert {"listener_task_is_running", "_channel_advisory_locks", "event_loop", "db_params", "group_expiry",
            "expiry"} <= upstream_attributes_read(postgres.PostgresChannelLayer)
    assert {"db_params"} <= upstream_attributes_read(postgres.PooledDatabaseLayer)


def test_a_layer_without_the_internals_falls_back_to_the_public_api():
    class Wrapped:  # e.g. a layer wrapped by middleware: same API, none of channels_redis's internals
        pass

    assert not redis.fast_path(Wrapped())

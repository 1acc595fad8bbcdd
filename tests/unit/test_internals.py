"""Third-party internals pgnotify reaches into are all there under the versions it pins: when an
upgrade removes one, these fail loudly instead of a fast path turning itself off unnoticed. (The
daphne fast path is checked under a real daphne in test_fanout_daphne.)"""

import uuid

import pytest
from channels_redis.core import RedisChannelLayer

from pgnotify.web.layers import postgres, redis


def test_the_redis_layer_takes_the_fast_path():
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:6379/3"], prefix=f"t{uuid.uuid4().hex[:8]}")
    missing = [name for name in redis.INTERNALS_USED if not hasattr(layer, name)]
    assert missing == [], f"channels_redis lacks {missing} (verified with {redis.VERIFIED_WITH})"
    assert redis.fast_path(layer)


@pytest.mark.parametrize("cls", list(postgres.INTERNALS_USED))
def test_the_postgres_layer_finds_what_it_overrides_and_calls(cls):
    missing = [name for name in postgres.INTERNALS_USED[cls] if not hasattr(cls, name)]
    assert missing == [], f"{cls.__qualname__} lacks {missing} (verified with {postgres.VERIFIED_WITH})"


def test_a_layer_without_the_internals_falls_back_to_the_public_api():
    class Wrapped:  # e.g. a layer wrapped by middleware: same API, none of channels_redis's internals
        pass

    assert not redis.fast_path(Wrapped())

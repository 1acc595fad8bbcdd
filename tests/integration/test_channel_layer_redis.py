"""The dashboard's path on channels_redis: group_send in two round trips and batched receives,
with the effects of upstream's own (members and messages expire, capacity holds, process-specific
channels still served by upstream's receive)."""

import asyncio
import uuid

import pytest
from channels_redis.core import RedisChannelLayer

from notifyproject import settings as settings_module
from pgnotify.web.layers import dispatch as channel_layer
from pgnotify.web.layers import redis as redis_layer
from tests.helpers.web import REDIS_HOST, REDIS_PORT, redis_reachable

pytestmark = pytest.mark.skipif(not redis_reachable(), reason=f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}")


@pytest.fixture
async def layer():
    layer = RedisChannelLayer(hosts=[f"redis://{REDIS_HOST}:{REDIS_PORT}/3"], prefix=f"test{uuid.uuid4().hex[:8]}",
                              capacity=10)
    yield layer
    await layer.flush()


async def test_a_group_message_reaches_a_plain_and_a_process_specific_member(layer):
    plain = await channel_layer.new_receive_channel(layer, "pgnotify.test")
    specific = await layer.new_channel()
    assert "!" not in plain and redis_layer.fast_path(layer)
    await layer.group_add("g", plain)
    await layer.group_add("g", specific)

    await channel_layer.group_send(layer, "g", {"type": "x.y", "n": 1})
    assert await asyncio.wait_for(channel_layer.receive_batch(layer, plain), 5) == [{"type": "x.y", "n": 1}]
    assert await asyncio.wait_for(layer.receive(specific), 5) == {"type": "x.y", "n": 1}


async def test_waiting_messages_come_in_one_batch_in_order_and_capacity_holds(layer):
    plain = await channel_layer.new_receive_channel(layer, "pgnotify.test")
    await layer.group_add("g", plain)
    for n in range(15):  # capacity 10: the last five are dropped, as upstream's group_send does
        await channel_layer.group_send(layer, "g", {"type": "x.y", "n": n})
    batch = await asyncio.wait_for(channel_layer.receive_batch(layer, plain), 5)
    assert [m["n"] for m in batch] == list(range(10))


async def test_an_idle_receive_waits_for_the_next_message(layer):
    plain = await channel_layer.new_receive_channel(layer, "pgnotify.test")
    await layer.group_add("g", plain)
    receiving = asyncio.ensure_future(channel_layer.receive_batch(layer, plain))
    await asyncio.sleep(redis_layer.RECEIVE_BLOCK * 1.5)  # past one blocking pop: still waiting
    assert not receiving.done()
    await channel_layer.group_send(layer, "g", {"type": "x.y", "n": 2})
    assert await asyncio.wait_for(receiving, 5) == [{"type": "x.y", "n": 2}]


async def test_members_that_expired_are_left_out(layer):
    layer.group_expiry = 1
    gone = await channel_layer.new_receive_channel(layer, "pgnotify.test")
    await layer.group_add("g", gone)
    connection = layer.connection(layer.consistent_hash("g"))
    await connection.zadd(layer._group_key("g"), {gone: 1.0})  # joined long ago, never renewed
    await channel_layer.group_send(layer, "g", {"type": "x.y"})
    assert await connection.zcard(layer._group_key("g")) == 0
    assert await connection.exists(layer.prefix + gone) == 0


async def test_members_joining_and_leaving_between_sends_are_seen_at_once(layer):
    first = await channel_layer.new_receive_channel(layer, "pgnotify.test")
    await layer.group_add("g", first)
    await channel_layer.group_send(layer, "g", {"type": "x.y", "n": 1})  # members now known
    second = await channel_layer.new_receive_channel(layer, "pgnotify.test")
    await layer.group_add("g", second)
    await channel_layer.group_send(layer, "g", {"type": "x.y", "n": 2})
    await layer.group_discard("g", first)
    await channel_layer.group_send(layer, "g", {"type": "x.y", "n": 3})

    assert [m["n"] for m in await asyncio.wait_for(channel_layer.receive_batch(layer, first), 5)] == [1, 2]
    assert [m["n"] for m in await asyncio.wait_for(channel_layer.receive_batch(layer, second), 5)] == [2, 3]


@pytest.mark.parametrize("configured", [True, False], ids=["as configured", "redis-py defaults"])
async def test_a_consumer_idle_past_the_blocking_receive_still_receives(configured):
    """redis-py's default socket timeout is as long as channels_redis's blocking pop: a receive
    with nothing to take for that long failed (a quiet chat room closed with code 1011)."""
    url, prefix = f"redis://{REDIS_HOST}:{REDIS_PORT}/3", f"test{uuid.uuid4().hex[:8]}"
    config = settings_module.redis_channel_layer(url, prefix)["CONFIG"] if configured else {"hosts": [url],
                                                                                            "prefix": prefix}
    layer = RedisChannelLayer(**config)
    try:
        channel = await layer.new_channel()
        receiving = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(layer.brpop_timeout + 1.5)  # past one blocking pop with nothing to take
        if not configured:
            assert receiving.done() and isinstance(receiving.exception(), Exception)
            return
        assert not receiving.done()
        await layer.send(channel, {"type": "x.y", "n": 3})
        assert await asyncio.wait_for(receiving, 5) == {"type": "x.y", "n": 3}
    finally:
        await layer.flush()

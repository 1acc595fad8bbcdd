"""channels_redis: the dashboard's path in fewer round trips.

Reaches into channels_redis internals (verified against channels-redis 4.3.0; the upper bound in
pyproject.toml keeps untested versions out): `_group_key`, `connection`, `consistent_hash`,
`ring_size`, `_map_channel_keys_to_connection`, `group_expiry`, `expiry`, `prefix` and
`deserialize`. When one is missing, `fast_path(layer)` is False and pgnotify.web.layers.dispatch
uses the layer's public API instead (correct, slower); a test fails loudly when that happens.

Upstream's group_send takes four round trips (expire members, read members, expire messages,
store) and its receive three per message (restore a backup, pop, back the message up) plus one
more to drop the backup. For the dashboard fan-out (one member per web process, a message every
few milliseconds) these functions do the same work in one round trip per group message (two
when the group's members changed) and one per batch received. Other layers, and wrapped ones,
are used as they are.
"""

import logging
import time
import uuid

from ...extras import require
from .dispatch import FANOUT_CHANNEL

require("channels_redis", "redis", "the Redis channel layer")

from channels_redis.core import RedisChannelLayer  # noqa: E402

logger = logging.getLogger(__name__)

VERIFIED_WITH = "channels-redis 4.3.0"
INTERNALS_USED = ["_group_key", "connection", "consistent_hash", "ring_size", "_map_channel_keys_to_connection",
                  "group_expiry", "expiry", "prefix", "deserialize", "require_valid_group_name",
                  "require_valid_channel_name"]

RECEIVE_BATCH = 100  # messages taken off a channel in one round trip
# A fan-out channel (one per web process: pgnotify.web.fanout) holds every message of its group
# for the whole process; a message it drops makes every live view of the process catch up. A
# stall of the process (a full garbage collection, a burst) must not overflow it, so unless the
# layer's `channel_capacity` names it, it holds at least this many (the layer's `capacity` is
# meant for one consumer's channel).
FANOUT_CAPACITY = 10_000
# A blocking pop well inside any client socket timeout (the project's settings: 15 s; redis-py's
# default: 5 s, as long as upstream's own blocking receive).
RECEIVE_BLOCK = 1.0
# Stores a group message on each member channel's key, as upstream's script does, after dropping
# expired messages. With a member list (ARGV[1]) it first drops expired members and checks that
# the group's members are still those: if not, it stores nothing and returns -1.
GROUP_SEND_LUA = """
local count = #KEYS - 1
if ARGV[1] ~= '' then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[2])
    if table.concat(redis.call('ZRANGE', KEYS[1], 0, -1), '\\n') ~= string.sub(ARGV[1], 2) then
        return -1
    end
end
local base = 6
local now, expiry, expired_before = ARGV[3], ARGV[4], ARGV[5]
local over_capacity = 0
for i = 1, count do
    local key = KEYS[i + 1]
    redis.call('ZREMRANGEBYSCORE', key, 0, expired_before)
    if redis.call('ZCARD', key) < tonumber(ARGV[base + count + i - 1]) then
        redis.call('ZADD', key, now, ARGV[base + i - 1])
        redis.call('EXPIRE', key, expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""
_members: dict[tuple[int, str], list[str]] = {}  # (id of layer, group) -> its members when last read
MEMBER_LISTS_KEPT = 1000


_fast: dict[type, bool] = {}  # layer class -> whether it has every internal used


def fast_path(layer) -> bool:
    """True when `layer` is a channels_redis layer with every internal these functions use."""
    kind = type(layer)
    if kind not in _fast:
        missing = [name for name in INTERNALS_USED if not hasattr(layer, name)]
        if isinstance(layer, RedisChannelLayer) and missing:
            logger.warning("channels_redis fast path off (verified with %s; missing here: %s): using its "
                           "public API", VERIFIED_WITH, ", ".join(missing))
        _fast[kind] = isinstance(layer, RedisChannelLayer) and not missing
    return _fast[kind]


def new_receive_channel(name: str) -> str:
    """A plain (not process-specific) channel name, so that receive_batch can take its messages off
    its own key, many at a time."""
    return f"{name}.{uuid.uuid4().hex}"


async def group_send(layer, group: str, message: dict) -> None:
    """layer.group_send(group, message), with the same effects (expired members and messages
    dropped, capacity per channel respected), with one server: in one round trip while the group's
    members stay the same (the script checks them), two when they changed."""
    assert layer.require_valid_group_name(group), "Group name not valid"
    key = layer._group_key(group)
    connection = layer.connection(layer.consistent_hash(group))
    single = layer.ring_size == 1
    known = _members.get((id(layer), group)) if single else None
    if known is not None and await _store(layer, group, key, known, message, checked=True) >= 0:
        return
    pipe = connection.pipeline(transaction=False)
    pipe.zremrangebyscore(key, min=0, max=int(time.time()) - layer.group_expiry)
    pipe.zrange(key, 0, -1)
    _, members = await pipe.execute()
    names = [member.decode("utf8") for member in members]
    if single:
        if len(_members) >= MEMBER_LISTS_KEPT:  # e.g. many chat rooms over time: start afresh
            _members.clear()
        _members[(id(layer), group)] = names
    await _store(layer, group, key, names, message, checked=False)


async def _store(layer, group: str, group_key: bytes, names: list[str], message: dict, checked: bool) -> int:
    """The message on every member's channel; -1 if `checked` and the members are no longer `names`."""
    by_connection, messages, capacities = layer._map_channel_keys_to_connection(names, message)
    for name in names:
        if name.startswith(FANOUT_CHANNEL + ".") and not _capacity_configured(layer, name):
            key = layer.prefix + name
            capacities[key] = max(capacities[key], FANOUT_CAPACITY)
    if checked and not by_connection:
        by_connection = {0: []}  # no members: the script still checks that there are none
    over = 0
    for index, keys in by_connection.items():
        now = time.time()
        expected = "\n" + "\n".join(names) if checked else ""  # "" means: do not check
        args = [expected, int(now) - layer.group_expiry, now, layer.expiry, int(now) - int(layer.expiry),
                *(messages[k] for k in keys), *(capacities[k] for k in keys)]
        result = await layer.connection(index).eval(GROUP_SEND_LUA, len(keys) + 1, group_key, *keys, *args)
        if result < 0:
            return result
        over += result
    if over:
        logger.info("%s of %s channels over capacity in group %s", over, len(names), group)
    return over


def _capacity_configured(layer, channel: str) -> bool:
    """Whether the layer's `channel_capacity` patterns give this channel a capacity of its own."""
    return any(pattern.match(channel) for pattern, _ in getattr(layer, "channel_capacity", ()))


async def receive_batch(layer, channel: str) -> list[dict]:
    """The messages waiting on `channel` (a name from new_receive_channel), at least one: up to
    RECEIVE_BATCH in one round trip, or, when there are none, the next one as soon as it comes."""
    assert layer.require_valid_channel_name(channel, receive=True), "Channel name invalid"
    key = layer.prefix + channel
    connection = layer.connection(layer.consistent_hash(channel))
    members = [member for member, _ in await connection.zpopmin(key, RECEIVE_BATCH)]
    while not members:
        popped = await connection.bzpopmin(key, timeout=RECEIVE_BLOCK)
        if popped is not None:
            members = [popped[1]]
    messages = []
    for member in members:
        message = layer.deserialize(member)
        message.pop("__asgi_channel__", None)
        messages.append(message)
    return messages

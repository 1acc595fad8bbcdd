"""Channel-layer calls of the dashboard path, through the fastest way the layer allows.

On channels_redis (with every internal pgnotify.web.layers.redis relies on) a group message
takes one round trip and a receive takes everything waiting; any other layer is used through its
public API. channels_redis is imported only when the layer in use comes from it.
"""

import sys

FANOUT_CHANNEL = "pgnotify.fanout"  # the name of each process's fan-out channel (a unique suffix follows)


def _redis_fast_path(layer):
    """pgnotify.web.layers.redis when `layer` can take its fast path, else None."""
    if "channels_redis.core" not in sys.modules:
        return None  # channels_redis was never imported: the layer cannot be one of its
    from . import redis

    return redis if redis.fast_path(layer) else None


async def new_receive_channel(layer, name: str) -> str:
    """A channel only this process receives from. On Redis a plain (not process-specific) name,
    so that receive_batch can take its messages off its own key, many at a time."""
    fast = _redis_fast_path(layer)
    return fast.new_receive_channel(name) if fast is not None else await layer.new_channel()


async def group_send(layer, group: str, message: dict) -> None:
    """layer.group_send(group, message), in fewer round trips where the layer allows."""
    fast = _redis_fast_path(layer)
    if fast is None:
        await layer.group_send(group, message)
    else:
        await fast.group_send(layer, group, message)


def receives_in_batches(layer, channel: str) -> bool:
    """Whether receive_batch returns everything waiting on `channel` (else one message a call)."""
    return _redis_fast_path(layer) is not None and "!" not in channel


async def receive_batch(layer, channel: str) -> list[dict]:
    """The messages waiting on `channel` (a name from new_receive_channel), at least one."""
    if not receives_in_batches(layer, channel):
        return [await layer.receive(channel)]
    return await _redis_fast_path(layer).receive_batch(layer, channel)

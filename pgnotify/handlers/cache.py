"""The listener's cache handler: invalidates the tags named on `cache_invalidate` and keeps the
heartbeat that lets readers use the cache (see pgnotify.cache for the scheme)."""

import asyncio
import logging
import re

from asgiref.sync import sync_to_async

from ..cache import invalidate, invalidate_all, stop_heartbeat, write_heartbeat
from ..exceptions import one_line
from ..listener.channels import CACHE_INVALIDATE
from .threads import leave_current_behind

logger = logging.getLogger(__name__)

# Seconds one cache call may take. A backend that does not answer (a database or Redis behind a
# dead network) counts as failing: readers bypass the cache, and the listener goes on.
CALL_TIMEOUT = 5.0
_SPLIT = re.compile(r"[\s,]+")


def tags_of(notification) -> list[str]:
    """The tags a cache_invalidate notification names: the trigger's {"tags": [...]}, a JSON
    list or string, or plain text such as `users` or `users,catalog`."""
    data = notification.data
    if not notification.is_json:
        return [tag for tag in _SPLIT.split(notification.payload) if tag]
    if isinstance(data, dict):
        data = data.get("tags") or ([data["table"]] if isinstance(data.get("table"), str) else [])
    if isinstance(data, str):
        data = [data]
    if isinstance(data, list):
        return [tag for tag in data if isinstance(tag, str) and tag]
    return []


class CacheInvalidator:
    """Listener handler: bumps the tags named on `cache_invalidate`, bumps the generation when
    the listener goes live and keeps the heartbeat while it is live. Cache calls run in the
    handler's thread (Django's cache API is sync), each within CALL_TIMEOUT; a burst of
    notifications is one write."""

    channels = frozenset({CACHE_INVALIDATE})

    def __init__(self, using: str | None = None):
        self.using = using
        self.live = False
        self.bumps = 0
        self._pending: set[str] = set()
        self._bumper: asyncio.Future | None = None
        # Set while an invalidation may have been missed: the generation must be bumped before
        # the heartbeat is written again.
        self._must_bump_generation = True
        self._failing = False

    async def handle(self, notification) -> None:
        tags = tags_of(notification)
        if not tags:
            return
        self._pending.update(tags)
        if self._bumper is None or self._bumper.done():
            self._bumper = asyncio.ensure_future(self._drain())

    async def notice(self, notice: dict) -> None:
        if notice.get("type") != "listener":
            return
        if notice.get("state") == "live":
            self.live, self._must_bump_generation = True, True
            await self._beat()
        elif self.live:
            # Not listening any more: readers must bypass the cache at once, not after the TTL.
            self.live, self._must_bump_generation = False, True
            await self._call(stop_heartbeat, self.using)

    async def flush(self) -> None:
        if self._bumper is not None and not self._bumper.done():
            await self._bumper
        if self.live:
            await self._beat()

    # -- cache writes, in a worker thread

    async def _drain(self) -> None:
        while self._pending:
            tags, self._pending = list(self._pending), set()
            done = False
            try:
                done = await self._call(invalidate, tags, self.using)
            finally:
                if not done:  # failed, or cancelled half-way: the generation bump will cover these tags
                    self._must_bump_generation = True
            if done:
                self.bumps += 1
                logger.debug("invalidated cache tags %s", tags)
            else:
                await self._call(stop_heartbeat, self.using)

    async def _beat(self) -> None:
        if self._must_bump_generation:
            if not await self._call(invalidate_all, self.using):
                return
            self._must_bump_generation = False
        await self._call(write_heartbeat, self.using)

    async def _call(self, function, *args) -> bool:
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await sync_to_async(function, thread_sensitive=True)(*args)
        except Exception as error:  # cache backends raise their own errors; the listener goes on
            if isinstance(error, TimeoutError):
                leave_current_behind()  # the next call gets a fresh thread, and a fresh connection
                error = TimeoutError(f"no answer from the cache within {CALL_TIMEOUT:g} s")
            if not self._failing:
                logger.warning("cache invalidation failed, cached reads bypass the cache until it works: %s",
                               one_line(error))
            self._failing = True
            return False
        if self._failing:
            logger.info("cache invalidation works again")
            self._failing = False
        return True

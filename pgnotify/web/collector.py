"""Short full collections in processes that hold many sockets.

Each open websocket is some 200 objects of daphne, Twisted, autobahn and channels that live as
long as it does; 5,000 sockets are a million. CPython's full collection walks all of them each
time the oldest generation has grown by a quarter, and over a million objects that walk takes
most of a second, during which the process sends nothing (docs/benchmarks.md, "Live streams").

The policy: the survivors of a full collection are frozen (`gc.freeze()`), so the next one walks
only the objects made since. What a closed socket leaves as cyclic garbage (about 110 objects,
measured) then waits for a thaw, when the frozen objects go back to the collector and the next
full pass walks everything once. A thaw comes once the sockets closed since the last one reach a
quarter of those open (CPython's own ratio, counted in sockets), or after GC_THAW seconds: the
walks stay proportional to the garbage a process makes, and the memory it holds back bounded.
A full pass also runs every COLLECT_INTERVAL seconds on the process's event loop: each walks only
that second's new objects (a few milliseconds), where Python's own, due once the objects made
since the last pass reach a quarter of its survivors, came seldom and long after a thaw.
`PGNOTIFY["GC_FREEZE"] = False` leaves Python's collector as it is.
"""

import asyncio
import gc
import logging
import time
import weakref

from .. import conf

logger = logging.getLogger(__name__)
COLLECT_INTERVAL = 1.0  # seconds between the full passes the policy runs itself


class FreezeSurvivors:
    """The gc callback, and the count of this process's sockets that decides when to thaw."""

    def __init__(self, thaw_seconds: float, clock=time.monotonic):
        self.thaw_seconds, self.clock = thaw_seconds, clock
        self.thawed_at = clock()
        self.open = 0  # sockets open now
        self.closed = 0  # sockets closed since the last thaw

    def opened(self) -> None:
        self.open += 1

    def closed_one(self) -> None:
        self.open = max(0, self.open - 1)  # opened before the policy was on
        self.closed += 1

    def due(self) -> bool:
        return self.closed * 4 > self.open or self.clock() - self.thawed_at >= self.thaw_seconds

    def __call__(self, phase: str, info: dict) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        if self.due():
            self.thawed_at, self.closed = self.clock(), 0
            gc.unfreeze()  # the next full pass walks everything and frees the frozen garbage
        else:
            gc.freeze()


_policy: FreezeSurvivors | None = None


def install() -> FreezeSurvivors | None:
    """The policy of this process, applied on the first call if the settings ask for it."""
    global _policy
    if _policy is None and conf.get("GC_FREEZE"):
        _policy = FreezeSurvivors(conf.get("GC_THAW"))
        gc.callbacks.append(_policy)
        logger.debug("full collections freeze their survivors (docs/live.md)")
    return _policy


_ticking: weakref.WeakSet = weakref.WeakSet()  # event loops that run the periodic full pass


def socket_opened() -> None:
    policy = install()
    if policy is not None:
        policy.opened()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: no periodic pass
            return
        if loop not in _ticking:
            _ticking.add(loop)
            loop.call_later(COLLECT_INTERVAL, _collect, loop)


def _collect(loop: asyncio.AbstractEventLoop) -> None:
    gc.collect()  # the policy's callback freezes what survives
    loop.call_later(COLLECT_INTERVAL, _collect, loop)


def socket_closed() -> None:
    if _policy is not None:
        _policy.closed_one()

"""Waiting for what another thread, task or process brings about: one semantics, sync and async.

`eventually(predicate)` calls `predicate` until it returns something truthy and returns that; when
`within` seconds pass first, the test fails with an AssertionError that says what was awaited
(`what`, a text or a function giving one; by default the predicate's source line) and the last
value seen. Nothing sleeps a fixed time: the wait ends as soon as the condition holds.
"""

import asyncio
import inspect
import time


def eventually(predicate, within: float = 10.0, what=None, interval: float = 0.05):
    """Poll `predicate` (it reads another process, a thread's state or the database) until truthy."""
    deadline = time.monotonic() + within
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(predicate, within, what, result))
        time.sleep(interval)
    return result


async def eventually_async(predicate, within: float = 10.0, what=None, wake: asyncio.Event | None = None):
    """The same in an event loop, where `predicate` may also return an awaitable (a query run in a
    thread): between two calls, `wake` is awaited when something sets it on each change (no
    polling), else the loop sleeps a little while other tasks run."""
    last = None

    async def until_true():
        nonlocal last
        while not (last := await _value(predicate())):
            if wake is None:
                await asyncio.sleep(0.02)
            else:
                wake.clear()
                await wake.wait()
        return last

    try:
        return await asyncio.wait_for(until_true(), within)
    except TimeoutError:
        raise AssertionError(_timed_out(predicate, within, what, last)) from None


async def _value(result):
    return await result if inspect.isawaitable(result) else result


def _timed_out(predicate, within: float, what, last) -> str:
    if what is None:
        try:
            what = inspect.getsource(predicate).strip()
        except (OSError, TypeError):
            what = repr(predicate)
    elif callable(what):
        what = what()
    return f"timed out after {within} s waiting for {what} (last value: {last!r})"

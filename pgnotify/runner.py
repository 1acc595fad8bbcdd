"""Runs a listener until SIGINT/SIGTERM, printing statistics as it goes.

A stop takes at most STOP_WITHIN seconds, whatever a handler does: the listener gets
LISTENER_GRACE seconds to record its position (only over what every handler has taken) and
close its connections, then is cut off; the handlers get what is left to take their last
notices, then their lanes are stopped and a call stuck in a handler's thread is left behind.
"""

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time

from .handlers.dispatcher import Dispatcher
from .handlers.output import Output
from .listener import ListenerOptions
from .listener.base import BaseListener
from .listener.throttle import ThrottledLog
from .sources import make_listener

logger = logging.getLogger(__name__)

STOP_WITHIN = 8.0  # seconds from SIGINT/SIGTERM until run_listener returns
LISTENER_GRACE = 5.0  # of which the listener may take this many to stop by itself
LEFT_TASKS_WITHIN = 0.5  # seconds tasks left on the loop get to end once cancelled
EXIT_WITHIN = 1.0  # seconds the process may take to exit once the loop is closed
LOG_FLUSH_INTERVAL = 1.0  # counted warnings (ThrottledLog) are reported this often once due


def run(main):
    """`asyncio.run(main)` for a process that must stop on time: tasks still on the loop when
    `main` returns (a channel layer's pool retrying a connection, say) get LEFT_TASKS_WITHIN
    seconds to end once cancelled, and are left behind after that."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.wait(left, timeout=LEFT_TASKS_WITHIN))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.set_exception_handler(_quiet_about_left_tasks)
            loop.close()  # does not wait for the default executor's threads


def exit_backstop(seconds: float = EXIT_WITHIN) -> None:
    """For a command line process about to exit: if its exit is held up for longer than `seconds`
    (the interpreter joining a thread stuck in a handler's call), end it there and then."""
    def exit_now() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()


def _quiet_about_left_tasks(loop, context) -> None:
    if "Task was destroyed but it is pending" not in context.get("message", ""):
        loop.default_exception_handler(context)


async def run_listener(conninfo: dict, options: ListenerOptions, output: Output, handlers=(),
                       stats_interval: float = 0, stop: asyncio.Event | None = None) -> BaseListener:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    dispatcher = Dispatcher([output, *handlers])
    listener = make_listener(conninfo, options, dispatcher)
    for handler in handlers:
        if hasattr(handler, "attach"):
            handler.attach(listener)  # handlers that report the listener's statistics
    background = [asyncio.create_task(_flush_logs(stop))]
    if stats_interval:
        background.append(asyncio.create_task(_print_stats(listener, output, stats_interval, stop)))
    try:
        stopped_at = await _run_until_stopped(listener, dispatcher, stop)
    finally:
        for task in background:
            task.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    await dispatcher.close(wait=max(0.5, stopped_at + STOP_WITHIN - time.monotonic() - 0.5))
    ThrottledLog.flush_all(force=True)
    output.print_stats(listener.stats.snapshot())
    return listener


async def _run_until_stopped(listener: BaseListener, dispatcher: Dispatcher, stop: asyncio.Event) -> float:
    """Run the listener until it returns; after a stop, cut it off past its grace. Returns when
    the stop came (or the listener returned by itself)."""
    running = asyncio.create_task(listener.run(stop))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopped_at = time.monotonic()
        if not running.done():
            dispatcher.stopping()  # a listener held back by a full lane may go
            await asyncio.wait({running}, timeout=LISTENER_GRACE)
        if not running.done():
            logger.warning("the listener did not stop within %.0f s: closing its connections", LISTENER_GRACE)
            listener.abort()
            running.cancel()
            await asyncio.wait({running}, timeout=STOP_WITHIN - LISTENER_GRACE - 1.5)
        if running.done() and not running.cancelled():
            running.result()  # an error the listener does not recover from
        return stopped_at
    finally:
        stopping.cancel()
        if not running.done():
            running.cancel()


async def _flush_logs(stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), LOG_FLUSH_INTERVAL)
        ThrottledLog.flush_all()


async def _print_stats(listener: BaseListener, output: Output, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            output.print_stats(listener.stats.snapshot())

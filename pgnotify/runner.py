"""Runs a listener until SIGINT/SIGTERM, printing statistics as it goes."""

import asyncio
import signal

from .handlers.base import Dispatcher
from .handlers.output import Output
from .listener import ListenerOptions
from .listener.base import BaseListener
from .sources import make_listener


async def run_listener(conninfo: dict, options: ListenerOptions, output: Output, handlers=(),
                       stats_interval: float = 0, stop: asyncio.Event | None = None) -> BaseListener:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    listener = make_listener(conninfo, options, Dispatcher([output, *handlers]))
    for handler in handlers:
        if hasattr(handler, "attach"):
            handler.attach(listener)  # handlers that report the listener's statistics
    stats_task = asyncio.create_task(_print_stats(listener, output, stats_interval, stop)) if stats_interval else None
    try:
        await listener.run(stop)
    finally:
        if stats_task:
            stats_task.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    output.print_stats(listener.stats.snapshot())
    return listener


async def _print_stats(listener: BaseListener, output: Output, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            output.print_stats(listener.stats.snapshot())

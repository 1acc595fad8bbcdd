"""A listener whose one handler is a forwarder, as a process of its own (the kill -9 tests):

    python -m tests.helpers.forward_process '{"name": N, "channels": [...], "handler": {PGNOTIFY["HANDLERS"] entry}}'

Prints one JSON line per state notice ({"state": "live"}, ...) and, when stopped by SIGINT or
SIGTERM, one line with the forwarder's counters.
"""

import asyncio
import json
import os
import signal
import sys


class States:
    async def notice(self, notice: dict) -> None:
        print(json.dumps({"state": notice["state"]}), flush=True)


def dump(forwarder) -> None:
    print(f"forwarded={forwarder.forwarded} waiting={forwarder.waiting} failures={forwarder.failures} "
          f"skipped={forwarder.skipped}",
          file=sys.stderr, flush=True)
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


async def main(config: dict) -> None:
    from pgnotify.connection import listener_conninfo
    from pgnotify.handlers.dispatcher import Dispatcher
    from pgnotify.handlers.entries import load_handler
    from pgnotify.listener import Listener, ListenerOptions

    handler = load_handler(config["handler"])
    forwarder = getattr(handler, "handler", handler)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, dump, forwarder)  # where a stuck test's process is
    options = ListenerOptions(channels=config["channels"], name=config["name"])
    listener = Listener(listener_conninfo(), options, Dispatcher([States(), handler], patience=0.2))
    await listener.run(stop)
    counters = {name: getattr(forwarder, name, None) for name in ("forwarded", "duplicates", "dead_letters")}
    print(json.dumps(counters), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyproject.settings")
    import django

    django.setup()
    asyncio.run(main(json.loads(sys.argv[1])))

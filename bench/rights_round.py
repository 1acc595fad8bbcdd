"""CPU of one rights re-check round (pgnotify.web.rights) with N live sockets in one process,
in-process: N users with a session each, one live subscription per socket (the demo's
`my-orders`), rounds run as the per-process task runs them. Prints CPU ms per round and per socket,
and the longest the event loop went without running a callback during a round.

    DATABASE_URL=postgresql://.../scratch python -m bench.rights_round [N]

It creates users and sessions in the database it is given (use a scratch one) and deletes them after.
"""

import asyncio
import gc
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyproject.settings")
ROUNDS = 5


class Socket:
    """What the rights task reads of a live consumer: its scope and its session."""

    def __init__(self, session, user, live_session):
        self.scope = {"session": session, "user": user}
        self.session = live_session

    async def close(self, code=None):
        pass


async def measure(count: int) -> None:
    from django.contrib.sessions.backends.db import SessionStore

    from bench.live import create_users
    from pgnotify.web import rights
    from pgnotify.web.live.consumer import LiveConsumer
    from pgnotify.web.live.router import Subscription
    from pgnotify.web.live.session import LiveSession
    from pgnotify.web.live.streams import get

    made = await asyncio.to_thread(create_users, count, 0)
    stream = get("my-orders")
    user_model = __import__("django.contrib.auth", fromlist=["get_user_model"]).get_user_model()
    users = await asyncio.to_thread(lambda: {u.pk: u for u in user_model.objects.filter(username__startswith="live")})
    sockets = {}
    for pk, cookie in made["users"]:
        user = users[pk]
        session = LiveSession(user, None, None)
        subscription = Subscription("s", stream, stream.rights(user), stream.filter(None), None)
        subscription.buffer = None  # live
        session.subscriptions["s"] = subscription
        socket = type("LiveSocket", (Socket,), {"refresh_rights": LiveConsumer.refresh_rights})(
            SessionStore(cookie.split("=", 1)[1]), user, session)
        sockets[socket] = False
    stall = 0.0

    async def watch_loop():
        nonlocal stall
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            stall = max(stall, now - last - 0.001)
            last = now

    watcher = asyncio.create_task(watch_loop())
    try:
        for number in range(ROUNDS):
            stall = 0.0
            collected = gc.get_stats()[2]["collections"]
            cpu, wall = time.process_time(), time.monotonic()
            await rights.check_round(sockets)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            print(f"round {number + 1}: {cpu * 1000:.0f} ms CPU ({cpu * 1e6 / count:.1f} us per socket), "
                  f"{wall * 1000:.0f} ms wall, loop stalled at most {stall * 1000:.0f} ms, "
                  f"{gc.get_stats()[2]['collections'] - collected} full GC")
    finally:
        watcher.cancel()
        await asyncio.to_thread(lambda: user_model.objects.filter(username__startswith="live").delete())


def main() -> None:
    import django

    django.setup()
    asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))


if __name__ == "__main__":
    main()

"""Paced writer of the trigger-free peer path: INSERT a row (no trigger), then group_send its change
event to the dashboards through the configured channel layer, as an application would by hand.

    DJANGO_SETTINGS_MODULE=bench.settings_channels_postgres python -m bench.peer_writer URL RATE SECONDS
"""

import asyncio
import json
import sys
import time

import django
import psycopg

PEER_TABLE = "bench_plain"


async def write(url: str, rate: float, seconds: float) -> list[list]:
    from channels.layers import get_channel_layer

    from pgnotify.web.frames import DASHBOARD_GROUP, frame

    layer = get_channel_layer()
    commits = []  # [pk, time the autocommit INSERT returned], as bench.load reports them
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        while (due := start + len(commits) / rate) < start + seconds:
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            cursor = await conn.execute("INSERT INTO bench_plain DEFAULT VALUES RETURNING id, clock_timestamp()")
            pk, ts = await cursor.fetchone()
            commits.append([pk, time.time()])
            event = {"id": pk, "table": PEER_TABLE, "op": "INSERT", "pk": pk, "ts": ts.isoformat()}
            await layer.group_send(DASHBOARD_GROUP, frame({"type": "changes", "events": [event]}))
    return commits


def main() -> None:
    django.setup()
    url, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    started = time.perf_counter()
    commits = asyncio.run(write(url, rate, seconds))
    print(json.dumps({"written": len(commits), "seconds": round(time.perf_counter() - started, 3), "commits": commits}),
          flush=True)


if __name__ == "__main__":
    main()

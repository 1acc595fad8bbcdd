"""The listener's output: one human line per notification or one JSON object per line
(statistics and state notices then go to stderr), or, quiet, only state changes and a one-line
summary per statistics interval."""

import sys

from ..listener import exactjson


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def human_line(notification) -> str:
    suffix = " (replayed)" if notification.replayed else f" (pid {notification.pid})"
    event = notification.event
    if event is not None:
        changed = f" changed={','.join(event['changed'])}" if event.get("changed") else ""
        return (f"📨 [{notification.channel}] #{event['id']} {event.get('op')} {event.get('table')} "
                f"pk={exactjson.dumps(event.get('pk'))}{changed}{suffix}")
    kind = "" if notification.is_json else " (not JSON)"
    return f"📨 [{notification.channel}] {_clip(notification.payload)!r}{kind}{suffix}"


def stats_lines(stats: dict) -> list[str]:
    last = stats["last_event_id"]
    lines = [f"📊 listener {stats['state']}: reconnects={stats['reconnects']} "
             f"last_event_id={'-' if last is None else last} queue={stats['queue_usage']:.1%} "
             f"replayed={stats['replayed']} duplicates_dropped={stats['duplicates_dropped']}"]
    for name, channel in stats["channels"].items():
        count = channel["count"]
        latency = ""
        if channel["latency_p50_ms"] is not None:
            latency = f", latency p50 {channel['latency_p50_ms']:.2f} ms p99 {channel['latency_p99_ms']:.2f} ms"
        extra = f", {channel['non_json']} not JSON" if channel["non_json"] else ""
        if channel.get("as_text"):
            extra += f", {channel['as_text']} with a json value as its text"
        lines.append(f"   - {name}: {count} notification{'s' if count != 1 else ''}, "
                     f"{channel['rate']:.1f}/s{latency}{extra}")
    if stats.get("wal"):
        lines.append(f"   - {slot_text(stats['wal'])}")
    return lines


def slot_text(wal: dict) -> str:
    """The WAL source's replication slot: what it retains on the server."""
    retained = wal.get("retained_bytes") or 0
    return (f"slot {wal['slot']}: retains {retained / 2**20:,.1f} MB of WAL, position {wal.get('confirmed_lsn')} "
            f"held back {wal.get('confirmed_age_s') or 0:.0f} s")


def summary_line(stats: dict) -> str:
    """Statistics on one line: the state and how many notifications each channel had."""
    counts = ", ".join(f"{name} {channel['count']}" for name, channel in stats["channels"].items()) or "none yet"
    last = stats["last_event_id"]
    return (f"📊 listener {stats['state']}: notifications {counts}; last event "
            f"{'-' if last is None else '#' + str(last)}, reconnects {stats['reconnects']}, "
            + (f"queue {stats['queue_usage']:.1%}" if not stats.get("wal") else slot_text(stats["wal"])))


class Output:
    """A sink handler that prints."""

    def __init__(self, as_json: bool = False, stdout=None, stderr=None, quiet: bool = False):
        self.as_json = as_json
        self.quiet = quiet
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    async def handle(self, notification) -> None:
        if self.quiet:
            return
        if self.as_json:
            line = exactjson.dumps(notification.as_json())
        else:
            line = human_line(notification)
        self.stdout.write(line + "\n")
        self.stdout.flush()

    async def notice(self, notice: dict) -> None:
        detail = " ".join(f"{k}={v}" for k, v in notice.items() if k not in {"type", "state", "name"})
        self.info(f"🔌 listener '{notice['name']}': {notice['state']}{' ' + detail if detail else ''}")

    def print_stats(self, stats: dict) -> None:
        for line in [summary_line(stats)] if self.quiet else stats_lines(stats):
            self.info(line)

    def info(self, line: str) -> None:
        """A line about the listener itself (stderr in JSON mode, where stdout is for notifications)."""
        stream = self.stderr if self.as_json else self.stdout
        stream.write(line + "\n")
        stream.flush()

"""The listener's output: one human line per notification (like the brief's sample) or one
JSON object per line; statistics and state notices go to stderr in JSON mode."""

import json
import sys


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def human_line(notification) -> str:
    suffix = " (replayed)" if notification.replayed else f" (pid {notification.pid})"
    event = notification.event
    if event is not None:
        changed = f" changed={','.join(event['changed'])}" if event.get("changed") else ""
        return (f"📨 [{notification.channel}] #{event['id']} {event.get('op')} {event.get('table')} "
                f"pk={json.dumps(event.get('pk'))}{changed}{suffix}")
    kind = "" if notification.is_json else " (not JSON)"
    return f"📨 [{notification.channel}] {_clip(notification.payload)!r}{kind}{suffix}"


def stats_lines(stats: dict) -> list[str]:
    lines = [f"📊 listener {stats['state']}: reconnects={stats['reconnects']} "
             f"last_event_id={stats['last_event_id']} queue={stats['queue_usage']:.1%} "
             f"replayed={stats['replayed']} duplicates_dropped={stats['duplicates_dropped']}"]
    for name, channel in stats["channels"].items():
        count = channel["count"]
        latency = ""
        if channel["latency_p50_ms"] is not None:
            latency = f", latency p50 {channel['latency_p50_ms']:.2f} ms p99 {channel['latency_p99_ms']:.2f} ms"
        extra = f", {channel['non_json']} not JSON" if channel["non_json"] else ""
        lines.append(f"   - {name}: {count} notification{'s' if count != 1 else ''}, "
                     f"{channel['rate']:.1f}/s{latency}{extra}")
    return lines


class Output:
    """A sink handler that prints."""

    def __init__(self, as_json: bool = False, stdout=None, stderr=None):
        self.as_json = as_json
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    async def handle(self, notification) -> None:
        if self.as_json:
            line = json.dumps(notification.as_json(), ensure_ascii=False, separators=(",", ":"))
        else:
            line = human_line(notification)
        self.stdout.write(line + "\n")
        self.stdout.flush()

    async def notice(self, notice: dict) -> None:
        detail = " ".join(f"{k}={v}" for k, v in notice.items() if k not in {"type", "state", "name"})
        self._info(f"🔌 listener '{notice['name']}': {notice['state']}{' ' + detail if detail else ''}")

    def print_stats(self, stats: dict) -> None:
        for line in stats_lines(stats):
            self._info(line)

    def _info(self, line: str) -> None:
        stream = self.stderr if self.as_json else self.stdout
        stream.write(line + "\n")
        stream.flush()

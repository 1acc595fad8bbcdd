"""Walkthroughs of LISTEN/NOTIFY, run against the configured database (`manage.py pgnotify_demo`).

Each walkthrough listens on its own dedicated autocommit connection (as a real listener
does), sends with `pgnotify.notify` on Django's connection, and checks that it received
exactly what it sent. Channel names carry the process id, so concurrent runs do not mix;
the change-monitoring walkthrough shares the watched channel with everyone and so keeps
only the events of the row it wrote.
"""

import json
import os
import time
from collections import deque
from collections.abc import Callable

import psycopg
from django.apps import apps
from psycopg import sql

from pgnotify import conf
from pgnotify.connection import listener_conninfo
from pgnotify.exceptions import PayloadTooLarge, PgNotifyError
from pgnotify.handlers.output import human_line
from pgnotify.listener.notification import Notification
from pgnotify.sending import MAX_PAYLOAD_BYTES, encode_payload, notify

# How long a walkthrough waits for one notification before calling it lost.
TIMEOUT = 5.0


class DemoError(PgNotifyError):
    """A walkthrough did not receive what it sent."""


class Inbox:
    """A dedicated autocommit connection that LISTENs, with a buffer: psycopg may hand over
    several notifications at once, and a walkthrough takes them one at a time."""

    def __init__(self, connection: psycopg.Connection, suffix: str, timeout: float = TIMEOUT):
        self.connection = connection
        self.timeout = timeout
        self.pending: deque[psycopg.Notify] = deque()
        # Notifications are delivered in commit order, so once this one arrives
        # everything sent before it has arrived too.
        self.end_channel = f"demo_end_{suffix}"

    def listen(self, *channels: str) -> None:
        statement = sql.SQL("; ").join(
            sql.SQL("LISTEN {}").format(sql.Identifier(c)) for c in (*channels, self.end_channel)
        )
        self.connection.execute(statement)

    def reset(self) -> None:
        self.connection.execute("UNLISTEN *")
        self.pending.clear()

    def next(self, timeout: float | None = None) -> psycopg.Notify | None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.pending.extend(self.connection.notifies(timeout=remaining, stop_after=1))
        return self.pending.popleft()

    def rest(self) -> list[psycopg.Notify] | None:
        """Everything still on its way: sends a last notification and takes all before it
        (None when even that one does not arrive)."""
        marker = f"end {time.monotonic_ns()}"
        notify(self.end_channel, marker)
        received = []
        while (item := self.next()) is not None:
            if item.channel == self.end_channel and item.payload == marker:
                return received
            received.append(item)
        return None


class Demo:
    def __init__(self, write: Callable[[str], None], timeout: float = TIMEOUT):
        self.write = write
        self.timeout = timeout
        self.suffix = str(os.getpid())
        self.failures: list[str] = []

    def channel(self, name: str) -> str:
        return f"{name}_{self.suffix}"

    def check(self, walkthrough: str, ok: bool, problem: str) -> bool:
        if not ok:
            self.failures.append(f"{walkthrough}: {problem}")
            self.write(f"   ❌ {problem}")
        return ok

    def check_quiet(self, walkthrough: str, inbox: Inbox) -> None:
        rest = inbox.rest()
        if rest is None:
            self.check(walkthrough, False, f"the end marker did not arrive within {self.timeout:g} s")
        elif rest:
            self.check(walkthrough, False, f"{len(rest)} unexpected notifications: {rest[0].payload[:60]!r}...")

    # -- 1

    def run(self) -> list[str]:
        self.write("=== Listen/Notify example ===")
        self.write("")
        self.write("1. Connecting to the database...")
        params = listener_conninfo()
        try:
            connection = psycopg.Connection.connect(
                autocommit=True, **{"connect_timeout": 5, **params, "application_name": "pgnotify demo"})
        except psycopg.OperationalError as error:
            first_line = (str(error).strip().splitlines() or [""])[0]
            raise DemoError(f"cannot connect to the database: {first_line}") from error
        with connection:
            info = connection.info
            version = f"{info.server_version // 10000}.{info.server_version % 10000}"
            self.write(f"   ✅ Connected to '{info.dbname}' at {info.host}:{info.port} "
                       f"(PostgreSQL {version}), listening backend PID={info.backend_pid}")
            self.write("")
            inbox = Inbox(connection, self.suffix, self.timeout)
            for walkthrough in (self.basic, self.multiple_channels, self.json_payloads, self.chat,
                                self.change_monitoring):
                try:
                    walkthrough(inbox)
                finally:
                    inbox.reset()
                self.write("")
        if self.failures:
            self.write(f"❌ {len(self.failures)} problem(s): the walkthroughs did not receive what they sent.")
        else:
            self.write("✅ Every walkthrough received exactly what it sent.")
        return self.failures

    # -- 2

    def basic(self, inbox: Inbox) -> None:
        name = "basic listen/notify"
        self.write("2. Example: basic listen/notify...")
        channel = self.channel("test_channel")
        self.write(f"   LISTEN on channel '{channel}'...")
        inbox.listen(channel)
        self.write("   🎧 Waiting for notifications...")
        for number, message in enumerate(["First message", "Second message", "Third message"], 1):
            self.write(f"   📤 Sending notification {number}: '{message}'")
            notify(channel, message)
            received = inbox.next()
            if not self.check(name, received is not None, f"notification {number} did not arrive"):
                return
            self.write(f"   📨 Notification received: Channel='{received.channel}', "
                       f"Payload='{received.payload}', PID={received.pid}")
            if self.check(name, (received.channel, received.payload) == (channel, message),
                          f"expected {message!r} on {channel}, got {received.payload!r} on {received.channel}"):
                self.write(f"   ✅ Notification {number} sent successfully")
        self.check_quiet(name, inbox)

    # -- 3

    def multiple_channels(self, inbox: Inbox) -> None:
        name = "multiple channels"
        self.write("3. Example: multiple channels...")
        plan = [
            ("orders", "New order #1001"), ("users", "User alice signed up"), ("orders", "New order #1002"),
            ("products", "Product COF-001 restocked"), ("system", "Backup started"), ("users", "User bob signed up"),
            ("orders", "New order #1003"), ("system", "Backup finished"),
        ]
        names = list(dict.fromkeys(logical for logical, _ in plan))
        real = {logical: self.channel(logical) for logical in names}
        logical_of = {v: k for k, v in real.items()}
        self.write(f"   Setting up LISTEN on {len(names)} channels ({', '.join(real.values())})...")
        inbox.listen(*real.values())
        counts = dict.fromkeys(names, 0)
        for logical, message in plan:
            self.write(f"   📤 [{logical}] Sending: '{message}'")
            notify(real[logical], message)
            received = inbox.next()
            if not self.check(name, received is not None, f"'{message}' did not arrive"):
                return
            arrived_on = logical_of.get(received.channel, received.channel)
            counts[arrived_on] = counts.get(arrived_on, 0) + 1
            self.write(f"   📨 [{arrived_on}] Notification #{counts[arrived_on]}: '{received.payload}'")
            self.check(name, (arrived_on, received.payload) == (logical, message),
                       f"expected {message!r} on {logical}, got {received.payload!r} on {arrived_on}")
        self.check_quiet(name, inbox)
        self.write("   📊 Statistics per channel:")
        for logical, count in counts.items():
            self.write(f"   - {logical}: {count} notification{'s' if count != 1 else ''}")
        expected = {logical: sum(1 for lg, _ in plan if lg == logical) for logical in names}
        self.check(name, counts == expected, f"counts per channel {counts} differ from what was sent {expected}")

    # -- 4

    def json_payloads(self, inbox: Inbox) -> None:
        name = "notifications with payload"
        self.write("4. Example: notifications with payload...")
        channel = self.channel("json_channel")
        inbox.listen(channel)
        payloads = [
            {"event": "user_login", "user_id": 123, "timestamp": "2025-01-01T10:00:00Z"},
            {"event": "order_created", "order": {"number": "ORD-001001", "items": [
                {"sku": "COF-001", "quantity": 2, "price": "19.90"}, {"sku": "MUG-002", "quantity": 1}]},
             "tags": ["web", "priority"], "note": "ação rápida ☕"},
            _sized_payload(MAX_PAYLOAD_BYTES),
        ]
        for number, payload in enumerate(payloads, 1):
            size = _size(payload)
            self.write(f"   📤 Sending payload {number} ({size} bytes)...")
            notify(channel, payload)
            received = inbox.next()
            if not self.check(name, received is not None, f"payload {number} did not arrive"):
                return
            self.write("   📨 JSON payload received:")
            self.write(f"       Channel: {received.channel}")
            self.write(f"       Payload: {_clip(received.payload)}")
            try:
                same = json.loads(received.payload) == payload
            except ValueError:
                same = False
            if self.check(name, same, f"payload {number} arrived changed"):
                self.write(f"   ✅ Payload {number} parsed: {len(received.payload.encode())} bytes, "
                           f"identical to what was sent")
        oversized = _sized_payload(MAX_PAYLOAD_BYTES + 1)
        number = len(payloads) + 1
        self.write(f"   📤 Sending payload {number} ({_size(oversized)} bytes, "
                   f"over the limit of {MAX_PAYLOAD_BYTES})...")
        try:
            notify(channel, oversized)
        except PayloadTooLarge as error:
            self.write(f"   ⛔ Refused before sending: PayloadTooLarge(size={error.size}, "
                       f"limit={error.limit}): {error}")
        else:
            self.check(name, False, f"payload {number} of {MAX_PAYLOAD_BYTES + 1} bytes was not refused")
        self.check_quiet(name, inbox)

    # -- 5

    def chat(self, inbox: Inbox) -> None:
        name = "simple chat"
        self.write("5. Example: simple chat...")
        channel = self.channel("chat")
        inbox.listen(channel)
        script = [
            ("system", "alice", "joined the chat"),
            ("system", "bob", "joined the chat"),
            ("message", "alice", "Hi Bob! Did the new beans arrive?"),
            ("message", "bob", "Yes, 40 kg this morning."),
            ("system", "carol", "joined the chat"),
            ("message", "carol", "Hello both! Can I order two bags?"),
            ("message", "alice", "Sure, order #1004 is yours."),
            ("system", "bob", "left the chat"),
        ]
        users = sorted({user for _, user, _ in script})
        self.write(f"   Room '{channel}' with {len(users)} users: {', '.join(users)}")
        sent = []
        for kind, user, text in script:
            message = {"type": kind, "user": user, "text": text, "ts": time.strftime("%H:%M:%S")}
            notify(channel, message)
            sent.append(message)
        received = []
        for _ in sent:
            item = inbox.next()
            if not self.check(name, item is not None, f"only {len(received)} of {len(sent)} messages arrived"):
                return
            message = json.loads(item.payload)
            received.append(message)
            if message["type"] == "system":
                self.write(f"   📢 {message['user']} {message['text']}")
            else:
                self.write(f"   💬 [{message['ts']}] {message['user']}: {message['text']}")
        self.check_quiet(name, inbox)
        chats = sum(1 for m in received if m["type"] == "message")
        self.write(f"   📊 {len(received)} messages received: {chats} from users, {len(received) - chats} system")
        self.check(name, received == sent, "the messages arrived changed or out of order")

    # -- 6

    def change_monitoring(self, inbox: Inbox) -> None:
        name = "change monitoring"
        self.write("6. Example: change monitoring...")
        if conf.source() == "wal":
            self.write("   skipped: with PGNOTIFY['SOURCE'] = 'wal' changes come from the write-ahead log, not by "
                       "NOTIFY; `listen_notify` shows them (docs/sources.md)")
            return
        label = "shop.Order"
        options = conf.watch().get(label)
        if not self.check(name, options is not None, f"{label} is not in PGNOTIFY['WATCH']"):
            return
        model = apps.get_model(label)
        channel, table = options["channel"], model._meta.db_table
        self.write(f"   LISTEN on channel '{channel}' (trigger on {table})...")
        inbox.listen(channel)
        order = model.objects.create(quantity=2, total="39.80")
        pk, deleted = order.pk, False
        try:
            steps = [
                ("INSERT", None, f"INSERT order {order.number} (pk={pk})", None),
                ("UPDATE", ["status"], f"UPDATE order {order.number}: status new -> paid",
                 lambda: model.objects.filter(pk=pk).update(status="paid")),
                ("DELETE", None, f"DELETE order {order.number}",
                 lambda: model.objects.filter(pk=pk).delete()),
            ]
            for op, changed, description, write_row in steps:
                self.write(f"   ✏️  {description}")
                if write_row is not None:
                    write_row()
                deleted = op == "DELETE"
                if not self._expect_change(name, inbox, table, pk, op, changed):
                    return
            rest = inbox.rest()
            mine = [n for n in rest or [] if _event_for(n, table, pk)]
            self.check(name, rest is not None and not mine, f"{len(mine)} unexpected events for pk={pk}")
        finally:
            if not deleted:
                model.objects.filter(pk=pk).delete()

    def _expect_change(self, name, inbox: Inbox, table: str, pk, op: str, changed) -> bool:
        """Wait for the event of this row; events of other sessions on the shared channel are skipped."""
        deadline = time.monotonic() + self.timeout
        while (item := inbox.next(max(0.0, deadline - time.monotonic()))) is not None:
            event = _event_for(item, table, pk)
            if event is None:
                continue
            self.write(f"   {human_line(Notification(item.channel, item.payload, item.pid))}")
            fields = {"id", "channel", "table", "model", "op", "pk", "ts", "txid", "row"}
            ok = (event["op"] == op and fields <= event.keys() and event.get("changed") == changed
                  and "truncated" not in event)
            return self.check(name, ok, f"expected {op} changed={changed}, got {event['op']} "
                                        f"changed={event.get('changed')}")
        return self.check(name, False, f"the {op} event of {table} pk={pk} did not arrive within {self.timeout:g} s")


def _event_for(item: psycopg.Notify, table: str, pk) -> dict | None:
    try:
        event = json.loads(item.payload)
    except ValueError:
        return None
    if isinstance(event, dict) and event.get("table") == table and event.get("pk") == pk:
        return event
    return None


def _sized_payload(size: int) -> dict:
    """A JSON object of exactly `size` bytes once encoded the way notify() encodes it."""
    payload = {"event": "bulk_export", "rows": 250, "data": ""}
    payload["data"] = "x" * (size - _size(payload))
    return payload


def _size(payload) -> int:
    """Bytes of `payload` as notify() encodes it, whether or not it fits."""
    try:
        return len(encode_payload(payload).encode())
    except PayloadTooLarge as error:
        return error.size


def _clip(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text.encode())} bytes)"


def run_demo(write: Callable[[str], None], timeout: float = TIMEOUT) -> None:
    """Run every walkthrough; raises DemoError naming what went wrong."""
    failures = Demo(write, timeout).run()
    if failures:
        raise DemoError(f"{len(failures)} problem(s): " + "; ".join(failures))

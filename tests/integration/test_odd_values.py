"""No row stops the stream, and watching a table never makes a valid write fail (docs/models.md,
"Values JSON cannot carry"). For each event source, each odd value a table can hold is written in
its own statement: the write succeeds, its event arrives (a value that cannot be carried as JSON
comes as its JSON text, the column named in the event's `as_text`), a normal change committed
after it arrives too, and a restarted listener goes on instead of dying on the same change."""

import json
from dataclasses import dataclass

import pytest
from django.db import connection

from tests.helpers.sources import source_env

pytestmark = pytest.mark.django_db(transaction=True)

DEPTH = 1000  # PostgreSQL takes it (its limit is the server's stack); Python's parsers do not
MB5 = 5 * 1024 * 1024
DEEP_ARRAY = "[" * DEPTH + "1" + "]" * DEPTH
DEEP_OBJECT = '{"a": ' * DEPTH + "1" + "}" * DEPTH  # jsonb's own text of it
LONE = '{"a":"\\udc00"}'  # json keeps the escape; jsonb refuses a lone surrogate


@dataclass
class Case:
    name: str
    statement: str  # an INSERT ... RETURNING id
    expect: object  # a function of the event's row that says whether the row is right
    as_text: list[str] | None = None  # the columns the event must deliver as their JSON text


CASES = [
    Case("deep jsonb array", f"INSERT INTO shapes_oddvalue (docb) VALUES ('{DEEP_ARRAY}') RETURNING id",
         lambda row: row["docb"] == DEEP_ARRAY, ["docb"]),
    Case("deep jsonb object", f"INSERT INTO shapes_oddvalue (docb) VALUES ('{DEEP_OBJECT}') RETURNING id",
         lambda row: row["docb"] == DEEP_OBJECT, ["docb"]),
    # A json column keeps its text as written (the WAL source) or as jsonb renders it (NOTIFY): equal here.
    Case("deep json array", f"INSERT INTO shapes_oddvalue (doc) VALUES ('{DEEP_ARRAY}') RETURNING id",
         lambda row: row["doc"] == DEEP_ARRAY, ["doc"]),
    Case("lone surrogate in json", f"INSERT INTO shapes_oddvalue (doc, body) VALUES ('{LONE}', 'x') RETURNING id",
         lambda row: row["doc"] == LONE and row["body"] == "x", ["doc"]),
    Case("NUL escape in json", """INSERT INTO shapes_oddvalue (doc) VALUES ('["\\u0000"]') RETURNING id""",
         lambda row: row["doc"] == '["\\u0000"]', ["doc"]),
    Case("surrogate pair in json",
         """INSERT INTO shapes_oddvalue (doc) VALUES ('{"a":"\\ud83d\\ude00"}') RETURNING id""",
         lambda row: row["doc"] == {"a": "\U0001F600"}),
    Case("5 MB text", f"INSERT INTO shapes_oddvalue (body) VALUES (repeat('x', {MB5})) RETURNING id",
         lambda row: row["body"] == "x" * MB5),
    Case("5 MB jsonb", f"INSERT INTO shapes_oddvalue (docb) VALUES (jsonb_build_object('k', repeat('y', {MB5}))) "
                       "RETURNING id",
         lambda row: row["docb"] == {"k": "y" * MB5}),
    Case("NaN", "INSERT INTO shapes_oddvalue (num, flt) VALUES ('NaN', 'NaN') RETURNING id",
         lambda row: row["num"] == "NaN" and row["flt"] == "NaN"),
    Case("infinities", "INSERT INTO shapes_oddvalue (num, flt) VALUES ('-Infinity', 'Infinity') RETURNING id",
         lambda row: row["num"] == "-Infinity" and row["flt"] == "Infinity"),
]


def insert(statement: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchone()[0]


def normal_row() -> int:
    return insert("INSERT INTO shapes_oddvalue (body) VALUES ('normal') RETURNING id")


class Events:
    """The change events a `listen_notify --json` process printed on one channel, by pk."""

    def __init__(self, process, channel: str):
        self.process, self.channel = process, channel
        self.seen: dict[int, dict] = {}
        self.read = 0
        self.unreadable: list[str] = []

    def _scan(self, lines) -> None:
        for line in lines[self.read:]:
            self.read += 1
            if self.channel not in line:
                continue
            try:
                payload = json.loads(line)["payload"]
            except (ValueError, RecursionError):
                self.unreadable.append(line[:200])
                continue
            if isinstance(payload, dict) and "pk" in payload and "op" in payload:
                self.seen[payload["pk"], payload["op"]] = payload

    def wait(self, pk: int, case: str = "a normal row", op: str = "INSERT", timeout: float = 30.0) -> dict:
        def arrived(lines):
            self._scan(lines)
            return self.seen.get((pk, op))

        try:
            return self.process.wait_for(arrived, timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"{case}: no event for pk {pk} in {timeout} s; printed on the channel: "
                                 f"{list(self.seen)}, unreadable: {self.unreadable}; "
                                 f"stderr: {self.process.stderr_lines[-5:]}") from None


def assert_no_failure(process) -> None:
    assert process.proc.poll() is None, f"the listener exited: {process.stderr_lines[-5:]}"
    assert not [line for line in process.stderr_lines if "Traceback" in line or "Error" in line], \
        process.stderr_lines[-10:]


def test_odd_values_never_stop_the_stream(event_source, listener):
    process = listener("--name", "odd", env=source_env(event_source))
    events = Events(process, "shapes_odd")
    for case in CASES:
        pk = insert(case.statement)  # the write succeeds, watched
        event = events.wait(pk, case.name)
        assert case.expect(event["row"]), f"{case.name}: {str(event['row'])[:300]}"
        assert event.get("as_text") == case.as_text, f"{case.name}: {event.get('as_text')}"
        after = normal_row()
        assert events.wait(after)["row"]["body"] == "normal", case.name
    # The UPDATE and DELETE of a row holding what jsonb refuses.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE shapes_oddvalue SET body = 'y' WHERE body = 'x'")
        cursor.execute("SELECT id FROM shapes_oddvalue WHERE body = 'y'")
        (lone,) = cursor.fetchone()
        updated = events.wait(lone, "lone surrogate UPDATE", "UPDATE")
        assert (updated["row"]["doc"], updated["as_text"], updated["changed"]) == (LONE, ["doc"], ["body"])
        cursor.execute("DELETE FROM shapes_oddvalue WHERE id = %s", [lone])
        deleted = events.wait(lone, "lone surrogate DELETE", "DELETE")
        assert (deleted["row"]["doc"], deleted["as_text"]) == (LONE, ["doc"])
    assert events.unreadable == []
    assert_no_failure(process)
    # Said loudly: at once for the first, then a count a minute; counted in the statistics.
    process.wait_for_line("events carrying a json value as its JSON text", stream="stderr")
    assert process.stop() == 0
    assert any("with a json value as its text" in line for line in process.stderr_lines), process.stderr_lines[-5:]

    # A restart under the same name goes on (nothing replayed dies again), and so does the stream.
    again = listener("--name", "odd", env=source_env(event_source))
    after = normal_row()
    assert Events(again, "shapes_odd").wait(after)["row"]["body"] == "normal"
    assert_no_failure(again)


def test_a_row_of_1600_columns(event_source, listener):
    process = listener("--name", "wide", env=source_env(event_source))
    events = Events(process, "shapes_wide")
    pk = insert("INSERT INTO shapes_wide (c1, c1599) VALUES (1, 1599) RETURNING id")
    row = events.wait(pk)["row"]
    assert len(row) == 1600 and row["c1"] == 1 and row["c1599"] == 1599 and row["c2"] is None
    with connection.cursor() as cursor:
        cursor.execute("UPDATE shapes_wide SET c800 = 8 WHERE id = %s", [pk])
    process.wait_for(lambda lines: any('"changed":["c800"]' in line for line in lines), timeout=30)
    after = insert("INSERT INTO shapes_wide DEFAULT VALUES RETURNING id")
    assert events.wait(after)["row"]["c1"] is None
    assert_no_failure(process)

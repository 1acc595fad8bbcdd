"""Column values as pgoutput sends them (text output, proto_version 1) turned into what the NOTIFY
source's `to_jsonb` gives once the listener has parsed its JSON (pgnotify.listener.exactjson): the
same Python values, so both sources hand on equal events.

to_jsonb renders by type category: booleans and numbers as JSON, everything else (text, uuid,
time, interval, bytea, enums, money, ...) as its text, date/timestamp/timestamptz in ISO 8601 with
a 'T' (an offset always with minutes), json/jsonb as JSON, arrays as nested lists (bounds dropped).
Numbers go through jsonb's numeric: the text of a float is read as a numeric (float8 1e+100
becomes an integer of 101 digits, 1.5e-07 becomes 0.00000015, -0 becomes 0) and NaN and Infinity
stay strings. The exact parse then makes a number without a decimal point an int (of any size) and
any other a decimal.Decimal with the digits PostgreSQL wrote. The replication connection runs with
DateStyle ISO, TimeZone UTC and IntervalStyle iso_8601 (see stream.py), so timestamptz values are
in UTC and intervals in ISO 8601, as the change trigger renders them.

A json or jsonb value the event cannot carry as JSON (nested too deeply for Python's parsers, or a
json escape jsonb refuses: a lone surrogate, \\u0000) raises AsText: the event carries it as its
JSON text and names the column in `as_text`, as the NOTIFY source does (docs/models.md).
"""

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import cast

from .. import exactjson

Convert = Callable[[str], object]

# Built-in scalar types whose to_jsonb is not their text (type OIDs, fixed since PostgreSQL 7).
BOOL, INT8, INT2, INT4, JSON, FLOAT4, FLOAT8, NUMERIC = 16, 20, 21, 23, 114, 700, 701, 1700
DATE, TIMESTAMP, TIMESTAMPTZ, JSONB = 1082, 1114, 1184, 3802


def as_text(text: str) -> str:
    return text


def as_bool(text: str) -> bool:
    return text == "t"


def as_numeric(text: str):
    """numeric's own text (never an exponent): an int without a decimal point, else a Decimal of
    its digits; NaN, Infinity and -Infinity are no JSON numbers: strings."""
    if "." in text:
        return Decimal(text)
    last = text[-1]
    if last == "N" or last == "y":
        return text
    return int(text)


def as_exact_number(text: str):
    """A number written with an exponent (a float's text, a JSON number) as jsonb's numeric holds
    it: the value with max(0, -exponent) decimals (1.0e2 is 100, 1.5e-07 is 0.00000015), no -0."""
    value = Decimal(text)
    # An int: only finite numbers come here (NaN and Infinity have a letter for exponent).
    if cast(int, value.as_tuple().exponent) >= 0:
        return int(value)
    return value.copy_abs() if value.is_zero() else value


def as_float(text: str):
    """float4/8 (extra_float_digits 1: the shortest text that reads back exactly)."""
    if "e" in text:
        return as_exact_number(text)
    if "." in text:
        return Decimal(text)
    last = text[-1]
    if last == "N" or last == "y":  # NaN, Infinity, -Infinity
        return text
    return int(text)  # "-0" is 0: numeric has no -0


def as_date(text: str) -> str:
    return text


def as_timestamp(text: str) -> str:
    return text.replace(" ", "T", 1)


def as_timestamptz(text: str) -> str:
    """'2026-01-01 10:00:00.5+00' -> '2026-01-01T10:00:00.5+00:00' (BC and infinity kept)."""
    if text[-3] == "+" and text[10] == " ":  # the common case, UTC: a listener's hot path
        return f"{text[:10]}T{text[11:]}:00"
    if not text[:1].isdigit():
        return text  # infinity, -infinity
    era = ""
    if text.endswith(" BC"):
        text, era = text[:-3], " BC"
    text = text.replace(" ", "T", 1)
    sign = max(text.rfind("+"), text.rfind("-"), text.find("T"))
    if len(text) - sign == 3:  # '+HH': JSON always carries the minutes
        text += ":00"
    return text + era


class AsText(ValueError):
    """A json or jsonb value that the event carries as its JSON text."""


# The escapes jsonb refuses (\\u0000, a lone surrogate) start so; a pair of surrogates is taken.
_REFUSED_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_REFUSED_CHAR = re.compile("[\x00\ud800-\udfff]")


def _refused_by_jsonb(value) -> bool:
    """Whether a string in `value` holds a NUL or a lone surrogate (a pair is one character)."""
    if type(value) is str:
        return _REFUSED_CHAR.search(value) is not None
    if type(value) is list:
        return any(_refused_by_jsonb(item) for item in value)
    if type(value) is dict:
        return any(_refused_by_jsonb(key) or _refused_by_jsonb(item) for key, item in value.items())
    return False


def _jsonb_object(pairs: list[tuple[str, object]]) -> dict:
    """An object as jsonb holds it: the last of duplicate keys, keys by length, then bytes."""
    last = dict(pairs)
    return {key: last[key] for key in sorted(last, key=lambda key: (len(key.encode()), key.encode()))}


def as_json(text: str):
    """json: jsonb keeps the last of duplicate keys, orders keys, and stores numbers as numeric.
    AsText when nested too deeply, or holding an escape jsonb refuses."""
    try:
        value = json.loads(text, parse_float=as_exact_number, parse_int=int, object_pairs_hook=_jsonb_object)
        if "\\u" in text and _REFUSED_ESCAPE.search(text) and _refused_by_jsonb(value):
            raise AsText("an escape jsonb refuses")
    except RecursionError as error:
        raise AsText("nested too deeply") from error
    return value


def as_jsonb(text: str):
    """jsonb's own text: what the exact parse of the NOTIFY source's payload gives. AsText when
    nested too deeply."""
    try:
        return exactjson.loads(text)
    except exactjson.NestedTooDeeply as error:
        raise AsText("nested too deeply") from error


def from_bytes(convert: Convert) -> Callable[[bytes], object]:
    """The same converter taking the value's bytes as pgoutput sends them (UTF-8), for the hot
    path that converts each value as it reads it (pgnotify.listener.wal.inserts)."""
    return _FROM_BYTES.get(convert) or (lambda raw: convert(raw.decode()))


def _numeric_from_bytes(raw: bytes):
    text = raw.decode()
    return Decimal(text) if "." in text else as_numeric(text)


def _timestamptz_from_bytes(raw: bytes) -> str:
    if raw[-3] == 0x2B and raw[10] == 0x20:  # UTC, as the replication connection has it: '+00'
        return raw.decode().replace(" ", "T", 1) + ":00"
    return as_timestamptz(raw.decode())


# C functions where there is one: int() reads ASCII digits from bytes.
_FROM_BYTES: dict[Convert, Callable[[bytes], object]] = {
    as_text: bytes.decode, as_date: bytes.decode, int: int, as_bool: lambda raw: raw == b"t",
    as_numeric: _numeric_from_bytes, as_timestamptz: _timestamptz_from_bytes,
}


SCALARS: dict[int, Convert] = {
    BOOL: as_bool, INT2: int, INT4: int, INT8: int, FLOAT4: as_float, FLOAT8: as_float, NUMERIC: as_numeric,
    DATE: as_date, TIMESTAMP: as_timestamp, TIMESTAMPTZ: as_timestamptz, JSON: as_json, JSONB: as_jsonb,
}


def array_of(element: Convert, delimiter: str = ",") -> Convert:
    """A converter of an array's text ('{1,2}', '{{"a b",NULL}}', '[0:1]={1,2}') into nested lists."""

    def convert(text: str) -> list:
        if text.startswith("["):  # explicit bounds: to_jsonb drops them
            text = text[text.index("=") + 1:]
        value, _ = _parse_array(text, 0, element, delimiter)
        return value

    return convert


def _parse_array(text: str, start: int, element: Convert, delimiter: str) -> tuple[list, int]:
    """Parse the array that opens at text[start] ('{'); returns it and the index after its '}'."""
    items: list = []
    i = start + 1
    if text[i] == "}":
        return items, i + 1
    while True:
        char = text[i]
        if char == "{":
            item, i = _parse_array(text, i, element, delimiter)
            items.append(item)
        elif char == '"':
            chars = []
            i += 1
            while (char := text[i]) != '"':
                if char == "\\":
                    i += 1
                    char = text[i]
                chars.append(char)
                i += 1
            items.append(element("".join(chars)))
            i += 1
        else:
            end = i
            while text[end] != delimiter and text[end] != "}":
                end += 1
            word = text[i:end].strip()
            items.append(None if word == "NULL" else element(word))
            i = end
        if text[i] == "}":
            return items, i + 1
        i += 1  # the delimiter

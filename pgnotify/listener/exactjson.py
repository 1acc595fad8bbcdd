"""JSON with exact numbers, for change events and everything made from them.

PostgreSQL writes a numeric of 29 digits, or a JSON integer beyond 64 bits, with all its digits;
a float would round it (orjson and the standard library decode 1.2345678901234567890123456789e28
as a float, and orjson a 20-digit integer too). Here integers of any size decode to int and every
other number to decimal.Decimal, whose text is the number's own digits, and encoding writes them
back as JSON numbers, digit for digit. msgspec does both in C, as fast as orjson on change events.

jsonb holds values nested deeper than a Python parser reads (1,000 levels): `loads_event` reads a
change event whose row holds one, that column's value left as its JSON text (docs/models.md).
"""

import json
import re
from decimal import Decimal

import msgspec

_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")

# The value of strict JSON text, in C and nothing else: the listener's hot path. It raises
# ValueError (msgspec.DecodeError) on anything else, and RecursionError when nested too deeply:
# `loads` then decides.
decode = _decoder.decode


class NestedTooDeeply(ValueError):
    """JSON nested deeper than the parsers read."""


def loads(text: str | bytes):
    """The value of a JSON text; ValueError when it is not JSON (NestedTooDeeply when it is nested
    too deeply to read)."""
    try:
        try:
            return _decoder.decode(text)
        except msgspec.DecodeError:
            # Not strict JSON (NaN, Infinity), or not JSON at all: the standard library decides.
            return json.loads(text, parse_float=Decimal)
    except RecursionError as error:  # anyone may NOTIFY '[[[[...': not JSON we can use
        raise NestedTooDeeply("JSON nested too deeply") from error


def dumps(value) -> str:
    """Compact JSON text (no spaces, non-ASCII characters as they are), numbers with all their digits."""
    return _encoder.encode(value).decode()


def jsonb_order(name: str) -> tuple[int, bytes]:
    """The order of jsonb's object keys: by length in bytes, then by bytes."""
    encoded = name.encode()
    return len(encoded), encoded


# A JSON string, or one of the characters that give an object or array its structure.
_TOKEN = re.compile(r'"(?:[^"\\]+|\\.)*"|[{}\[\],:]')


def members(text: str) -> list[tuple[str, str]] | None:
    """The (key, value's JSON text) pairs of a JSON object's text, its values left unparsed (so of
    any depth); None when the text is not an object."""
    text = text.strip()
    if not text.startswith("{"):
        return None
    pairs: list[tuple[str, str]] = []
    depth, key, start = 0, None, None
    for token in _TOKEN.finditer(text):
        char = token.group()[0]
        if char == '"':
            if depth == 1 and start is None:
                key = json.loads(token.group())
        elif char in "{[":
            depth += 1
        elif char in "}]" or (char == "," and depth == 1):
            if char != ",":
                depth -= 1
            if depth == 0 or char == ",":
                if key is not None:
                    pairs.append((key, text[start:token.start()].strip()))
                key = start = None
                if depth == 0:
                    return pairs
        elif char == ":" and depth == 1:
            start = token.end()
    return None


def loads_event(text: str) -> dict:
    """A change event whose row holds a value nested too deeply to read: that column's value is
    its JSON text, and the column is named in the event's `as_text` (with those the trigger named).
    NestedTooDeeply when something other than a row's column is too deep."""
    pairs = members(text)
    if pairs is None:
        raise NestedTooDeeply("JSON nested too deeply")
    event: dict = {}
    as_text: list[str] = []
    for key, value in pairs:
        if key != "row":
            event[key] = loads(value)
            continue
        row = event["row"] = {}
        for column, column_text in members(value) or ():
            try:
                row[column] = loads(column_text)
            except NestedTooDeeply:
                row[column], as_text = column_text, [*as_text, column]
    if not as_text:
        raise NestedTooDeeply("JSON nested too deeply")
    event["as_text"] = sorted({*event.get("as_text", ()), *as_text}, key=jsonb_order)
    return event

"""JSON with exact numbers, for change events and everything made from them.

PostgreSQL writes a numeric of 29 digits, or a JSON integer beyond 64 bits, with all its digits;
a float would round it (orjson and the standard library decode 1.2345678901234567890123456789e28
as a float, and orjson a 20-digit integer too). Here integers of any size decode to int and every
other number to decimal.Decimal, whose text is the number's own digits, and encoding writes them
back as JSON numbers, digit for digit. msgspec does both in C, as fast as orjson on change events.
"""

import json
from decimal import Decimal

import msgspec

_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")


def loads(text: str | bytes):
    """The value of a JSON text; ValueError when it is not JSON (or nested too deeply to read)."""
    try:
        try:
            return _decoder.decode(text)
        except msgspec.DecodeError:
            # Not strict JSON (NaN, Infinity), or not JSON at all: the standard library decides.
            return json.loads(text, parse_float=Decimal)
    except RecursionError as error:  # anyone may NOTIFY '[[[[...': not JSON we can use
        raise ValueError("JSON nested too deeply") from error


def dumps(value) -> str:
    """Compact JSON text (no spaces, non-ASCII characters as they are), numbers with all their digits."""
    return _encoder.encode(value).decode()

"""Numbers keep all their digits in the parsed event and what is made of it (a numeric of 29 digits, a
JSON integer beyond 2^64); what is not JSON is passed on raw. (Through the listener, the frames and
Chromium: tests/e2e/test_exact_numbers.py.)"""

import json
from decimal import Decimal

from pgnotify.listener import exactjson
from pgnotify.listener.notification import Notification
from pgnotify.web.frames import frame
from tests.helpers.numbers import BIG, NUMERIC, PAYLOAD


def test_the_parsed_event_and_what_is_made_of_it_keep_every_digit():
    event = Notification("shapes_amount", PAYLOAD).event
    assert event["row"]["amount"] == Decimal(NUMERIC) and str(event["row"]["amount"]) == NUMERIC
    assert event["row"]["data"] == {"big": BIG, "neg": -BIG, "tenth": Decimal("0.10")}
    assert type(event["row"]["data"]["big"]) is int and type(event["id"]) is int
    dashboard_frame = frame({"type": "changes", "events": [event]})["text"]
    for text in (dashboard_frame, exactjson.dumps(Notification("shapes_amount", PAYLOAD).as_json())):
        assert f'"amount":{NUMERIC}' in text and f'"big":{BIG}' in text and f'"neg":-{BIG}' in text
        assert '"tenth":0.10' in text
        assert json.loads(text, parse_float=Decimal) != json.loads(text)  # a float parse would round them


def test_not_strict_json_still_parses_and_what_is_not_json_is_passed_on_raw():
    assert Notification("c", '{"x": NaN}').is_json and Notification("c", "plain text").is_json is False
    deep = Notification("c", "[" * 100_000)  # more nesting than a parser's stack: raw text, not an error
    assert deep.is_json is False and deep.payload == "[" * 100_000

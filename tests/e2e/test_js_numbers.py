"""Numbers a double cannot hold survive JavaScript: the advice of docs/models.md (its very `js`
block, run by Node) and the parser of pgnotify's pages (live.js, run by Node 20, whose JSON.parse
reviver gets no source text) read a real `listen_notify --json` line with every digit."""

import json
import re

import pytest
from django.db import connection, transaction

from pgnotify.listener import exactjson
from pgnotify.web.frames import frame
from tests.helpers.nodejs import node_with, run_script
from tests.helpers.support import ROOT

pytestmark = [pytest.mark.once, pytest.mark.django_db(transaction=True)]
LOSSLESS_JSON = "lossless-json@4.3.3"
PK = 9007199254740993  # 2^53 + 1: a double reads 9007199254740992
AMOUNT = "12345678901234567890123456789.12"  # numeric(40,2)
EXACT = "12345678901234567890.0123456789"  # numeric(30,10), inside jsonb


@pytest.fixture(scope="module")
def node() -> str:
    """`node`, with lossless-json installed under build/node (once per version)."""
    return node_with(LOSSLESS_JSON)


def docs_snippet() -> str:
    (block,) = re.findall(r"^( *)```js\n(.*?)^\1```", (ROOT / "docs" / "models.md").read_text(), flags=re.M | re.S)
    return re.sub(r"^" + block[0], "", block[1], flags=re.M)


def run_node(node: str, script: str, line: str) -> dict:
    result = run_script(node, script, line)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def event_line(listener) -> str:
    """A real `listen_notify --json` line: a bigint pk of 2^53 + 1, numerics of 30 and more digits."""
    process = listener("--name", "js-numbers")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("INSERT INTO shapes_amount (id, amount, data) VALUES (%s, %s, %s)",
                       [PK, AMOUNT, '{"exact": ' + EXACT + ', "small": 29.70}'])
    (line,) = process.wait_for(lambda lines: [line for line in lines if '"shapes_amount"' in line])
    assert f'"pk":{PK}' in line and f'"amount":{AMOUNT}' in line and f'"exact":{EXACT}' in line
    return line


def assert_exact(payload: dict) -> None:
    assert payload["pk"] == str(PK) and payload["row"]["id"] == str(PK)
    assert payload["row"]["amount"] == AMOUNT and payload["row"]["data"]["exact"] == EXACT
    assert payload["row"]["data"]["small"] == 29.7 and type(payload["id"]) is int  # what a double holds: numbers
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?[+-]\d\d:\d\d", payload["ts"])


def test_the_docs_advice_keeps_every_digit_in_node(node, event_line):
    script = docs_snippet() + (
        'import { readFileSync } from "node:fs";\n'
        "process.stdout.write(JSON.stringify(parseEvent(readFileSync(0, 'utf8'))));\n")
    assert_exact(run_node(node, script, event_line)["payload"])
    # What the docs warn of: a reviver reading the source text gets none on Node 20, and rounds.
    plain = run_node(node, 'import { readFileSync } from "node:fs";\n'
                           "const e = JSON.parse(readFileSync(0, 'utf8'), (k, v, c) => (c ? c.source : v));\n"
                           "process.stdout.write(JSON.stringify({pk: String(e.payload.pk), "
                           "node: process.versions.node}));\n", event_line)
    has_context = int(plain["node"].split(".")[0]) >= 21
    assert plain["pk"] == (str(PK) if has_context else "9007199254740992")


def test_the_pages_parser_keeps_every_digit_without_the_reviver_context(node, event_line):
    live = (ROOT / "pgnotify" / "static" / "pgnotify" / "live.js").as_uri()
    # The dashboard's frame of this event, made as the listener makes it for the channel layer.
    text = frame({"type": "changes", "events": [exactjson.loads(event_line)["payload"]]})["text"]
    script = ('import { readFileSync } from "node:fs";\n'
              "globalThis.window = globalThis;\n"
              f"await import({json.dumps(live)});\n"
              "const frame = window.pgnotify.parseFrame(readFileSync(0, 'utf8'));\n"
              "process.stdout.write(JSON.stringify(frame.events[0]));\n")
    assert_exact(run_node(node, script, text))

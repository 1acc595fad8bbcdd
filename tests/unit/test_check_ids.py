"""Each system check id names one problem, and docs/checks.md lists every id (read from the source:
no database, no settings)."""

import ast
import re
from collections import defaultdict

from tests.helpers.support import ROOT

PACKAGE = ROOT / "pgnotify"
ID = re.compile(r"pgnotify\.[EW]\d{3}")
STREAM_ID = re.compile(r"[EW]\d{3}")  # the live streams' problems: (id, message), made into pgnotify.<id>


def template(node: ast.expr) -> str:
    """A message as written, its interpolated values as {}."""
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
    return node.value if isinstance(node, ast.Constant) else ast.unparse(node)


def messages_by_id(source: str) -> dict[str, set[str]]:
    found = defaultdict(set)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args:
            for keyword in node.keywords:
                if keyword.arg == "id" and isinstance(keyword.value, ast.Constant) \
                        and ID.fullmatch(str(keyword.value.value)):
                    found[keyword.value.value].add(template(node.args[0]))
        elif isinstance(node, ast.Tuple) and len(node.elts) == 2 and isinstance(node.elts[0], ast.Constant) \
                and STREAM_ID.fullmatch(str(node.elts[0].value)) and isinstance(node.elts[1], ast.JoinedStr):
            found[f"pgnotify.{node.elts[0].value}"].add(template(node.elts[1]))
    return found


def package_sources() -> list[str]:
    return [path.read_text() for path in sorted(PACKAGE.rglob("*.py"))]


def test_no_id_is_used_for_two_different_messages():
    found = defaultdict(set)
    for source in package_sources():
        for check_id, messages in messages_by_id(source).items():
            found[check_id] |= messages
    assert len(found) > 60  # the walk does find the checks
    reused = {check_id: sorted(messages) for check_id, messages in found.items() if len(messages) > 1}
    assert reused == {}


def test_the_walk_sees_a_reused_id():
    reused = messages_by_id('Error("a is wrong", id="pgnotify.E001")\nError(f"{b} is wrong", id="pgnotify.E001")\n')
    assert reused == {"pgnotify.E001": {"a is wrong", "{} is wrong"}}


def test_docs_list_every_id_the_package_uses_and_no_other():
    used = {check_id for source in package_sources() for check_id in [*ID.findall(source), *messages_by_id(source)]}
    documented = set(re.findall(r"^\| `(pgnotify\.[EW]\d{3})` \|", (ROOT / "docs" / "checks.md").read_text(), re.M))
    assert used - documented == set(), "ids missing from docs/checks.md"
    assert documented - used == set(), "ids in docs/checks.md that no check uses"

"""Node for tests of pgnotify's JavaScript: `node` on PATH, npm packages installed once under
build/node (never into the repository), scripts run from there so their imports resolve."""

import shutil
import subprocess
import uuid

import pytest

from tests.helpers.support import ROOT

NODE_HOME = ROOT / "build" / "node"


def node_with(*packages: str) -> str:
    """`node`, with each `name@version` installed under build/node; skips the test without node."""
    found = shutil.which("node")
    if not found:
        pytest.skip("node is not installed: pgnotify's JavaScript is not tested")
    missing = [spec for spec in packages
               if not (NODE_HOME / "node_modules" / spec.rsplit("@", 1)[0] / "package.json").exists()]
    if missing:
        NODE_HOME.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(NODE_HOME),
                        *missing], check=True, capture_output=True, timeout=300)
    return found


def run_script(node: str, script: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs an ES module script from build/node; its output is returned, whatever its exit code."""
    path = NODE_HOME / f"check-{uuid.uuid4().hex[:8]}.mjs"
    path.write_text(script)
    try:
        return subprocess.run([node, str(path)], input=stdin, capture_output=True, text=True, timeout=timeout)
    finally:
        path.unlink()

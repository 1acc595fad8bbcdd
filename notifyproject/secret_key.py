"""The demo project's SECRET_KEY: never one that is known publicly.

SECRET_KEY from the environment when set (production). Otherwise a random key generated once
and kept in a file readable by its owner only (`.secret_key` at the top of the project, ignored
by git; SECRET_KEY_FILE names another), so sessions survive restarts of a local demo. When that
file can be neither read nor created, the project refuses to start with one line.
"""

import os
import secrets
import stat
import sys
from pathlib import Path


def load(directory: Path) -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = Path(os.environ.get("SECRET_KEY_FILE") or directory / ".secret_key")
    try:
        if not path.exists():
            _create(path)
        return _read(path)
    except OSError as error:
        sys.exit(f"SECRET_KEY is not set and {path} cannot be used ({error.strerror or error}): "
                 "set SECRET_KEY, or SECRET_KEY_FILE to a writable place")


def _create(path: Path) -> None:
    # Written aside, then linked into place: two processes starting at once end with one key.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process was first: its key is the one
    finally:
        temporary.unlink(missing_ok=True)


def _read(path: Path) -> str:
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        path.chmod(0o600)  # a key others can read is no secret
        print(f"{path} was readable by others: made readable by its owner only", file=sys.stderr)
    key = path.read_text().strip()
    if len(key) < 50:
        sys.exit(f"{path} holds no usable key (fewer than 50 characters): delete it to have a new one made")
    return key

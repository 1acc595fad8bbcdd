"""PGNOTIFY["HANDLERS"] entries: what makes one valid (the system check and the listener ask the
same function, handler_problem), and the handlers they load, after the built-in ones.
"""

import inspect

from django.conf import settings
from django.utils.module_loading import import_string

from .. import conf
from ..exceptions import HandlerConfigError
from ..sending import CHANNEL_PATTERN

HANDLER_KEYS = {"handler", "channels", "options", "timeout"}


class Filtered:
    """A configured handler that only sees notifications on some channels, or has a timeout."""

    def __init__(self, handler, channels=None, timeout: float | None = None):
        self.handler = handler
        self.channels = None if channels is None else frozenset(channels)
        self.timeout = timeout

    def attach(self, listener) -> None:
        if hasattr(self.handler, "attach"):
            self.handler.attach(listener)

    def __repr__(self) -> str:
        on = "every channel" if self.channels is None else ", ".join(sorted(self.channels))
        return f"{handler_name(self.handler)} on {on}" + (f" (timeout {self.timeout:g} s)" if self.timeout else "")


def load_handler(entry):
    """A handler from a PGNOTIFY['HANDLERS'] entry: "dotted.path" or
    {"handler": "dotted.path", "channels": [...], "options": {...}, "timeout": seconds}. A class is
    instantiated (with the options as keyword arguments); a function is the handler itself.
    `timeout` bounds each call of the handler (see the module's docstring). A wrong entry raises
    HandlerConfigError with the line `manage.py check` gives (pgnotify.E010)."""
    problem = handler_problem(entry)
    if problem:
        raise HandlerConfigError(handler_error_line(problem))
    if isinstance(entry, str):
        entry = {"handler": entry}
    target = import_string(entry["handler"])
    options = entry.get("options") or {}
    handler = target(**options) if inspect.isclass(target) else target
    channels, timeout = entry.get("channels"), entry.get("timeout")
    if channels is None and timeout is None:
        return handler
    return Filtered(handler, channels, timeout)


def handler_error_line(problem: str) -> str:
    """The one line of a wrong PGNOTIFY['HANDLERS'] entry: the check's message and the listener's refusal."""
    return f"PGNOTIFY['HANDLERS']: {problem}."


def handler_problem(entry) -> str | None:
    """Why a PGNOTIFY['HANDLERS'] entry cannot be loaded, without calling anything, or None. The
    system check and load_handler both ask this: one rule, one place."""
    if isinstance(entry, str):
        entry = {"handler": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("handler"), str):
        return f"entry {entry!r} is neither a dotted path nor a dict with 'handler'"
    path = entry["handler"]
    unknown = set(entry) - HANDLER_KEYS
    if unknown:
        return f"entry {path!r} has unknown keys {sorted(unknown)} (known: {', '.join(sorted(HANDLER_KEYS))})"
    channels = entry.get("channels")
    if channels is not None and (isinstance(channels, str) or not isinstance(channels, list | tuple)
                                 or not all(valid_channel(c) for c in channels)):
        return f"'channels' of {path!r} must be a list of channel names"
    timeout = entry.get("timeout")
    if timeout is not None and not valid_timeout(timeout):
        return f"'timeout' of {path!r} must be a number of seconds above 0 (at most a day), not {timeout!r}"
    try:
        target = import_string(path)
    except ImportError as error:
        return f"cannot import {path!r}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        return f"'options' of {path!r} must be a dict of keyword arguments"
    if not callable(target):
        return f"{path!r} is neither a class nor a function"
    if inspect.isclass(target):
        try:
            inspect.signature(target).bind(**options)
        except TypeError as error:
            return f"{path!r} does not take these options: {error}"
        except ValueError:
            pass  # no signature to check against
        # A handler class may check its own options (a URL's scheme, a name's syntax): a list of problems.
        problems = target.check_options(**options) if hasattr(target, "check_options") else []
        if problems:
            return f"{path!r}: {problems[0]}"
    elif options:
        return f"{path!r} is a function: it takes no options"
    return None


def valid_channel(value) -> bool:
    return isinstance(value, str) and CHANNEL_PATTERN.fullmatch(value) is not None


def valid_timeout(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 86400


def websocket_layer_configured() -> bool:
    """True when the project has a default channel layer to forward changes to websockets with."""
    return "default" in (getattr(settings, "CHANNEL_LAYERS", None) or {})


def builtin_handlers() -> list[str]:
    """Dotted paths of the handlers every listener runs before PGNOTIFY['HANDLERS']: the websocket
    groups (when there is a channel layer), cache invalidation, and those contributed by installed
    apps (e.g. the chat's)."""
    paths = ["pgnotify.handlers.cache.CacheInvalidator"]
    if websocket_layer_configured():
        paths = ["pgnotify.handlers.groups.DashboardSender", *paths, *conf.contributed("handlers")]
    return paths


def handlers_problem(entries) -> str | None:
    """Why PGNOTIFY['HANDLERS'] itself cannot be loaded (each entry: handler_problem), or None.
    The system check and configured_handlers both ask this."""
    if isinstance(entries, str) or not isinstance(entries, list | tuple):
        return "PGNOTIFY['HANDLERS'] must be a list of handler entries."
    return None


def configured_handlers() -> list:
    entries = conf.get("HANDLERS")
    problem = handlers_problem(entries)
    if problem:
        raise HandlerConfigError(problem)
    return [load_handler(entry) for entry in [*builtin_handlers(), *entries]]


def handler_name(handler) -> str:
    return getattr(handler, "__qualname__", None) or type(handler).__qualname__

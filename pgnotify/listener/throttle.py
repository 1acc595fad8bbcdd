"""Warnings that may repeat many times a second, logged at most once per interval, with a count."""

import logging
import threading
import time
import weakref

_every: "weakref.WeakSet[ThrottledLog]" = weakref.WeakSet()


class ThrottledLog:
    """One kind of repeated warning: the first occurrence is logged at once, later ones at most once
    per `interval` seconds, saying how many there were since the last line.

        dropped = ThrottledLog(logger, "channel layer not keeping up: dropped %s dashboard events", 10)
        dropped.add(overflow)

    Occurrences counted after the last line are logged by the next `add` or `flush` once the
    interval has passed; `flush_all` (on a timer, and at exit) reports the last burst.
    """

    def __init__(self, logger: logging.Logger, message: str, interval: float = 60.0, level: int = logging.WARNING,
                 clock=time.monotonic):
        self.logger = logger
        self.message = message  # one %d or %s: the count
        self.interval = interval
        self.level = level
        self.clock = clock
        self.pending = 0  # occurrences not logged yet
        self.total = 0
        self._detail = ""
        self._logged_at: float | None = None
        self._lock = threading.Lock()  # occurrences may be counted from worker threads
        _every.add(self)

    def add(self, count: int = 1, detail: str = "") -> None:
        """Count `count` occurrences; log them if the last line is `interval` seconds old. `detail`
        (e.g. the error) ends the line."""
        with self._lock:
            self.pending += count
            self.total += count
            self._detail = detail
            self._log_if_due(force=False)

    def flush(self, force: bool = False) -> None:
        """Log the occurrences counted since the last line, if any: once the interval has passed
        since that line, or at once with `force`."""
        with self._lock:
            if self.pending:
                self._log_if_due(force)

    @staticmethod
    def flush_all(force: bool = False) -> None:
        for log in list(_every):
            log.flush(force)

    def _log_if_due(self, force: bool) -> None:
        now = self.clock()
        if not force and self._logged_at is not None and now - self._logged_at < self.interval:
            return
        count = f"{self.pending:,}" if "%s" in self.message else self.pending
        window = "" if self._logged_at is None else f" in the last {now - self._logged_at:.0f} s"
        line = self.message % count + window + (f": {self._detail}" if self._detail else "")
        self.logger.log(self.level, "%s", line)
        self.pending, self._logged_at = 0, now

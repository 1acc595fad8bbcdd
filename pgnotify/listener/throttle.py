"""Warnings that may repeat many times a second, logged at most once per interval, with a count."""

import logging
import time


class ThrottledLog:
    """One kind of repeated warning: the first occurrence is logged at once, later ones at most once
    per `interval` seconds, saying how many there were since the last line.

        dropped = ThrottledLog(logger, "channel layer not keeping up: dropped %d dashboard events", 10)
        dropped.add(overflow)
    """

    def __init__(self, logger: logging.Logger, message: str, interval: float = 60.0, level: int = logging.WARNING,
                 clock=time.monotonic):
        self.logger = logger
        self.message = message  # one %d: the count
        self.interval = interval
        self.level = level
        self.clock = clock
        self.pending = 0  # occurrences not logged yet
        self.total = 0
        self._logged_at: float | None = None

    def add(self, count: int = 1, detail: str = "") -> None:
        """Count `count` occurrences; log them if the last line is `interval` seconds old. `detail`
        (e.g. the error) ends the line."""
        self.pending += count
        self.total += count
        now = self.clock()
        if self._logged_at is not None and now - self._logged_at < self.interval:
            return
        window = "" if self._logged_at is None else f" in the last {now - self._logged_at:.0f} s"
        line = self.message % self.pending + window + (f": {detail}" if detail else "")
        self.logger.log(self.level, "%s", line)
        self.pending, self._logged_at = 0, now

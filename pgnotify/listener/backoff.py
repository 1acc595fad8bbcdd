"""The one retry delay every reconnecting part of pgnotify uses."""

import random


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: bool = True) -> float:
    """Capped exponential backoff: min(maximum, initial * 2**attempt), with jitter half to all of
    it (so that many clients that lost the same server do not come back in step)."""
    delay = min(maximum, initial * 2 ** min(attempt, 32))
    return delay * random.uniform(0.5, 1.0) if jitter else delay

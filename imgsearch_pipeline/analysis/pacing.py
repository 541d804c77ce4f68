"""Keeping provider calls under a quota: images per second, paced so that a backlog never bursts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Spaces work so that on average at most `per_second` items pass; `None` means no limit.

    Thread-safe: concurrent callers each reserve their own slot, so calls in flight never burst past the quota.
    """

    def __init__(self, per_second: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if per_second is not None and per_second <= 0:
            raise ValueError("per_second must be positive (or None for no limit)")
        self.per_second, self.clock, self.sleep = per_second, clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self, n: int = 1) -> float:
        """Wait until `n` items may go; returns the seconds waited."""
        if self.per_second is None:
            return 0.0
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + n / self.per_second
        waited = start - now
        if waited:
            self.sleep(waited)
        return waited

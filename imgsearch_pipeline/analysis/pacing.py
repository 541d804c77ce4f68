"""Keeping provider calls under a quota: images per second, paced so that a backlog never bursts."""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """Spaces work so that on average at most `per_second` items pass; `None` means no limit."""

    def __init__(self, per_second: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if per_second is not None and per_second <= 0:
            raise ValueError("per_second must be positive (or None for no limit)")
        self.per_second, self.clock, self.sleep = per_second, clock, sleep
        self._next = 0.0

    def acquire(self, n: int = 1) -> float:
        """Wait until `n` items may go; returns the seconds waited."""
        if self.per_second is None:
            return 0.0
        now = self.clock()
        waited = max(0.0, self._next - now)
        if waited:
            self.sleep(waited)
        self._next = max(now, self._next) + n / self.per_second
        return waited

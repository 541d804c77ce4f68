"""Retrying transient provider errors: exponential backoff with full jitter, capped in delay and attempts.

Throttling, timeouts and 5xx answers pass if we wait; a broken image never does. The caller says which is
which (`is_transient`); permanent errors are raised at once, transient ones after the last attempt.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """How long to keep trying. Defaults suit a model API: ~1 s, 2 s, 4 s ... never more than 60 s apart."""

    max_attempts: int = Field(default=6, ge=1, le=50)
    base_delay_s: float = Field(default=1.0, ge=0.0)
    max_delay_s: float = Field(default=60.0, ge=0.0)

    def delay(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Full jitter (uniform up to the exponential bound): many workers never retry in lockstep. A server
        that says how long to wait (Retry-After) is believed, up to the cap: retrying sooner is wasted."""
        jittered = rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))
        if retry_after_s is None:
            return jittered
        return max(jittered, min(self.max_delay_s, retry_after_s))


class RetriesExhausted(RuntimeError):
    """A transient error outlived the policy; `attempts` says how often it was tried."""

    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"gave up after {attempts} attempts: {type(last).__name__}: {last}")
        self.attempts, self.last = attempts, last


def call_with_retry(
    fn: Callable[[], T],
    is_transient: Callable[[BaseException], bool],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> tuple[T, int]:
    """Call `fn` until it succeeds; returns its result and the number of attempts it took."""
    rng = rng or random.Random()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return fn(), attempt
        except Exception as e:  # noqa: BLE001 - classified just below
            if not is_transient(e):
                raise
            if attempt == policy.max_attempts:
                raise RetriesExhausted(attempt, e) from e
            sleep(policy.delay(attempt, rng, getattr(e, "retry_after_s", None)))
    raise AssertionError("unreachable")


class TransientProviderError(RuntimeError):
    """Raised by providers for errors worth retrying (throttling, timeouts, 5xx); `retry_after_s` is the wait
    the server asked for, if it said."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def is_transient(error: BaseException) -> bool:
    """Errors that may pass by themselves: the provider's own signal, timeouts and dropped connections."""
    return isinstance(error, TransientProviderError | TimeoutError | ConnectionError)

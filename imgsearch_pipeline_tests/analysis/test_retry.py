import random

import pytest

from imgsearch_pipeline.analysis.retry import (
    RetriesExhausted,
    RetryPolicy,
    TransientProviderError,
    call_with_retry,
    is_transient,
)


class Flaky:
    """Fails `failures` times with `error`, then answers."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_transient_errors_are_retried_with_growing_capped_delays():
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=8, base_delay_s=1.0, max_delay_s=5.0)
    flaky = Flaky(6, TransientProviderError("throttled"))
    result, attempts = call_with_retry(flaky, is_transient, policy, sleep=sleeps.append, rng=random.Random(1))
    assert (result, attempts, flaky.calls) == ("ok", 7, 7)
    assert len(sleeps) == 6
    bounds = [1, 2, 4, 5, 5, 5]  # exponential, then capped
    assert all(0 <= s <= b for s, b in zip(sleeps, bounds, strict=True))
    assert len(set(sleeps)) == len(sleeps)  # jittered, not lockstep


def test_permanent_errors_are_not_retried():
    flaky = Flaky(1, ValueError("not an image"))
    with pytest.raises(ValueError):
        call_with_retry(flaky, is_transient, RetryPolicy(), sleep=lambda _: None)
    assert flaky.calls == 1


def test_gives_up_after_the_cap_with_the_attempt_count():
    flaky = Flaky(100, TimeoutError("slow"))
    with pytest.raises(RetriesExhausted, match="after 3 attempts") as info:
        call_with_retry(flaky, is_transient, RetryPolicy(max_attempts=3), sleep=lambda _: None)
    assert info.value.attempts == 3 and flaky.calls == 3


def test_delay_never_exceeds_the_cap():
    policy = RetryPolicy(base_delay_s=2.0, max_delay_s=10.0)
    rng = random.Random(0)
    assert max(policy.delay(a, rng) for a in range(1, 40) for _ in range(20)) <= 10.0


def test_the_servers_retry_after_is_waited_up_to_the_cap():
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.1, max_delay_s=10.0)
    flaky = Flaky(3, TransientProviderError("throttled", retry_after_s=7.0))
    call_with_retry(flaky, is_transient, policy, sleep=sleeps.append, rng=random.Random(2))
    assert sleeps == [7.0, 7.0, 7.0]  # the jitter alone would wait at most 0.1, 0.2, 0.4 s
    too_long = Flaky(1, TransientProviderError("throttled", retry_after_s=3600.0))
    sleeps.clear()
    call_with_retry(too_long, is_transient, policy, sleep=sleeps.append)
    assert sleeps == [10.0]  # never beyond the policy's cap

"""The model provider throttles (HTTP 429) for minutes: backoff holds the request rate, no image is lost.

The OpenAI-compatible provider talks to a real local HTTP endpoint that answers 429 until a virtual clock
passes the end of the throttling; the clock drives both the retry backoff and the pacer, so five minutes of
throttling pass in a second. End to end, the images a throttled run gives up on are recorded as retryable
failures in Postgres and the next run analyses them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from dagster import instance_for_test
from PIL import Image, ImageDraw

from imgsearch_pipeline.analysis.batch import analyse_images
from imgsearch_pipeline.analysis.openai_compat import OpenAICompatibleProvider
from imgsearch_pipeline.analysis.pacing import Pacer
from imgsearch_pipeline.analysis.retry import RetryPolicy
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline_tests.faults.support import (
    assert_partition_complete,
    images_of,
    index_documents,
    with_resources,
)
from imgsearch_pipeline_tests.harness import Pipeline
from imgsearch_pipeline_tests.openai_endpoint import FakeEndpoint, chat_answer, error, serve

MODEL = "vision-test"
THROTTLED_S = 300.0  # five minutes of 429s
POLICY = RetryPolicy(max_attempts=8, base_delay_s=2.0, max_delay_s=30.0)  # bounds 2, 4, 8, 16, 30, 30, 30 s
IMAGES = 12
ANSWER = chat_answer(json.dumps({
    "category": "t-shirt", "colors": [{"color": "red", "coverage": 1.0}], "pattern": "solid", "has_print": False,
    "attributes": {}, "description": "A plain red t-shirt."}), model=MODEL)
RETRY_AFTER_S = 30.0
THROTTLE = error(429, "Rate limit reached for requests", code="rate_limit_exceeded",
                 headers={"Retry-After": str(int(RETRY_AFTER_S))})


class VirtualClock:
    """Time that passes only when someone sleeps; stamps each request the endpoint received with its instant."""

    def __init__(self, endpoint: FakeEndpoint, throttled_until: float) -> None:
        self.now = 0.0
        self.endpoint, self.throttled_until = endpoint, throttled_until
        self.requests: list[float] = []  # the virtual instant of every request, in order
        self.backoffs: list[tuple[int, float]] = []  # (attempt that failed, delay slept before the next one)

    def stamp(self) -> None:
        """Give the requests received since the last stamp the current instant (time moves only in sleeps)."""
        self.requests += [self.now] * (len(self.endpoint.requests) - len(self.requests))

    def _advance(self, seconds: float) -> None:
        self.stamp()
        self.now += seconds
        if self.now >= self.throttled_until:
            self.endpoint.default = ANSWER

    def backoff(self, seconds: float) -> None:
        """The retry's sleep: which attempt of the current call failed is counted from the requests."""
        self.stamp()
        streak = 0
        for t in self.requests:  # consecutive throttled requests, a call ending after max_attempts of them
            streak = 0 if t >= self.throttled_until or streak == POLICY.max_attempts else streak
            streak += t < self.throttled_until
        self.backoffs.append((streak, seconds))
        self._advance(seconds)

    def pace(self, seconds: float) -> None:
        self._advance(seconds)


def _photos(n: int) -> dict[str, bytes]:
    photos = {}
    for i in range(n):
        image = Image.new("RGB", (160, 160), "white")
        ImageDraw.Draw(image).rectangle([40, 30, 120, 140], fill=(200, 20 + 15 * i, 40))
        out = io.BytesIO()
        image.save(out, format="JPEG")
        photos[f"k{i}.jpg"] = out.getvalue()
    return photos


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[str, FakeEndpoint]]:
    with serve(ANSWER) as served:
        yield served


@pytest.fixture
def provider(endpoint) -> Iterator[OpenAICompatibleProvider]:
    url, fake = endpoint
    fake.requests.clear()
    fake.default = THROTTLE
    p = OpenAICompatibleProvider(OpenAICompatibleProvider.Options(base_url=url, model=MODEL, api_key_env=None,
                                                                  timeout_s=10))
    yield p
    p.close()
    fake.default = ANSWER


def test_minutes_of_throttling_hold_the_request_rate_and_lose_no_image(endpoint, provider):
    fake = endpoint[1]
    clock = VirtualClock(fake, THROTTLED_S)
    photos = _photos(IMAGES)
    todo = [{"image_id": i, "s3_key": key, "content_hash": f"h{i}"} for i, key in enumerate(photos)]
    attributes, _ = analyse_images(todo, photos.__getitem__, provider, batch_size=4, retry=POLICY,
                                   pacer=Pacer(2.0, clock=lambda: clock.now, sleep=clock.pace),
                                   max_in_flight=1, sleep=clock.backoff)
    clock.stamp()

    # No image lost: each ends analysed, or failed with a retryable reason that names the throttling.
    assert sorted(attributes["image_id"]) == list(range(IMAGES))
    failed = attributes[attributes["status"] == "failed"]
    assert len(failed) >= 1 and (attributes["status"] == "analysed").sum() >= 1  # the throttling ended mid-run
    assert failed["retryable"].all() and failed["error"].str.contains("HTTP 429").all(), failed["error"].tolist()
    assert failed["error"].str.contains(f"gave up after {POLICY.max_attempts} attempts").all()

    # Bounded requests: a call never makes more than max_attempts of them, however long the throttling lasts.
    throttled = [t for t in clock.requests if t < THROTTLED_S]
    assert len(clock.requests) <= POLICY.max_attempts * IMAGES
    assert len(throttled) >= POLICY.max_attempts * len(failed)
    # No storm: a call's attempts are Retry-After apart, so a minute holds at most 60/30 + 1 of them, and as a
    # call spans minutes, at most two calls (the end of one, the start of the next) meet in a minute. A client
    # without backoff sends hundreds a minute.
    busiest = max(sum(1 for u in throttled if t <= u < t + 60) for t in throttled)
    assert busiest <= 2 * (60 // RETRY_AFTER_S + 1), busiest

    # Every wait honours the server's Retry-After (30 s, within the cap): never sooner, never beyond the cap.
    for attempt, delay in clock.backoffs:
        assert 1 <= attempt < POLICY.max_attempts
        assert min(POLICY.max_delay_s, RETRY_AFTER_S) <= delay <= POLICY.max_delay_s, (attempt, delay)

    # The recorded ones are analysed by the next run, once the provider answers again.
    retry = [row for row in todo if row["image_id"] in set(failed["image_id"])]
    again, _ = analyse_images(retry, photos.__getitem__, provider, retry=POLICY, sleep=clock.backoff)
    assert (again["status"] == "analysed").all() and len(again) == len(failed)


def test_a_throttled_run_records_retryable_failures_and_the_next_run_analyses_them(new_settings, endpoint):
    url, fake = endpoint
    fake.requests.clear()
    fake.default = THROTTLE
    settings = new_settings().model_copy(update={
        "provider": "openai",  # no key is sent: the variable is unset
        "provider_options": {"base_url": url, "model": MODEL, "api_key_env": "IMGSEARCH_FAULTS_UNSET_KEY"}})
    with instance_for_test() as instance:
        p = Pipeline(settings, instance, n_products=6, seed=3)
        # Real time here: three quick attempts per image, then the run records what it could not analyse.
        analysis = p.res["analysis"]
        with_resources(p, analysis=type(analysis)(**{**analysis.model_dump(), "max_attempts": 3,
                                                     "base_delay_s": 0.01, "max_delay_s": 0.05}))
        part = max(p.partitions, key=lambda k: images_of(p, k))
        try:
            p.run([part])
            with p.db() as conn:
                n = sum(pg.status_counts(conn, part).values())
                assert pg.status_counts(conn, part) == {"failed": n}
                failures = pg.list_failures(conn, part)
            assert len(failures) == n and all(f["retryable"] and "HTTP 429" in f["error"] for f in failures)
            assert len(fake.requests) == 3 * n  # three attempts per image, no more
            assert index_documents(p, part) == {}
        finally:
            fake.default = ANSWER  # the provider answers again
        p.run([part])
        assert_partition_complete(p, part, n)
        with p.db() as conn:
            assert pg.list_failures(conn, part) == []

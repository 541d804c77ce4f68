"""Batch analysis: every image ends analysed or failed with a reason; transient errors back off and retry."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pandas as pd

from imgsearch_pipeline.analysis.batch import analyse_images
from imgsearch_pipeline.analysis.provider import AnalysisFailure, AnalysisProvider, BatchTooSmall
from imgsearch_pipeline.analysis.retry import RetryPolicy, TransientProviderError
from imgsearch_pipeline.analysis.types import ImageAnalysis


class ScriptedProvider(AnalysisProvider):
    """Stands in for a model service: follows a script of outcomes per call, then answers normally.

    Each script entry is "throttle" (the whole call fails transiently), or a dict image -> "retryable" /
    "permanent" for per-image failures in that call.
    """

    name = "scripted"

    def __init__(self, script: list) -> None:
        self.script, self.calls = list(script), []

    model_version = "scripted-1"
    image_dim = 2
    text_dim = 2

    def analyse(self, images: Sequence[bytes]) -> list[ImageAnalysis | AnalysisFailure]:
        self.calls.append(list(images))
        step = self.script.pop(0) if self.script else {}
        if step == "throttle":
            raise TransientProviderError("ThrottlingException: rate exceeded")
        out: list[ImageAnalysis | AnalysisFailure] = []
        for data in images:
            fate = step.get(data)
            if fate == "retryable":
                out.append(AnalysisFailure("503 from model endpoint", retryable=True))
            elif fate == "permanent":
                out.append(AnalysisFailure("not an image (unrecognised format)"))
            else:
                out.append(ImageAnalysis(category="tee", colors=[{"color": "green", "coverage": 1.0}],
                                         description=data.decode(), image_embedding=[1.0, 0.0],
                                         text_embedding=[0.0, 1.0], model_version=self.model_version))
        return out

    def embed_text(self, texts):
        return np.zeros((len(texts), 2), dtype=np.float32)

    def embed_image(self, data):
        return np.zeros(2, dtype=np.float32)


TODO = [{"image_id": i, "s3_key": f"k{i}", "content_hash": f"h{i}"} for i in range(1, 5)]
POLICY = RetryPolicy(max_attempts=4, base_delay_s=0.5, max_delay_s=2.0)


def _read(key: str) -> bytes:
    return key.encode()


def _run(provider, read=_read):
    sleeps: list[float] = []
    attrs, vecs = analyse_images(TODO, read, provider, batch_size=2, retry=POLICY, sleep=sleeps.append)
    return attrs.set_index("image_id"), vecs, sleeps


def test_throttled_batches_back_off_then_succeed():
    provider = ScriptedProvider(["throttle", "throttle", "throttle"])
    attrs, vecs, sleeps = _run(provider)
    assert list(attrs["status"]) == ["analysed"] * 4 and len(vecs) == 4
    assert len(sleeps) == 3 and all(0 <= s <= 2.0 for s in sleeps)
    assert len(provider.calls) == 3 + 2  # three refused calls, then both batches


def test_one_image_retried_alone_others_untouched():
    provider = ScriptedProvider([{b"k2": "retryable"}, {b"k2": "retryable"}])
    attrs, _, sleeps = _run(provider)
    assert list(attrs["status"]) == ["analysed"] * 4
    assert [b"k2"] in provider.calls and len(sleeps) == 1


def test_permanent_failures_are_recorded_not_retried():
    provider = ScriptedProvider([{b"k1": "permanent"}])
    attrs, vecs, sleeps = _run(provider)
    assert attrs.loc[1, "status"] == "failed" and "not an image" in attrs.loc[1, "error"]
    assert (attrs.drop(index=1)["status"] == "analysed").all() and len(vecs) == 3
    assert sleeps == []


def test_a_provider_down_for_good_fails_its_images_with_the_reason():
    provider = ScriptedProvider(["throttle"] * 100)
    attrs, vecs, sleeps = _run(provider)
    assert (attrs["status"] == "failed").all() and vecs.empty
    assert attrs["error"].str.contains("gave up after 4 attempts").all()
    assert len(sleeps) == 2 * 3  # per batch: attempts - 1 waits, never an unbounded storm


def test_unreadable_objects_fail_alone():
    def read(key: str) -> bytes:
        if key == "k3":
            raise OSError("NoSuchKey: the object vanished")
        return key.encode()

    attrs, _, _ = _run(ScriptedProvider([]), read)
    assert attrs.loc[3, "status"] == "failed" and "could not read from S3" in attrs.loc[3, "error"]
    assert (attrs.drop(index=3)["status"] == "analysed").all()


class FakeClock:
    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_holds_the_rate_without_bursts():
    from imgsearch_pipeline.analysis.pacing import Pacer

    clock = FakeClock()
    pacer = Pacer(10.0, clock=lambda: clock.now, sleep=clock.sleep)
    for _ in range(4):
        pacer.acquire(5)
    assert clock.slept == [0.5, 0.5, 0.5]  # 20 images at 10/s: the last batch starts at 1.5 s


def test_batches_are_paced_to_the_quota():
    from imgsearch_pipeline.analysis.pacing import Pacer

    clock = FakeClock()
    pacer = Pacer(2.0, clock=lambda: clock.now, sleep=clock.sleep)
    attrs, _ = analyse_images(TODO, _read, ScriptedProvider([]), batch_size=2, retry=POLICY, pacer=pacer)
    assert (attrs["status"] == "analysed").all() and clock.slept == [1.0]  # 2 images, then 2 more a second later


class OneAtATimeProvider(ScriptedProvider):
    """A remote API: one image per call, slow enough that calls overlap; records the peak in flight."""

    call_size = 1

    def __init__(self) -> None:
        super().__init__([])
        self.lock, self.in_flight, self.peak = threading.Lock(), 0, 0

    def analyse(self, images):
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        time.sleep(0.05)
        try:
            return super().analyse(images)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_calls_in_flight_are_bounded_and_results_keep_their_order():
    todo = [{"image_id": i, "s3_key": f"k{i}", "content_hash": f"h{i}"} for i in range(1, 13)]
    for limit in (1, 3):
        provider = OneAtATimeProvider()
        attrs, vecs = analyse_images(todo, _read, provider, batch_size=6, retry=POLICY, max_in_flight=limit)
        assert provider.peak == limit  # the bound is reached (calls overlap) and never passed
        assert all(len(call) == 1 for call in provider.calls)
        assert list(attrs["image_id"]) == list(range(1, 13)) == list(vecs["image_id"])
        assert list(attrs["description"]) == [_read(f"k{i}").decode() for i in range(1, 13)]


def test_rows_carry_the_hash_of_the_bytes_read_and_bytes_already_decided_skip_the_model():
    digest = {f"k{i}": hashlib.sha256(_read(f"k{i}")).hexdigest() for i in range(1, 6)}
    todo = [
        {"image_id": 1, "s3_key": "k1", "etag": "e1", "content_hash": None},  # new: never read
        {"image_id": 2, "s3_key": "k2", "etag": "e2", "content_hash": "stale", "analysed_hash": "stale"},
        {"image_id": 3, "s3_key": "k3", "etag": "e3", "content_hash": None, "analysed_hash": digest["k3"]},
        {"image_id": 4, "s3_key": "k4", "etag": "e4", "content_hash": None, "failed_hash": digest["k4"]},
        {"image_id": 5, "s3_key": "k5", "etag": "e5", "content_hash": None},  # gone before the read
    ]

    def read(key: str) -> bytes:
        if key == "k5":
            raise KeyError("NoSuchKey")
        return _read(key)

    provider = ScriptedProvider([])
    attrs, vecs = analyse_images(todo, read, provider, batch_size=2, retry=POLICY)
    attrs = attrs.set_index("image_id")
    assert [im for call in provider.calls for im in call] == [b"k1", b"k2"]  # only bytes not decided yet
    assert dict(attrs["status"]) == {1: "analysed", 2: "analysed", 3: "unchanged", 4: "unchanged", 5: "failed"}
    assert dict(attrs["content_hash"].drop(index=5)) == {i: digest[f"k{i}"] for i in range(1, 5)}
    assert pd.isna(attrs.loc[5, "content_hash"])  # never read: no hash
    assert dict(attrs["etag"]) == {i: f"e{i}" for i in range(1, 6)}
    assert sorted(vecs["image_id"]) == [1, 2]


class BatchProvider(ScriptedProvider):
    """A provider with a batch path (like Bedrock's): records what each batch job was given."""

    def __init__(self, minimum: int = 1) -> None:
        super().__init__([])
        self.minimum, self.jobs = minimum, []

    def run_batch(self, items, s3_client, **options):
        if len(items) < self.minimum:
            raise BatchTooSmall(f"{len(items)} images, the job minimum is {self.minimum}")
        self.jobs.append([data for _, data in items])
        return {image_id: out for (image_id, _), out in zip(items, self.analyse([d for _, d in items]), strict=True)}


def test_the_batch_path_hashes_what_it_read_and_sends_only_undecided_bytes():
    from dagster import build_asset_context

    from imgsearch_pipeline.assets.analysis import _batch_inference

    done = hashlib.sha256(b"k2").hexdigest()
    todo = [{"image_id": i, "s3_key": f"k{i}", "etag": f"e{i}", "content_hash": None} for i in range(1, 5)]
    todo[1]["analysed_hash"] = done
    reads: list[str] = []

    def read(key: str) -> bytes:
        reads.append(key)
        if key == "k4":
            raise OSError("NoSuchKey")
        return _read(key)

    analysis = SimpleNamespace(batch_size=2, max_in_flight=1, retry_policy=lambda: POLICY, pacer=lambda: None)
    images = SimpleNamespace(client=lambda: None)
    for provider in (BatchProvider(), BatchProvider(minimum=10)):  # a batch job; too few: ordinary calls
        reads.clear()
        attrs, vecs = _batch_inference(build_asset_context(), provider, todo, read, images, analysis)
        attrs = attrs.set_index("image_id")
        assert sorted(reads) == ["k1", "k2", "k3", "k4"]  # each object read once, whichever path analyses
        assert [im for call in provider.calls for im in call] == [b"k1", b"k3"]
        assert len(provider.jobs) == (1 if provider.minimum == 1 else 0)
        assert dict(attrs["status"]) == {1: "analysed", 2: "unchanged", 3: "analysed", 4: "failed"}
        assert attrs.loc[3, "content_hash"] == hashlib.sha256(b"k3").hexdigest() and sorted(vecs["image_id"]) == [1, 3]

"""The OpenAI-compatible provider against a real local HTTP server that plays the model endpoint.

The server records every request and answers from a per-test script, so the request shape, the answer checks
and the classification of HTTP errors (transient, permanent, configuration) are tested over real sockets.
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError

from imgsearch_pipeline.analysis.batch import analyse_images, analyse_with_retry
from imgsearch_pipeline.analysis.model_output import answer_schema
from imgsearch_pipeline.analysis.openai_compat import OpenAICompatibleProvider, retry_after_seconds
from imgsearch_pipeline.analysis.provider import AnalysisFailure, ProviderConfigurationError, get_provider
from imgsearch_pipeline.analysis.retry import RetryPolicy, TransientProviderError
from imgsearch_pipeline.analysis.types import ImageAnalysis
from imgsearch_pipeline_tests.openai_endpoint import FakeEndpoint, Reply, chat_answer, error, serve

KEY_ENV = "IMGSEARCH_TEST_OPENAI_KEY"
KEY = "sk-test-5ecret-do-not-leak"
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct:q4"
NO_DELAY = RetryPolicy(max_attempts=4, base_delay_s=0.0, max_delay_s=0.0)
GOOD = {"category": "tee", "colors": [{"color": "crimson", "coverage": 0.8}, {"color": "Navy Blue", "coverage": 0.2}],
        "pattern": "plaid", "has_print": None, "attributes": {"sleeve_length": "full sleeves"},
        "description": "A red and navy checked t-shirt with long sleeves."}


def answer(content: str | None = None, finish_reason: str = "stop", **message) -> Reply:
    content = json.dumps(GOOD) if content is None and "refusal" not in message else content
    return chat_answer(content, finish_reason, model=MODEL, **message)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, FakeEndpoint]]:
    with serve(answer()) as endpoint:
        yield endpoint


@pytest.fixture
def fake(server) -> Iterator[FakeEndpoint]:
    endpoint = server[1]
    endpoint.requests.clear()
    endpoint.script.clear()
    endpoint.default = answer()
    endpoint.release.clear()
    yield endpoint
    endpoint.release.set()  # a hung reply finishes now instead of holding a thread


@pytest.fixture(scope="module")
def provider(server) -> Iterator[OpenAICompatibleProvider]:
    p = OpenAICompatibleProvider(OpenAICompatibleProvider.Options(base_url=server[0] + "/", model=MODEL,
                                                                  api_key_env=KEY_ENV, timeout_s=5))
    yield p
    p.close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def _photo(colour: tuple[int, int, int] = (200, 30, 40), fmt: str = "PNG") -> bytes:
    image = Image.new("RGB", (300, 300), "white")
    ImageDraw.Draw(image).polygon([(90, 60), (210, 60), (270, 110), (240, 150), (210, 130), (210, 260), (90, 260),
                                   (90, 130), (60, 150), (30, 110)], fill=colour)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


PHOTO = _photo()


def _sent_image(request: dict) -> Image.Image:
    url = request["body"]["messages"][1]["content"][1]["image_url"]["url"]
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix):], validate=True)))


# --- (1) the request ----------------------------------------------------------------------------------

def test_request_shape(provider, fake):
    result = provider.analyse([PHOTO])[0]
    assert isinstance(result, ImageAnalysis)
    assert len(fake.requests) == 1
    request = fake.requests[0]
    body, headers = request["body"], {k.lower(): v for k, v in request["headers"].items()}
    assert request["path"] == "/v1/chat/completions"  # trailing "/" of base_url tolerated
    assert body["model"] == MODEL and body["temperature"] == 0 and body["max_tokens"] == 800
    system, user = body["messages"]
    assert system == {"role": "system", "content": provider.prompt}
    for vocabulary_id in ("t-shirt", "red", "navy", "checked", "long-sleeve"):
        assert vocabulary_id in system["content"]
    assert user["role"] == "user" and [part["type"] for part in user["content"]] == ["text", "image_url"]
    sent = _sent_image(request)
    assert sent.format == "JPEG" and sent.size == (300, 300)
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "product_analysis", "schema": answer_schema(), "strict": False}}
    assert headers["authorization"] == f"Bearer {KEY}"


def test_large_photos_are_sent_downscaled(provider, fake):
    big = io.BytesIO()
    Image.new("RGB", (3000, 1500), (10, 120, 40)).save(big, format="PNG")
    provider.analyse([big.getvalue()])
    assert _sent_image(fake.requests[0]).size == (1024, 512)


def test_no_authorization_header_without_a_key(provider, fake, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    assert isinstance(provider.analyse([PHOTO])[0], ImageAnalysis)
    assert "authorization" not in {k.lower() for k in fake.requests[0]["headers"]}


@pytest.mark.parametrize(("mode", "response_format"), [("json_object", {"type": "json_object"}), ("none", None)])
def test_without_json_schema_support_the_schema_goes_into_the_prompt(server, fake, mode, response_format):
    p = OpenAICompatibleProvider(OpenAICompatibleProvider.Options(base_url=server[0], model=MODEL,
                                                                  structured_output=mode))
    body = p.request_body(b"\xff\xd8jpeg")
    p.close()
    assert body.get("response_format") == response_format
    text = body["messages"][1]["content"][0]["text"]
    assert json.dumps(answer_schema(), separators=(",", ":")) in text


# --- (2) a valid answer ---------------------------------------------------------------------------------

def test_valid_answer_becomes_an_analysis_with_local_vectors(provider, fake):
    result = provider.analyse([PHOTO])[0]
    assert isinstance(result, ImageAnalysis)
    assert (result.category, result.color_ids, result.pattern) == ("t-shirt", ["red", "navy"], "checked")
    assert result.attributes == {"sleeve_length": "long-sleeve"} and result.description == GOOD["description"]
    image_vec, text_vec = np.array(result.image_embedding), np.array(result.text_embedding)
    assert image_vec.shape == (provider.image_dim,) == (1280,) and text_vec.shape == (provider.text_dim,) == (384,)
    assert np.linalg.norm(image_vec) == pytest.approx(1.0, abs=1e-4)
    assert np.linalg.norm(text_vec) == pytest.approx(1.0, abs=1e-4)
    # Comparable with what searches embed: the description as query text, the original upload as photo.
    assert np.allclose(text_vec, provider.embed_text([GOOD["description"]])[0], atol=1e-5)
    assert float(image_vec @ provider.embed_image(PHOTO)) > 0.98
    assert float(text_vec @ provider.embed_text(["a blue floral dress"])[0]) < 0.9
    assert result.model_version == provider.model_version


def test_model_version_names_everything_that_shapes_the_output(provider):
    parts = provider.model_version.split("+")
    assert parts[0] == "openai-1" and parts[1] == "Qwen-Qwen2.5-VL-7B-Instruct-q4"
    assert re.fullmatch(r"prompt\.[0-9a-f]{8}", parts[2]) and parts[2] == f"prompt.{provider.prompt_version}"
    assert parts[3].startswith("efficientnet-lite0@") and parts[4].startswith("all-MiniLM-L6-v2@")
    assert parts[5] == f"vocab.{provider.vocab.version}" and len(parts) == 6


# --- (3) answers that are not usable ----------------------------------------------------------------------

@pytest.mark.parametrize(("content", "reason"), [
    ("Sure! This is a lovely red t-shirt.", "not JSON"),
    ('{"category": "tee", "colors": [', "not JSON"),
    (json.dumps(GOOD | {"category": "spaceship"}), "category 'spaceship' is not in the vocabulary"),
])
def test_unusable_answers_are_retryable_failures(provider, fake, content, reason):
    fake.default = answer(content)
    result = provider.analyse([PHOTO])[0]
    assert isinstance(result, AnalysisFailure) and result.retryable and reason in result.reason


@pytest.mark.parametrize(("reply", "reason"), [
    (Reply(body={"object": "list", "data": []}), "without choices"),
    (Reply(body="<html>proxy login</html>"), "not JSON"),
    (Reply(body={"choices": [{"index": 0, "message": {"content": None}}]}), "without text"),
    (answer('{"category": "te', finish_reason="length"), "max_tokens=800"),
])
def test_a_malformed_success_is_transient_with_the_reason(provider, fake, reply, reason):
    fake.default = reply
    with pytest.raises(TransientProviderError, match=re.escape(reason)):
        provider.analyse([PHOTO])


def test_garbage_is_retried_then_recorded(provider, fake):
    fake.default = answer("no idea")
    result = analyse_with_retry(provider, [PHOTO], NO_DELAY, sleep=lambda _: None)[0]
    assert isinstance(result, AnalysisFailure) and result.retryable and "not JSON" in result.reason
    assert len(fake.requests) == 1 + NO_DELAY.max_attempts  # the batch call, then the image on its own


# --- (4, 5) throttling and server errors ---------------------------------------------------------------------

@pytest.mark.parametrize("failures", [[429], [503], [429, 503, 500], [408, 409]])
def test_transient_errors_back_off_then_succeed(provider, fake, failures):
    fake.script = [error(status, "busy") for status in failures]
    sleeps: list[float] = []
    result = analyse_with_retry(provider, [PHOTO], NO_DELAY, sleep=sleeps.append)[0]
    assert isinstance(result, ImageAnalysis) and result.category == "t-shirt"
    assert len(fake.requests) == len(failures) + 1 and len(sleeps) == len(failures)


def test_throttled_forever_fails_after_max_attempts(provider, fake):
    fake.default = error(429, "Rate limit reached for requests", headers={"Retry-After": "7"})
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0)
    result = analyse_with_retry(provider, [PHOTO], policy, sleep=lambda _: None)[0]
    assert isinstance(result, AnalysisFailure) and result.retryable
    assert "gave up after 3 attempts" in result.reason and "HTTP 429" in result.reason
    assert "Retry-After: 7" in result.reason and "Rate limit reached" in result.reason
    assert len(fake.requests) == 3


def test_the_servers_retry_after_sets_the_wait(provider, fake):
    fake.script = [error(429, "slow down", headers={"Retry-After": "2"})]
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=2, base_delay_s=0.0, max_delay_s=30.0)
    assert isinstance(analyse_with_retry(provider, [PHOTO], policy, sleep=sleeps.append)[0], ImageAnalysis)
    assert sleeps == [2.0]


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "12"}, 12.0), ({"Retry-After": "1.5"}, 1.5), ({"retry-after-ms": "250"}, 0.25),
    ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0), ({"Retry-After": "soon"}, None), ({}, None)])
def test_retry_after_is_read_as_seconds_milliseconds_or_a_date(headers, expected):
    assert retry_after_seconds(httpx.Headers(headers)) == expected


# --- (6) configuration errors stop the run -------------------------------------------------------------------

@pytest.mark.parametrize(("reply", "words"), [
    (error(401, "Incorrect API key provided", echo_auth=True), f"the API key from ${KEY_ENV} was rejected"),
    (error(403, "forbidden", echo_auth=True), "refused access (HTTP 403)"),
    (error(404, f"The model `{MODEL}` does not exist"), "does not exist"),
    (error(400, "response_format type json_schema is not supported"), "structured_output='json_schema'"),
    (error(400, "llava-phi is not a multimodal model"), "cannot take images"),
])
def test_configuration_errors_are_raised_naming_url_and_model_never_the_key(provider, fake, reply, words):
    fake.default = reply
    with pytest.raises(ProviderConfigurationError) as raised:
        provider.analyse([PHOTO])
    message = str(raised.value)
    assert words in message and provider.options.base_url in message and repr(MODEL) in message
    assert KEY not in message and KEY not in repr(raised.value)
    assert not isinstance(raised.value, TransientProviderError)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [404, 400, 500])
def test_server_text_is_quoted_with_the_key_blanked(provider, fake, status):
    fake.default = error(status, "", echo_auth=True)
    with pytest.raises((ProviderConfigurationError, TransientProviderError)) as raised:
        provider.analyse([PHOTO])
    assert "invalid key in Bearer ***" in str(raised.value) and KEY not in str(raised.value)


def test_401_without_a_key_says_the_variable_is_unset(provider, fake, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    fake.default = error(401, "missing key")
    with pytest.raises(ProviderConfigurationError, match=rf"\${KEY_ENV} is unset"):
        provider.analyse([PHOTO])


def test_a_configuration_error_stops_the_batch(provider, fake):
    fake.default = error(401, "Incorrect API key provided")
    with pytest.raises(ProviderConfigurationError):
        analyse_with_retry(provider, [PHOTO], NO_DELAY, sleep=lambda _: None)


# --- (7) refusals are permanent ----------------------------------------------------------------------------

@pytest.mark.parametrize(("reply", "reason"), [
    (answer("", finish_reason="content_filter"), "content filter"),
    (answer(refusal="I can't help with that."), "I can't help with that."),
    (error(400, "The response was filtered due to the prompt triggering the content management policy.",
           code="content_filter"), "content filter (HTTP 400)"),
    (error(400, "Invalid image: cannot identify image file"), "image rejected (HTTP 400)"),
    (error(422, "Failed to decode base64 image_url"), "image rejected (HTTP 422)"),
])
def test_refusals_are_permanent_and_not_retried(provider, fake, reply, reason):
    fake.default = reply
    result = analyse_with_retry(provider, [PHOTO], NO_DELAY, sleep=lambda _: None)[0]
    assert isinstance(result, AnalysisFailure) and not result.retryable
    assert result.reason.startswith("refused by openai: ") and reason in result.reason
    assert len(fake.requests) == 1


# --- (8) broken images never reach the endpoint ---------------------------------------------------------------

def test_a_broken_image_fails_without_a_request(provider, fake):
    results = analyse_with_retry(provider, [b"not an image"], NO_DELAY, sleep=lambda _: None)
    assert results == [AnalysisFailure("not an image (unrecognised format)")]
    assert fake.requests == []


# --- (9) timeouts and dead servers ------------------------------------------------------------------------------

def test_a_hung_server_times_out_as_transient(server, fake):
    fake.default = Reply(body=answer().body, delay_s=10)
    p = OpenAICompatibleProvider(OpenAICompatibleProvider.Options(base_url=server[0], model=MODEL, timeout_s=0.5))
    start = time.monotonic()
    with pytest.raises(TransientProviderError, match=r"within timeout_s=0\.5"):
        p.analyse([PHOTO])
    p.close()
    assert time.monotonic() - start < 3 and len(fake.requests) == 1


def test_a_dead_server_is_transient():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = OpenAICompatibleProvider(OpenAICompatibleProvider.Options(base_url=f"http://127.0.0.1:{port}/v1",
                                                                  model=MODEL, timeout_s=2))
    with pytest.raises(TransientProviderError, match="could not reach"):
        p.analyse([PHOTO])
    p.close()


# --- concurrency, as the pipeline runs it --------------------------------------------------------------------

def test_requests_in_flight_share_the_provider(provider, fake):
    todo = [{"image_id": i, "s3_key": f"k{i}", "content_hash": f"h{i}"} for i in range(6)]
    photos = {f"k{i}": _photo((40 * i, 30, 200 - 30 * i)) for i in range(6)}
    fake.default = Reply(body=answer().body, delay_s=0.2)
    start = time.monotonic()
    attrs, vecs = analyse_images(todo, photos.__getitem__, provider, batch_size=6, max_in_flight=6,
                                 retry=NO_DELAY, sleep=lambda _: None)
    assert list(attrs["status"]) == ["analysed"] * 6 and len(vecs) == 6
    assert len(fake.requests) == 6 and time.monotonic() - start < 6 * 0.2  # they overlapped
    assert {len(v) for v in vecs["image_embedding"]} == {1280}


# --- (10) built by name, options validated -------------------------------------------------------------------

def test_built_by_name_with_validated_options(server):
    p = get_provider("openai", {"base_url": server[0], "model": "llava:13b", "timeout_s": 2})
    assert isinstance(p, OpenAICompatibleProvider) and p.name == "openai"
    assert (p.options.model, p.options.timeout_s, p.options.api_key_env) == ("llava:13b", 2, "OPENAI_API_KEY")
    assert p.options.max_tokens == 800 and p.options.structured_output == "json_schema"
    p.close()
    with pytest.raises(ValidationError, match="temperature"):
        get_provider("openai", {"base_url": server[0], "model": "m", "temperature": 0.2})
    with pytest.raises(ValidationError, match="structured_output"):
        get_provider("openai", {"base_url": server[0], "model": "m", "structured_output": "grammar"})
    with pytest.raises(ValidationError, match="model"):
        get_provider("openai", {"base_url": server[0]})
    with pytest.raises(ValidationError, match="base_url"):
        get_provider("openai", {"base_url": "127.0.0.1:8000/v1", "model": "m"})


def test_a_key_pasted_as_api_key_env_is_not_echoed(server):
    with pytest.raises(ValidationError, match="must name an environment variable") as raised:
        get_provider("openai", {"base_url": server[0], "model": "m", "api_key_env": KEY})
    assert KEY not in str(raised.value)

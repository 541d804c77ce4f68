"""The Bedrock provider against botocore's Stubber (requests checked against botocore's own service models) and
the batch backfill against a real local S3 (moto server)."""

from __future__ import annotations

import base64
import io
import json
import re
import uuid
from datetime import UTC, datetime

import boto3
import botocore.client
import numpy as np
import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from PIL import Image
from pydantic import ValidationError

from imgsearch_pipeline.analysis.batch import analyse_with_retry
from imgsearch_pipeline.analysis.bedrock import (
    TITAN_MAX_TEXT_CHARS,
    TOOL_NAME,
    BedrockOptions,
    BedrockProvider,
)
from imgsearch_pipeline.analysis.bedrock_batch import (
    BatchJobFailed,
    BatchQuotas,
    BatchTimeout,
    BatchTooSmall,
    answer_text,
    claude_record,
    plan_jobs,
    run_batch,
    titan_record,
    write_inputs,
)
from imgsearch_pipeline.analysis.model_output import answer_schema
from imgsearch_pipeline.analysis.provider import AnalysisFailure, ProviderConfigurationError, get_provider
from imgsearch_pipeline.analysis.retry import RetryPolicy, TransientProviderError
from imgsearch_pipeline.analysis.types import ImageAnalysis
from imgsearch_pipeline.analysis.vision_llm import prepare_image
from imgsearch_pipeline.vocab import get_vocabulary

REGION = "us-east-1"
SECRET = "fakeSecretKeyThatMustNeverBeLogged000000"
CREDS = {"aws_access_key_id": "AKIAFAKEFAKEFAKEFAKE", "aws_secret_access_key": SECRET}
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
TITAN = "amazon.titan-embed-image-v1"
DIM = 256
GOOD = {"category": "tee", "colors": [{"color": "crimson", "coverage": 0.8}, {"color": "Navy Blue", "coverage": 0.2}],
        "pattern": "plaid", "has_print": None, "attributes": {"sleeve_length": "full sleeves"},
        "description": "A red and navy checked t-shirt with long sleeves."}
NO_DELAY = RetryPolicy(max_attempts=4, base_delay_s=0.0, max_delay_s=0.0)


def png(size: tuple[int, int] = (64, 48), rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, rgb).save(out, format="PNG")
    return out.getvalue()


def capture(client, operation: str) -> list[dict]:
    """Records the parameters of every call of `operation` (Stubber compares them; tests also look inside)."""
    seen: list[dict] = []
    client.meta.events.register(f"before-parameter-build.{client.meta.service_model.service_name}.{operation}",
                                lambda params, **_: seen.append(dict(params)))
    return seen


def converse_answer(content: list[dict], stop: str = "tool_use") -> dict:
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": {"inputTokens": 1500, "outputTokens": 120, "totalTokens": 1620}, "metrics": {"latencyMs": 900}}


def tool_answer(answer: dict) -> dict:
    return converse_answer([{"toolUse": {"toolUseId": "tooluse_1", "name": TOOL_NAME, "input": answer}}])


def titan_answer(values: list[float]) -> dict:
    data = json.dumps({"embedding": values, "inputTextTokenCount": 0, "message": None}).encode()
    return {"body": StreamingBody(io.BytesIO(data), len(data)), "contentType": "application/json"}


def raw_vector(seed: int = 0, dim: int = DIM) -> list[float]:
    return [float(x) for x in np.random.default_rng(seed).normal(size=dim) * 3.0]


@pytest.fixture
def runtime():
    client = boto3.client("bedrock-runtime", region_name=REGION, **CREDS)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


@pytest.fixture
def provider(runtime) -> BedrockProvider:
    options = BedrockOptions(region=REGION, model_id=MODEL, embedding_dim=DIM)
    return BedrockProvider(options, runtime_client=runtime[0],
                           control_client=boto3.client("bedrock", region_name=REGION, **CREDS))


def expected_converse() -> dict:
    return {
        "modelId": MODEL,
        "system": [{"text": ANY}],
        "messages": [{"role": "user", "content": [{"image": {"format": "jpeg", "source": {"bytes": ANY}}},
                                                  {"text": ANY}]}],
        "inferenceConfig": {"maxTokens": 800, "temperature": 0.0},
        "toolConfig": {"tools": [{"toolSpec": {"name": TOOL_NAME, "description": ANY,
                                               "inputSchema": {"json": answer_schema()}}}],
                       "toolChoice": {"tool": {"name": TOOL_NAME}}},
    }


def expected_titan() -> dict:
    return {"modelId": TITAN, "body": ANY, "contentType": "application/json", "accept": "application/json"}


# --- on-demand: Converse + Titan ---------------------------------------------------------------------------------


def test_converse_request_carries_vocabulary_prompt_jpeg_and_forced_tool(provider, runtime):
    client, stub = runtime
    conversed, embedded = capture(client, "Converse"), capture(client, "InvokeModel")
    stub.add_response("converse", tool_answer(GOOD), expected_converse())
    stub.add_response("invoke_model", titan_answer(raw_vector()), expected_titan())

    [result] = provider.analyse([png((2000, 1000))])

    assert isinstance(result, ImageAnalysis), result
    system = conversed[0]["system"][0]["text"]
    vocab = get_vocabulary()
    assert [i for i in (*vocab.category_ids, *vocab.color_ids, *vocab.pattern_ids) if i not in system] == []
    sent = conversed[0]["messages"][0]["content"][0]["image"]["source"]["bytes"]
    image = Image.open(io.BytesIO(sent))
    assert sent[:3] == b"\xff\xd8\xff" and image.format == "JPEG" and image.size == (1024, 512)
    assert TOOL_NAME in conversed[0]["messages"][0]["content"][1]["text"]
    # Titan embeds the very JPEG the model saw, at the configured length.
    body = json.loads(embedded[0]["body"])
    assert body == {"inputImage": base64.b64encode(sent).decode(), "embeddingConfig": {"outputEmbeddingLength": DIM}}


def test_tool_answer_becomes_a_mapped_analysis_with_unit_vectors_in_one_space(provider, runtime):
    _, stub = runtime
    raw = raw_vector(seed=3)
    stub.add_response("converse", tool_answer(GOOD), expected_converse())
    stub.add_response("invoke_model", titan_answer(raw), expected_titan())

    [result] = provider.analyse([png()])

    assert isinstance(result, ImageAnalysis)
    assert (result.category, result.color_ids, result.pattern) == ("t-shirt", ["red", "navy"], "checked")
    assert result.attributes == {"sleeve_length": "long-sleeve"} and result.has_print is False
    image_vec, text_vec = np.asarray(result.image_embedding), np.asarray(result.text_embedding)
    assert image_vec.shape == (DIM,) and np.isclose(np.linalg.norm(image_vec), 1.0, atol=1e-5)
    np.testing.assert_allclose(image_vec, np.asarray(raw) / np.linalg.norm(raw), atol=1e-5)
    np.testing.assert_array_equal(image_vec, text_vec)
    assert result.model_version == provider.model_version


@pytest.mark.parametrize(("response", "reason"), [
    (tool_answer(GOOD | {"category": "spaceship"}), "category"),
    (tool_answer(GOOD | {"colors": [{"color": "ultraviolet", "coverage": 1.0}]}), "colors"),
    (tool_answer({"category": "tee"}), "description"),
    (converse_answer([{"text": "It looks like a red shirt to me."}], stop="end_turn"), "not JSON"),
    (converse_answer([], stop="max_tokens"), "not JSON"),
])
def test_garbage_and_out_of_vocabulary_answers_are_retryable_failures_without_embedding(provider, runtime,
                                                                                        response, reason):
    _, stub = runtime
    stub.add_response("converse", response, expected_converse())  # no Titan response queued: none may be made

    [result] = provider.analyse([png()])

    assert isinstance(result, AnalysisFailure) and result.retryable and reason in result.reason


def test_text_answer_with_valid_json_is_accepted(provider, runtime):
    _, stub = runtime
    stub.add_response("converse", converse_answer([{"text": json.dumps(GOOD)}], stop="end_turn"), expected_converse())
    stub.add_response("invoke_model", titan_answer(raw_vector()), expected_titan())

    [result] = provider.analyse([png()])

    assert isinstance(result, ImageAnalysis) and result.category == "t-shirt"


def test_throttling_backs_off_and_then_succeeds(provider, runtime):
    _, stub = runtime
    for _ in range(2):
        stub.add_client_error("converse", service_error_code="ThrottlingException", service_message="Too many requests",
                              http_status_code=429, expected_params=expected_converse())
    stub.add_response("converse", tool_answer(GOOD), expected_converse())
    stub.add_response("invoke_model", titan_answer(raw_vector()), expected_titan())
    sleeps: list[float] = []

    [result] = analyse_with_retry(provider, [png()], NO_DELAY, sleep=sleeps.append)

    assert isinstance(result, ImageAnalysis) and len(sleeps) == 2


@pytest.mark.parametrize(("code", "status"), [("ThrottlingException", 429), ("ServiceUnavailableException", 503),
                                              ("ModelTimeoutException", 408), ("InternalServerException", 500),
                                              ("ModelNotReadyException", 429)])
def test_transient_codes_are_retried_until_the_policy_gives_up(provider, runtime, code, status):
    _, stub = runtime
    for _ in range(NO_DELAY.max_attempts):
        stub.add_client_error("converse", service_error_code=code, service_message="try later",
                              http_status_code=status)

    [result] = analyse_with_retry(provider, [png()], NO_DELAY, sleep=lambda _: None)

    assert isinstance(result, AnalysisFailure) and result.retryable and code in result.reason


@pytest.mark.parametrize("error", [ReadTimeoutError, ConnectTimeoutError, EndpointConnectionError])
def test_timeouts_and_dropped_connections_are_transient(provider, error):
    class Unreachable:
        def converse(self, **_):
            raise error(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com/model/x/converse")

    provider._runtime = Unreachable()
    with pytest.raises(TransientProviderError, match=error.__name__):
        provider.analyse([png()])


@pytest.mark.parametrize("code", ["AccessDeniedException", "ResourceNotFoundException", "UnrecognizedClientException"])
def test_configuration_errors_stop_the_run_instead_of_failing_images(provider, runtime, code):
    _, stub = runtime
    stub.add_client_error("converse", service_error_code=code, service_message="You don't have access to the model",
                          http_status_code=403)

    with pytest.raises(ProviderConfigurationError) as raised:
        analyse_with_retry(provider, [png()], RetryPolicy(max_attempts=3, base_delay_s=0.0))  # the pipeline's path

    assert code in str(raised.value) and SECRET not in str(raised.value) and CREDS["aws_access_key_id"] not in str(
        raised.value)


def test_the_llm_query_parser_gets_a_plan_through_a_forced_tool(provider, runtime):
    from imgsearch_pipeline.search.llm_parser import SCHEMA_NAME, LLMPlan, LLMQueryParser

    client, stub = runtime
    conversed = capture(client, "Converse")
    plan = {"filters": [{"field": "category", "values": ["dresses"], "text": "dresses"}], "exclude": [],
            "has_print": False, "residual": ""}
    stub.add_response("converse", converse_answer([{"toolUse": {"toolUseId": "t", "name": SCHEMA_NAME,
                                                                "input": plan}}]))

    parsed = LLMQueryParser(provider, timeout_s=5).parse("plain dresses")

    assert [(c.field, c.values) for c in parsed.filters] == [("category", ["dress"])] and parsed.has_print is False
    request = conversed[0]
    assert request["messages"][0]["content"] == [{"text": "plain dresses"}]
    assert request["toolConfig"]["toolChoice"] == {"tool": {"name": SCHEMA_NAME}}
    assert request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"] == LLMPlan.model_json_schema()


def test_a_validation_error_about_the_image_is_a_permanent_failure(provider, runtime):
    _, stub = runtime
    stub.add_client_error("converse", service_error_code="ValidationException",
                          service_message="Could not process image", http_status_code=400)

    [result] = provider.analyse([png()])

    assert isinstance(result, AnalysisFailure) and not result.retryable and "Could not process image" in result.reason


def test_other_validation_errors_are_configuration_errors(provider, runtime):
    _, stub = runtime
    stub.add_client_error("converse", service_error_code="ValidationException", http_status_code=400,
                          service_message="Invocation of model ID with on-demand throughput isn't supported.")

    with pytest.raises(ProviderConfigurationError, match="on-demand throughput"):
        provider.analyse([png()])


@pytest.mark.parametrize("stop", ["content_filtered", "guardrail_intervened"])
def test_filtered_content_is_a_permanent_failure_and_not_retried(provider, runtime, stop):
    _, stub = runtime
    stub.add_response("converse", converse_answer([{"text": "I can't help with that."}], stop=stop),
                      expected_converse())

    [result] = analyse_with_retry(provider, [png()], NO_DELAY, sleep=lambda _: None)

    assert isinstance(result, AnalysisFailure) and not result.retryable and stop in result.reason


def test_titan_text_and_image_bodies(provider, runtime):
    client, stub = runtime
    embedded = capture(client, "InvokeModel")
    long_query = "red summer dress with white polka dots " * 40
    for seed in range(3):
        stub.add_response("invoke_model", titan_answer(raw_vector(seed)), expected_titan())

    texts = provider.embed_text(["red dress", long_query])
    image = provider.embed_image(png((3000, 300)))

    bodies = [json.loads(call["body"]) for call in embedded]
    assert bodies[0] == {"inputText": "red dress", "embeddingConfig": {"outputEmbeddingLength": DIM}}
    truncated = bodies[1]["inputText"]
    assert len(truncated) > TITAN_MAX_TEXT_CHARS - 20 and long_query.startswith(truncated)
    assert len(truncated) <= TITAN_MAX_TEXT_CHARS and long_query[len(truncated)] == " "  # whole words only
    assert set(bodies[2]) == {"inputImage", "embeddingConfig"}
    sent = Image.open(io.BytesIO(base64.b64decode(bodies[2]["inputImage"])))
    assert sent.format == "JPEG" and max(sent.size) == 1024
    assert texts.shape == (2, DIM) and image.shape == (DIM,)
    np.testing.assert_allclose(np.linalg.norm(np.vstack([texts, image]), axis=1), 1.0, atol=1e-5)


def test_titan_vector_of_the_wrong_length_is_refused(provider, runtime):
    _, stub = runtime
    stub.add_response("invoke_model", titan_answer(raw_vector(dim=1024)), expected_titan())

    with pytest.raises(RuntimeError, match="expected 256"):
        provider.embed_text(["red dress"])


def test_titan_errors_are_classified_too(provider, runtime):
    _, stub = runtime
    stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    stub.add_client_error("invoke_model", service_error_code="AccessDeniedException", http_status_code=403)

    with pytest.raises(TransientProviderError, match="ThrottlingException"):
        provider.embed_text(["red dress"])
    with pytest.raises(ProviderConfigurationError, match="AccessDeniedException"):
        provider.embed_text(["red dress"])


# --- construction ------------------------------------------------------------------------------------------------


def test_get_provider_builds_without_calling_aws(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", lambda self, op, params: calls.append(op))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    built = get_provider("bedrock", {"region": REGION, "model_id": MODEL})

    assert isinstance(built, BedrockProvider) and built.image_dim == built.text_dim == 1024
    assert built._runtime is None and built._control is None  # nothing built, so nothing resolved or called
    assert built.model_version.startswith(f"bedrock-1+{MODEL}+{TITAN}.1024+prompt.{built.prompt_version}+vocab.")
    config = built.runtime.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 1} and config.read_timeout == 120.0
    assert built.runtime.meta.region_name == REGION and built.control.meta.service_model.service_name == "bedrock"
    assert calls == []


@pytest.mark.parametrize("options", [
    {"region": REGION, "model_id": MODEL, "temprature": 0.2},
    {"region": REGION, "model_id": MODEL, "embedding_dim": 512},
    {"model_id": MODEL},
])
def test_bad_options_are_rejected(options):
    with pytest.raises(ValidationError):
        get_provider("bedrock", options)


def test_model_version_follows_model_and_dimension():
    a = BedrockProvider(BedrockOptions(region=REGION, model_id=MODEL))
    b = BedrockProvider(BedrockOptions(region=REGION, model_id=MODEL, embedding_dim=384))
    c = BedrockProvider(BedrockOptions(region=REGION, model_id="us.anthropic.claude-3-5-haiku-20241022-v1:0"))
    assert len({a.model_version, b.model_version, c.model_version}) == 3
    assert f"{TITAN}.384" in b.model_version



# --- batch inference: JSONL in a real (moto) S3, the control plane through the Stubber ----------------------------

ROLE = "arn:aws:iam::123456789012:role/BedrockBatchInference"
JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/ab12cd34ef56"
JOB_ID = "ab12cd34ef56"
POLL = 30.0
COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 160, 30), "yellow": (230, 220, 40)}


@pytest.fixture
def bucket(s3_server):
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name=REGION, **CREDS)
    name = f"batch-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return s3, name


@pytest.fixture
def control():
    client = boto3.client("bedrock", region_name=REGION, **CREDS)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


@pytest.fixture
def batch_provider(runtime, control, bucket) -> BedrockProvider:
    options = BedrockOptions(region=REGION, model_id=MODEL, embedding_dim=DIM, batch_role_arn=ROLE,
                             batch_s3_uri=f"s3://{bucket[1]}/backfill")
    return BedrockProvider(options, runtime_client=runtime[0], control_client=control[0])


def job(status: str, output_uri: str = "s3://x/out/", message: str | None = None, name: str = "imgsearch-x") -> dict:
    detail = {"jobArn": JOB_ARN, "jobName": name, "modelId": MODEL, "roleArn": ROLE, "status": status,
              "submitTime": datetime.now(UTC),
              "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://x/in/", "s3InputFormat": "JSONL"}},
              "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": output_uri}}}
    return detail | ({"message": message} if message else {})


def expected_create() -> dict:
    return {"jobName": ANY, "clientRequestToken": ANY, "roleArn": ROLE, "modelId": MODEL,
            "modelInvocationType": "InvokeModel",
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": ANY, "s3InputFormat": "JSONL"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": ANY}}}


def expected_list() -> dict:
    return {"nameContains": ANY, "sortBy": "CreationTime", "sortOrder": "Descending"}


def colour_of(jpeg: bytes) -> str:
    mean = np.asarray(Image.open(io.BytesIO(jpeg))).reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda c: np.abs(mean - COLOURS[c]).sum())


def read_jsonl(s3, bucket: str, uri: str) -> dict[str, list[dict]]:
    """file name -> records, for every JSONL file under an s3:// folder."""
    prefix = uri.split("/", 3)[3]
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {obj["Key"][len(prefix):]: [json.loads(line) for line in s3.get_object(
        Bucket=bucket, Key=obj["Key"])["Body"].read().splitlines()] for obj in listing}


def claude_output(text: str) -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1500, "output_tokens": 100}}


class FakeBedrock:
    """Plays Bedrock's side of a job: reads the JSONL inputs and writes `{output}/{job id}/{file}.out`."""

    def __init__(self, s3, bucket: str, created: list[dict]) -> None:
        self.s3, self.bucket, self.created, self.sleeps = s3, bucket, created, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) == 1:
            self.run()

    def run(self) -> None:
        params = self.created[-1]
        inputs = read_jsonl(self.s3, self.bucket, params["inputDataConfig"]["s3InputDataConfig"]["s3Uri"])
        out_prefix = params["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].split("/", 3)[3]
        for name, records in inputs.items():
            lines = ["this line is not JSON"]
            for record in records:
                content = record["modelInput"]["messages"][0]["content"][0]["source"]["data"]
                colour = colour_of(base64.b64decode(content))
                if colour == "red":
                    lines.append(json.dumps({**record, "modelOutput": claude_output(json.dumps(GOOD))}))
                elif colour == "blue":
                    lines.append(json.dumps({**record, "error": {"errorCode": 400, "errorMessage": "bad request"}}))
                elif colour == "green":
                    lines.append(json.dumps({**record, "modelOutput": claude_output("Sorry, I am not sure.")}))
                # yellow: Bedrock wrote no line for it
            self.s3.put_object(Bucket=self.bucket, Key=f"{out_prefix}{JOB_ID}/{name}.out",
                               Body="\n".join(lines).encode())


def batch_items() -> list[tuple[str, bytes]]:
    return [*((f"img-{c}", png(rgb=rgb)) for c, rgb in COLOURS.items()), ("img-broken", b"not an image at all")]


SMALL = BatchQuotas(min_records_per_job=2, max_records_per_file=2)


def planned_name(provider: BedrockProvider, items: list[tuple[str, bytes]]) -> str:
    """The job name run_batch will use (it is deterministic), so responses can echo it like Bedrock would."""
    prepared = [(i, data, prepare_image(data)) for i, data in items if data.startswith(b"\x89PNG")]
    [plan] = plan_jobs(provider, prepared, SMALL)
    return plan.base_name


def test_batch_lifecycle_writes_jsonl_creates_polls_and_loads_results(batch_provider, runtime, control, bucket):
    s3, bucket_name = bucket
    created = capture(control[0], "CreateModelInvocationJob")
    bedrock = FakeBedrock(s3, bucket_name, created)
    name = planned_name(batch_provider, batch_items())
    output_uri = f"s3://{bucket_name}/backfill/{name}/output/"
    control[1].add_response("list_model_invocation_jobs", {"invocationJobSummaries": []},
                            expected_list() | {"nameContains": name})
    control[1].add_response("create_model_invocation_job", {"jobArn": JOB_ARN},
                            expected_create() | {"jobName": name, "clientRequestToken": name})
    for status in ("Submitted", "InProgress", "Completed"):
        control[1].add_response("get_model_invocation_job", job(status, output_uri, name=name),
                                {"jobIdentifier": JOB_ARN})
    runtime[1].add_response("invoke_model", titan_answer(raw_vector()), expected_titan())  # only red validated

    results = run_batch(batch_provider, batch_items(), s3, quotas=SMALL, poll_interval_s=POLL,
                        sleep=bedrock.sleep, clock=lambda: 0.0, embed_workers=1)

    assert list(results) == [item[0] for item in batch_items()]
    red = results["img-red"]
    assert isinstance(red, ImageAnalysis) and red.category == "t-shirt" and red.model_version == (
        batch_provider.model_version)
    assert len(red.image_embedding) == DIM and np.isclose(np.linalg.norm(red.image_embedding), 1.0, atol=1e-5)
    blue, green, yellow, broken = (results[f"img-{c}"] for c in ("blue", "green", "yellow", "broken"))
    assert isinstance(blue, AnalysisFailure) and "400" in blue.reason and "bad request" in blue.reason
    assert not blue.retryable
    assert isinstance(green, AnalysisFailure) and green.retryable and "not JSON" in green.reason
    assert isinstance(yellow, AnalysisFailure) and yellow.retryable and "no result" in yellow.reason
    assert isinstance(broken, AnalysisFailure) and not broken.retryable and "not an image" in broken.reason
    assert bedrock.sleeps == [POLL, POLL]  # Submitted, InProgress, then Completed

    params = created[0]
    assert re.fullmatch(r"imgsearch-[0-9a-f]{24}", name)
    input_uri = params["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
    assert input_uri == f"s3://{bucket_name}/backfill/{name}/input/"
    assert params["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] == output_uri
    files = read_jsonl(s3, bucket_name, input_uri)
    assert sorted(files) == ["part-00000.jsonl", "part-00001.jsonl"] and [len(f) for f in files.values()] == [2, 2]
    records = [r for f in files.values() for r in f]
    assert sorted(colour_of(base64.b64decode(r["modelInput"]["messages"][0]["content"][0]["source"]["data"]))
                  for r in records) == sorted(COLOURS)
    for record in records:
        assert set(record) == {"recordId", "modelInput"} and re.fullmatch(r"[A-Za-z0-9]{11}", record["recordId"])
        body = record["modelInput"]
        assert body["anthropic_version"] == "bedrock-2023-05-31" and body["max_tokens"] == 800
        assert body["system"] == batch_provider.prompt and "tools" not in body
        image, text = body["messages"][0]["content"]
        assert image["source"]["type"] == "base64" and image["source"]["media_type"] == "image/jpeg"
        assert json.dumps(answer_schema(), separators=(",", ":")) in text["text"]
    assert len({r["recordId"] for r in records}) == 4


def test_a_rerun_reattaches_to_the_existing_job_instead_of_paying_twice(batch_provider, runtime, control, bucket):
    s3, bucket_name = bucket
    items = batch_items()[:2]
    created = capture(control[0], "CreateModelInvocationJob")
    listed = capture(control[0], "ListModelInvocationJobs")
    output_uri = f"s3://{bucket_name}/backfill/out/"
    control[1].add_response("list_model_invocation_jobs", {"invocationJobSummaries": []}, expected_list())
    control[1].add_response("create_model_invocation_job", {"jobArn": JOB_ARN}, expected_create())
    control[1].add_response("get_model_invocation_job", job("InProgress", output_uri), {"jobIdentifier": JOB_ARN})
    with pytest.raises(BatchTimeout, match="re-attaches"):
        run_batch(batch_provider, items, s3, quotas=SMALL, poll_interval_s=POLL, timeout_s=0.0,
                  sleep=lambda _: None, clock=lambda: 0.0)
    name = created[0]["jobName"]
    assert listed[0]["nameContains"] == name
    input_uri = created[0]["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
    for key in read_jsonl(s3, bucket_name, input_uri):
        s3.delete_object(Bucket=bucket_name, Key=input_uri.split("/", 3)[3] + key)
    s3.put_object(Bucket=bucket_name, Key=f"backfill/out/{JOB_ID}/part-00000.jsonl.out", Body=b"")

    summary = job("InProgress", output_uri, name=name)
    control[1].add_response("list_model_invocation_jobs", {"invocationJobSummaries": [summary]}, expected_list())
    control[1].add_response("get_model_invocation_job", job("Completed", output_uri, name=name),
                            {"jobIdentifier": JOB_ARN})
    results = run_batch(batch_provider, items, s3, quotas=SMALL, sleep=lambda _: None, clock=lambda: 0.0)

    assert len(created) == 1 and listed[1]["nameContains"] == name  # same name, no second create call
    assert read_jsonl(s3, bucket_name, input_uri) == {}  # nothing uploaded again
    assert all(isinstance(r, AnalysisFailure) and "no result" in r.reason for r in results.values())


@pytest.mark.parametrize("status", ["Failed", "Expired", "Stopped"])
def test_a_job_that_ends_badly_is_a_clear_error_and_the_next_run_is_a_new_attempt(batch_provider, control, bucket,
                                                                                  status):
    s3, _ = bucket
    items = batch_items()[:2]
    created = capture(control[0], "CreateModelInvocationJob")
    control[1].add_response("list_model_invocation_jobs", {"invocationJobSummaries": []}, expected_list())
    control[1].add_response("create_model_invocation_job", {"jobArn": JOB_ARN}, expected_create())
    control[1].add_response("get_model_invocation_job", job("Validating"), {"jobIdentifier": JOB_ARN})
    control[1].add_response("get_model_invocation_job", job(status, message="the role cannot read the input"),
                            {"jobIdentifier": JOB_ARN})
    with pytest.raises(BatchJobFailed, match=f"ended {status}: the role cannot read the input"):
        run_batch(batch_provider, items, s3, quotas=SMALL, sleep=lambda _: None, clock=lambda: 0.0)

    name = created[0]["jobName"]
    control[1].add_response("list_model_invocation_jobs",
                            {"invocationJobSummaries": [job(status, name=name)]}, expected_list())
    control[1].add_response("create_model_invocation_job", {"jobArn": JOB_ARN}, expected_create())
    control[1].add_response("get_model_invocation_job", job("Failed", message="again"), {"jobIdentifier": JOB_ARN})
    with pytest.raises(BatchJobFailed):
        run_batch(batch_provider, items, s3, quotas=SMALL, sleep=lambda _: None, clock=lambda: 0.0)
    assert created[1]["jobName"] == f"{name}-r2" and created[1]["clientRequestToken"] == f"{name}-r2"


def test_polling_gives_up_after_the_timeout_and_says_the_job_keeps_running(batch_provider, control, bucket):
    s3, _ = bucket
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    control[1].add_response("list_model_invocation_jobs", {"invocationJobSummaries": []}, expected_list())
    control[1].add_response("create_model_invocation_job", {"jobArn": JOB_ARN}, expected_create())
    for status in ("Scheduled", "InProgress", "InProgress", "InProgress"):
        control[1].add_response("get_model_invocation_job", job(status), {"jobIdentifier": JOB_ARN})

    with pytest.raises(BatchTimeout, match="InProgress"):
        run_batch(batch_provider, batch_items()[:2], s3, quotas=SMALL, poll_interval_s=60.0, timeout_s=180.0,
                  sleep=sleep, clock=lambda: now[0])
    assert now[0] == 180.0


def test_below_the_minimum_record_count_nothing_is_written_or_submitted(batch_provider, bucket):
    s3, bucket_name = bucket
    with pytest.raises(BatchTooSmall, match="minimum of 100 records.*on demand"):
        run_batch(batch_provider, batch_items(), s3)  # default quotas; the control stub has nothing queued
    assert s3.list_objects_v2(Bucket=bucket_name).get("KeyCount", 0) == 0


def test_batch_needs_its_options(provider, bucket):
    with pytest.raises(ProviderConfigurationError, match="batch_role_arn and batch_s3_uri"):
        run_batch(provider, batch_items(), bucket[0])


def test_plans_split_into_jobs_and_files_under_the_quotas_with_exact_sizes(batch_provider, bucket):
    s3, bucket_name = bucket
    prepared = [(f"img-{i}", data, prepare_image(data)) for i, data in
                enumerate(png((40 + i, 40), (i * 20 % 255, 90, 200)) for i in range(10))]
    line = max(_line_size_of(batch_provider, jpeg) for _, _, jpeg in prepared)
    quotas = BatchQuotas(min_records_per_job=2, max_records_per_file=100, max_file_bytes=2 * line,
                         max_job_bytes=4 * line)

    plans = plan_jobs(batch_provider, prepared, quotas)
    again = plan_jobs(batch_provider, prepared, quotas)

    assert sorted(len(p.records) for p in plans) == [3, 3, 4]  # as few jobs as fit, near-equal
    assert [p.base_name for p in plans] == [p.base_name for p in again] and len({p.base_name for p in plans}) == 3
    assert [r.image_id for p in plans for r in p.records] == [i for i, _, _ in prepared]
    for plan in plans:
        assert all(len(f) <= 2 and sum(r.size for r in f) <= 2 * line for f in plan.files)
    uri = f"s3://{bucket_name}/plan/"
    keys = write_inputs(batch_provider, plans[0], s3, uri)
    sizes = [s3.head_object(Bucket=bucket_name, Key=k)["ContentLength"] for k in keys]
    assert sizes == [sum(r.size for r in f) for f in plans[0].files]


def test_job_names_follow_the_images_and_the_model_version(batch_provider):
    prepared = [(f"img-{i}", png(rgb=(i, 0, 0)), prepare_image(png(rgb=(i, 0, 0)))) for i in range(3)]
    quotas = BatchQuotas(min_records_per_job=1)
    [base] = plan_jobs(batch_provider, prepared, quotas)
    [renamed] = plan_jobs(batch_provider, [("img-x", *prepared[0][1:]), *prepared[1:]], quotas)
    [tools] = plan_jobs(batch_provider, prepared, quotas, use_tools=True)
    other = BedrockProvider(batch_provider.options.model_copy(update={"embedding_dim": 384}))
    [dims] = plan_jobs(other, prepared, quotas)
    assert len({base.base_name, renamed.base_name, tools.base_name, dims.base_name}) == 4


def test_tool_form_record_and_tool_answers(batch_provider):
    jpeg = prepare_image(png())
    body = claude_record(batch_provider, "R0000000001", jpeg, use_tools=True)["modelInput"]
    assert body["tools"] == [{"name": TOOL_NAME, "description": ANY, "input_schema": answer_schema()}]
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    output = {"content": [{"type": "tool_use", "id": "toolu_1", "name": TOOL_NAME, "input": GOOD}],
              "stop_reason": "tool_use"}
    assert json.loads(answer_text(output)) == GOOD
    titan = titan_record(batch_provider, "R0000000001", jpeg)
    assert titan == {"recordId": "R0000000001", "modelInput": {
        "inputImage": base64.b64encode(jpeg).decode(), "embeddingConfig": {"outputEmbeddingLength": DIM}}}


def _line_size_of(provider: BedrockProvider, jpeg: bytes) -> int:
    return len(json.dumps(claude_record(provider, "R0000000000", jpeg), separators=(",", ":"))) + 1

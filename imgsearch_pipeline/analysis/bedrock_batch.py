"""Bedrock Batch Inference for the one-time backfill: about half the on-demand price and no throttling.

`run_batch` prepares every image, plans jobs within the batch quotas, writes the JSONL inputs to S3, creates
(or re-attaches to) the model invocation jobs, polls them, reads the `.out` files and returns one
`ImageAnalysis` or `AnalysisFailure` per caller id. No Dagster here: an asset or a script calls it.

Decisions:
- Idempotent: a job's name is a hash of its records (caller ids, image bytes) and of everything that shapes
  the answer (model_version, max_tokens, request form). A re-run lists jobs by that name and re-attaches to
  a live or finished one instead of paying twice; only after Failed/Stopped/Expired is a new attempt
  (`-r2`, `-r3` ...) created. The idempotency token of the create call is the job name, for the same reason.
- Too small: Bedrock refuses a job below its minimum record count, so `run_batch` raises `BatchTooSmall`
  before writing anything; such sets go through the ordinary on-demand path (`batch.analyse_images` with the
  same provider), whose rows carry the same model_version.
- No tool use in batch by default: the Bedrock user guide says batch inference supports neither tool calling
  nor structured output, so the schema goes into the prompt as text and `parse_answer` validates the text
  answer exactly as on demand (a tool_use answer is accepted too). `use_tools=True` sends the on-demand
  request form (tools + forced tool_choice) for models and regions that take it.
- Same rows as on demand: results carry the provider's model_version (same model, prompt, schema and
  vocabulary), so the incremental pipeline does not analyse backfilled images again.
- Embeddings on demand: after the Claude job, the images whose answer validated are embedded with Titan
  through the provider's own `embed` (retried per `RetryPolicy`). A Titan image embedding costs about 1% of
  the Claude call, so batching it saves almost nothing, while a second job would add its own minimum-record
  quota, another wait of up to a day, and would embed images whose analysis failed. `titan_record` builds
  the JSONL line should that trade-off change.

Quotas (`BatchQuotas`) default to the values of the AWS General Reference, "Amazon Bedrock endpoints and
quotas" (per model and adjustable, so they are parameters): at least 100 records per job, at most 50,000
records per input file and per job, 1 GB per input file, 5 GB per job.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from imgsearch_pipeline.analysis.bedrock import (
    TOOL_DESCRIPTION,
    TOOL_NAME,
    BedrockProvider,
    ProviderConfigurationError,
)
from imgsearch_pipeline.analysis.images import BadImage
from imgsearch_pipeline.analysis.provider import AnalysisFailure, BatchTooSmall
from imgsearch_pipeline.analysis.retry import RetriesExhausted, RetryPolicy, call_with_retry, is_transient
from imgsearch_pipeline.analysis.types import ImageAnalysis
from imgsearch_pipeline.analysis.vision_llm import PermanentProviderError, prepare_image

log = logging.getLogger(__name__)

# Bump when the batch request form changes: part of every job name, so a change never re-attaches to old jobs.
BATCH_LOGIC_VERSION = "1"
ANTHROPIC_VERSION = "bedrock-2023-05-31"
ACTIVE = frozenset({"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"})
SUCCEEDED = frozenset({"Completed", "PartiallyCompleted"})
ENDED_BADLY = frozenset({"Failed", "Stopped", "Expired"})
REFUSED_STOP_REASONS = frozenset({"refusal", "content_filtered", "guardrail_intervened"})
JOB_NAME_PREFIX = "imgsearch"


class BatchQuotas(BaseModel):
    """Bedrock batch inference quotas (AWS General Reference defaults; check Service Quotas for the account)."""

    model_config = ConfigDict(extra="forbid")

    min_records_per_job: int = Field(default=100, ge=1)
    max_records_per_file: int = Field(default=50_000, ge=1)
    max_records_per_job: int = Field(default=50_000, ge=1)
    max_file_bytes: int = Field(default=1_000_000_000, ge=1)
    max_job_bytes: int = Field(default=5_000_000_000, ge=1)


class BatchJobFailed(RuntimeError):
    """A batch job ended Failed, Stopped or Expired; a re-run creates a new attempt for it."""


class BatchTimeout(RuntimeError):
    """Jobs still running when the caller stopped waiting; they keep running and a re-run re-attaches."""


@dataclass(frozen=True)
class Record:
    record_id: str  # 11 alphanumeric characters, as the batch input format documents
    image_id: str
    jpeg: bytes
    size: int  # bytes of its JSONL line, newline included


@dataclass
class PlannedJob:
    base_name: str
    records: list[Record]
    files: list[list[Record]] = field(default_factory=list)

    @property
    def file_names(self) -> list[str]:
        return [f"part-{i:05d}.jsonl" for i in range(len(self.files))]


@dataclass
class JobRun:
    plan: PlannedJob
    name: str
    arn: str
    status: str = "Submitted"
    detail: dict = field(default_factory=dict)

    @property
    def job_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]


# --- JSONL records -------------------------------------------------------------------------------------------------


def batch_user_text(schema: dict, use_tools: bool) -> str:
    if use_tools:
        return f"Label the product in this photo. Answer only by calling the tool {TOOL_NAME}."
    return ("Label the product in this photo. Answer with only a JSON object (no prose, no code fence) that "
            "matches this JSON schema:\n" + json.dumps(schema, separators=(",", ":")))


def claude_record(provider: BedrockProvider, record_id: str, jpeg: bytes, use_tools: bool = False) -> dict:
    """One JSONL line for a Claude model: the InvokeModel (Anthropic Messages) body, same prompt as on demand."""
    body: dict[str, Any] = {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": provider.options.max_tokens,
        "temperature": 0,
        "system": provider.prompt,
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                         "data": base64.b64encode(jpeg).decode("ascii")}},
            {"type": "text", "text": batch_user_text(provider.schema, use_tools)},
        ]}],
    }
    if use_tools:
        body["tools"] = [{"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": provider.schema}]
        body["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
    return {"recordId": record_id, "modelInput": body}


def titan_record(provider: BedrockProvider, record_id: str, jpeg: bytes) -> dict:
    """One JSONL line for Titan Multimodal Embeddings G1 (its InvokeModel body), for a batch embedding job."""
    return {"recordId": record_id, "modelInput": provider.titan_body(image=jpeg)}


def _line(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _line_size(provider: BedrockProvider, jpeg_size: int, use_tools: bool, overhead: dict[bool, int]) -> int:
    """Exact line length without encoding the image: base64 is 4 characters per 3 bytes, never escaped in JSON."""
    if use_tools not in overhead:
        overhead[use_tools] = len(_line(claude_record(provider, "R0000000000", b"", use_tools)))
    return overhead[use_tools] + 4 * math.ceil(jpeg_size / 3)


# --- planning ------------------------------------------------------------------------------------------------------


def _request_signature(provider: BedrockProvider, use_tools: bool) -> str:
    return json.dumps({"v": BATCH_LOGIC_VERSION, "model_version": provider.model_version,
                       "max_tokens": provider.options.max_tokens, "use_tools": use_tools}, sort_keys=True)


def _job_name(signature: str, members: Sequence[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256(signature.encode())
    for image_id, data in members:
        digest.update(image_id.encode() + b"\0" + hashlib.sha256(data).digest())
    return f"{JOB_NAME_PREFIX}-{digest.hexdigest()[:24]}"


def _split_files(records: list[Record], quotas: BatchQuotas) -> list[list[Record]]:
    files: list[list[Record]] = [[]]
    size = 0
    for record in records:
        if record.size > quotas.max_file_bytes:
            raise ValueError(f"one record is {record.size} bytes, above the {quotas.max_file_bytes}-byte file quota")
        if files[-1] and (len(files[-1]) >= quotas.max_records_per_file or size + record.size > quotas.max_file_bytes):
            files.append([])
            size = 0
        files[-1].append(record)
        size += record.size
    return files


def plan_jobs(provider: BedrockProvider, prepared: Sequence[tuple[str, bytes, bytes]], quotas: BatchQuotas,
              use_tools: bool = False) -> list[PlannedJob]:
    """Cut (image id, original bytes, jpeg) into as few jobs as the quotas allow, of near-equal record counts,
    each split into files under the per-file quotas; the same input always gives the same plan and names."""
    n = len(prepared)
    if n < quotas.min_records_per_job:
        raise BatchTooSmall(f"{n} images are below the batch minimum of {quotas.min_records_per_job} records per "
                            "job; analyse them on demand (batch.analyse_images with the same provider) instead")
    overhead: dict[bool, int] = {}
    sizes = [_line_size(provider, len(jpeg), use_tools, overhead) for _, _, jpeg in prepared]
    jobs = max(math.ceil(n / quotas.max_records_per_job), math.ceil(sum(sizes) / quotas.max_job_bytes), 1)
    while True:
        bounds = [round(i * n / jobs) for i in range(jobs + 1)]
        chunks = [range(bounds[i], bounds[i + 1]) for i in range(jobs)]
        if all(sum(sizes[j] for j in chunk) <= quotas.max_job_bytes for chunk in chunks):
            break
        jobs += 1
    if min(len(chunk) for chunk in chunks) < quotas.min_records_per_job:
        raise BatchTooSmall(f"{n} images need {jobs} jobs to fit the size quotas, and that leaves fewer than "
                            f"{quotas.min_records_per_job} records in a job; analyse some of them on demand")
    signature = _request_signature(provider, use_tools)
    plans = []
    for chunk in chunks:
        records = [Record(f"R{k:010d}", prepared[j][0], prepared[j][2], sizes[j]) for k, j in enumerate(chunk)]
        name = _job_name(signature, [(prepared[j][0], prepared[j][1]) for j in chunk])
        plans.append(PlannedJob(name, records, _split_files(records, quotas)))
    return plans


# --- S3 and the control plane --------------------------------------------------------------------------------------


def split_s3_uri(uri: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return match.group(1), match.group(2)


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def write_inputs(provider: BedrockProvider, plan: PlannedJob, s3_client: Any, input_uri: str,
                 use_tools: bool = False) -> list[str]:
    """Upload the job's JSONL files (through temporary files: a file may be up to the 1 GB quota)."""
    bucket, prefix = split_s3_uri(input_uri)
    keys = []
    for name, records in zip(plan.file_names, plan.files, strict=True):
        with tempfile.TemporaryFile() as tmp:
            for record in records:
                tmp.write(_line(claude_record(provider, record.record_id, record.jpeg, use_tools)))
            tmp.seek(0)
            key = _join(prefix, name) if prefix else name
            s3_client.upload_fileobj(tmp, bucket, key)
            keys.append(key)
    return keys


class _Control:
    """Control-plane calls with the provider's error kinds and the pipeline's retry policy."""

    def __init__(self, provider: BedrockProvider, client: Any, retry: RetryPolicy,
                 sleep: Callable[[float], None]) -> None:
        self.provider, self.client, self.retry, self.sleep = provider, client, retry, sleep

    def __call__(self, operation: str, **params: Any) -> dict:
        method = getattr(self.client, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())
        try:
            return call_with_retry(lambda: self.provider.call_api(operation, lambda: method(**params)),
                                   is_transient, self.retry, self.sleep)[0]
        except RetriesExhausted as e:
            raise BatchJobFailed(f"Bedrock {operation} kept failing: {e}") from e

    def find_jobs(self, base_name: str) -> list[dict]:
        """Every job named `base_name` or one of its attempts (`-r2` ...), newest first."""
        pattern = re.compile(re.escape(base_name) + r"(-r\d+)?")
        found, token = [], None
        while True:
            page = self("ListModelInvocationJobs", nameContains=base_name, sortBy="CreationTime",
                        sortOrder="Descending", **({"nextToken": token} if token else {}))
            found += [s for s in page.get("invocationJobSummaries", []) if pattern.fullmatch(s.get("jobName", ""))]
            token = page.get("nextToken")
            if not token:
                return sorted(found, key=lambda s: s["submitTime"], reverse=True)


def _submit(provider: BedrockProvider, control: _Control, plan: PlannedJob, s3_client: Any, base_uri: str,
            role_arn: str, use_tools: bool) -> JobRun:
    """Re-attach to this plan's live or finished job, or upload its inputs and create the next attempt."""
    existing = control.find_jobs(plan.base_name)
    for summary in existing:
        if summary.get("status") not in ENDED_BADLY:
            log.info("re-attaching to batch job %s (%s)", summary["jobName"], summary.get("status"))
            return JobRun(plan, summary["jobName"], summary["jobArn"], summary.get("status", "Submitted"))
    attempts = [int(m.group(1)) if (m := re.search(r"-r(\d+)$", s["jobName"])) else 1 for s in existing]
    attempt = max(attempts, default=0) + 1
    name = plan.base_name if attempt == 1 else f"{plan.base_name}-r{attempt}"
    input_uri = _join(base_uri, plan.base_name, "input") + "/"
    write_inputs(provider, plan, s3_client, input_uri, use_tools)
    created = control("CreateModelInvocationJob", jobName=name, clientRequestToken=name, roleArn=role_arn,
                      modelId=provider.options.model_id, modelInvocationType="InvokeModel",
                      inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri, "s3InputFormat": "JSONL"}},
                      outputDataConfig={"s3OutputDataConfig": {
                          "s3Uri": _join(base_uri, plan.base_name, "output") + "/"}})
    log.info("created batch job %s (%d records, %d files)", name, len(plan.records), len(plan.files))
    return JobRun(plan, name, created["jobArn"])


def wait_for_jobs(control: _Control, runs: Sequence[JobRun], poll_interval_s: float, timeout_s: float,
                  sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
    """Poll until every job has ended; raise on a job that ended badly, or when `timeout_s` has passed."""
    started = clock()
    while True:
        for run in runs:
            if run.status in SUCCEEDED and run.detail:
                continue
            run.detail = control("GetModelInvocationJob", jobIdentifier=run.arn)
            run.status = run.detail.get("status", "Submitted")
            if run.status in ENDED_BADLY:
                raise BatchJobFailed(f"batch job {run.name} ({run.arn}) ended {run.status}: "
                                     f"{run.detail.get('message', 'no message')}. A re-run creates a new attempt; "
                                     "finished jobs are re-attached, not paid twice.")
        pending = [run for run in runs if run.status not in SUCCEEDED]
        if not pending:
            return
        if clock() - started >= timeout_s:
            states = ", ".join(f"{run.name}: {run.status}" for run in pending)
            raise BatchTimeout(f"batch jobs still running after {timeout_s:.0f} s ({states}); they keep running "
                               "and a re-run with the same images re-attaches to them")
        sleep(poll_interval_s)


# --- results -------------------------------------------------------------------------------------------------------


def answer_text(model_output: dict) -> str:
    """The answer of an Anthropic Messages body: the tool's input as JSON, else the text (parse_answer judges)."""
    content = model_output.get("content") or []
    for block in content:
        if block.get("type") == "tool_use" and block.get("name") == TOOL_NAME:
            return json.dumps(block.get("input"))
    return "\n".join(block.get("text", "") for block in content if block.get("type") == "text")


def _record_error(error: Any) -> AnalysisFailure:
    if not isinstance(error, dict):
        return AnalysisFailure(f"batch record failed: {str(error)[:500]}", retryable=True)
    code, message = error.get("errorCode"), str(error.get("errorMessage", ""))[:500]
    retryable = not isinstance(code, int) or code == 429 or code >= 500
    return AnalysisFailure(f"batch record failed: {code}: {message}", retryable=retryable)


def read_outputs(run: JobRun, s3_client: Any) -> dict[str, str | AnalysisFailure]:
    """record id -> answer text or the record's failure, from `{output uri}/{job id}/{input file}.out`."""
    output_uri = run.detail["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
    bucket, prefix = split_s3_uri(output_uri)
    out: dict[str, str | AnalysisFailure] = {}
    for name in run.plan.file_names:
        key = "/".join(p for p in (prefix.rstrip("/"), run.job_id, f"{name}.out") if p)
        try:
            body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
        except s3_client.exceptions.NoSuchKey:
            log.warning("batch job %s has no output file s3://%s/%s", run.name, bucket, key)
            continue
        for number, raw in enumerate(body.iter_lines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                record_id = line["recordId"]
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable line %d in s3://%s/%s", number, bucket, key)
                continue
            if "error" in line or "modelOutput" not in line:
                out[record_id] = _record_error(line.get("error"))
                continue
            output = line["modelOutput"] or {}
            stop = output.get("stop_reason") or output.get("stopReason")
            if stop in REFUSED_STOP_REASONS:
                out[record_id] = AnalysisFailure(f"refused by bedrock: stop_reason {stop}")
            else:
                out[record_id] = answer_text(output)
    return out


def _finish(provider: BedrockProvider, record: Record, answer: str | AnalysisFailure | None, retry: RetryPolicy,
            sleep: Callable[[float], None]) -> ImageAnalysis | AnalysisFailure:
    if answer is None:
        return AnalysisFailure("no result for this image in the batch output", retryable=True)
    if isinstance(answer, AnalysisFailure):
        return answer
    try:
        return call_with_retry(lambda: provider.finish(record.jpeg, answer), is_transient, retry, sleep)[0]
    except ProviderConfigurationError:
        raise
    except PermanentProviderError as e:
        return AnalysisFailure(f"refused by bedrock: {e}")
    except RetriesExhausted as e:
        return AnalysisFailure(f"embedding failed: {e}", retryable=True)
    except Exception as e:  # noqa: BLE001 - one image's embedding failure is recorded, not fatal
        return AnalysisFailure(f"embedding failed: {type(e).__name__}: {e}", retryable=True)


def run_batch(provider: BedrockProvider, items: Sequence[tuple[str, bytes]], s3_client: Any, *,
              quotas: BatchQuotas | None = None, use_tools: bool = False, retry: RetryPolicy | None = None,
              poll_interval_s: float = 60.0, timeout_s: float = 48 * 3600.0,
              sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
              embed_workers: int = 4) -> dict[str, ImageAnalysis | AnalysisFailure]:
    """Analyse (image id, image bytes) pairs through Bedrock batch jobs; one entry per id, failures included.

    Raises `BatchTooSmall` below the minimum job size, `BatchJobFailed` for a job that ended badly,
    `BatchTimeout` when the jobs outlive `timeout_s` and `ProviderConfigurationError` when nothing can succeed;
    in all these cases a re-run with the same items re-attaches to the jobs already submitted."""
    options = provider.options
    if not options.batch_role_arn or not options.batch_s3_uri:
        raise ProviderConfigurationError("batch inference needs the bedrock options batch_role_arn and batch_s3_uri")
    ids = [image_id for image_id, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids must be unique within a batch")
    quotas, retry = quotas or BatchQuotas(), retry or RetryPolicy()
    results: dict[str, ImageAnalysis | AnalysisFailure] = {}
    prepared: list[tuple[str, bytes, bytes]] = []
    for image_id, data in items:
        try:
            prepared.append((image_id, data, prepare_image(data)))
        except BadImage as e:
            results[image_id] = AnalysisFailure(str(e))
    if not prepared:
        return {image_id: results[image_id] for image_id in ids}
    plans = plan_jobs(provider, prepared, quotas, use_tools)
    control = _Control(provider, provider.control, retry, sleep)
    runs = [_submit(provider, control, plan, s3_client, options.batch_s3_uri, options.batch_role_arn, use_tools)
            for plan in plans]
    wait_for_jobs(control, runs, poll_interval_s, timeout_s, sleep, clock)
    with ThreadPoolExecutor(max_workers=embed_workers) as pool:
        for run in runs:
            answers = read_outputs(run, s3_client)
            jobs = [(record, answers.get(record.record_id)) for record in run.plan.records]
            for (record, _), result in zip(jobs, pool.map(lambda job: _finish(provider, *job, retry, sleep), jobs),
                                           strict=True):
                results[record.image_id] = result
    return {image_id: results[image_id] for image_id in ids}

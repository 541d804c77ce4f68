"""Amazon Bedrock: a Claude vision model through the Converse API, Titan Multimodal Embeddings G1 for vectors.

The vocabulary goes into the system prompt and the answer schema into a forced tool, so the model answers with
one JSON object that `parse_answer` validates like any other LLM provider's. Titan puts images and query text
into one space: the image vector serves both as `image_embedding` and `text_embedding`, and `embed_text` makes
queries comparable with it.

botocore's own retries are off: the pipeline owns the backoff (`call_with_retry`) and the pacing, so a throttled
call is retried once, by one policy, not up to n x m times. Errors are sorted into three kinds: transient
(retried), permanent for this image (recorded), and configuration (raised: no image can succeed, stop the run).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import boto3
import numpy as np
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import BaseModel, ConfigDict, Field

from imgsearch_pipeline.analysis.model_output import parse_answer
from imgsearch_pipeline.analysis.provider import AnalysisFailure, ProviderConfigurationError
from imgsearch_pipeline.analysis.retry import TransientProviderError
from imgsearch_pipeline.analysis.types import ImageAnalysis
from imgsearch_pipeline.analysis.vision_llm import PermanentProviderError, VisionLLMProvider, prepare_image
from imgsearch_pipeline.vocab import Vocabulary

T = TypeVar("T")

# Bump when this module's requests or answer handling change the output: it is part of model_version.
LOGIC_VERSION = "1"
TOOL_NAME = "record_product_labels"
TOOL_DESCRIPTION = "Record the vocabulary labels and the description of the product shown in the photo."
USER_TEXT = f"Label the product in this photo. Answer only by calling the tool {TOOL_NAME}."
# Titan Multimodal Embeddings G1 takes at most 256 text tokens (English). ~4 characters a token on average;
# 600 characters stays clear of the limit even for token-hungry text, and a search query is far shorter.
TITAN_MAX_TEXT_CHARS = 600

TRANSIENT_CODES = frozenset({
    "ThrottlingException", "ServiceUnavailableException", "ModelTimeoutException", "InternalServerException",
    "ModelNotReadyException", "ModelErrorException", "ServiceQuotaExceededException", "RequestTimeout",
    "RequestTimeoutException", "TooManyRequestsException",
})
CONFIGURATION_CODES = frozenset({
    "AccessDeniedException", "ResourceNotFoundException", "UnrecognizedClientException",
    "ExpiredTokenException", "InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken",
    "UnauthorizedOperation",
})
REFUSED_STOP_REASONS = frozenset({"content_filtered", "guardrail_intervened"})


def _as_provider_error(e: Exception, operation: str) -> Exception:
    """Map a botocore error onto the pipeline's kinds; messages carry the AWS code and text, never credentials."""
    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "")
        message = e.response.get("Error", {}).get("Message", "")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = f"Bedrock {operation}: {code}: {message}"
        if code in TRANSIENT_CODES or status == 429 or status >= 500:
            return TransientProviderError(text)
        if code in CONFIGURATION_CODES:
            return ProviderConfigurationError(f"{text} (check the model id, region, model access and IAM "
                                              "permissions; no image can be analysed until this is fixed)")
        if code == "ValidationException" and "image" in message.lower():
            return PermanentProviderError(text)
        # Any other validation error is about the request we build (model id, limits), the same for every image.
        return ProviderConfigurationError(text)
    if isinstance(e, BotoConnectionError | ReadTimeoutError):
        return TransientProviderError(f"Bedrock {operation}: {type(e).__name__}: {e}")
    if isinstance(e, NoCredentialsError | PartialCredentialsError | NoRegionError):
        return ProviderConfigurationError(f"Bedrock {operation}: {type(e).__name__} (AWS credentials or region "
                                          "are not configured)")
    return e


def _normalise(vec: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0.0:
        raise RuntimeError("Titan returned a zero or non-finite embedding")
    return (vec / norm).astype(np.float32)


def truncate_for_titan(text: str, limit: int = TITAN_MAX_TEXT_CHARS) -> str:
    """Cut at a word boundary under Titan's text limit, so a long text embeds its start instead of failing."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space] if space > limit // 2 else cut


class BedrockOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str = Field(description="AWS region of the Bedrock endpoints, e.g. us-east-1")
    model_id: str = Field(description="Claude vision model id or inference profile, e.g. "
                                      "anthropic.claude-3-5-sonnet-20240620-v1:0")
    embedding_model_id: str = Field(default="amazon.titan-embed-image-v1", description="Titan Multimodal G1")
    embedding_dim: Literal[256, 384, 1024] = Field(default=1024, description="Titan outputEmbeddingLength")
    max_tokens: int = Field(default=800, ge=100, le=8192, description="answer budget; the JSON needs ~300")
    endpoint_url: str | None = Field(default=None, description="bedrock-runtime endpoint override (VPC endpoint)")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=120.0, gt=0, description="a vision answer can take a minute")
    batch_role_arn: str | None = Field(default=None, description="IAM role Bedrock assumes for batch jobs")
    batch_s3_uri: str | None = Field(default=None, description="s3://bucket/prefix for batch inputs and outputs")


class BedrockProvider(VisionLLMProvider):
    name = "bedrock"
    Options = BedrockOptions

    def __init__(self, options: BedrockOptions, vocab: Vocabulary | None = None, runtime_client: Any = None,
                 control_client: Any = None) -> None:
        super().__init__(vocab)
        self.options = options
        self._runtime, self._control = runtime_client, control_client

    # Clients are built on first use: boto3 resolves credentials when a client is made (possibly asking the
    # instance metadata service), and building the provider, e.g. for its model_version, must stay offline.
    @property
    def runtime(self) -> Any:
        if self._runtime is None:
            self._runtime = self._client("bedrock-runtime", self.options.endpoint_url)
        return self._runtime

    @property
    def control(self) -> Any:
        if self._control is None:
            self._control = self._client("bedrock", None)
        return self._control

    def _client(self, service: str, endpoint_url: str | None) -> Any:
        config = Config(region_name=self.options.region, connect_timeout=self.options.connect_timeout_s,
                        read_timeout=self.options.read_timeout_s,
                        retries={"mode": "standard", "total_max_attempts": 1})
        return boto3.client(service, region_name=self.options.region, endpoint_url=endpoint_url, config=config)

    @property
    def model_version(self) -> str:
        o = self.options
        return (f"bedrock-{LOGIC_VERSION}+{o.model_id}+{o.embedding_model_id}.{o.embedding_dim}"
                f"+prompt.{self.prompt_version}+vocab.{self.vocab.version}")

    @property
    def image_dim(self) -> int:
        return self.options.embedding_dim

    @property
    def text_dim(self) -> int:
        return self.options.embedding_dim

    def call_api(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one AWS call, re-raising its errors as the pipeline's kinds (transient, permanent, configuration)."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - re-raised as the pipeline's kind of error
            mapped = _as_provider_error(e, operation)
            if mapped is e:
                raise
            raise mapped from e

    def converse_request(self, jpeg: bytes) -> dict:
        """The Converse call for one image: vocabulary prompt as system, the schema as a tool the model must use."""
        return self.tool_request(self.prompt, [{"image": {"format": "jpeg", "source": {"bytes": jpeg}}},
                                               {"text": USER_TEXT}], self.schema, TOOL_NAME, TOOL_DESCRIPTION)

    def tool_request(self, system: str, content: list[dict], schema: dict, tool: str, description: str) -> dict:
        """A Converse request whose answer must be a call of `tool`, i.e. JSON under `schema`."""
        return {
            "modelId": self.options.model_id,
            "system": [{"text": system}],
            "messages": [{"role": "user", "content": content}],
            "inferenceConfig": {"maxTokens": self.options.max_tokens, "temperature": 0.0},
            "toolConfig": {
                "tools": [{"toolSpec": {"name": tool, "description": description, "inputSchema": {"json": schema}}}],
                "toolChoice": {"tool": {"name": tool}},
            },
        }

    def ask(self, jpeg: bytes) -> str:
        return self._converse_json(self.converse_request(jpeg), TOOL_NAME)

    def complete_json(self, system: str, text: str, schema: dict, name: str) -> str:
        """A text-only request for JSON (the LLM query parser uses the same model and error handling)."""
        return self._converse_json(self.tool_request(system, [{"text": text}], schema, name,
                                                     "Record the structured answer."), name)

    def _converse_json(self, request: dict, tool_name: str) -> str:
        response = self.call_api("Converse", lambda: self.runtime.converse(**request))
        stop = response.get("stopReason")
        if stop in REFUSED_STOP_REASONS:
            raise PermanentProviderError(f"stopReason {stop}")
        content = response.get("output", {}).get("message", {}).get("content", [])
        for block in content:
            tool = block.get("toolUse")
            if tool and tool.get("name") == tool_name:
                return json.dumps(tool.get("input"))
        # No tool call: whatever text there is goes to the caller's validation, which records why it is no answer.
        return "\n".join(block["text"] for block in content if "text" in block)

    def titan_body(self, *, image: bytes | None = None, text: str | None = None) -> dict:
        body: dict[str, Any] = {}
        if image is not None:
            body["inputImage"] = base64.b64encode(image).decode("ascii")
        if text is not None:
            body["inputText"] = truncate_for_titan(text)
        body["embeddingConfig"] = {"outputEmbeddingLength": self.options.embedding_dim}
        return body

    def _titan(self, body: dict) -> np.ndarray:
        def call() -> bytes:
            response = self.runtime.invoke_model(modelId=self.options.embedding_model_id, body=json.dumps(body),
                                                 contentType="application/json", accept="application/json")
            return response["body"].read()  # a streamed body: reading it can time out too

        return self.titan_vector(json.loads(self.call_api("InvokeModel", call)))

    def titan_vector(self, payload: dict) -> np.ndarray:
        """The L2-normalised vector of a Titan answer body (on-demand or batch), checked for its length."""
        embedding = payload.get("embedding")
        if not embedding:
            raise RuntimeError(f"Titan answered without an embedding: {str(payload.get('message'))[:300]}")
        vec = np.asarray(embedding, dtype=np.float32)
        if vec.shape != (self.options.embedding_dim,):
            raise RuntimeError(f"Titan embedding has {vec.size} values, expected {self.options.embedding_dim}")
        return _normalise(vec)

    def embed(self, jpeg: bytes, analysis: ImageAnalysis) -> tuple[np.ndarray, np.ndarray]:
        vec = self._titan(self.titan_body(image=jpeg))
        return vec, vec

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.options.embedding_dim), dtype=np.float32)
        return np.stack([self._titan(self.titan_body(text=t)) for t in texts])

    def run_batch(self, items: Sequence[tuple[str, bytes]], s3_client: Any, **options: Any) -> dict:
        """The one-time backfill through Bedrock Batch Inference (see bedrock_batch.run_batch)."""
        from imgsearch_pipeline.analysis.bedrock_batch import run_batch  # it imports this module

        return run_batch(self, items, s3_client, **options)

    def embed_image(self, data: bytes) -> np.ndarray:
        return self._titan(self.titan_body(image=prepare_image(data)))

    def finish(self, jpeg: bytes, answer: str) -> ImageAnalysis | AnalysisFailure:
        """Validate an answer obtained elsewhere (a batch job) and embed the image, as `analyse` would."""
        analysis, _ = parse_answer(answer, self.model_version)
        if isinstance(analysis, AnalysisFailure):
            return analysis
        image_vec, text_vec = self.embed(jpeg, analysis)
        return analysis.model_copy(update={"image_embedding": [float(x) for x in image_vec],
                                           "text_embedding": [float(x) for x in text_vec]})

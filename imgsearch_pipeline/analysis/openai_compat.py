"""A vision LLM behind an OpenAI-compatible `/chat/completions` endpoint: vLLM, Ollama, LM Studio or OpenAI.

The model answers with the vocabulary's attributes as JSON (constrained by the answer's JSON schema where the
server supports it); the shared `VisionLLMProvider` validates the answer. Such a model gives no vectors, so
the image and text vectors come from the builtin provider's local models (EfficientNet-Lite0 of the photo,
MiniLM of the model's description): searches embed queries with the same models.

HTTP outcomes are classified for the pipeline: throttling, timeouts, dropped connections and 5xx are
`TransientProviderError` (the pipeline backs off and retries); a refusal of this one image is
`PermanentProviderError` (recorded, not retried); a bad key, unknown model or wrong URL is a
`ProviderConfigurationError`, which no retry can fix. The API key is read from the environment for every
request and never appears in an error message.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import Any, Literal, NoReturn

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from imgsearch_pipeline.analysis.builtin import BuiltinProvider
from imgsearch_pipeline.analysis.models.efficientnet_lite import model_id as efficientnet_model_id
from imgsearch_pipeline.analysis.models.minilm import model_id as minilm_model_id
from imgsearch_pipeline.analysis.provider import ProviderConfigurationError
from imgsearch_pipeline.analysis.retry import TransientProviderError
from imgsearch_pipeline.analysis.types import ImageAnalysis
from imgsearch_pipeline.analysis.vision_llm import PermanentProviderError, VisionLLMProvider
from imgsearch_pipeline.vocab import Vocabulary

# Bump when this provider's requests change in a way that changes its answers: part of model_version.
LOGIC_VERSION = "1"
SCHEMA_NAME = "product_analysis"
USER_TEXT = "Label the product in this photo. Answer with the JSON object only."
MAX_DETAIL_CHARS = 300  # of a server's error text quoted in a message

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE_IN_VERSION = re.compile(r"[^A-Za-z0-9._-]+")
# What a 400/422 says decides whose fault it is: this image's (permanent) or the configuration's (stop).
_CONTENT_FILTER = re.compile(r"content[ _-]?(filter|policy|management)|safety|moderation|flagged|responsibleai",
                             re.IGNORECASE)
_MODEL_CANNOT_SEE = re.compile(r"multimodal|vision|(not|n't) support(s|ed)? images?|image[ _]?(url|input)s? "
                               r"(is|are) (not|only) supported|only supported by certain models", re.IGNORECASE)
_ABOUT_IMAGE = re.compile(r"image|base64|decod|pixel|jpe?g", re.IGNORECASE)


class OpenAICompatibleOptions(BaseModel):
    # Inputs stay out of error messages: a key pasted into api_key_env by mistake must not be echoed.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    base_url: str = Field(description="the API root, e.g. http://127.0.0.1:8000/v1 (vLLM) or https://api.openai.com/v1")
    model: str = Field(min_length=1, description="the served model's name, as the server lists it")
    api_key_env: str | None = Field(default="OPENAI_API_KEY",
                                    description="environment variable holding the API key; unset: no key sent")
    timeout_s: float = Field(default=60, gt=0, description="per request: connect, send, first byte, read")
    max_tokens: int = Field(default=800, ge=1, le=32_000, description="longest answer the model may give")
    structured_output: Literal["json_schema", "json_object", "none"] = Field(
        default="json_schema",
        description="json_schema: vLLM, OpenAI, recent Ollama; json_object: older Ollama; none: prompt only")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not re.match(r"https?://[^/\s]+", v):
            raise ValueError("base_url must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.fullmatch(v):
            raise ValueError("api_key_env must name an environment variable (e.g. OPENAI_API_KEY), not hold a key")
        return v


class OpenAICompatibleProvider(VisionLLMProvider):
    name = "openai"
    Options = OpenAICompatibleOptions

    def __init__(self, options: OpenAICompatibleOptions, vocab: Vocabulary | None = None) -> None:
        super().__init__(vocab)
        self.options = options
        self.url = f"{options.base_url}/chat/completions"
        # httpx.Client is safe to share between the pipeline's in-flight threads; it pools the connections.
        self._client = httpx.Client(timeout=httpx.Timeout(options.timeout_s), headers={"User-Agent": "imgsearch"})
        # The builtin provider's models, loaded on first use (building this provider stays cheap).
        self._local = BuiltinProvider(vocab=self.vocab)
        self._local_lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    # --- identity ------------------------------------------------------------------------------------

    @cached_property
    def model_version(self) -> str:
        model = _UNSAFE_IN_VERSION.sub("-", self.options.model).strip("-")
        return (f"openai-{LOGIC_VERSION}+{model}+prompt.{self.prompt_version}+{efficientnet_model_id()}"
                f"+{minilm_model_id()}+vocab.{self.vocab.version}")

    @property
    def image_dim(self) -> int:
        return self._local.image_dim  # the vectors are the builtin models'

    @property
    def text_dim(self) -> int:
        return self._local.text_dim

    # --- the request ---------------------------------------------------------------------------------

    def request_body(self, jpeg: bytes) -> dict[str, Any]:
        """The chat completion request for one prepared JPEG."""
        image_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        return self.chat_body(self.prompt, USER_TEXT, self.schema, SCHEMA_NAME,
                              [{"type": "image_url", "image_url": {"url": image_url}}])

    def chat_body(self, system: str, text: str, schema: dict, schema_name: str,
                  extra_content: list[dict] | None = None) -> dict[str, Any]:
        """A chat completion request asking for JSON under `schema`, in the configured structured-output mode."""
        if self.options.structured_output != "json_schema":  # otherwise the server holds the schema
            text += " It must match this JSON schema: " + json.dumps(schema, separators=(",", ":"))
        body: dict[str, Any] = {
            "model": self.options.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": [{"type": "text", "text": text}, *(extra_content or [])]},
            ],
            "temperature": 0,
            "max_tokens": self.options.max_tokens,
        }
        if self.options.structured_output == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": schema_name, "schema": schema, "strict": False}}
        elif self.options.structured_output == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def ask(self, jpeg: bytes) -> str:
        return self._post(self.request_body(jpeg))

    def complete_json(self, system: str, text: str, schema: dict, name: str) -> str:
        """A text-only request for JSON (the LLM query parser uses the same endpoint and error handling)."""
        return self._post(self.chat_body(system, text, schema, name))

    def _post(self, body: dict[str, Any]) -> str:
        key = self._api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            response = self._client.post(self.url, json=body, headers=headers)
        except httpx.TimeoutException as e:
            raise TransientProviderError(
                f"no answer from {self._where()} within timeout_s={self.options.timeout_s} ({type(e).__name__})"
            ) from e
        except httpx.TransportError as e:  # refused, reset, DNS, protocol errors: the server may come back
            raise TransientProviderError(
                f"could not reach {self._where()}: {type(e).__name__}: {self._redact(str(e))}") from e
        if response.status_code != 200:
            self._raise_for(response)
        return self._answer_text(response)

    def _api_key(self) -> str | None:
        """Read per request, so a rotated key is picked up; never stored on the provider."""
        env = self.options.api_key_env
        return (os.environ.get(env) or None) if env else None

    def _where(self) -> str:
        return f"{self.options.base_url} (model {self.options.model!r})"

    def _redact(self, text: str) -> str:
        key = self._api_key()
        return text.replace(key, "***") if key else text

    def _detail(self, response: httpx.Response) -> str:
        """The server's error message (OpenAI, vLLM and Ollama shapes), redacted and shortened."""
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error", body) if isinstance(body, dict) else None
        if isinstance(error, dict):
            parts = [str(error[k]) for k in ("code", "type", "message") if error.get(k) not in (None, "")]
            text = ": ".join(parts)
        elif isinstance(error, str):
            text = error
        else:
            text = response.text
        text = " ".join(self._redact(text).split())
        return text[:MAX_DETAIL_CHARS] or "(empty body)"

    def _raise_for(self, response: httpx.Response) -> NoReturn:
        status, detail = response.status_code, self._detail(response)
        if status in (408, 409, 429) or status >= 500:
            retry_after = response.headers.get("Retry-After")
            after = f" (Retry-After: {retry_after})" if retry_after else ""
            raise TransientProviderError(f"HTTP {status} from {self._where()}{after}: {detail}",
                                         retry_after_s=retry_after_seconds(response.headers))
        if status in (401, 403):
            # The body is not quoted: servers echo (parts of) the key they rejected.
            env = self.options.api_key_env
            if self._api_key():
                key = f"the API key from ${env} was rejected"
            else:
                key = f"no API key was sent (${env} is unset)" if env else "no API key was sent (api_key_env is null)"
            raise ProviderConfigurationError(f"{self._where()} refused access (HTTP {status}): {key}")
        if status == 404:
            raise ProviderConfigurationError(
                f"{self._where()} answered HTTP 404 for {self.url}: wrong base_url (it usually ends in /v1) "
                f"or a model the server does not serve: {detail}")
        if status in (400, 413, 422):
            if _CONTENT_FILTER.search(detail):
                raise PermanentProviderError(f"content filter (HTTP {status}): {detail}")
            if _MODEL_CANNOT_SEE.search(detail):
                raise ProviderConfigurationError(
                    f"{self._where()} cannot take images (HTTP {status}): use a vision model: {detail}")
            if status == 413 or _ABOUT_IMAGE.search(detail):
                raise PermanentProviderError(f"image rejected (HTTP {status}): {detail}")
            raise ProviderConfigurationError(
                f"{self._where()} rejected the request (HTTP {status}); check max_tokens and structured_output="
                f"{self.options.structured_output!r} (older Ollama: json_object): {detail}")
        raise ProviderConfigurationError(f"unexpected HTTP {status} from {self._where()} for {self.url}: {detail}")

    def _answer_text(self, response: httpx.Response) -> str:
        """choices[0].message.content, or why there is none (a malformed 200 is transient: servers hiccup)."""
        try:
            body = response.json()
        except ValueError:
            raise TransientProviderError(
                f"{self._where()} answered HTTP 200 with a body that is not JSON: {self._detail(response)}") from None
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise TransientProviderError(
                f"{self._where()} answered HTTP 200 without choices: {self._detail(response)}")
        choice = choices[0]
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        finish = choice.get("finish_reason")
        if message.get("refusal"):
            raise PermanentProviderError(f"the model refused: {self._redact(str(message['refusal']))[:300]}")
        if finish == "content_filter":
            raise PermanentProviderError("answer blocked by the content filter (finish_reason 'content_filter')")
        if finish == "length":
            raise TransientProviderError(
                f"answer cut off at max_tokens={self.options.max_tokens} (finish_reason 'length'); raise max_tokens")
        content = message.get("content")
        if isinstance(content, list):  # some servers answer in content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str) or not content.strip():
            raise TransientProviderError(
                f"{self._where()} answered without text (content {content!r}, finish_reason {finish!r})")
        return content

    # --- vectors, from the local models ---------------------------------------------------------------

    def _local_models(self) -> BuiltinProvider:
        with self._local_lock:  # concurrent first calls load the models once
            _ = self._local.image_model, self._local.text_model
        return self._local

    def embed(self, jpeg: bytes, analysis: ImageAnalysis) -> tuple[np.ndarray, np.ndarray]:
        local = self._local_models()
        return local.embed_image(jpeg), local.embed_text([analysis.description])[0]

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return self._local_models().embed_text(texts)

    def embed_image(self, data: bytes) -> np.ndarray:
        return self._local_models().embed_image(data)


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """The wait a server asked for: `retry-after-ms` (OpenAI), or Retry-After in seconds or as an HTTP date."""
    millis = headers.get("retry-after-ms")
    value = headers.get("Retry-After")
    try:
        if millis is not None:
            return max(0.0, float(millis) / 1000)
        if value is None:
            return None
        if value.strip().replace(".", "", 1).isdigit():
            return float(value)
        when = parsedate_to_datetime(value)
    except (ValueError, TypeError):
        return None  # unreadable advice is ignored: the backoff still applies
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())

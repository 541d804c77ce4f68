"""Turning a vision model's JSON answer into a validated `ImageAnalysis`, or a failure with the reason.

Shared by every LLM-style provider: the JSON schema sent with the prompt comes from `ModelAnswer`, and the
answer is parsed here. Synonyms are mapped onto the vocabulary ("crimson" -> red); anything else outside it,
malformed JSON or a missing field is a retryable failure (such models are not deterministic), never a crash
and never a raw value in the database.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imgsearch_pipeline.analysis.provider import AnalysisFailure
from imgsearch_pipeline.analysis.types import ImageAnalysis

MAX_ANSWER_CHARS = 20_000
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class ModelColor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    color: str
    coverage: float = Field(ge=0.0, le=1.0)


class ModelAnswer(BaseModel):
    """What a vision model is asked to return (its JSON schema goes into the request)."""

    model_config = ConfigDict(extra="forbid")

    category: str | None = Field(description="one category id of the vocabulary, or null if unsure")
    colors: list[ModelColor] = Field(max_length=5, description="vocabulary colours, largest area first")
    pattern: str | None = Field(description="one pattern id of the vocabulary, or null if unsure")
    has_print: bool | None = None
    attributes: dict[str, str] = Field(default_factory=dict, description="open attribute name -> value id")
    description: str = Field(max_length=600, description="one or two plain sentences about what is shown")


def answer_schema() -> dict:
    return ModelAnswer.model_json_schema()


def parse_answer(text: str, model_version: str) -> tuple[ImageAnalysis | AnalysisFailure, ModelAnswer | None]:
    """Validate a model's text answer; the analysis has no embeddings yet (the provider adds them)."""
    if len(text) > MAX_ANSWER_CHARS:
        return AnalysisFailure(f"model answer too long ({len(text)} characters)", retryable=True), None
    fenced = _FENCE.match(text)
    try:
        data = json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError as e:
        return AnalysisFailure(f"model answer is not JSON: {e.msg} at {e.pos}", retryable=True), None
    try:
        answer = ModelAnswer.model_validate(data)
        analysis = ImageAnalysis(
            category=answer.category, colors=[c.model_dump() for c in answer.colors], pattern=answer.pattern,
            has_print=answer.has_print, attributes=answer.attributes, description=answer.description,
            model_version=model_version,
        )
    except ValidationError as e:
        reasons = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'answer'}: {err['msg']}" for err in e.errors()[:5])
        return AnalysisFailure(f"model answer rejected: {reasons}"[:1000], retryable=True), None
    return analysis, answer

"""An optional LLM query parser that fills the same typed plan as the rule parser, checked against the vocabulary.

The rule parser stays the default and the fallback: when the model is slow, unreachable, or answers something
that does not validate, the rule parser's plan is used and a warning says why. Every value the model gives is
resolved through the vocabulary (synonyms, colour families); a value that does not resolve is dropped with a
warning, never sent to a backend.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imgsearch_pipeline.search.parser import MAX_QUERY_CHARS, QueryTooLong, contradictions, parse_query
from imgsearch_pipeline.search.plan import Clause, QueryPlan
from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary

SCHEMA_NAME = "query_plan"
FIXED_FIELDS = ("category", "color", "pattern", "department")


class JsonCompleter(Protocol):
    """What the LLM providers offer for text-only requests (OpenAI-compatible, Bedrock)."""

    def complete_json(self, system: str, text: str, schema: dict, name: str) -> str: ...


class LLMClause(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="category, color, pattern, department or an attribute name")
    values: list[str] = Field(min_length=1, max_length=10, description="vocabulary ids; any one may match")
    text: str = Field(default="", max_length=200, description="the query words this came from")


class LLMPlan(BaseModel):
    """The JSON the model is asked for: the plan's fields without the bookkeeping."""

    model_config = ConfigDict(extra="forbid")

    filters: list[LLMClause] = Field(default_factory=list, max_length=12, description="all must hold")
    exclude: list[LLMClause] = Field(default_factory=list, max_length=12, description="none may hold")
    has_print: bool | None = Field(default=None, description="true: printed only; false: no print; null: either")
    residual: str = Field(default="", max_length=300, description="what the vocabulary cannot express")


def build_prompt(vocab: Vocabulary) -> str:
    lines = [
        "Turn a shopper's search query into a JSON plan matching the given schema. Use only these ids.",
        "category: " + ", ".join(vocab.category_ids),
        "color (shades; a family name such as red or blue means every shade of it): " + ", ".join(vocab.color_ids),
        "pattern: " + ", ".join(vocab.pattern_ids),
        "department: " + ", ".join(d.id for d in vocab.departments),
    ]
    lines += [f"{name}: {', '.join(v.id for v in a.values)}" for name, a in vocab.attributes.items()]
    lines += [
        "Negations (no, not, without, non-, isn't, plain = no pattern) go to exclude or has_print=false.",
        "Alternatives (red or maroon) are one clause with several values.",
        "Put only what these ids cannot express (e.g. 'with red flowers' -> pattern floral, color red, residual "
        "'flowers') into residual, in the shopper's words. Never invent constraints the query does not state.",
    ]
    return "\n".join(lines)


class LLMQueryParser:
    """Ask the model for a plan within `timeout_s`; fall back to the rule parser on any failure."""

    def __init__(self, completer: JsonCompleter, vocab: Vocabulary | None = None, timeout_s: float = 3.0) -> None:
        self.completer, self.timeout_s = completer, timeout_s
        self.vocab = vocab or get_vocabulary()
        self.prompt = build_prompt(self.vocab)
        self.schema = LLMPlan.model_json_schema()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="llm-parser")

    def parse(self, query: str) -> QueryPlan:
        if len(query) > MAX_QUERY_CHARS:
            raise QueryTooLong(len(query))
        if not query.strip():
            return parse_query(query, self.vocab)
        future = self._pool.submit(self.completer.complete_json, self.prompt, query, self.schema, SCHEMA_NAME)
        try:
            answer = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            return self._fallback(query, f"no answer within {self.timeout_s:g} s")
        except Exception as e:  # noqa: BLE001 - any model failure degrades to the rule parser, with the reason
            return self._fallback(query, f"{type(e).__name__}: {e}"[:300])
        try:
            return to_plan(query, LLMPlan.model_validate(json.loads(answer)), self.vocab)
        except (json.JSONDecodeError, ValidationError) as e:
            return self._fallback(query, f"answer rejected: {str(e).splitlines()[0][:200]}")

    def _fallback(self, query: str, why: str) -> QueryPlan:
        plan = parse_query(query, self.vocab)
        return plan.model_copy(update={"warnings": [f"LLM parser not used ({why}); rule parser used",
                                                    *plan.warnings]})


def to_plan(query: str, answer: LLMPlan, vocab: Vocabulary) -> QueryPlan:
    """Resolve every value through the vocabulary; what does not resolve becomes a warning, never a filter."""
    warnings: list[str] = []

    def clauses(items: list[LLMClause]) -> list[Clause]:
        out = []
        for item in items:
            values: list[str] = []
            for value in item.values:
                resolved = _resolve(vocab, item.field, value)
                if resolved:
                    values += [v for v in resolved if v not in values]
                else:
                    warnings.append(f"ignored {item.field} {value!r}: not in the vocabulary")
            if values:
                out.append(Clause(field=item.field, values=values, text=item.text or " ".join(item.values)))
        return out

    filters, exclude = clauses(answer.filters), clauses(answer.exclude)
    return QueryPlan(query=query, filters=filters, exclude=exclude, has_print=answer.has_print,
                     residual=answer.residual.strip(), warnings=warnings + contradictions(filters, exclude))


def _resolve(vocab: Vocabulary, field: str, value: str) -> list[str]:
    if field == "color":
        found = vocab.lookup(value)
        if found and found.startswith("family:"):
            return list(vocab.colors_in_family(found.split(":", 1)[1]))
        return [found.split(":", 1)[1]] if found and found.startswith("color:") else []
    if field in FIXED_FIELDS:
        resolved = vocab.resolve(field, value)
        return [resolved] if resolved else []
    if field in vocab.attributes:
        resolved = vocab.resolve_attribute(field, value)
        return [resolved] if resolved else []
    return []

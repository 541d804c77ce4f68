"""The typed plan a search query is parsed into; the contract between the parser and the search backends.

A plan is a conjunction: every filter clause must hold, no exclude clause may hold, `has_print` (when set)
must match, and `residual` ranks what is left semantically. Values are always vocabulary ids.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Clause(BaseModel):
    """One condition on one field; holds when the item has ANY of `values`."""

    model_config = ConfigDict(extra="forbid")

    field: str  # "category" | "color" | "pattern" | "department" | an attribute name ("sleeve_length", ...)
    values: list[str]  # vocabulary ids
    text: str  # the query words it came from, shown as a chip ("red", "no prints", "not black")


class QueryPlan(BaseModel):
    """What a query asks for, split into what filters can express and what only ranking can."""

    model_config = ConfigDict(extra="forbid")

    query: str
    filters: list[Clause] = []  # every clause must hold
    exclude: list[Clause] = []  # an item matching any exclude clause is dropped
    has_print: bool | None = None
    residual: str = ""  # text for semantic ranking (what filters cannot express)
    unparsed: list[str] = []  # words the vocabulary does not know
    warnings: list[str] = []  # contradictions and parts of the query that could not be applied


def field_values(doc: dict, field: str) -> list[str]:
    """A stored item's values for a clause field (doc: category, colors, pattern, department, attributes)."""
    if field == "color":
        return list(doc.get("colors") or [])
    if field in ("category", "pattern", "department"):
        value = doc.get(field)
    else:
        value = (doc.get("attributes") or {}).get(field)
    return [value] if value else []


def violations(plan: QueryPlan, doc: dict) -> list[str]:
    """The plan's constraints a stored item breaks, by the words they came from; [] means it qualifies."""
    broken = [c.text for c in plan.filters if not set(c.values) & set(field_values(doc, c.field))]
    broken += [c.text for c in plan.exclude if set(c.values) & set(field_values(doc, c.field))]
    if plan.has_print is not None and doc.get("has_print") is not plan.has_print:
        broken.append("printed" if plan.has_print else "no print")
    return broken

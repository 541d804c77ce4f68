"""The search entry point shared by the CLI, the Dagster resource and the HTTP API: parse, embed, retrieve."""

from __future__ import annotations

from collections.abc import Callable

from imgsearch_pipeline.analysis.provider import AnalysisProvider
from imgsearch_pipeline.search.backend import Mode, SearchBackend, SearchRequest
from imgsearch_pipeline.search.parser import clean_query, parse_query
from imgsearch_pipeline.search.plan import QueryPlan
from imgsearch_pipeline.search.results import SearchResponse
from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary

MAX_RESULTS = 100
# Fields every analysis has (possibly empty); department and open attributes may be absent from a catalogue.
_ALWAYS_PRESENT = {"category", "color", "pattern"}
NOTHING_TO_SEARCH = "nothing to search by in the query (empty, or only common words and symbols): every product matches"


def semantic_text(plan: QueryPlan, vocab: Vocabulary) -> str:
    """What the ranking side should look for: the residual, else the positive constraints in words.

    Negated words are never included: embeddings cannot express "no", so they would pull the wrong way.
    """
    if plan.residual:
        return plan.residual
    words = [c.text for c in plan.filters if c.field != "category"]
    words += [c.text for c in plan.filters if c.field == "category"]
    if plan.has_print is True:
        words.insert(0, "printed")
    elif plan.has_print is False:
        words.insert(0, "plain")
    return " ".join(words)


class ImageNotFound(LookupError):
    """'More like this' for an image that is not in the index."""


class SearchService:
    """Parse, embed and retrieve on whichever backend is configured (OpenSearch or PostgreSQL)."""

    def __init__(self, backend: SearchBackend, provider: AnalysisProvider, vocab: Vocabulary | None = None,
                 parser: Callable[[str], QueryPlan] | None = None) -> None:
        self.backend, self.provider = backend, provider
        self.vocab = vocab or get_vocabulary()
        self._parse = parser or (lambda q: parse_query(q, self.vocab))

    def parse(self, query: str) -> QueryPlan:
        """The rule parser, or the configured LLM parser (which falls back to the rules by itself)."""
        return self._parse(query)

    def applicable(self, plan: QueryPlan) -> QueryPlan:
        """Constraints on a field no searchable item has a value for (e.g. sleeve length under a provider that
        does not analyse sleeves, or departments in an image-only catalogue) would match nothing: they rank
        instead, and a warning says so."""
        optional = sorted({c.field for c in [*plan.filters, *plan.exclude]} - _ALWAYS_PRESENT)
        if not optional:
            return plan
        missing = set(optional) - self.backend.fields_with_values(optional)
        if not missing:
            return plan
        dropped = [c for c in plan.filters if c.field in missing]
        warnings = [f"no item has a {field.replace('_', ' ')} value: {c.text!r} ranks results instead of filtering"
                    for field in sorted(missing) for c in [*plan.filters, *plan.exclude] if c.field == field]
        residual = " ".join([plan.residual, *(c.text for c in dropped)]).strip()
        return plan.model_copy(update={
            "filters": [c for c in plan.filters if c.field not in missing],
            "exclude": [c for c in plan.exclude if c.field not in missing],
            "residual": residual, "warnings": [*plan.warnings, *warnings]})

    def search(self, query: str, size: int = 20, mode: Mode = "hybrid", facets: bool = True) -> SearchResponse:
        """`hybrid` is the product; `vector` and `keyword` rank the raw query over everything (baselines)."""
        plan = self.parse(clean_query(query))
        if mode == "hybrid":
            plan = self.applicable(plan)
        text = semantic_text(plan, self.vocab) if mode == "hybrid" else plan.query
        if mode == "hybrid" and not text and not (plan.filters or plan.exclude or plan.has_print is not None):
            plan = plan.model_copy(update={"warnings": [*plan.warnings, NOTHING_TO_SEARCH]})
        vector = None
        if text and mode in ("hybrid", "vector"):
            vector = [float(x) for x in self.provider.embed_text([text])[0]]
        return self.backend.search(SearchRequest(plan=plan, mode=mode, text=text if mode != "vector" else "",
                                                 text_vector=vector, size=_clamp(size), facets=facets))

    def similar(self, image_id: str | None = None, image: bytes | None = None, query: str = "",
                size: int = 20) -> SearchResponse:
        """Products that look like an indexed image or an uploaded photo, under the query's filters."""
        if (image_id is None) == (image is None):
            raise ValueError("give exactly one of image_id or image")
        exclude: list[str] = []
        if image_id is not None:
            indexed = self.backend.indexed_image(image_id)
            if indexed is None:
                raise ImageNotFound(f"image {image_id} is not in the search index")
            vector, exclude = indexed.image_vector, [indexed.product_id]
        else:
            vector = [float(x) for x in self.provider.embed_image(image)]
        return self.backend.search(SearchRequest(plan=self.applicable(self.parse(clean_query(query))), mode="image",
                                                 image_vector=vector,
                                                 exclude_products=exclude, size=_clamp(size)))


def _clamp(size: int) -> int:
    return max(1, min(size, MAX_RESULTS))

"""The search entry point shared by the CLI, the Dagster resource and the HTTP API: parse, embed, retrieve."""

from __future__ import annotations

from opensearchpy import OpenSearch

from imgsearch_pipeline.analysis.provider import AnalysisProvider
from imgsearch_pipeline.search.opensearch_backend import hybrid_search
from imgsearch_pipeline.search.parser import parse_query
from imgsearch_pipeline.search.plan import QueryPlan
from imgsearch_pipeline.search.results import SearchResponse
from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary

MAX_RESULTS = 100


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


class SearchService:
    """Hybrid search over the alias of the current index."""

    def __init__(self, client: OpenSearch, index: str, provider: AnalysisProvider,
                 vocab: Vocabulary | None = None) -> None:
        self.client, self.index, self.provider = client, index, provider
        self.vocab = vocab or get_vocabulary()

    def parse(self, query: str) -> QueryPlan:
        return parse_query(query, self.vocab)

    def search(self, query: str, size: int = 20) -> SearchResponse:
        plan = self.parse(query)
        size = max(1, min(size, MAX_RESULTS))
        text = semantic_text(plan, self.vocab)
        vector = self.provider.embed_text([text])[0] if text else None
        return hybrid_search(self.client, self.index, plan, text, vector, size=size)

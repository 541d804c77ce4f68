"""The contract between the search service and a retrieval engine (OpenSearch, PostgreSQL).

A backend gets a fully prepared request (plan, ranking text, vectors) and must honour the same semantics on
every engine: hard filters and exclusions applied exactly, each ranked list computed under those filters,
lists fused by reciprocal rank, one hit per product, facets counted on the filtered set.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from imgsearch_pipeline.search.plan import QueryPlan
from imgsearch_pipeline.search.results import SearchResponse

# hybrid: filters + BM25 + text k-NN, fused (the product). image: filters + image k-NN ("more like this").
# vector / keyword: one list, no filters: the baselines the evaluation compares against.
Mode = Literal["hybrid", "vector", "keyword", "image"]
FACET_FIELDS = ("category", "color", "pattern")
CANDIDATES = 100  # per ranked list, before collapsing to one hit per product


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: QueryPlan
    mode: Mode = "hybrid"
    text: str = Field(default="", description="what BM25 ranks by")
    text_vector: list[float] | None = Field(default=None, description="query in the text-vector space")
    image_vector: list[float] | None = Field(default=None, description="query in the image-vector space")
    exclude_products: list[str] = Field(default_factory=list, description="e.g. the product of 'more like this'")
    size: int = Field(default=20, ge=1, le=100)
    candidates: int = Field(default=CANDIDATES, ge=1, le=2000)
    facets: bool = True

    @property
    def filtered(self) -> bool:
        """Baselines rank the whole catalogue; the product applies the plan's constraints."""
        return self.mode in ("hybrid", "image")


class IndexedImage(BaseModel):
    image_id: str
    product_id: str
    image_vector: list[float]


class SearchBackend(Protocol):
    name: str

    def search(self, request: SearchRequest) -> SearchResponse: ...

    def indexed_image(self, image_id: str) -> IndexedImage | None:
        """An indexed image's product and vector (for 'more like this'); None when it is not indexed."""
        ...

    def fields_with_values(self, fields: list[str]) -> set[str]:
        """Which of these optional fields (department, open attributes) any searchable item has a value for."""
        ...

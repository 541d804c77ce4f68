"""What a search returns, for the CLI, the API and the page alike."""

from __future__ import annotations

from pydantic import BaseModel, Field

from imgsearch_pipeline.search.plan import QueryPlan


class HitAttributes(BaseModel):
    category: str | None = None
    colors: list[str] = Field(default_factory=list)
    pattern: str | None = None
    has_print: bool | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    description: str = ""


class Hit(BaseModel):
    product_id: str
    image_id: str
    s3_key: str
    score: float
    product_name: str | None = None
    brand: str | None = None
    attributes: HitAttributes
    matched: list[str] = Field(default_factory=list, description="plan clauses this hit satisfies")


class SearchResponse(BaseModel):
    plan: QueryPlan
    hits: list[Hit]
    total_products: int | None = Field(default=None, description="products matching the filters")

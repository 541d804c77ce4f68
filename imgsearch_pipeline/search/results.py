"""What a search returns, for the CLI, the API and the page alike."""

from __future__ import annotations

from pydantic import BaseModel, Field

from imgsearch_pipeline.search.plan import QueryPlan, field_values


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
    thumbnail_url: str = Field(default="", description="the API's URL of the image")


    @classmethod
    def from_document(cls, doc: dict, score: float, plan: QueryPlan) -> Hit:
        """A stored item as a hit: every backend answers in exactly this shape."""
        attrs = HitAttributes(category=doc.get("category"), colors=doc.get("colors") or [],
                              pattern=doc.get("pattern"), has_print=doc.get("has_print"),
                              attributes=doc.get("attributes") or {}, description=doc.get("description") or "")
        image_id = str(doc["image_id"])
        matched = [c.text for c in plan.filters if set(c.values) & set(field_values(doc, c.field))]
        return cls(product_id=doc["product_id"], image_id=image_id, s3_key=doc["s3_key"], score=round(score, 6),
                   product_name=doc.get("product_name"), brand=doc.get("brand"), attributes=attrs,
                   matched=matched, thumbnail_url=f"/images/{image_id}")


class FacetCount(BaseModel):
    value: str
    products: int


class SearchResponse(BaseModel):
    plan: QueryPlan
    hits: list[Hit]
    total_products: int | None = Field(default=None, description="products matching the filters")
    facets: dict[str, list[FacetCount]] = Field(
        default_factory=dict, description="field -> products per value, counted on the filtered set")
    mode: str = "hybrid"
    backend: str = ""

"""Which product an image belongs to: from a catalogue feed, or else from the image's S3 key.

A feed is CSV or JSON lines with product_id, name, brand, department, shop_category and image_keys (a JSON
list, or `|`-separated in CSV). Without one, a key pattern such as `<prefix>/<product_id>/<n>.jpg` names the
product. Nothing here reads image content.
"""

from __future__ import annotations

import csv
import io
import json
import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imgsearch_pipeline.storage.postgres import Product

DEFAULT_KEY_PATTERN = r"(?:.*/)?(?P<product_id>[^/]+)/[^/]+$"


class FeedRow(BaseModel):
    model_config = ConfigDict(extra="ignore")

    product_id: str = Field(min_length=1, max_length=200)
    name: str | None = None
    brand: str | None = None
    department: str | None = None
    shop_category: str | None = None
    image_keys: list[str] = Field(default_factory=list)

    @field_validator("product_id", "name", "brand", "department", "shop_category")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        if v and "\x00" in v:  # PostgreSQL text cannot hold it: a row error, not a failed inventory
            raise ValueError("contains a NUL character")
        return v

    @field_validator("image_keys", mode="before")
    @classmethod
    def _split(cls, v):
        if isinstance(v, str):
            v = v.strip()
            return json.loads(v) if v.startswith("[") else [k for k in v.split("|") if k]
        return v or []


class Catalog(BaseModel):
    """Products and the image key -> product_id mapping a feed declares."""

    products: dict[str, Product] = Field(default_factory=dict)
    key_to_product: dict[str, str] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list)


def parse_feed(data: bytes, name: str = "feed") -> Catalog:
    """Parse a CSV or JSON-lines feed; bad rows are reported in `errors`, never silently dropped."""
    text = data.decode("utf-8-sig")
    rows: list[tuple[int, dict]]
    if name.lower().endswith(".csv"):
        rows = list(enumerate(csv.DictReader(io.StringIO(text)), start=2))
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    rows.append((n, {"__error__": str(e)}))
    catalog = Catalog()
    for n, raw in rows:
        try:
            if "__error__" in raw:
                raise ValueError(raw["__error__"])
            row = FeedRow.model_validate({k: (v if v != "" else None) for k, v in raw.items()})
            catalog.products[row.product_id] = Product(
                product_id=row.product_id, name=row.name, brand=row.brand, department=row.department,
                shop_category=row.shop_category, source="feed",
            )
        except (ValidationError, ValueError) as e:
            catalog.errors.append(f"{name}:{n}: {str(e).splitlines()[0]}")
            continue
        for key in row.image_keys:
            catalog.key_to_product[key] = row.product_id
    return catalog


class KeyPattern:
    """Derives product ids from keys with a regex that has a `product_id` group."""

    def __init__(self, pattern: str = DEFAULT_KEY_PATTERN) -> None:
        self.regex = re.compile(pattern)
        if "product_id" not in self.regex.groupindex:
            raise ValueError(f"key pattern {pattern!r} needs a (?P<product_id>...) group")

    def product_id(self, key: str) -> str | None:
        m = self.regex.fullmatch(key)
        return m.group("product_id") if m else None

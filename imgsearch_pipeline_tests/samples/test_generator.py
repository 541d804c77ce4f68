"""The sample catalogue is the demo and the test fixture of every other suite: it must be exact and stable."""

from __future__ import annotations

import io
import json
import re
from functools import cache

import numpy as np
import pytest
from PIL import Image

from imgsearch_pipeline.samples.generator import (
    SIZE,
    SampleProduct,
    feed_jsonl,
    generate_catalog,
    truth_jsonl,
)
from imgsearch_pipeline.vocab import get_vocabulary

_KEY = re.compile(r"^catalog/(men|women|kids|unisex)/([a-z0-9-]+)/([a-z0-9]+)/(\d+)\.jpg$")
_PRINTS = {"graphic", "floral", "polka-dot"}


@cache
def _catalog(n: int, seed: int) -> tuple[SampleProduct, ...]:
    return tuple(generate_catalog(n_products=n, seed=seed))


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _count(products, category: str, color: str, patterns: set[str]) -> int:
    return sum(p.category == category and p.colors[0] == color and p.pattern in patterns for p in products)


def test_same_seed_same_bytes_other_seed_differs():
    a, b = generate_catalog(14, seed=5), generate_catalog(14, seed=5)
    assert a == b
    assert feed_jsonl(a) == feed_jsonl(b) and truth_jsonl(a) == truth_jsonl(b)
    assert [im.data for p in generate_catalog(14, seed=6) for im in p.images] != [im.data for p in a for im in p.images]


@pytest.mark.parametrize("seed", [7])
def test_keys_views_and_vocabulary(seed):
    vocab = get_vocabulary()
    departments = {d.id for d in vocab.departments}
    products = _catalog(60, seed)
    assert len(products) == 60
    assert len({p.product_id for p in products}) == 60
    for p in products:
        assert p.category in vocab.category_ids and p.pattern in vocab.pattern_ids
        assert p.department in departments
        assert p.colors and len(set(p.colors)) == len(p.colors)
        assert set(p.colors) <= set(vocab.color_ids)
        assert p.has_print == vocab.pattern(p.pattern).has_print
        if p.category in {"dress", "skirt", "heels", "kurta"}:
            assert p.department == "women"
        assert 2 <= len(p.images) <= 4
        assert [im.view for im in p.images[:2]] == ["front", "back"]
        assert {im.view for im in p.images[2:]} <= {"detail"}
        for n, im in enumerate(p.images, start=1):
            m = _KEY.match(im.key)
            assert m, im.key
            assert m.groups() == (p.department, p.category, p.product_id, str(n))


@pytest.mark.parametrize("seed", [1, 123])
def test_must_have_products(seed):
    products = _catalog(40, seed)
    assert _count(products, "t-shirt", "green", {"solid"}) >= 3
    green_printed = sum(p.category == "t-shirt" and "green" in p.colors and p.pattern in _PRINTS for p in products)
    assert green_printed >= 3
    assert sum(p.category == "dress" and p.pattern == "floral" and "red" in p.colors for p in products) >= 3
    striped = {p.colors for p in products if p.category == "shirt" and p.pattern == "striped"}
    checked = {p.colors for p in products if p.category == "shirt" and p.pattern == "checked"}
    assert len(striped) >= 3 and len(checked) >= 3
    categories = {p.category for p in products}
    black = {p.category for p in products if p.colors[0] == "black"}
    other = {p.category for p in products if p.colors[0] != "black"}
    assert len(black & other) >= 0.4 * len(categories)
    assert len({c for p in products for c in p.colors}) >= 20  # spread over the palette


@pytest.mark.parametrize("n", [12, 16])
def test_small_catalogue_keeps_the_essentials(n):
    products = _catalog(n, 3)
    assert len(products) == n
    assert _count(products, "t-shirt", "green", {"solid"}) >= 1
    assert sum(p.category == "t-shirt" and "green" in p.colors and p.pattern in _PRINTS for p in products) >= 1
    assert sum(p.category == "dress" and p.pattern == "floral" and "red" in p.colors for p in products) >= 1


def test_jpegs_decode_at_the_promised_size():
    for p in _catalog(60, 7):
        for im in p.images:
            img = Image.open(io.BytesIO(im.data))
            assert img.format == "JPEG" and img.size == (SIZE, SIZE)


def test_feed_and_truth_parse():
    products = _catalog(16, 3)
    labels = {c.id: c.label for c in get_vocabulary().categories}
    feed = [json.loads(line) for line in feed_jsonl(products).decode().splitlines()]
    assert [f["product_id"] for f in feed] == [p.product_id for p in products]
    for f, p in zip(feed, products, strict=True):
        assert f == {"product_id": p.product_id, "name": p.name, "brand": p.brand, "department": p.department,
                     "shop_category": labels[p.category], "image_keys": [im.key for im in p.images]}
    truth = [json.loads(line) for line in truth_jsonl(products).decode().splitlines()]
    assert len(truth) == sum(len(p.images) for p in products)
    by_id = {p.product_id: p for p in products}
    for t in truth:
        p = by_id[t["product_id"]]
        assert t["key"].startswith(f"catalog/{p.department}/{p.category}/{p.product_id}/")
        assert (t["category"], t["colors"], t["pattern"], t["has_print"]) == (p.category, list(p.colors), p.pattern,
                                                                              p.has_print)


def test_solid_items_show_their_reference_colour_at_the_centre():
    vocab = get_vocabulary()
    checked = 0
    for p in _catalog(60, 7):
        if p.pattern != "solid" or len(p.colors) != 1 or p.category not in {"t-shirt", "dress", "skirt", "handbag",
                                                                             "sweatshirt", "jacket"}:
            continue
        front = _decode(p.images[0].data)
        c = SIZE // 2
        patch = np.median(front[c - 12:c + 12, c - 12:c + 12].reshape(-1, 3), axis=0)
        assert np.abs(patch - np.array(vocab.color(p.colors[0]).rgb_tuple)).max() <= 12, (p.name, patch)
        checked += 1
    assert checked >= 5


def test_light_background_and_product_fills_most_of_the_frame():
    for p in _catalog(16, 3):
        front = _decode(p.images[0].data)
        corners = np.concatenate([front[:8, :8], front[-8:, -8:]]).reshape(-1, 3)
        assert corners.min() >= 215
        ys, xs = np.nonzero(np.abs(front - np.median(corners, axis=0)).max(axis=-1) > 40)
        extent = max(xs.max() - xs.min(), ys.max() - ys.min()) / SIZE
        assert 0.55 <= extent <= 0.8, (p.category, extent)

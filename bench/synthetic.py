"""Synthetic image analyses for the benchmarks: a fashion catalogue's skew, clustered vectors, real descriptions.

    .venv/bin/python bench/synthetic.py --n 100000          # prints the distributions drawn (no server needed)

Every value is a vocabulary id (`vocab/*.yaml`), drawn with the frequencies of a fashion catalogue (calibrated
on the labelled Myntra sample in ../shared/eval/myntra: t-shirts 17 %, shirts 14 %, ties under 1 %; black 22 %,
blue 13 %, white 12 %; shirts mostly checked or striped, t-shirts solid or graphic, dresses and tops floral), so a
query's filters select as much of the catalogue as they would in a shop. Products have 1 to 4 images (views)
that share the product's analysis. Descriptions come from the project's `analysis.describe`.

Vectors are unit vectors that cluster: a text vector (384-d, the MiniLM space) is the normalised sum of a
category, a primary and secondary colour and a pattern centroid plus product and image noise; an image vector
(512-d, a CLIP-like space) is built the same way from centroids of its own. With `text_space="minilm"` the
text centroids are MiniLM's embeddings of the vocabulary labels, so a query embedded by the builtin provider
lands near the items it names, as it does on real data; `"random"` uses seeded Gaussian centroids (no model).

Generation is deterministic and prefix-stable: items come in blocks of `BLOCK` images, each block seeded by
(seed, block number), so the first n items of `generate(m)` are `generate(n)` (the scaling benchmarks grow a
dataset without rewriting it).

Write paths (see `bench/writes.py`): the project's own (`load_catalogue` = `upsert_products` +
`sync_inventory`; `storage.postgres.save_analyses`; `storage.opensearch.bulk_index` / `rebuild`) and COPY-based
ones written here for comparison (`copy_catalogue`, `copy_analyses`), which follow the schema of
`imgsearch_pipeline/storage/migrations/*.sql` and leave the same rows behind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from imgsearch_pipeline.analysis.describe import describe
from imgsearch_pipeline.analysis.types import ColorShare, ImageAnalysis
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary

MODEL_VERSION = "bench-synthetic-v1"
IMAGE_DIM, TEXT_DIM = 512, 384
BLOCK = 1000

# Shares of the catalogue, in percent (normalised when drawn). Calibrated on the labelled Myntra sample, with
# dresses, skirts and jewellery raised to what a full catalogue holds (the sample under-represents them).
CATEGORIES = {
    "t-shirt": 16.0, "shirt": 13.0, "casual-shoes": 7.0, "kurta": 4.2, "top": 4.2, "sports-shoes": 3.8,
    "watch": 3.5, "handbag": 3.3, "trousers": 3.2, "heels": 3.0, "sunglasses": 2.8, "sweater": 2.5,
    "sandals": 2.5, "wallet": 2.4, "flip-flops": 2.4, "sweatshirt": 2.3, "belt": 2.1, "jeans": 2.0,
    "formal-shoes": 1.9, "socks": 1.7, "dress": 1.5, "jacket": 1.4, "backpack": 1.3, "shorts": 1.2,
    "jewellery": 1.0, "cap": 0.9, "scarf": 0.7, "tie": 0.6, "clutch": 0.5, "skirt": 0.5,
}
UNDECIDED_CATEGORY = 0.02  # the analyser could not tell (category None)
COLORS = {
    "black": 22.0, "blue": 12.9, "white": 11.7, "brown": 8.2, "grey": 8.1, "red": 6.1, "green": 5.4, "navy": 5.2,
    "purple": 4.5, "pink": 3.0, "beige": 1.8, "maroon": 1.8, "yellow": 1.4, "olive": 1.1, "silver": 1.0,
    "off-white": 0.9, "orange": 0.7, "mustard": 0.7, "sky-blue": 0.5, "tan": 0.5, "charcoal": 0.4, "khaki": 0.3,
    "magenta": 0.2, "lavender": 0.2, "teal": 0.2, "peach": 0.15, "lime": 0.05,
}
CATEGORY_COLORS = {  # categories whose palette is not the catalogue's
    "jeans": {"blue": 45, "navy": 20, "black": 20, "grey": 10, "white": 5},
    "watch": {"black": 35, "silver": 30, "brown": 15, "blue": 8, "white": 7, "mustard": 5},
    "belt": {"black": 50, "brown": 40, "tan": 10},
    "wallet": {"black": 50, "brown": 40, "tan": 10},
    "formal-shoes": {"black": 55, "brown": 35, "tan": 10},
    "socks": {"black": 30, "white": 25, "grey": 20, "navy": 15, "blue": 10},
    "tie": {"navy": 20, "blue": 15, "red": 15, "black": 15, "maroon": 10, "grey": 10, "purple": 5, "green": 5,
            "pink": 5},
}
_PATTERNS_APPAREL = {"solid": 60, "striped": 10, "graphic": 10, "checked": 6, "colour-blocked": 6, "camouflage": 4,
                     "abstract": 4}
_PATTERNS_WOMEN = {"solid": 35, "floral": 25, "abstract": 12, "striped": 8, "polka-dot": 6, "animal": 4,
                   "checked": 4, "graphic": 3, "colour-blocked": 3}
_PATTERNS_GOODS = {"solid": 75, "colour-blocked": 8, "animal": 4, "graphic": 4, "abstract": 3, "checked": 2,
                   "striped": 2, "polka-dot": 1, "floral": 1}
PATTERNS = {
    "t-shirt": {"solid": 35, "graphic": 33, "striped": 15, "colour-blocked": 6, "abstract": 3, "camouflage": 2,
                "floral": 2, "checked": 2, "polka-dot": 1, "animal": 1},
    "shirt": {"checked": 45, "solid": 25, "striped": 20, "floral": 4, "abstract": 3, "polka-dot": 1, "graphic": 1,
              "camouflage": 1},
    **{c: _PATTERNS_WOMEN for c in ("top", "dress", "kurta", "skirt")},
    **{c: _PATTERNS_APPAREL for c in ("sweater", "sweatshirt", "jacket", "jeans", "trousers", "shorts", "socks",
                                      "scarf", "tie")},
}
UNDECIDED_PATTERN = 0.06  # pattern None (has_print None, except some that the provider stated alone)
DEPARTMENTS = {"men": 60, "women": 30, "unisex": 6, "kids": 4}
CATEGORY_DEPARTMENTS = {
    **{c: {"women": 100} for c in ("dress", "skirt", "heels", "clutch", "handbag", "jewellery")},
    "top": {"women": 95, "kids": 5}, "kurta": {"women": 80, "men": 20}, "tie": {"men": 100},
}
ATTRIBUTE_SHARE = 0.5  # each applicable open attribute is known for half the items (an LLM provider's answer)
ATTRIBUTES = {
    ("sleeve_length", "t-shirt"): {"short-sleeve": 75, "long-sleeve": 15, "sleeveless": 10},
    ("sleeve_length", "shirt"): {"long-sleeve": 60, "short-sleeve": 40},
    ("neckline", "t-shirt"): {"round-neck": 60, "collar": 20, "v-neck": 15, "hooded": 5},
    ("neckline", "shirt"): {"collar": 100},
    ("neckline", "sweatshirt"): {"hooded": 55, "round-neck": 45},
    ("material", "jeans"): {"denim": 100},
    ("material", "t-shirt"): {"cotton": 80, "polyester": 20},
    ("material", "watch"): {"metal": 60, "leather": 40},
    ("fit", None): {"regular": 50, "slim": 30, "relaxed": 15, "skinny": 5},
    # materials by category group (the lookup falls back from category to group to uniform)
    ("material", "topwear"): {"cotton": 45, "polyester": 20, "wool": 10, "knit": 10, "linen": 8, "silk": 7},
    ("material", "bottomwear"): {"cotton": 45, "denim": 30, "polyester": 15, "linen": 10},
    ("material", "dresses"): {"cotton": 35, "polyester": 30, "silk": 20, "linen": 15},
    ("material", "footwear"): {"leather": 55, "canvas": 30, "polyester": 15},
    ("material", "bags"): {"leather": 50, "canvas": 25, "polyester": 25},
    ("material", "accessories"): {"leather": 35, "metal": 30, "polyester": 15, "wool": 10, "silk": 10},
}
IMAGES_PER_PRODUCT = {1: 25, 2: 35, 3: 25, 4: 15}
BRANDS = ("Roadster", "Northfold", "Kestrel", "Ardent", "Velora", "Marlowe", "Tidewell", "Brightline", "Oakhurst",
          "Lumen & Co", "Saffra", "Pinecrest", "Halvard", "Quill", "Ember Row", "Solenne", "Drift", "Cobalt Lane",
          "Wrenfield", "Nomad Thread", "Altair", "Birchwood", "Corvo", "Dunmore", "Elsinore", "Fable", "Garnet",
          "Harbor", "Isola", "Juniper")
VIEWS = ("front", "back", "side", "detail")

# Weights of the centroids in a vector (the rest is noise); text follows the description, images the pixels.
_TEXT_WEIGHTS = {"category": 1.0, "color1": 0.7, "color2": 0.35, "pattern": 0.5, "product": 0.5, "image": 0.1}
_IMAGE_WEIGHTS = {"category": 1.0, "color1": 0.6, "color2": 0.3, "pattern": 0.4, "product": 0.7, "image": 0.35}


@dataclass(frozen=True)
class Item:
    """One image and its analysis (everything but the vectors, which the block holds)."""

    index: int
    product_id: str
    key: str
    partition_key: str
    content_hash: str
    department: str
    category: str | None
    category_confidence: float
    colors: tuple[str, ...]
    coverage: tuple[float, ...]
    pattern: str | None
    has_print: bool | None
    attributes: dict[str, str]
    description: str

    def doc(self) -> dict:
        """The fields `search.plan.violations` reads, as a stored document holds them."""
        return {"category": self.category, "colors": list(self.colors), "pattern": self.pattern,
                "has_print": self.has_print, "department": self.department, "attributes": self.attributes}

    def analysis(self, image_vector: np.ndarray, text_vector: np.ndarray) -> ImageAnalysis:
        return ImageAnalysis(
            category=self.category, category_confidence=self.category_confidence,
            colors=[ColorShare(color=c, coverage=s) for c, s in zip(self.colors, self.coverage, strict=True)],
            pattern=self.pattern, has_print=self.has_print, attributes=self.attributes,
            description=self.description, image_embedding=image_vector.tolist(),
            text_embedding=text_vector.tolist(), model_version=MODEL_VERSION)

    def listed(self) -> pg.ListedObject:
        return pg.ListedObject(key=self.key, product_id=self.product_id, etag=self.content_hash[:32],
                               size=40_000 + self.index % 60_000, content_hash=self.content_hash,
                               last_modified=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=self.index))


@dataclass
class Block:
    """Items [start, start + len(items)), the products first seen in them and their vectors."""

    start: int
    items: list[Item]
    products: list[pg.Product]
    image_vectors: np.ndarray  # (len(items), IMAGE_DIM) float32, unit rows
    text_vectors: np.ndarray  # (len(items), TEXT_DIM) float32, unit rows


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Generator:
    """Deterministic synthetic analyses; `blocks(n)` yields the first n items in blocks of BLOCK."""

    def __init__(self, seed: int = 0, text_space: str = "random", vocab: Vocabulary | None = None) -> None:
        self.seed, self.vocab = seed, vocab or get_vocabulary()
        v = self.vocab
        self._cat = (list(CATEGORIES), _probs(CATEGORIES))
        self._cat_ix = {c: i for i, c in enumerate(v.category_ids)}
        self._col_ix = {c: i for i, c in enumerate(v.color_ids)}
        self._pat_ix = {p: i for i, p in enumerate(v.pattern_ids)}
        rng = np.random.default_rng([seed, 1_000_003])
        self.image_centroids = {
            "category": _unit(rng.standard_normal((len(v.category_ids), IMAGE_DIM))),
            "color": _unit(rng.standard_normal((len(v.color_ids), IMAGE_DIM))),
            "pattern": _unit(rng.standard_normal((len(v.pattern_ids), IMAGE_DIM))),
        }
        self.text_space = text_space
        if text_space == "random":
            self.text_centroids = {
                "category": _unit(rng.standard_normal((len(v.category_ids), TEXT_DIM))),
                "color": _unit(rng.standard_normal((len(v.color_ids), TEXT_DIM))),
                "pattern": _unit(rng.standard_normal((len(v.pattern_ids), TEXT_DIM))),
            }
        elif text_space == "minilm":
            from imgsearch_pipeline.analysis.provider import get_provider

            embed = get_provider("builtin").embed_text
            self.text_centroids = {
                "category": _unit(np.asarray(embed([c.label.lower() for c in v.categories]))),
                "color": _unit(np.asarray(embed([c.label.lower() for c in v.colors]))),
                "pattern": _unit(np.asarray(embed([p.label.lower() for p in v.patterns]))),
            }
            if self.text_centroids["category"].shape[1] != TEXT_DIM:
                raise ValueError(f"MiniLM vectors are not {TEXT_DIM}-d")
        else:
            raise ValueError(f"text_space must be 'random' or 'minilm', not {text_space!r}")

    # Items -------------------------------------------------------------------------------------------------

    def blocks(self, n: int, start: int = 0) -> Iterator[Block]:
        """Items [start, n) of the dataset, block by block (a block may be cut at `start` and at `n`)."""
        for b in range(start // BLOCK, (n + BLOCK - 1) // BLOCK):
            block = self._block(b)
            lo, hi = max(start, b * BLOCK) - b * BLOCK, min(n, (b + 1) * BLOCK) - b * BLOCK
            items = block.items[lo:hi]
            first = {}
            for it in block.items:
                first.setdefault(it.product_id, it.index)
            # A product belongs to the slice that holds its first image (a cut block never splits its insert).
            products = [p for p in block.products if lo + b * BLOCK <= first[p.product_id] < hi + b * BLOCK]
            yield Block(b * BLOCK + lo, items, products, block.image_vectors[lo:hi], block.text_vectors[lo:hi])

    def items(self, n: int) -> Iterator[tuple[Item, np.ndarray, np.ndarray]]:
        for block in self.blocks(n):
            yield from zip(block.items, block.image_vectors, block.text_vectors, strict=True)

    def _block(self, b: int) -> Block:
        rng = np.random.default_rng([self.seed, b])
        v = self.vocab
        items: list[Item] = []
        products: list[pg.Product] = []
        parts: list[tuple[int, int, int, int, int]] = []  # per item: category, color1, color2, pattern, product
        n_products = 0
        while len(items) < BLOCK:
            pid = f"bench-{b:05d}-{n_products:03d}"
            category = _draw(rng, *self._cat)
            department = _draw(rng, *_dist(CATEGORY_DEPARTMENTS.get(category, DEPARTMENTS)))
            colors = self._colors(rng, category)
            pattern = _draw(rng, *_dist(PATTERNS.get(category, _PATTERNS_GOODS)))
            if pattern != "solid" and len(colors) == 1:  # a pattern is drawn in an accent colour
                colors = (*colors, self._accent(rng, colors))
            analysed_category = None if rng.random() < UNDECIDED_CATEGORY else category
            analysed_pattern = None if rng.random() < UNDECIDED_PATTERN else pattern
            has_print = v.pattern(pattern).has_print if analysed_pattern or rng.random() < 0.3 else None
            attributes = self._attributes(rng, category)
            coverage = self._coverage(rng, len(colors))
            description = describe(v, analysed_category, list(colors), analysed_pattern, attributes)
            brand = BRANDS[min(int(rng.zipf(1.6)) - 1, len(BRANDS) - 1)]
            pattern_word = "" if pattern == "solid" else f" {v.pattern(pattern).label}"
            name = (f"{brand} {department.capitalize()} {v.color(colors[0]).label}{pattern_word} "
                    f"{v.category(category).label}")
            products.append(pg.Product(product_id=pid, name=name, brand=brand, department=department,
                                       shop_category=f"{v.category(category).group}/{category}"))
            views = _draw(rng, *_dist(IMAGES_PER_PRODUCT))
            for view in VIEWS[:min(views, BLOCK - len(items))]:
                index = b * BLOCK + len(items)
                key = f"catalog/{department}/{category}/{pid}/{view}.jpg"
                items.append(Item(
                    index=index, product_id=pid, key=key, partition_key=f"catalog/{department}/{category}/",
                    content_hash=hashlib.sha256(f"{self.seed}:{key}".encode()).hexdigest(),
                    department=department, category=analysed_category,
                    category_confidence=round(float(rng.uniform(0.35, 0.99)), 4), colors=colors,
                    coverage=coverage, pattern=analysed_pattern, has_print=has_print, attributes=attributes,
                    description=description))
                parts.append((self._cat_ix[category] if analysed_category else -1, self._col_ix[colors[0]],
                              self._col_ix[colors[1]] if len(colors) > 1 else -1,
                              self._pat_ix[analysed_pattern] if analysed_pattern else -1, n_products))
            n_products += 1
        ix = np.asarray(parts)
        image = self._vectors(rng, ix, self.image_centroids, _IMAGE_WEIGHTS, IMAGE_DIM, n_products)
        text = self._vectors(rng, ix, self.text_centroids, _TEXT_WEIGHTS, TEXT_DIM, n_products)
        return Block(b * BLOCK, items, products, image, text)

    def _colors(self, rng: np.random.Generator, category: str) -> tuple[str, ...]:
        primary = _draw(rng, *_dist(CATEGORY_COLORS.get(category, COLORS)))
        colors = [primary]
        if rng.random() < 0.35:
            colors.append(self._accent(rng, colors))
            if rng.random() < 0.25:
                colors.append(self._accent(rng, colors))
        return tuple(colors)

    def _accent(self, rng: np.random.Generator, taken: Sequence[str]) -> str:
        weights = {c: w * (3 if c == "white" else 1) for c, w in COLORS.items() if c not in taken}
        return _draw(rng, *_dist(weights))

    def _coverage(self, rng: np.random.Generator, n: int) -> tuple[float, ...]:
        """Shares of the product's pixels, largest first, each at least 15 % (what a listed colour covers);
        together 85-100 % (the rest is trim)."""
        total = rng.uniform(0.85, 1.0)
        shares = np.sort(0.15 + (total - 0.15 * n) * rng.dirichlet([4.0] + [1.5] * (n - 1)))[::-1]
        return tuple(round(float(s), 3) for s in shares)

    def _attributes(self, rng: np.random.Generator, category: str) -> dict[str, str]:
        group = self.vocab.category(category).group
        out = {}
        for name, attr in self.vocab.attributes.items():
            if group not in attr.applies_to or rng.random() >= ATTRIBUTE_SHARE:
                continue
            weights = (ATTRIBUTES.get((name, category)) or ATTRIBUTES.get((name, group))
                       or ATTRIBUTES.get((name, None)))
            if weights is None:
                weights = {a.id: 1.0 for a in attr.values}
            out[name] = _draw(rng, *_dist(weights))
        return out

    @staticmethod
    def _vectors(rng: np.random.Generator, ix: np.ndarray, centroids: dict[str, np.ndarray], w: dict[str, float],
                 dim: int, n_products: int) -> np.ndarray:
        def pick(table: np.ndarray, column: np.ndarray) -> np.ndarray:
            padded = np.vstack([table, np.zeros((1, dim), dtype=np.float32)])  # index -1: no such part
            return padded[column]

        product_noise = rng.standard_normal((n_products, dim)).astype(np.float32) / np.sqrt(dim)
        image_noise = rng.standard_normal((len(ix), dim)).astype(np.float32) / np.sqrt(dim)
        x = (w["category"] * pick(centroids["category"], ix[:, 0]) + w["color1"] * pick(centroids["color"], ix[:, 1])
             + w["color2"] * pick(centroids["color"], ix[:, 2]) + w["pattern"] * pick(centroids["pattern"], ix[:, 3])
             + w["product"] * product_noise[ix[:, 4]] + w["image"] * image_noise)
        return _unit(x)


def _probs(weights: dict) -> np.ndarray:
    p = np.asarray(list(weights.values()), dtype=np.float64)
    return p / p.sum()


_DIST_CACHE: dict[tuple, tuple[list, np.ndarray]] = {}


def _dist(weights: dict) -> tuple[list, np.ndarray]:
    key = tuple(weights.items())
    hit = _DIST_CACHE.get(key)
    if hit is None:
        hit = _DIST_CACHE[key] = (list(weights), _probs(weights))
    return hit


def _draw(rng: np.random.Generator, values: list, probs: np.ndarray):
    return values[int(rng.choice(len(values), p=probs))]


# Writing ---------------------------------------------------------------------------------------------------


def load_catalogue(conn: psycopg.Connection, items: Iterable[Item], products: Iterable[pg.Product]) -> None:
    """Products and images through the project's paths: `upsert_products`, then `sync_inventory` per partition
    with that partition's complete listing (a partial listing would mark the rest deleted)."""
    with conn.transaction():
        pg.upsert_products(conn, products)
    listing: dict[str, list[pg.ListedObject]] = defaultdict(list)
    for it in items:
        listing[it.partition_key].append(it.listed())
    for partition, objects in sorted(listing.items()):
        pg.sync_inventory(conn, partition, objects)


def copy_catalogue(conn: psycopg.Connection, items: Sequence[Item], products: Sequence[pg.Product]) -> None:
    """The same products and pending images by COPY (new rows only: nothing is upserted)."""
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy("COPY products (product_id, name, brand, department, shop_category, source) FROM STDIN") as cp:
            for p in products:
                cp.write_row((p.product_id, p.name, p.brand, p.department, p.shop_category, p.source))
        with cur.copy("COPY product_images (s3_key, product_id, partition_key, content_hash, etag, size_bytes, "
                      "last_modified, status) FROM STDIN") as cp:
            for it in items:
                o = it.listed()
                cp.write_row((o.key, o.product_id, it.partition_key, o.content_hash, o.etag, o.size,
                              o.last_modified, "pending"))


def image_ids(conn: psycopg.Connection, keys: Iterable[str] | None = None) -> dict[str, int]:
    """s3_key -> image_id (of every image, or of `keys`)."""
    if keys is None:
        rows = conn.execute("SELECT s3_key, image_id FROM product_images")
    else:
        rows = conn.execute("SELECT s3_key, image_id FROM product_images WHERE s3_key = ANY(%s)", (list(keys),))
    return {r["s3_key"]: r["image_id"] for r in rows}


def analyses(block: Block, ids: dict[str, int]) -> list[tuple[int, str, ImageAnalysis]]:
    """The block's items as `save_analyses` takes them."""
    return [(ids[it.key], it.content_hash, it.analysis(iv, tv))
            for it, iv, tv in zip(block.items, block.image_vectors, block.text_vectors, strict=True)]


def copy_analyses(conn: psycopg.Connection, results: Sequence[tuple[int, str, ImageAnalysis]], vocab_version: str,
                  upsert: bool = True) -> int:
    """What `save_analyses` does, with binary COPY instead of one INSERT per row.

    upsert=True: COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT DO UPDATE (repeatable,
    like save_analyses). upsert=False: COPY straight into image_analysis (new rows only: the engine's floor).
    Either way the failures are cleared and the images marked analysed with one set-based statement each.
    """
    if not results:
        return 0
    with conn.transaction(), conn.cursor() as cur:
        target = "image_analysis"
        if upsert:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS bench_analysis_stage "
                        "(LIKE image_analysis INCLUDING DEFAULTS EXCLUDING GENERATED)")
            # LIKE copies the generated column as a plain one: drop it so the staged rows stay small.
            cur.execute("ALTER TABLE bench_analysis_stage DROP COLUMN IF EXISTS description_tsv")
            cur.execute("TRUNCATE bench_analysis_stage")
            target = "bench_analysis_stage"
        pg.copy_analysis_rows(cur, target, results, vocab_version)
        if upsert:
            cur.execute(pg.upsert_analyses_from("bench_analysis_stage"))
        ids = [r[0] for r in results]
        hashes = [r[1] for r in results]
        versions = [r[2].model_version for r in results]
        cur.execute("DELETE FROM analysis_failures f USING unnest(%s::bigint[], %s::text[]) AS t(id, mv) "
                    "WHERE f.image_id = t.id AND f.model_version = t.mv", (ids, versions))
        cur.execute(
            "UPDATE product_images i SET status = 'analysed', error = NULL, attempts = i.attempts + 1, "
            "updated_at = now() FROM unnest(%s::bigint[], %s::text[]) AS t(id, hash) "
            "WHERE i.image_id = t.id AND i.content_hash = t.hash AND i.status <> 'deleted'", (ids, hashes))
    return len(results)


# The command line: what the generator draws ------------------------------------------------------------------


def summary(n: int, seed: int = 0) -> str:
    gen = Generator(seed)
    cats, cols, pats, prints, deps, views = Counter(), Counter(), Counter(), Counter(), Counter(), Counter()
    products = set()
    descriptions = []
    for block in gen.blocks(n):
        for it in block.items:
            cats[it.category] += 1
            cols[it.colors[0]] += 1
            pats[it.pattern] += 1
            prints[it.has_print] += 1
            deps[it.department] += 1
            products.add(it.product_id)
            if len(descriptions) < 5 and it.index % 97 == 0:
                descriptions.append(it.description)
        views[len(block.items)] += 1

    def pct(counter: Counter) -> str:
        return ", ".join(f"{k}: {100 * v / n:.1f}%" for k, v in counter.most_common())

    lines = [f"{n} images of {len(products)} products (seed {seed})", "",
             f"category: {pct(cats)}", f"primary colour: {pct(cols)}", f"pattern: {pct(pats)}",
             f"has_print: {pct(prints)}", f"department: {pct(deps)}", "", "descriptions:"]
    lines += [f"  {d}" for d in descriptions]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the first rows as JSON instead")
    args = parser.parse_args(argv)
    if args.json:
        for it, iv, tv in Generator(args.seed).items(args.n):
            print(json.dumps({**it.__dict__, "image_vector[:4]": iv[:4].tolist(), "text_vector[:4]": tv[:4].tolist()}))
        return 0
    print(summary(args.n, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

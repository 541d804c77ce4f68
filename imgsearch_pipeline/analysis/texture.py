"""Surface pattern from pixels: solid, striped, checked, dotted, floral, graphic or colour-blocked.

The product's pixels are split into its main colour and the rest; the layout of "the rest" tells the
pattern: lines of one orientation are stripes, two orientations (or a lattice of squares) are checks, many
small round blobs are dots, irregular blobs are a floral print, one compact central block is a graphic and
a few large regions are colour blocks. Cheap statistics on the downscaled image, no model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgsearch_pipeline.analysis.colors import (
    appearance_lab,
    downscale,
    downscale_mask,
    gradient,
    label_components,
    product_weights,
    skin_tone,
    srgb_to_lab,
)
from imgsearch_pipeline.analysis.types import ColorShare
from imgsearch_pipeline.vocab import get_vocabulary

# Thresholds in working pixels (WORK_SIDE) and Lab units, set on synthetic catalogues and Myntra photos.
_CORE = 0.25  # centre weight bounding the analysed core (on a model: the garment, not the jeans below)
_SHADING = 12.0  # Lab step between pixel groups that are still one colour in light and shadow
_EDGE = 14.0  # Lab step to a neighbour that counts as a printed edge, well above soft shading
_SKIN_MAX = 0.4  # a model shows at most this share of skin in the core; more is a skin-toned product part
_OUTLINE = 3  # edges this close to the product's outline are its shape, not its print
# Without a recognisable layout: this share of edge pixels, with a distinct second colour (Lab step) covering
# this much, is still a print.
_PRINT_EDGES, _PRINT_OTHER, _PRINT_SPREAD = 0.175, 0.08, 20.0


@dataclass(frozen=True)
class PatternFeatures:
    """What the rules look at; kept as a value so tests and tuning can inspect it."""

    area: int  # pixels analysed
    edges: float  # share of analysed pixels on a sharp colour edge
    other: float  # share of pixels that are not the main colour
    spread: float  # step between the main colour and the rest (Lab), 0 when one colour
    lines: tuple[float, ...]  # correlation ratio of "other" along rows, columns and both diagonals
    alternations: tuple[int, ...]  # how often "other" comes and goes across those lines
    # Blobs of the figure: whichever of "other" and the main colour is broken into pieces.
    blobs: int  # connected pieces with at least 3 pixels
    blob_size: float  # median piece area as a share of the analysed area
    blob_cv: float  # spread of piece areas (std / mean)
    fill: float  # piece area / bounding-box area, area weighted (round ~0.75, square ~1, ragged lower)
    largest: float  # share of the figure in its largest piece
    concentration: float  # spread of "other" relative to the product's (small: one central motif)
    offset: float  # distance of the centroid of "other" from the product's, in product radii


def _main_split(lab: np.ndarray, region: np.ndarray, colors: list[ColorShare]) -> tuple[np.ndarray, float]:
    """Boolean "not the main colour" map and the Lab step from the main colour to the nearest other group.

    Centres start at the reported colours as photos show them (plus the most distant pixels, since a
    secondary colour below the reporting threshold still makes a pattern) and adapt in a few k-means steps;
    groups within _SHADING of the main colour are the same fabric in light or shadow.
    """
    vocab = get_vocabulary()
    pixels = lab[region]
    centres = appearance_lab(tuple(vocab.color(c.color).rgb_tuple for c in colors[:3]))
    far = np.linalg.norm(pixels - centres[0], axis=1)
    centres = np.vstack([centres, pixels[far >= np.quantile(far, 0.9)].mean(axis=0)])
    for _ in range(4):
        label = np.argmin(((pixels[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        for k in range(len(centres)):
            chosen = pixels[label == k]
            if len(chosen):
                centres[k] = chosen.mean(axis=0)
    counts = np.bincount(label, minlength=len(centres))
    main = int(counts.argmax())
    step = np.linalg.norm(centres - centres[main], axis=1)
    same = step < _SHADING
    other = np.zeros(region.shape, dtype=bool)
    other[region] = ~same[label]
    rest = step[~same & (counts > 0)]
    return other, float(rest.min()) if len(rest) else 0.0


def _line_stats(other: np.ndarray, region: np.ndarray) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Per orientation (rows, columns, both diagonals): how much of the variance of `other` the line a pixel
    lies on explains (~1 for stripes of that orientation, ~0 for blobs), and how often the line means
    alternate across the product (a single band alternates twice, stripes many times)."""
    h, w = region.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = region.ravel()
    o = other.ravel()[r].astype(np.float64)
    p = o.mean()
    if p <= 0 or p >= 1:
        return (0.0,) * 4, (0,) * 4
    ratios, alternations = [], []
    for index in (yy, xx, xx + yy, xx - yy + h):
        idx = index.ravel()[r]
        n = np.bincount(idx)
        s = np.bincount(idx, weights=o)
        used = n > 0
        means = s[used] / n[used]
        ratios.append(float((n[used] * (means - p) ** 2).sum() / (len(o) * p * (1 - p))))
        decided = means[(n[used] >= 3) & (np.abs(means - p) > 0.15)] > p
        alternations.append(int(np.count_nonzero(decided[1:] != decided[:-1])))
    return tuple(ratios), tuple(alternations)


def _shrink(region: np.ndarray) -> np.ndarray:
    out = region.copy()
    out[1:] &= region[:-1]
    out[:-1] &= region[1:]
    out[:, 1:] &= region[:, :-1]
    out[:, :-1] &= region[:, 1:]
    return out


def _blob_stats(binary: np.ndarray, area: int) -> tuple[int, float, float, float, float]:
    """Count (>= 3 pixels), median size (share of `area`), size spread (std / mean), fill of the bounding box
    (area weighted) and the largest blob's share of all, for the 4-connected blobs of `binary`."""
    labels, n = label_components(binary)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = np.flatnonzero(sizes >= 3)
    if not len(keep):
        return 0, 0.0, 0.0, 0.0, 0.0
    kept = sizes[keep].astype(np.float64)
    ys, xs = np.nonzero(labels)
    index = labels[ys, xs] - 1
    low_y, low_x = np.full(n, ys.max()), np.full(n, xs.max())
    high_y, high_x = np.zeros(n, dtype=ys.dtype), np.zeros(n, dtype=xs.dtype)
    np.minimum.at(low_y, index, ys)
    np.minimum.at(low_x, index, xs)
    np.maximum.at(high_y, index, ys)
    np.maximum.at(high_x, index, xs)
    box = (high_y[keep] - low_y[keep] + 1) * (high_x[keep] - low_x[keep] + 1)
    return (len(keep), float(np.median(kept)) / area, float(kept.std() / kept.mean()),
            float((kept * kept / box).sum() / kept.sum()), float(kept.max() / sizes.sum()))


def _without_model(small: np.ndarray, region: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The region minus a model's face, neck and arms: a few skin-toned pieces entering from the region's
    edge. A skin-toned print inside the garment stays, many pieces are a pattern colour (khaki stripes), and
    a skin-toned main colour is the product itself."""
    skin = skin_tone(small) & region
    if skin.sum() > _SKIN_MAX * region.sum() or (skin & ~other).sum() >= 0.5 * (region & ~other).sum():
        return region
    labels, n = label_components(skin)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    if np.count_nonzero(sizes[1:] >= 4) > 6:
        return region
    entering = np.zeros(n + 1, dtype=bool)
    entering[labels[region & ~_shrink(region)]] = True
    entering[0] = False
    return region & ~entering[labels]


def _stripe_strength(stats: tuple[tuple[float, ...], tuple[int, ...]]) -> float:
    ratios, alternations = stats
    return max((r for r, a in zip(ratios, alternations, strict=True) if a >= 6), default=0.0)


def pattern_features(rgb: np.ndarray, mask: np.ndarray, colors: list[ColorShare]) -> PatternFeatures | None:
    """Features of the product's core region, or None when there is too little of it to judge."""
    small = downscale(np.asarray(rgb))
    m = downscale_mask(np.asarray(mask, dtype=bool))
    region = product_weights(m) >= _CORE
    if region.sum() < 64 or not colors:
        return None
    lab = srgb_to_lab(small)
    other, spread = _main_split(lab, region, colors)
    with_skin = _line_stats(other, region)
    region = _without_model(small, region, other)
    area = int(region.sum())
    if area < 64:
        return None
    other &= region
    # Skin-toned stripes count as stripes even when the skin filter took them.
    lines, alternations = max(_line_stats(other, region), with_skin, key=_stripe_strength)
    # Edges near the outline (product against background) are its shape, not its print.
    inside = m
    for _ in range(_OUTLINE):
        inside = _shrink(inside)
    edges = float(((gradient(lab) > _EDGE) & inside & region).sum() / area)
    # The figure of a print is the colour broken into pieces, the ground the one that hangs together,
    # whichever of them covers more.
    blobs = min(_blob_stats(other, area), _blob_stats(region & ~other, area), key=lambda b: b[4] or 1.0)
    ry, rx = np.nonzero(region)
    oy, ox = np.nonzero(other)
    concentration, offset = 1.0, 0.0
    if len(oy) >= 3:
        radius = float(np.sqrt(ry.var() + rx.var())) + 1e-6
        concentration = float(np.sqrt(oy.var() + ox.var())) / radius
        offset = float(np.hypot(oy.mean() - ry.mean(), ox.mean() - rx.mean())) / radius
    return PatternFeatures(area=area, edges=edges, other=float(other[region].mean()), spread=spread,
                           lines=lines, alternations=alternations, blobs=blobs[0], blob_size=blobs[1],
                           blob_cv=blobs[2], fill=blobs[3], largest=blobs[4], concentration=concentration,
                           offset=offset)


def classify_pattern(rgb: np.ndarray, mask: np.ndarray, colors: list[ColorShare]) -> tuple[str, float]:
    """A vocabulary pattern id and a confidence in [0, 1] (low when the evidence is thin or mixed)."""
    f = pattern_features(rgb, mask, colors)
    if f is None:
        return "solid", 0.2
    return _decide(f)


def _ramp(value: float, low: float, high: float) -> float:
    """0 at `low`, 1 at `high`, linear between: turns a margin over a threshold into confidence."""
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))


def _decide(f: PatternFeatures) -> tuple[str, float]:
    """Rules over the features, most specific first; anything without repeated structure is solid (details,
    trims and two-part items such as a shoe with a white sole are still solid in shop terms)."""
    if f.spread < _SHADING or f.other < 0.03:
        return "solid", 0.6 + 0.35 * (1 - _ramp(f.edges, 0.05, 0.2))
    best = int(np.argmax(f.lines))
    if f.lines[best] >= 0.5 and f.alternations[best] >= 6:
        return "striped", 0.45 + 0.5 * _ramp(f.lines[best], 0.5, 0.85) * _ramp(f.alternations[best], 6, 10)
    checks = [min(f.lines[i], f.lines[j]) for i, j in ((0, 1), (2, 3))
              if min(f.alternations[i], f.alternations[j]) >= 4]
    if checks and max(checks) >= 0.15:
        return "checked", 0.45 + 0.5 * _ramp(max(checks), 0.15, 0.3)
    small_or_round = f.blob_size <= 0.011 or f.fill >= 0.74
    if f.blobs >= 12 and small_or_round and f.blob_cv <= 0.6 and f.fill >= 0.6 and f.largest <= 0.15:
        return "polka-dot", 0.45 + 0.5 * _ramp(0.6 - f.blob_cv, 0.0, 0.3)
    if (f.blobs >= 6 and f.blob_size >= 0.008 and f.other >= 0.1 and f.concentration >= 0.8
            and f.largest <= 0.65):
        return "floral", 0.4 + 0.4 * _ramp(f.blobs, 6, 14)
    if 0.04 <= f.other <= 0.35 and f.concentration < 0.62 and f.offset < 0.35:
        return "graphic", 0.4 + 0.5 * _ramp(0.62 - f.concentration, 0.0, 0.25)
    if f.other >= 0.38 and f.largest >= 0.8 and f.offset >= 0.3 and max(f.lines[:2]) >= 0.7:
        return "colour-blocked", 0.4 + 0.4 * _ramp(max(f.lines[:2]), 0.7, 0.9)
    if f.edges >= _PRINT_EDGES and f.other >= _PRINT_OTHER and f.spread >= _PRINT_SPREAD:
        return ("graphic" if f.offset < 0.3 else "abstract"), 0.35 + 0.3 * _ramp(f.edges, _PRINT_EDGES, 0.35)
    return "solid", 0.35 + 0.25 * (1 - _ramp(f.other, 0.03, 0.3))

"""Pixel analysis on drawn products: background separation, colour naming and pattern classification.

Every image is drawn here with Pillow (a shirt on a studio background, shaded, JPEG-compressed), so the
truth is known exactly and no third-party photo is needed.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgsearch_pipeline.analysis.colors import (
    ciede2000,
    dominant_colors,
    fill_from,
    foreground_mask,
    label_components,
    srgb_to_lab,
)
from imgsearch_pipeline.analysis.texture import classify_pattern
from imgsearch_pipeline.vocab import get_vocabulary

SIZE = 256
WHITE = (255, 255, 255)


def _rgb(color_id: str) -> tuple[int, int, int]:
    return get_vocabulary().color(color_id).rgb_tuple


def _shirt(size: int = SIZE) -> list[tuple[float, float]]:
    s = size
    return [(0.30 * s, 0.12 * s), (0.42 * s, 0.10 * s), (0.58 * s, 0.10 * s), (0.70 * s, 0.12 * s),
            (0.92 * s, 0.30 * s), (0.82 * s, 0.42 * s), (0.74 * s, 0.36 * s), (0.74 * s, 0.92 * s),
            (0.26 * s, 0.92 * s), (0.26 * s, 0.36 * s), (0.18 * s, 0.42 * s), (0.08 * s, 0.30 * s)]


def _fabric(pattern: str, base: tuple, accent: tuple, size: int = SIZE) -> Image.Image:
    """A full-canvas layer of the pattern; the shirt is cut out of it."""
    img = Image.new("RGB", (size, size), base)
    d = ImageDraw.Draw(img)
    if pattern == "striped":
        for y in range(0, size, 16):
            d.rectangle([0, y, size, y + 7], fill=accent)
    elif pattern == "checked":
        for k in range(0, size, 24):
            d.rectangle([k, 0, k + 7, size], fill=accent)
            d.rectangle([0, k, size, k + 7], fill=accent)
    elif pattern == "polka-dot":
        for row, y in enumerate(range(0, size + 22, 22)):
            for x in range(0, size + 22, 22):
                cx = x + (11 if row % 2 else 0)
                d.ellipse([cx - 5, y - 5, cx + 5, y + 5], fill=accent)
    elif pattern == "floral":
        for row, y in enumerate(range(0, size + 30, 30)):
            for col, x in enumerate(range(0, size + 30, 30)):
                cx, cy = x + (15 if row % 2 else 0), y
                turn = (row * 7 + col * 3) % 5
                for k in range(5):
                    a = 2 * math.pi * (k + turn / 5) / 5
                    px, py = cx + 6 * math.cos(a), cy + 6 * math.sin(a)
                    d.ellipse([px - 4.5, py - 4.5, px + 4.5, py + 4.5], fill=accent)
                d.ellipse([cx - 2.5, cy - 2.5, cx + 2.5, cy + 2.5], fill=base)
    elif pattern == "graphic":
        c = size / 2
        radii = [size * (0.13 if k % 2 == 0 else 0.06) for k in range(10)]
        angles = [math.pi * k / 5 - math.pi / 2 for k in range(10)]
        d.polygon([(c + r * math.cos(a), c + r * math.sin(a)) for r, a in zip(radii, angles, strict=True)],
                  fill=accent)
    elif pattern == "colour-blocked":
        d.rectangle([0, size // 2, size, size], fill=accent)
    return img


def _photo(pattern: str = "solid", base: str = "red", accent: str = "white", bg=WHITE, gradient: bool = False,
           quality: int = 85, outline: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A shaded shirt on a studio background, JPEG-compressed: (RGB array, true product mask)."""
    cut = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(cut).polygon(_shirt(), fill=255)
    truth = np.asarray(cut) > 0
    backdrop = np.empty((SIZE, SIZE, 3), dtype=np.float32)
    backdrop[:] = bg
    if gradient:  # a coloured studio sweep, darker towards the bottom right
        yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
        backdrop *= (1.0 - 0.12 * yy - 0.06 * xx)[..., None]
    fabric = np.asarray(_fabric(pattern, _rgb(base), _rgb(accent)), dtype=np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    light = 1.0 - 0.10 * np.clip((xx - 0.3 * SIZE) / (0.4 * SIZE), 0, 1) + 0.03 * np.sin(yy / 9.0)
    img = np.where(truth[..., None], fabric * light[..., None], backdrop)
    photo = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if outline:  # seams and shading along the edge, as white garments show them on white
        ImageDraw.Draw(photo).line([*_shirt(), _shirt()[0]], fill=(215, 215, 212), width=2)
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")), truth


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# Background separation ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("base", "bg", "gradient"), [
    ("red", WHITE, False),
    ("navy", (236, 236, 236), False),  # light grey studio
    ("yellow", (170, 200, 230), True),  # coloured gradient sweep
    ("black", (250, 250, 250), False),
])
def test_mask_separates_product_from_background(base, bg, gradient):
    rgb, truth = _photo(base=base, bg=bg, gradient=gradient)
    mask = foreground_mask(rgb)
    assert mask.shape == truth.shape and mask.dtype == bool
    assert _iou(mask, truth) > 0.9


def test_white_product_on_light_grey_is_kept():
    # The shirt's shaded side (down to ~215) stays lighter than the backdrop, as in a lit studio.
    rgb, truth = _photo(base="white", bg=(205, 205, 205))
    assert _iou(foreground_mask(rgb), truth) > 0.9


def test_white_product_on_white_is_kept_inside_its_outline():
    rgb, truth = _photo(base="white", bg=WHITE, outline=True)
    mask = foreground_mask(rgb)
    assert (mask & truth).sum() > 0.8 * truth.sum()
    assert (mask & ~truth).sum() < 0.05 * truth.sum()


def test_mask_is_never_empty():
    blank = np.full((120, 90, 3), 240, dtype=np.uint8)
    mask = foreground_mask(blank)
    assert mask.shape == (120, 90) and mask.any() and mask[60, 45]


def test_close_up_keeps_the_product_that_fills_the_frame():
    """A detail crop shows mostly product; the frame's minority colour is the background."""
    rgb, truth = _photo(base="green")
    crop = rgb[20:200, 40:216]
    mask = foreground_mask(crop)
    assert _iou(mask, truth[20:200, 40:216]) > 0.85


# Colour naming -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("color", ["red", "navy", "green", "mustard", "pink", "sky-blue", "purple", "black",
                                   "orange", "teal", "maroon", "brown", "beige", "olive"])
def test_primary_colour_of_a_shaded_jpeg_shirt(color):
    rgb, _ = _photo(base=color, quality=75)
    colors = dominant_colors(rgb, foreground_mask(rgb), get_vocabulary())
    assert colors[0].color == color
    assert colors[0].coverage > 0.7


def test_white_shirt_on_grey_is_white():
    rgb, _ = _photo(base="white", bg=(205, 205, 205))
    colors = dominant_colors(rgb, foreground_mask(rgb), get_vocabulary())
    assert colors[0].color == "white"


def test_two_colours_are_both_reported_largest_first():
    rgb, _ = _photo("colour-blocked", base="navy", accent="yellow")
    colors = dominant_colors(rgb, foreground_mask(rgb), get_vocabulary())
    assert {c.color for c in colors} == {"navy", "yellow"}
    assert colors[0].coverage >= colors[1].coverage
    assert sum(c.coverage for c in colors) <= 1.0


def test_minor_colours_follow_min_coverage_and_max_colors():
    rgb, _ = _photo("graphic", base="green", accent="white")
    vocab = get_vocabulary()
    mask = foreground_mask(rgb)
    assert [c.color for c in dominant_colors(rgb, mask, vocab, min_coverage=0.3)] == ["green"]
    assert len(dominant_colors(rgb, mask, vocab, min_coverage=0.0, max_colors=2)) == 2


def test_empty_mask_falls_back_to_the_centre():
    rgb, _ = _photo(base="purple")
    colors = dominant_colors(rgb, np.zeros(rgb.shape[:2], dtype=bool), get_vocabulary())
    assert colors[0].color == "purple"


def test_lab_and_ciede2000_reference_values():
    assert np.allclose(srgb_to_lab(np.array([255, 255, 255])), [100, 0, 0], atol=0.05)
    assert np.allclose(srgb_to_lab(np.array([255, 0, 0])), [53.24, 80.09, 67.20], atol=0.05)
    # Sharma, Wu & Dalal (2005), test pairs 1 and 17.
    pair_1 = ciede2000(np.array([50, 2.6772, -79.7751]), np.array([50, 0, -82.7485]))
    pair_17 = ciede2000(np.array([50, 2.5, 0]), np.array([73, 25, -18]))
    assert pair_1 == pytest.approx(2.0425, abs=1e-3)
    assert pair_17 == pytest.approx(27.1492, abs=1e-3)


# Pattern ---------------------------------------------------------------------------------------------

PAIRS = [("red", "white"), ("navy", "yellow")]
CASES = [(p, c) for p in ("solid", "striped", "checked", "polka-dot", "floral", "graphic") for c in PAIRS]
# A white block on a white background has no edge to find; colour blocks are tested on coloured pairs.
CASES += [("colour-blocked", ("green", "beige")), ("colour-blocked", ("navy", "yellow"))]


@pytest.mark.parametrize(("pattern", "colors"), CASES)
def test_pattern_of_a_drawn_shirt(pattern, colors):
    rgb, _ = _photo(pattern, base=colors[0], accent=colors[1])
    mask = foreground_mask(rgb)
    found, confidence = classify_pattern(rgb, mask, dominant_colors(rgb, mask, get_vocabulary()))
    assert found == pattern
    assert 0.35 <= confidence <= 1.0


def test_shading_alone_is_solid():
    """Strong light fall-off makes two shades of one colour, which must not read as a pattern."""
    rgb, _ = _photo(base="sky-blue", quality=60)
    dark = rgb.astype(np.float32)
    dark[:, 128:] *= np.linspace(1.0, 0.7, 128)[None, :, None]
    rgb = dark.astype(np.uint8)
    mask = foreground_mask(rgb)
    assert classify_pattern(rgb, mask, dominant_colors(rgb, mask, get_vocabulary()))[0] == "solid"


# Region tools ------------------------------------------------------------------------------------------

def test_label_components_counts_4_connected_regions():
    grid = np.zeros((9, 9), dtype=bool)
    grid[1:3, 1:3] = True  # a square
    grid[5:8, 1] = True  # a bar
    grid[4, 4] = grid[5, 5] = True  # diagonal neighbours are separate
    grid[1:8, 7] = True
    grid[7, 5:8] = True  # an L
    labels, n = label_components(grid)
    assert n == 5
    assert len(np.unique(labels[grid])) == 5 and (labels[~grid] == 0).all()


def test_fill_from_stops_at_walls():
    passable = np.ones((7, 7), dtype=bool)
    passable[:, 3] = False
    seed = np.zeros_like(passable)
    seed[0, 0] = True
    reached = fill_from(seed, passable)
    assert reached[:, :3].all() and not reached[:, 3:].any()

"""A deterministic synthetic product catalogue, drawn with Pillow.

The project may not ship third-party photos, so the demo and the tests search this catalogue instead. Every
product is a flat studio drawing (silhouette, pattern, light outline, soft shadow) whose truth is known
exactly, and the same seed always gives byte-identical images.

Colour rule: each product has a base colour and, for patterned or two-part items, an accent colour. Colours
are *measured* on the drawn front view: a colour is listed when it covers at least `MIN_COLOR_SHARE` of the
product's area, largest first. Designs keep accents well clear of that threshold (stripes, checks, flowers
and dots cover 25-45 %, graphic prints under 12 %), so a graphic print's colour is never listed: a green tee
with a white logo is `("green",)` with pattern `graphic`.
"""

from __future__ import annotations

import io
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from imgsearch_pipeline.vocab import Vocabulary, get_vocabulary

SIZE = 448  # delivered image side
_SS = 2  # drawings are made at twice the size and reduced, which anti-aliases every edge
_S = SIZE * _SS
JPEG_QUALITY = 90
MIN_COLOR_SHARE = 0.15
_ZOOM = 0.92  # shapes are designed on 0.1..0.9 of the canvas; this keeps products at 60-77 % of the frame

# Index values of the drawing layer; a palette turns them into colours at the end.
_BG, _BASE, _ACCENT, _SHADE, _ASHADE = 0, 1, 2, 3, 4

Point = tuple[float, float]
Poly = list[Point]


@dataclass(frozen=True)
class SampleImage:
    key: str  # S3 key: f"catalog/{department}/{category}/{product_id}/{n}.jpg"
    data: bytes  # JPEG bytes
    view: str  # "front" | "back" | "detail"


@dataclass(frozen=True)
class SampleProduct:
    product_id: str
    name: str
    brand: str
    department: str  # men | women | kids | unisex
    category: str  # vocabulary category id
    colors: tuple[str, ...]  # vocabulary colour ids, primary first
    pattern: str  # vocabulary pattern id
    has_print: bool
    images: tuple[SampleImage, ...]


# --------------------------------------------------------------------------------------------------------
# Geometry helpers (unit coordinates: 0..1 of the canvas)


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 14) -> Poly:
    """Points of an elliptic arc from angle a0 to a1 (degrees, y down, inclusive)."""
    return [
        (cx + rx * math.cos(t), cy + ry * math.sin(t))
        for t in (math.radians(a0 + (a1 - a0) * i / n) for i in range(n + 1))
    ]


def _sym(left: Poly) -> Poly:
    """A left-right symmetric outline from its left half, listed top to bottom."""
    return left + [(1 - x, y) for x, y in reversed(left)]


def _mirror(poly: Poly) -> Poly:
    return [(1 - x, y) for x, y in poly]


def _rect(x0: float, y0: float, x1: float, y1: float) -> Poly:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _band(outer: Poly, inner: Poly) -> Poly:
    """The strip between two open curves drawn the same way round (a handle, a strap)."""
    return outer + list(reversed(inner))


# --------------------------------------------------------------------------------------------------------
# The drawing surface


def _to_px(x: float, y: float) -> tuple[float, float]:
    """Unit design coordinates -> supersampled pixels, zoomed about the centre."""
    return (0.5 + (x - 0.5) * _ZOOM) * _S, (0.5 + (y - 0.5) * _ZOOM) * _S


class _Canvas:
    """An index image at supersampled size; fabric parts are filled through their mask from the pattern."""

    def __init__(self, pattern: Image.Image, accent_parts: bool) -> None:
        self.idx = Image.new("L", (_S, _S), _BG)
        self.draw = ImageDraw.Draw(self.idx)
        self.pattern = pattern
        self.part = _ACCENT if accent_parts else _BASE  # value of the "second colour" parts of solid items
        self.chest: tuple[float, float, float] | None = None  # where a graphic print goes: x, y, width

    @staticmethod
    def _px(pts: Iterable[Point]) -> list[tuple[float, float]]:
        return [_to_px(x, y) for x, y in pts]

    def fabric(self, *polys: Poly) -> None:
        """Patterned cloth: the pattern layer pasted through the polygons' mask."""
        mask = Image.new("L", (_S, _S), 0)
        d = ImageDraw.Draw(mask)
        for p in polys:
            d.polygon(self._px(p), fill=255)
        self.idx.paste(self.pattern, mask=mask)

    def fill(self, poly: Poly, value: int = _BASE) -> None:
        self.draw.polygon(self._px(poly), fill=value)

    def disc(self, cx: float, cy: float, r: float, value: int = _SHADE) -> None:
        self.draw.ellipse([*_to_px(cx - r, cy - r), *_to_px(cx + r, cy + r)], fill=value)

    def line(self, pts: Poly, width: float = 0.004, value: int = _SHADE) -> None:
        self.draw.line(self._px(pts), fill=value, width=max(1, round(width * _S)), joint="curve")

    def outline(self, poly: Poly, width: float = 0.004, value: int = _SHADE) -> None:
        self.line([*poly, poly[0]], width, value)


# --------------------------------------------------------------------------------------------------------
# Patterns: full-canvas layers of _BASE with _ACCENT motifs, one per product so every view matches


def _pattern_layer(pattern: str, orient: str, rng: random.Random) -> Image.Image:
    layer = Image.new("L", (_S, _S), _BASE)
    d = ImageDraw.Draw(layer)
    if pattern == "striped":
        period = rng.uniform(0.055, 0.07) * _S
        width = period * 0.45
        k = 0
        while k * period < 2 * _S:
            o = k * period - _S * 0.5
            if orient == "vertical":
                d.rectangle([o, 0, o + width, _S], fill=_ACCENT)
            elif orient == "diagonal":
                d.polygon([(o, 0), (o + width, 0), (o + width - _S, _S), (o - _S, _S)], fill=_ACCENT)
            else:
                d.rectangle([0, o, _S, o + width], fill=_ACCENT)
            k += 1
    elif pattern == "checked":
        period = rng.uniform(0.085, 0.11) * _S
        width = period * 0.25
        k = 0
        while k * period < _S:
            o = k * period
            d.rectangle([o, 0, o + width, _S], fill=_ACCENT)
            d.rectangle([0, o, _S, o + width], fill=_ACCENT)
            k += 1
    elif pattern == "polka-dot":
        step = 0.065 * _S
        r = 0.019 * _S
        for row in range(int(_S / step) + 2):
            shift = step / 2 if row % 2 else 0
            for col in range(int(_S / step) + 2):
                x, y = col * step + shift, row * step
                d.ellipse([x - r, y - r, x + r, y + r], fill=_ACCENT)
    elif pattern == "floral":
        step = 0.11 * _S
        for row in range(int(_S / step) + 2):
            shift = step / 2 if row % 2 else 0
            for col in range(int(_S / step) + 2):
                x = col * step + shift + rng.uniform(-0.15, 0.15) * step
                y = row * step + rng.uniform(-0.15, 0.15) * step
                _flower(d, x, y, step * rng.uniform(0.2, 0.25), rng.uniform(0, 72))
    return layer


def _flower(d: ImageDraw.ImageDraw, x: float, y: float, r: float, turn: float) -> None:
    """Five round petals around a base-coloured heart: reads as a flower even at 128 px."""
    for k in range(5):
        a = math.radians(turn + 72 * k)
        px, py = x + math.cos(a) * r, y + math.sin(a) * r
        d.ellipse([px - r * 0.72, py - r * 0.72, px + r * 0.72, py + r * 0.72], fill=_ACCENT)
    d.ellipse([x - r * 0.38, y - r * 0.38, x + r * 0.38, y + r * 0.38], fill=_BASE)


def _graphic(c: _Canvas, design: int, text: str) -> None:
    """A print block on the chest: badge, slogan or number, in the accent colour."""
    assert c.chest is not None
    x, y, w = c.chest
    if design == 0:  # round badge with a mountain cut out
        r = w * 0.42
        c.disc(x, y, r, _ACCENT)
        c.fill([(x - r * 0.75, y + r * 0.35), (x - r * 0.2, y - r * 0.45), (x + r * 0.1, y),
                (x + r * 0.3, y - r * 0.25), (x + r * 0.75, y + r * 0.35)], _BASE)
        return
    label = text.upper()
    size = round(w * (0.36 if design == 1 else 0.75) * _S)
    font = ImageFont.load_default(size=size)
    width = c.draw.textlength(label, font=font)
    if width > w * _ZOOM * _S:  # shrink long words to the chest width
        size = int(size * w * _ZOOM * _S / width)
        font = ImageFont.load_default(size=size)
    box = c.draw.textbbox((0, 0), label, font=font, stroke_width=max(1, size // 14))
    tw, th = box[2] - box[0], box[3] - box[1]
    px, py = _to_px(x, y)
    c.draw.text((px - tw / 2 - box[0], py - th / 2 - box[1]), label, font=font, fill=_ACCENT,
                stroke_width=max(1, size // 14), stroke_fill=_ACCENT)
    if design == 1:
        half = min(tw / _S / _ZOOM / 2, w * 0.7)
        top = y + th / _S / _ZOOM / 2
        c.fill(_rect(x - half, top + 0.012, x + half, top + 0.026), _ACCENT)


# --------------------------------------------------------------------------------------------------------
# Silhouettes. Each draws one view; `back` drops front-only details (plackets, pockets, openings).


def _tshirt(c: _Canvas, back: bool) -> None:
    left = [(0.42, 0.17), (0.31, 0.20), (0.14, 0.34), (0.20, 0.46), (0.31, 0.40), (0.31, 0.86)]
    c.fabric(_sym(left) + _arc(0.5, 0.17, 0.08, 0.025 if back else 0.07, 0, 180))
    c.line(_arc(0.5, 0.17, 0.08, 0.025 if back else 0.07, 0, 180), 0.006)
    for side in (lambda p: p, _mirror):
        c.line(side([(0.168, 0.324), (0.228, 0.442)]))
        c.line(side([(0.31, 0.40), (0.31, 0.42)]))
    c.line([(0.31, 0.83), (0.69, 0.83)])
    c.chest = (0.5, 0.42, 0.2)


def _long_sleeves(top: float, hem: float) -> Poly:
    return [(0.42, top), (0.30, top + 0.04), (0.21, top + 0.13), (0.13, 0.78), (0.21, 0.80), (0.29, top + 0.24),
            (0.30, top + 0.26), (0.30, hem)]


def _shirt(c: _Canvas, back: bool) -> None:
    body = _long_sleeves(0.15, 0.86)[:-1] + [(0.30, 0.84), (0.36, 0.88), (0.44, 0.90), (0.5, 0.905)]
    c.fabric(_sym(body))
    for side in (lambda p: p, _mirror):
        c.line(side([(0.139, 0.72), (0.218, 0.74)]))
        c.line(side([(0.30, 0.41), (0.30, 0.43)]))
    if back:
        c.fabric(_rect(0.42, 0.13, 0.58, 0.17))
        c.outline(_rect(0.42, 0.13, 0.58, 0.17))
        c.line(_arc(0.5, 0.19, 0.2, 0.05, 180, 360))
        return
    c.fill([(0.42, 0.15), (0.58, 0.15), (0.5, 0.22)], _SHADE)
    for side in (lambda p: p, _mirror):
        wing = side([(0.42, 0.135), (0.5, 0.215), (0.465, 0.275), (0.38, 0.19)])
        c.fabric(wing)
        c.outline(wing)
    c.line([(0.5, 0.22), (0.5, 0.9)])
    for k in range(7):
        c.disc(0.515, 0.29 + k * 0.09, 0.008)
    c.outline(_rect(0.56, 0.32, 0.645, 0.42))


def _top(c: _Canvas, back: bool) -> None:
    left = [(0.43, 0.14), (0.38, 0.14), (0.36, 0.24), (0.33, 0.31), (0.30, 0.35), (0.31, 0.55), (0.28, 0.83),
            (0.5, 0.84)]
    neck = _arc(0.5, 0.14, 0.07, 0.06 if back else 0.16, 0, 180)
    c.fabric(_sym(left) + neck)
    c.line(neck, 0.006)
    c.line([(0.29, 0.80), (0.71, 0.80)])
    c.chest = (0.5, 0.52, 0.18)


def _sweatshirt(c: _Canvas, back: bool) -> None:
    hood = _arc(0.5, 0.22, 0.125, 0.15, 0, 360, 28)
    c.fabric(hood)
    c.outline(hood)
    if not back:
        opening = _arc(0.5, 0.21, 0.08, 0.11, 0, 360, 24)
        c.fill(opening, _SHADE)
    body = _long_sleeves(0.25, 0.88)
    c.fabric(_sym(body) + _arc(0.5, 0.25, 0.08, 0.035, 0, 180))
    c.line(_arc(0.5, 0.25, 0.08, 0.035, 0, 180))
    for side in (lambda p: p, _mirror):
        c.line(side([(0.138, 0.73), (0.22, 0.75)]))
    c.line([(0.30, 0.83), (0.70, 0.83)])
    if back:
        c.line([(0.5, 0.08), (0.5, 0.3)])
    else:
        c.line([(0.46, 0.29), (0.455, 0.42)], 0.006)
        c.line([(0.54, 0.29), (0.545, 0.42)], 0.006)
        c.outline([(0.37, 0.62), (0.63, 0.62), (0.67, 0.80), (0.33, 0.80)])
    c.chest = (0.5, 0.49, 0.17)


def _sweater(c: _Canvas, back: bool) -> None:
    body = _long_sleeves(0.17, 0.88)
    c.fabric(_sym(body) + _arc(0.5, 0.17, 0.08, 0.03 if back else 0.06, 0, 180))
    c.line(_arc(0.5, 0.17, 0.08, 0.03 if back else 0.06, 0, 180))
    c.line(_arc(0.5, 0.17, 0.10, 0.05 if back else 0.08, 0, 180))
    c.line([(0.30, 0.81), (0.70, 0.81)])
    for k in range(27):
        x = 0.31 + k * 0.0146
        c.line([(x, 0.82), (x, 0.875)], 0.003)
    for side in (lambda p: p, _mirror):
        c.line(side([(0.140, 0.71), (0.22, 0.73)]))
        for k in range(5):
            c.line(side([(0.145 + k * 0.015, 0.72), (0.14 + k * 0.015, 0.775)]), 0.003)
    if not back:
        for x in (0.40, 0.5, 0.60):
            c.line([(x + 0.012 * math.sin(t * 1.2), 0.27 + t * 0.02) for t in range(27)], 0.005)


def _jacket(c: _Canvas, back: bool) -> None:
    body = _long_sleeves(0.15, 0.87)
    c.fabric(_sym(body))
    for side in (lambda p: p, _mirror):
        c.line(side([(0.139, 0.72), (0.218, 0.74)]))
        c.line(side([(0.30, 0.41), (0.30, 0.43)]))
    if back:
        c.line([(0.5, 0.3), (0.5, 0.87)])
        c.line(_arc(0.5, 0.15, 0.08, 0.03, 0, 180), 0.006)
        return
    c.fill([(0.42, 0.15), (0.58, 0.15), (0.5, 0.52)], _SHADE)
    for side in (lambda p: p, _mirror):
        lapel = side([(0.42, 0.145), (0.36, 0.27), (0.42, 0.30), (0.5, 0.52), (0.45, 0.29)])
        c.fabric(lapel)
        c.outline(lapel)
        c.line(side([(0.34, 0.66), (0.44, 0.66)]), 0.006)
    c.line([(0.5, 0.52), (0.5, 0.87)])
    c.disc(0.52, 0.58, 0.009)
    c.disc(0.52, 0.68, 0.009)
    c.line([(0.57, 0.39), (0.65, 0.39)], 0.006)


def _kurta(c: _Canvas, back: bool) -> None:
    left = [(0.44, 0.10), (0.33, 0.13), (0.25, 0.22), (0.17, 0.58), (0.25, 0.60), (0.31, 0.34), (0.32, 0.36),
            (0.31, 0.70), (0.28, 0.93), (0.5, 0.93)]
    c.fabric(_sym(left))
    c.fabric(_rect(0.44, 0.08, 0.56, 0.115))
    c.outline(_rect(0.44, 0.08, 0.56, 0.115))
    for side in (lambda p: p, _mirror):
        c.line(side([(0.31, 0.70), (0.30, 0.93)]), 0.006)
        c.line(side([(0.172, 0.55), (0.252, 0.57)]))
    c.line([(0.28, 0.91), (0.72, 0.91)])
    if not back:
        c.line([(0.5, 0.115), (0.5, 0.30)], 0.006)
        for k in range(3):
            c.disc(0.515, 0.15 + k * 0.05, 0.007)


def _dress(c: _Canvas, back: bool) -> None:
    left = [(0.43, 0.10), (0.39, 0.10), (0.37, 0.19), (0.34, 0.24), (0.36, 0.36), (0.37, 0.42), (0.30, 0.60),
            (0.20, 0.88), (0.35, 0.905), (0.5, 0.91)]
    neck = _arc(0.5, 0.10, 0.07, 0.05 if back else 0.13, 0, 180)
    c.fabric(_sym(left) + neck)
    c.line(neck, 0.006)
    c.line(_arc(0.5, 0.40, 0.13, 0.02, 20, 160))
    for x0, x1 in ((0.44, 0.38), (0.5, 0.5), (0.56, 0.62)):
        c.line([(x0, 0.50), (x1, 0.85)], 0.003)


def _skirt(c: _Canvas, back: bool) -> None:
    c.fabric(_sym([(0.35, 0.21), (0.20, 0.80), (0.35, 0.82), (0.5, 0.825)]))
    c.fabric(_rect(0.345, 0.15, 0.655, 0.21))
    c.outline(_rect(0.345, 0.15, 0.655, 0.21))
    for x0, x1 in ((0.42, 0.34), (0.5, 0.5), (0.58, 0.66)):
        c.line([(x0, 0.25), (x1, 0.78)], 0.003)
    if not back:
        c.disc(0.62, 0.18, 0.008)


def _legs(c: _Canvas, hem: float, ankle_in: float, ankle_out: float, crotch: float) -> None:
    c.fabric(_sym([(0.32, 0.10), (0.31, 0.20), (0.29, 0.40), (ankle_out, hem), (ankle_in, hem), (0.5, crotch)]))
    c.line([(0.32, 0.14), (0.68, 0.14)])
    c.line([(0.5, 0.14), (0.5, crotch - 0.02)])


def _jeans(c: _Canvas, back: bool) -> None:
    _legs(c, 0.91, 0.47, 0.32, 0.38)
    for side in (lambda p: p, _mirror):
        c.fill(side(_rect(0.355, 0.095, 0.365, 0.15)), _SHADE)
        c.line(side([(0.312, 0.875), (0.47, 0.875)]), 0.003)
        if back:
            c.outline(side([(0.34, 0.22), (0.45, 0.21), (0.45, 0.32), (0.395, 0.35), (0.34, 0.32)]))
        else:
            c.line(side(_arc(0.31, 0.14, 0.07, 0.08, 0, 90, 8)))
            c.disc(*side([(0.38, 0.15)])[0], 0.005)
    if not back:
        c.line([(0.545, 0.14), (0.545, 0.29), (0.53, 0.32), (0.505, 0.33)], 0.003)
        c.disc(0.5, 0.12, 0.008)


def _trousers(c: _Canvas, back: bool) -> None:
    _legs(c, 0.92, 0.475, 0.29, 0.37)
    for side in (lambda p: p, _mirror):
        c.line(side([(0.395, 0.16), (0.39, 0.91)]), 0.003)
        c.fill(side(_rect(0.355, 0.095, 0.365, 0.15)), _SHADE)
        c.line(side([(0.32, 0.15), (0.35, 0.26)]) if not back else side([(0.36, 0.22), (0.45, 0.22)]))
    c.disc(0.5, 0.12, 0.008)


def _shorts(c: _Canvas, back: bool) -> None:
    c.fabric(_sym([(0.30, 0.18), (0.29, 0.30), (0.24, 0.76), (0.47, 0.78), (0.5, 0.50)]))
    c.line([(0.30, 0.23), (0.70, 0.23)])
    c.line([(0.5, 0.23), (0.5, 0.48)])
    for side in (lambda p: p, _mirror):
        c.line(side([(0.245, 0.73), (0.47, 0.745)]), 0.003)
        c.line(side([(0.30, 0.24), (0.34, 0.36)]) if not back else side([(0.34, 0.30), (0.45, 0.30)]))
        c.fill(side(_rect(0.355, 0.175, 0.365, 0.235)), _SHADE)


def _sole_ink(c: _Canvas) -> int:
    return _SHADE if c.part == _BASE else _ASHADE


def _sports_shoes(c: _Canvas, back: bool) -> None:
    upper = [(0.115, 0.62), (0.13, 0.56), (0.19, 0.51), (0.30, 0.48), (0.42, 0.43), (0.50, 0.37), (0.54, 0.30),
             (0.57, 0.26), (0.615, 0.26), (0.635, 0.31), (0.68, 0.35), (0.74, 0.355), (0.79, 0.31), (0.84, 0.305),
             (0.87, 0.37), (0.885, 0.50), (0.885, 0.61)]
    c.fabric(upper)
    sole = [(0.11, 0.60), (0.30, 0.615), (0.60, 0.615), (0.89, 0.595), (0.905, 0.66), (0.875, 0.71), (0.60, 0.72),
            (0.30, 0.72), (0.16, 0.71), (0.115, 0.685), (0.10, 0.635)]
    c.fill(sole, c.part)
    c.outline(sole, 0.004, _sole_ink(c))
    c.line([(0.13, 0.68), (0.30, 0.69), (0.60, 0.69), (0.88, 0.675)], 0.004, _sole_ink(c))
    for k in range(9):
        x = 0.18 + k * 0.08
        c.line([(x, 0.70), (x + 0.03, 0.715)], 0.004, _sole_ink(c))
    c.line([(0.36, 0.58), (0.52, 0.555), (0.68, 0.49), (0.83, 0.40)], 0.014)
    c.line([(0.115, 0.58), (0.17, 0.53), (0.26, 0.50), (0.33, 0.485)], 0.004)
    c.line([(0.79, 0.31), (0.80, 0.45), (0.885, 0.50)], 0.004)
    for k in range(5):
        x, y = 0.445 + k * 0.028, 0.43 - k * 0.035
        c.line([(x - 0.02, y - 0.01), (x + 0.02, y + 0.02)], 0.007)
        c.disc(x + 0.024, y + 0.024, 0.006)


def _casual_shoes(c: _Canvas, back: bool) -> None:
    upper = [(0.12, 0.66), (0.13, 0.59), (0.18, 0.535), (0.28, 0.50), (0.42, 0.47), (0.55, 0.45), (0.64, 0.465),
             (0.74, 0.47), (0.82, 0.45), (0.86, 0.425), (0.885, 0.50), (0.885, 0.65)]
    c.fabric(upper)
    c.fill([(0.55, 0.45), (0.64, 0.465), (0.74, 0.47), (0.82, 0.45), (0.86, 0.425), (0.865, 0.45), (0.82, 0.475),
            (0.74, 0.495), (0.64, 0.49), (0.56, 0.475)], _SHADE)
    sole = [(0.11, 0.655), (0.885, 0.64), (0.895, 0.71), (0.76, 0.715), (0.74, 0.69), (0.22, 0.695), (0.13, 0.69)]
    c.fill(sole, c.part)
    c.outline(sole, 0.004, _sole_ink(c))
    c.line(_arc(0.47, 0.535, 0.20, 0.06, 90, 270, 14), 0.005)
    strap = [(0.45, 0.47), (0.57, 0.455), (0.585, 0.52), (0.46, 0.54)]
    c.fabric(strap)
    c.outline(strap)
    c.fill(_rect(0.495, 0.48, 0.54, 0.505), _SHADE)


def _formal_shoes(c: _Canvas, back: bool) -> None:
    upper = [(0.10, 0.63), (0.11, 0.585), (0.17, 0.545), (0.30, 0.50), (0.44, 0.455), (0.52, 0.425), (0.60, 0.40),
             (0.68, 0.41), (0.76, 0.42), (0.83, 0.385), (0.875, 0.44), (0.885, 0.63)]
    c.fabric(upper)
    c.fill([(0.10, 0.625), (0.74, 0.625), (0.70, 0.655), (0.20, 0.66), (0.10, 0.65)])
    c.fill([(0.73, 0.625), (0.885, 0.625), (0.88, 0.715), (0.755, 0.715)])
    c.line([(0.10, 0.625), (0.885, 0.625)], 0.004)
    c.line([(0.28, 0.505), (0.30, 0.56), (0.27, 0.625)], 0.004)
    c.line([(0.47, 0.445), (0.58, 0.50), (0.76, 0.42)], 0.004)
    for k in range(4):
        c.line([(0.52 + k * 0.028, 0.43 - k * 0.008), (0.535 + k * 0.028, 0.47)], 0.006)


def _heels(c: _Canvas, back: bool) -> None:
    shoe = [(0.11, 0.72), (0.13, 0.66), (0.20, 0.62), (0.30, 0.595), (0.40, 0.59), (0.47, 0.605), (0.56, 0.59),
            (0.65, 0.53), (0.72, 0.45), (0.77, 0.37), (0.80, 0.31), (0.845, 0.30), (0.86, 0.36), (0.855, 0.46),
            (0.845, 0.52), (0.835, 0.60), (0.822, 0.88), (0.80, 0.88), (0.795, 0.62), (0.78, 0.575), (0.70, 0.575),
            (0.60, 0.62), (0.48, 0.69), (0.36, 0.74), (0.24, 0.765), (0.15, 0.76)]
    c.fabric(shoe)
    top = [(0.47, 0.605), (0.56, 0.59), (0.65, 0.53), (0.72, 0.45), (0.77, 0.37), (0.80, 0.31), (0.845, 0.30)]
    c.fill(top + [(x - 0.004, y + 0.03) for x, y in reversed(top)], _SHADE)
    c.line([(0.78, 0.575), (0.845, 0.53)], 0.004)
    c.fill(_rect(0.797, 0.86, 0.824, 0.885), _SHADE)


def _sandals(c: _Canvas, back: bool) -> None:
    c.fill([(0.12, 0.67), (0.20, 0.63), (0.86, 0.61), (0.885, 0.65), (0.86, 0.71), (0.16, 0.73)], c.part)
    c.line([(0.14, 0.685), (0.87, 0.665)], 0.004, _sole_ink(c))
    c.fabric(_band(_arc(0.31, 0.645, 0.13, 0.14, 180, 360), _arc(0.31, 0.645, 0.10, 0.105, 180, 360)))
    c.fabric(_band(_arc(0.53, 0.63, 0.09, 0.19, 180, 360), _arc(0.53, 0.63, 0.06, 0.15, 180, 360)))
    c.fabric(_rect(0.80, 0.34, 0.85, 0.62))
    ring = _band(_arc(0.70, 0.40, 0.15, 0.07, 160, 390, 20), _arc(0.70, 0.40, 0.12, 0.045, 160, 390, 20))
    c.fabric(ring)
    c.fill(_rect(0.55, 0.41, 0.59, 0.46), _SHADE)


def _flip_flops(c: _Canvas, back: bool) -> None:
    for cx, turn in ((0.36, -6), (0.64, 6)):
        sole = [(cx + 0.11 * math.cos(t) * (0.8 + 0.2 * math.sin(t)) * (1 - 0.15 * (1 + math.sin(t)) / 2),
                 0.5 + 0.37 * math.sin(t)) for t in (2 * math.pi * k / 40 for k in range(40))]
        ang = math.radians(turn)
        sole = [(cx + (x - cx) * math.cos(ang) - (y - 0.5) * math.sin(ang),
                 0.5 + (x - cx) * math.sin(ang) + (y - 0.5) * math.cos(ang)) for x, y in sole]
        c.fabric(sole)
        c.outline(sole)
        post = (cx + 0.02 * math.sin(-ang) * 10, 0.27)
        for end in ((cx - 0.095, 0.50), (cx + 0.095, 0.48)):
            c.line([post, end], 0.026, _SHADE)
        c.disc(*post, 0.014, _sole_ink(c))


def _handbag(c: _Canvas, back: bool) -> None:
    c.fabric(_band(_arc(0.5, 0.42, 0.15, 0.26, 180, 360), _arc(0.5, 0.42, 0.12, 0.22, 180, 360)))
    body = [(0.25, 0.40), (0.75, 0.40), (0.82, 0.82), (0.78, 0.85), (0.22, 0.85), (0.18, 0.82)]
    c.fabric(body)
    flap = [(0.25, 0.40), (0.75, 0.40), (0.765, 0.58), (0.5, 0.66), (0.235, 0.58)]
    c.fill(flap, c.part)
    c.outline(flap)
    if not back:
        c.fill(_rect(0.48, 0.62, 0.52, 0.67), _SHADE)
    c.line([(0.24, 0.46), (0.76, 0.46)], 0.003)


def _backpack(c: _Canvas, back: bool) -> None:
    c.fabric(_band(_arc(0.5, 0.17, 0.06, 0.07, 180, 360), _arc(0.5, 0.17, 0.035, 0.045, 180, 360)))
    body = _arc(0.5, 0.33, 0.23, 0.17, 180, 360) + [(0.74, 0.86), (0.26, 0.86)]
    if not back:
        for side in (lambda p: p, _mirror):
            c.fabric(side([(0.28, 0.30), (0.22, 0.34), (0.20, 0.78), (0.25, 0.80)]))
    c.fabric(body)
    c.outline(body)
    if back:
        for side in (lambda p: p, _mirror):
            strap = side([(0.36, 0.24), (0.44, 0.24), (0.43, 0.80), (0.37, 0.80)])
            c.fill(strap, c.part)
            c.outline(strap)
        return
    c.line(_arc(0.5, 0.40, 0.20, 0.16, 190, 350), 0.006)
    pocket = [(0.31, 0.54), (0.69, 0.54), (0.71, 0.82), (0.29, 0.82)]
    c.fill(pocket, c.part)
    c.outline(pocket)
    c.line([(0.33, 0.59), (0.67, 0.59)], 0.004)
    c.fill(_rect(0.60, 0.575, 0.64, 0.615), _SHADE)


def _clutch(c: _Canvas, back: bool) -> None:
    body = _rect(0.14, 0.34, 0.86, 0.70)
    c.fabric(body)
    flap = [(0.14, 0.34), (0.86, 0.34), (0.5, 0.58)]
    c.fill(flap, c.part)
    c.outline(flap)
    if not back:
        c.disc(0.5, 0.56, 0.015)


def _wallet(c: _Canvas, back: bool) -> None:
    for x0, x1 in ((0.15, 0.5), (0.5, 0.85)):
        panel = _rect(x0, 0.27, x1, 0.73)
        c.fabric(panel)
        c.outline(panel)
        if back:
            continue
        for k in range(4):
            y = 0.36 + k * 0.085
            c.line([(x0 + 0.03, y), (x1 - 0.03, y)], 0.005)
            c.line(_arc((x0 + x1) / 2, y, 0.04, 0.02, 0, 180, 8), 0.003)
    c.line([(0.5, 0.27), (0.5, 0.73)], 0.008)


def _watch(c: _Canvas, back: bool) -> None:
    c.fabric(_rect(0.43, 0.08, 0.57, 0.36))
    c.fabric(_rect(0.43, 0.64, 0.57, 0.92))
    for k in range(4):
        c.disc(0.5, 0.72 + k * 0.045, 0.007)
    c.fill(_rect(0.66, 0.48, 0.695, 0.52), _SHADE)
    c.disc(0.5, 0.5, 0.18, _BASE)
    c.outline(_arc(0.5, 0.5, 0.18, 0.18, 0, 360, 48))
    dial = _ACCENT if c.part == _ACCENT else _BASE
    c.disc(0.5, 0.5, 0.145, dial)
    ink = _ASHADE if dial == _ACCENT else _SHADE
    if back:
        c.outline(_arc(0.5, 0.5, 0.12, 0.12, 0, 360, 40), 0.004, ink)
        return
    for k in range(12):
        a = math.radians(30 * k)
        r0 = 0.105 if k % 3 else 0.09
        cos, sin = math.cos(a), math.sin(a)
        c.line([(0.5 + r0 * cos, 0.5 + r0 * sin), (0.5 + 0.125 * cos, 0.5 + 0.125 * sin)], 0.006, ink)
    c.line([(0.5, 0.5), (0.5, 0.41)], 0.008, ink)
    c.line([(0.5, 0.5), (0.57, 0.55)], 0.006, ink)


def _sunglasses(c: _Canvas, back: bool) -> None:
    lens = [(-0.13, -0.08), (0.13, -0.09), (0.12, 0.03), (0.07, 0.09), (-0.08, 0.09), (-0.125, 0.035)]
    for cx, flip in ((0.345, 1), (0.655, -1)):
        rim = [(cx + flip * x * 1.15, 0.5 + y * 1.25) for x, y in lens]
        glass = [(cx + flip * x, 0.5 + y) for x, y in lens]
        c.fabric(rim)
        c.fill(glass, c.part)
        c.outline(glass, 0.004, _SHADE)
        c.line([(cx + flip * 0.05, 0.45), (cx + flip * 0.09, 0.47)], 0.006, _sole_ink(c))
        hinge = [(0.15, 0.39), (0.19, 0.385), (0.19, 0.415), (0.15, 0.43)]
        c.fabric([(cx - flip * x, y) for x, y in hinge])
    c.fabric(_band(_arc(0.5, 0.47, 0.05, 0.035, 180, 360), _arc(0.5, 0.47, 0.05, 0.015, 180, 360)))


def _belt(c: _Canvas, back: bool) -> None:
    strap = [(0.20, 0.45), (0.84, 0.45), (0.89, 0.50), (0.84, 0.55), (0.20, 0.55)]
    c.fabric(strap)
    c.line([(0.21, 0.458), (0.84, 0.458)], 0.003)
    c.line([(0.21, 0.542), (0.84, 0.542)], 0.003)
    for k in range(5):
        c.disc(0.64 + k * 0.04, 0.5, 0.007)
    c.outline(_rect(0.12, 0.42, 0.21, 0.58), 0.02)
    c.line([(0.12, 0.5), (0.24, 0.5)], 0.01)
    c.fill(_rect(0.26, 0.44, 0.29, 0.56), _SHADE)


def _cap(c: _Canvas, back: bool) -> None:
    side = _mirror if back else (lambda p: p)
    bill = side([(0.34, 0.55), (0.22, 0.575), (0.12, 0.63), (0.11, 0.665), (0.20, 0.69), (0.34, 0.68), (0.46, 0.65)])
    if back:
        c.fabric(bill)
        c.outline(bill)
    dome = side(_arc(0.56, 0.63, 0.28, 0.36, 180, 360, 24) + [(0.70, 0.66), (0.56, 0.665), (0.42, 0.66)])
    c.fabric(dome)
    c.outline(dome)
    for x in (0.40, 0.58, 0.74):
        c.line(side([(0.56, 0.275), ((0.56 + x) / 2 - 0.01, 0.40), (x, 0.64)]), 0.003)
    c.disc(*side([(0.56, 0.275)])[0], 0.016)
    if back:
        c.fill(_mirror(_arc(0.66, 0.665, 0.08, 0.075, 180, 360, 10)), _BG)
        c.fill(_mirror(_rect(0.59, 0.615, 0.73, 0.635)), _SHADE)
        return
    for x, y in ((0.47, 0.40), (0.67, 0.42)):
        c.disc(x, y, 0.006)
    c.fabric(bill)
    c.outline(bill)


def _socks(c: _Canvas, back: bool) -> None:
    sock = [(0.26, 0.10), (0.42, 0.10), (0.42, 0.54), (0.68, 0.58), (0.75, 0.62), (0.76, 0.70), (0.72, 0.76),
            (0.36, 0.78), (0.28, 0.74), (0.25, 0.64)]
    for dx, dy in ((0.12, 0.06), (0.0, 0.0)):
        moved = [(x + dx, y + dy) for x, y in sock]
        c.fabric(moved)
        c.outline(moved)
        c.line([(0.26 + dx, 0.17 + dy), (0.42 + dx, 0.17 + dy)], 0.004)
        for k in range(1, 8):
            c.line([(0.26 + dx + k * 0.02, 0.10 + dy), (0.26 + dx + k * 0.02, 0.17 + dy)], 0.003)
        c.line(_arc(0.34 + dx, 0.66 + dy, 0.07, 0.08, 100, 200, 8), 0.004)


def _scarf(c: _Canvas, back: bool) -> None:
    c.fabric([(0.47, 0.26), (0.61, 0.28), (0.66, 0.84), (0.52, 0.85)])
    c.fabric([(0.36, 0.28), (0.50, 0.26), (0.49, 0.88), (0.35, 0.88)])
    c.outline([(0.36, 0.28), (0.50, 0.26), (0.49, 0.88), (0.35, 0.88)])
    ring = _band(_arc(0.5, 0.26, 0.20, 0.12, 180, 360 + 180, 30), _arc(0.5, 0.26, 0.13, 0.06, 180, 540, 30))
    c.fabric(ring)
    for x0, x1, y in ((0.355, 0.49, 0.88), (0.52, 0.66, 0.85)):
        for k in range(9):
            x = x0 + (x1 - x0) * (k + 0.5) / 9
            c.line([(x, y), (x, y + 0.04)], 0.005, _BASE)


def _tie(c: _Canvas, back: bool) -> None:
    knot = [(0.44, 0.10), (0.56, 0.10), (0.535, 0.20), (0.465, 0.20)]
    blade = [(0.465, 0.20), (0.535, 0.20), (0.60, 0.78), (0.5, 0.89), (0.40, 0.78)]
    c.fabric(blade)
    c.outline(blade)
    c.fabric(knot)
    c.outline(knot)


_DRAW: dict[str, Callable[[_Canvas, bool], None]] = {
    "t-shirt": _tshirt, "shirt": _shirt, "top": _top, "sweater": _sweater, "sweatshirt": _sweatshirt,
    "jacket": _jacket, "kurta": _kurta, "dress": _dress, "skirt": _skirt, "jeans": _jeans, "trousers": _trousers,
    "shorts": _shorts, "casual-shoes": _casual_shoes, "sports-shoes": _sports_shoes, "formal-shoes": _formal_shoes,
    "heels": _heels, "sandals": _sandals, "flip-flops": _flip_flops, "handbag": _handbag, "backpack": _backpack,
    "clutch": _clutch, "wallet": _wallet, "watch": _watch, "sunglasses": _sunglasses, "belt": _belt, "cap": _cap,
    "tie": _tie, "scarf": _scarf, "socks": _socks,
}
CATEGORIES: tuple[str, ...] = tuple(_DRAW)  # the categories this generator can draw

# --------------------------------------------------------------------------------------------------------
# What is plausible: patterns, colours, departments and names per category

_PATTERNS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("solid", "solid", "striped", "graphic", "graphic", "polka-dot", "floral"),
    "shirt": ("solid", "striped", "checked", "checked", "floral", "polka-dot"),
    "top": ("solid", "striped", "floral", "polka-dot", "graphic"),
    "sweater": ("solid", "solid", "striped"),
    "sweatshirt": ("solid", "solid", "graphic", "striped"),
    "jacket": ("solid", "solid", "checked"),
    "kurta": ("solid", "floral", "striped", "polka-dot"),
    "dress": ("solid", "floral", "floral", "polka-dot", "striped", "checked"),
    "skirt": ("solid", "solid", "striped", "checked", "floral", "polka-dot"),
    "jeans": ("solid",),
    "trousers": ("solid", "solid", "checked", "striped"),
    "shorts": ("solid", "solid", "striped", "checked", "floral"),
    "scarf": ("solid", "striped", "checked", "floral", "polka-dot"),
    "tie": ("solid", "striped", "polka-dot", "checked"),
    "socks": ("solid", "striped", "polka-dot"),
}
_STRIPE_ORIENT = {"shirt": "vertical", "kurta": "vertical", "trousers": "vertical", "tie": "diagonal"}
# Items drawn in one material; the second colour, when there is one, is a part (sole, flap, dial, lenses).
# Parts stay well above MIN_COLOR_SHARE (sole 23-34 %, flap 32-41 %, pocket ~27 %, dial ~40 %, lenses ~70 %).
_TWO_PART = {"sports-shoes", "casual-shoes", "sandals", "handbag", "backpack", "clutch", "watch", "sunglasses"}
_COLORS: dict[str, tuple[str, ...]] = {
    "jeans": ("blue", "navy", "sky-blue", "black", "charcoal", "grey"),
    "trousers": ("khaki", "beige", "navy", "black", "grey", "charcoal", "olive", "brown", "off-white"),
    "belt": ("black", "brown", "tan", "maroon", "navy"),
    "wallet": ("black", "brown", "tan", "maroon", "navy", "red"),
    "formal-shoes": ("black", "brown", "tan", "maroon"),
    "watch": ("black", "brown", "tan", "silver", "navy", "grey"),
    "sunglasses": ("black", "brown", "tan", "navy", "maroon", "red", "white", "silver"),
    "casual-shoes": ("black", "brown", "tan", "navy", "beige", "khaki", "olive", "grey", "white"),
}
# Small or thin items (heels, belts, sunglasses...) get no close-up: a crop of them would be mostly background.
_NO_DETAIL = {"heels", "sandals", "flip-flops", "formal-shoes", "sunglasses", "belt", "tie", "cap"}
_WOMEN_ONLY = {"dress", "skirt", "heels", "kurta", "top", "clutch"}
_KIDS = {"t-shirt", "shirt", "sweatshirt", "sweater", "jacket", "jeans", "trousers", "shorts", "sports-shoes",
         "casual-shoes", "sandals", "flip-flops", "backpack", "cap", "socks"}
_ACCESSORY = {"watch", "sunglasses", "wallet", "belt", "backpack", "cap", "socks", "scarf", "flip-flops"}

_NOUNS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("tee", "crew-neck t-shirt", "cotton tee"), "shirt": ("shirt", "button-down shirt", "oxford shirt"),
    "top": ("tank top", "sleeveless top"), "sweater": ("cable-knit sweater", "jumper"),
    "sweatshirt": ("hoodie", "hooded sweatshirt"), "jacket": ("blazer", "jacket"), "kurta": ("kurta", "long kurta"),
    "dress": ("sundress", "midi dress", "dress"), "skirt": ("A-line skirt", "skirt"), "jeans": ("jeans", "slim jeans"),
    "trousers": ("chinos", "trousers"), "shorts": ("shorts", "bermuda shorts"), "casual-shoes": ("loafers",),
    "sports-shoes": ("running shoes", "sneakers"), "formal-shoes": ("oxford shoes",), "heels": ("pumps", "heels"),
    "sandals": ("strappy sandals", "sandals"), "flip-flops": ("flip flops",), "handbag": ("handbag", "top-handle bag"),
    "backpack": ("backpack", "daypack"), "clutch": ("envelope clutch",), "wallet": ("bifold wallet",),
    "watch": ("analog watch",), "sunglasses": ("sunglasses",), "belt": ("belt",), "cap": ("baseball cap",),
    "tie": ("tie",), "scarf": ("scarf",), "socks": ("socks",),
}
_PATTERN_WORD = {"solid": "", "striped": "striped", "checked": "checked", "floral": "floral",
                 "polka-dot": "polka dot", "graphic": "graphic"}
_BRANDS = ("Northwind", "Larkspur", "Fernhollow", "Bluefinch", "Cobbleway", "Marisol", "Tidewater", "Quillon",
           "Haldenmoor", "Ostrava Lane", "Juniper & Pine", "Redrock Supply", "Saltmarsh", "Velmora", "Amberlee",
           "Kestrelby")
_SLOGANS = ("STAY WILD", "GOOD DAYS", "SURF CLUB", "NO.7", "SUNNY", "84", "TRAIL", "ROAM")

# (category, base colour, pattern, accent colour or None)
_MUST_SMALL: tuple[tuple[str, str, str, str | None], ...] = (
    ("t-shirt", "green", "solid", None),
    ("t-shirt", "green", "graphic", "white"),
    ("dress", "white", "floral", "red"),
)
_MUST: tuple[tuple[str, str, str, str | None], ...] = (
    ("t-shirt", "green", "solid", None),
    ("t-shirt", "green", "solid", None),
    ("t-shirt", "green", "solid", None),
    ("t-shirt", "green", "graphic", "white"),
    ("t-shirt", "green", "floral", "yellow"),
    ("t-shirt", "green", "polka-dot", "white"),
    ("dress", "white", "floral", "red"),
    ("dress", "off-white", "floral", "red"),
    ("dress", "red", "floral", "white"),
    ("shirt", "white", "striped", "blue"),
    ("shirt", "pink", "striped", "white"),
    ("shirt", "black", "striped", "white"),
    ("shirt", "red", "checked", "black"),
    ("shirt", "green", "checked", "navy"),
    ("shirt", "white", "checked", "sky-blue"),
)
# With the full list, these categories get a black and a non-black product, and _BLACK_ONLY a black one;
# together with _MUST that fills 40 products, so "black X" and "X" both find something whatever the seed.
_PAIRS = ("t-shirt", "jeans", "sports-shoes", "handbag", "jacket", "backpack", "sweatshirt", "trousers", "heels",
          "watch")
_BLACK_ONLY = ("dress", "sunglasses", "belt", "wallet", "cap")
_FULL_MUST_FROM = 40


# --------------------------------------------------------------------------------------------------------
# Colour arithmetic


def _lab(rgb: Sequence[int]) -> tuple[float, float, float]:
    """CIELAB (D65) of an sRGB triple: used only to pick accents that clearly differ from the base."""
    lin = [(v / 255 / 12.92) if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in rgb]
    x = (0.4124564 * lin[0] + 0.3575761 * lin[1] + 0.1804375 * lin[2]) / 0.95047
    y = 0.2126729 * lin[0] + 0.7151522 * lin[1] + 0.0721750 * lin[2]
    z = (0.0193339 * lin[0] + 0.1191920 * lin[1] + 0.9503041 * lin[2]) / 1.08883
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in (x, y, z))
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def _shade(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Outline and stitching colour: darker for light colours, lighter for near-black ones."""
    if _lab(rgb)[0] < 30:
        return tuple(min(255, v + 55) for v in rgb)  # type: ignore[return-value]
    return tuple(round(v * 0.68) for v in rgb)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------------
# Product planning


@dataclass(frozen=True)
class _Plan:
    category: str
    base: str
    pattern: str
    accent: str | None


class _Planner:
    """Chooses categories, colours and patterns; tracks colour use so the palette is spread evenly."""

    def __init__(self, vocab: Vocabulary, rng: random.Random) -> None:
        self.vocab, self.rng = vocab, rng
        self.used: Counter[str] = Counter()

    def least_used(self, options: Sequence[str]) -> str:
        low = min(self.used[o] for o in options)
        return self.rng.choice([o for o in options if self.used[o] == low])

    def accent_for(self, base: str) -> str:
        lb = _lab(self.vocab.color(base).rgb_tuple)
        fam = self.vocab.family_of(base)
        options = [c.id for c in self.vocab.colors if c.family != fam
                   and math.dist(lb, _lab(c.rgb_tuple)) > 45 and abs(lb[0] - _lab(c.rgb_tuple)[0]) > 18]
        return self.least_used(options)

    def plan(self, category: str, base: str | None = None, pattern: str | None = None) -> _Plan:
        if pattern is None:
            pattern = self.rng.choice(_PATTERNS.get(category, ("solid",)))
        if base is None:
            options = [c for c in _COLORS.get(category, self.vocab.color_ids) if c != "black"]
            base = self.least_used(options)
        accent: str | None = None
        if pattern != "solid" or (category in _TWO_PART and self.rng.random() < 0.35):
            accent = self.accent_for(base)
        self.used[base] += 1
        if accent:
            self.used[accent] += 1
        return _Plan(category, base, pattern, accent)


def _plans(n: int, vocab: Vocabulary, rng: random.Random) -> list[_Plan]:
    """Guaranteed combinations first (so every seed has them), then random products, unseen categories first."""
    planner = _Planner(vocab, rng)
    plans = [_Plan(*m) for m in (_MUST if n >= _FULL_MUST_FROM else _MUST_SMALL)][:n]
    for p in plans:
        planner.used.update(c for c in (p.base, p.accent) if c)
    if n >= _FULL_MUST_FROM:
        plans += [planner.plan(c, "black", "solid") for c in (*_PAIRS, *_BLACK_ONLY)]
        plans += [planner.plan(c) for c in _PAIRS]
        plans = plans[:n]
    # The rest: a non-black one of black-only categories, then unseen categories, then alternately a black one
    # of a category without one and any product at all.
    black = {p.category for p in plans if p.base == "black"}
    other = {p.category for p in plans if p.base != "black"}
    queue = [c for c in CATEGORIES if c in black - other]
    fresh = [c for c in CATEGORIES if c not in black | other]
    rng.shuffle(fresh)
    queue += fresh
    lacking_black = [c for c in fresh + sorted(other - black) if c not in _WOMEN_ONLY or c == "dress"]
    order = list(CATEGORIES)
    rng.shuffle(order)
    k = 0
    while len(plans) < n:
        if queue:
            plans.append(planner.plan(queue.pop(0)))
        elif k % 2 == 0 and lacking_black:
            plans.append(planner.plan(lacking_black.pop(0), "black", "solid"))
        else:
            plans.append(planner.plan(order[k % len(order)]))
        k += 1
    return plans


def _department(category: str, rng: random.Random) -> str:
    if category in _WOMEN_ONLY:
        return "women"
    if category == "tie":
        return "men"
    options = ["men", "women"] * 3 + (["kids"] if category in _KIDS else []) + ["unisex"] * (
        3 if category in _ACCESSORY else 1)
    return rng.choice(options)


# --------------------------------------------------------------------------------------------------------
# Rendering


def _draw_view(plan: _Plan, pattern: Image.Image, graphic: tuple[int, str], back: bool
               ) -> tuple[Image.Image, tuple[float, float] | None]:
    """The index layer of one view, and where its print sits (for the detail crop)."""
    c = _Canvas(pattern, accent_parts=plan.accent is not None and plan.pattern == "solid")
    _DRAW[plan.category](c, back)
    if plan.pattern == "graphic" and c.chest is not None:
        _graphic(c, *graphic)
    mask = c.idx.point([0] + [255] * 255)
    inner = mask.filter(ImageFilter.BoxBlur(2)).point([0] * 255 + [255])  # erosion by 2 px, but fast
    edge = ImageChops.subtract(mask, inner)
    c.idx.paste(_SHADE, mask=edge)
    return c.idx, (c.chest[:2] if c.chest and plan.pattern == "graphic" else None)


def _shares(idx: Image.Image) -> tuple[float, float]:
    hist = idx.histogram()
    total = hist[_BASE] + hist[_ACCENT] or 1
    return hist[_BASE] / total, hist[_ACCENT] / total


def _compose(idx: Image.Image, palette: list[tuple[int, int, int]], bg: tuple[int, int, int]) -> Image.Image:
    """Index layer -> studio photo at supersampled size: palette colours over a background with a soft shadow."""
    lut = palette + [(0, 0, 0)] * (256 - len(palette))
    rgb = Image.merge("RGB", [idx.point([p[ch] for p in lut]) for ch in range(3)])
    mask = idx.point([0] + [255] * 255)
    # The shadow is blurred at 1/8 size: it is soft anyway, and full-size blurs dominate the run time.
    shadow = mask.reduce(8).filter(ImageFilter.GaussianBlur(_S * 0.018 / 8)).resize((_S, _S), Image.Resampling.BILINEAR)
    shadow = ImageChops.offset(shadow.point([round(v * 0.30) for v in range(256)]), round(_S * 0.012), round(_S * 0.02))
    photo = Image.composite(Image.new("RGB", (_S, _S), tuple(round(v * 0.72) for v in bg)),
                            Image.new("RGB", (_S, _S), bg), shadow)
    photo.paste(rgb, mask=mask)
    return photo


def _pose(img: Image.Image, rng: random.Random, bg: tuple[int, int, int]) -> Image.Image:
    """The same product slightly rotated, scaled and shifted, as a second photo of it would be."""
    angle = math.radians(rng.uniform(-6, 6))
    scale = rng.uniform(0.88, 0.98)
    dx, dy = rng.uniform(-0.035, 0.035) * img.width, rng.uniform(-0.035, 0.035) * img.height
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    cx, cy = img.width / 2, img.height / 2
    inverse = (cos, sin, cx - cos * (cx + dx) - sin * (cy + dy), -sin, cos, cy + sin * (cx + dx) - cos * (cy + dy))
    return img.transform(img.size, Image.Transform.AFFINE, inverse, resample=Image.Resampling.BICUBIC, fillcolor=bg)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    return buf.getvalue()


def _focus(idx: Image.Image, rng: random.Random, chest: tuple[float, float] | None, solid: bool) -> tuple[int, int]:
    """Centre of a detail crop: the print; for other patterns a random point well inside the product; for
    solid items the middle of the product, where two-part items show both colours."""
    if chest is not None:
        x, y = _to_px(*chest)
        return round(x), round(y)
    if solid:
        x0, y0, x1, y1 = idx.getbbox() or (0, 0, _S, _S)
        return (x0 + x1) // 2, (y0 + y1) // 2
    inner = idx.point([0] + [255] * 255).reduce(_S // 28).point([0] * 255 + [255])  # cells wholly inside
    bbox = inner.getbbox() or (0, 0, 28, 28)
    for _ in range(40):
        x, y = rng.randrange(bbox[0], bbox[2]), rng.randrange(bbox[1], bbox[3])
        if inner.getpixel((x, y)):
            return (2 * x + 1) * _S // 56, (2 * y + 1) * _S // 56
    return (bbox[0] + bbox[2]) * _S // 56, (bbox[1] + bbox[3]) * _S // 56


def _product(i: int, plan: _Plan, seed: int, vocab: Vocabulary, rng: random.Random) -> SampleProduct:
    brand = rng.choice(_BRANDS)
    department = _department(plan.category, rng)
    orient = _STRIPE_ORIENT.get(plan.category, "horizontal")
    pattern = _pattern_layer(plan.pattern, orient, rng)
    graphic = (rng.randrange(3), rng.choice((brand.split()[0], *_SLOGANS)))
    front, chest = _draw_view(plan, pattern, graphic, back=False)
    base_share, accent_share = _shares(front)
    measured = sorted(((base_share, plan.base), (accent_share, plan.accent or plan.base)), reverse=True)
    colors = tuple(dict.fromkeys(cid for share, cid in measured if share >= MIN_COLOR_SHARE))

    def rgb(cid: str) -> tuple[int, int, int]:
        return tuple(max(0, min(255, v + rng.randint(-3, 3))) for v in vocab.color(cid).rgb_tuple)  # type: ignore

    base_rgb, accent_rgb = rgb(plan.base), rgb(plan.accent or plan.base)
    palette = [(0, 0, 0), base_rgb, accent_rgb, _shade(base_rgb), _shade(accent_rgb)]
    light = min(_lab(base_rgb)[0], _lab(accent_rgb)[0] if plan.accent else 100) > 80 or _lab(base_rgb)[0] > 85
    grey = rng.randint(226, 234) if light else rng.choice((250, 246, 242))
    bg = (grey, grey, grey)
    palette[0] = bg

    product_id = f"sku{seed:03d}{i:04d}"
    prefix = f"catalog/{department}/{plan.category}/{product_id}"
    photos: list[tuple[str, Image.Image]] = []
    front_photo = _compose(front, palette, bg)
    photos.append(("front", front_photo.reduce(_SS)))
    back = _compose(_draw_view(plan, pattern, graphic, back=True)[0], palette, bg).reduce(_SS)
    photos.append(("back", _pose(back, rng, bg)))
    if plan.category in _NO_DETAIL:
        n_details = 0
    elif plan.pattern in ("solid", "graphic"):
        n_details = rng.choice((0, 1))  # one crop: the middle of the item or the print
    else:
        n_details = rng.choice((0, 1, 1, 2))
    half = SIZE // 2  # a crop of the supersampled photo: a 2x close-up at full detail
    for k in range(n_details):
        x, y = _focus(front, rng, chest if k == 0 else None, plan.pattern == "solid")
        x, y = min(max(x, half), _S - half), min(max(y, half), _S - half)
        photos.append(("detail", front_photo.crop((x - half, y - half, x + half, y + half))))
    images = tuple(
        SampleImage(key=f"{prefix}/{n}.jpg", data=_jpeg(img), view=view)
        for n, (view, img) in enumerate(photos, start=1)
    )
    words = " and ".join(vocab.color(cid).label.lower() for cid in colors)
    noun = rng.choice(_NOUNS[plan.category])
    name = " ".join(w for w in (brand, words, _PATTERN_WORD[plan.pattern], noun) if w)
    return SampleProduct(
        product_id=product_id, name=name, brand=brand, department=department, category=plan.category,
        colors=colors, pattern=plan.pattern, has_print=vocab.pattern(plan.pattern).has_print, images=images,
    )


def generate_catalog(n_products: int = 60, seed: int = 7) -> list[SampleProduct]:
    """A seeded catalogue: guaranteed must-have products (shuffled in), the rest random but reproducible."""
    vocab = get_vocabulary()
    rng = random.Random(seed)
    plans = _plans(n_products, vocab, rng)
    rng.shuffle(plans)
    return [_product(i, plan, seed, vocab, random.Random(f"{seed}:{i}")) for i, plan in enumerate(plans, start=1)]


def feed_jsonl(products: Iterable[SampleProduct]) -> bytes:
    """The shop's catalogue feed: what a merchant knows, nothing the pipeline should learn from pixels."""
    label = {c.id: c.label for c in get_vocabulary().categories}
    lines = [
        json.dumps({"product_id": p.product_id, "name": p.name, "brand": p.brand, "department": p.department,
                    "shop_category": label[p.category], "image_keys": [im.key for im in p.images]})
        for p in products
    ]
    return ("\n".join(lines) + "\n").encode()


def truth_jsonl(products: Iterable[SampleProduct]) -> bytes:
    """Ground truth per image, for measuring what the analysis gets right."""
    lines = [
        json.dumps({"key": im.key, "product_id": p.product_id, "category": p.category, "colors": list(p.colors),
                    "pattern": p.pattern, "has_print": p.has_print})
        for p in products for im in p.images
    ]
    return ("\n".join(lines) + "\n").encode()

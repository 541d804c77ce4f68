"""Colour from pixels: separate the product from the studio background, then name its colours.

Pixels are the only reliable colour source of the offline provider (image embeddings confuse shades), and
isolating the product is where colour accuracy is won: background, shadows and a model's other garments
must not vote. Everything works on a downscaled copy, which is fast and averages out JPEG noise.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image

from imgsearch_pipeline.analysis.types import ColorShare
from imgsearch_pipeline.vocab import Vocabulary

WORK_SIDE = 128  # longest side of the working copy: enough for stripes, cheap enough for < 10 ms

# Background separation (Lab units, working pixels). Measured on Myntra photos and synthetic catalogues.
_BORDER = 2  # width of the frame the background is estimated from
_TIGHT = 1.5  # floor of "is background" (3 x the frame's noise when larger): a white shirt is a few units off
_SHADOW_DIST = 14.0  # how much darker than the background a shadow may be
_SHADOW_GRAD = 1.5  # steepest step inside a soft shadow; a product's outline is steeper
_RIM = 3  # shadow band and JPEG colour bleeding (background lightness, other chroma) beside the product
_SEAL = 2  # outline gaps up to twice this wide are closed before the flood
_RING_DIST = 8.0  # a pocket's surroundings count as product when this far from the background colour
_RING_SHARE = 0.6  # ... for at least this share of the ring

# Naming. Product photos compress the palette: blacks read as dark grey, whites as light grey, fabric
# duller than its nominal colour. Fitted on Myntra photos (a separate split from the reported one).
_APPEAR_L = (50.0, 0.7)  # lightness pulled towards 50 by this factor
_APPEAR_C = 0.55  # chroma scaled by this factor
_KL = 2.0  # CIEDE2000 lightness weight of textile practice: shading moves lightness more than hue
_LUT_STEP = 8  # sRGB quantisation of the naming table: 33^3 entries, finer than JPEG noise
_SPREAD = 0.2  # centre weighting: Gaussian sigma as a share of the image side

_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_D65 = np.array([0.95047, 1.0, 1.08883])
_XYZ_FROM_LINEAR = (_RGB_TO_XYZ / _D65[:, None]).T.astype(np.float32)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in 0..255, any leading shape: distances there follow perception."""
    c = np.asarray(rgb, dtype=np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _XYZ_FROM_LINEAR
    f = np.where(xyz > 0.008856, np.cbrt(np.maximum(xyz, 0.0)), xyz * 7.787 + 16.0 / 116.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray, kl: float = 1.0) -> np.ndarray:
    """CIEDE2000 colour difference (`kl` is the parametric lightness weight), broadcasting over leading axes.

    Plain Lab distance overstates chroma differences of saturated colours and understates them in blues;
    naming a shade needs the corrected metric more than speed (it runs on a lookup table, not per pixel).
    """
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=np.float64), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=np.float64), -1, 0)
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dLp, dCp = L2 - L1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dHp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    Lp, Cp = (L1 + L2) / 2, (c1p + c2p) / 2
    hsum = h1p + h2p
    hp = np.where(np.abs(h1p - h2p) > 180, np.where(hsum < 360, hsum + 360, hsum - 360), hsum) / 2
    hp = np.where(c1p * c2p == 0, hsum, hp)
    t = (1 - 0.17 * np.cos(np.radians(hp - 30)) + 0.24 * np.cos(np.radians(2 * hp))
         + 0.32 * np.cos(np.radians(3 * hp + 6)) - 0.20 * np.cos(np.radians(4 * hp - 63)))
    sl = 1 + 0.015 * (Lp - 50) ** 2 / np.sqrt(20 + (Lp - 50) ** 2)
    sc, sh = 1 + 0.045 * Cp, 1 + 0.015 * Cp * t
    rt = (-2 * np.sqrt(Cp**7 / (Cp**7 + 25.0**7))
          * np.sin(np.radians(60 * np.exp(-(((hp - 275) / 25) ** 2)))))
    sl = sl * kl
    return np.sqrt((dLp / sl) ** 2 + (dCp / sc) ** 2 + (dHp / sh) ** 2 + rt * (dCp / sc) * (dHp / sh))


# Working copy -----------------------------------------------------------------------------------------

def _factor(shape: tuple[int, ...]) -> int:
    return max(1, -(-max(shape[:2]) // WORK_SIDE))


def downscale(rgb: np.ndarray) -> np.ndarray:
    """Block mean to at most WORK_SIDE pixels a side (float32): averaging suppresses JPEG noise and dither."""
    f = _factor(rgb.shape)
    h, w = rgb.shape[0] // f, rgb.shape[1] // f
    block = rgb[: h * f, : w * f, :3]
    if block.dtype == np.uint8:  # Pillow's box reduction is ~10x faster than a numpy reshape-mean
        return np.asarray(Image.fromarray(np.ascontiguousarray(block)).reduce(f), dtype=np.float32)
    return block.reshape(h, f, w, f, 3).mean(axis=(1, 3), dtype=np.float32)


def downscale_mask(mask: np.ndarray) -> np.ndarray:
    f = _factor(mask.shape)
    h, w = mask.shape[0] // f, mask.shape[1] // f
    block = np.ascontiguousarray(mask[: h * f, : w * f], dtype=np.uint8) * np.uint8(255)
    return np.asarray(Image.fromarray(block).reduce(f)) >= 128


def _upscale_mask(small: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    f = _factor(shape)
    rows = np.minimum(np.arange(shape[0]) // f, small.shape[0] - 1)
    cols = np.minimum(np.arange(shape[1]) // f, small.shape[1] - 1)
    return small[np.ix_(rows, cols)]


def gradient(lab: np.ndarray) -> np.ndarray:
    """Largest Lab step to a 4-neighbour: high on edges and fine texture, low on flat colour and shading."""
    dx = np.linalg.norm(np.diff(lab, axis=1), axis=-1)
    dy = np.linalg.norm(np.diff(lab, axis=0), axis=-1)
    g = np.zeros(lab.shape[:2], dtype=np.float32)
    g[:, 1:] = dx
    g[:, :-1] = np.maximum(g[:, :-1], dx)
    g[1:] = np.maximum(g[1:], dy)
    g[:-1] = np.maximum(g[:-1], dy)
    return g


# Region tools (numpy only: flood fill and connected components through runs) ------------------------

def _runs(passable: np.ndarray) -> tuple[np.ndarray, int]:
    """Id (1..n) of the horizontal run of True pixels each pixel belongs to, 0 elsewhere."""
    h, w = passable.shape
    padded = np.zeros((h, w + 1), dtype=bool)
    padded[:, :w] = passable
    flat = padded.ravel()
    starts = flat.copy()
    starts[1:] &= ~flat[:-1]
    ids = np.cumsum(starts) * flat
    return ids.reshape(h, w + 1)[:, :w], int(starts.sum())


def fill_from(seed: np.ndarray, passable: np.ndarray, max_rounds: int = 64) -> np.ndarray:
    """Pixels of `passable` 4-connected to `seed`: whole runs are filled per step, so few steps suffice."""
    row_ids, n_rows = _runs(passable)
    col_ids, n_cols = _runs(passable.T)
    col_ids = col_ids.T
    reached = seed & passable
    count = -1
    for _ in range(max_rounds):
        hit = np.bincount(row_ids[reached], minlength=n_rows + 1) > 0
        hit[0] = False
        reached = hit[row_ids]
        hit = np.bincount(col_ids[reached], minlength=n_cols + 1) > 0
        hit[0] = False
        reached = hit[col_ids]
        new = int(reached.sum())
        if new == count:
            break
        count = new
    return reached


def label_components(binary: np.ndarray, max_rounds: int = 64) -> tuple[np.ndarray, int]:
    """4-connected components (labels 1..n, 0 = off): the smallest run id spreads along rows and columns."""
    row_ids, n_rows = _runs(binary)
    if n_rows == 0:
        return np.zeros(binary.shape, dtype=np.int32), 0
    col_ids, n_cols = _runs(binary.T)
    col_ids = col_ids.T
    big = n_rows + 1
    labels = np.where(binary, row_ids, big)
    on = binary
    for _ in range(max_rounds):
        before = labels
        for ids, n in ((col_ids, n_cols), (row_ids, n_rows)):
            best = np.full(n + 1, big, dtype=labels.dtype)
            np.minimum.at(best, ids[on], labels[on])
            labels = np.where(on, best[ids], big)
        if np.array_equal(labels, before):
            break
    _, dense = np.unique(labels[on], return_inverse=True)
    out = np.zeros(binary.shape, dtype=np.int32)
    out[on] = dense + 1
    return out, int(dense.max()) + 1 if dense.size else 0


# Background ----------------------------------------------------------------------------------------------

def _background_models(lab: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Candidate backgrounds fitted on the image frame: (colour at every pixel, noise, frame inliers).

    A quadratic surface per channel covers flat, vignetted and gradient studio backgrounds; refitting on
    inliers ignores the parts of the product (legs, straps) that touch the frame. When the product fills
    much of the frame (a close-up) the majority of the frame may be product, so the rest of the frame is
    offered as a second candidate.
    """
    h, w = lab.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / max(h - 1, 1) * 2 - 1, xx / max(w - 1, 1) * 2 - 1
    frame = np.zeros((h, w), dtype=bool)
    b = _BORDER
    frame[:b], frame[-b:], frame[:, :b], frame[:, -b:] = True, True, True, True
    design = np.stack([np.ones_like(xx), xx, yy, xx * yy, xx * xx, yy * yy], axis=-1)
    samples, basis = lab[frame], design[frame]
    out = []
    pool = np.ones(len(samples), dtype=bool)
    while len(out) < 2 and pool.sum() >= 0.25 * len(samples):
        spread = np.linalg.norm(samples - np.median(samples[pool], axis=0), axis=-1)
        inliers = pool & (spread <= max(6.0, 2.0 * float(np.median(spread[pool]))))
        model, noise = np.broadcast_to(np.median(samples[pool], axis=0), lab.shape), 2.0
        for _ in range(2):
            if inliers.sum() < basis.shape[1] * 4:
                break
            coef, *_ = np.linalg.lstsq(basis[inliers], samples[inliers], rcond=None)
            resid = np.linalg.norm(samples - basis @ coef, axis=-1)
            noise = 1.4826 * float(np.median(resid[inliers]))
            model = design @ coef
            inliers = pool & (resid <= max(4.0, 3.5 * noise))
        seeds = np.zeros((h, w), dtype=bool)
        seeds[frame] = inliers
        out.append((model.astype(np.float32), max(noise, 0.5), seeds))
        pool &= ~inliers
    return out


def _centre_region(shape: tuple[int, ...], radius: float = 0.29) -> np.ndarray:
    """An ellipse around the picture's centre, `radius` of the height and width."""
    h, w = shape[:2]
    yy, xx = np.ogrid[0:h, 0:w]
    return ((yy - (h - 1) / 2) / (h * radius)) ** 2 + ((xx - (w - 1) / 2) / (w * radius)) ** 2 <= 1


def _grow(region: np.ndarray) -> np.ndarray:
    grown = region.copy()
    grown[1:] |= region[:-1]
    grown[:-1] |= region[1:]
    grown[:, 1:] |= region[:, :-1]
    grown[:, :-1] |= region[:, 1:]
    return grown


def _spread_labels(labels: np.ndarray) -> np.ndarray:
    """Each pixel takes the largest label among itself and its 4-neighbours (a one-pixel label dilation)."""
    out = labels.copy()
    np.maximum(out[1:], labels[:-1], out=out[1:])
    np.maximum(out[:-1], labels[1:], out=out[:-1])
    np.maximum(out[:, 1:], labels[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], labels[:, 1:], out=out[:, :-1])
    return out


def foreground_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask (same height and width as `rgb`) of the product, separated from the studio background.

    The background is what is reachable from the frame through pixels within noise of the fitted
    background colour, so a white shirt on white stops the flood at its first step in lightness. Shadows
    are then added where they fade in smoothly (darker, same hue, no edge); enclosed pockets that are exactly
    background (between arm and body) are dropped. Shop photos centre the product, so a candidate background
    that swallows the centre is replaced by the frame's other colour when there is one. Never empty: when
    nothing stands out the centre of the picture is taken as the product.
    """
    small = downscale(np.asarray(rgb))
    lab = srgb_to_lab(small)
    grad = gradient(lab)
    centre = _centre_region(lab.shape, 0.12)
    candidates = [~_background(lab, grad, *model) for model in _background_models(lab)]
    fg = next((c for c in candidates if c[centre].mean() >= 0.4), candidates[0])
    if fg.sum() < 0.01 * fg.size:
        fg = _centre_region(lab.shape)
    return _upscale_mask(fg, np.asarray(rgb).shape)


def _background(lab: np.ndarray, grad: np.ndarray, model: np.ndarray, noise: float, seeds: np.ndarray
                ) -> np.ndarray:
    """Background pixels for one candidate background `model` (Lab at every pixel) seeded on the frame."""
    diff = lab - model
    dist = np.linalg.norm(diff, axis=-1)
    tight = max(_TIGHT, 3.0 * noise)
    like = dist < tight
    # Seal gaps of up to 2 x _SEAL pixels in the product's outline (a blown-out white collar) before
    # flooding, then give the background back the band the seal took from it.
    sealed = ~like
    for _ in range(_SEAL):
        sealed = _grow(sealed)
    background = fill_from(seeds & ~sealed, ~sealed)
    for _ in range(_SEAL):
        background |= _grow(background) & like
    shaded = ((diff[..., 0] < 0) & (dist < max(_SHADOW_DIST, 4.0 * noise))
              & (np.hypot(diff[..., 1], diff[..., 2]) < 3.0 + 2.0 * noise))
    shadow = shaded & (grad < max(_SHADOW_GRAD, 2.0 * noise))
    background = fill_from(background, background | shadow)
    # The rim: the anti-aliased edge, the darkest band of a shadow (whose gradient is the product's edge) and
    # JPEG colour bleeding, which shifts chroma over a few pixels but keeps the background's lightness.
    anti_aliased, bled = dist < 2 * tight, np.abs(diff[..., 0]) < tight
    for step in range(_RIM):
        background |= _grow(background) & (shaded | (anti_aliased if step < 2 else bled))
    # A pocket is background seen through the product (between arm and body, or sealed off above) when the
    # product around it, in a ring beyond the anti-aliased halo, clearly differs from the background; a
    # blown-out patch of a white shirt is ringed by the shirt's own near-white shading.
    pocket = ~background & (like | shadow)
    labels, n = label_components(pocket)
    if n:
        halo = _spread_labels(_spread_labels(labels))
        ring = _spread_labels(halo) * (halo == 0)
        ring_total = np.bincount(ring.ravel(), minlength=n + 1)
        ring = ring * ~background
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        ring_all = np.bincount(ring.ravel(), minlength=n + 1)
        ring_clear = np.bincount(ring.ravel(), weights=(dist > _RING_DIST).ravel(), minlength=n + 1)
        ok = (sizes >= 4) & (ring_all >= 0.5 * ring_total) & (ring_clear >= _RING_SHARE * ring_all)
        ok[0] = False
        background |= ok[labels]
    return background


# Naming -------------------------------------------------------------------------------------------------

def appearance_lab(rgbs: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """Lab of reference colours as they appear in product photos: lightness and chroma compressed.

    Diffuse studio light and JPEG lift blacks, grey out whites and dull saturated fabric, so the nominal
    palette values sit at the extremes of what photos show.
    """
    ref = srgb_to_lab(np.array(rgbs, dtype=np.float32))
    ref[:, 0] = _APPEAR_L[0] + (ref[:, 0] - _APPEAR_L[0]) * _APPEAR_L[1]
    ref[:, 1:] *= _APPEAR_C
    return ref


@cache
def _naming_table(palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """Nearest palette index (CIEDE2000) for every quantised sRGB value: per-pixel naming becomes a lookup."""
    levels = np.minimum(np.arange(0, 256 + _LUT_STEP, _LUT_STEP), 255).astype(np.float32)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = srgb_to_lab(grid)
    # Chromatic colours are also matched at their nominal value (a flat, well-lit print shows it); neutrals
    # only as photographed, since a mid grey in a photo is far more often shaded black or white.
    nominal = srgb_to_lab(np.array(palette, dtype=np.float32))
    chromatic = np.flatnonzero(np.hypot(nominal[:, 1], nominal[:, 2]) > 10)
    ref = np.concatenate([appearance_lab(palette), nominal[chromatic]])
    owner = np.concatenate([np.arange(len(palette)), chromatic])
    out = np.empty(len(grid), dtype=np.int16)
    for start in range(0, len(grid), 8192):
        nearest = np.argmin(ciede2000(lab[start:start + 8192, None], ref[None], _KL), axis=1)
        out[start:start + 8192] = owner[nearest]
    return out


def name_pixels(rgb: np.ndarray, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """Index of the nearest palette colour for each pixel of a float or uint8 sRGB array."""
    n = 256 // _LUT_STEP + 1
    q = np.rint(np.asarray(rgb, dtype=np.float32) / _LUT_STEP).astype(np.int32)
    return _naming_table(palette)[(q[..., 0] * n + q[..., 1]) * n + q[..., 2]]


def palette_of(vocab: Vocabulary) -> tuple[tuple[int, int, int], ...]:
    return tuple(c.rgb_tuple for c in vocab.colors)


def skin_tone(rgb: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels (the YCrCb box of Chai & Ngan) of a float or uint8 sRGB array."""
    r, g, b = (np.asarray(rgb, dtype=np.float32)[..., i] for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - y) * 0.713 + 128
    cb = (b - y) * 0.564 + 128
    return (cr >= 135) & (cr <= 173) & (cb >= 77) & (cb <= 127) & (y > 50)


def product_weights(mask: np.ndarray) -> np.ndarray:
    """Per-pixel voting weight inside the product: drop the rim, favour the picture's centre.

    Shop photos centre the product, so a worn T-shirt outweighs the jeans and the face above and below it;
    anti-aliased rims take in-between colours that would name a third, absent shade.
    """
    h, w = mask.shape
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    keep = inner if inner.sum() >= 0.4 * mask.sum() else mask
    yy, xx = np.ogrid[0:h, 0:w]
    dy, dx = (yy - (h - 1) / 2) / (_SPREAD * h), (xx - (w - 1) / 2) / (_SPREAD * w)
    centre = np.exp(-0.5 * (dy**2 + dx**2))
    return np.where(keep, centre, 0.0).astype(np.float32)



def dominant_colors(rgb: np.ndarray, mask: np.ndarray, vocab: Vocabulary, min_coverage: float = 0.12,
                    max_colors: int = 3) -> list[ColorShare]:
    """The product's vocabulary colours, primary first, with their share of the foreground.

    Shares are weighted towards the picture's centre (see `product_weights`) and sum to at most 1. The primary
    colour is always returned; others only when they cover at least `min_coverage`.
    """
    small = downscale(np.asarray(rgb))
    m = downscale_mask(np.asarray(mask, dtype=bool))
    if not m.any():
        m = _centre_region(m.shape)
    weights = product_weights(m)
    palette = palette_of(vocab)
    names = name_pixels(small, palette)
    shares = np.bincount(names.ravel(), weights.ravel(), minlength=len(palette))
    shares = shares / max(float(shares.sum()), 1e-9)
    ids = vocab.color_ids
    order = np.argsort(-shares, kind="stable")
    out = [ColorShare(color=ids[order[0]], coverage=round(float(shares[order[0]]), 4))]
    for i in order[1:max_colors]:
        if shares[i] >= min_coverage:
            out.append(ColorShare(color=ids[i], coverage=round(float(shares[i]), 4)))
    return out

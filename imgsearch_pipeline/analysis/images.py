"""Turning untrusted bytes into an RGB image, or a clear reason why not.

Catalogues contain truncated uploads, PDFs named .jpg, CMYK and 16-bit files, animated GIFs and
decompression bombs; each becomes a `BadImage` with a reason instead of a crash.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # ~6300 x 6300: a product photo never needs more; bombs claim far more.
MIN_SIDE = 8


class BadImage(ValueError):
    """The bytes are not an image we can analyse; the message says why."""


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode, apply EXIF orientation, flatten alpha onto white and convert to 8-bit RGB."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise BadImage(f"image too large: {w}x{h} pixels (limit {max_pixels})")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated: the first frame is the product shot
            img.load()
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"decompression bomb refused: {e}") from e
    except UnidentifiedImageError as e:
        raise BadImage("not an image (unrecognised format)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"corrupt or truncated image: {e}") from e
    if min(img.size) < MIN_SIDE:
        raise BadImage(f"image too small to analyse: {img.size[0]}x{img.size[1]} pixels")
    img = ImageOps.exif_transpose(img)
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB whatever the mode: palette, alpha (over white), CMYK, 16-bit and float grayscale."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB") if img.mode != "RGB" else img

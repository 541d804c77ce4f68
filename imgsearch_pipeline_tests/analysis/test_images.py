"""Untrusted bytes: every kind of bad or unusual image is decoded to RGB or refused with a reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgsearch_pipeline.analysis.images import BadImage, decode_image


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo(mode: str = "RGB", size=(64, 48)) -> Image.Image:
    return Image.new("RGB", size, (200, 30, 40)).convert(mode)


def test_plain_jpeg():
    img = decode_image(_encode(_photo(), "JPEG"))
    assert img.mode == "RGB" and img.size == (64, 48)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"%PDF-1.4\n1 0 obj <<>> endobj", "not an image"),
    (b"just some text, not a picture", "not an image"),
])
def test_refused_with_reason(data, reason):
    with pytest.raises(BadImage, match=reason):
        decode_image(data)


def test_truncated_jpeg():
    data = _encode(Image.effect_noise((256, 256), 60).convert("RGB"), "JPEG")
    with pytest.raises(BadImage, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding():
    data = _encode(Image.new("L", (9000, 9000)), "PNG", optimize=True)
    with pytest.raises(BadImage, match="too large|bomb"):
        decode_image(data)


def test_tiny_image_is_refused():
    with pytest.raises(BadImage, match="too small"):
        decode_image(_encode(_photo(size=(1, 1)), "PNG"))


@pytest.mark.parametrize(("mode", "fmt"), [("CMYK", "JPEG"), ("L", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"),
                                           ("LA", "PNG"), ("I;16", "PNG"), ("RGB", "WEBP"), ("P", "GIF")])
def test_unusual_modes_become_rgb(mode, fmt):
    img = decode_image(_encode(_photo(mode), fmt))
    assert img.mode == "RGB" and img.size == (64, 48)


def test_alpha_is_flattened_on_white():
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.paste((10, 200, 10, 255), (8, 8, 24, 24))
    arr = np.asarray(decode_image(_encode(rgba, "PNG")))
    assert tuple(arr[0, 0]) == (255, 255, 255) and tuple(arr[16, 16]) == (10, 200, 10)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (32, 32), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    arr = np.asarray(decode_image(buf.getvalue()))
    assert arr[16, 16, 0] > 200 and arr[16, 16, 2] < 50


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (60, 30), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    out = decode_image(_encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (30, 60)

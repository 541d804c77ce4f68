"""The shared part of the vision-LLM providers: the prompt names the vocabulary, images are normalised first."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgsearch_pipeline.analysis.images import BadImage
from imgsearch_pipeline.analysis.model_output import answer_schema
from imgsearch_pipeline.analysis.vision_llm import build_prompt, prepare_image, prompt_version
from imgsearch_pipeline.vocab import default_vocab_dir, get_vocabulary, load_vocabulary


def test_prompt_lists_every_vocabulary_id():
    vocab = get_vocabulary()
    prompt = build_prompt(vocab)
    ids = [*vocab.category_ids, *vocab.color_ids, *vocab.pattern_ids]
    ids += [v.id for a in vocab.attributes.values() for v in a.values]
    assert [i for i in ids if i not in prompt] == []


def test_prompt_version_follows_the_vocabulary(tmp_path):
    vocab = get_vocabulary()
    vocab_dir = tmp_path / "vocab"
    vocab_dir.mkdir()
    for f in default_vocab_dir().glob("*.yaml"):
        (vocab_dir / f.name).write_text(f.read_text())
    same = load_vocabulary(vocab_dir)
    colors = vocab_dir / "colors.yaml"
    assert "id: teal" in colors.read_text()
    colors.write_text(colors.read_text().replace("id: teal", "id: petrol"))
    changed = load_vocabulary(vocab_dir)
    schema = answer_schema()
    assert prompt_version(build_prompt(same), schema) == prompt_version(build_prompt(vocab), schema)
    assert prompt_version(build_prompt(changed), schema) != prompt_version(build_prompt(vocab), schema)


def test_images_are_decoded_rotated_and_downscaled_before_sending():
    img = Image.new("RGB", (3000, 1000), (200, 30, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # stored sideways: displayed rotated by 90 degrees
    out = io.BytesIO()
    img.save(out, format="PNG", exif=exif)
    sent = Image.open(io.BytesIO(prepare_image(out.getvalue(), max_side=512)))
    assert sent.format == "JPEG" and sent.size == (171, 512)
    assert np.abs(np.asarray(sent).reshape(-1, 3).mean(axis=0) - (200, 30, 30)).max() < 4


@pytest.mark.parametrize("data", [b"", b"%PDF-1.4 not an image"])
def test_bad_images_are_refused_before_any_request(data):
    with pytest.raises(BadImage):
        prepare_image(data)

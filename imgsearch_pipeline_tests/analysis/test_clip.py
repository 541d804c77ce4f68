"""The CLIP runner and provider on a tiny random CLIP folder, through the same loading code as a real model.

The ONNX graphs are checked against a plain-numpy forward pass written here from transformers' CLIP
(pre-norm layers, causal text attention, pooling at the end token), so a graph-building mistake shows up as
a numeric difference rather than as plausible-looking vectors.
"""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError
from safetensors.numpy import load_file

from imgsearch_pipeline.analysis import clip as clip_provider
from imgsearch_pipeline.analysis.clip import ClipOptions, ClipProvider, ZeroShotClasses, value_terms
from imgsearch_pipeline.analysis.models import clip
from imgsearch_pipeline.analysis.models.clip import ClipModel, ImagePreprocessor, resolve_model_dir
from imgsearch_pipeline.analysis.provider import AnalysisFailure, get_provider
from imgsearch_pipeline.analysis.types import ImageAnalysis
from imgsearch_pipeline.vocab import Category, get_vocabulary
from imgsearch_pipeline_tests.analysis import tiny_clip
from imgsearch_pipeline_tests.analysis.tiny_clip import write_tiny_clip

TEXTS = ["a photo of a red dress", "striped t-shirt with long sleeves", "", "a blue handbag, material: leather."]


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    shirt = Image.new("RGB", (90, 120), "white")
    ImageDraw.Draw(shirt).polygon([(25, 20), (65, 20), (85, 45), (70, 55), (65, 110), (25, 110), (20, 55),
                                   (5, 45)], fill=(30, 60, 190))
    return [
        Image.new("RGB", (64, 48), (220, 20, 30)),
        shirt,
        Image.fromarray(rng.integers(0, 256, (70, 50, 3), dtype=np.uint8)),
    ]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="module")
def model(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ClipModel:
    return ClipModel(tiny_dir, cache_dir=tmp_path_factory.mktemp("onnx"), threads=1)


# --- an independent numpy CLIP ---------------------------------------------------------------------


def _layer_norm(x: np.ndarray, w: dict, key: str) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * w[f"{key}.weight"] + w[f"{key}.bias"]


def _dense(x: np.ndarray, w: dict, key: str) -> np.ndarray:
    return x @ w[f"{key}.weight"].T + w.get(f"{key}.bias", 0.0)


def _act(x: np.ndarray, name: str) -> np.ndarray:
    if name == "quick_gelu":
        return x / (1 + np.exp(-1.702 * x))
    assert name == "gelu"
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _encoder(x: np.ndarray, w: dict, tower: str, act: str, causal: bool) -> np.ndarray:
    """x: (seq, hidden) for one input; attention head by head."""
    seq, hidden = x.shape
    head_dim = hidden // tiny_clip.HEADS
    for i in range(tiny_clip.LAYERS):
        p = f"{tower}.encoder.layers.{i}"
        h = _layer_norm(x, w, f"{p}.layer_norm1")
        q, k, v = (_dense(h, w, f"{p}.self_attn.{n}_proj") for n in "qkv")
        heads = []
        for j in range(tiny_clip.HEADS):
            cols = slice(j * head_dim, (j + 1) * head_dim)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(head_dim)
            if causal:
                scores = np.where(np.tril(np.ones((seq, seq), bool)), scores, -np.inf)
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            heads.append(probs / probs.sum(-1, keepdims=True) @ v[:, cols])
        x = x + _dense(np.concatenate(heads, axis=1), w, f"{p}.self_attn.out_proj")
        x = x + _dense(_act(_dense(_layer_norm(x, w, f"{p}.layer_norm2"), w, f"{p}.mlp.fc1"), act), w, f"{p}.mlp.fc2")
    return x


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_image(w: dict, pixels: np.ndarray, act: str) -> np.ndarray:
    """pixels (3, size, size) -> unit image embedding, patches cut out explicitly instead of a convolution."""
    p, g = tiny_clip.PATCH, tiny_clip.IMAGE // tiny_clip.PATCH
    patches = pixels.reshape(3, g, p, g, p).transpose(1, 3, 0, 2, 4).reshape(g * g, 3 * p * p)
    e = "vision_model.embeddings"
    tokens = patches @ w[f"{e}.patch_embedding.weight"].reshape(tiny_clip.HIDDEN, -1).T
    x = np.concatenate([w[f"{e}.class_embedding"][None], tokens]) + w[f"{e}.position_embedding.weight"]
    x = _encoder(_layer_norm(x, w, "vision_model.pre_layrnorm"), w, "vision_model", act, causal=False)
    return _unit(_layer_norm(x[0], w, "vision_model.post_layernorm") @ w["visual_projection.weight"].T)


def reference_text(w: dict, ids: list[int], act: str, eos: int) -> np.ndarray:
    """One unpadded sequence -> unit text embedding, pooled where transformers pools for this eos_token_id."""
    e = "text_model.embeddings"
    x = w[f"{e}.token_embedding.weight"][ids] + w[f"{e}.position_embedding.weight"][: len(ids)]
    x = _layer_norm(_encoder(x, w, "text_model", act, causal=True), w, "text_model.final_layer_norm")
    at = int(np.argmax(ids)) if eos == 2 else ids.index(eos) if eos in ids else 0
    return _unit(x[at] @ w["text_projection.weight"].T)


# --- finding and loading ---------------------------------------------------------------------------


def _fake_hub(root: Path, tiny_dir: Path) -> Path:
    """A huggingface_hub cache with two snapshots of acme/tiny-clip; refs/main names the first."""
    repo = root / "models--acme--tiny-clip"
    shutil.copytree(tiny_dir, repo / "snapshots" / "abc")
    write_tiny_clip(repo / "snapshots" / "zzz", seed=99)  # newer, but not what main points to
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    return repo / "snapshots" / "abc"


def test_loads_from_folder_and_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dir: Path,
                                        model: ClipModel) -> None:
    assert resolve_model_dir(str(tiny_dir)) == tiny_dir
    digest = clip.file_sha256(tiny_dir / "model.safetensors")
    assert model.model_id == f"clip:tiny-clip@{digest[:8]}"
    assert model.projection_dim == tiny_clip.PROJECTION and model.image_size == tiny_clip.IMAGE
    assert model.logit_scale == pytest.approx(1 / 0.07, rel=1e-6)

    snapshot = _fake_hub(tmp_path / "hub", tiny_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model_dir("acme/tiny-clip") == snapshot
    cached = ClipModel(resolve_model_dir("acme/tiny-clip"), cache_dir=tmp_path / "onnx", threads=1)
    assert cached.model_id == f"clip:acme/tiny-clip@{digest[:8]}"
    np.testing.assert_array_equal(cached.embed_texts(TEXTS), model.embed_texts(TEXTS))

    # HF_HOME/hub when HF_HUB_CACHE is unset; without refs/main the newest complete snapshot
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert resolve_model_dir("acme/tiny-clip") == snapshot
    (snapshot.parent.parent / "refs" / "main").unlink()
    assert resolve_model_dir("acme/tiny-clip") == snapshot.parent / "zzz"


def test_missing_model_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dir: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="acme/none") as e:
        resolve_model_dir("acme/none")
    assert str(tmp_path / "hub" / "models--acme--none") in str(e.value) and "never downloaded" in str(e.value)
    with pytest.raises(FileNotFoundError, match="no folder"):
        resolve_model_dir(str(tmp_path / "nowhere"))

    partial = tmp_path / "partial"
    shutil.copytree(tiny_dir, partial)
    (partial / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="lacks tokenizer.json"):
        resolve_model_dir(str(partial))
    config = json.loads((tiny_dir / "config.json").read_text()) | {"model_type": "siglip"}
    shutil.copy(tiny_dir / "tokenizer.json", partial / "tokenizer.json")
    (partial / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not 'clip'"):
        ClipModel(partial, cache_dir=tmp_path / "onnx")


def test_graphs_are_cached_by_weights_config_and_builder(tmp_path: Path, tiny_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    first = ClipModel(tiny_dir, cache_dir=tmp_path, threads=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.vision_path.name, first.text_path.name])

    def no_build(*_: object) -> None:
        raise AssertionError("the cached graph should have been reused")

    with monkeypatch.context() as m:
        m.setattr(clip, "build_vision_model", no_build)
        m.setattr(clip, "build_text_model", no_build)
        again = ClipModel(tiny_dir, cache_dir=tmp_path, threads=1)
    assert (again.vision_path, again.text_path) == (first.vision_path, first.text_path)

    other = write_tiny_clip(tmp_path / "gelu", hidden_act="gelu")  # same weights, another activation
    assert clip.file_sha256(other / "model.safetensors") == clip.file_sha256(tiny_dir / "model.safetensors")
    assert ClipModel(other, cache_dir=tmp_path, threads=1).vision_path != first.vision_path
    monkeypatch.setattr(clip, "BUILDER_VERSION", clip.BUILDER_VERSION + 1)
    assert ClipModel(tiny_dir, cache_dir=tmp_path, threads=1).text_path != first.text_path


# --- embeddings ------------------------------------------------------------------------------------


def test_embeddings_shape_norm_determinism(model: ClipModel) -> None:
    images = _images()
    vectors = model.embed_images(images)
    assert vectors.shape == (3, tiny_clip.PROJECTION) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(model.embed_images(images), vectors)
    assert (vectors @ vectors.T)[np.triu_indices(3, 1)].max() < 0.999  # different pictures, different vectors

    texts = model.embed_texts(TEXTS)
    assert texts.shape == (4, tiny_clip.PROJECTION) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(model.embed_texts(TEXTS), texts)
    assert (texts @ texts.T)[np.triu_indices(4, 1)].max() < 0.999
    assert model.embed_images([]).shape == model.embed_texts([]).shape == (0, tiny_clip.PROJECTION)

    model.batch_size = 2  # several session runs, padded to different widths
    try:
        np.testing.assert_allclose(model.embed_texts(TEXTS), texts, atol=1e-5)
        np.testing.assert_allclose(model.embed_images(images), vectors, atol=1e-5)
    finally:
        model.batch_size = 16


def test_long_text_is_truncated_to_the_positions(model: ClipModel) -> None:
    (ids,) = model.tokenize(["red dress " * 50])
    vocab = tiny_clip.vocabulary()
    assert len(ids) == tiny_clip.MAX_POSITIONS
    assert ids[0] == vocab.index(tiny_clip.BOS) and ids[-1] == vocab.index(tiny_clip.EOS)
    assert model.embed_texts(["red dress " * 50]).shape == (1, tiny_clip.PROJECTION)


@pytest.mark.parametrize(("act", "legacy_eos"), [("quick_gelu", False), ("gelu", False), ("quick_gelu", True)])
def test_onnx_matches_numpy_reference(tmp_path: Path, act: str, legacy_eos: bool) -> None:
    directory = write_tiny_clip(tmp_path / "m", seed=5, hidden_act=act, legacy_eos=legacy_eos)
    m = ClipModel(directory, cache_dir=tmp_path / "onnx", threads=1)
    w = {k: v.astype(np.float64) for k, v in load_file(directory / "model.safetensors").items()}
    eos = m.text_cfg["eos_token_id"]
    assert eos == (2 if legacy_eos else tiny_clip.vocabulary().index(tiny_clip.EOS))

    images = _images()
    expected = np.stack([reference_image(w, m.preprocess(im).astype(np.float64), act) for im in images])
    np.testing.assert_allclose(m.embed_images(images), expected, atol=1e-4)

    expected = np.stack([reference_text(w, ids, act, eos) for ids in m.tokenize(TEXTS)])
    np.testing.assert_allclose(m.embed_texts(TEXTS), expected, atol=1e-4)

    # Without an end token the two pooling rules disagree: the first position, or the highest id (the start token).
    ids = [5, tiny_clip.vocabulary().index(tiny_clip.BOS), 7, 9]
    got = m.text.run(["embedding"], {"input_ids": np.array([ids]), "attention_mask": np.ones((1, 4), np.int64)})[0]
    np.testing.assert_allclose(got[0], reference_text(w, ids, act, eos), atol=1e-4)


def test_preprocessing(tmp_path: Path, tiny_dir: Path) -> None:
    """Shortest side to the model size, centre crop, then (x / 255 - mean) / std from preprocessor_config.json."""
    pre = ImagePreprocessor(tiny_dir, tiny_clip.IMAGE)
    halves = Image.new("RGB", (128, 64), (255, 0, 0))
    halves.paste((0, 0, 255), (64, 0, 128, 64))
    pixels = pre(halves)
    assert pixels.shape == (3, tiny_clip.IMAGE, tiny_clip.IMAGE) and pixels.dtype == np.float32
    # 128x64 -> 64x32 -> the middle 32 columns: red on the left half, blue on the right
    np.testing.assert_allclose(pixels[:, :, :12].mean(axis=(1, 2)), [(1 - 0.5) / 0.25, -2, -2], atol=1e-5)
    np.testing.assert_allclose(pixels[:, :, -12:].mean(axis=(1, 2)), [-2, -2, 2], atol=1e-5)

    bare = write_tiny_clip(tmp_path / "bare", preprocessor=False)
    gray = ImagePreprocessor(bare, tiny_clip.IMAGE)(Image.new("L", (40, 90), 128))
    expected = (128 / 255 - np.array(clip.CLIP_MEAN)) / np.array(clip.CLIP_STD)
    np.testing.assert_allclose(gray.mean(axis=(1, 2)), expected, atol=1e-5)


# --- the provider ----------------------------------------------------------------------------------


@pytest.fixture
def onnx_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_CACHE", str(tmp_path / "cache"))


def _always_decide(tiny_dir: Path, **extra: object) -> dict:
    """Options with every floor at 0: the provider then names a value for every field it may fill."""
    return {"model": str(tiny_dir), "threads": 1, "min_category_score": 0.0, "min_pattern_score": 0.0,
            "min_attribute_score": 0.0, **extra}


def test_provider_analyses_images(tiny_dir: Path, onnx_cache: None) -> None:
    provider = get_provider("clip", _always_decide(tiny_dir))
    assert isinstance(provider, ClipProvider) and provider.name == "clip"
    assert provider.image_dim == provider.text_dim == tiny_clip.PROJECTION
    vocab = get_vocabulary()
    images = _images()
    data = [_png(images[0]), b"not an image", _png(images[1], "JPEG"), _png(images[2]), b""]
    results = provider.analyse(data)
    assert len(results) == 5
    assert isinstance(results[1], AnalysisFailure) and "not an image" in results[1].reason
    assert isinstance(results[4], AnalysisFailure) and "empty" in results[4].reason
    analyses = [results[0], results[2], results[3]]
    for a in analyses:
        assert isinstance(a, ImageAnalysis), a
        assert a.category in vocab.category_ids and a.pattern in vocab.pattern_ids
        group = vocab.category(a.category).group
        applicable = {name for name, attr in vocab.attributes.items() if group in attr.applies_to}
        assert set(a.attributes) == applicable
        for name, value in a.attributes.items():
            assert value in [v.id for v in vocab.attributes[name].values]
        assert a.has_print == vocab.pattern(a.pattern).has_print
        assert 0.0 < a.category_confidence <= 1.0
        assert len(a.image_embedding) == provider.image_dim and a.text_embedding == a.image_embedding
        assert np.linalg.norm(a.image_embedding) == pytest.approx(1.0, abs=1e-5)
        assert vocab.category(a.category).label.lower() in a.description.lower()
        assert a.model_version == provider.model_version
    assert [c.color for c in analyses[0].colors] == ["red"]  # colour from pixels, as the builtin provider does
    assert analyses[1].colors[0].color in vocab.colors_in_family("blue")

    assert provider.model_version.startswith(f"clip-{clip_provider.LOGIC_VERSION}+{provider.model.model_id}+")
    assert provider.model_version.endswith(f"+vocab.{vocab.version}")
    np.testing.assert_allclose(provider.embed_image(data[0]), analyses[0].image_embedding, atol=1e-6)
    np.testing.assert_array_equal(provider.embed_text(TEXTS), provider.model.embed_texts(TEXTS))


def test_confidence_floor_never_guesses(tiny_dir: Path, onnx_cache: None) -> None:
    image = _png(_images()[1])
    decided = get_provider("clip", _always_decide(tiny_dir)).analyse([image])[0]
    assert isinstance(decided, ImageAnalysis) and decided.category is not None
    floor = min(1.0, decided.category_confidence + 0.001)
    strict = get_provider("clip", _always_decide(tiny_dir, min_category_score=floor, min_pattern_score=1.0))
    unsure = strict.analyse([image])[0]
    assert isinstance(unsure, ImageAnalysis)
    assert unsure.category is None and unsure.pattern is None and unsure.has_print is None
    assert unsure.attributes == {}  # no category, so no attribute applies
    assert unsure.category_confidence == decided.category_confidence
    assert unsure.colors == decided.colors and unsure.image_embedding == decided.image_embedding
    assert strict.model_version != get_provider("clip", _always_decide(tiny_dir)).model_version


def test_class_vectors_average_the_prompt_ensemble(tiny_dir: Path, onnx_cache: None) -> None:
    provider = get_provider("clip", {"model": str(tiny_dir), "threads": 1, "max_terms": 2})
    assert isinstance(provider, ClipProvider)
    vocab = get_vocabulary()
    classes = provider.classes
    assert set(classes) == {"category", "pattern"} | {f"attr:{n}" for n in vocab.attributes}
    # The last field's last value: any slip in splitting the one text pass between fields moves its rows.
    last = classes[f"attr:{list(vocab.attributes)[-1]}"]
    prompts = last.prompts[-1]
    assert len(prompts) == 2 * len(clip_provider.ATTRIBUTE_TEMPLATES)
    expected = _unit(provider.model.embed_texts(list(prompts)).mean(axis=0))
    np.testing.assert_allclose(last.matrix[-1], expected, atol=1e-5)
    dress = classes["category"].prompts[vocab.category_ids.index("dress")]
    assert "a photo of a dress." in dress and "a product photo of a gown." in dress

    assert value_terms("t-shirt", "T-shirt", ("tee", "t shirt", "tshirt"), 3) == ["t-shirt", "tee", "tshirt"]
    assert value_terms("short-sleeve", "", (), 4) == ["short sleeve"]
    zs = ZeroShotClasses(["a", "b"], [["x", "y"], ["z"]])
    zs.set_vectors(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    np.testing.assert_allclose(zs.matrix, [[0.5**0.5, 0.5**0.5], [-1.0, 0.0]])
    assert zs.best(np.array([0.0, 1.0]), 100.0)[0] == "a"
    assert zs.best(np.array([-1.0, 0.0]), 100.0) == ("b", pytest.approx(1.0))


def test_invalid_vocabulary_result_is_a_failure(tiny_dir: Path, onnx_cache: None) -> None:
    """A provider vocabulary that disagrees with the stored one yields failures, not a crash."""
    vocab = get_vocabulary()
    odd = vocab.model_copy(update={"categories": (Category(id="kaftan", label="Kaftan", group="topwear"),)})
    provider = ClipProvider(ClipOptions(**_always_decide(tiny_dir)), vocab=odd)
    (result,) = provider.analyse([_png(_images()[0])])
    assert isinstance(result, AnalysisFailure) and "kaftan" in result.reason and not result.retryable


def test_options_are_validated(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ValidationError, match="batchsize"):
        get_provider("clip", {"model": str(tiny_dir), "batchsize": 4})
    with pytest.raises(ValidationError, match="model"):
        get_provider("clip", {})
    with pytest.raises(ValidationError, match="min_category_score"):
        get_provider("clip", {"model": str(tiny_dir), "min_category_score": 1.5})
    with pytest.raises(FileNotFoundError, match="acme/absent"):
        get_provider("clip", {"model": "acme/absent"})

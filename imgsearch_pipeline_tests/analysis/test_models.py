"""The torch-free model runners: real weights from the installed packages, graphs built in temp dirs."""

from __future__ import annotations

import io
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image, ImageDraw

from imgsearch_pipeline.analysis.models import efficientnet_lite
from imgsearch_pipeline.analysis.models.efficientnet_lite import (
    EfficientNetLite0,
    imagenet_classes,
    load_state_dict,
)
from imgsearch_pipeline.analysis.models.minilm import MiniLM


def _shirt(offset: int = 0, colour: tuple[int, int, int] = (200, 30, 40)) -> Image.Image:
    """A flat T-shirt silhouette on white, like a catalogue packshot."""
    image = Image.new("RGB", (300, 300), "white")
    outline = [
        (90, 60),
        (210, 60),
        (270, 110),
        (240, 150),
        (210, 130),
        (210, 260),
        (90, 260),
        (90, 130),
        (60, 150),
        (30, 110),
    ]
    ImageDraw.Draw(image).polygon([(x + offset, y) for x, y in outline], fill=colour)
    return image


def _stripes() -> Image.Image:
    image = Image.new("RGB", (300, 300), "black")
    draw = ImageDraw.Draw(image)
    for x in range(0, 300, 20):
        draw.rectangle([x, 0, x + 9, 300], fill=(30, 200, 60))
    return image


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def effnet(tmp_path_factory: pytest.TempPathFactory) -> EfficientNetLite0:
    return EfficientNetLite0(cache_dir=tmp_path_factory.mktemp("models"), threads=2)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> MiniLM:
    return MiniLM(cache_dir=tmp_path_factory.mktemp("models"), threads=2)


def test_efficientnet_shapes_and_values(effnet: EfficientNetLite0) -> None:
    images = [_shirt(), Image.new("L", (640, 480), 128), Image.new("RGBA", (50, 90), (0, 0, 255, 128))]
    features, logits = effnet.run(images)
    assert features.shape == (3, 1280) and features.dtype == np.float32
    assert logits.shape == (3, 1000) and logits.dtype == np.float32
    assert np.isfinite(features).all() and np.isfinite(logits).all()
    assert (features >= 0).all() and (features <= 6).all()  # spatial mean of ReLU6 outputs
    empty_features, empty_logits = effnet.run([])
    assert empty_features.shape == (0, 1280) and empty_logits.shape == (0, 1000)


def test_efficientnet_batches_keep_order(effnet: EfficientNetLite0) -> None:
    images = [_shirt(), _stripes(), _shirt(colour=(40, 40, 200))]
    effnet.batch_size = 2  # the three images span two session runs
    try:
        together, _ = effnet.run(images)
    finally:
        effnet.batch_size = 32
    alone = np.concatenate([effnet.run([image])[0] for image in images])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_efficientnet_similarity_and_classes(effnet: EfficientNetLite0) -> None:
    shirt, shifted, recoloured, stripes = (
        _shirt(),
        _shirt(8).resize((260, 260)),
        _shirt(colour=(40, 40, 200)),
        _stripes(),
    )
    features, logits = effnet.run([shirt, shifted, recoloured, stripes])
    cos = _unit(features) @ _unit(features)[0]
    assert cos[1] > 0.95  # the same garment, moved and rescaled
    assert cos[1] > cos[2] > cos[3] + 0.3  # a colour change matters less than a different picture
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) == 1000 and all(names)
    # ImageNet's T-shirt class wins by > 2.5 logits on both red shirts (same with the torch implementation);
    # a wrong padding or normalisation in the graph loses it.
    assert [names[i] for i in logits[:2].argmax(axis=1)] == ["jersey", "jersey"]
    assert "jersey" in [names[i] for i in np.argsort(-logits[2])[:5]]


def test_efficientnet_graph_pads_like_tf_same(effnet: EfficientNetLite0) -> None:
    """Stride-2 convolutions pad one pixel more after than before, as efficientnet-lite-pytorch does."""
    strided = set()
    for node in onnx.load(effnet.onnx_path).graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv" and attrs["strides"] == [2, 2]:
            strided.add((attrs["kernel_shape"][0], tuple(attrs["pads"])))
    assert strided == {(3, (0, 0, 1, 1)), (5, (1, 1, 2, 2))}


def test_efficientnet_graph_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = EfficientNetLite0(cache_dir=tmp_path, threads=1)
    assert [p.name for p in tmp_path.iterdir()] == [first.onnx_path.name]

    def no_build(*_: object) -> None:
        raise AssertionError("the cached graph should have been reused")

    with monkeypatch.context() as m:
        m.setattr(efficientnet_lite, "build_model", no_build)
        again = EfficientNetLite0(cache_dir=tmp_path, threads=1)
    assert again.onnx_path == first.onnx_path and again.model_id == first.model_id

    monkeypatch.setattr(efficientnet_lite, "BUILDER_VERSION", efficientnet_lite.BUILDER_VERSION + 1)
    rebuilt = EfficientNetLite0(cache_dir=tmp_path, threads=1)
    assert rebuilt.onnx_path != first.onnx_path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [first.onnx_path.name, rebuilt.onnx_path.name]
    )


def _fake_torch_zip(path: Path, tensors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    """Write a state dict in torch's zip format without torch: stand-in `torch` modules for the pickler."""
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args: object) -> None:
        raise NotImplementedError

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch_mod.FloatStorage, utils_mod._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    class Tensor:
        def __init__(self, key: str, array: np.ndarray) -> None:
            self.key, self.array = key, array

        def __reduce__(self) -> tuple:
            strides = tuple(s // 4 for s in self.array.strides)
            storage = ("storage", FloatStorage, self.key, "cpu", self.array.size)
            return _rebuild_tensor_v2, (storage, 0, self.array.shape, strides, False, None)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return obj if isinstance(obj, tuple) and obj[:1] == ("storage",) else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({k: Tensor(str(i), v) for i, (k, v) in enumerate(tensors.items())})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        for i, array in enumerate(tensors.values()):
            # the storage is the memory as laid out; the tensor's strides describe the view on it
            archive.writestr(f"archive/data/{i}", array.ravel(order="K").astype("<f4").tobytes())


def test_pth_reader_zip_format_and_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "state.pth"
    _fake_torch_zip(path, {"w": base, "w_t": base.T}, monkeypatch)
    loaded = load_state_dict(path)
    np.testing.assert_array_equal(loaded["w"], base)
    np.testing.assert_array_equal(loaded["w_t"], base.T)

    evil = tmp_path / "evil.pth"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(print, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_state_dict(evil)


def test_minilm_shapes_norm_and_truncation(text_model: MiniLM) -> None:
    texts = ["red floral dress", "", "word " * 1000]
    vectors = text_model.embed(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32 and text_model.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert text_model.embed([]).shape == (0, 384)


def test_minilm_similarity(text_model: MiniLM) -> None:
    dress, flowers, wallet = text_model.embed(
        ["red floral dress", "a dress with red flowers", "black leather wallet"]
    )
    assert dress @ flowers > dress @ wallet + 0.2


def test_minilm_is_deterministic_and_batch_independent(text_model: MiniLM) -> None:
    texts = ["blue jeans", "a watch with a steel strap and a round dial", "black leather wallet"] * 20
    first = text_model.embed(texts)
    np.testing.assert_array_equal(first, text_model.embed(texts))
    alone = np.concatenate([text_model.embed([t]) for t in texts[:3]])
    np.testing.assert_allclose(first[:3], alone, atol=1e-5)  # padding in a mixed batch changes nothing
    assert text_model.model_id.startswith("all-MiniLM-L6-v2@")

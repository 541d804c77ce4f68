"""A tiny, randomly initialised CLIP in transformers' folder format, written without torch or transformers.

The same files a Hugging Face download has (config.json, model.safetensors under transformers' parameter
names, tokenizer.json, preprocessor_config.json), small enough that building and running its graphs takes
well under a second, so the tests exercise the real loading code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

HIDDEN = 32
INTERMEDIATE = 64
LAYERS = 2
HEADS = 2
PATCH = 8
IMAGE = 32
PROJECTION = 16
MAX_POSITIONS = 16
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# Words of the provider's prompt templates and some vocabulary terms; anything else becomes <unk>.
WORDS = (
    ".", ",", ":", "-", "/", "'", "a", "an", "the", "of", "with", "and", "in", "on", "for", "photo", "product",
    "catalogue", "picture", "close", "up", "studio", "shot", "item", "garment", "clothing", "pattern", "fabric",
    "made", "something", "t", "shirt", "tee", "top", "dress", "skirt", "jeans", "trousers", "shorts", "jacket",
    "sweater", "hoodie", "shoes", "sneakers", "heels", "sandals", "bag", "handbag", "backpack", "wallet", "watch",
    "sunglasses", "belt", "cap", "tie", "scarf", "socks", "red", "blue", "green", "black", "white", "grey", "yellow",
    "pink", "striped", "stripes", "checked", "floral", "dots", "graphic", "animal", "camouflage", "abstract",
    "solid", "plain", "print", "sleeve", "sleeves", "long", "short", "sleeveless", "neck", "v", "round", "collar",
    "hooded", "neckline", "fit", "slim", "regular", "relaxed", "material", "cotton", "denim", "leather", "wool",
    "silk", "length",
)


def vocabulary() -> list[str]:
    """<unk>, <pad>, the words, then the start and end tokens: the end token has the highest id, as in CLIP."""
    return ["<unk>", "<pad>", *dict.fromkeys(WORDS), BOS, EOS]


def _tokenizer(vocab: list[str]) -> Tokenizer:
    ids = {token: i for i, token in enumerate(vocab)}
    tokenizer = Tokenizer(models.WordLevel(ids, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, ids[BOS]), (EOS, ids[EOS])]
    )
    tokenizer.add_special_tokens([BOS, EOS])
    return tokenizer


def _tower_weights(rng: np.random.Generator, prefix: str) -> dict[str, np.ndarray]:
    def linear(name: str, n_out: int, n_in: int) -> dict[str, np.ndarray]:
        return {f"{name}.weight": rng.normal(0, n_in**-0.5, (n_out, n_in)), f"{name}.bias": rng.normal(0, 0.1, n_out)}

    def norm(name: str) -> dict[str, np.ndarray]:
        return {f"{name}.weight": 1 + rng.normal(0, 0.1, HIDDEN), f"{name}.bias": rng.normal(0, 0.1, HIDDEN)}

    weights: dict[str, np.ndarray] = {}
    for i in range(LAYERS):
        p = f"{prefix}.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            weights |= linear(f"{p}.self_attn.{proj}", HIDDEN, HIDDEN)
        weights |= norm(f"{p}.layer_norm1") | norm(f"{p}.layer_norm2")
        weights |= linear(f"{p}.mlp.fc1", INTERMEDIATE, HIDDEN) | linear(f"{p}.mlp.fc2", HIDDEN, INTERMEDIATE)
    return weights


def write_tiny_clip(
    directory: Path,
    *,
    seed: int = 0,
    hidden_act: str = "quick_gelu",
    legacy_eos: bool = False,
    preprocessor: bool = True,
) -> Path:
    """Write the model into `directory` (created) and return it.

    `legacy_eos` writes eos_token_id 2 into the text config, as configs from before transformers' fix do:
    transformers then pools the text at argmax(input_ids) instead of at the first end token.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    n_patches = (IMAGE // PATCH) ** 2
    weights = _tower_weights(rng, "vision_model") | _tower_weights(rng, "text_model")
    weights |= {
        "vision_model.embeddings.class_embedding": rng.normal(0, 1, HIDDEN),
        "vision_model.embeddings.patch_embedding.weight": rng.normal(0, (3 * PATCH * PATCH) ** -0.5,
                                                                     (HIDDEN, 3, PATCH, PATCH)),
        "vision_model.embeddings.position_embedding.weight": rng.normal(0, 0.5, (n_patches + 1, HIDDEN)),
        "text_model.embeddings.token_embedding.weight": rng.normal(0, 1, (len(vocab), HIDDEN)),
        "text_model.embeddings.position_embedding.weight": rng.normal(0, 0.5, (MAX_POSITIONS, HIDDEN)),
        "visual_projection.weight": rng.normal(0, HIDDEN**-0.5, (PROJECTION, HIDDEN)),
        "text_projection.weight": rng.normal(0, HIDDEN**-0.5, (PROJECTION, HIDDEN)),
        "logit_scale": np.array(np.log(1 / 0.07)),
    }
    for tower, final in (("vision_model", "pre_layrnorm"), ("vision_model", "post_layernorm"),
                         ("text_model", "final_layer_norm")):
        weights[f"{tower}.{final}.weight"] = 1 + rng.normal(0, 0.1, HIDDEN)
        weights[f"{tower}.{final}.bias"] = rng.normal(0, 0.1, HIDDEN)
    save_file({k: np.asarray(v, np.float32) for k, v in weights.items()},
              str(directory / "model.safetensors"), metadata={"format": "pt"})

    common = {"hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE, "num_hidden_layers": LAYERS,
              "num_attention_heads": HEADS, "hidden_act": hidden_act, "layer_norm_eps": 1e-5,
              "projection_dim": PROJECTION}
    config = {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": PROJECTION,
        "logit_scale_init_value": 2.6592,
        "text_config": common | {
            "model_type": "clip_text_model", "vocab_size": len(vocab), "max_position_embeddings": MAX_POSITIONS,
            "pad_token_id": 1, "bos_token_id": vocab.index(BOS),
            "eos_token_id": 2 if legacy_eos else vocab.index(EOS),
        },
        "vision_config": common | {
            "model_type": "clip_vision_model", "image_size": IMAGE, "patch_size": PATCH, "num_channels": 3,
        },
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    _tokenizer(vocab).save(str(directory / "tokenizer.json"))
    if preprocessor:
        (directory / "preprocessor_config.json").write_text(json.dumps({
            "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": IMAGE},
            "resample": 3, "do_center_crop": True, "crop_size": {"height": IMAGE, "width": IMAGE},
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25],
        }, indent=2))
    return directory

from pathlib import Path

import pytest
import yaml

from imgsearch_pipeline.vocab import default_vocab_dir, get_vocabulary, load_vocabulary


def test_required_entries_exist():
    v = get_vocabulary()
    for cid in ["t-shirt", "shirt", "top", "dress", "skirt", "jeans", "trousers", "shorts", "sweater", "sweatshirt",
                "jacket", "kurta", "casual-shoes", "sports-shoes", "heels", "sandals", "flip-flops", "formal-shoes",
                "handbag", "backpack", "clutch", "wallet", "watch", "sunglasses", "belt", "cap", "tie", "scarf",
                "socks"]:
        assert cid in v.category_ids
    for pid in ["solid", "striped", "checked", "floral", "polka-dot", "graphic", "animal", "camouflage",
                "colour-blocked"]:
        assert pid in v.pattern_ids
    assert {"sleeve_length", "neckline", "fit", "material"} <= set(v.attributes)


@pytest.mark.parametrize(("kind", "word", "expected"), [
    ("category", "tee", "t-shirt"), ("category", "t shirt", "t-shirt"), ("category", "tshirt", "t-shirt"),
    ("category", "T-Shirts", "t-shirt"), ("category", "sneakers", "sports-shoes"), ("category", "purse", "handbag"),
    ("category", "shades", "sunglasses"), ("category", "dresses", "dress"), ("category", "watches", "watch"),
    ("color", "crimson", "red"), ("color", "Navy Blue", "navy"), ("color", "burgundy", "maroon"),
    ("color", "gray", "grey"), ("pattern", "plaid", "checked"), ("pattern", "polka dots", "polka-dot"),
    ("pattern", "plain", "solid"), ("category", "spaceship", None), ("color", "tee", None),
])
def test_resolve(kind, word, expected):
    assert get_vocabulary().resolve(kind, word) == expected


def test_families_group_shades():
    v = get_vocabulary()
    assert v.family_of("navy") == "blue" and v.family_of("crimson" and "red") == "red"
    assert set(v.colors_in_family("red")) == {"red", "maroon"}
    assert all(c.rgb.startswith("#") and len(c.rgb) == 7 for c in v.colors)
    assert v.pattern("floral").has_print and not v.pattern("striped").has_print


def _copy_vocab(tmp_path: Path) -> Path:
    for f in default_vocab_dir().glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text())
    return tmp_path


def test_version_tracks_content(tmp_path):
    d = _copy_vocab(tmp_path)
    v1 = load_vocabulary(d).version
    assert v1 == get_vocabulary().version
    data = yaml.safe_load((d / "colors.yaml").read_text())
    data["colors"][0]["synonyms"].append("pitch black")
    (d / "colors.yaml").write_text(yaml.safe_dump(data))
    assert load_vocabulary(d).version != v1


@pytest.mark.parametrize(("file", "mutate", "message"), [
    ("colors.yaml", lambda d: d["colors"][0].update(family="nope"), "unknown family"),
    ("colors.yaml", lambda d: d["colors"][0].update(rgb="red"), "#rrggbb"),
    ("categories.yaml", lambda d: d["categories"][1]["synonyms"].append("tee"), "names both"),
    ("categories.yaml", lambda d: d["categories"].append(dict(d["categories"][0])), "duplicate"),
    ("patterns.yaml", lambda d: d["patterns"][0].update(id="Not A Slug"), "slug"),
])
def test_bad_vocabulary_is_rejected(tmp_path, file, mutate, message):
    d = _copy_vocab(tmp_path)
    data = yaml.safe_load((d / file).read_text())
    mutate(data)
    (d / file).write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=message):
        load_vocabulary(d)

"""A short English description generated from the structured attributes.

It is what BM25 matches and what the text embedding encodes, so it uses the words shoppers use (labels and
the first synonyms), never catalogue text.
"""

from __future__ import annotations

from imgsearch_pipeline.vocab import Vocabulary


def describe(vocab: Vocabulary, category: str | None, colors: list[str], pattern: str | None,
             attributes: dict[str, str] | None = None) -> str:
    """E.g. "Green and white striped t-shirt (tee), long sleeve. Colours: green, white. Pattern: stripes"."""
    color_words = [vocab.color(c).label.lower() for c in colors]
    noun = "item"
    synonyms: tuple[str, ...] = ()
    if category:
        cat = vocab.category(category)
        noun, synonyms = cat.label.lower(), cat.synonyms[:2]
    pattern_word = ""
    pattern_syn: tuple[str, ...] = ()
    if pattern and pattern != "solid":
        pat = vocab.pattern(pattern)
        pattern_word, pattern_syn = pat.label.lower(), pat.synonyms[:2]
    head = " and ".join(color_words[:2])
    words = [w for w in (head, pattern_word, noun) if w]
    text = " ".join(words).capitalize()
    if synonyms:
        text += f" ({', '.join(synonyms)})"
    details = [v.replace("-", " ") for v in (attributes or {}).values()]
    if details:
        text += ", " + ", ".join(details)
    text += "."
    if color_words:
        families = sorted({vocab.family_of(c) for c in colors} - set(colors))
        text += " Colours: " + ", ".join(color_words + families) + "."
    if pattern == "solid":
        text += " Plain, no print."
    elif pattern_word:
        text += " Pattern: " + ", ".join((pattern_word, *pattern_syn)) + "."
    return text

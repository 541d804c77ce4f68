"""The controlled vocabulary shared by image analysis, storage and query parsing.

One module loads and validates the YAML files in `vocab/`, so that a model's answer, a stored row and a
parsed query can only ever speak the same words. `Vocabulary.version` is a hash of the loaded content; it is
stored beside every analysis so a vocabulary change is visible as staleness.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def normalize_term(text: str) -> str:
    """Canonical form for matching words: lower case, hyphens and underscores as spaces, single spaces."""
    text = text.lower().replace("_", " ").replace("-", " ").replace("’", "'")
    return " ".join(text.split())


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    label: str = ""
    synonyms: tuple[str, ...] = ()

    @field_validator("id")
    @classmethod
    def _id_is_slug(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", v):
            raise ValueError(f"vocabulary id {v!r} must be a lower-case slug")
        return v

    def terms(self) -> set[str]:
        """Every normalised phrase that names this entry."""
        return {normalize_term(t) for t in (self.id, self.label, *self.synonyms) if t}


class Category(_Entry):
    group: str


class Color(_Entry):
    family: str
    rgb: str

    @field_validator("rgb")
    @classmethod
    def _rgb_is_hex(cls, v: str) -> str:
        if not _HEX.match(v):
            raise ValueError(f"colour value {v!r} must look like #rrggbb")
        return v.lower()

    @property
    def rgb_tuple(self) -> tuple[int, int, int]:
        return int(self.rgb[1:3], 16), int(self.rgb[3:5], 16), int(self.rgb[5:7], 16)


class ColorFamily(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    synonyms: tuple[str, ...] = ()


class Pattern(_Entry):
    has_print: bool


class AttributeValue(_Entry):
    pass


class Attribute(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    applies_to: tuple[str, ...]
    values: tuple[AttributeValue, ...]


class Department(_Entry):
    pass


class Vocabulary(BaseModel):
    """The validated vocabulary; build it with `load_vocabulary`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: tuple[Category, ...]
    colors: tuple[Color, ...]
    families: dict[str, ColorFamily]
    patterns: tuple[Pattern, ...]
    print_terms: tuple[str, ...]
    attributes: dict[str, Attribute]
    departments: tuple[Department, ...]
    version: str = Field(default="", description="sha256 prefix of the canonical content")
    _term_index: dict[str, str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> Vocabulary:
        for kind, entries in (
            ("category", self.categories),
            ("colour", self.colors),
            ("pattern", self.patterns),
            ("department", self.departments),
        ):
            ids = [e.id for e in entries]
            dup = {i for i in ids if ids.count(i) > 1}
            if dup:
                raise ValueError(f"duplicate {kind} ids: {sorted(dup)}")
        groups = {c.group for c in self.categories}
        for c in self.colors:
            if c.family not in self.families:
                raise ValueError(f"colour {c.id!r} names unknown family {c.family!r}")
        for name, attr in self.attributes.items():
            unknown = set(attr.applies_to) - groups
            if unknown:
                raise ValueError(f"attribute {name!r} applies to unknown groups {sorted(unknown)}")
        # A phrase may name only one thing, or parsing a query would depend on file order.
        owner: dict[str, str] = {}
        for kind, term in self._all_terms():
            if owner.setdefault(term, kind) != kind:
                raise ValueError(f"term {term!r} names both {owner[term]} and {kind}")
        return self

    def _all_terms(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for c in self.categories:
            out += [(f"category:{c.id}", t) for t in c.terms()]
        for c in self.colors:
            out += [(f"color:{c.id}", t) for t in c.terms()]
        for fid, fam in self.families.items():
            terms = {normalize_term(t) for t in (fid, fam.label, *fam.synonyms)}
            # A family named like one of its shades ("blue") is the family when queried.
            out += [(f"family:{fid}", t) for t in terms]
        for p in self.patterns:
            out += [(f"pattern:{p.id}", t) for t in p.terms()]
        out += [("print", normalize_term(t)) for t in self.print_terms]
        for name, attr in self.attributes.items():
            for v in attr.values:
                out += [(f"attr:{name}:{v.id}", t) for t in v.terms()]
        for d in self.departments:
            out += [(f"department:{d.id}", t) for t in d.terms()]
        # Colour ids equal to a family id ("red", "blue") are resolved as the family, by design.
        family_terms = {t for k, t in out if k.startswith("family:")}
        return [(k, t) for k, t in out if not (k.startswith("color:") and t in family_terms)]

    # Lookups -------------------------------------------------------------------------------------------

    def term_index(self) -> dict[str, str]:
        """Phrase -> "kind:id" for every phrase in the vocabulary (what the query parser matches)."""
        if self._term_index is None:
            self._term_index = {term: kind for kind, term in self._all_terms()}
        return self._term_index

    def lookup(self, phrase: str) -> str | None:
        """"kind:id" for a phrase, accepting plurals ("dresses", "tshirts") of known terms."""
        index = self.term_index()
        term = normalize_term(phrase)
        for candidate in (term, *_singulars(term)):
            if candidate in index:
                return index[candidate]
        return None

    @property
    def category_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.categories)

    @property
    def color_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.colors)

    @property
    def pattern_ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.patterns)

    def category(self, cid: str) -> Category:
        return next(c for c in self.categories if c.id == cid)

    def color(self, cid: str) -> Color:
        return next(c for c in self.colors if c.id == cid)

    def pattern(self, pid: str) -> Pattern:
        return next(p for p in self.patterns if p.id == pid)

    def family_of(self, color_id: str) -> str:
        return self.color(color_id).family

    def colors_in_family(self, family: str) -> tuple[str, ...]:
        return tuple(c.id for c in self.colors if c.family == family)

    def resolve(self, kind: str, value: str) -> str | None:
        """Map a free-form value of one kind ("Navy Blue" as a colour) onto a vocabulary id, or None.

        Used to validate model output: anything that does not resolve is rejected, never stored raw.
        """
        found = self.lookup(value)
        if kind == "color" and found and found.startswith("family:"):
            fam = found.split(":", 1)[1]
            # The family's namesake shade when there is one ("red" -> red), else its first shade.
            shades = self.colors_in_family(fam)
            return fam if fam in shades else shades[0]
        if found and found.startswith(f"{kind}:"):
            return found.split(":")[-1]
        return None

    def resolve_attribute(self, name: str, value: str) -> str | None:
        found = self.lookup(value)
        prefix = f"attr:{name}:"
        return found[len(prefix):] if found and found.startswith(prefix) else None


def _singulars(term: str) -> list[str]:
    """Candidate singular forms of the last word of a phrase (English plurals as shoppers type them)."""
    head, _, last = term.rpartition(" ")
    forms = []
    if last.endswith("ies") and len(last) > 4:
        forms.append(last[:-3] + "y")
    if last.endswith(("ses", "xes", "ches", "shes")):
        forms.append(last[:-2])
    if last.endswith("s") and not last.endswith("ss") and len(last) > 2:
        forms.append(last[:-1])
    return [f"{head} {f}".strip() for f in forms]


def default_vocab_dir() -> Path:
    """`IMGSEARCH_VOCAB_DIR`, else the repository's `vocab/` folder."""
    env = os.environ.get("IMGSEARCH_VOCAB_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "vocab"


def load_vocabulary(directory: Path | None = None) -> Vocabulary:
    """Read, validate and version the vocabulary files; raises ValueError with the reason on bad data."""
    directory = directory or default_vocab_dir()
    data: dict = {}
    for name in ("categories", "colors", "patterns", "attributes", "departments"):
        path = directory / f"{name}.yaml"
        if not path.exists():
            raise ValueError(f"vocabulary file missing: {path}")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a mapping")
        data.update(loaded)
    vocab = Vocabulary.model_validate(data)
    canonical = json.dumps(vocab.model_dump(exclude={"version"}), sort_keys=True)
    return vocab.model_copy(update={"version": hashlib.sha256(canonical.encode()).hexdigest()[:12]})


@cache
def get_vocabulary() -> Vocabulary:
    """The process-wide vocabulary from the default folder."""
    return load_vocabulary()

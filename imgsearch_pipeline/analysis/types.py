"""What an analysis provider returns: validated against the vocabulary before anything is stored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from imgsearch_pipeline.vocab import get_vocabulary


class ColorShare(BaseModel):
    """One vocabulary colour and the share of the product's pixels it covers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    color: str
    coverage: float = Field(ge=0.0, le=1.0)

    @field_validator("color")
    @classmethod
    def _in_vocabulary(cls, v: str) -> str:
        resolved = get_vocabulary().resolve("color", v)
        if resolved is None:
            raise ValueError(f"colour {v!r} is not in the vocabulary")
        return resolved


class ImageAnalysis(BaseModel):
    """Structured attributes, description and vectors for one image.

    Values are vocabulary ids: the validators map synonyms ("crimson" -> red) and reject anything else, so a
    model's free text can never reach the database raw.
    """

    model_config = ConfigDict(extra="forbid")

    category: str | None = None
    category_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    colors: list[ColorShare] = Field(default_factory=list, description="primary colour first")
    pattern: str | None = None
    has_print: bool | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    description: str = Field(default="", max_length=2000)
    image_embedding: list[float] = Field(default_factory=list, description="image space: 'more like this'")
    text_embedding: list[float] = Field(default_factory=list, description="text space: residual query text")
    model_version: str

    @field_validator("category", "pattern")
    @classmethod
    def _in_vocabulary(cls, v: str | None, info) -> str | None:
        if v is None:
            return None
        resolved = get_vocabulary().resolve(info.field_name, v)
        if resolved is None:
            raise ValueError(f"{info.field_name} {v!r} is not in the vocabulary")
        return resolved

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, v: dict[str, str]) -> dict[str, str]:
        vocab = get_vocabulary()
        out = {}
        for name, value in v.items():
            if name not in vocab.attributes:
                raise ValueError(f"attribute {name!r} is not in the vocabulary")
            resolved = vocab.resolve_attribute(name, value)
            if resolved is None:
                raise ValueError(f"{name} value {value!r} is not in the vocabulary")
            out[name] = resolved
        return out

    @model_validator(mode="after")
    def _print_follows_pattern(self) -> ImageAnalysis:
        # has_print is implied by a known pattern; a provider may only state it alone when unsure of the pattern.
        if self.pattern is not None:
            self.has_print = get_vocabulary().pattern(self.pattern).has_print
        return self

    @property
    def color_ids(self) -> list[str]:
        return [c.color for c in self.colors]

    @property
    def color_families(self) -> list[str]:
        vocab = get_vocabulary()
        return sorted({vocab.family_of(c.color) for c in self.colors})

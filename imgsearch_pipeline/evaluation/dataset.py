"""A labelled image set on disk: `labels.csv` + `images/`, and a JSON-lines file of queries with relevance rules.

Format (see the evaluation data's README): one labels row per image with at least `image` (a path relative to
the set's folder) and `id`; a query line is `{"id", "query", "must": {column: [values]}, "must_not": {...}}`.
An image is relevant when each `must` column holds one of the listed values and no `must_not` column holds a
listed value. An image whose value is unknown (empty, or the shop's "NA") in any column the query names is
unjudged: it is dropped from the ranked list before scoring.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

UNKNOWN = frozenset({"", "NA"})


def is_unknown(value: str | None) -> bool:
    return value is None or value.strip() in UNKNOWN


class EvalQuery(BaseModel):
    """One line of a query file."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    query: str = Field(min_length=1)
    must: dict[str, list[str]] = Field(default_factory=dict)
    must_not: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def columns(self) -> set[str]:
        return set(self.must) | set(self.must_not)

    def judge(self, row: dict[str, str]) -> bool | None:
        """True relevant, False not relevant, None unjudged (a named column is unknown for this image)."""
        if any(is_unknown(row.get(c)) for c in self.columns):
            return None
        if any(row[c].strip() not in values for c, values in self.must.items()):
            return False
        return not any(row[c].strip() in values for c, values in self.must_not.items())


class LabelledSet(BaseModel):
    """The rows of a labelled set (one per image), keyed by the `id` column, in a stable order."""

    name: str
    root: Path
    columns: list[str]
    rows: dict[str, dict[str, str]]

    def image_path(self, image_id: str) -> Path:
        return self.root / self.rows[image_id]["image"]

    def relevant(self, query: EvalQuery) -> set[str]:
        """The judged relevant images of the whole set (the recall denominator)."""
        return {i for i, row in self.rows.items() if query.judge(row)}


def subset_order(image_id: str) -> str:
    """A stable pseudo-random order of ids (independent of the file's order), for `--limit` subsets."""
    return hashlib.sha256(image_id.encode()).hexdigest()


def load_labels(root: Path, limit: int | None = None) -> LabelledSet:
    """Read `labels.csv`; with `limit`, a deterministic spread-out subset of that many images."""
    path = root / "labels.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (a labelled set is labels.csv + images/)")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        missing = {"image", "id"} - set(columns)
        if missing:
            raise ValueError(f"{path} lacks the column(s) {sorted(missing)}")
        rows: dict[str, dict[str, str]] = {}
        for n, row in enumerate(reader, start=2):
            image_id = (row.get("id") or "").strip()
            if not image_id or "/" in image_id:
                raise ValueError(f"{path}:{n}: bad id {image_id!r}")
            if image_id in rows:
                raise ValueError(f"{path}:{n}: id {image_id} appears twice")
            rows[image_id] = {k: (v or "") for k, v in row.items() if k is not None}
    chosen = sorted(rows, key=subset_order)[:limit] if limit is not None else list(rows)
    chosen.sort(key=_id_key)
    labelled = LabelledSet(name=_name(root), root=root, columns=columns, rows={i: rows[i] for i in chosen})
    absent = [i for i in labelled.rows if not labelled.image_path(i).is_file()]
    if absent:
        raise FileNotFoundError(f"{len(absent)} images named in {path} are missing, e.g. "
                                f"{labelled.image_path(absent[0])}")
    return labelled


def load_queries(path: Path, columns: Iterable[str] | None = None) -> list[EvalQuery]:
    """Parse a query file; every problem is reported with its line, and columns are checked against the labels."""
    known = set(columns) if columns is not None else None
    queries: list[EvalQuery] = []
    errors: list[str] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            q = EvalQuery.model_validate(json.loads(line))
        except json.JSONDecodeError as e:
            errors.append(f"{path}:{n}: not JSON: {e.msg}")
            continue
        except ValidationError as e:
            errors.append(f"{path}:{n}: {str(e).splitlines()[0]}: {e.errors()[0]['msg']}")
            continue
        if known is not None and q.columns - known:
            errors.append(f"{path}:{n}: unknown column(s) {sorted(q.columns - known)}")
        if any(q.id == other.id for other in queries):
            errors.append(f"{path}:{n}: query id {q.id!r} appears twice")
        queries.append(q)
    if errors:
        raise ValueError("bad query file:\n  " + "\n  ".join(errors))
    if not queries:
        raise ValueError(f"{path} holds no queries")
    return queries


def _id_key(image_id: str) -> tuple[int, int | str]:
    return (0, int(image_id)) if image_id.isdigit() else (1, image_id)


def _name(root: Path) -> str:
    return root.resolve().name

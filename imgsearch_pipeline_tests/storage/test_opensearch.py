"""Index documents as the bulk path serialises them, on a real OpenSearch node and a real Postgres."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from pgvector import Vector

from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg


def _row(image_id: int, image_vector, text_vector) -> dict:
    return {
        "image_id": image_id, "product_id": "p1", "s3_key": f"k/{image_id}.jpg", "partition_key": "k/",
        "category": "dress", "category_confidence": 0.9, "colors": ["red"], "color_coverage": [0.8],
        "pattern": "floral", "has_print": True, "attributes": {"neckline": "v_neck"},
        "description": "Red floral dress, \u00e9t\u00e9 \"quoted\"", "product_name": "Dress", "brand": "B",
        "department": "women", "shop_category": None, "model_version": "m1",
        "analysed_at": datetime(2026, 1, 1, tzinfo=UTC), "image_embedding": image_vector,
        "text_embedding": text_vector,
    }


def test_vectors_read_from_postgres_reach_the_index_as_postgres_printed_them(new_database, opensearch_server):
    """The bulk path splices Postgres' text form of each vector into the document: what the index stores is the
    float32 vector Postgres holds, component for component."""
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=6).astype(np.float32), rng.normal(size=4).astype(np.float32)
    text[0] = 1e-7  # an exponent in the text form
    with pg.connect(new_database()) as conn:
        pg.migrate(conn)  # the vector extension
        printed = conn.execute("SELECT %s::vector::text AS i, %s::vector::text AS t",
                               (Vector(image.tolist()).to_text(), Vector(text.tolist()).to_text())).fetchone()
    row = _row(7, printed["i"], printed["t"])
    client = osx.make_client(opensearch_server)
    index = "test-bulk-text-vectors"
    client.indices.create(index=index, body=osx.mapping(6, 4))
    try:
        assert osx.bulk_index(client, index, [row, _row(8, printed["i"], None)]) == 2
        stored = client.get(index=index, id="7")["_source"]
        assert np.array_equal(np.asarray(stored["image_vector"], dtype=np.float32), image)
        assert np.array_equal(np.asarray(stored["text_vector"], dtype=np.float32), text)
        assert stored == osx.to_document(row)  # one document whichever way it is serialised
        assert "text_vector" not in client.get(index=index, id="8")["_source"]
    finally:
        client.indices.delete(index=index)


def test_a_vector_from_a_pgvector_object_serialises_like_its_text_form():
    values = [0.25, -1.5, 3.0]
    from_object = json.loads(osx.document_json(_row(1, Vector(values), Vector(values))))
    from_text = json.loads(osx.document_json(_row(1, "[0.25,-1.5,3]", "[0.25,-1.5,3]")))
    assert from_object == from_text and from_object["image_vector"] == values


@pytest.mark.parametrize("text", ['[1,2]}, "category": "x"', "1,2", '["a"]', "[1,2]\n{}"])
def test_text_that_is_not_a_vector_is_refused_not_spliced(text):
    with pytest.raises(ValueError, match="not a vector"):
        osx.document_json(_row(1, text, None))


def test_a_document_the_node_refuses_fails_the_bulk_with_its_reason(opensearch_server):
    client = osx.make_client(opensearch_server)
    index = "test-bulk-refused"
    client.indices.create(index=index, body=osx.mapping(2, 2))
    try:
        with pytest.raises(RuntimeError, match="1 documents failed to index.*dimension"):
            osx.bulk_index(client, index, [_row(1, "[1,2]", "[1,2]"), _row(2, "[1,2,3]", "[1,2]")])
    finally:
        client.indices.delete(index=index)

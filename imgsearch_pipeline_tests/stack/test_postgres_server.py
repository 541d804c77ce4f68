"""The embedded PostgreSQL server is started with buffers sized for the catalogue, not the compiled-in 128 MB."""

from __future__ import annotations

import psycopg

from imgsearch_pipeline.stack import postgres


def test_shared_buffers_are_a_quarter_of_memory_up_to_1_gb(postgres_server):
    with psycopg.connect(postgres_server) as conn:
        pages, unit = conn.execute("SELECT setting::bigint, unit FROM pg_settings WHERE name = 'shared_buffers'"
                                   ).fetchone()
    assert unit == "8kB"
    assert pages * 8 // 1024 == postgres.shared_buffers_mb()
    assert 128 <= postgres.shared_buffers_mb() <= 1024

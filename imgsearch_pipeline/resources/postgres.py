"""Postgres connection resource: any PostgreSQL/Aurora by DSN; migrations applied on first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from dagster import ConfigurableResource

from imgsearch_pipeline.storage import postgres as pg


class PostgresResource(ConfigurableResource):
    dsn: str

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        conn = pg.connect(self.dsn)
        try:
            pg.migrate(conn)
            yield conn
            conn.commit()
        finally:
            conn.close()

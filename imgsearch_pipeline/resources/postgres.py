"""Postgres connection resource: any PostgreSQL/Aurora by DSN; migrations applied on first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from dagster import ConfigurableResource

from imgsearch_pipeline.storage import postgres as pg

_MIGRATED: set[str] = set()  # DSNs this process has brought up to date (migrating per connection costs a query)


class PostgresResource(ConfigurableResource):
    dsn: str

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        conn = pg.connect(self.dsn)
        try:
            if self.dsn not in _MIGRATED:
                pg.migrate(conn)
                _MIGRATED.add(self.dsn)
            yield conn
            conn.commit()
        finally:
            conn.close()

"""The Alembic history builds exactly the schema the models declare, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from gateway.platform import SCHEMA, make_engine, upgrade_database


def test_upgrade_head_matches_models(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade_database(engine)
    upgrade_database(engine)  # idempotent: a second start changes nothing
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        diffs = compare_metadata(ctx, list(SCHEMA))  # type: ignore[arg-type]
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diffs == []
    assert {
        "organisations",
        "clients",
        "datasets",
        "dataset_fields",
        "audit_records",
        "crypto_keys",
        "crypto_data_keys",
        "alembic_version",
    } <= tables

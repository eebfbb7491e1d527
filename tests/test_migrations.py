"""The Alembic history builds exactly the schema the models declare, on every backend."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import inspect, text

from gateway import platform as platform_module
from gateway.platform import (
    SCHEMA,
    alembic_config,
    database_heads,
    make_engine,
    migration_scripts,
    pending_migrations,
    upgrade_database,
)


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


def _counting_upgrades(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = command.upgrade

    def upgrade(cfg: Any, revision: str, **kw: Any) -> None:
        calls.append(revision)
        real(cfg, revision, **kw)

    monkeypatch.setattr(command, "upgrade", upgrade)
    return calls


def test_a_database_at_the_heads_is_not_upgraded_again(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(db_url)
    calls = _counting_upgrades(monkeypatch)
    upgrade_database(engine)  # a new database: Alembic builds it
    assert calls == ["heads"]
    # A start on a current database runs none of Alembic's machinery: not even the
    # migration environment, broken here, is touched.
    monkeypatch.setattr(platform_module, "alembic_config", _broken_config)
    upgrade_database(engine)
    engine.dispose()
    assert calls == ["heads"]


def test_a_database_one_revision_behind_is_upgraded(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripts = migration_scripts()
    newest = scripts.get_revision("0031")
    assert newest is not None and "0031" in scripts.get_heads()
    engine = make_engine(db_url)
    cfg = alembic_config(db_url)
    with engine.begin() as conn:  # every head but 0031: one migration behind
        cfg.attributes["connection"] = conn
        for head in sorted(set(scripts.get_heads()) - {"0031"}):
            command.upgrade(cfg, head)
    assert pending_migrations(database_heads(engine) or ()) == ("0031",)
    calls = _counting_upgrades(monkeypatch)
    upgrade_database(engine)
    assert calls == ["heads"]
    assert pending_migrations(database_heads(engine) or ()) == ()
    engine.dispose()


def test_a_database_at_an_unknown_revision_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade_database(engine)
    with engine.begin() as conn:
        unknown = "UPDATE alembic_version SET version_num = '9999' WHERE version_num = '0031'"
        conn.execute(text(unknown))
    with pytest.raises(CommandError):
        upgrade_database(engine)
    engine.dispose()


def _broken_config(url: str) -> Any:
    raise AssertionError("the migration environment was used for a current database")

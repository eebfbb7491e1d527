"""Databases for tests of one package's tables: the same test on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, create_engine

from gateway.platform import database_url

# The params of an `engine` fixture: every test runs on both backends (STYLE habit 4).
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def metadata_engine(
    request: pytest.FixtureRequest, tmp_path: Path, metadata: MetaData, name: str
) -> Iterator[Engine]:
    """An engine on a new database (`request.param` names the backend) holding `metadata`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
    else:
        url = database_url(request.getfixturevalue("postgres_url"))
    created = create_engine(url)
    metadata.create_all(created)
    yield created
    created.dispose()

"""Prepared platforms: migrate and seed once per backend and settings, copy per test.

`initialise` (migrations, signing keys, the default policy bundle, demo organisations)
costs about a second per platform, most of it Alembic and scrypt. A test still needs a
platform of its own, so the first test of a kind builds one in a private home and
database and keeps it; every later test gets a copy: the home directory (root key,
credentials file, objects) copied file by file, the database copied as a file (SQLite)
or created from the prepared one as a template (PostgreSQL, CREATE DATABASE ... TEMPLATE).
Whatever `initialise` writes is copied, so the cache does not depend on what is seeded.
"""

from __future__ import annotations

import copy
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, make_url, text

from gateway.platform import build_platform, database_url, initialise
from gateway.settings import Settings

Creds = dict[str, dict[str, Any]]

# The home and database of a prepared platform are replaced per test; every other setting
# (suite, ledger hash, passphrase, ...) is part of what was prepared.
_ANY_HOME = Path("/prepared-home")


def backend(url: str) -> str:
    """'sqlite' or 'postgresql' (the dialect name of a database URL)."""
    return make_url(database_url(url)).get_backend_name()


def cache_key(settings: Settings) -> Settings | None:
    """What a prepared platform is reused for, or None if it cannot be copied.

    A root key in an HSM token is not in the home directory, so it is not copied.
    """
    if settings.key_backend != "local":
        return None
    if backend(settings.database_url) not in ("sqlite", "postgresql"):
        return None
    return settings.replace(home=_ANY_HOME, database_url=backend(settings.database_url))


@dataclass(frozen=True)
class Prepared:
    """A migrated and seeded platform at rest: its home, its database, its credentials."""

    home: Path
    database: str  # the SQLite file, or the PostgreSQL template database's name
    creds: Creds | None


class PreparedPlatforms:
    """The session's prepared platforms, one per `cache_key`."""

    def __init__(self, root: Path, admin: Callable[[], Engine]) -> None:
        self._root = root
        self._admin = admin
        self._prepared: dict[Settings, Prepared] = {}
        self._templates: list[str] = []

    def restore(self, settings: Settings) -> Creds | None:
        """Make `settings`' (empty) home and database a copy of a prepared platform.

        Returns the demo credentials `initialise` produced when it was prepared (a copy).
        """
        key = cache_key(settings)
        assert key is not None
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = self._prepare(settings)
        shutil.copytree(prepared.home, settings.home, dirs_exist_ok=True)
        target = make_url(database_url(settings.database_url))
        if target.get_backend_name() == "sqlite":
            assert target.database
            for suffix in ("", "-wal", "-shm"):  # a WAL left behind belongs to the copy
                source = Path(prepared.database + suffix)
                if source.exists():
                    shutil.copy2(source, target.database + suffix)
        else:
            name = target.database
            with self._admin().connect() as conn:
                # The test's database was created empty by postgres_url: replace it.
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{prepared.database}"'))
        return copy.deepcopy(prepared.creds)

    def _prepare(self, settings: Settings) -> Prepared:
        where = self._root / uuid.uuid4().hex[:12]
        home = where / "home"
        if backend(settings.database_url) == "sqlite":
            database = str(where / "pdx.db")
            url = f"sqlite:///{database}"
        else:
            database = f"pdx_test_tmpl_{uuid.uuid4().hex[:12]}"
            with self._admin().connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{database}"'))
            self._templates.append(database)
            base = settings.database_url.rpartition("/")[0]
            url = f"{base}/{database}"
        platform = build_platform(settings.replace(home=home, database_url=url))
        try:
            creds = initialise(platform)
        finally:
            platform.compute.runner.stop()
            platform.compute.nodes.close()
            platform.engine.dispose()  # no connection may stay open on a template
        return Prepared(home, database, creds)

    def close(self) -> None:
        if not self._templates:
            return
        with self._admin().connect() as conn:
            for name in self._templates:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def admin_engine(url: str) -> Engine:
    """An autocommit engine on the server's maintenance database (CREATE/DROP DATABASE)."""
    return create_engine(database_url(url), isolation_level="AUTOCOMMIT")

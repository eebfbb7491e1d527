"""Identity of the store: readiness, a database deleted while running or before a restart."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from exchange.errors import StoreUnavailable
from gateway.app import create_app
from gateway.platform import Platform, build_platform, database_url, initialise
from gateway.settings import Settings
from tests.conftest import EXAMPLE_CSV, REPO, login
from tests.helpers import warm_cli
from tests.test_store_hygiene import register


def pdx(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `pdx` command in a child process, on this test's home and database."""
    env = {
        **os.environ,
        "PDX_HOME": str(settings.home),
        "PDX_DATABASE_URL": settings.database_url,
        "PYTHONPATH": str(REPO),
    }
    return warm_cli.pdx(args, env=env, cwd=REPO, timeout=300)


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    """Every file under the home with its size and modification time (to prove no writes)."""
    return {
        str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(home.rglob("*"))
        if p.is_file()
    }


def tables(url: str) -> set[str]:
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def empty_database(url: str) -> None:
    """Delete the database (SQLite: the file; PostgreSQL: drop and create it empty)."""
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).unlink()
        for extra in ("-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + extra).unlink(missing_ok=True)
        return
    base, _, name = url.rpartition("/")
    admin = create_engine(database_url(f"{base}/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def test_readyz_is_public_and_lists_each_check(api: TestClient) -> None:
    """Before: there was no /readyz (404), only a /healthz that pinged the database."""
    r = api.get("/readyz")
    assert r.status_code == 200, r.text
    checks = {c["name"]: c["ok"] for c in r.json()["checks"]}
    assert checks == {
        "database": True,
        "store_identity": True,
        "ledger": True,
        "objects_writable": True,
        "free_space": True,
        "sandbox": True,
        "decision_logs": True,
    }


def test_readyz_reports_free_space_below_the_threshold(tmp_path: Path, db_url: str) -> None:
    settings = Settings(home=tmp_path / "home", database_url=db_url, min_free_bytes=1 << 62)
    platform = build_platform(settings)
    try:
        initialise(platform)
        with TestClient(create_app(platform)) as api:
            r = api.get("/readyz")
            assert r.status_code == 503
            failing = [c["name"] for c in r.json()["checks"] if not c["ok"]]
            assert failing == ["free_space"]
    finally:
        platform.engine.dispose()


def test_database_deleted_while_running_fails_writes_and_readiness(
    creds: dict[str, dict[str, Any]], platform: Platform, settings: Settings
) -> None:
    """Before: /healthz stayed 200 and writes were acknowledged into a deleted file."""
    sqlite = settings.database_url.startswith("sqlite")
    api = TestClient(create_app(platform))
    api.__enter__()
    try:
        provider = login(api, creds, "provider-transport")
        assert api.get("/readyz").status_code == 200
        if sqlite:
            empty_database(settings.database_url)
        else:  # PostgreSQL: the database replaced under the gateway (its identity row gone)
            engine = create_engine(database_url(settings.database_url))
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM store_identity"))
            engine.dispose()
        if sqlite:
            r = register(api, provider, EXAMPLE_CSV.read_bytes(), "after the deletion")
            assert r.status_code == 503, r.text
            assert r.json()["type"].endswith("/store-unavailable")
        # Each check is cached for up to two seconds: poll to a deadline.
        deadline = time.monotonic() + 10
        ready = api.get("/readyz")
        while ready.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            ready = api.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.headers["content-type"].startswith("application/problem+json")
        failing = {c["name"] for c in ready.json()["checks"] if not c["ok"]}
        assert "store_identity" in failing
    finally:
        if sqlite:  # the final seal on shutdown fails loudly too: nothing is written
            with pytest.raises(StoreUnavailable):
                api.__exit__(None, None, None)
        else:
            api.__exit__(None, None, None)


def test_restart_over_a_deleted_database_refuses_instead_of_reseeding(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform, settings: Settings
) -> None:
    """Before: `pdx init` seeded a new platform over the old objects and exited 0."""
    provider = login(api, creds, "provider-transport")
    r = register(api, provider, EXAMPLE_CSV.read_bytes(), "kept on disk")
    assert r.status_code == 201, r.text
    api.__exit__(None, None, None)
    platform.engine.dispose()
    empty_database(settings.database_url)
    before = snapshot(settings.home)
    done = pdx(settings, "init")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pdx: error: "), done.stderr
    assert "refusing" in lines[0] and "database" in lines[0]
    # Nothing written: the home is byte-for-byte as it was, the database still empty.
    assert snapshot(settings.home) == before
    if settings.database_url.startswith("sqlite"):
        assert not Path(settings.database_url.removeprefix("sqlite:///")).exists()
    else:
        assert tables(settings.database_url) == set()


def test_empty_home_against_a_populated_database_refuses(
    creds: dict[str, dict[str, Any]], platform: Platform, settings: Settings, tmp_path: Path
) -> None:
    """The reverse: a fresh PDX_HOME pointed at a store's database must not start."""
    if settings.database_url.startswith("sqlite"):
        pytest.skip("the SQLite database lives in its home; a new home has a new database")
    platform.engine.dispose()
    other = Settings(home=tmp_path / "other-home", database_url=settings.database_url)
    done = pdx(other, "init")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "has no store.json" in done.stderr
    assert not other.home.exists()  # not even the root key file was written


def test_fresh_home_and_database_initialise_and_restart_normally(
    tmp_path: Path, db_url: str
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=db_url)
    first = pdx(settings, "init")
    assert first.returncode == 0, first.stderr
    assert (settings.home / "store.json").exists()
    again = pdx(settings, "init")
    assert again.returncode == 0, again.stderr


def test_corrupted_database_file_is_refused_at_start(
    creds: dict[str, dict[str, Any]], platform: Platform, settings: Settings
) -> None:
    """Before: a traceback (sqlite3.DatabaseError) instead of a clear refusal."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("a corrupted file is SQLite's case; PostgreSQL's is the ledger check below")
    platform.engine.dispose()
    path = Path(settings.database_url.removeprefix("sqlite:///"))
    data = bytearray(path.read_bytes())
    data[:100] = b"\0" * 100  # the header gone
    path.write_bytes(bytes(data))
    before = snapshot(settings.home)
    done = pdx(settings, "init")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "corrupted" in lines[0], done.stderr
    assert snapshot(settings.home) == before


def test_ledger_altered_in_the_database_makes_readyz_fail(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform, settings: Settings
) -> None:
    """A stored leaf rewritten under the gateway: the tree no longer gives the signed root."""
    r = register(api, login(api, creds, "provider-transport"), EXAMPLE_CSV.read_bytes(), "x")
    assert r.status_code == 201
    platform.sealer.seal_now()
    assert api.get("/readyz").status_code == 200
    with platform.session() as s, s.begin():
        last = platform.ledger.sealed_size(s) - 1
        s.execute(
            text("UPDATE ledger_entries SET leaf = :leaf WHERE idx = :i"),
            {"leaf": b'{"forged":true}', "i": last},
        )
    deadline = time.monotonic() + 10
    ready = api.get("/readyz")
    while ready.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        ready = api.get("/readyz")
    assert ready.status_code == 503
    failing = {c["name"]: c["detail"] for c in ready.json()["checks"] if not c["ok"]}
    assert "does not match the signed root" in failing["ledger"]

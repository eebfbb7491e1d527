"""Upload leftovers are swept while serving; a read-only object store does not crash start-up."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

import exchange
from gateway.app import create_app
from gateway.platform import build_platform, initialise
from gateway.settings import Settings
from tests.conftest import EXAMPLE_CSV, login
from tests.helpers.i13_store import read_only
from tests.test_store_hygiene import register


def _stale(path: Path, age_s: float = 3600) -> Path:
    path.write_bytes(b"leftover")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_leftovers_are_swept_periodically_while_serving(tmp_path: Path, db_url: str) -> None:
    """Before: swept only at start-up, so a crash's leftovers stayed until a restart."""
    settings = Settings(
        home=tmp_path / "home", database_url=db_url, sweep_interval_s=1, sweep_grace_s=1
    )
    platform = build_platform(settings)
    creds = initialise(platform)
    assert creds is not None
    try:
        with TestClient(create_app(platform)) as api:
            provider = login(api, creds, "provider-transport")
            r = register(api, provider, EXAMPLE_CSV.read_bytes(), "kept")
            assert r.status_code == 201, r.text
            kept = platform.catalog.objects.root / f"{r.json()['id']}.pdxs"
            then = time.time() - 3600  # an old object with a row is never swept
            os.utime(kept, (then, then))
            # What a kill -9 leaves while the gateway keeps serving (another worker died).
            root = platform.catalog.objects.root
            partial = _stale(root / f"{uuid.uuid4()}.pdxs.partial")
            orphan = _stale(root / f"{uuid.uuid4()}.pdxs")
            fresh = root / f"{uuid.uuid4()}.pdxs.partial"  # an upload in progress elsewhere
            deadline = time.monotonic() + 20
            while (partial.exists() or orphan.exists()) and time.monotonic() < deadline:
                fresh.write_bytes(b"still streaming")  # touched: younger than the grace
                time.sleep(0.1)
            assert not partial.exists() and not orphan.exists()
            assert fresh.exists() and kept.exists()
            # The kept dataset still decrypts (its object was not touched).
            with platform.session() as s:
                plain = b"".join(exchange.iter_plaintext(platform.catalog, s, r.json()["id"]))
            assert plain == EXAMPLE_CSV.read_bytes()
    finally:
        platform.engine.dispose()


def test_read_only_objects_directory_reports_not_ready_instead_of_crashing(
    tmp_path: Path, db_url: str
) -> None:
    """Before: the start-up sweep's unlink raised EROFS and start-up crashed."""
    settings = Settings(home=tmp_path / "home", database_url=db_url)
    objects = settings.objects_dir
    objects.mkdir(parents=True)
    leftover = _stale(objects / f"{uuid.uuid4()}.pdxs.partial")
    with read_only(objects):
        platform = build_platform(settings)
        try:
            creds = initialise(platform)  # logs, does not raise
            assert creds is not None
            assert leftover.exists()  # could not be removed; left for a later sweep
            with TestClient(create_app(platform)) as api:
                assert api.get("/healthz").status_code == 200  # alive
                r = api.get("/readyz")
                assert r.status_code == 503, r.text
                assert r.headers["content-type"].startswith("application/problem+json")
                checks = {c["name"]: c for c in r.json()["checks"]}
                assert not checks["objects_writable"]["ok"]
                assert checks["database"]["ok"] and checks["ledger"]["ok"]
                provider = login(api, creds, "provider-transport")
                up = register(api, provider, EXAMPLE_CSV.read_bytes(), "refused")
                assert up.status_code == 503, up.text
                assert up.json()["type"].endswith("/store-unavailable")
            with platform.session() as s:
                assert s.scalar(select(func.count()).select_from(exchange.Dataset)) == 0
            assert [p.name for p in objects.iterdir()] == [leftover.name]
        finally:
            platform.engine.dispose()

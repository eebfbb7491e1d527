"""Backup and restore through the `pdx backup` command, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

import exchange
from audit.verify import verify_export
from gateway.platform import Platform, build_platform, database_url, initialise
from gateway.settings import Settings
from ledger import export
from tests.conftest import EXAMPLE_CSV, POSTGRES_URL, login
from tests.helpers.platforms import backend
from tests.test_store_hygiene import register
from tests.test_store_identity import pdx, tables


@pytest.fixture
def target(tmp_path: Path, settings: Settings) -> Iterator[Settings]:
    """An empty home and an empty database (same backend) to restore into."""
    home = tmp_path / "restored-home"
    if settings.database_url.startswith("sqlite"):
        yield Settings(home=home, database_url=f"sqlite:///{tmp_path / 'restored.db'}")
        return
    assert POSTGRES_URL
    admin = create_engine(database_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    name = f"pdx_restore_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        yield Settings(home=home, database_url=f"{base}/{name}")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def with_root_key(source: Settings, target: Settings) -> None:
    """The operator puts the root key in place: backups never contain it."""
    (target.home / "keys").mkdir(parents=True)
    shutil.copy2(source.keys_dir / "root.key", target.keys_dir / "root.key")


@pytest.fixture
def backed_up(
    api: TestClient,
    creds: dict[str, dict[str, Any]],
    platform: Platform,
    settings: Settings,
    tmp_path: Path,
) -> tuple[Path, str, int]:
    """A store with one dataset, backed up while the gateway is serving: (dir, id, size)."""
    r = register(api, login(api, creds, "provider-transport"), EXAMPLE_CSV.read_bytes(), "b")
    assert r.status_code == 201, r.text
    out = tmp_path / "backup"
    done = pdx(settings, "backup", "create", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "root key is not in it" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    # Keys only in wrapped form; no file named like a key outside the database tables.
    assert not any("root" in name for name in manifest["files"])
    return out, r.json()["id"], int(manifest["tree_size"])


# Per backend, a store and the backup made of it (by the first test that made one): the
# backup directory, the store's settings (its root key), the dataset's id. Never modified.
Pristine = dict[str, tuple[Path, Settings, str]]


@pytest.fixture(scope="module")
def pristine() -> Pristine:
    return {}


@pytest.fixture
def backup_copy(
    request: pytest.FixtureRequest, pristine: Pristine, settings: Settings, tmp_path: Path
) -> tuple[Path, Settings, str]:
    """A copy of this backend's backup, this test's to tamper with: (dir, source, id).

    Making a backup costs a seeded platform, a registered dataset and a `pdx backup create`
    (about 10 s); the tampered-backup cases each change one file of their own copy.
    """
    if backend(settings.database_url) not in pristine:
        out, dataset_id, _ = request.getfixturevalue("backed_up")
        pristine[backend(settings.database_url)] = (out, settings, dataset_id)
    out, source, dataset_id = pristine[backend(settings.database_url)]
    copy = tmp_path / "backup-copy"
    shutil.copytree(out, copy)
    return copy, source, dataset_id


def test_backup_round_trip_restores_a_decryptable_verifiable_store(
    backed_up: tuple[Path, str, int],
    pristine: Pristine,
    settings: Settings,
    target: Settings,
) -> None:
    out, dataset_id, tree_size = backed_up
    verified = pdx(settings, "backup", "verify", str(out))
    assert verified.returncode == 0, verified.stderr
    with_root_key(settings, target)
    restored = pdx(target, "backup", "restore", str(out))
    assert restored.returncode == 0, restored.stderr
    platform = build_platform(target)
    try:
        assert initialise(platform) is None  # the same store: nothing re-seeded
        with platform.session() as s:
            plain = b"".join(exchange.iter_plaintext(platform.catalog, s, dataset_id))
            assert plain == EXAMPLE_CSV.read_bytes()
            assert platform.ledger.sealed_size(s) >= tree_size
            export(s, platform.ledger, target.home.parent / "restored-export")
        key = json.loads((out / "manifest.json").read_text())["verifier_key"]
        report = verify_export(target.home.parent / "restored-export", [key])
        assert report.ok, report.problem
        assert report.tree_size >= tree_size
    finally:
        platform.engine.dispose()
    # Verified and restored: the tampered-backup cases start from copies of this one.
    pristine.setdefault(backend(settings.database_url), (out, settings, dataset_id))


@pytest.mark.parametrize("what", ["object", "table", "manifest", "ledger"])
def test_tampered_backup_is_refused(
    backup_copy: tuple[Path, Settings, str], settings: Settings, target: Settings, what: str
) -> None:
    out, source, dataset_id = backup_copy
    if what == "object":
        path = out / "objects" / f"{dataset_id}.pdxs"
        data = bytearray(path.read_bytes())
        data[100] ^= 1
        path.write_bytes(bytes(data))
    elif what == "table":
        path = out / "database" / "datasets.jsonl"
        path.write_text(path.read_text().replace('"level": "general-4"', '"level": "general-1"'))
    elif what == "manifest":
        path = out / "manifest.json"
        doc = json.loads(path.read_text())
        doc["tree_size"] += 100
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    else:  # the last ledger entry dropped (a rolled-back log)
        path = out / "ledger" / "entries.jsonl"
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(lines[:-1]))
    done = pdx(settings, "backup", "verify", str(out))
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("pdx: error: ")
    with_root_key(source, target)
    refused = pdx(target, "backup", "restore", str(out))
    assert refused.returncode == 2
    assert not (target.home / "store.json").exists()
    assert tables(target.database_url) <= {"alembic_version"} or not tables(target.database_url)


def test_restore_below_the_published_tree_size_is_refused(
    backed_up: tuple[Path, str, int],
    api: TestClient,
    creds: dict[str, dict[str, Any]],
    platform: Platform,
    settings: Settings,
    target: Settings,
) -> None:
    """A checkpoint served after the backup is a promise: restoring the backup would fork."""
    out, _, tree_size = backed_up
    # More happens after the backup, and an auditor fetches the newer checkpoint.
    more = register(api, login(api, creds, "provider-transport"), EXAMPLE_CSV.read_bytes(), "c")
    assert more.status_code == 201
    platform.sealer.seal_now()
    served = api.get("/v1/ledger/checkpoint", headers=login(api, creds, "auditor"))
    assert served.status_code == 200, served.text
    published = json.loads(settings.published_path.read_text())["tree_size"]
    assert published > tree_size
    with_root_key(settings, target)
    refused = pdx(
        target, "backup", "restore", str(out), "--published", str(settings.published_path)
    )
    assert refused.returncode == 2, refused.stdout
    assert "fork" in refused.stderr
    assert not (target.home / "store.json").exists()
    if target.database_url.startswith("sqlite"):
        assert not Path(target.database_url.removeprefix("sqlite:///")).exists()
    else:
        assert tables(target.database_url) == set()

"""Crash hygiene of uploads: full disks, read-only object stores, leftovers swept while serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import crypto
import exchange
from gateway.platform import Platform
from gateway.settings import Settings
from tests.conftest import EXAMPLE_CSV, login
from tests.helpers.i13_store import small_tmpfs

META = (
    '{"name": "%s", "classification_path": ["transport", "transit"], "level": "general-4",'
    ' "impact_object": "individual-rights", "impact_degree": "serious",'
    ' "source_agency": "Bureau", "accountable_department": "Office", "pi": true,'
    ' "sensitive_pi": true, "share_attribute": "conditional", "open_attribute": "conditional"}'
)


def big_csv(min_bytes: int) -> bytes:
    """The example CSV repeated (data rows only after the first copy) to `min_bytes`."""
    text = EXAMPLE_CSV.read_bytes()
    header, _, rows = text.partition(b"\n")
    out = bytearray(text)
    while len(out) < min_bytes:
        out += rows
    return bytes(out)


def register(api: TestClient, headers: dict[str, str], content: bytes, name: str) -> Any:
    files: dict[str, Any] = {
        "metadata": (None, META % name, "application/json"),
        "file": ("data.csv", content, "text/csv"),
    }
    return api.post("/v1/datasets", headers=headers, files=files)


def state(platform: Platform) -> tuple[int, int, int, list[str]]:
    """(datasets, data keys, dataset.registered entries, files in the objects dir)."""
    with platform.session() as s:
        datasets = s.scalar(select(func.count()).select_from(exchange.Dataset)) or 0
        keys = s.scalar(select(func.count()).select_from(crypto.models.DataKeyRecord)) or 0
        entries = len(platform.ledger.entries(s, type="dataset.registered"))
    files = sorted(p.name for p in platform.catalog.objects.root.iterdir())
    return datasets, keys, entries, files


# -- a full disk -----------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Iterator[Settings]:
    """The objects directory on a real 3 MiB tmpfs: a large upload fills it."""
    home = tmp_path / "home"
    with small_tmpfs(home / "objects", "3m"):
        yield Settings(home=home, database_url=db_url, max_upload_bytes=64 << 20)


def test_full_disk_upload_answers_507_and_leaves_nothing(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform
) -> None:
    """Before: the partial file stayed (abort's close re-raised ENOSPC before discard), 500."""
    provider = login(api, creds, "provider-transport")
    before = state(platform)
    r = register(api, provider, big_csv(8 << 20), "too big for the disk")
    assert r.status_code == 507, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/insufficient-storage")
    # No row, no data key, no ledger entry, and no partial file holding the disk full.
    assert state(platform) == before
    assert before[3] == []
    # The disk is usable again at once: a small upload succeeds.
    small = register(api, provider, EXAMPLE_CSV.read_bytes(), "fits")
    assert small.status_code == 201, small.text
    datasets, _, entries, files = state(platform)
    assert datasets == entries == before[0] + 1
    assert files == [f"{small.json()['id']}.pdxs"]

"""Committed ledger entries are remembered and served without a database read.

An index not yet appended must not be remembered as missing, and a remembered entry
must be byte-for-byte the stored one.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from gateway.platform import Platform
from tests.conftest import EXAMPLE_CSV, login
from tests.test_api_datasets import metadata, register


def test_an_index_read_before_it_exists_is_served_once_appended(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform
) -> None:
    auditor = login(api, creds, "auditor")
    provider = login(api, creds, "provider-transport")
    with platform.session() as session:
        next_index = platform.ledger.size(session)
    assert api.get(f"/v1/ledger/entries/{next_index}", headers=auditor).status_code == 404
    assert platform.ledger.committed_entry(next_index) is None

    r = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata())
    assert r.status_code == 201, r.text
    index = r.json()["ledger_index"]
    assert index >= next_index
    first = api.get(f"/v1/ledger/entries/{index}", headers=auditor)
    assert first.status_code == 200, first.text
    assert first.json()["record"]["type"] == "dataset.registered"

    remembered = platform.ledger.committed_entry(index)
    with platform.session() as session:
        stored = platform.ledger.entry(session, index)
    assert remembered == stored
    again = api.get(f"/v1/ledger/entries/{index}", headers=auditor)
    assert again.content == first.content


def test_a_remembered_entry_still_needs_the_read_permission(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform
) -> None:
    auditor = login(api, creds, "auditor")
    assert api.get("/v1/ledger/entries/0", headers=auditor).status_code == 200
    assert platform.ledger.committed_entry(0) is not None
    assert api.get("/v1/ledger/entries/0").status_code == 401

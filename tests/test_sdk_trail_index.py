"""The trail's party index: each party lists the entries that concern it, keyed, with a total."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from exchange.party_trail import TrailParty
from gateway.platform import Platform
from tests.helpers.api import assert_problem, login
from tests.helpers.clocks import eventually
from tests.helpers.i15_sdk import demo, new_client, sdk_login
from tests.test_api_contracts import dataset_metadata, measure_csv

from pdx_client import ApiError, CheckpointStore, Enterprise, Provider  # isort: skip

PURPOSE = "readmission risk research"
MIGRATION = (
    Path(__file__).resolve().parents[1] / "migrations" / "versions" / "0023_trail_parties.py"
)


def _requested(capi: TestClient, creds: dict[str, Any]) -> dict[str, Any]:
    """Two hospitals' data, agreements, and a stats.mean request awaiting their approval."""
    ent_org, ent_id, ent_secret = new_client(capi, creds, "Index Analytics", "enterprise")
    enterprise = sdk_login(capi, Enterprise, ent_id, ent_secret)
    providers: list[Provider] = []
    inputs: list[str] = []
    for i, name in enumerate(("Eastbank", "Westbank")):
        org, cid, secret = new_client(capi, creds, f"{name} Hospital", "provider")
        provider = sdk_login(capi, Provider, cid, secret)
        meta = json.loads(dataset_metadata(f"{name} wards", "general-4"))
        ds = provider.register(meta, measure_csv(i, 30))
        deal = enterprise.propose_agreement(org, [ds.id], PURPOSE, agreement_id=f"DUA-{i}")
        provider.sign_agreement(deal.id)
        providers.append(provider)
        inputs.append(ds.id)
    params = {"columns": ["systolic_bp"], "clip": [60.0, 240.0]}
    job = enterprise.request("stats.mean", inputs, params, PURPOSE)
    job = enterprise.wait(job.id, {"awaiting_approval"}, timeout=120)
    assert job.stage == "awaiting_approval"
    return {"enterprise": enterprise, "providers": providers, "job": job, "ent_org": ent_org}


def test_each_party_lists_a_computations_entries_keyed_with_total_and_cursor(
    capi: TestClient, creds: dict[str, Any], platform: Platform, tmp_path: Path
) -> None:
    """Before the index a provider's trail held only what its own client did (the
    requester's computation entries were missing) and `total` was null."""
    setup = _requested(capi, creds)
    enterprise: Enterprise = setup["enterprise"]
    providers: list[Provider] = setup["providers"]
    comp_id = setup["job"].id
    for party in (enterprise, *providers):
        me = party.me().org_id
        first = party.session.get("/v1/trail/entries", limit=2)
        assert isinstance(first["total"], int)
        # Every page by cursor, two at a time, is the whole listing, in index order.
        paged = [e["index"] for e in first["items"]]
        nxt = first["next"]
        while nxt:
            page = party.session.request("GET", nxt).json()
            assert page["total"] == first["total"]
            paged += [e["index"] for e in page["items"]]
            nxt = page["next"]
        entries = party.trail.entries()
        assert [e.index for e in entries] == paged == sorted(paged)
        assert first["total"] == len(paged)
        assert all(me in e.parties for e in entries)
        mine = [e for e in entries if e.record.get("object_id") == comp_id]
        types = [e.record["type"] for e in mine]
        assert types == ["computation.requested", "computation.awaiting_approval"], types
        # One entry by index: the provider reads the requester's entry (it concerns it).
        one = party.trail.entry(mine[0].index)
        assert me in one.parties and enterprise.me().org_id in one.parties
    # A third organisation neither lists nor reads them.
    other = demo(capi, creds, Provider, "provider-health")
    assert comp_id not in [e.record.get("object_id") for e in other.trail.entries()]
    requested = enterprise.trail.entries()[-2].index
    with pytest.raises(ApiError) as refused:
        other.trail.entry(requested)
    assert refused.value.status == 403 and refused.value.code == "forbidden"
    r = capi.get(
        "/v1/trail/entries",
        params={"org": providers[0].me().org_id},
        headers=login(capi, creds, "provider-health"),
    )
    assert_problem(r, 403, "forbidden")
    # A provider verifies the computation's entries against the public checkpoint.
    with platform.session() as s:
        last = platform.ledger.size(s) - 1
    assert eventually(lambda: _sealed(platform, last))
    vkey = capi.get("/v1/ledger/verifier-key").text.strip()
    checked = providers[1].trail.verify(verifier_key=vkey, store=CheckpointStore(tmp_path / "c"))
    assert requested in checked.verified


def _sealed(platform: Platform, index: int) -> bool:
    with platform.session() as s:
        return platform.ledger.sealed_size(s) > index


def test_the_migration_backfills_what_trail_record_indexes(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """Migration 0023's backfill rebuilds exactly the rows `Trail.record` wrote."""
    _requested(capi, creds)
    spec = importlib.util.spec_from_file_location("migration_0023", MIGRATION)
    assert spec and spec.loader
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    with platform.session() as s, s.begin():
        written = set(s.execute(select(TrailParty.org_id, TrailParty.ledger_index)).tuples())
        s.execute(delete(TrailParty))
        rebuilt = {
            (str(r["org_id"]), int(str(r["ledger_index"])))
            for r in migration._backfill_rows(s.connection())
        }
    assert len(written) > 10
    assert rebuilt == written

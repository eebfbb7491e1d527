"""/v1/ledger over HTTP: signed-note checkpoints, entries, proofs, and the live monitor."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from audit.monitor import monitor
from gateway.platform import Platform
from ledger.checkpoint import Checkpoint
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.note import open_note, parse_verifier_key
from tests.conftest import EXAMPLE_CSV, login
from tests.helpers.api import PROBLEM
from tests.test_api_datasets import metadata, register
from tests.test_ledger_log import append


def b64d(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def test_auditor_verifies_a_registration_entry_from_the_checkpoint(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform
) -> None:
    auditor = login(api, creds, "auditor")
    provider = login(api, creds, "provider-transport")
    earlier_note = api.get("/v1/ledger/checkpoint", headers=auditor)
    assert earlier_note.status_code == 200
    assert earlier_note.headers["content-type"].startswith("text/plain")
    r = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata())
    assert r.status_code == 201, r.text
    ds = r.json()
    platform.sealer.seal_now()

    vkey = api.get("/v1/ledger/verifier-key", headers=provider).text.strip()
    assert vkey.startswith(platform.settings.ledger_origin + "+")
    verifier = parse_verifier_key(vkey)
    text, signers = open_note(api.get("/v1/ledger/checkpoint", headers=auditor).content, [verifier])
    assert signers == [platform.settings.ledger_origin]
    checkpoint = Checkpoint.parse(text)
    earlier = Checkpoint.parse(open_note(earlier_note.content, [verifier])[0])

    found = api.get(
        "/v1/ledger/entries",
        params={"type": "dataset.registered", "object_id": ds["id"]},
        headers=auditor,
    ).json()["items"]
    assert [e["index"] for e in found] == [ds["ledger_index"]]
    entry = api.get(f"/v1/ledger/entries/{ds['ledger_index']}", headers=auditor).json()
    leaf = base64.b64decode(entry["leaf"])
    assert json.loads(leaf) == entry["record"]
    assert entry["record"]["type"] == "dataset.registered"
    assert entry["record"]["subject_org"] == creds["provider-transport"]["org_id"]
    assert entry["record"]["payload_digest"] == ds["digests"]["sha256"]

    h = platform.ledger.hasher
    proof = api.get(
        "/v1/ledger/proof/inclusion",
        params={"index": entry["index"], "tree_size": checkpoint.size},
        headers=auditor,
    ).json()
    verify_inclusion(
        h,
        entry["index"],
        checkpoint.size,
        h.leaf(leaf),
        b64d(proof["hashes"]),
        checkpoint.root_hash,
    )
    consistency = api.get(
        "/v1/ledger/proof/consistency",
        params={"first": earlier.size, "second": checkpoint.size},
        headers=auditor,
    ).json()
    verify_consistency(
        h,
        earlier.size,
        checkpoint.size,
        earlier.root_hash,
        checkpoint.root_hash,
        b64d(consistency["hashes"]),
    )
    block = api.get("/v1/ledger/blocks/0", headers=auditor).json()
    assert block["height"] == 0 and block["first_index"] == 0


def test_only_auditors_read_the_ledger_and_bad_input_is_a_problem(
    api: TestClient, creds: dict[str, dict[str, Any]]
) -> None:
    provider = login(api, creds, "provider-transport")
    auditor = login(api, creds, "auditor")
    # The checkpoint itself is public (issue 19: it is published with its cosignatures).
    for path in ("/v1/ledger/entries", "/v1/ledger/blocks/0"):
        r = api.get(path, headers=provider)
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    cases = [
        ("/v1/ledger/entries/999999", 404, "ledger-entry-not-found"),
        ("/v1/ledger/blocks/999999", 404, "ledger-block-not-found"),
        ("/v1/ledger/proof/inclusion?index=5&tree_size=999999", 422, "ledger-invalid-range"),
        ("/v1/ledger/proof/inclusion?index=9&tree_size=3", 422, "ledger-invalid-range"),
        ("/v1/ledger/proof/consistency?first=9&second=3", 422, "ledger-invalid-range"),
        ("/v1/ledger/proof/inclusion?index=-1&tree_size=3", 422, "validation-error"),
        ("/v1/ledger/entries?start=abc", 422, "validation-error"),
    ]
    for path, status, code in cases:
        r = api.get(path, headers=auditor)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith("/" + code), r.json()


def test_monitor_follows_the_log_and_detects_a_fork(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform, tmp_path: Path
) -> None:
    auditor = login(api, creds, "auditor")
    api.headers.update(auditor)
    key = api.get("/v1/ledger/verifier-key").text
    state = tmp_path / "monitor.json"
    first = monitor(api, [key], state)
    assert first.ok, first.problem
    append(platform, 1500)
    platform.sealer.seal_now()
    second = monitor(api, [key], state)
    assert second.ok, second.problem
    assert second.entries == 1500 and second.tree_size == first.tree_size + 1500
    # The remembered tree is not a prefix of what the server now shows: a fork.
    remembered = json.loads(state.read_text())
    remembered["root"] = base64.b64encode(bytes(32)).decode()
    state.write_text(json.dumps(remembered))
    append(platform, 3)
    platform.sealer.seal_now()
    forked = monitor(api, [key], state)
    assert not forked.ok and "fork" in (forked.problem or "")

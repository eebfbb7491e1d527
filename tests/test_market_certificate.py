"""Data-asset registration certificates: issued for listed products, verified offline by the CLI."""

from __future__ import annotations

import argparse
import copy
import json
import tomllib
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import gateway.cli
from gateway.platform import Platform
from tests.helpers.api import assert_problem
from tests.helpers.i17_market import list_product, party, product_body
from tests.test_market_flow import ledger_types, register

REPO = Path(__file__).resolve().parents[1]


class _EntryPoint:
    def __init__(self, target: str) -> None:
        self.target = target

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        return getattr(import_module(module), attr)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`pdx` with the plugins pyproject.toml declares (the shared install predates them)."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    targets = list(declared["pdx.cli"].values())
    assert "gateway.cli._market:register" in targets

    def entry_points(*, group: str) -> list[_EntryPoint]:
        return [_EntryPoint(t) for t in targets] if group == "pdx.cli" else []

    monkeypatch.setattr(gateway.cli, "entry_points", entry_points)
    return gateway.cli.main


def test_certificate_verifies_offline_and_tampering_is_caught(
    api: TestClient,
    creds: dict[str, Any],
    platform: Platform,
    tmp_path: Path,
    cli: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prov = party(api, creds, "provider-transport")
    ds = register(api, prov.headers, "ridership", "general-2", "conditional")
    r = api.post("/v1/market/products", headers=prov.headers, json=product_body([ds["id"]]))
    draft_id = r.json()["id"]
    assert_problem(
        api.post(f"/v1/market/products/{draft_id}/certificate", headers=prov.headers), 409
    )
    product = list_product(api, prov, product_body([ds["id"]]))
    other = party(api, creds, "provider-health", seed=5)
    url = f"/v1/market/products/{product['id']}/certificate"
    assert_problem(api.post(url, headers=other.headers), 403)  # not its product
    r = api.post(url, headers=prov.headers)
    assert r.status_code == 201, r.text
    issued = r.json()
    cert = issued["certificate"]
    assert cert["holder"]["name"] == "Municipal Transport Bureau" and cert["holder"]["credit_code"]
    [entry] = cert["datasets"]
    assert (entry["id"], entry["level"], entry["rows"]) == (ds["id"], "general-2", 40)
    assert entry["digest"].startswith("sha256:") and len(entry["digest"]) == 71
    assert ledger_types(platform, cert["id"]) == ["market.certificate_issued"]
    reader = prov.headers
    platform.sealer.seal_now()  # (the background sealer may have sealed it already)
    bundle = api.get(f"/v1/market/certificates/{cert['id']}", headers=reader).json()
    assert bundle["proof"]["tree_size"] > bundle["ledger_index"]
    key = api.get("/v1/ledger/verifier-key").text.strip()
    key_file = tmp_path / "ledger.key"
    key_file.write_text(key + "\n")

    def verify(doc: dict[str, Any]) -> tuple[int, str]:
        path = tmp_path / "cert.json"
        path.write_text(json.dumps(doc, ensure_ascii=False))
        code = cli(["market", "certificate", "verify", str(path), "--verifier-key", str(key_file)])
        return code, capsys.readouterr().out

    code, out = verify(bundle)
    assert code == 0, out
    assert "VERIFIED" in out and "(4) inclusion proof" in out and "(5) checkpoint" in out

    def tampered(change: Any) -> str:
        doc = copy.deepcopy(bundle)
        change(doc)
        code, out = verify(doc)
        assert code == 1, out
        return out

    def other_digest(d: dict[str, Any]) -> None:
        d["certificate"]["datasets"][0]["digest"] = "sha256:" + "0" * 64

    assert "(1)" in tampered(other_digest)

    def resign(d: dict[str, Any]) -> None:
        from exchange.market._common import digest_of

        d["certificate"]["rights"]["granted"] = ["product_operation"]
        d["digest"] = digest_of(d["certificate"])

    assert "(2)" in tampered(resign)  # a new digest without the platform's signature

    def other_leaf_index(d: dict[str, Any]) -> None:
        d["proof"]["index"] = max(0, d["proof"]["index"] - 1)

    assert "FAILED" in tampered(other_leaf_index)

    def other_path(d: dict[str, Any]) -> None:
        d["proof"]["inclusion"] = list(reversed(d["proof"]["inclusion"])) + [
            d["proof"]["inclusion"][0]
        ]

    assert "FAILED" in tampered(other_path)
    # Another log's key does not vouch for this checkpoint.
    forged = key.split("+")
    forged[0] = "another.example/log"
    (tmp_path / "ledger.key").write_text("+".join(forged))
    code, out = verify(bundle)
    assert code == 1 and "FAILED" in out
    # The verb is there for users of `pdx --help` too.
    parser = gateway.cli.build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert isinstance(verbs["market"], argparse.ArgumentParser)

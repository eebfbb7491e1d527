"""`pdx market ...` against a real server (uvicorn subprocess): the main verbs, exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import gateway.cli
from tests.helpers.clocks import eventually
from tests.helpers.i15_sdk import SDK  # noqa: F401  (puts the SDK on sys.path)
from tests.helpers.i17_market import credit_code, offer, product_body
from tests.helpers.server import RealServer, start_server
from tests.test_api_contracts import measure_csv
from tests.test_sdk_market import dataset_meta

import pdx_client.cli  # isort: skip
from pdx_client.cli import main  # isort: skip

PURPOSE = "客流分析研究"


class _EntryPoint:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def load(self) -> Any:
        return self.fn


@pytest.mark.parametrize("sdk_first", [True, False])
def test_the_market_group_is_shared_whichever_package_registers_first(
    sdk_first: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's `certificate verify` and the SDK's verbs meet in one `pdx market`."""
    from gateway.cli import _market

    plugins = [pdx_client.cli.register, _market.register]
    if not sdk_first:
        plugins.reverse()
    monkeypatch.setattr(
        gateway.cli,
        "entry_points",
        lambda *, group: [_EntryPoint(f) for f in plugins] if group == "pdx.cli" else [],
    )
    parser = gateway.cli.build_parser()
    for argv in (
        ["market", "catalog", "客流", "--json"],
        ["market", "negotiate", "agree", "n-1"],
        ["market", "certificate", "issue", "p-1"],
        ["market", "certificate", "verify", "c.json", "--verifier-key", "k"],
    ):
        args = parser.parse_args(argv)
        assert callable(args.func)
    verify = parser.parse_args(["market", "certificate", "verify", "c.json", "--verifier-key", "k"])
    assert verify.func.__module__ == ("pdx_client.cli._verbs" if sdk_first else _market.__name__)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    srv = start_server(tmp_path_factory.mktemp("sdk-market-cli") / "home")
    try:
        yield srv
    finally:
        srv.stop()


class Pdx:
    """`pdx` as one organisation: its own config dir (profile, party key)."""

    def __init__(self, config: Path, capsys: Any, mp: pytest.MonkeyPatch) -> None:
        self.config, self.capsys, self.mp = config, capsys, mp

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.mp.setenv("PDX_CONFIG_DIR", str(self.config))
        code = main(list(args))
        out = self.capsys.readouterr()
        return code, out.out, out.err

    def ok(self, *args: str) -> Any:
        code, out, err = self(*args, "--json")
        assert code == 0, err
        return json.loads(out)

    def login(self, server: RealServer, name: str) -> str:
        c = json.loads((server.home / "demo-credentials.json").read_text())[name]
        code, _, err = self(
            "login", "--url", server.url, "--client-id", c["client_id"],
            f"--client-secret={c['client_secret']}",
        )  # fmt: skip
        assert code == 0, err
        org: str = json.loads((self.config / "profile.json").read_text())["org_id"]
        return org


def test_market_verbs_from_listing_to_a_verified_certificate(
    server: RealServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    op, prov, ent = (Pdx(tmp_path / n, capsys, monkeypatch) for n in ("op", "prov", "ent"))
    op.login(server, "operator-admin")
    prov_org = prov.login(server, "provider-transport")
    ent_org = ent.login(server, "enterprise-fintech")

    # Signing before a key exists here is a usage error (exit 2), with one line.
    code, _, err = ent("market", "negotiate", "verify", "nope")
    assert code == 2 and "pdx market keys register" in err and len(err.strip().splitlines()) == 1
    for seed, org in enumerate((prov_org, ent_org), start=1):
        assert op.ok("market", "party", "verify", org, "--credit-code", credit_code(seed))[
            "verified"
        ]
    keys = {}
    for who, org in ((prov, prov_org), (ent, ent_org)):
        out = who.ok("market", "keys", "register")
        keys[org] = out["key_id"]
        pem = who.config / "partykeys" / f"{org}.pem"
        assert pem.stat().st_mode & 0o077 == 0  # the private key stays here, this user's only
        assert who.ok("market", "keys", "register")["key_id"] == out["key_id"]  # kept, not remade
    assert keys[ent_org] in {k["id"] for k in prov.ok("market", "party", "show", ent_org)["keys"]}

    meta, data = tmp_path / "meta.json", tmp_path / "data.csv"
    meta.write_text(json.dumps(dataset_meta("cli ridership")))
    data.write_text(measure_csv(11, 40))
    ds = prov.ok("datasets", "register", str(data), "--metadata", f"@{meta}")
    body = tmp_path / "product.json"
    body.write_text(json.dumps(product_body([ds["id"]]), ensure_ascii=False))
    draft = prov.ok("market", "products", "create", "--body", f"@{body}")
    listed = prov.ok("market", "products", "list", draft["id"])
    assert listed["state"] == "listed" and listed["precheck"]["passed"]

    found = ent.ok("market", "catalog", "客流", "--operator", "stats.count")
    assert found["total"] >= 1 and draft["id"] in {i["id"] for i in found["items"]}
    code, out, _ = ent("market", "catalog", "客流")
    assert code == 0 and "Municipal Transport Bureau" in out

    counter = tmp_path / "counter.json"
    counter.write_text(json.dumps(offer(price="10.00")))
    n = ent.ok("market", "negotiate", "request", listed["offers"][0]["id"], "--purpose", PURPOSE,
               "--dua-reference", "DUA-2026-017", "--terms", f"@{counter}")  # fmt: skip
    assert n["state"] == "requested" and n["terms"]["price"] == "10.00"
    offered = json.dumps(offer(price="11.00"))
    n = prov.ok("market", "negotiate", "offer", n["id"], "--terms", offered)
    assert n["state"] == "offered"
    assert ent.ok("market", "negotiate", "accept", n["id"])["state"] == "accepted"
    assert prov.ok("market", "negotiate", "agree", n["id"])["state"] == "agreed"
    # A second signature is refused before anything is signed; the server refuses a second
    # accept: each in one line, exit 1.
    code, _, err = prov("market", "negotiate", "agree", n["id"])
    assert code == 1 and "negotiation-wrong-state" in err and len(err.strip().splitlines()) == 1
    code, _, err = ent("market", "negotiate", "accept", n["id"])
    assert code == 1 and err.startswith("pdx: error: 409 ") and len(err.strip().splitlines()) == 1
    assert ent.ok("market", "negotiate", "verify", n["id"])["state"] == "verified"
    final = prov.ok("market", "negotiate", "finalize", n["id"])
    aid = final["agreement_id"]
    checked = ent.ok("market", "agreements", aid, "--check")
    assert checked["in_force"] and checked["signatures"]["consumer"]["key_id"] == keys[ent_org]
    assert len(checked["checks"]) == 3

    # A computation request is metered under the agreement at once.
    monkeypatch.setenv("PDX_JOB_KEY_PASSPHRASE", "correct horse battery staple")
    job = ent.ok("compute", "request", "--operator", "stats.count", "--input", ds["id"],
                 "--purpose", PURPOSE)  # fmt: skip
    assert job["id"]
    usage = ent.ok("market", "usage", aid)
    assert (usage["computations"], usage["rows"], usage["max_computations"]) == (1, 40, 2)

    settled = op.ok("market", "settle")
    mine = [s for s in settled["statements"] if s.get("agreement_id") == aid]
    assert mine and mine[0]["statement"]["gross"] == "11.00"
    statements = ent.ok("market", "statements", "--settlement", settled["settlement_id"])
    assert {s["kind"] for s in statements} == {"agreement", "requester"}
    dispute = ent.ok("market", "dispute", mine[0]["id"], "--line", "1", "--reason", "结果未返回")
    assert dispute["state"] == "open" and dispute["line"] == 1

    cert = prov.ok("market", "certificate", "issue", listed["id"])
    cid = cert["certificate"]["id"]
    saved = tmp_path / "cert.json"
    assert eventually(
        lambda: (
            ent.ok("market", "certificate", "get", cid, "--out", str(saved))["proof"] is not None
        ),
        timeout=30,
        poll=0.5,
    )
    key = tmp_path / "ledger.key"
    key.write_text(httpx.get(server.url + "/v1/ledger/verifier-key").text.strip() + "\n")
    code, out, err = ent("market", "certificate", "verify", str(saved), "--verifier-key", str(key))
    assert code == 0 and "VERIFIED" in out, out + err
    # The SDK's own parser (no server installed) verifies offline the same way.
    monkeypatch.setattr(pdx_client.cli, "entry_points", lambda *, group: [])
    sdk_only = pdx_client.cli.build_parser()
    args = sdk_only.parse_args(["market", "certificate", "verify", str(saved),
                                "--verifier-key", str(key)])  # fmt: skip
    assert args.func.__module__ == "pdx_client.cli._verbs"  # the SDK's guarded verb
    assert args.func(args) == 0 and "(5) checkpoint" in capsys.readouterr().out
    doc = json.loads(saved.read_text())
    doc["certificate"]["holder"]["name"] = "Someone Else"
    saved.write_text(json.dumps(doc, ensure_ascii=False))
    args = sdk_only.parse_args(["market", "certificate", "verify", str(saved),
                                "--verifier-key", str(key), "--json"])  # fmt: skip
    assert args.func(args) == 1
    failed = json.loads(capsys.readouterr().out)
    assert failed["verified"] is False and failed["type"].endswith("/certificate-invalid")
    assert isinstance(sdk_only, argparse.ArgumentParser)

"""A private join over two providers' own nodes: nothing the platform holds decrypts it.

Separate processes, as `test_party_held_keys`: the real server (`pdx run`), a telecom's
and a bank's PySyft Datasites over HTTP (the cohort on one, the balances on the other),
and a requester with only `sdk/` importable. The requester generates its job key, asks
for `psi.sum` over the two node-held datasets, both providers approve, it decrypts.

On the code before this change the server refused `job_key` on a join (422) and ran
every join under a key it generated and sealed in its own keystore, so the requester
process fails at its request here; with a join over HTTP nodes and no job key it now
refuses the request instead of computing for its own key.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.attacks.test_party_held_keys import NODE_EMAIL, NODE_PASSWORD, _large_integers
from tests.helpers.i15_keys import REPO, REQUESTER, core_dump, files_under, search, start_node
from tests.helpers.i18_wiring import (
    JOIN,
    LEGAL_BASIS,
    PURPOSE,
    declare_key,
    join_data,
    register_pi,
)
from tests.helpers.net import free_port
from tests.helpers.server import start_server
from tests.test_api_contracts import active_contract, make_org

pytestmark = pytest.mark.slow

_PRINT_ID = 'comp_id = r.json()["id"]\n'


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("join-party-keys")
    server_tmp = tmp / "server-tmp"
    server_tmp.mkdir()
    server = start_server(
        tmp / "home",
        {
            "TMPDIR": str(server_tmp),
            "PDX_NODE_ALLOW_NETWORKS": "127.0.0.0/8",
            "PDX_NODE_READ_TIMEOUT_MS": "120000",
            "PDX_NODE_PROBE_TIMEOUT_MS": "120000",
            "PDX_NODE_CONNECT_TIMEOUT_MS": "10000",
        },
        deadline_s=180,
    )
    nodes = []
    requester: subprocess.Popen[str] | None = None
    data = join_data(51)
    try:
        creds = json.loads((server.home / "demo-credentials.json").read_text())
        api = httpx.Client(base_url=server.url, timeout=300)
        _, ent = make_org(api, creds, "Harbour Mutual Insurance", "enterprise")
        parties = []
        for i, (name, text, column) in enumerate(
            (
                ("City Telecom", data.cohort_csv, "mobile"),
                ("Riverside Bank", data.values_csv, "msisdn"),
            )
        ):
            node = start_node(free_port(), NODE_EMAIL, NODE_PASSWORD, tmp / f"node-{i}")
            nodes.append(node)
            org, prov = make_org(api, creds, name, "provider")
            body = {
                "kind": "http",
                "url": node.url,
                "email": NODE_EMAIL,
                "password": NODE_PASSWORD,
                "can_approve": True,
            }
            r = api.put("/v1/nodes/me", headers=prov, json=body)
            assert r.status_code == 200, r.text
            ds = register_pi(api, prov, text, f"{name} (node)", path="/v1/nodes/datasets")
            assert ds["custody"] == "node"
            active_contract(api, ent, prov, org, [ds["id"]], PURPOSE)
            declare_key(api, prov, ds["id"], column)
            parties.append((prov, ds["id"]))
        request = {
            "operator": "psi.sum",
            "inputs": [d for _, d in parties],
            "params": {"join": JOIN, "value": "amount", "clip": [0, 100], "decimals": 2},
            "purpose": PURPOSE,
            "legal_basis": LEGAL_BASIS,
        }
        # Without a job key, a join over providers' own nodes is refused before anything
        # is written (it used to run under the platform's key).
        r = api.post("/v1/computations", headers=ent, json=request)
        assert r.status_code == 422 and r.json()["field"] == "job_key", r.text
        out = tmp / "requester"
        out.mkdir()
        script = REQUESTER.replace(_PRINT_ID, _PRINT_ID + 'print("ID", comp_id, flush=True)\n')
        (out / "requester.py").write_text(script)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(REPO / "sdk"),
            "PYTHONNOUSERSITE": "1",
            "PDX_URL": server.url,
            "PDX_TOKEN": ent["Authorization"].removeprefix("Bearer "),
            "REQUESTER_OUT": str(out),
            "REQUEST_BODY": json.dumps(request),
        }
        requester = subprocess.Popen(
            [sys.executable, str(out / "requester.py")],
            cwd=out,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert requester.stdout is not None
        line = requester.stdout.readline()
        assert line.startswith("ID "), line + requester.stdout.read()[-3000:]
        comp_id = line.split()[1]
        for prov, _ in parties:  # both providers approve the query (join policy)
            r = api.post(f"/v1/computations/{comp_id}/approve", headers=prov, json={})
            assert r.status_code == 200, r.text
        line = requester.stdout.readline()
        assert line.strip() == "DONE", line + requester.stdout.read()[-3000:]
        facts = json.loads((out / "requester.json").read_text())
        dumps = tmp / "dumps"
        yield {
            "server": server,
            "server_tmp": server_tmp,
            "data": data,
            "facts": facts,
            "server_core": core_dump(server.proc.pid, dumps / "server"),
            "requester_core": core_dump(requester.pid, dumps / "requester"),
        }
    finally:
        if requester is not None and requester.poll() is None:
            assert requester.stdin is not None
            requester.stdin.close()
            requester.wait(timeout=30)
        server.stop()
        for node in nodes:
            node.stop()
        shutil.rmtree(tmp / "dumps", ignore_errors=True)  # core dumps are large


def test_the_requester_decrypts_a_noisy_join_the_platform_cannot(
    scenario: dict[str, Any],
) -> None:
    facts, data = scenario["facts"], scenario["data"]
    out = facts["result"]["output"]
    assert out["format"] == "pdx-encrypted-aggregate/1" and out["join_operator"] == "psi.sum"
    opened = facts["opened"]
    g = opened["groups"][0]
    assert opened["operator"] == "psi.sum" and g["exact"] == {}
    # ε = 0.6 over 3 fields, Δ = 100: Laplace scale 500 per share, two shares.
    assert abs(g["values"]["sum(amount)"] - float(data.sum_over())) < 20 * 500
    assert abs(opened["intersection_size"] - data.count()) < 20 * 5
    p, q = int(facts["p"]), int(facts["q"])
    needles = {"p": p, "q": q, "lambda": (p - 1) * (q - 1)}
    server = scenario["server"]
    platform_files = list(files_under(server.home, scenario["server_tmp"]))
    assert search(platform_files, needles) == []
    assert search([scenario["server_core"]], needles) == []
    found = search([scenario["requester_core"]], needles)  # control: the search works
    assert any(h.startswith("p: ") for h in found) and any(h.startswith("q: ") for h in found)
    n = int(facts["n"])
    numbers = _large_integers(platform_files)
    assert n in numbers and all(math.gcd(x, n) in (1, n) for x in numbers)

"""Must-show 2 of issue 15: nothing the platform holds decrypts what provider nodes compute.

Separate processes: the real server (`pdx run`), two providers' own PySyft Datasites over
HTTP, and the requester, which runs with only `sdk/` importable (it checks that no server
package is). The requester generates its job key, asks for `stats.sum` over both nodes'
rows, waits, fetches and decrypts. Then:

* `test_no_secret_key_and_no_partial_anywhere_on_the_platform` searches the platform's
  database and `$PDX_HOME`, its temp directory and a memory dump of the server process
  for the requester's p, q and λ = (p − 1)(q − 1), each provider's plaintext partial and
  the exact aggregate, in decimal and hex text, big- and little-endian bytes and
  CPython's 30-bit digits (`tests.helpers.i15_keys.encodings`). Control: the same search
  over a dump of the requester's process finds p, q and the aggregate, so it would find
  them in the server: on the code before this change the server generated the job key
  and held it unsealed (`ResultParty`, phe ints) while it decrypted the aggregate, which
  it then kept as the released output.
* `test_the_platform_cannot_decrypt_the_aggregate` collects every large integer the
  platform stores (hex or decimal text in its database, home and temp files) and checks
  that none shares a factor with the requester's n: nothing the platform has yields p or
  q, so the stored ciphertext stays closed to it. Control: the old code's job-key export
  format (`ResultParty.export`, what it sealed for every job) is caught by the same scan.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.coordinator import ResultParty
from tests.helpers.i15_keys import (
    REQUESTER,
    NodeProcess,
    core_dump,
    files_under,
    search,
    start_requester,
)
from tests.helpers.party_cluster import PartyServer, node_body
from tests.test_api_contracts import active_contract, make_org, register_dataset

pytestmark = pytest.mark.slow

PURPOSE = "readmission risk research"


def _csv(seed: int, rows: int) -> str:
    rng = random.Random(seed)
    lines = ["patient_ref,ward,age,amount"]
    for i in range(rows):
        amount = Decimal(rng.randrange(10**11, 10**12)) / 10**6
        lines.append(f"R{seed:02d}{i:05d},{rng.choice('ABC')},{rng.randrange(20, 90)},{amount}")
    return "\n".join(lines) + "\n"


def _fixed_sum(text: str) -> int:
    """The provider's plaintext partial of `sum(amount)` as the operator computes it (·10^6)."""
    rows = text.splitlines()[1:]
    return sum(int(Decimal(r.split(",")[3]) * 10**6) for r in rows)


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory,
    shared_party_server: PartyServer,
    shared_party_nodes: list[NodeProcess],
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("party-keys")
    server = shared_party_server.server  # shared: tests.helpers.party_cluster
    creds = shared_party_server.creds
    requester: subprocess.Popen[str] | None = None
    try:
        api = httpx.Client(base_url=server.url, timeout=300)
        ent_org, ent = make_org(api, creds, "Riverside Health Research", "enterprise")
        texts, datasets = [], []
        names = ("Northgate", "Lakeside")
        for i, (name, node) in enumerate(zip(names, shared_party_nodes, strict=True)):
            org, prov = make_org(api, creds, f"{name} District Hospital", "provider")
            r = api.put("/v1/nodes/me", headers=prov, json=node_body(node))
            assert r.status_code == 200, r.text
            text = _csv(i + 1, 40)
            ds = register_dataset(
                api,
                prov,
                text,
                f"{name} ward amounts",
                "general-1",
                path="/v1/nodes/datasets",
                open_attribute="open",  # no DP: the exact aggregate is what is searched for
            )
            assert ds["custody"] == "node"
            active_contract(api, ent, prov, org, [ds["id"]], PURPOSE)
            texts.append(text)
            datasets.append(ds["id"])
        request = {
            "operator": "stats.sum",
            "inputs": datasets,
            "params": {"columns": ["amount"]},
            "purpose": PURPOSE,
        }
        # Without a job key, node-held data is refused before anything is written.
        r = api.post("/v1/computations", headers=ent, json=request)
        assert r.status_code == 422 and r.json()["field"] == "job_key", r.text
        out = tmp / "requester"
        token = ent["Authorization"].removeprefix("Bearer ")
        requester = start_requester(
            out, REQUESTER, server.url, token, REQUEST_BODY=json.dumps(request)
        )
        assert requester.stdout is not None
        line = requester.stdout.readline()
        assert line.strip() == "DONE", line + requester.stdout.read()[-3000:]
        facts = json.loads((out / "requester.json").read_text())
        dumps = tmp / "dumps"
        # The server's dump is taken now, after this computation (it serves other modules).
        yield {
            "server": server,
            "server_tmp": shared_party_server.tmp,
            "texts": texts,
            "facts": facts,
            "server_core": core_dump(server.proc.pid, dumps / "server"),
            "requester_core": core_dump(requester.pid, dumps / "requester"),
            "dumps": dumps,
        }
    finally:
        if requester is not None and requester.poll() is None:
            assert requester.stdin is not None
            requester.stdin.close()
            requester.wait(timeout=30)
        shutil.rmtree(tmp / "dumps", ignore_errors=True)  # core dumps are large


def _secrets(facts: dict[str, Any]) -> dict[str, int]:
    p, q = int(facts["p"]), int(facts["q"])
    return {"p": p, "q": q, "lambda": (p - 1) * (q - 1)}


def test_no_secret_key_and_no_partial_anywhere_on_the_platform(scenario: dict[str, Any]) -> None:
    facts, texts = scenario["facts"], scenario["texts"]
    partials = {f"partial-{i}": _fixed_sum(t) for i, t in enumerate(texts)}
    aggregate = sum(partials.values())
    # The requester got the exact sum (open general-1: no DP) from the encrypted aggregate.
    group = facts["opened"]["groups"][0]
    assert Decimal(group["exact"]["sum(amount)"]) * 10**6 == aggregate
    assert facts["result"]["output"]["format"] == "pdx-encrypted-aggregate/1"
    needles = {**_secrets(facts), **partials, "aggregate": aggregate}
    server = scenario["server"]
    platform_files = list(files_under(server.home, scenario["server_tmp"]))
    assert any(p.suffix in (".db", ".sqlite") or "db" in p.name for p in platform_files)
    assert search(platform_files, needles) == []
    assert search([scenario["server_core"]], needles) == []
    # Control: the same search finds the key and the aggregate where they are.
    found = search([scenario["requester_core"]], needles)
    assert any(h.startswith("p: ") for h in found) and any(h.startswith("q: ") for h in found)
    assert any(h.startswith("aggregate: ") for h in found), found


_HEX = re.compile(rb"[0-9a-fA-F]{100,}")
_DEC = re.compile(rb"[0-9]{120,}")


def _large_integers(paths: list[Path]) -> set[int]:
    out: set[int] = set()
    for path in paths:
        data = path.read_bytes()
        out |= {int(m, 16) for m in _HEX.findall(data)}
        out |= {int(m) for m in _DEC.findall(data)}
    return out


def test_the_platform_cannot_decrypt_the_aggregate(scenario: dict[str, Any]) -> None:
    facts = scenario["facts"]
    n = int(facts["n"])
    server = scenario["server"]
    platform_files = list(files_under(server.home, scenario["server_tmp"]))
    numbers = _large_integers(platform_files)
    assert n in numbers  # the public key is there (and the ciphertexts under it)
    assert all(math.gcd(x, n) in (1, n) for x in numbers)
    ciphertexts = [int(c, 16) for c in facts["result"]["output"]["ciphertexts"]]
    assert ciphertexts and all(0 < c < n * n for c in ciphertexts)
    # Control: a job key in the old code's export format is caught by the same scan.
    old = ResultParty("paillier-packed", paillier_bits=1024)
    planted = scenario["dumps"] / "old-export.json"
    planted.write_bytes(old.export())
    old_n = old.public.paillier_n
    assert old_n is not None
    caught = _large_integers([planted])
    assert any(1 < math.gcd(x, old_n) < old_n for x in caught)

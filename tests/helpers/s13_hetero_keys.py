"""A requester-key computation over providers' own HTTP nodes, as separate processes.

The harness of `tests/attacks/test_join_party_keys.py`, shared with
`tests/attacks/test_hetero_party_keys.py`: the real server (`pdx run`), one PySyft
Datasite per provider over HTTP holding that provider's table (server and nodes shared by
the session, `tests.helpers.party_cluster`), and a requester with only
`sdk/` importable that generates its job key, asks, waits and decrypts. The providers
approve; the request without a job key is refused first (422, `field: job_key`). Yields
what the attack tests search: the server's home and temp dir, core dumps of the server
and of the requester (the control that holds the key), and the requester's facts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.i15_keys import REQUESTER, NodeProcess, core_dump, start_requester
from tests.helpers.i18_wiring import PURPOSE, declare_key, register_pi
from tests.helpers.party_cluster import PartyServer, node_body
from tests.test_api_contracts import active_contract, make_org

_PRINT_ID = 'comp_id = r.json()["id"]\n'

Party = tuple[str, str, str]
"""(organisation name, CSV text on its node, the key column it declares joinable)."""


@contextmanager
def party_key_run(
    tmp: Path,
    cluster: PartyServer,
    nodes: Sequence[NodeProcess],
    requester_org: str,
    parties: Sequence[Party],
    request_for: Callable[[list[str]], dict[str, Any]],
) -> Iterator[dict[str, Any]]:
    """Run `request_for(dataset ids)` under the requester's key; yield what there is to search.

    The server and the nodes are shared (`tests.helpers.party_cluster`): party i's dataset
    goes on `nodes[i]`; the organisation names must be new to the server.
    """
    server = cluster.server
    requester: subprocess.Popen[str] | None = None
    try:
        api = httpx.Client(base_url=server.url, timeout=300)
        _, ent = make_org(api, cluster.creds, requester_org, "enterprise")
        held = []
        for node, (name, text, column) in zip(nodes, parties, strict=True):
            org, prov = make_org(api, cluster.creds, name, "provider")
            r = api.put("/v1/nodes/me", headers=prov, json=node_body(node))
            assert r.status_code == 200, r.text
            ds = register_pi(api, prov, text, f"{name} (node)", path="/v1/nodes/datasets")
            assert ds["custody"] == "node"
            active_contract(api, ent, prov, org, [ds["id"]], PURPOSE)
            declare_key(api, prov, ds["id"], column)
            held.append((prov, ds["id"]))
        request = request_for([d for _, d in held])
        # Without a job key, a computation over providers' own nodes is refused before
        # anything is written (it would have run under the platform's key).
        r = api.post("/v1/computations", headers=ent, json=request)
        assert r.status_code == 422 and r.json()["field"] == "job_key", r.text
        out = tmp / "requester"
        script = REQUESTER.replace(_PRINT_ID, _PRINT_ID + 'print("ID", comp_id, flush=True)\n')
        token = ent["Authorization"].removeprefix("Bearer ")
        requester = start_requester(
            out, script, server.url, token, REQUEST_BODY=json.dumps(request)
        )
        assert requester.stdout is not None
        line = requester.stdout.readline()
        assert line.startswith("ID "), line + requester.stdout.read()[-3000:]
        comp_id = line.split()[1]
        for prov, _ in held:  # every provider approves the query (join policy)
            r = api.post(f"/v1/computations/{comp_id}/approve", headers=prov, json={})
            assert r.status_code == 200, r.text
        line = requester.stdout.readline()
        assert line.strip() == "DONE", line + requester.stdout.read()[-3000:]
        facts = json.loads((out / "requester.json").read_text())
        dumps = tmp / "dumps"
        # The server's dump is taken now, after this computation (it serves other modules).
        yield {
            "server": server,
            "server_tmp": cluster.tmp,
            "datasets": [d for _, d in held],
            "facts": facts,
            "server_core": core_dump(server.proc.pid, dumps / "server"),
            "requester_core": core_dump(requester.pid, dumps / "requester"),
        }
    finally:
        if requester is not None and requester.poll() is None:
            assert requester.stdin is not None
            requester.stdin.close()
            requester.wait(timeout=30)
        shutil.rmtree(tmp / "dumps", ignore_errors=True)  # core dumps are large

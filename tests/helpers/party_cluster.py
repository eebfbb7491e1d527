"""One `pdx run` server and two plain provider nodes for the requester-key attack modules.

`tests/attacks/test_fl_party_keys.py`, `test_hetero_party_keys.py`, `test_join_party_keys.py`
and `test_party_held_keys.py` each used to start a server of their own with the same
settings (`SERVER_ENV`, a temp directory of its own) and, but for the FL module, whose
nodes hold party keys, two nodes configured alike. Started once per session
(`tests/attacks/conftest.py`), each module registers its own organisations and datasets
on them and still takes its core dump of the server after its own computation; the
server's home and temp directory then hold every module's data, which only adds
haystack to each module's search for its needles.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.i15_keys import NodeProcess, start_node
from tests.helpers.net import free_port
from tests.helpers.server import RealServer, start_server

NODE_EMAIL, NODE_PASSWORD = "coordinator@pdx.dev", "pw-4567-node"
"""The account each provider's node opens for the platform."""

SERVER_ENV = {
    "PDX_NODE_ALLOW_NETWORKS": "127.0.0.0/8",
    "PDX_NODE_READ_TIMEOUT_MS": "120000",
    "PDX_NODE_PROBE_TIMEOUT_MS": "120000",
    "PDX_NODE_CONNECT_TIMEOUT_MS": "10000",
}
"""The settings every one of the four modules started its server with (and `TMPDIR`)."""


@dataclass(frozen=True)
class PartyServer:
    """The running server, its temp directory and the operator's demo credentials."""

    server: RealServer
    tmp: Path
    creds: dict[str, Any]


@contextmanager
def party_server(root: Path) -> Iterator[PartyServer]:
    """`pdx run` with its home and `TMPDIR` under `root`, stopped on exit."""
    tmp = root / "server-tmp"
    tmp.mkdir(parents=True)
    server = start_server(root / "home", {"TMPDIR": str(tmp), **SERVER_ENV}, deadline_s=180)
    try:
        creds = json.loads((server.home / "demo-credentials.json").read_text())
        yield PartyServer(server, tmp, creds)
    finally:
        server.stop()


@contextmanager
def plain_nodes(root: Path, count: int = 2) -> Iterator[list[NodeProcess]]:
    """`count` provider nodes (no party key), started side by side, stopped on exit."""
    with ThreadPoolExecutor(count) as pool:
        futures = [
            pool.submit(start_node, free_port(), NODE_EMAIL, NODE_PASSWORD, root / f"node-{i}")
            for i in range(count)
        ]
        errors = [f.exception() for f in futures]
    nodes = [f.result() for f, e in zip(futures, errors, strict=True) if e is None]
    try:
        for error in errors:
            if error is not None:
                raise error
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def node_body(node: NodeProcess) -> dict[str, Any]:
    """What a provider PUTs to `/v1/nodes/me` for its node over HTTP."""
    return {
        "kind": "http",
        "url": node.url,
        "email": NODE_EMAIL,
        "password": NODE_PASSWORD,
        "can_approve": True,
    }

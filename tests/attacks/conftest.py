"""The server and nodes shared by the requester-key attack modules (`tests.helpers.party_cluster`).

Session-scoped and started on first use: only a run that collects one of those modules
starts them, once, and each module still brings its own requester, organisations,
datasets and core dumps.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.i15_keys import NodeProcess
from tests.helpers.party_cluster import PartyServer, party_server, plain_nodes


@pytest.fixture(scope="session")
def shared_party_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartyServer]:
    with party_server(tmp_path_factory.mktemp("party-server")) as server:
        yield server


@pytest.fixture(scope="session")
def shared_party_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    with plain_nodes(tmp_path_factory.mktemp("party-nodes")) as nodes:
        yield nodes

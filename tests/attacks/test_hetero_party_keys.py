"""Vertical LR over two providers' own nodes: the weights leave encrypted to the requester.

Separate processes (`tests.helpers.s13_hetero_keys.party_key_run`): the real server, a
telecom's Datasite over HTTP holding the labels and two features (the guest) and a
bank's holding two more features (the host), and a requester with only `sdk/` that
generates its job key, asks for `fl.hetero_logreg`, both providers approve, it decrypts.

On the code before this change the server refused a `job_key` on `fl.hetero_logreg`
(422, "requester-held job keys support the statistics operators ...") and, over HTTP
nodes, a request without one (422, `field: job_key`): the requester process fails at its
request and the job cannot run at all. The platform-key path returned each party's
weights in plaintext to the platform, which assembled, noised and stored them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.vertical_dp import weights_sigma
from tests.attacks.test_party_held_keys import _large_integers
from tests.helpers.i15_keys import NodeProcess, encoded, encodings, files_under, search
from tests.helpers.i18_wiring import HETERO, LEGAL_BASIS, PURPOSE, vertical_csvs
from tests.helpers.party_cluster import PartyServer
from tests.helpers.s13_hetero_keys import party_key_run
from tests.helpers.s16_fast import file_hits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory,
    shared_party_server: PartyServer,
    shared_party_nodes: list[NodeProcess],
) -> Iterator[dict[str, Any]]:
    guest_csv, host_csv, _ = vertical_csvs(71)
    parties = [("City Telecom", guest_csv, "tel"), ("Riverside Bank", host_csv, "tel")]

    def request(inputs: list[str]) -> dict[str, Any]:
        return {
            "operator": "fl.hetero_logreg",
            "inputs": inputs,
            "params": HETERO,
            "purpose": PURPOSE,
            "legal_basis": LEGAL_BASIS,
        }

    tmp = tmp_path_factory.mktemp("hetero-party-keys")
    with party_key_run(
        tmp, shared_party_server, shared_party_nodes, "Harbour Mutual Insurance", parties, request
    ) as run:
        yield run


def _weights(opened: dict[str, Any], datasets: list[str]) -> list[float]:
    return [*(w for d in datasets for w in opened["weights"][d].values()), opened["intercept"]]


def test_the_requester_decrypts_a_model_the_platform_never_held(
    scenario: dict[str, Any],
) -> None:
    facts, datasets = scenario["facts"], scenario["datasets"]
    out = facts["result"]["output"]
    assert out["format"] == "pdx-encrypted-aggregate/1" and out["operator"] == "fl.hetero_logreg"
    assert "weights" not in out and len(out["ciphertexts"]) == 5
    assert out["dp"]["epsilon"] == 0.6 and out["dp"]["mechanism"] == "gaussian"
    opened = facts["opened"]
    assert opened["decrypted_by"] == "requester" and opened["dp_epsilon"] == 0.6
    assert {d: list(w) for d, w in opened["weights"].items()} == {
        datasets[0]: ["f0", "f1"],
        datasets[1]: ["g0", "g1"],
    }
    weights = _weights(opened, datasets)
    sigma = weights_sigma(1.0, 0.6, 1e-6)
    # Standardised features, 3 rounds: the exact weights are small; the noise is σ ≈ 22.1
    # (the weights get 0.8 of ε = 0.6).
    assert all(abs(w) < 8 * sigma for w in weights) and any(abs(w) > 0.01 for w in weights)

    server = scenario["server"]
    platform_files = list(files_under(server.home, scenario["server_tmp"]))
    p, q = int(facts["p"]), int(facts["q"])
    needles = {"p": p, "q": q, "lambda": (p - 1) * (q - 1)}
    found = search([scenario["requester_core"]], needles)  # control: the search works
    assert any(h.startswith("p: ") for h in found) and any(h.startswith("q: ") for h in found)
    n = int(facts["n"])
    numbers = _large_integers(platform_files)
    assert n in numbers and all(math.gcd(x, n) in (1, n) for x in numbers)

    # No weight in plaintext where the platform stores anything, nor in its memory: not
    # the fixed point the parties encrypted (±; every encoding in its files, its decimal
    # text in its core, where short binary patterns would match by chance), not the text.
    fixed = {f"w{i}": abs(round(w * 2**32)) for i, w in enumerate(weights)}
    texts = [repr(w)[:10].encode() for w in weights]
    texts += [encodings(x)["decimal"] for x in fixed.values()]
    named = {f"text {i}: {t!r}": t for i, t in enumerate(texts)}
    # The key (every encoding) and the weights, each file and the core read once.
    keys = encoded(needles)
    assert file_hits(platform_files, keys | encoded(fixed) | named) == []
    assert file_hits([scenario["server_core"]], keys | named) == []
    assert all(t in json.dumps(facts["opened"]).encode() for t in texts[: len(weights)])

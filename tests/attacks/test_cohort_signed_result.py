"""A platform that replaces a cohort join's encrypted count is caught by the SDK before it decrypts.

docs/privacy.md §6.1.4: the platform holds the requester's job key's public half, so it
can encrypt a count of its own and serve it in place of the provider's (an integrity
attack on the requester). The provider's node now signs its `cohort.result` output with
its party key, the platform keeps the proof and the node's exact output with the result
document (`node_signature`), and the SDK (`Enterprise.result`, `pdx_client.resultsig`)
checks the proof against the key it pins and the document's ciphertexts against the
signed output before anything is decrypted.

The platform here is the real app over the real database, the bank's dataset on its
embedded node; the attacks wrap the platform's own `CohortJoinJob.document`, so the
stored and served result is the forged one.

On the code before this change the node did not sign `cohort.result`, the document had no
`node_signature`, and `Enterprise.result` took no `trust`/`steps` and decrypted whatever it
was served: the honest test fails there (no signature), and each forged result was
decrypted (the count the platform chose) instead of refused. The node's header now also
carries the DP lattice's unit, so a document whose unit the platform scaled is refused.
"""

from __future__ import annotations

import base64
import secrets
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pdx_client.flseal import NodeTrust
from pdx_client.jobkeys import JobKey
from pdx_client.resultsig import result_ciphertexts
from pdx_client.stepsig import ResultUnverified, UnverifiedSteps

from sandbox.cohort_joins import CohortJoinJob
from sandbox.errors import HomomorphicMismatch
from sandbox.join_wire import frame
from sandbox.joins import _result_ciphertexts
from tests.attacks.test_cohort_signed_steps import (
    NodeJoin,
    _finish,
    node_join,
    signing_node,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.slow

FORGED = 1_000_000
"""The lattice value the platform encrypts in place of the node's noised count."""


def _encrypt(n: int, m: int) -> int:
    """Paillier Enc(m) under the public modulus alone: what the platform can do."""
    n2 = n * n
    return (1 + m * n) * pow(secrets.randbelow(n - 2) + 2, n, n2) % n2


def _forge(monkeypatch: pytest.MonkeyPatch, how: str) -> list[dict[str, Any]]:
    """The platform's `CohortJoinJob.document`, turned: the served result is `how` forged."""
    original = CohortJoinJob.document
    kept: list[dict[str, Any]] = []

    def document(self: CohortJoinJob, data: bytes) -> dict[str, Any]:
        doc = original(self, data)
        kept.append({"query": self.plan.query, "n": self.party.n, "data": data, "doc": doc})
        if how == "honest":
            return doc
        forged = [format(_encrypt(self.party.n, FORGED), "x")]
        if how == "strip":
            return {k: v for k, v in doc.items() if k != "node_signature"}
        if how == "swap":  # the count replaced, the node's signed output left as it was
            return {**doc, "ciphertexts": forged}
        if how == "swap-signed":  # the signed output re-framed to match the forged count
            width = (2 * self.party.n.bit_length() + 7) // 8
            body = int(forged[0], 16).to_bytes(width, "big")
            out = frame({"job_id": self.job_id, "groups": 1, "fields": 1}, body)
            sig = {**doc["node_signature"], "output": base64.b64encode(out).decode()}
            return {**doc, "ciphertexts": forged, "node_signature": sig}
        if how == "rescale":  # the count left, each lattice step made worth 1,000 times more
            noise = doc["noise"]
            units = [[a * 1000, b] for a, b in noise["units"]]
            return {**doc, "noise": {**noise, "units": units}}
        raise AssertionError(how)

    monkeypatch.setattr(CohortJoinJob, "document", document)
    return kept


def _released(capi: TestClient, j: NodeJoin) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedSteps)
        j.drive()
    done = _finish(capi, j.net, j.comp_id)
    assert done["state"] == "released", done["error"]


def _decrypts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the requester's key decrypts (a counter around the real `_open`)."""
    calls: list[int] = []
    original = JobKey._open

    def counted(self: JobKey, doc: dict[str, Any]) -> list[int]:
        calls.append(1)
        return original(self, doc)

    monkeypatch.setattr(JobKey, "_open", counted)
    return calls


def test_the_node_signs_the_result_and_the_sdk_checks_it_before_decrypting(
    capi: TestClient,
    creds: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    signing_node: Callable[[str], NodeTrust],  # noqa: F811
) -> None:
    kept = _forge(monkeypatch, "honest")
    j = node_join(capi, creds, 51, signing_node)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedSteps)
        j.drive()
        done = _finish(capi, j.net, j.comp_id)
        assert done["state"] == "released", done["error"]
        # With the steps' verifier (the same node session, after its steps) and alone.
        ent = j.net["sdk"]
        after_steps = ent.result(j.comp_id, j.key, steps=j.party.steps)
        alone = ent.result(j.comp_id, j.key, trust=j.trust)
    eps = done["obligations"]["dp_epsilon"]
    assert abs(after_steps.output["intersection_size"] - 40) < 20 / eps
    assert alone.output == after_steps.output
    served = capi.get(f"/v1/computations/{j.comp_id}/result", headers=j.net["ent"]).json()
    proof = served["output"]["node_signature"]["proof"]
    assert proof["step"] == "cohort.result" and proof["fingerprint"] == j.key.fingerprint
    # The SDK's parse of the node's output agrees with the server's, and both refuse alike.
    (k,) = kept
    output = base64.b64decode(served["output"]["node_signature"]["output"])
    server = _result_ciphertexts(output, j.comp_id, k["query"], k["n"])
    assert result_ciphertexts(output, j.comp_id, 1, 1, j.key.n) == server
    assert [int(c, 16) for c in served["output"]["ciphertexts"]] == server
    for bad in (output[:-1], output.replace(j.comp_id.encode(), b"another-job")):
        with pytest.raises(HomomorphicMismatch):
            _result_ciphertexts(bad, j.comp_id, k["query"], k["n"])
        with pytest.raises(ResultUnverified):
            result_ciphertexts(bad, j.comp_id, 1, 1, j.key.n)


@pytest.mark.parametrize("how", ["swap", "swap-signed", "strip", "rescale"])
def test_a_pinned_sdk_refuses_a_result_the_node_did_not_sign(
    capi: TestClient,
    creds: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    signing_node: Callable[[str], NodeTrust],  # noqa: F811
    how: str,
) -> None:
    """The count replaced (signature left, re-framed, stripped) or rescaled: nothing decrypted."""
    _forge(monkeypatch, how)
    j = node_join(capi, creds, 52, signing_node)
    _released(capi, j)
    decrypted = _decrypts(monkeypatch)
    ent = j.net["sdk"]
    for kw in ({"trust": j.trust}, {"steps": j.party.steps}):
        with pytest.raises(ResultUnverified) as refused:
            ent.result(j.comp_id, j.key, **kw)
        assert refused.value.code == "join-result-unverified"
    assert decrypted == []
    served = capi.get(f"/v1/computations/{j.comp_id}/result", headers=j.net["ent"]).json()
    assert ("node_signature" in served["output"]) is (how != "strip")


def test_unpinned_the_forged_count_is_decrypted_with_a_warning(
    capi: TestClient, creds: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit the warning names: with nothing pinned the platform's count is what opens."""
    _forge(monkeypatch, "swap")
    monkeypatch.delenv("PDX_TRUSTED_PARTIES", raising=False)
    j = node_join(capi, creds, 53)
    _released(capi, j)
    with pytest.warns(UnverifiedSteps, match="result is decrypted as served"):
        out = j.net["sdk"].result(j.comp_id, j.key)
    assert out.output["intersection_size"] > 1000  # the forged count, not about 40

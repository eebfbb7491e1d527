"""Checking that a cohort join's encrypted result is the one the provider's node signed.

In a join with the enterprise's own cohort (`pdx_client.psi`) the provider's node encrypts
the noised count under the requester's job key and signs that output (`cohort.result`)
with its party key, as it signs its steps (the server's `sandbox.step_signing`); the
platform keeps the signed output beside the result document (`node_signature`: the proof
and the node's exact output in base64). The platform holds the job key's public half, so
without the signature it could replace the encrypted count by one of its own: an integrity
attack on the requester, not a disclosure (docs/privacy.md §6.1.4).

`check_result` verifies, before anything is decrypted, that the proof is the node's under a
party key pinned for the provider (`StepVerifier.open_result`: same binding as the steps:
computation, organisation, dataset, job-key fingerprint, session, sequence, step), and
that the document's ciphertexts are exactly those of the signed output, parsed from the
wire format (`result_ciphertexts`, as the server's `sandbox.joins._result_ciphertexts`).
A pinned provider must sign whatever custody the platform reports; on any mismatch it
raises `ResultUnverified` and nothing is decrypted. With nothing pinned, or a
platform-held input of an unpinned provider, it warns `UnverifiedSteps` and the result
is decrypted as served.

The node's header also carries the DP lattice's unit (what one step of the encoded count
is worth), checked against the document's `noise.units`, so the platform cannot rescale
the count either. What the signature does not cover: the rest of the document's public
layout (the minimum cohort the SDK re-checks, the decimals), read as the platform serves
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdx_client.flseal import NodeTrust
from pdx_client.stepsig import Expected, ResultUnverified, StepUnverified, StepVerifier, unframe

__all__ = ["check_result", "is_cohort_result", "result_ciphertexts"]


def result_ciphertexts(output: bytes, job_id: str, groups: int, fields: int, n: int) -> list[int]:
    """The ciphertexts (mod n²) of the node's `cohort.result` output for `job_id`.

    The wire format (`sandbox.join_wire.frame`): a JSON header line `{"job_id", "groups",
    "fields"}`, then groups × fields big-endian ciphertexts of (2·bits(n) + 7) // 8 bytes.
    """
    try:
        header, body = unframe(output)
    except StepUnverified:
        raise ResultUnverified("the node's signed result is malformed") from None
    if (header.get("job_id"), header.get("groups"), header.get("fields")) != (
        job_id,
        groups,
        fields,
    ):
        raise ResultUnverified("the node's signed result belongs to another job or layout")
    width = (2 * n.bit_length() + 7) // 8
    if len(body) != groups * fields * width:
        raise ResultUnverified("the node's signed result is malformed")
    return [int.from_bytes(body[i : i + width], "big") for i in range(0, len(body), width)]


def is_cohort_result(doc: Mapping[str, Any], computation: Mapping[str, Any]) -> bool:
    """Whether the result is a join with the requester's own cohort (by the doc or the job)."""
    join = doc.get("join")
    params = computation.get("params")
    return (isinstance(join, Mapping) and "cohort" in join) or (
        isinstance(params, Mapping) and isinstance(params.get("cohort"), Mapping)
    )


def check_result(
    result: Mapping[str, Any],
    computation: Mapping[str, Any],
    n: int,
    fingerprint: str,
    *,
    trust: NodeTrust | None = None,
    steps: StepVerifier | None = None,
) -> bool:
    """Check a cohort join's result body before it is decrypted under the key (`n`).

    `computation` is the job as the server shows it; `trust` the pinned party keys
    (default `PDX_TRUSTED_PARTIES`); `steps`, when given, the verifier that checked this
    job's steps (the result must then follow them in the node's session). True when
    checked; False when nothing could be checked (warned `UnverifiedSteps`). Raises
    `ResultUnverified` on any mismatch.
    """
    doc = result.get("output", result)
    if not isinstance(doc, Mapping):
        raise ResultUnverified("the join's result is not a document")
    verifier = steps
    if verifier is None or verifier.expected is None:
        try:
            expected = Expected.of(computation, fingerprint)
        except StepUnverified as exc:
            raise ResultUnverified(f"the join's result: {exc.detail}") from None
        verifier = StepVerifier(trust if trust is not None else NodeTrust.from_env(), expected)
    signature = doc.get("node_signature")
    output = verifier.open_result(signature)
    if output is None:
        return False
    assert isinstance(signature, Mapping) and verifier.expected is not None  # open_result checked
    if signature["proof"].get("fingerprint") != fingerprint:
        raise ResultUnverified("the join's result was signed for another job key")
    try:
        groups, fields = len(doc["groups"]), len(doc["fields"])
        served = [int(c, 16) for c in doc["ciphertexts"]]
        length, packing = int(doc["length"]), doc["packing"]
    except (KeyError, TypeError, ValueError):
        raise ResultUnverified("the join's result document is malformed") from None
    signed = result_ciphertexts(output, verifier.expected.job_id, groups, fields, n)
    if packing is not None or length != len(signed) or served != signed:
        raise ResultUnverified(
            "the join's encrypted result is not the one the provider's node signed"
        )
    noise = doc.get("noise")
    units = noise.get("units") if isinstance(noise, Mapping) else None
    if unframe(output)[0].get("units") != units:  # what one lattice step of the count is worth
        raise ResultUnverified("the join's noise unit is not the one the provider's node signed")
    return True

"""The provider's side of a join with the requester's own cohort, inside its sandbox (issue 18).

The enterprise's identifiers never reach the platform: its SDK (`pdx_client.psi`) blinds
them on its machine, and this sandbox is the matcher. Only a count is computed
(`psi.cardinality`, `stats.count`): no value of the provider's leaves this process, not
even encrypted (x(·) is the abscissa, H the job's RFC 9380 hash to P-256):

a. SDK → here, in batches: shuffled x(k1·H(x)) for its normalised identifiers.
b. here: fresh k2; keeps x(k2·k1·H(x)) (`cohort.elements`); → SDK, in batches, shuffled
   k2·H(y) for each identifier y of the provider's key column (`cohort.pairs`).
c. SDK: x(k1·k2·H(y)), all shuffled with its own permutation (over the whole set, not
   per batch), returned in batches.
d. here (`cohort.matched`, `cohort.result`): every returned element must be distinct and
   all of them returned; the matches are counted; the approved DP noise is added (the
   whole noise: this is the only party, `sandbox.noise_shares` with one provider); the
   minimum intersection is checked on the count that would be released (under DP the
   NOISED count, so release-or-refuse is post-processing of the DP release and no exact
   membership bit leaks; without DP the exact count, which is what is released anyway);
   below it nothing leaves but the refusal, else the count is encrypted under the
   requester's job key, which only its SDK opens (`pdx_client.jobkeys.JobKey.decrypt`).

Sums and means over the requester's cohort are refused (`cohort.start`, and before that
`exchange.computations.joins.check_cohort_join`): the values would have to travel
through the requester's SDK, which could scale them past the noise, and the key holder
here would see which returned values matched (docs/privacy.md §6.1.4).

Who learns what:

| party              | learns                                                            |
|--------------------|-------------------------------------------------------------------|
| enterprise (SDK)   | |Y| (the provider's distinct identifiers) and nothing else before  |
|                    | release: it sees k2-blinded points only                           |
| provider's sandbox | |X| and the exact intersection size, inside the sandbox only; no   |
|                    | member (the SDK's shuffle unlinks the returned elements)          |
| coordinator        | counts, the job salt and opaque bytes (blinded points, the result |
|                    | under the requester's key)                                        |
| requester          | the released, (under DP) noised and minimum-checked count         |

`psi.intersection` (`cohort.reveal`) is the standard ECDH direction instead: the SDK gets
back x(k2·k1·H(x)) in its own order with the x(k2·H(y)) and learns which of its own
identifiers are in Y; the sandbox learns |X|. The policy decides whether it may run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from crypto.errors import CryptoError
from crypto.psi_ec import PsiGroup
from sandbox.coordinator import JobPublic
from sandbox.errors import IntersectionTooSmall, InvalidParameters
from sandbox.identifiers import JobDomain, normalise
from sandbox.isolation import OperatorContext
from sandbox.join_params import JoinPlan
from sandbox.join_wire import ct_width, frame, on_lattice, unframe
from sandbox.noise_shares import NoisePlan, noise_share
from sandbox.paillier import FastEncryptor, public_key_from_n
from sandbox.party_stats import PartyJob
from sandbox.party_steps import run_step
from sandbox.psi import EcEngine
from sandbox.psi_sets import ELEMENT, ELEMENT_DTYPE, SortedSet, permutation
from sandbox.stats import _rows

__all__ = ["STEPS", "count_noise", "noised_count", "refuse_below_minimum", "step"]

NOISE_RNG: np.random.Generator | None = None
"""Tests only (set in-process, never from a request): a seeded generator for the DP draw.
None, always in production: `noise_share`'s own samplers (OpenDP). Every minimum decided
on a noised count draws through `count_noise`: this cohort's, a two-provider join's
matcher (`sandbox.join_party`) and the hetero-LR guest (`sandbox.vertical_party`)."""


def count_noise(plan: NoisePlan, groups: int) -> list[int]:
    """The calling party's noise share for `groups` × the plan's fields, in lattice units."""
    return noise_share(plan, groups, rng=NOISE_RNG)


def noised_count(plan: NoisePlan, hits: Sequence[int], shares: Sequence[int]) -> Fraction:
    """Σ over groups of (exact count on the count lattice + the count's noise draw), decoded.

    The count ("rows") is the first field of every join layout; `shares` is a noise share
    of `len(hits)` groups (`count_noise`). When that share is the whole noise the count is
    (a sum of) ε-DP values, so any decision on it is post-processing (docs/privacy.md §2).
    """
    width, unit = len(plan.scales), plan.encode(0, Fraction(1))
    lattice = sum(h * unit + shares[g * width] for g, h in enumerate(hits))
    return lattice * plan.units[0]


def refuse_below_minimum(count: Fraction | int, minimum: int, state: dict[str, Any]) -> None:
    """Below the minimum nothing but the refusal leaves (the session's state is dropped).

    `count` is the count as released: under DP the noised one, so release-or-refuse is a
    function of the DP value, not of the exact count, and a requester that chooses one
    side's rows (known members plus a target) learns nothing it would not learn from the
    release; without DP the exact one, which is what is released anyway.
    """
    if count < minimum:
        state.clear()
        raise IntersectionTooSmall(
            "the intersection is below the minimum size; nothing is released",
            min_intersection=minimum,
        )


def _job(ctx: OperatorContext) -> tuple[JoinPlan, JobPublic, PartyJob]:
    plan = JoinPlan.from_params(ctx.params["plan"])
    if plan.cohort is None:
        raise InvalidParameters("not a join with the requester's own cohort")
    job = JobPublic.from_request(ctx.params["job"], {})
    party = ctx.params.get("party")
    if job.paillier_n is None or not isinstance(party, dict):
        raise InvalidParameters("a cohort join runs under the requester's job key")
    pj = PartyJob(job.job_id, int(job.paillier_n), providers=int(party["providers"]),
                  min_cohort=int(party["min_cohort"]), dp=party.get("dp"))  # fmt: skip
    if pj.providers != 1:
        raise InvalidParameters("a cohort join has one provider, whose sandbox adds the noise")
    return plan, job, pj


def _start(ctx: OperatorContext) -> bytes:
    """Read the key column, make k2 and the job salt; announce |Y|. Counts and reveals only."""
    plan, job, pj = _job(ctx)
    assert plan.cohort is not None  # _job checked
    q, kind = plan.query, plan.join.kind
    reveal = bool(ctx.params.get("reveal"))
    if q.op != "stats.count":
        raise InvalidParameters(
            "a join with the requester's own cohort releases counts only: its values would "
            "travel through the requester's SDK"
        )
    salt = os.urandom(32)
    domain = JobDomain(job.job_id, salt)
    lattice: NoisePlan | None = None if reveal else pj.plan(q)
    seen: set[bytes] = set()
    for row in _rows(ctx.inputs, plan.right_columns):
        canonical = normalise(kind, row[0])
        if canonical is not None:  # one element per identifier: bounded influence per person
            seen.add(domain.message(kind, canonical))
    elements = (
        np.frombuffer(b"".join(seen), dtype=ELEMENT_DTYPE) if seen else np.empty(0, ELEMENT_DTYPE)
    )
    ctx.state.update(
        role="cohort", plan=plan, job=job, party=pj, lattice=lattice, reveal=reveal,
        engine=EcEngine(PsiGroup(domain.dst)), elements=elements[permutation(len(elements))],
        next=0, size=int(plan.cohort.size), received=[], received_n=0, sealed=False,
        returned=set(), hits=0,
    )  # fmt: skip
    return frame({"rows": len(elements), "salt": salt.hex(), "dst": domain.dst.hex()})


def _elements(ctx: OperatorContext) -> bytes:
    """One batch of the SDK's x(k1·H(x)): blind again and keep (or, revealing, send back)."""
    if ctx.state["sealed"]:
        raise InvalidParameters("the requester's elements were already complete")
    header, body = unframe(ctx.blobs.get("elements", b""))
    count, final = int(header.get("count", -1)), bool(header.get("final"))
    if count < 0 or len(body) != count * ELEMENT:
        raise InvalidParameters("malformed cohort elements")
    ctx.state["received_n"] += count
    if ctx.state["received_n"] > ctx.state["size"]:
        raise InvalidParameters("more identifiers than the cohort's declared size")
    engine: EcEngine = ctx.state["engine"]
    try:
        doubled = engine.blind(engine.group.lift_packed(body))
    except CryptoError:
        raise InvalidParameters("a cohort element is not a P-256 abscissa") from None
    if ctx.state["reveal"]:
        ctx.state["sealed"] = final
        return frame({"count": count}, doubled)  # in the SDK's own order: it matches
    ctx.state["received"].append(doubled)
    if final:
        arr = np.frombuffer(b"".join(ctx.state["received"]), dtype=ELEMENT_DTYPE)
        ctx.state.update(received=None, sealed=True, members=SortedSet(np.unique(arr)))
    return frame({"ok": True, "received": ctx.state["received_n"]})


def _pairs(ctx: OperatorContext) -> bytes:
    """The next batch of shuffled k2·H(y) (points only: no value travels)."""
    if not ctx.state["sealed"]:
        raise InvalidParameters("the provider's points go out after the requester's elements")
    batch = max(1, min(int(ctx.params.get("batch", 256)), 65536))
    start = int(ctx.state["next"])
    elements = ctx.state["elements"][start : start + batch]
    points = ctx.state["engine"].hash_blind(elements.tobytes())
    ctx.state["next"] = start + len(elements)
    final = ctx.state["next"] >= len(ctx.state["elements"])
    return frame({"count": len(elements), "final": final}, points)


def _matched(ctx: OperatorContext) -> bytes:
    """One batch of the SDK's returned elements: distinct, never more than were sent; counted."""
    if ctx.state["reveal"] or not ctx.state["sealed"]:
        raise InvalidParameters("returned elements before the requester's elements")
    if ctx.state["next"] < len(ctx.state["elements"]):
        raise InvalidParameters("returned elements before every point was sent")
    header, body = unframe(ctx.blobs.get("pairs", b""))
    count = int(header.get("count", -1))
    if count < 0 or len(body) != count * ELEMENT:
        raise InvalidParameters("malformed returned elements")
    returned: set[bytes] = ctx.state["returned"]
    if len(returned) + count > len(ctx.state["elements"]):
        raise InvalidParameters("more elements returned than were sent")
    for i in range(count):
        e = body[i * ELEMENT : (i + 1) * ELEMENT]
        if e in returned:
            raise InvalidParameters("a returned element repeats")
        returned.add(e)
    hits = ctx.state["members"].hits(np.frombuffer(body, dtype=ELEMENT_DTYPE))
    ctx.state["hits"] += int(np.count_nonzero(hits))
    return frame({"ok": True})


def _result(ctx: OperatorContext) -> bytes:
    """The count (noised under DP) under the requester's key, or the refusal below the minimum.

    Under DP the minimum is checked on the noised count, the value released: refusing is
    then a function of the DP release alone (post-processing), not of the exact count, so
    a cohort of known members plus one target does not tell the target's membership.
    """
    if ctx.state["reveal"] or len(ctx.state["returned"]) != len(ctx.state["elements"]):
        ctx.state.clear()
        raise InvalidParameters("the requester did not return every element")
    pj: PartyJob = ctx.state["party"]
    q = ctx.state["plan"].query
    lattice: NoisePlan | None = ctx.state["lattice"]
    hits: int = ctx.state["hits"]
    if lattice is None:
        values, released = [hits], Fraction(hits)
    else:
        unit = on_lattice(lattice, q.fields(), [1], q)
        noise = count_noise(lattice, 1)
        values = [hits * u + z for u, z in zip(unit, noise, strict=True)]
        released = noised_count(lattice, [hits], noise)
    refuse_below_minimum(released, pj.min_cohort, ctx.state)
    job: JobPublic = ctx.state["job"]
    rn = int(job.paillier_n or 0)
    enc, width = FastEncryptor(public_key_from_n(rn)), ct_width(rn)
    out = b"".join(enc.encrypt_raw(v).to_bytes(width, "big") for v in values)
    ctx.state.clear()
    # The lattice's unit is in the header the node signs (`sandbox.step_signing`): the SDK
    # checks the document's against it, so no relay can rescale what the count decodes to.
    units = [[u.numerator, u.denominator] for u in lattice.units] if lattice else None
    return frame({"job_id": job.job_id, "groups": 1, "fields": len(values), "units": units}, out)


STEPS = {
    "cohort.start": _start,
    "cohort.elements": _elements,
    "cohort.pairs": _pairs,
    "cohort.matched": _matched,
    "cohort.result": _result,
}


def step(ctx: OperatorContext) -> bytes:
    """One step of the provider's side (`params.step`), in order, each session started once."""
    return run_step(ctx, STEPS, kind="join", party="a join party")

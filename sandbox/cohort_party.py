"""The provider's side of a join with the requester's own cohort, inside its sandbox (issue 18).

The enterprise's identifiers never reach the platform: its SDK (`pdx_client.psi`) blinds
them on its machine, and this sandbox is the matcher. Private Join and Compute turned
around, so the enterprise never learns an exact size or a member when the policy requires
noise (x(·) is the abscissa, H the job's RFC 9380 hash to P-256, J a Paillier key made
here that never leaves this process):

a. SDK → here, in batches: shuffled x(k1·H(x)) for its normalised identifiers.
b. here: fresh k2; keeps x(k2·k1·H(x)) (`cohort.elements`); → SDK, in batches, shuffled
   pairs (k2·H(y), Enc_J(v_y)) for each identifier y of the provider's key column
   (`cohort.pairs`, v_y the per-field vector of `sandbox.join_wire.value_vector`).
c. SDK: x(k1·k2·H(y)), each Enc_J re-randomised, all pairs shuffled with its own
   permutation (over the whole set, not per batch), returned in batches.
d. here (`cohort.matched`, `cohort.result`): every returned element must be distinct and
   all of them returned; matched ciphertexts are multiplied; below the bound minimum
   intersection nothing leaves but the refusal; otherwise only the per-field sums are
   decrypted with J, the approved DP noise is added (the whole noise: this is the only
   party, `sandbox.noise_shares` with one provider), and the result is encrypted under
   the requester's job key, which only its SDK opens (`pdx_client.jobkeys.JobKey.decrypt`).

Who learns what:

| party              | learns                                                            |
|--------------------|-------------------------------------------------------------------|
| enterprise (SDK)   | |Y| (the provider's distinct identifiers) and nothing else before  |
|                    | release: it never holds J's secret, sees k2-blinded points only   |
| provider's sandbox | |X| and the exact intersection size, inside the sandbox only; no   |
|                    | member (the SDK's shuffle and re-randomisation unlink the pairs)  |
| coordinator        | counts, the job salt and opaque bytes (blinded points, Enc_J,     |
|                    | the result under the requester's key)                             |
| requester          | the released, minimum-checked and (under DP) noised count / sums  |

`psi.intersection` (`cohort.reveal`) is the standard ECDH direction instead: the SDK gets
back x(k2·k1·H(x)) in its own order with the x(k2·H(y)) and learns which of its own
identifiers are in Y; the sandbox learns |X|. The policy decides whether it may run.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import gmpy2  # type: ignore[import-untyped]
import numpy as np
import phe  # type: ignore[import-untyped]

from crypto.errors import CryptoError
from crypto.psi_ec import PsiGroup
from sandbox.coordinator import JobPublic
from sandbox.errors import IntersectionTooSmall, InvalidParameters
from sandbox.identifiers import JobDomain, normalise
from sandbox.isolation import OperatorContext
from sandbox.join_params import JoinPlan
from sandbox.join_wire import ct_width, frame, on_lattice, unframe, value_vector
from sandbox.noise_shares import NoisePlan, noise_share
from sandbox.paillier import FastEncryptor, encode_fixed, public_key_from_n
from sandbox.party_stats import PartyJob
from sandbox.psi import EcEngine
from sandbox.psi_sets import ELEMENT, ELEMENT_DTYPE, SortedSet, permutation
from sandbox.stats import _rows

__all__ = ["STEPS", "step"]

MIN_J_BITS = 1024


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
    """Read the key column (and values), make k2, J and the job salt; announce |Y| and J."""
    plan, job, pj = _job(ctx)
    assert plan.cohort is not None  # _job checked
    q, kind = plan.query, plan.join.kind
    reveal = bool(ctx.params.get("reveal"))
    bits = int(ctx.params.get("key_bits", 2048))
    if bits < MIN_J_BITS and not reveal:
        raise InvalidParameters(f"the sandbox's Paillier key needs at least {MIN_J_BITS} bits")
    salt = os.urandom(32)
    domain = JobDomain(job.job_id, salt)
    lo = hi = None
    if q.clip is not None:
        lo = encode_fixed(Decimal(repr(q.clip[0])), q.decimals)
        hi = encode_fixed(Decimal(repr(q.clip[1])), q.decimals)
    lattice: NoisePlan | None = pj.plan(q)
    rows: dict[bytes, list[int]] = {}
    for row in _rows(ctx.inputs, plan.right_columns):
        canonical = normalise(kind, row[0])
        if canonical is None:
            continue
        msg = domain.message(kind, canonical)
        if msg not in rows:  # one row per identifier: bounded influence per person
            vec = [] if reveal else value_vector(plan, row, lo, hi)
            rows[msg] = (
                vec if lattice is None or reveal else on_lattice(lattice, q.fields(), vec, q)
            )
    elements = (
        np.frombuffer(b"".join(rows), dtype=ELEMENT_DTYPE) if rows else np.empty(0, ELEMENT_DTYPE)
    )
    vectors = list(rows.values())
    perm = permutation(len(vectors))
    header: dict[str, Any] = {"rows": len(vectors), "salt": salt.hex(), "dst": domain.dst.hex()}
    ctx.state.update(
        role="cohort", plan=plan, job=job, party=pj, lattice=lattice, reveal=reveal,
        engine=EcEngine(PsiGroup(domain.dst)), elements=elements[perm],
        vectors=[vectors[int(i)] for i in perm], next=0, size=int(plan.cohort.size),
        received=[], received_n=0, sealed=False, returned=set(), hits=0,
    )  # fmt: skip
    if not reveal and q.op == "stats.count":
        # A count needs no values: every record's vector is the same (1, on the DP lattice
        # under DP), so the sum is the exact matches times it. No J, no ciphertexts.
        unit = on_lattice(lattice, q.fields(), [1], q) if lattice is not None else [1]
        ctx.state.update(acc=[], unit=unit, vectors=[[] for _ in vectors])
        header["fields"] = 0
    elif not reveal:
        pk, sk = phe.generate_paillier_keypair(n_length=bits)
        n = int(pk.n)
        ctx.state.update(j_sk=sk, j_n=n, j_n2=gmpy2.mpz(n) ** 2,
                         acc=[gmpy2.mpz(1)] * len(q.fields()))  # fmt: skip
        header["n_j"] = format(n, "x")
        header["fields"] = len(q.fields())
    return frame(header)


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
    """The next batch of shuffled (k2·H(y)[, Enc_J(v_y) per field])."""
    if not ctx.state["sealed"]:
        raise InvalidParameters("the provider's pairs go out after the requester's elements")
    batch = max(1, min(int(ctx.params.get("batch", 256)), 65536))
    start = int(ctx.state["next"])
    elements = ctx.state["elements"][start : start + batch]
    points = ctx.state["engine"].hash_blind(elements.tobytes())
    cts = b""
    if not ctx.state["reveal"] and ctx.state["acc"]:
        n = ctx.state["j_n"]
        enc = ctx.state.get("enc")
        if enc is None:
            enc = ctx.state["enc"] = FastEncryptor(public_key_from_n(n))
        width = ct_width(n)
        vectors = ctx.state["vectors"][start : start + batch]
        cts = b"".join(enc.encrypt_raw(v).to_bytes(width, "big") for vec in vectors for v in vec)
    ctx.state["next"] = start + len(elements)
    final = ctx.state["next"] >= len(ctx.state["elements"])
    return frame({"count": len(elements), "final": final}, points + cts)


def _matched(ctx: OperatorContext) -> bytes:
    """One batch of the SDK's returned pairs: distinct, never more than were sent; sum matches."""
    if ctx.state["reveal"] or not ctx.state["sealed"]:
        raise InvalidParameters("returned pairs before the requester's elements")
    if ctx.state["next"] < len(ctx.state["elements"]):
        raise InvalidParameters("returned pairs before every pair was sent")
    header, body = unframe(ctx.blobs.get("pairs", b""))
    count = int(header.get("count", -1))
    fields = len(ctx.state["acc"])
    n2 = ctx.state.get("j_n2", 0)
    width = ct_width(ctx.state["j_n"]) if fields else 0
    if count < 0 or len(body) != count * (ELEMENT + fields * width):
        raise InvalidParameters("malformed returned pairs")
    returned: set[bytes] = ctx.state["returned"]
    if len(returned) + count > len(ctx.state["elements"]):
        raise InvalidParameters("more pairs returned than were sent")
    stride = ELEMENT + fields * width
    mine = []
    for i in range(count):
        e = body[i * stride : i * stride + ELEMENT]
        if e in returned:
            raise InvalidParameters("a returned element repeats")
        returned.add(e)
        mine.append(e)
    hits = ctx.state["members"].hits(np.frombuffer(b"".join(mine), dtype=ELEMENT_DTYPE))
    acc = ctx.state["acc"]
    for i in np.flatnonzero(hits):
        base = int(i) * stride + ELEMENT
        for f in range(fields):
            c = gmpy2.mpz(int.from_bytes(body[base + f * width : base + (f + 1) * width], "big"))
            if not 0 < c < n2:
                raise InvalidParameters("ciphertext outside Z*_{n^2}")
            acc[f] = acc[f] * c % n2
    ctx.state["hits"] += int(np.count_nonzero(hits))
    return frame({"ok": True})


def _result(ctx: OperatorContext) -> bytes:
    """Refuse below the minimum; else the noisy per-field sums under the requester's key."""
    if ctx.state["reveal"] or len(ctx.state["returned"]) != len(ctx.state["elements"]):
        ctx.state.clear()
        raise InvalidParameters("the requester did not return every pair")
    pj: PartyJob = ctx.state["party"]
    if ctx.state["hits"] < pj.min_cohort:
        ctx.state.clear()
        raise IntersectionTooSmall(
            "the intersection is below the minimum size; nothing is released",
            min_intersection=pj.min_cohort,
        )
    sums = []
    if not ctx.state["acc"]:  # a count: the exact matches times the one per-record vector
        sums = [ctx.state["hits"] * u for u in ctx.state["unit"]]
    else:
        sk, n = ctx.state["j_sk"], ctx.state["j_n"]
        for c in ctx.state["acc"]:
            m = int(sk.raw_decrypt(int(c)))
            sums.append(m - n if m > n // 2 else m)
    lattice: NoisePlan | None = ctx.state["lattice"]
    if lattice is not None:
        sums = [s + z for s, z in zip(sums, noise_share(lattice, 1), strict=True)]
    job: JobPublic = ctx.state["job"]
    rn = int(job.paillier_n or 0)
    enc, width = FastEncryptor(public_key_from_n(rn)), ct_width(rn)
    out = b"".join(enc.encrypt_raw(s).to_bytes(width, "big") for s in sums)
    fields = len(sums)
    ctx.state.clear()
    return frame({"job_id": job.job_id, "groups": 1, "fields": fields}, out)


STEPS = {
    "cohort.start": _start,
    "cohort.elements": _elements,
    "cohort.pairs": _pairs,
    "cohort.matched": _matched,
    "cohort.result": _result,
}


def step(ctx: OperatorContext) -> bytes:
    """One step of the provider's side (`params.step`), in order, each session started once."""
    name = str(ctx.params.get("step", ""))
    fn = STEPS.get(name)
    if fn is None:
        raise InvalidParameters("unknown join step")
    if name == "cohort.start":
        if ctx.state:
            raise InvalidParameters("a join party starts once")
    elif ctx.state.get("role") != "cohort":
        raise InvalidParameters("join step out of order")
    return fn(ctx)

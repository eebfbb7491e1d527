"""One provider's side of a private join, run inside its sandbox (vetted operator `psi.*`).

The protocol is Private Join and Compute (Ion et al., EuroS&P 2020; `sandbox.psi`)
generalised to a vector of values per identifier and to groups of the cohort:

1. matcher (inputs[0], the cohort) → value party: {k1·H(x)} per declared group of x.
2. value party → matcher: {k2·k1·H(x)} per group, each group shuffled.
3. value party → matcher, in batches: shuffled (k2·H(y), Enc(v_y,f) for each field f),
   where v_y = (1, present, value[, value²]) per column, one row per identifier (later
   duplicates are ignored, so one person's influence is bounded by the clip).
4. matcher: per group g and field f, Π Enc(v_y,f) over the matches, re-randomised;
   → the result party, which decrypts only these per-group sums.

Under a requester-held job key (`params.party`, `sandbox.joins_party_key`) the key is the
requester's and nobody on the platform can decrypt: the value party encodes each
record's values on the DP lattice (`sandbox.noise_shares.NoisePlan`) and sends its
encrypted noise share (`value.noise`); the matcher refuses when the intersection is below
the minimum, then adds the value party's share and its own to the sums, so the only
ciphertexts that leave are noisy aggregates only the requester's SDK opens. Under DP that
refusal is decided on the exact count plus the matcher's own count-noise share, which
with two providers (n = 2, t = 1) is the whole noise by itself: a function of an ε-DP
value, not of the exact count (`sandbox.cohort_party.refuse_below_minimum`).
The value party's batches are then also sealed for the matcher (`crypto.relay`, keyed by
the two parties' agreement seed, `mask_seeds` in each start step's blobs).

Every message is produced and consumed here, inside the sandbox of the party that owns
the rows; the platform relays opaque bytes. Who learns what:

| party        | learns                                                                  |
|--------------|-------------------------------------------------------------------------|
| matcher      | (inside its sandbox only) |X|, |Y|, the exact intersection size per     |
|              | group; its sandbox returns nothing but ciphertexts under the job key    |
| value party  | |X_g| per declared group of the cohort (the cohort's group sizes)       |
| coordinator  | element counts and ciphertexts; never the job salt's use or a member    |
| result party | per-group sums over the intersection, before the release gate's noise   |

Group elements are P-256 points (RFC 9380 hash-to-curve, `crypto.psi_ec`) under a DST
and HMAC key per job (`sandbox.identifiers.JobDomain`); scalars are fresh per session.
"""

from __future__ import annotations

import json
from decimal import Decimal

import gmpy2  # type: ignore[import-untyped]
import numpy as np

from crypto.errors import CryptoError
from crypto.psi_ec import PsiGroup
from crypto.relay import open_relay, relay_key, seal_relay
from sandbox._stats_query import MAX_GROUPS, OTHER
from sandbox.cohort_party import count_noise, noised_count, refuse_below_minimum
from sandbox.cohort_party import step as cohort_step
from sandbox.coordinator import JobPublic
from sandbox.errors import GroupCardinalityExceeded, InvalidParameters
from sandbox.identifiers import JobDomain, normalise
from sandbox.isolation import OperatorContext
from sandbox.join_params import JoinPlan
from sandbox.join_wire import ct_width, frame, on_lattice, unframe, value_vector
from sandbox.noise_shares import NoisePlan, noise_share
from sandbox.paillier import FastEncryptor, encode_fixed, public_key_from_n
from sandbox.party_stats import PartyJob
from sandbox.psi import POINT
from sandbox.psi_sets import ELEMENT, ELEMENT_DTYPE, SortedSet, permutation
from sandbox.session_pool import PartyEngine, close_all, pooled, release
from sandbox.stats import _rows

__all__ = ["party"]


def _split(body: bytes, counts: list[int], width: int) -> list[bytes]:
    """`body` cut into runs of counts[i] elements of `width` bytes (POINT or ELEMENT)."""
    if any(c < 0 for c in counts) or sum(counts) * width != len(body):
        raise InvalidParameters("element counts do not match the message")
    out, at = [], 0
    for c in counts:
        out.append(body[at : at + c * width])
        at += c * width
    return out


def _start(ctx: OperatorContext) -> tuple[JoinPlan, JobPublic, JobDomain]:
    plan = JoinPlan.from_params(ctx.params["plan"])
    job = JobPublic.from_request(ctx.params["job"], {})
    if job.paillier_n is None:
        raise InvalidParameters("a join needs the job's Paillier key")
    salt = ctx.blobs.get("salt", b"")
    party = ctx.params.get("party")
    noise: NoisePlan | None = None
    if party is not None:  # a requester-held key: this party adds its noise share
        if not isinstance(party, dict):
            raise InvalidParameters("malformed job key binding")
        pj = PartyJob(job.job_id, int(job.paillier_n), providers=int(party["providers"]),
                      min_cohort=int(party["min_cohort"]), dp=party.get("dp"))  # fmt: skip
        noise = pj.plan(plan.query)
    ctx.state.update(party=party, noise=noise, relay=_relay_key(ctx, job.job_id), batch=0)
    return plan, job, JobDomain(job.job_id, salt)


def _relay_key(ctx: OperatorContext, job_id: str) -> bytes | None:
    """Requester-held key: the key both parties derive from their agreement seed."""
    party = ctx.params.get("party")
    if party is None:
        return None
    raw = ctx.blobs.get("mask_seeds")
    seeds = json.loads(raw) if raw else {}
    if not isinstance(seeds, dict) or len(seeds) != 1:
        raise InvalidParameters("a join party needs its one peer's agreement seed")
    (seed,) = seeds.values()
    return relay_key(bytes.fromhex(str(seed)), job_id.encode())


def _relay_aad(ctx: OperatorContext) -> bytes:
    return f"pdx:join:value.pairs:{ctx.state['job'].job_id}".encode()


def _encrypted_noise(
    ctx: OperatorContext, groups: int, width: int, shares: list[int] | None = None
) -> list[int]:
    """The calling party's noise share (groups × fields, lattice units), encrypted (raw).

    `shares`: the share already drawn (the matcher decided the minimum on it).
    """
    plan: NoisePlan | None = ctx.state.get("noise")
    if plan is None:
        return []
    n = int(ctx.state["job"].paillier_n)
    enc = FastEncryptor(public_key_from_n(n))
    if shares is None:
        shares = noise_share(plan, groups)
    if len(shares) != groups * width:
        raise InvalidParameters("noise share does not match the layout")
    return [enc.encrypt_raw(z) for z in shares]


# -- the matcher (cohort) ----------------------------------------------------------------------


def _matcher_start(ctx: OperatorContext) -> bytes:
    plan, job, domain = _start(ctx)
    q, key = plan.query, plan.join
    slot = {g: i for i, g in enumerate(q.group_keys)}
    per_group: list[list[bytes]] = [[] for _ in q.group_keys]
    seen_msgs: set[bytes] = set()
    seen_groups: set[str] = set()
    for row in _rows(ctx.inputs, plan.left_columns):
        canonical = normalise(key.kind, row[0])
        if canonical is None:
            continue  # cannot join: dropped here, never sent
        msg = domain.message(key.kind, canonical)
        if msg in seen_msgs:
            continue
        seen_msgs.add(msg)
        g = 0
        if q.group_by is not None:
            value = row[1].strip()
            seen_groups.add(value)
            if len(seen_groups) > MAX_GROUPS:
                raise GroupCardinalityExceeded(
                    "group-by column has too many distinct values", max_groups=MAX_GROUPS
                )
            g = slot.get(value, slot[OTHER])
        per_group[g].append(msg)
    del seen_msgs
    engine = _engine(ctx, PartyEngine(PsiGroup(domain.dst)), sum(len(m) for m in per_group))
    ctx.state.update(role="matcher", engine=engine, plan=plan, job=job, sets=None)
    counts, chunks = [], []
    for msgs in per_group:
        uniq = np.unique(np.frombuffer(b"".join(msgs), dtype=ELEMENT_DTYPE)) if msgs else []
        chunks.append(engine.hash_blind(bytes(np.asarray(uniq, dtype=ELEMENT_DTYPE).tobytes())))
        counts.append(len(uniq))
    n = int(job.paillier_n or 0)
    fields = len(q.fields())
    ctx.state["acc"] = [[gmpy2.mpz(1)] * fields for _ in q.group_keys]
    ctx.state["hits"] = [0] * len(q.group_keys)
    ctx.state["n2"] = gmpy2.mpz(n) ** 2
    return frame({"counts": counts}, b"".join(chunks))


def _matcher_doubles(ctx: OperatorContext) -> bytes:
    header, body = unframe(ctx.blobs.get("doubles", b""))
    sets = [
        SortedSet(np.frombuffer(chunk, dtype=ELEMENT_DTYPE).copy())
        for chunk in _split(body, [int(c) for c in header["counts"]], ELEMENT)
    ]
    ctx.state["sets"] = sets
    return frame({"ok": True})


def _matcher_pairs(ctx: OperatorContext) -> bytes:
    sets = ctx.state.get("sets")
    if sets is None:
        raise InvalidParameters("value pairs before the double blindings")
    header, body = unframe(ctx.blobs.get("pairs", b""))
    count, fields = int(header["count"]), len(ctx.state["acc"][0])
    n2 = ctx.state["n2"]
    width = ct_width(int(ctx.state["job"].paillier_n))
    elements, cts = body[: count * POINT], body[count * POINT :]
    if ctx.state.get("relay") is not None:  # sealed by the value party for this sandbox
        try:
            cts = open_relay(ctx.state["relay"], ctx.state["batch"], _relay_aad(ctx), cts)
        except CryptoError:
            raise InvalidParameters("value pairs failed authentication") from None
        ctx.state["batch"] += 1
    if count < 0 or len(elements) != count * POINT or len(cts) != count * fields * width:
        raise InvalidParameters("malformed value pairs")
    engine = _engine(ctx, ctx.state["engine"], count)
    mine = np.frombuffer(engine.blind(elements), dtype=ELEMENT_DTYPE)
    for g, members in enumerate(sets):
        acc = ctx.state["acc"][g]
        matched = np.flatnonzero(members.hits(mine))
        ctx.state["hits"][g] += len(matched)
        for i in matched:
            base = int(i) * fields * width
            for f in range(fields):
                c = gmpy2.mpz(int.from_bytes(cts[base + f * width : base + (f + 1) * width], "big"))
                if not 0 < c < n2:
                    raise InvalidParameters("ciphertext outside Z*_{n^2}")
                acc[f] = acc[f] * c % n2
    return frame({"ok": True})


def _matcher_result(ctx: OperatorContext) -> bytes:
    """Every per-group sum, re-randomised so the result party cannot tell which were summed."""
    job: JobPublic = ctx.state["job"]
    n = int(job.paillier_n or 0)
    enc = FastEncryptor(public_key_from_n(n))
    n2, width = ctx.state["n2"], ct_width(n)
    party = ctx.state.get("party")
    if party is not None:
        _add_noise(ctx, int(party["min_cohort"]), width)
    out = b"".join(
        int(c * enc.obfuscator() % n2).to_bytes(width, "big")
        for group in ctx.state["acc"]
        for c in group
    )
    groups, fields = len(ctx.state["acc"]), len(ctx.state["acc"][0])
    release(ctx.state)
    ctx.state.clear()
    return frame({"job_id": job.job_id, "groups": groups, "fields": fields}, out)


def _add_noise(ctx: OperatorContext, min_intersection: int, width: int) -> None:
    """Requester-held key: refuse below the minimum, else add both parties' noise shares.

    Without DP the refusal is on the exact intersection (the exact counts are released
    anyway). Under DP it is on the exact count plus this matcher's own count-noise share
    (`noised_count`): with two providers (n = 2, t = 1) that share alone is the approved
    noise (m = n − t = 1, `sandbox.noise_shares`), so the decision is post-processing of
    an ε-DP count; the value party's share, added to the release as well, is independent
    of it (docs/privacy.md §6.1.1). Only the refusal leaves this sandbox.
    """
    acc, n2 = ctx.state["acc"], ctx.state["n2"]
    groups, fields = len(acc), len(acc[0])
    plan: NoisePlan | None = ctx.state["noise"]
    drawn: list[int] | None = None
    if plan is None:
        count = sum(ctx.state["hits"])
    else:
        if plan.shares != 1:
            raise InvalidParameters("a join's matcher share must be the whole noise (n = 2)")
        drawn = count_noise(plan, groups)
        count = noised_count(plan, ctx.state["hits"], drawn)
    refuse_below_minimum(count, min_intersection, ctx.state)
    header, body = unframe(ctx.blobs.get("noise", b""))
    theirs = [int.from_bytes(body[i : i + width], "big") for i in range(0, len(body), width)]
    if plan is not None and (
        (header.get("groups"), header.get("fields")) != (groups, fields)
        or len(theirs) != groups * fields
        or len(body) != len(theirs) * width
    ):
        raise InvalidParameters("the value party's noise share does not match the layout")
    mine = _encrypted_noise(ctx, groups, fields, drawn)
    for extra in (theirs, mine):
        for i, c in enumerate(extra):
            if not 0 < c < n2:
                raise InvalidParameters("ciphertext outside Z*_{n^2}")
            acc[i // fields][i % fields] = acc[i // fields][i % fields] * c % n2


# -- the value party ---------------------------------------------------------------------------


def _value_start(ctx: OperatorContext) -> bytes:
    plan, job, domain = _start(ctx)
    q, key = plan.query, plan.join
    lo = hi = None
    if q.clip is not None:
        lo = encode_fixed(Decimal(repr(q.clip[0])), q.decimals)
        hi = encode_fixed(Decimal(repr(q.clip[1])), q.decimals)
    rows: dict[bytes, list[int]] = {}
    lattice: NoisePlan | None = ctx.state.get("noise")
    for row in _rows(ctx.inputs, plan.right_columns):
        canonical = normalise(key.kind, row[0])
        if canonical is None:
            continue
        msg = domain.message(key.kind, canonical)
        if msg not in rows:  # one row per identifier: bounded influence per person
            vec = value_vector(plan, row, lo, hi)
            rows[msg] = vec if lattice is None else on_lattice(lattice, q.fields(), vec, q)
    elements = (
        np.frombuffer(b"".join(rows), dtype=ELEMENT_DTYPE)
        if rows
        else np.empty(0, dtype=ELEMENT_DTYPE)
    )
    vectors = list(rows.values())
    perm = permutation(len(vectors))
    ctx.state.update(
        plan=plan,
        role="value",
        engine=_engine(ctx, PartyEngine(PsiGroup(domain.dst)), len(vectors)),
        job=job,
        elements=elements[perm],
        vectors=[vectors[int(i)] for i in perm],
        next=0,
    )
    return frame({"ok": True})


def _value_respond(ctx: OperatorContext) -> bytes:
    header, body = unframe(ctx.blobs.get("blinded", b""))
    counts = [int(c) for c in header["counts"]]
    engine = _engine(ctx, ctx.state["engine"], sum(counts))
    out = []
    for chunk in _split(body, counts, POINT):
        arr = np.frombuffer(engine.blind(chunk), dtype=ELEMENT_DTYPE)
        out.append(arr[permutation(len(arr))].tobytes())
    return frame({"counts": counts}, b"".join(out))


def _value_pairs(ctx: OperatorContext) -> bytes:
    batch = max(1, min(int(ctx.params.get("batch", 2048)), 65536))
    start = int(ctx.state["next"])
    elements = ctx.state["elements"][start : start + batch]
    vectors = ctx.state["vectors"][start : start + batch]
    job: JobPublic = ctx.state["job"]
    n = int(job.paillier_n or 0)
    engine = _engine(ctx, ctx.state["engine"], len(ctx.state["vectors"]))
    enc = ctx.state.get("enc")
    if enc is None:
        enc = ctx.state["enc"] = FastEncryptor(public_key_from_n(n))
        if ctx.state.get("pool") is None:  # else each worker builds its own table
            enc.precompute()
    width = ct_width(n)
    # the encryptions and the hashing share the session pool's workers (both cores)
    pending = engine.encrypt_async(enc, [v for vec in vectors for v in vec])
    blinded = engine.hash_blind(elements.tobytes())
    cts = b"".join(c.to_bytes(width, "big") for c in pending())
    if ctx.state.get("relay") is not None:  # only the matcher's sandbox can open them
        cts = seal_relay(ctx.state["relay"], ctx.state["batch"], _relay_aad(ctx), cts)
        ctx.state["batch"] += 1
    ctx.state["next"] = start + len(vectors)
    final = ctx.state["next"] >= len(ctx.state["vectors"])
    if final:  # the value party's last pool work: `value.noise` encrypts a few values only
        engine.attach(None)
        release(ctx.state)
    return frame({"count": len(vectors), "final": final}, blinded + cts)


def _value_noise(ctx: OperatorContext) -> bytes:
    """Requester-held key: this party's noise share, encrypted (nothing without DP)."""
    if ctx.state.get("party") is None:
        raise InvalidParameters("noise shares are for requester-held keys")
    q = ctx.state["plan"].query
    groups, fields = len(q.group_keys), len(q.fields())
    width = ct_width(int(ctx.state["job"].paillier_n))
    cts = _encrypted_noise(ctx, groups, fields)
    body = b"".join(c.to_bytes(width, "big") for c in cts)
    return frame({"groups": groups, "fields": fields}, body)


_STEPS = {
    "matcher.start": _matcher_start,
    "matcher.doubles": _matcher_doubles,
    "matcher.pairs": _matcher_pairs,
    "matcher.result": _matcher_result,
    "value.start": _value_start,
    "value.respond": _value_respond,
    "value.pairs": _value_pairs,
    "value.noise": _value_noise,
}
_ROLE = {name: name.split(".", 1)[0] for name in _STEPS}


def party(ctx: OperatorContext) -> bytes:
    """Vetted operator `psi.*`: one step of one party's side (`params.step`)."""
    step = str(ctx.params.get("step", ""))
    if step.startswith("cohort."):  # the requester's own cohort (issue 18)
        return cohort_step(ctx)
    fn = _STEPS.get(step)
    if fn is None:
        raise InvalidParameters("unknown join step")
    if not step.endswith(".start") and ctx.state.get("role") != _ROLE[step]:
        raise InvalidParameters("join step out of order")
    if step.endswith(".start") and ctx.state:
        raise InvalidParameters("a join party starts once")
    try:
        return fn(ctx)
    except BaseException:  # the worker drops this session's state: no pool outlives it
        close_all()
        raise


def _engine(ctx: OperatorContext, engine: PartyEngine, rows: int) -> PartyEngine:
    """`engine` on the session's pool, opened now if `rows` pays for it (`session_pool`)."""
    engine.attach(pooled(ctx.state, rows))
    return engine

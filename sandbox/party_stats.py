"""Statistics under a requester-held key: noisy, masked partials that only the requester can open.

The protocol of one `stats.*` job when the requester sent a `job_key` (docs/privacy.md,
"Requester-held keys"):

1. Keys. The requester's SDK made a Paillier key pair and sent only n and its
   fingerprint. Each provider's node makes an X25519 key for the job (`mask_public`,
   node-side memory only); the platform relays the public halves (`collect_mask_keys`),
   each signed by its provider's own party key; a node checks every peer's signature
   against the keys it pins before it derives a seed (`sandbox.mask_signing`).
2. Partial (`party_partial`, the vetted operator in the provider's sandbox): the
   provider's partial vector (`sandbox.stats.partial_vector`); its *own* record count
   must reach the minimum cohort or it refuses (`CohortTooSmall`); under DP each field is
   rounded to its lattice and a noise share added (`sandbox.noise_shares`); the
   pairwise masks are added (`sandbox.masks`); the vector is encrypted under the
   requester's key. Only that envelope leaves.
3. The coordinator adds the envelopes (`sandbox.coordinator.Coordinator`).
4. The aggregate ciphertext, with the public layout and the post-processing facts, is
   the result (`encrypted_result`); `pdx_client.jobkeys.JobKey.decrypt` opens it.

The node checks what its provider approved before it runs (`check_binding`): the job
key's fingerprint, the DP parameters, the number of providers and the cohort minimum
are in the binding of the node's code request, so a platform that sends another key, a
smaller ε or a different n gets a refusal, not a partial.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from sandbox._registry import ProviderInput
from sandbox._stats_query import StatsQuery
from sandbox.coordinator import (
    Coordinator,
    Envelope,
    JobPublic,
    PartyView,
    SecurityModel,
    seal_vector,
)
from sandbox.errors import CohortTooSmall, InvalidParameters
from sandbox.isolation import OperatorContext, Sandbox, SandboxOutcome, run_parallel
from sandbox.masks import apply_masks, mask_info
from sandbox.noise_shares import NoisePlan, noise_share
from sandbox.paillier import PackedVector

__all__ = [
    "ENCRYPTED_FORMAT",
    "SECURITY_MODEL",
    "ADVERSARY",
    "REQUESTER_HOLDS_KEY",
    "PartyJob",
    "PartyRun",
    "add_envelopes",
    "check_binding",
    "collect_mask_keys",
    "encrypted_result",
    "fingerprint_of",
    "forget_mask_keys",
    "mask_blobs",
    "mask_public",
    "party_partial",
    "result_document",
    "run_party_stats",
    "unpack_aggregate",
]

ENCRYPTED_FORMAT = "pdx-encrypted-aggregate/1"
"""Must equal `pdx_client.jobkeys.ENCRYPTED_FORMAT` (the SDK cannot import this package)."""

ADVERSARY = (
    "semi-honest providers; a curious platform operator; a curious requester "
    "colluding with up to t = floor(n/2) providers"
)
"""Whom a requester-key job (statistics or `fl.logreg`) is safe against."""
REQUESTER_HOLDS_KEY = (
    "the requester's SDK generates and keeps the job's Paillier secret key; the platform "
    "holds the public key and its fingerprint only"
)

SECURITY_MODEL = SecurityModel(
    adversary=ADVERSARY,
    assumptions=(
        REQUESTER_HOLDS_KEY,
        "each provider's node runs only the vetted operator its code request approved (job "
        "key fingerprint, epsilon, number of providers and cohort minimum are bound)",
        "mask keys are signed by each provider's node with its organisation's party key and "
        "checked by every node against the peers' keys its operator pinned "
        "(sandbox.mask_signing); a node without a party key neither signs nor checks, and "
        "a platform substituting such a node's relayed key can strip its masks (it still "
        "cannot decrypt anything)",
        "Paillier (>= 2048-bit n; DCR and DJN short-exponent assumptions) is IND-CPA",
    ),
    parties=(
        PartyView(
            role="provider node",
            holds=("its own dataset", "the job public key", "its X25519 mask key for the job"),
            sees=("its own rows and partial",),
        ),
        PartyView(
            role="platform (coordinator)",
            holds=("the job public key", "the relayed mask public keys", "ciphertexts"),
            sees=(
                "ciphertexts only: no partial, no aggregate, before or after noise",
                "the public layout and how many providers took part",
                "a provider's refusal when its own count is below the cohort minimum",
            ),
        ),
        PartyView(
            role="requester",
            holds=("the job secret key (its SDK)",),
            sees=(
                "the aggregate with the providers' noise shares (DP when the policy asks), "
                "post-processed and cohort-checked on noisy counts by its SDK",
            ),
        ),
    ),
    not_protected=(
        "a requester colluding with the platform and one provider's mask peers can read "
        "that provider's partial plus its own noise share",
        "a requester that skips its SDK's cohort post-processing sees small noisy groups "
        "(they are DP-noised all the same under DP; exact without DP)",
        "providers submitting false data, and which providers participated",
    ),
)
"""The threat model of a requester-key job (its `security_model.threat_model`)."""


def fingerprint_of(scheme: str, n: int) -> str:
    """`sha256:` of the canonical public key, as `pdx_client.jobkeys.fingerprint_of`."""
    canonical = json.dumps(
        {"n": format(n, "x"), "scheme": scheme}, sort_keys=True, separators=(",", ":")
    ).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


class PartyJob:
    """What every provider of one job is told: the public facts the providers approved."""

    def __init__(
        self,
        job_id: str,
        n: int,
        *,
        providers: int,
        min_cohort: int,
        dp: Mapping[str, Any] | None,
    ) -> None:
        self.job_id = job_id
        self.n = n
        self.fingerprint = fingerprint_of("paillier", n)
        self.providers = providers
        self.min_cohort = min_cohort
        self.dp = dict(dp) if dp else None
        self.public = JobPublic(job_id=job_id, scheme="paillier-packed", paillier_n=n)

    def binding(self) -> dict[str, Any]:
        """What a provider's node approves with the job (part of its code request)."""
        return {
            "fingerprint": self.fingerprint,
            "providers": self.providers,
            "min_cohort": self.min_cohort,
            "dp": self.dp,
        }

    def plan(self, query: StatsQuery) -> NoisePlan | None:
        if self.dp is None:
            return None
        return NoisePlan.build(
            query.fields(),
            clip=query.clip,
            epsilon=float(self.dp["epsilon"]),
            delta=float(self.dp.get("delta") or 0.0),
            mechanism=self.dp.get("mechanism", "laplace"),
            providers=self.providers,
            per_partition=1 if query.op == "stats.histogram" else None,
        )


# -- node side: mask keys (node process memory) and the binding check ------------------------

_LOCK = threading.Lock()
_MASK_KEYS: dict[tuple[str, str], tuple[bytes, float]] = {}
_KEY_IDLE_S = 900.0


def mask_public(job_id: str, dataset_id: str) -> bytes:
    """The node's X25519 public key for the job (made on first use, kept in memory)."""
    from crypto.agreement import agreement_keypair  # node process only, not the sandbox

    now = time.monotonic()
    with _LOCK:
        for k in [k for k, (_, t) in _MASK_KEYS.items() if now - t > _KEY_IDLE_S]:
            del _MASK_KEYS[k]
        entry = _MASK_KEYS.get((job_id, dataset_id))
        if entry is None:
            private, public = agreement_keypair()
            _MASK_KEYS[(job_id, dataset_id)] = (private + public, now)
            return public
        return entry[0][32:]


def forget_mask_keys(job_id: str | None = None) -> None:
    with _LOCK:
        for k in [k for k in _MASK_KEYS if job_id is None or k[0] == job_id]:
            del _MASK_KEYS[k]


def mask_blobs(
    job_id: str,
    dataset_id: str,
    party: Mapping[str, Any],
    binding: Mapping[str, Any] | None = None,
) -> dict[str, bytes]:
    """The pairwise seeds with every peer, for the sandboxed operator (then the key is gone).

    On a node with a party key (`sandbox.mask_signing.node_identity`), every peer's key
    must carry its organisation's pinned signature first (`MaskKeyUnverified`); `binding`
    is the node's approved code-request binding. A federated job's session (`party.seal`)
    also keeps the private half, to open the global models the requester seals for this
    node's signed key (`sandbox.party_fl`); it stays inside the node's sandbox.
    """
    from crypto.agreement import agreement_seed  # node process only, not the sandbox
    from sandbox.mask_signing import node_identity, verify_peers

    with _LOCK:
        entry = _MASK_KEYS.pop((job_id, dataset_id), None)
    identity = node_identity() if binding is not None else None
    peers = party.get("peers") or []
    if identity is not None:
        if entry is None:
            raise InvalidParameters("this node has no mask key for the job")
        assert binding is not None
        verify_peers(identity, binding, party, entry[0][32:])
    if not peers:
        return {}
    if entry is None:
        raise InvalidParameters("this node has no mask key for the job")
    private = entry[0][:32]
    me = int(party["index"])
    fp = str(party["fingerprint"])
    seeds = {}
    for peer in peers:
        index = int(peer["index"])
        if index == me:
            continue
        info = mask_info(job_id, fp, me, index)
        seeds[str(index)] = agreement_seed(private, bytes.fromhex(peer["public"]), info).hex()
    out = {"mask_seeds": json.dumps(seeds).encode()}
    if party.get("seal") is True:
        out["seal_private"] = private
    return out


MaskRelay = tuple[
    Callable[[ProviderInput], bytes],
    Callable[[ProviderInput, dict[str, Any]], dict[str, bytes]],
]
"""(an input's mask public key, its agreement seeds when the platform is its node)."""


def platform_relay(job_id: str) -> MaskRelay:
    """The relay when the platform is every input's node (`mask_public`, `mask_blobs`)."""
    return (
        lambda p: mask_public(job_id, p.dataset_id),
        lambda p, pp: mask_blobs(job_id, p.dataset_id, pp),
    )


def check_binding(binding: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
    """Why the call does not match what the provider approved (None: it matches)."""
    approved = binding.get("party")
    party = params.get("party")
    if approved is None:
        return "requester-held keys were not approved for this job" if party else None
    if not isinstance(party, Mapping):
        return "the call lacks the approved job key"
    try:
        n = int(str(params["job"]["paillier_n"]), 16)
    except (KeyError, TypeError, ValueError):
        return "the call lacks the approved job key"
    if fingerprint_of("paillier", n) != approved.get("fingerprint"):
        return "the call's key is not the job key the provider approved"
    for name in ("fingerprint", "providers", "min_cohort", "dp"):
        if party.get(name) != approved.get(name):
            return f"the call's {name} differs from what the provider approved"
    return None


# -- the operator (inside the provider's sandbox) ---------------------------------------------


def _exact(query: StatsQuery, field: str, value: int | float) -> Fraction:
    kind = field.split(":", 1)[0]
    if query.op == "stats.histogram" or kind in ("rows", "n"):
        return Fraction(round(value))
    power = 1 if kind == "sum" else 2
    return Fraction(int(value), 10 ** (query.decimals * power))


def party_partial(
    ctx: OperatorContext,
    partial_vector: Callable[[StatsQuery, Sequence[Path]], list[int] | list[float]],
) -> bytes:
    """Vetted operator body for a requester-key job (called by `sandbox.stats.node_partial`).

    `partial_vector` is `sandbox.stats.partial_vector`, passed in (stats imports this module).
    """
    query = StatsQuery.from_params(ctx.params["query"])
    job = JobPublic.from_request(ctx.params["job"], {})
    party = ctx.params["party"]
    if job.scheme != "paillier-packed":
        raise InvalidParameters("requester-held keys are Paillier keys")
    raw = partial_vector(query, ctx.inputs)
    fields = query.fields()
    width = len(fields)
    counts = raw if query.op == "stats.histogram" else [raw[i] for i in range(0, len(raw), width)]
    min_cohort = int(party["min_cohort"])
    if round(sum(counts)) < min_cohort:
        # Per-provider cohort: this node refuses its part (docs/privacy.md).
        raise CohortTooSmall(
            "this provider's own records are fewer than the minimum cohort",
            min_cohort=min_cohort,
        )
    dp = party.get("dp")
    values: list[int]
    if dp:
        pj = PartyJob(job.job_id, job.paillier_n or 0, providers=int(party["providers"]),
                      min_cohort=min_cohort, dp=dp)  # fmt: skip
        plan = pj.plan(query)
        assert plan is not None
        exact = [_exact(query, fields[i % width], v) for i, v in enumerate(raw)]
        values = [plan.encode(i % width, x) for i, x in enumerate(exact)]
        noise = noise_share(plan, len(query.group_keys))
        values = [v + z for v, z in zip(values, noise, strict=True)]
    else:
        values = [round(v) if isinstance(v, float) else int(v) for v in raw]
    seeds_raw = ctx.blobs.get("mask_seeds")
    if seeds_raw:
        seeds = {int(k): bytes.fromhex(v) for k, v in json.loads(seeds_raw).items()}
        values = apply_masks(values, int(party["index"]), seeds)
    return seal_vector(job, query.op, query.layout(), values).to_bytes()


# -- platform side: relay keys, run, add, hand back the ciphertext -----------------------------

MaskKeyCall = Callable[[ProviderInput], bytes]
"""Fetches one provider's mask public key (a node call for node-held inputs)."""


def collect_mask_keys(
    providers: Sequence[ProviderInput], fetch: MaskKeyCall
) -> list[dict[str, Any]]:
    """Every provider's mask key entry, in provider order (relayed as signed, not trusted).

    An entry is `{org_id, dataset_id, public}` and, from a node with a party key, the
    node's `key_id`, `algorithm` and `signature` (`sandbox.mask_signing.relayed_key`).
    """
    from sandbox.mask_signing import relayed_key

    return [relayed_key(fetch(p), p.provider_id, p.dataset_id) for p in providers]


@dataclass(frozen=True)
class PartyRun:
    """What a job under the requester's key runs over, whatever its operator.

    The providers' inputs, the job's public facts, the sandbox, the mask keys relayed
    for the inputs, and `local_blobs`, the mask seeds of a platform-held input (the
    platform is that input's node; node-held inputs get theirs on their node).
    """

    providers: Sequence[ProviderInput]
    party: PartyJob
    sandbox: Sandbox
    mask_keys: Sequence[Mapping[str, Any]]
    local_blobs: Callable[[ProviderInput, dict[str, Any]], dict[str, bytes]]


def run_party_stats(query: StatsQuery, run: PartyRun) -> dict[str, Any]:
    """Run every provider's operator, add the envelopes; the encrypted result document."""
    if query.op not in ("stats.count", "stats.sum", "stats.mean", "stats.variance",
                        "stats.histogram"):  # fmt: skip
        raise InvalidParameters("requester-held keys support the statistics operators")
    party, providers = run.party, run.providers
    run.sandbox.check()
    peers = [{**k, "index": i} for i, k in enumerate(run.mask_keys)]
    jobs = []
    for i, p in enumerate(providers):
        party_params = {**party.binding(), "index": i, "peers": peers}
        params = {
            "query": {**query.to_params(), "scheme": "paillier"},
            "job": party.public.params(),
            "party": party_params,
        }
        jobs.append((query.op, [p.path], params, run.local_blobs(p, party_params)))
    outcomes = run_parallel(run.sandbox, jobs)
    aggregate = add_envelopes(Coordinator(party.public), providers, outcomes)
    return encrypted_result(query, party, aggregate)


def add_envelopes(
    coordinator: Coordinator,
    providers: Sequence[ProviderInput],
    outcomes: Sequence[SandboxOutcome],
) -> bytes:
    """The providers' envelopes added up; any provider's failure raises before one is added."""
    for o in outcomes:
        if not o.ok:
            o.unwrap()
    for p, o in zip(providers, outcomes, strict=True):
        coordinator.submit(p.provider_id, o.unwrap())
    return coordinator.aggregate()


def unpack_aggregate(party: PartyJob, aggregate: bytes) -> tuple[Envelope, dict[str, Any]]:
    """The added envelope, and its packed ciphertexts as every result document ends with them."""
    env = Envelope.from_bytes(aggregate)
    vec = PackedVector.from_bytes(env.payload, expect_n=party.n)
    return env, {
        "packing": {
            "slot_bits": vec.packing.slot_bits,
            "headroom_bits": vec.packing.headroom_bits,
        },
        "length": vec.length,
        "addends": vec.addends,
        "ciphertexts": [format(c, "x") for c in vec.ciphertexts],
    }


def encrypted_result(query: StatsQuery, party: PartyJob, aggregate: bytes) -> dict[str, Any]:
    """The result document the requester's `JobKey.decrypt` opens (public facts + ciphertext)."""
    _, ciphertexts = unpack_aggregate(party, aggregate)
    edges = query.edges() if query.op == "stats.histogram" else None
    return result_document(query, party, ciphertexts, bin_edges=edges)


def result_document(
    query: StatsQuery,
    party: PartyJob,
    ciphertexts: Mapping[str, Any],
    *,
    bin_edges: list[float] | None,
    **head: Any,
) -> dict[str, Any]:
    """A requester-key result: the query's and job's public facts, then `ciphertexts`.

    `head` (a join's own facts) follows the operator.
    """
    plan = party.plan(query)
    return {
        "format": ENCRYPTED_FORMAT,
        "scheme": "paillier",
        "key_fingerprint": party.fingerprint,
        "operator": query.op,
        **head,
        "columns": list(query.columns),
        "group_by": query.group_by,
        "groups": list(query.group_keys),
        "fields": list(query.fields()),
        "decimals": query.decimals,
        "clip": list(query.clip) if query.clip else None,
        "bin_edges": bin_edges,
        "min_cohort": party.min_cohort,
        "providers": party.providers,
        "dp": party.dp,
        "noise": plan.params() if plan is not None else None,
        **ciphertexts,
    }

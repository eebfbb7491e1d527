"""The platform's side of a private join: two sandboxed parties, relayed bytes, the release gate.

`JoinJob` opens one sandbox session per input (the provider's own sandbox: on the
platform for platform-held data, on the provider's node for node-held data), relays the
steps of `sandbox.join_party` between them, decrypts only the per-group sums over the
intersection with the job key, and hands them to the release gate as a statistics
candidate: cohort (here also the minimum intersection), DP noise charged to both inputs'
budgets, suppression, provider review. The relay sees element counts and ciphertexts;
the job salt goes to the two sandboxes only, in their first request.

Under a requester-held job key (`party`, `sandbox.party_stats.PartyJob`) no secret key
exists on the platform: both parties add a noise share inside their sandboxes, the
matcher refuses below the minimum intersection (under DP on the exact count plus its own
count-noise share, the whole noise with n = 2), and the result is the encrypted
document `encrypted_join_result` that only the requester's SDK opens
(`pdx_client.jobkeys.JobKey.decrypt`, which then post-processes as for statistics).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import phe  # type: ignore[import-untyped]

from sandbox._registry import ProviderInput
from sandbox._stats_query import StatsQuery
from sandbox.coordinator import SECURITY_MODEL, Decrypted, ResultParty
from sandbox.errors import (
    CohortTooSmall,
    HomomorphicMismatch,
    IntersectionTooSmall,
    InvalidParameters,
)
from sandbox.isolation import Sandbox
from sandbox.join_params import JoinPlan
from sandbox.join_wire import unframe
from sandbox.party_stats import (
    MaskRelay,
    PartyJob,
    collect_mask_keys,
    platform_relay,
    result_document,
)
from sandbox.release import GatedAggregate, Release, ReleaseGate, ReleaseObligations, unique
from sandbox.stats import StatsResult, candidate, finish

__all__ = [
    "JOIN_SECURITY",
    "IntersectionTooSmall",
    "JoinJob",
    "JoinResult",
]

JOIN_BATCH = 2048
"""Value pairs per relayed message (each a request to the matcher's session)."""
SESSION_OPERATOR = "psi.sum"
"""The registry entry whose code (`sandbox.join_party:party`) runs each party's side."""

JOIN_SECURITY: dict[str, Any] = {
    "technique": "ECDH private set intersection (P-256, RFC 9380 hash-to-curve, keys per "
    "job) with Paillier-encrypted associated values (Private Join and Compute)",
    "who_learns_what": {
        "cohort provider (inputs[0])": "nothing outside its sandbox: the sandbox alone sees "
        "the exact intersection size and returns only ciphertexts under the job key",
        "value provider (inputs[1])": "the cohort's size per declared group",
        "coordinator": "element counts and ciphertexts; never an identifier or a member",
        "result party": "per-group sums over the intersection before the release gate "
        "(under a requester-held job key: the requester's SDK, after both parties' noise "
        "shares; the platform then holds no secret key)",
        "requester": "only the released, cohort-checked (minimum intersection) and, under "
        "the policy's DP obligation, noised counts and sums; never the intersection's members. "
        "Under DP the minimum is decided on a noised count (the gate's; under a requester key "
        "the exact count plus the matcher's own noise share, the whole noise with two "
        "providers), so a requester choosing one side's rows learns no membership from a "
        "refusal. An input of the requester's own legal person may be a party only when "
        "platform-held: on its own node it would read that party's sandbox (refused)",
    },
    "under_requester_key": "the platform holds no secret key; the value party's "
    "per-record ciphertexts are also sealed for the matcher's sandbox under the two "
    "parties' X25519 agreement (AES-256-GCM), so a requester colluding with the platform "
    "cannot open them either, unless an input is platform-held or the platform substitutes "
    "the relayed key of a node without a party key (docs/privacy.md §6.1.1)",
}


@dataclass(frozen=True)
class JoinResult:
    """A released join: the statistic over the intersection, and its size.

    `intersection_size` sums the released groups' (noisy under DP) sizes: a suppressed
    group is not counted, so its size cannot be had by subtraction.
    """

    operator: str
    join: dict[str, Any]
    intersection_size: float | None
    stats: StatsResult

    def as_dict(self) -> dict[str, Any]:
        stats = self.stats.as_dict()
        return {
            "operator": self.operator,
            "join": self.join,
            "intersection_size": self.intersection_size,
            **{k: v for k, v in stats.items() if k != "operator"},
            "statistic": stats["operator"],
        }


def _private_key(party: ResultParty) -> Any:
    """The job's Paillier private key, from the result party's sealed export format."""
    doc = json.loads(party.export())
    n = int(doc["public"]["paillier_n"], 16)
    return phe.PaillierPrivateKey(phe.PaillierPublicKey(n), int(doc["p"], 16), int(doc["q"], 16))


class JoinJob:
    """One join computation between `left` (the cohort) and `right` (the values)."""

    def __init__(
        self,
        operator: str,
        plan: JoinPlan,
        left: ProviderInput,
        right: ProviderInput,
        *,
        sandbox: Sandbox,
        job_id: str,
        paillier_bits: int = 2048,
        batch: int = JOIN_BATCH,
        party: PartyJob | None = None,
        relay: MaskRelay | None = None,
    ) -> None:
        if left.provider_id == right.provider_id:
            raise InvalidParameters("a join is between two providers' datasets")
        self.operator = operator
        self.plan = plan
        self.providers = (left, right)
        self.sandbox = sandbox
        self.job_id = job_id
        self.batch = batch
        self.party = party
        """The requester-held key's public facts: then no secret key is ever made here."""
        self.relay = relay or platform_relay(job_id)
        """(a party's mask public key, its seeds when the platform is its node): the two
        parties' agreement seed keys the sealing of the value party's ciphertexts; by
        default both inputs are the platform's own (as in the sandbox tests)."""
        self.result_party: ResultParty | None = (
            None
            if party is not None
            else ResultParty("paillier-packed", job_id=job_id, paillier_bits=paillier_bits)
        )
        self.relayed: list[tuple[str, str, int]] = []
        """(to, step, bytes) of every message the platform relayed (what it saw)."""

    def run_protocol(self, record: Callable[[str, str, bytes], None] | None = None) -> Decrypted:
        """Run both parties' sides in their sandboxes; the decrypted per-group sums."""
        if self.result_party is None:
            raise InvalidParameters("a join under a requester-held key is not decrypted here")
        return self.decrypt(self.exchange(record))

    def exchange(self, record: Callable[[str, str, bytes], None] | None = None) -> bytes:
        """Run both parties' sides in their sandboxes; the matcher's encrypted per-group sums."""
        self.sandbox.check()
        if self.party is not None:
            pub = self.party.public
            # Every call carries the approved binding: a provider's node checks each one.
            bound: dict[str, Any] = {"job": pub.params(), "party": self.party.binding()}
        else:
            assert self.result_party is not None
            pub = self.result_party.public
            bound = {}
        first = {"plan": self.plan.to_params(), "job": pub.params(), **bound}
        left, right = self.providers
        starts: list[tuple[dict[str, Any], dict[str, bytes]]] = [({}, {}), ({}, {})]
        if self.party is not None:
            # The two sandboxes agree on a key the platform relays but cannot derive (for
            # node-held inputs): the value party's ciphertexts travel sealed under it.
            fetch, local_blobs = self.relay
            keys = collect_mask_keys(self.providers, fetch)
            peers = [{**k, "index": i} for i, k in enumerate(keys)]
            for i, p in enumerate(self.providers):
                pp = {**self.party.binding(), "index": i, "peers": peers}
                starts[i] = ({"party": pp}, local_blobs(p, pp))
        salt = {"salt": os.urandom(32)}
        seen = record or (lambda _to, _step, _data: None)

        def call(session: Any, to: str, step: str, blobs: dict[str, bytes], **params: Any) -> bytes:
            for data in blobs.values():
                if step.endswith(".start"):
                    continue  # the salt goes to the party, it is not relayed data
                seen(to, step, data)
                self.relayed.append((to, step, len(data)))
            out: bytes = session.call({"step": step, **bound, **params}, blobs).unwrap()
            return out

        with (
            self.sandbox.open_session(SESSION_OPERATOR, [left.path]) as m,
            self.sandbox.open_session(SESSION_OPERATOR, [right.path]) as v,
        ):
            blinded = call(m, "matcher", "matcher.start", {**salt, **starts[0][1]},
                           **{**first, **starts[0][0]})  # fmt: skip
            call(v, "value", "value.start", {**salt, **starts[1][1]}, **{**first, **starts[1][0]})
            doubles = call(v, "value", "value.respond", {"blinded": blinded})
            call(m, "matcher", "matcher.doubles", {"doubles": doubles})
            while True:
                pairs = call(v, "value", "value.pairs", {}, batch=self.batch)
                call(m, "matcher", "matcher.pairs", {"pairs": pairs})
                if unframe(pairs)[0].get("final"):
                    break
            noise = {}
            if self.party is not None:
                noise = {"noise": call(v, "value", "value.noise", {})}
            result = call(m, "matcher", "matcher.result", noise)
        return result

    def decrypt(self, data: bytes) -> Decrypted:
        q = self.plan.query
        assert self.result_party is not None
        sk = _private_key(self.result_party)
        n = int(sk.public_key.n)
        values = []
        for c in _result_ciphertexts(data, self.job_id, q, n):
            m = int(sk.raw_decrypt(c))
            values.append(m - n if m > n // 2 else m)
        return Decrypted(q.op, q.layout(), values, 1)

    def release(
        self, agg: Decrypted, gate: ReleaseGate, obligations: ReleaseObligations
    ) -> Release[JoinResult]:
        """The release gate on the join's sums; below the minimum: `IntersectionTooSmall`.

        Under DP the gate decides the minimum on the noisy counts (`ReleaseGate.gate`,
        step 5), never on the exact intersection; without DP on the exact one, released.
        """
        q = self.plan.query
        cand = candidate(q, agg, self.providers)
        build = finish(q, 0.0)

        def wrap(gated: GatedAggregate) -> JoinResult:
            stats = build(gated)
            total: float | None = 0.0
            for g in stats.groups:
                total = None if g.rows is None or total is None else total + g.rows
            return JoinResult(self.operator, self.plan.join.model_dump(mode="json"), total, stats)

        try:
            return gate.release(
                cand,
                obligations,
                self.job_id,
                wrap,
                security_model={**SECURITY_MODEL.as_dict(), "join": JOIN_SECURITY},
            )
        except CohortTooSmall as exc:
            raise IntersectionTooSmall(
                "the intersection is below the minimum size; nothing is released",
                min_intersection=obligations.min_cohort,
            ) from exc

    def run(self, gate: ReleaseGate, obligations: ReleaseObligations) -> Release[JoinResult]:
        return self.release(self.run_protocol(), gate, obligations)

    def run_under_party_key(
        self, gate: ReleaseGate, obligations: ReleaseObligations
    ) -> Release[dict[str, Any]]:
        """Requester-held key: charge both budgets, run, hand back the encrypted sums.

        What the gate can enforce before decryption it does here: the budget (charged
        before anything runs) and provider review; the minimum intersection is checked
        inside the matcher's sandbox (under DP on the exact size plus the matcher's own
        count-noise share, without DP on the exact size), the DP noise is the parties'
        shares, and the requester's SDK suppresses small groups on noisy counts.
        """
        assert self.party is not None
        datasets = unique(p.dataset_id for p in self.providers)
        spent = gate.charge(datasets, obligations, self.job_id)
        doc = encrypted_join_result(self, self.exchange())
        return Release(
            self.job_id,
            self.operator,
            doc,
            obligations,
            unique(p.provider_id for p in self.providers),
            epsilon_spent=spent,
        )


def encrypted_join_result(job: JoinJob, data: bytes) -> dict[str, Any]:
    """The result document `pdx_client.jobkeys.JobKey.decrypt` opens (one value per ciphertext)."""
    party = job.party
    assert party is not None
    cts = _result_ciphertexts(data, job.job_id, job.plan.query, party.n)
    ciphertexts = {
        "packing": None,
        "length": len(cts),
        "addends": 1,
        "ciphertexts": [format(c, "x") for c in cts],
    }
    return result_document(
        job.plan.query,
        party,
        ciphertexts,
        bin_edges=None,
        join_operator=job.operator,
        join=job.plan.join.model_dump(mode="json"),
    )


def _result_ciphertexts(data: bytes, job_id: str, query: StatsQuery, n: int) -> list[int]:
    """The ciphertexts (mod n²) of a join result framed for `job_id` in `query`'s layout."""
    header, body = unframe(data)
    groups, fields = len(query.group_keys), len(query.fields())
    if (header.get("job_id"), header.get("groups"), header.get("fields")) != (
        job_id,
        groups,
        fields,
    ):
        raise HomomorphicMismatch("join result belongs to another job or layout")
    width = (2 * n.bit_length() + 7) // 8
    if len(body) != groups * fields * width:
        raise HomomorphicMismatch("malformed join result")
    return [int.from_bytes(body[i : i + width], "big") for i in range(0, len(body), width)]


def run_join(
    operator: str,
    plan: JoinPlan,
    providers: Sequence[ProviderInput],
    *,
    sandbox: Sandbox,
    gate: ReleaseGate,
    obligations: ReleaseObligations,
    job_id: str,
    paillier_bits: int = 2048,
) -> Release[JoinResult]:
    """Convenience driver: the whole join through the gate."""
    if len(providers) != 2:
        raise InvalidParameters("a join takes exactly two inputs")
    job = JoinJob(
        operator,
        plan,
        providers[0],
        providers[1],
        sandbox=sandbox,
        job_id=job_id,
        paillier_bits=paillier_bits,
    )
    return job.run(gate, obligations)

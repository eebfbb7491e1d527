"""The platform's side of a join with the requester's own cohort: a relay between SDK and sandbox.

`CohortJoinJob` opens one session in the provider's sandbox (`sandbox.cohort_party`, on the
platform for platform-held data, on the provider's node for node-held data) and relays
each step between it and the requester's SDK (`pdx_client.psi`) through `exchange`
(`exchange.computations.join_steps`: the requester fetches the open step and posts its
reply; each reply is a ledger entry and an audit record). Everything relayed is a count,
the job salt, or opaque bytes: P-256 abscissae and points blinded by a key the platform
does not hold, and the result under the requester's job key. Only counts run
(`psi.cardinality`, `stats.count`; `psi.intersection` where the policy allows it): no
value of the provider's travels, so no party can scale or read one (docs/privacy.md
§6.1.4). The budget is charged before anything runs; the result is the encrypted
document only the requester's SDK opens.

Steps the SDK sees (`JOIN_STEP_FORMAT`, bytes in base64):

1. `blind` (repeated until the SDK says `final`): the job salt, DST and |Y|; the SDK
   replies with the next batch of its shuffled x(k1·H(x)).
2. `pairs` (repeated until `final`): a batch of k2·H(y); the SDK keeps x(k1·k2·H(y)) and
   acknowledges (a pairs message carrying values is refused by the SDK).
3. `return` (repeated until the SDK says `final`): the SDK sends the next batch of its
   globally shuffled x(k1·k2·H(y)).

An active relay that swapped a provider point for r·H(z) would learn whether z, an
identifier of its choice, is in the requester's list. For node-held data the node signs
every provider output the SDK acts on (`sandbox.step_signing`), the relay passes each on
as `signed` (the SDK takes the fields from the signed output only) and the SDK checks it
against the party key it pins (`pdx_client.stepsig`). The node signs the encrypted result
too: `document` keeps its proof and exact output as `node_signature`, and the SDK checks
the document's ciphertexts against it before it decrypts (`pdx_client.resultsig`). For
platform-held data the platform runs the sandbox anyway (COHORT_SECURITY["limits"]).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from sandbox._registry import ProviderInput
from sandbox.errors import InvalidParameters, JoinStopped
from sandbox.isolation import Sandbox
from sandbox.join_params import JoinPlan
from sandbox.join_wire import frame, unframe
from sandbox.party_stats import PartyJob, result_document
from sandbox.release import Release, ReleaseGate, ReleaseObligations
from sandbox.step_signing import open_step

__all__ = [
    "COHORT_SECURITY",
    "ELEMENT_BATCH",
    "JOIN_STEP_FORMAT",
    "CohortJoinJob",
    "cohort_max_calls",
]

JOIN_STEP_FORMAT = "pdx-psi-step/1"
"""Must equal `pdx_client.psi.JOIN_STEP_FORMAT`."""
ELEMENT_BATCH = 8192
"""The SDK's blinded identifiers per step (32 bytes each)."""
MAX_STEP_BYTES = 600_000
"""Raw bytes of one step's points (the reply, in base64, stays under the 1 MiB cap)."""
PAIR_BATCH = MAX_STEP_BYTES // 65
"""The provider's points per step (65 bytes each, uncompressed SEC 1)."""
SESSION_OPERATOR = "psi.sum"
"""The registry entry whose code (`sandbox.join_party:party`) runs the provider's side."""

COHORT_SECURITY: dict[str, Any] = {
    "technique": "ECDH-PSI cardinality with the requester's own cohort (P-256, RFC 9380 "
    "hash-to-curve, keys per job): the requester's SDK blinds its identifiers on its own "
    "machine, the provider's sandbox counts the matches, adds the DP noise and encrypts "
    "the count under the requester's job key; counts only, no value travels",
    "who_learns_what": {
        "requester (SDK)": "|Y|, the number of the provider's distinct identifiers, and "
        "nothing else before release: never a member or an exact intersection size",
        "provider (its sandbox)": "|X|, the number of identifiers the requester sent, and the "
        "exact intersection size inside its sandbox only; never a member (the SDK's shuffle "
        "unlinks the returned elements); only the refusal below the minimum, or the noisy "
        "count encrypted under the requester's key, leaves it",
        "coordinator": "counts, the job salt and opaque bytes (blinded points, the result "
        "under the requester's key); never an identifier or a value; see limits for an "
        "active relay",
        "requester (result)": "only the count, noised under the policy's DP obligation (the "
        "sandbox adds the noise before encrypting); under DP the minimum intersection is "
        "checked on that noised count, so the refusal tells nothing the release would not",
    },
    "limits": "sums and means over the requester's cohort are refused: the values would "
    "travel through its SDK, which could scale them past the noise, and the key holder in "
    "the sandbox would see which returned values matched (a verifiable shuffle and "
    "threshold decryption would be needed). For node-held data the node signs each "
    "provider step under its party key and the SDK checks it against the key it pins, so "
    "a relay cannot swap a provider point for r·H(z) to test whether z is in the "
    "requester's list; for platform-held data the platform runs the provider's sandbox, "
    "so that test is open to the platform (the SDK warns), and with no pinned keys the "
    "SDK uses the steps unchecked (it warns)",
}


def cohort_max_calls(size: int, rows: int) -> int:
    """Requests the provider's session serves: start, result, and each batch of three kinds."""
    return 8 + -(-size // ELEMENT_BATCH) + 2 * -(-rows // PAIR_BATCH)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidParameters(f"the requester's reply has no {what}")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise InvalidParameters(f"the requester's {what} is not base64") from None


def _cohort_batches(
    s: Any, first: dict[str, Any], sdk: Any, call: Any
) -> Iterator[tuple[int, bytes]]:
    """Each batch of the SDK's blinded identifiers, passed on to the provider's sandbox.

    Yields (how many, the sandbox's answer), until the SDK's final batch.
    """
    while True:
        reply = sdk({"op": "blind", **first, "batch": ELEMENT_BATCH}, "blind")
        elements = _unb64(reply.get("elements"), "elements")
        if len(elements) % 32 or len(elements) > 32 * ELEMENT_BATCH:
            raise InvalidParameters("the requester's elements are malformed")
        final = reply.get("final") is True
        count = len(elements) // 32
        blob = frame({"count": count, "final": final}, elements)
        yield count, call(s, "cohort.elements", {"elements": blob})
        if final:
            return


def _send_points(
    s: Any, extra: dict[str, Any], sdk: Any, call: Any, signed: dict[str, Any]
) -> None:
    """The provider's shuffled k2·H(y), batch by batch, to the SDK (as its node signed them)."""
    while True:
        header, body = unframe(call(s, "cohort.pairs", {}, batch=PAIR_BATCH))
        count, final = int(header["count"]), bool(header["final"])
        proof = signed.pop("cohort.pairs", None)
        if proof is not None:  # the SDK takes the points from the signed output only
            sdk({"op": "pairs", **extra, "signed": proof}, "pairs")
        else:
            sdk({"op": "pairs", **extra, "count": count, "final": final,
                 "points": _b64(body[: count * 65])}, "pairs")  # fmt: skip
        if final:
            return


Exchange = Callable[[int, dict[str, Any]], dict[str, Any]]


@dataclass(eq=False)
class CohortJoinJob:
    """One join of the requester's own cohort (in its SDK) with one provider's dataset."""

    operator: str
    plan: JoinPlan
    provider: ProviderInput
    _: KW_ONLY
    sandbox: Sandbox
    job_id: str
    party: PartyJob
    relayed: list[tuple[str, str, int]] = field(default_factory=list, init=False)
    """(to, step, bytes) of every message the platform relayed (what it saw)."""
    revealed_cohort: int = field(default=0, init=False)
    result_signed: dict[str, Any] | None = field(default=None, init=False)
    """The node's signed `cohort.result` ({"proof", "output"}), None when unsigned."""

    def __post_init__(self) -> None:
        if self.plan.cohort is None:
            raise InvalidParameters("not a join with the requester's own cohort")

    def exchange(
        self, ask: Exchange, record: Callable[[str, str, bytes], None] | None = None
    ) -> bytes:
        """Relay every step between the SDK (`ask`) and the provider's sandbox; its result."""
        self.sandbox.check()
        seen = record or (lambda _to, _step, _data: None)
        bound = {"job": self.party.public.params(), "party": self.party.binding()}
        step_no = 0

        def sdk(doc: dict[str, Any], expect: str) -> dict[str, Any]:
            nonlocal step_no
            reply = ask(
                step_no, {"format": JOIN_STEP_FORMAT, "op": doc["op"], "job_id": self.job_id, **doc}
            )
            step_no += 1
            if isinstance(reply, dict) and reply.get("op") == "stop":
                raise JoinStopped(f"the requester's SDK stopped the join: {reply.get('reason')}")
            if not isinstance(reply, dict) or reply.get("op") != expect:
                raise InvalidParameters(f"the requester's reply is not a {expect} reply")
            return reply

        signed: dict[str, Any] = {}
        """The last output of each step its node signed, passed on to the SDK as signed."""

        def call(session: Any, name: str, blobs: dict[str, bytes], **params: Any) -> bytes:
            for data in blobs.values():
                seen("provider", name, data)
                self.relayed.append(("provider", name, len(data)))
            out, proof = open_step(session.call({"step": name, **bound, **params}, blobs).unwrap())
            if proof is not None:
                signed[name] = {"proof": proof, "output": _b64(out)}
            return out

        with self.sandbox.open_session(SESSION_OPERATOR, [self.provider.path]) as s:
            head, _ = unframe(call(s, "cohort.start", {}, plan=self.plan.to_params(),
                                   reveal=self.plan.reveal))  # fmt: skip
            start = {"signed": signed["cohort.start"]} if "cohort.start" in signed else {}
            if self.plan.reveal:
                return self._reveal(s, {**head, **start}, sdk, call, signed)
            rows = int(head["rows"])
            size = self.plan.cohort.size if self.plan.cohort else 0
            first = {"kind": self.plan.join.kind.value, "salt": head["salt"], "dst": head["dst"],
                     "rows": rows, "size": size, **start}  # fmt: skip
            for _ in _cohort_batches(s, first, sdk, call):
                pass
            _send_points(s, {"rows": rows}, sdk, call, signed)
            returned = 0
            while True:
                reply = sdk({"op": "return", "batch": PAIR_BATCH, "rows": rows,
                             "returned": returned}, "return")  # fmt: skip
                elements = _unb64(reply.get("elements"), "elements")
                count = len(elements) // 32
                if len(elements) % 32 or count > PAIR_BATCH:
                    raise InvalidParameters("the requester's returned elements are malformed")
                call(s, "cohort.matched", {"pairs": frame({"count": count}, elements)})
                returned += count
                if reply.get("final") is True:
                    break
            result = call(s, "cohort.result", {})
            self.result_signed = signed.pop("cohort.result", None)
            return result

    def _reveal(
        self, s: Any, head: dict[str, Any], sdk: Any, call: Any, signed: dict[str, Any]
    ) -> bytes:
        """`psi.intersection`: doubly blinded elements back to the SDK, then Y's points.

        The SDK's elements come back in its own order; it matches. Returns b"" (no sums).
        """
        rows = int(head["rows"])
        size = self.plan.cohort.size if self.plan.cohort else 0
        first = {"kind": self.plan.join.kind.value, "salt": head["salt"], "dst": head["dst"],
                 "rows": rows, "size": size, "reveal": True}  # fmt: skip
        if "signed" in head:
            first["signed"] = head["signed"]
        sent = 0
        for count, answer in _cohort_batches(s, first, sdk, call):
            _, doubled = unframe(answer)
            proof = signed.pop("cohort.elements", None)
            body = {"signed": proof} if proof is not None else {"elements": _b64(doubled)}
            sdk({"op": "doubled", "at": sent, **body}, "doubled")
            sent += count
        _send_points(s, {"reveal": True, "rows": rows}, sdk, call, signed)
        self.revealed_cohort = sent
        return b""

    def document(self, data: bytes) -> dict[str, Any]:
        """The result document `pdx_client.jobkeys.JobKey.decrypt` opens."""
        from sandbox.joins import _result_ciphertexts

        q = self.plan.query
        cts = _result_ciphertexts(data, self.job_id, q, self.party.n)
        ciphertexts = {
            "packing": None,
            "length": len(cts),
            "addends": 1,
            "ciphertexts": [format(c, "x") for c in cts],
        }
        assert self.plan.cohort is not None
        doc = result_document(
            q, self.party, ciphertexts, bin_edges=None, join_operator=self.operator,
            join={"cohort": self.plan.cohort.model_dump(mode="json")},
        )  # fmt: skip
        if self.result_signed is not None:  # the node's exact output, for the SDK to check
            doc["node_signature"] = self.result_signed
        return doc

    def run_under_party_key(
        self, gate: ReleaseGate, obligations: ReleaseObligations, ask: Exchange
    ) -> Release[dict[str, Any]]:
        """Charge the budget (before anything runs), relay every step, hand back the result."""
        spent = gate.charge([self.provider.dataset_id], obligations, self.job_id)
        data = self.exchange(ask)
        if self.plan.reveal:  # the members are in the requester's SDK only
            doc = {"operator": self.operator, "matched_by": "requester's SDK",
                   "members": "held by the requester's SDK only; the platform has none",
                   "cohort_sent": self.revealed_cohort}  # fmt: skip
        else:
            doc = self.document(data)
        return Release(
            self.job_id,
            self.operator,
            doc,
            obligations,
            [self.provider.provider_id],
            epsilon_spent=spent,
            security_model={"join": COHORT_SECURITY},
        )

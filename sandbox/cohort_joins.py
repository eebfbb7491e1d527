"""The platform's side of a join with the requester's own cohort: a relay between SDK and sandbox.

`CohortJoinJob` opens one session in the provider's sandbox (`sandbox.cohort_party`, on the
platform for platform-held data, on the provider's node for node-held data) and relays
each step between it and the requester's SDK (`pdx_client.psi`) through `exchange`
(`exchange.computations.join_steps`: the requester fetches the open step and posts its
reply; each reply is a ledger entry and an audit record). Everything relayed is a count,
the job salt, or opaque bytes: P-256 abscissae and points blinded by a key the platform
does not hold, and ciphertexts under the sandbox's own Paillier key J or the requester's
job key. The budget is charged before anything runs; the result is the encrypted document
only the requester's SDK opens.

Steps the SDK sees (`JOIN_STEP_FORMAT`, bytes in base64):

1. `blind` (repeated until the SDK says `final`): the job salt, DST and |Y|; the SDK
   replies with the next batch of its shuffled x(k1·H(x)).
2. `pairs` (repeated until `final`): a batch of (k2·H(y), Enc_J(v_y)); the SDK keeps them
   (spooled to its disk) and acknowledges.
3. `return` (repeated until the SDK says `final`): the SDK sends the next batch of its
   globally shuffled (x(k1·k2·H(y)), re-randomised Enc_J(v_y)).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from sandbox._registry import ProviderInput
from sandbox.errors import InvalidParameters
from sandbox.isolation import Sandbox
from sandbox.join_params import JoinPlan
from sandbox.join_wire import unframe
from sandbox.party_stats import PartyJob, result_document
from sandbox.release import Release, ReleaseGate, ReleaseObligations

__all__ = [
    "COHORT_SECURITY",
    "ELEMENT_BATCH",
    "JOIN_STEP_FORMAT",
    "CohortJoinJob",
    "cohort_max_calls",
    "pair_batch",
]

JOIN_STEP_FORMAT = "pdx-psi-step/1"
"""Must equal `pdx_client.psi.JOIN_STEP_FORMAT`."""
ELEMENT_BATCH = 8192
"""The SDK's blinded identifiers per step (32 bytes each)."""
MAX_STEP_BYTES = 600_000
"""Raw bytes of one step's pairs (the reply, in base64, stays under the 1 MiB cap)."""
MIN_PAIR_BATCH = 64
SESSION_OPERATOR = "psi.sum"
"""The registry entry whose code (`sandbox.join_party:party`) runs the provider's side."""

COHORT_SECURITY: dict[str, Any] = {
    "technique": "Private Join and Compute with the requester's own cohort: ECDH-PSI "
    "(P-256, RFC 9380 hash-to-curve, keys per job) with the requester's SDK blinding its "
    "identifiers on its own machine, and Paillier-encrypted values under a key made in the "
    "provider's sandbox that never leaves it",
    "who_learns_what": {
        "requester (SDK)": "|Y|, the number of the provider's distinct identifiers, and "
        "nothing else before release: never a member, an exact intersection size or a value",
        "provider (its sandbox)": "|X|, the number of identifiers the requester sent, and the "
        "exact intersection size inside its sandbox only; never a member (the SDK's shuffle "
        "and re-randomisation unlink the pairs); only the refusal below the minimum, or the "
        "noisy result encrypted under the requester's key, leaves it",
        "coordinator": "counts, the job salt and opaque bytes (blinded points, ciphertexts "
        "under the sandbox's key and under the requester's key); never an identifier, a "
        "member or a value",
        "requester (result)": "only the minimum-checked and, under the policy's DP "
        "obligation, noised count and sums (the sandbox adds the noise before encrypting)",
    },
    "limits": "the requester can replace ciphertexts of pairs it returns with encryptions "
    "of values it chooses (it cannot read or target them: they are shuffled and blinded); "
    "the policy's DP noise bounds what such a sum reveals about one record",
}


def pair_batch(fields: int, width: int) -> int:
    """Pairs per step: as many as fit `MAX_STEP_BYTES` (at least `MIN_PAIR_BATCH`)."""
    return max(MIN_PAIR_BATCH, MAX_STEP_BYTES // (65 + fields * width))


def cohort_max_calls(size: int, rows: int) -> int:
    """Requests the provider's session serves: start, result, and each batch of three kinds."""
    return 8 + -(-size // ELEMENT_BATCH) + 2 * -(-rows // MIN_PAIR_BATCH)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidParameters(f"the requester's reply has no {what}")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise InvalidParameters(f"the requester's {what} is not base64") from None


Exchange = Callable[[int, dict[str, Any]], dict[str, Any]]


class CohortJoinJob:
    """One join of the requester's own cohort (in its SDK) with one provider's dataset."""

    def __init__(
        self,
        operator: str,
        plan: JoinPlan,
        provider: ProviderInput,
        *,
        sandbox: Sandbox,
        job_id: str,
        party: PartyJob,
        key_bits: int = 2048,
    ) -> None:
        if plan.cohort is None:
            raise InvalidParameters("not a join with the requester's own cohort")
        self.operator = operator
        self.plan = plan
        self.provider = provider
        self.sandbox = sandbox
        self.job_id = job_id
        self.party = party
        self.key_bits = key_bits
        self.relayed: list[tuple[str, str, int]] = []
        """(to, step, bytes) of every message the platform relayed (what it saw)."""
        self.revealed_cohort = 0

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
            if not isinstance(reply, dict) or reply.get("op") != expect:
                raise InvalidParameters(f"the requester's reply is not a {expect} reply")
            return reply

        def call(session: Any, name: str, blobs: dict[str, bytes], **params: Any) -> bytes:
            for data in blobs.values():
                seen("provider", name, data)
                self.relayed.append(("provider", name, len(data)))
            out: bytes = session.call({"step": name, **bound, **params}, blobs).unwrap()
            return out

        with self.sandbox.open_session(SESSION_OPERATOR, [self.provider.path]) as s:
            head, _ = unframe(call(s, "cohort.start", {}, plan=self.plan.to_params(),
                                   key_bits=self.key_bits, reveal=self.plan.reveal))  # fmt: skip
            if self.plan.reveal:
                return self._reveal(s, head, sdk, call)
            rows, fields = int(head["rows"]), int(head["fields"])
            n_j = str(head.get("n_j", "0"))  # none for a count: no values travel
            width = (2 * int(n_j, 16).bit_length() + 7) // 8
            batch = pair_batch(fields, width)
            size = self.plan.cohort.size if self.plan.cohort else 0
            first = {"kind": self.plan.join.kind.value, "salt": head["salt"], "dst": head["dst"],
                     "rows": rows, "size": size}  # fmt: skip
            while True:
                reply = sdk({"op": "blind", **first, "batch": ELEMENT_BATCH}, "blind")
                elements = _unb64(reply.get("elements"), "elements")
                final = reply.get("final") is True
                body = b'{"count":%d,"final":%s}\n' % (
                    len(elements) // 32,
                    b"true" if final else b"false",
                )
                if len(elements) % 32 or len(elements) > 32 * ELEMENT_BATCH:
                    raise InvalidParameters("the requester's elements are malformed")
                call(s, "cohort.elements", {"elements": body + elements})
                if final:
                    break
            while True:
                header, body = unframe(call(s, "cohort.pairs", {}, batch=batch))
                count, final = int(header["count"]), bool(header["final"])
                sdk({"op": "pairs", "n_j": n_j, "fields": fields, "rows": rows,
                     "count": count, "final": final, "points": _b64(body[: count * 65]),
                     "cts": _b64(body[count * 65 :])}, "pairs")  # fmt: skip
                if final:
                    break
            returned = 0
            while True:
                reply = sdk({"op": "return", "batch": batch, "rows": rows, "returned": returned},
                            "return")  # fmt: skip
                elements = _unb64(reply.get("elements"), "elements")
                cts = _unb64(reply.get("cts"), "ciphertexts")
                count = len(elements) // 32
                if len(elements) % 32 or len(cts) != count * fields * width or count > batch:
                    raise InvalidParameters("the requester's returned pairs are malformed")
                pairs = b"".join(
                    elements[i * 32 : (i + 1) * 32]
                    + cts[i * fields * width : (i + 1) * fields * width]
                    for i in range(count)
                )
                call(s, "cohort.matched", {"pairs": b'{"count":%d}\n' % count + pairs})
                returned += count
                if reply.get("final") is True:
                    break
            return call(s, "cohort.result", {})

    def _reveal(self, s: Any, head: dict[str, Any], sdk: Any, call: Any) -> bytes:
        """`psi.intersection`: doubly blinded elements back to the SDK, then Y's points.

        The SDK's elements come back in its own order; it matches. Returns b"" (no sums).
        """
        rows = int(head["rows"])
        size = self.plan.cohort.size if self.plan.cohort else 0
        first = {"kind": self.plan.join.kind.value, "salt": head["salt"], "dst": head["dst"],
                 "rows": rows, "size": size, "reveal": True}  # fmt: skip
        sent = 0
        while True:
            reply = sdk({"op": "blind", **first, "batch": ELEMENT_BATCH}, "blind")
            elements = _unb64(reply.get("elements"), "elements")
            final = reply.get("final") is True
            if len(elements) % 32 or len(elements) > 32 * ELEMENT_BATCH:
                raise InvalidParameters("the requester's elements are malformed")
            body = b'{"count":%d,"final":%s}\n' % (
                len(elements) // 32,
                b"true" if final else b"false",
            )
            _, doubled = unframe(call(s, "cohort.elements", {"elements": body + elements}))
            sdk({"op": "doubled", "at": sent, "elements": _b64(doubled)}, "doubled")
            sent += len(elements) // 32
            if final:
                break
        batch = pair_batch(0, 0)
        while True:
            header, body = unframe(call(s, "cohort.pairs", {}, batch=batch))
            count, final = int(header["count"]), bool(header["final"])
            sdk({"op": "pairs", "reveal": True, "rows": rows, "count": count, "final": final,
                 "points": _b64(body[: count * 65])}, "pairs")  # fmt: skip
            if final:
                break
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
        return result_document(
            q, self.party, ciphertexts, bin_edges=None, join_operator=self.operator,
            join={"cohort": self.plan.cohort.model_dump(mode="json")},
        )  # fmt: skip

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

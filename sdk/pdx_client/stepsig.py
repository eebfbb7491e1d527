"""Checking that the join steps this SDK acts on come unaltered from the provider's own node.

In a join with the enterprise's own cohort (`pdx_client.psi`) the platform relays the
provider's points k2·H(y). A relay that swapped one for r·H(z) would learn whether z, a
person of its choice, is on the enterprise's list (finding F4, docs/privacy.md §6.1.4).
When the provider's side runs on its own node, the node signs every output this SDK acts
on with its provider's party key (the server's `sandbox.step_signing`): the salt and |Y|
(`cohort.start`), the provider's points (`cohort.pairs`) and, when members are matched
here, the doubled elements (`cohort.elements`). `StepVerifier` checks each signature
against the party keys the requester pins (`NodeTrust`, `PDX_TRUSTED_PARTIES`, as for
federated jobs) over the computation, the provider's organisation and dataset, the job
key's fingerprint, the node's session and a sequence number that must go up, and then
takes the step's fields from the signed output only.

Where nothing can be checked the step is used and `UnverifiedSteps` is warned once:
no pinned keys, or a dataset held by the platform (its sandbox is the platform's own, so
no signature could help) of a provider with no key pinned. The custody is the platform's
word: a provider whose party key is pinned must sign whatever custody the platform
reports (else a platform could call a node-held dataset platform-held and have its
steps used unchecked). With pinned keys, a node-held input's step that is unsigned,
signed by a key not pinned for that organisation, or signed over anything else is
refused (`StepUnverified`): `pdx_client.psi.drive` answers that step with a stop, which
the platform records like every reply, and the job fails (`join-stopped`).

The node signs its encrypted result (`cohort.result`) the same way; `open_result` checks
that signature (`pdx_client.resultsig` then compares the ciphertexts) and raises
`ResultUnverified` before anything is decrypted.

Needs only `cryptography`: none of the server's packages.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdx_client.errors import PdxError
from pdx_client.flseal import NodeTrust

__all__ = [
    "FORMAT",
    "Expected",
    "ResultUnverified",
    "StepUnverified",
    "StepVerifier",
    "UnverifiedSteps",
]

FORMAT = "pdx-join-step-sig/1"
"""Must equal `sandbox.step_signing.FORMAT`."""
_SIGNED_FIELDS = ("job_id", "org_id", "dataset_id", "fingerprint", "session", "seq", "step")


class StepUnverified(PdxError):
    """A join step does not carry the signature of the provider's node."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, type="https://pdx.dev/problems/join-step-unverified", title=detail)


class ResultUnverified(StepUnverified):
    """A cohort join's result does not carry, or does not match, its node's signed output."""

    def __init__(self, detail: str) -> None:
        PdxError.__init__(
            self, detail, type="https://pdx.dev/problems/join-result-unverified", title=detail
        )


class UnverifiedSteps(UserWarning):
    """The join's steps are used as relayed: nobody checked them (see the module doc)."""


@dataclass(frozen=True)
class Expected:
    """What a genuine step must be signed over, from this requester's side of the job."""

    job_id: str
    org_id: str
    dataset_id: str
    custody: str
    fingerprint: str | None = None
    """The requester's job key (None: taken from the node's signature)."""

    @classmethod
    def of(cls, computation: Mapping[str, Any], fingerprint: str | None) -> Expected:
        """From the computation as the server shows it (its one input)."""
        try:
            (inp,) = computation["inputs"]
            return cls(
                str(computation["id"]),
                str(inp["provider_org"]),
                str(inp["dataset_id"]),
                str(inp.get("custody", "platform")),
                fingerprint,
            )
        except (KeyError, TypeError, ValueError):
            raise StepUnverified("the computation does not name one provider's input") from None


def _message(proof: Mapping[str, Any], output: bytes) -> bytes:
    """= `sandbox.step_signing.step_message`."""
    fields = (str(proof[f]) for f in _SIGNED_FIELDS)
    return "\n".join((FORMAT, *fields, hashlib.sha256(output).hexdigest())).encode()


class StepVerifier:
    """Checks the provider's signed steps of one job and hands back their signed fields."""

    def __init__(self, trust: NodeTrust | None, expected: Expected | None) -> None:
        self.trust = trust
        self.expected = expected
        # The custody is what the platform says: a platform that relays the steps could say
        # "platform" of a node-held dataset to have them used unchecked. A provider whose
        # party key is pinned must sign, whatever the platform says of its data.
        self.pinned = (
            trust is not None
            and expected is not None
            and any(org == expected.org_id for org, _ in trust.keys.values())
        )
        self.required = (
            trust is not None
            and expected is not None
            and (expected.custody == "node" or self.pinned)
        )
        self.verified = self.required
        """Whether every step this party acted on was checked (False: see the warning)."""
        self._session: str | None = None
        self._start: Mapping[str, Any] | None = None
        self._seq = -1
        self._warned: set[str] = set()

    def open(self, doc: dict[str, Any], step: str) -> tuple[dict[str, Any], bytes | None]:
        """(`doc`, the signed output or None): refused here unless it checks (see module doc)."""
        signed = doc.get("signed")
        if not self.required:
            self._warn()
            if not isinstance(signed, Mapping):
                return doc, None
            return doc, _output(signed)
        if not isinstance(signed, Mapping) or not isinstance(signed.get("proof"), Mapping):
            assert self.expected is not None
            if self.expected.custody != "node":
                raise StepUnverified(
                    f"the provider's {step} step is not signed by its node, and its party key "
                    f"is pinned: the platform's word that its input is held in "
                    f"{self.expected.custody!r} custody does not waive the check (to join a "
                    "platform-held dataset of a pinned provider, pass a trust without it)"
                )
            raise StepUnverified(f"the provider's {step} step is not signed by its node")
        proof, output = signed["proof"], _output(signed)
        self._check(proof, output, step, str(doc.get("job_id")))
        return doc, output

    def open_result(self, signed: object) -> bytes | None:
        """The node's checked `cohort.result` output (`node_signature` of the result document).

        None when nothing can be checked (warned, as for steps). A pinned provider must have
        signed it, whatever custody the platform reports; when this verifier also checked
        the job's steps, the result must come from the same node session, after them.
        Else `ResultUnverified`.
        """
        if not self.required:
            self._warn("result is decrypted as served")
            return None
        if not isinstance(signed, Mapping) or not isinstance(signed.get("proof"), Mapping):
            raise ResultUnverified("the join's result is not signed by the provider's node")
        assert self.expected is not None
        proof = signed["proof"]
        try:
            output = _output(signed)
            self._check(proof, output, "cohort.result", self.expected.job_id, sequenced=False)
        except StepUnverified as exc:
            raise ResultUnverified(f"the join's result: {exc.detail}") from None
        if self._session is not None and (
            str(proof.get("session")) != self._session or int(proof["seq"]) <= self._seq
        ):  # not stored: the same result may be fetched and checked again
            raise ResultUnverified("the join's result is not from the session of its steps")
        return output

    def _check(
        self,
        proof: Mapping[str, Any],
        output: bytes,
        step: str,
        job_id: str,
        *,
        sequenced: bool = True,
    ) -> None:
        assert self.trust is not None and self.expected is not None
        exp = self.expected
        pinned = self.trust.keys.get(str(proof.get("key_id")))
        if pinned is None or pinned[0] != exp.org_id or proof.get("org_id") != exp.org_id:
            raise StepUnverified(
                f"the {step} step is not signed by a party key pinned for provider {exp.org_id}"
            )
        wanted = {"job_id": exp.job_id, "dataset_id": exp.dataset_id, "step": step}
        if exp.fingerprint is not None:
            wanted["fingerprint"] = exp.fingerprint
        if job_id != exp.job_id or any(str(proof.get(k)) != v for k, v in wanted.items()):
            raise StepUnverified(f"the {step} step was signed for another job, input or step")
        try:
            signature = base64.b64decode(str(proof.get("signature")), validate=True)
            Ed25519PublicKey.from_public_bytes(pinned[1]).verify(signature, _message(proof, output))
            seq = int(proof["seq"])
        except (KeyError, ValueError, binascii.Error, InvalidSignature):
            raise StepUnverified(f"the {step} step does not carry its node's signature") from None
        if sequenced:
            self._sequence(proof, step, seq)

    def _sequence(self, proof: Mapping[str, Any], step: str, seq: int) -> None:
        """One session, and each signed output after the last (the start may be repeated)."""
        session = str(proof.get("session"))
        if step == "cohort.start":
            if self._start is not None and dict(self._start) == dict(proof):
                return  # the same start, sent again with the next blind step
            self._session, self._start, self._seq = session, proof, seq
            return
        if session != self._session or seq <= self._seq:
            raise StepUnverified(f"the {step} step is replayed or from another session")
        self._seq = seq

    def _warn(self, what: str = "steps are used as relayed") -> None:
        self.verified = False
        if what not in self._warned:
            self._warned.add(what)
            why = (
                "the provider's data is held by the platform, which runs its sandbox"
                if self.expected is not None and self.expected.custody != "node"
                else "no party keys are pinned (PDX_TRUSTED_PARTIES)"
            )
            warnings.warn(
                f"the join's {what}, unchecked: {why}",
                UnverifiedSteps,
                stacklevel=4,
            )


def _output(signed: Mapping[str, Any]) -> bytes:
    try:
        return base64.b64decode(str(signed["output"]), validate=True)
    except (KeyError, ValueError, binascii.Error):
        raise StepUnverified("a signed step's output is malformed") from None


def unframe(data: bytes) -> tuple[dict[str, Any], bytes]:
    """A step output: its JSON header line and its bytes (as `sandbox.join_wire` frames it)."""
    head, _, body = data.partition(b"\n")
    with contextlib.suppress(ValueError):
        header = json.loads(head)
        if isinstance(header, dict):
            return header, body
    raise StepUnverified("a signed step's output is malformed")

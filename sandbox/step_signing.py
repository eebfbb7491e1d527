"""A provider node signs the join steps the requester's SDK acts on, so no relay can alter them.

Why (finding F4 of the cohort-join review, docs/privacy.md §6.1.4): in a join with the
requester's own cohort the platform relays the provider's points k2·H(y) to the SDK. A
relay that replaces one of them by r·H(z), for a person z of its choice and its own
scalar r, finds x(k1·r·H(z)) among the elements the SDK returns exactly when z is in the
requester's list. When the provider's side runs on its own node, the node signs every
output the SDK acts on, and the encrypted result, with its provider's party key
(`PDX_NODE_PARTY_KEY`, as for mask keys, `sandbox.mask_signing`); the SDK checks each
against the key it pins for that organisation (`pdx_client.stepsig`,
`pdx_client.resultsig`) and refuses anything else. For platform-held data the platform
runs the provider's sandbox itself, so no signature could help there.

What is signed (`step_message`, UTF-8, one per line): the format tag, the computation id,
the node's organisation id, its dataset id, the fingerprint of the requester's job key
(all from the binding the node's code request fixed), the session id, a sequence number
the node counts per session, the step's name and the SHA-256 of its output. A signature
therefore cannot be replayed into another job, dataset, key, session or place in the
session, and the SDK refuses a sequence number that does not go up.

The envelope is a frame (`sandbox.join_wire.frame`): a header holding `FORMAT` and the
signature, then the output unchanged. Only the steps the SDK acts on are signed
(`SIGNED_STEPS`); a node without a party key returns its outputs as they are.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sandbox.mask_signing import NodeIdentity

__all__ = ["FORMAT", "SIGNED_STEPS", "open_step", "sign_step", "step_message"]

FORMAT = "pdx-join-step-sig/1"
"""Must equal `pdx_client.stepsig.FORMAT`."""
SIGNED_STEPS = frozenset({"cohort.start", "cohort.elements", "cohort.pairs", "cohort.result"})
"""The provider's outputs the requester's SDK receives (the salt and |Y|, doubled
elements, the provider's points) and the result: the count encrypted under the
requester's job key, kept beside the result document (`node_signature`) so that the SDK
can tell it is the node's before it decrypts (`pdx_client.resultsig`)."""


def step_message(proof: Mapping[str, Any], output: bytes) -> bytes:
    """What the node signs over one step's output (see module doc)."""
    fields = ("job_id", "org_id", "dataset_id", "fingerprint", "session", "seq", "step")
    return "\n".join(
        (FORMAT, *(str(proof[f]) for f in fields), hashlib.sha256(output).hexdigest())
    ).encode()


def sign_step(
    identity: NodeIdentity,
    binding: Mapping[str, Any],
    session: str,
    seq: int,
    step: str,
    output: bytes,
) -> bytes:
    """`output` in an envelope that carries the node's signature over it."""
    proof: dict[str, Any] = {
        "format": FORMAT,
        "job_id": str(binding["job_id"]),
        "org_id": identity.org_id,
        "dataset_id": str(binding["dataset_id"]),
        "fingerprint": str((binding.get("party") or {}).get("fingerprint")),
        "session": session,
        "seq": seq,
        "step": step,
        "key_id": identity.key_id,
        "algorithm": identity.algorithm,
    }
    signature = identity.private.sign(step_message(proof, output))
    proof["signature"] = base64.b64encode(signature).decode()
    return json.dumps(proof, separators=(",", ":")).encode() + b"\n" + output


def open_step(data: bytes) -> tuple[bytes, dict[str, Any] | None]:
    """The relay's view: the node's output and its signed proof (None when unsigned)."""
    head, _, body = data.partition(b"\n")
    try:
        proof = json.loads(head)
    except ValueError:
        return data, None
    if not isinstance(proof, dict) or proof.get("format") != FORMAT:
        return data, None
    return body, proof

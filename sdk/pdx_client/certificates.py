"""Data-asset registration certificates verified offline, with the SDK's own dependencies.

The same five steps as the server's `pdx market certificate verify`, with `hashlib`,
`cryptography` and the SDK's proof code only: (1) the digest is the certificate's
canonical JSON; (2) the platform's signature over the digest verifies; (3) the proven
ledger leaf records this certificate with this digest; (4) the inclusion proof leads
from the leaf to the checkpoint's root; (5) the checkpoint is signed by the ledger key
the caller trusts, and is of the proof's tree size.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdx_client.canonical import canonical_json, digest_of
from pdx_client.errors import VerificationError
from pdx_client.proofs import MerkleHasher, open_checkpoint, verify_inclusion

__all__ = ["CERTIFICATE_TYPE", "ISSUED_EVENT", "verify_certificate"]

CERTIFICATE_TYPE = "pdx:DataAssetRegistrationCertificate"
ISSUED_EVENT = "market.certificate_issued"
PROBLEM = "https://pdx.dev/problems/certificate-invalid"


def _fail(detail: str, steps: list[str]) -> VerificationError:
    return VerificationError(
        detail, type=PROBLEM, title="Certificate does not verify", extensions={"passed": steps}
    )


def _signature_ok(signer: dict[str, Any], message: bytes, signature: bytes) -> bool:
    algorithm = signer.get("algorithm")
    if algorithm != "ed25519":
        raise ValueError(f"the SDK checks ed25519 platform signatures only, not {algorithm}")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(signer["public_key"]))
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _leaf_record(leaf: bytes) -> dict[str, Any]:
    record = json.loads(leaf.decode("utf-8"))
    if not isinstance(record, dict) or canonical_json(record) != leaf:
        raise ValueError("the ledger leaf is not a canonical JSON record")
    return record


def verify_certificate(bundle: dict[str, Any], verifier_key: str) -> list[str]:
    """The steps passed; raises `VerificationError` (`certificate-invalid`) at the first failure.

    `bundle` is GET /v1/market/certificates/{id} as served (or saved to a file);
    `verifier_key` is the ledger's signed-note key, obtained out of band.
    """
    steps: list[str] = []
    try:
        cert = bundle["certificate"]
        digest = bundle["digest"]
        if cert.get("@type") != CERTIFICATE_TYPE or digest_of(cert) != digest:
            raise _fail("(1) the digest is not the certificate's", steps)
        steps.append("(1) digest matches the certificate")
        signature = base64.b64decode(bundle["signature"], validate=True)
        if not _signature_ok(bundle["signer"], digest.encode(), signature):
            raise _fail("(2) the platform signature does not verify", steps)
        steps.append("(2) platform signature verifies")
        proof = bundle.get("proof")
        if not proof:
            raise _fail("(3) no ledger proof: fetch the certificate again once sealed", steps)
        leaf = base64.b64decode(proof["leaf"], validate=True)
        entry = _leaf_record(leaf)
        recorded = (entry.get("type"), entry.get("object_id"), entry.get("payload_digest"))
        if recorded != (ISSUED_EVENT, cert["id"], digest):
            raise _fail("(3) the ledger entry does not record this certificate", steps)
        steps.append(f"(3) ledger entry {proof['index']} records the certificate")
        checkpoint = open_checkpoint(proof["checkpoint"], verifier_key.strip())
        if checkpoint.size != proof["tree_size"]:
            raise _fail("(5) the checkpoint is not of the proof's tree size", steps)
        h = MerkleHasher(proof.get("hash", "sha256"))
        hashes = [base64.b64decode(p, validate=True) for p in proof["inclusion"]]
        verify_inclusion(
            h, int(proof["index"]), checkpoint.size, h.leaf(leaf), hashes, checkpoint.root
        )
        steps.append(f"(4) inclusion proof leads to the root of tree size {checkpoint.size}")
        steps.append("(5) checkpoint signed by the ledger key")
    except VerificationError as exc:
        if exc.type == PROBLEM:
            raise
        raise _fail(f"at step {len(steps) + 1}: {exc.detail}", steps) from None
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise _fail(f"malformed or invalid at step {len(steps) + 1}: {exc}", steps) from None
    return steps

"""Data-asset registration certificates (数据资产登记): issued, proved, verified offline.

A certificate names the holder, the product, its datasets' digests and grades, the
rights, and the date; the platform signs its digest with the ledger key, and its
ledger entry carries that digest. The exported certificate bundles the entry's leaf,
an RFC 9162 inclusion proof and the signed checkpoint, so `verify_certificate` checks it
with the ledger's verifier key alone (no server).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import crypto
from audit.catalogue import Event
from exchange.accounts import Caller
from exchange.errors import Conflict, NotFound
from exchange.market._common import digest_of, record, z
from exchange.market.models import Certificate, Party, Product
from exchange.models import Dataset
from exchange.trail import Trail
from ledger import (
    Checkpoint,
    Ledger,
    LedgerError,
    decode_leaf,
    hasher,
    open_note,
    parse_verifier_key,
    verify_inclusion,
)

__all__ = ["CertificateInvalid", "certificate_bundle", "issue_certificate", "verify_certificate"]

CERTIFICATE_TYPE = "pdx:DataAssetRegistrationCertificate"
Signer = Callable[[bytes], tuple[bytes, dict[str, str]]]


def issue_certificate(
    session: Session, caller: Caller, product_id: str, *, sign: Signer, now: datetime,
    trail: Trail,
) -> dict[str, Any]:  # fmt: skip
    """Certify a listed product of the caller's organisation; the certificate is on the ledger."""
    product = session.get(Product, product_id)
    if product is None or product.provider_org != caller.org_id:
        raise NotFound("no such product", product_id=product_id)
    if product.state != "listed":
        raise Conflict("only a listed product (its pre-check passed) is certified")
    party = session.get(Party, product.provider_org)
    datasets = session.scalars(
        select(Dataset).where(Dataset.id.in_(product.datasets)).order_by(Dataset.id)
    ).all()
    cert_id = str(uuid.uuid4())
    body = {
        "@type": CERTIFICATE_TYPE,
        "id": cert_id,
        "holder": {
            "org_id": product.provider_org,
            "name": product.provider_name,
            "credit_code": party.credit_code if party else None,
        },
        "product": {"id": product.id, "title": product.title, "domain": product.domain},
        "datasets": [
            {
                "id": d.id,
                "name": d.name,
                "level": d.level,
                "open_attribute": d.open_attribute,
                "digest": f"sha256:{d.sha256}",
                "rows": d.rows,
            }
            for d in datasets
        ],  # fmt: skip
        "rights": product.rights,
        "precheck_decision": (product.precheck or {}).get("decision_id"),
        "issued_at": z(now),
    }
    digest = digest_of(body)
    signature, signer = sign(digest.encode())
    row = Certificate(
        id=cert_id, product_id=product.id, holder_org=product.provider_org, body=body,
        signer=signer, digest=digest, signature=base64.b64encode(signature).decode(),
        created_at=now,
    )  # fmt: skip
    session.add(row)
    index = record(
        session, trail, caller, Event.MARKET_CERTIFICATE_ISSUED, "certify", row=row,
        object_type="certificate", object_id=cert_id, now=now, digest=digest,
        detail=f"product={product.id} datasets={len(datasets)}",
    ).ledger_index  # fmt: skip
    return {"certificate": body, "digest": digest, "signature": row.signature,
            "signer": signer, "ledger_index": index}  # fmt: skip


def certificate_bundle(
    session: Session, ledger: Ledger, certificate_id: str, *, hash_name: str
) -> dict[str, Any]:
    """The certificate with its ledger proof, once its entry is sealed (else `proof` is None)."""
    row = session.get(Certificate, certificate_id)
    if row is None:
        raise NotFound("no such certificate", certificate_id=certificate_id)
    bundle: dict[str, Any] = {
        "certificate": row.body, "digest": row.digest, "signature": row.signature,
        "signer": row.signer, "ledger_index": row.ledger_index, "proof": None,
    }  # fmt: skip
    latest = ledger.latest(session)
    if row.ledger_index is None or latest is None or latest.block.tree_size <= row.ledger_index:
        return bundle
    size = latest.block.tree_size
    entry = ledger.entry(session, row.ledger_index)
    bundle["proof"] = {
        "hash": hash_name,
        "index": row.ledger_index,
        "leaf": base64.b64encode(entry.leaf).decode(),
        "tree_size": size,
        "inclusion": [
            base64.b64encode(p).decode()
            for p in ledger.inclusion_proof(session, row.ledger_index, size)
        ],
        "checkpoint": latest.checkpoint,
    }
    return bundle


class CertificateInvalid(Exception):
    """A certificate failed verification; the message names the step."""


def verify_certificate(bundle: dict[str, Any], verifier_key: str) -> list[str]:
    """Verify an exported certificate offline; return the steps passed, raise at the first failure.

    (1) the digest is the certificate's; (2) the platform's signature over it verifies;
    (3) the ledger leaf records this certificate with this digest; (4) the inclusion
    proof leads from the leaf to the checkpoint's root; (5) the checkpoint is signed by
    the ledger key named by `verifier_key` and its size is the proof's.
    """
    steps: list[str] = []
    try:
        cert = bundle["certificate"]
        digest = bundle["digest"]
        if cert.get("@type") != CERTIFICATE_TYPE or digest_of(cert) != digest:
            raise CertificateInvalid("(1) the digest is not the certificate's")
        steps.append("(1) digest matches the certificate")
        signer = bundle["signer"]
        key = crypto.load_verifying_key(signer["algorithm"], base64.b64decode(signer["public_key"]))
        if not key.verify(digest.encode(), base64.b64decode(bundle["signature"])):
            raise CertificateInvalid("(2) the platform signature does not verify")
        steps.append("(2) platform signature verifies")
        proof = bundle.get("proof")
        if not proof:
            raise CertificateInvalid("(3) no ledger proof: fetch the certificate again once sealed")
        leaf = base64.b64decode(proof["leaf"])
        entry = decode_leaf(leaf)
        if (entry.get("type"), entry.get("object_id"), entry.get("payload_digest")) != (
            Event.MARKET_CERTIFICATE_ISSUED.value, cert["id"], digest,
        ):  # fmt: skip
            raise CertificateInvalid("(3) the ledger entry does not record this certificate")
        steps.append(f"(3) ledger entry {proof['index']} records the certificate")
        verifier = parse_verifier_key(verifier_key.strip())
        text, _names = open_note(proof["checkpoint"].encode(), [verifier])
        checkpoint = Checkpoint.parse(text)
        h = hasher(proof["hash"])
        if checkpoint.size != proof["tree_size"]:
            raise CertificateInvalid("(5) the checkpoint is not of the proof's tree size")
        verify_inclusion(
            h, proof["index"], proof["tree_size"], h.leaf(leaf),
            [base64.b64decode(p) for p in proof["inclusion"]], checkpoint.root_hash,
        )  # fmt: skip
        steps.append(f"(4) inclusion proof leads to the root of tree size {checkpoint.size}")
        steps.append("(5) checkpoint signed by the ledger key")
    except CertificateInvalid:
        raise
    except (
        KeyError,
        TypeError,
        ValueError,
        binascii.Error,
        LedgerError,
        crypto.CryptoError,
    ) as exc:
        raise CertificateInvalid(f"malformed or invalid at step {len(steps) + 1}: {exc}") from None
    return steps

"""The ledger's signer from the KMS, shared by the platform, the CLI and the compliance runs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

import crypto
from gateway.settings import Settings
from ledger import KmsLedgerSigner

__all__ = ["ledger_signer_for"]


def ledger_signer_for(
    *, platform_keystore: crypto.KeyStore, settings: Settings, session: Session, now: datetime
) -> KmsLedgerSigner:
    """The ledger's signer: the KMS key of purpose ledger-signing (Ed25519, or SM2 under sm)."""
    signer = platform_keystore.signer(session, purpose=crypto.KeyPurpose.LEDGER_SIGNING, now=now)
    return KmsLedgerSigner(settings.ledger_origin, signer)

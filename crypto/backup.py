"""Key backup and restore under an offline recovery key split among custodians (Shamir k-of-n)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto import shamir
from crypto.errors import BackupInvalid, InconsistentShares, InvalidCiphertext
from crypto.events import KeyOperation
from crypto.keymaterial import algorithm_info, aware, event_for, require_aware, row_aad
from crypto.keystore import KeyStore
from crypto.lifecycle import KeyState
from crypto.models import DataKeyRecord, KeyRecord
from crypto.roles import KeyActor, KmsAction
from crypto.suites import signature
from crypto.suites.aead import NONCE_SIZE, AeadSuite, new_aead

# A backup is a JSON document:
#
#   {"format": "pdx-key-backup", "version": 1, "created_at": ..., "recovery_key_id": ...,
#    "keys": n, "data_keys": m, "ephemeral_public": b64, "nonce": b64, "ciphertext": b64}
#
# The payload (every non-destroyed key version's secret in plaintext, plus the data-key
# rows, which are already wrapped under their KEKs) is sealed with ECIES: an ephemeral
# X25519 key agreement with the recovery public key (RFC 7748), HKDF-SHA256 (RFC 5869)
# over the shared secret, then AES-256-GCM whose associated data is the canonical JSON
# of every other member, so the manifest cannot be altered either. The recovery key is
# asymmetric so that the online platform holds only its public half: the private half
# exists only as Shamir shares held by custodians (GB/T 39786-2021 Annex B: backup and
# restore under dual control), and is rebuilt only to restore.
FORMAT: Final = "pdx-key-backup"
VERSION: Final = 1
_HKDF_INFO = b"pdx key backup v1"
_SHARE_PREFIX = "pdx-recovery-share-v1:"
DEFAULT_THRESHOLD: Final = 3
DEFAULT_SHARES: Final = 5


def recovery_key_id(public_key: bytes) -> str:
    """A short, stable name for a recovery public key (SHA-256, domain-separated)."""
    return "rk:" + hashlib.sha256(b"pdx recovery key\x00" + public_key).hexdigest()[:32]


@dataclass(frozen=True)
class RecoveryKit:
    """What a recovery-key ceremony produces: the public key and one share per custodian.

    Keep `public_key` with the platform's settings (it only encrypts); hand each of
    `shares` (text form: `share_text`) to a different custodian and forget them.
    """

    public_key: bytes
    threshold: int
    shares: tuple[bytes, ...] = field(repr=False)

    @property
    def key_id(self) -> str:
        return recovery_key_id(self.public_key)

    def share_text(self, index: int) -> str:
        """Share `index` (0-based) as one line of text for a custodian."""
        return share_to_text(self.shares[index])


def create_recovery_key(
    *, threshold: int = DEFAULT_THRESHOLD, shares: int = DEFAULT_SHARES
) -> RecoveryKit:
    """Generate a recovery key pair and split the private half `threshold`-of-`shares`."""
    private = X25519PrivateKey.generate()
    parts = shamir.split(private.private_bytes_raw(), threshold, shares)
    return RecoveryKit(
        public_key=private.public_key().public_bytes_raw(),
        threshold=threshold,
        shares=tuple(parts),
    )


def share_to_text(share: bytes) -> str:
    """A share as a printable line: prefix and base64url."""
    return _SHARE_PREFIX + base64.urlsafe_b64encode(share).decode("ascii")


def share_from_text(text: str) -> bytes:
    """Parse `share_to_text`; `InconsistentShares` if it is not a share line."""
    text = text.strip()
    if not text.startswith(_SHARE_PREFIX):
        raise InconsistentShares("not a pdx recovery share")
    try:
        return base64.urlsafe_b64decode(text[len(_SHARE_PREFIX) :].encode("ascii"))
    except (binascii.Error, ValueError):
        raise InconsistentShares("malformed recovery share") from None


@dataclass(frozen=True)
class RestoreReport:
    """What `restore_backup` did: counts, and the (id, version) of keys it left alone."""

    keys_restored: int
    data_keys_restored: int
    skipped: tuple[tuple[str, int], ...] = ()


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise BackupInvalid("backup field is not base64 text")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        raise BackupInvalid("backup field is not base64 text") from None


def _time(value: datetime | None) -> str | None:
    stored = aware(value)
    return None if stored is None else stored.isoformat()


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise BackupInvalid("backup holds an invalid time") from None


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _sealing_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_HKDF_INFO
    ).derive(shared)


def export_backup(
    keystore: KeyStore,
    session: Session,
    *,
    recovery_public_key: bytes,
    by: KeyActor,
    now: datetime,
    include_data_keys: bool = True,
) -> bytes:
    """Every KEK and signing key version (not destroyed), sealed to the recovery key.

    Each key is unwrapped from the root backend and sealed, with the rest, under the
    recovery public key; a `backup` event is emitted per key version. Data-key rows,
    already wrapped under their KEKs, come along unless `include_data_keys` is False.
    Store the result offline: anyone with it and `threshold` shares has every key.
    """
    by.require(KmsAction.BACKUP)
    require_aware(now)
    try:
        recipient = X25519PublicKey.from_public_bytes(recovery_public_key)
    except ValueError:
        raise BackupInvalid("the recovery public key is not an X25519 key") from None
    rows = session.scalars(
        select(KeyRecord)
        .where(KeyRecord.state != KeyState.DESTROYED)
        .order_by(KeyRecord.id, KeyRecord.version)
    ).all()
    keys = [
        {
            "id": row.id,
            "version": row.version,
            "purpose": row.purpose,
            "algorithm": row.algorithm,
            "owner_org": row.owner_org,
            "state": row.state,
            "created_at": _time(row.created_at),
            "not_before": _time(row.not_before),
            "not_after": _time(row.not_after),
            "state_changed_at": _time(row.state_changed_at),
            "public_material": _b64(row.public_material),
            "secret": _b64(keystore._unwrap_row(row)),
        }
        for row in rows
    ]
    data_keys: list[dict[str, Any]] = []
    if include_data_keys:
        records = session.scalars(
            select(DataKeyRecord).where(DataKeyRecord.wrapped != b"").order_by(DataKeyRecord.id)
        ).all()
        data_keys = [
            {
                "id": r.id,
                "kek_id": r.kek_id,
                "kek_version": r.kek_version,
                "wrapped": _b64(r.wrapped),
                "object_ref": r.object_ref,
                "created_at": _time(r.created_at),
                "algorithm": r.algorithm,
            }
            for r in records
        ]
    payload = _canonical({"keys": keys, "data_keys": data_keys})
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    sealing_key = _sealing_key(ephemeral.exchange(recipient), ephemeral_public, recovery_public_key)
    nonce = os.urandom(NONCE_SIZE)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": now.isoformat(),
        "created_by": by.id,
        "recovery_key_id": recovery_key_id(recovery_public_key),
        "keys": len(keys),
        "data_keys": len(data_keys),
        "ephemeral_public": _b64(ephemeral_public),
        "nonce": _b64(nonce),
    }
    sealed = new_aead(AeadSuite.AES_256_GCM, sealing_key).encrypt(
        nonce, payload, _canonical(manifest)
    )
    for row in rows:
        keystore._emit(
            session,
            event_for(
                KeyOperation.BACKUP,
                row,
                f"exported under recovery key {manifest['recovery_key_id']}",
                actor=by.id,
            ),
        )
    return _canonical({**manifest, "ciphertext": _b64(sealed)})


def restore_backup(
    keystore: KeyStore,
    session: Session,
    backup: bytes,
    *,
    shares: Sequence[bytes | str],
    by: KeyActor,
    now: datetime,
) -> RestoreReport:
    """Restore a backup into this keystore's database and root backend.

    Needs at least `threshold` custodian shares (bytes, or `share_to_text` lines):
    fewer raise `TooFewShares`, shares of another split or a tampered share
    `InconsistentShares`, shares of another recovery key `InconsistentShares` too,
    and a damaged backup `BackupInvalid`. Keys are re-wrapped under the configured
    root key; versions already present are left alone — in particular a version
    destroyed here is never resurrected. Emits a `restore` event per restored key.
    """
    by.require(KmsAction.RESTORE)
    require_aware(now)
    manifest, sealed = _parse(backup)
    raw_shares = [share_from_text(s) if isinstance(s, str) else s for s in shares]
    private_raw = shamir.combine(raw_shares)
    try:
        private = X25519PrivateKey.from_private_bytes(private_raw)
    except ValueError:
        raise InconsistentShares("the shares do not form a recovery key") from None
    public = private.public_key().public_bytes_raw()
    if recovery_key_id(public) != manifest["recovery_key_id"]:
        raise InconsistentShares(
            "the shares are of another recovery key than the backup's",
            recovery_key_id=manifest["recovery_key_id"],
        )
    ephemeral_public = _unb64(manifest["ephemeral_public"])
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError:
        raise BackupInvalid("backup has an invalid ephemeral key") from None
    sealing_key = _sealing_key(shared, ephemeral_public, public)
    try:
        payload = new_aead(AeadSuite.AES_256_GCM, sealing_key).decrypt(
            _unb64(manifest["nonce"]), sealed, _canonical(manifest)
        )
        content = json.loads(payload)
        keys = list(content["keys"])
        data_keys = list(content["data_keys"])
    except InvalidCiphertext:
        raise BackupInvalid("the backup does not authenticate") from None
    except (ValueError, KeyError, TypeError):
        raise BackupInvalid("the backup payload is malformed") from None
    restored, skipped = 0, []
    for entry in keys:
        if _restore_key(keystore, session, entry, by, now):
            restored += 1
        else:
            skipped.append((str(entry["id"]), int(entry["version"])))
    restored_data = 0
    for entry in data_keys:
        restored_data += _restore_data_key(session, entry)
    session.flush()
    return RestoreReport(restored, restored_data, tuple(skipped))


def _parse(backup: bytes) -> tuple[dict[str, Any], bytes]:
    try:
        document = json.loads(backup)
    except (ValueError, UnicodeDecodeError):
        raise BackupInvalid("the backup is not JSON") from None
    if not isinstance(document, dict):
        raise BackupInvalid("the backup is not a JSON object")
    if document.get("format") != FORMAT or document.get("version") != VERSION:
        raise BackupInvalid("not a pdx key backup of a known version")
    required = ("recovery_key_id", "ephemeral_public", "nonce", "ciphertext")
    if any(not isinstance(document.get(name), str) for name in required):
        raise BackupInvalid("the backup lacks a required member")
    sealed = _unb64(document.pop("ciphertext"))
    return document, sealed


def _restore_key(
    keystore: KeyStore, session: Session, entry: dict[str, Any], by: KeyActor, now: datetime
) -> bool:
    try:
        owner, public = entry["owner_org"], entry["public_material"]
        row = KeyRecord(
            id=str(entry["id"]),
            version=int(entry["version"]),
            purpose=str(entry["purpose"]),
            algorithm=str(entry["algorithm"]),
            owner_org=None if owner is None else str(owner),
            state=KeyState(entry["state"]).value,
            public_material=None if public is None else _unb64(public),
            parent_id=keystore.root.key_id,
        )
        secret = _unb64(entry["secret"])
    except (KeyError, TypeError, ValueError):
        raise BackupInvalid("a key entry of the backup is malformed") from None
    if session.get(KeyRecord, (row.id, row.version)) is not None:
        return False
    info = algorithm_info(row.algorithm)
    if info.signature is not None:
        # The AEAD already vouches for it; this catches a backup from a buggy writer.
        if signature.load_private(info.signature, secret).public_bytes() != row.public_material:
            raise BackupInvalid("a signing key of the backup does not match its public key")
    # Wrapped under this store's root, bound to the row as `KeyStore` unwraps it (`row_aad`).
    row.wrapped_material = keystore.root.wrap(secret, row_aad(row))
    row.created_at = _parse_time(entry.get("created_at")) or now
    row.not_before = _parse_time(entry.get("not_before"))
    row.not_after = _parse_time(entry.get("not_after"))
    row.state_changed_at = _parse_time(entry.get("state_changed_at"))
    session.add(row)
    session.flush()
    keystore._emit(
        session,
        event_for(KeyOperation.RESTORE, row, "restored from backup", actor=by.id),
    )
    return True


def _restore_data_key(session: Session, entry: dict[str, Any]) -> int:
    try:
        record_id = str(entry["id"])
        kek = (str(entry["kek_id"]), int(entry["kek_version"]))
        wrapped = _unb64(entry["wrapped"])
    except (KeyError, TypeError, ValueError):
        raise BackupInvalid("a data key entry of the backup is malformed") from None
    if session.get(DataKeyRecord, record_id) is not None:
        return 0
    kek_row = session.get(KeyRecord, kek)
    if kek_row is None or kek_row.state == KeyState.DESTROYED:
        return 0
    session.add(
        DataKeyRecord(
            id=record_id,
            kek_id=kek[0],
            kek_version=kek[1],
            wrapped=wrapped,
            object_ref=str(entry["object_ref"]),
            created_at=_parse_time(entry.get("created_at")),
            algorithm=str(entry.get("algorithm") or "AES-256-GCM"),
        )
    )
    return 1

"""The state and lookups every part of `crypto.kms.KeyManager` shares."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crypto._kms_views import DEFAULT_DESTROY_REQUEST_TTL
from crypto.errors import KeyNotFound
from crypto.events import KeyOperation
from crypto.keymaterial import key_id_for
from crypto.keystore import KeyStore
from crypto.lifecycle import DEFAULT_ROTATION_POLICY, KeyPurpose, KeyState, RotationPolicy
from crypto.models import DataKeyRecord, KeyRecord
from crypto.roles import KeyActor


class _KeyManagerCore:
    """The key store, the rotation policy and the row lookups of the KMS operations."""

    def __init__(
        self,
        keystore: KeyStore,
        *,
        policy: RotationPolicy = DEFAULT_ROTATION_POLICY,
        destroy_request_ttl: timedelta = DEFAULT_DESTROY_REQUEST_TTL,
    ) -> None:
        if destroy_request_ttl <= timedelta(0):
            raise ValueError("destroy_request_ttl must be positive")
        self._store = keystore
        self._policy = policy
        self._destroy_ttl = destroy_request_ttl

    @staticmethod
    def kek_id(owner_org: str) -> str:
        """The id of an organisation's KEK (every version shares it)."""
        return key_id_for(KeyPurpose.KEY_WRAPPING, owner_org)

    @staticmethod
    def platform_key_id(purpose: str) -> str:
        """The id of the platform-wide key of a signing purpose (e.g. "ledger-signing")."""
        return key_id_for(purpose, None)

    def _deactivate(
        self, session: Session, row: KeyRecord, now: datetime, detail: str, by: KeyActor
    ) -> None:
        """Take an older or doomed version out of use: → deactivated, as an `archive` event."""
        self._store._change_state(
            session, row, KeyState.DEACTIVATED, now, KeyOperation.ARCHIVE, detail, by.id
        )

    # -- lookups ---------------------------------------------------------------------------

    def _versions(self, session: Session, key_id: str) -> list[KeyRecord]:
        return self._store._versions(session, key_id)

    def _rows(self, session: Session, key_id: str) -> list[KeyRecord]:
        rows = self._versions(session, key_id)
        if not rows:
            raise KeyNotFound("key not found", key_id=key_id)
        return rows

    def _row(self, session: Session, key_id: str, version: int) -> KeyRecord:
        row = session.get(KeyRecord, (key_id, version))
        if row is None:
            raise KeyNotFound("key version not found", key_id=key_id, version=version)
        return row

    def _data_key_counts(
        self, session: Session, key_id: str | None = None
    ) -> dict[tuple[str, int], int]:
        query = (
            select(DataKeyRecord.kek_id, DataKeyRecord.kek_version, func.count())
            .where(DataKeyRecord.wrapped != b"")
            .group_by(DataKeyRecord.kek_id, DataKeyRecord.kek_version)
        )
        if key_id is not None:
            query = query.where(DataKeyRecord.kek_id == key_id)
        return {(kek_id, version): int(n) for kek_id, version, n in session.execute(query).all()}

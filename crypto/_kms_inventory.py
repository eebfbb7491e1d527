"""KMS reading: the key inventory, one key's versions, and what the rotation policy says is due."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto._kms_core import _KeyManagerCore
from crypto._kms_views import KeyInfo, RotationDue, _active_since, _info
from crypto.keymaterial import (
    ALGORITHM_AES_256_GCM,
    MANAGED_PURPOSES,
    algorithm_info,
    aware,
    require_aware,
    row_fields,
)
from crypto.lifecycle import KeyPurpose, KeyState
from crypto.models import KeyRecord
from crypto.roles import KeyActor, KmsAction


class _KeyInventory(_KeyManagerCore):
    """Reading the key hierarchy (GB/T 39786 key inventory) and the rotation schedule."""

    # -- reading -------------------------------------------------------------------------

    def inventory(self, session: Session, *, by: KeyActor) -> list[KeyInfo]:
        """Every key: the root key first, then each stored version (GB/T 39786 key inventory)."""
        by.require(KmsAction.INVENTORY)
        root = self._store.root
        root_algorithm = algorithm_info(ALGORITHM_AES_256_GCM)
        entries = [
            KeyInfo(
                key_id=root.key_id,
                version=1,
                type=root_algorithm.kind,
                length=root_algorithm.bits,
                purpose=KeyPurpose.KEY_WRAPPING.value,
                algorithm=ALGORITHM_AES_256_GCM,
                state=KeyState.ACTIVE.value,
                location=root.kind,
            )
        ]
        counts = self._data_key_counts(session)
        rows = session.scalars(
            select(KeyRecord).order_by(
                KeyRecord.purpose, KeyRecord.owner_org, KeyRecord.id, KeyRecord.version
            )
        ).all()
        for row in rows:
            wrapping = row.purpose == KeyPurpose.KEY_WRAPPING
            count = counts.get((row.id, row.version), 0) if wrapping else None
            entries.append(_info(row, count))
        return entries

    def key(self, session: Session, key_id: str, *, by: KeyActor) -> list[KeyInfo]:
        """Every version of one key, newest first; `KeyNotFound` if it has none."""
        by.require(KmsAction.INVENTORY)
        rows = self._rows(session, key_id)
        counts = self._data_key_counts(session, key_id)
        return [
            _info(
                row,
                counts.get((row.id, row.version), 0)
                if row.purpose == KeyPurpose.KEY_WRAPPING
                else None,
            )
            for row in rows
        ]

    def due_for_rotation(
        self, session: Session, *, now: datetime, by: KeyActor
    ) -> list[RotationDue]:
        """Keys the rotation policy says need rotating (or finishing a rotation) at `now`."""
        by.require(KmsAction.ROTATION_DUE)
        require_aware(now)
        rows = session.scalars(
            select(KeyRecord).order_by(KeyRecord.id, KeyRecord.version.desc())
        ).all()
        by_id: dict[str, list[KeyRecord]] = {}
        for row in rows:
            by_id.setdefault(row.id, []).append(row)
        counts = self._data_key_counts(session)
        due: list[RotationDue] = []
        for versions in by_id.values():
            due.extend(self._due(versions, counts, now))
        return sorted(due, key=lambda d: (d.due_at is None, d.due_at or now, d.key_id))

    def _due(
        self,
        versions: list[KeyRecord],
        counts: dict[tuple[str, int], int],
        now: datetime,
    ) -> list[RotationDue]:
        newest = versions[0]
        if newest.purpose not in {p.value for p in MANAGED_PURPOSES}:
            return []
        active = [r for r in versions if r.state == KeyState.ACTIVE]
        due: list[RotationDue] = []

        def entry(row: KeyRecord, reason: str, due_at: datetime | None, pending: int = 0) -> None:
            due.append(
                RotationDue(
                    **row_fields(RotationDue, row),
                    active_since=_active_since(row),
                    due_at=due_at,
                    reason=reason,
                    pending_data_keys=pending,
                )
            )

        for row in versions:
            held = counts.get((row.id, row.version), 0)
            if row.state == KeyState.COMPROMISED and (
                held or row.purpose != KeyPurpose.KEY_WRAPPING
            ):
                entry(row, "compromised", aware(row.state_changed_at), held)
        if not active:
            return due
        current = active[0]
        pending = sum(
            n for (kid, v), n in counts.items() if kid == current.id and v < current.version
        )
        if len(active) > 1 or pending:
            entry(current, "rewrap-pending", _active_since(current), pending)
        not_after = aware(current.not_after)
        if not_after is not None and not_after <= now:
            entry(current, "expired", not_after)
            return due
        since = _active_since(current)
        due_at = None if since is None else self._policy.due_at(current.purpose, since)
        if due_at is not None and due_at <= now:
            entry(current, "max-age", due_at)
        return due

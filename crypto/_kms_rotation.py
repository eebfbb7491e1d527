"""KMS rotation: a new version, then data keys re-wrapped onto it in resumable batches."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crypto._kms_core import _KeyManagerCore
from crypto._kms_views import DEFAULT_BATCH_SIZE, RotationProgress
from crypto.errors import KeyDestroyed, KeyNotActive
from crypto.events import KeyOperation
from crypto.keymaterial import (
    check_processable,
    data_key_aad,
    event_for,
    in_validity,
    kek_unwrap,
    kek_wrap,
    require_aware,
)
from crypto.lifecycle import KeyPurpose, KeyState
from crypto.models import DataKeyRecord, KeyRecord
from crypto.roles import KeyActor, KmsAction


class _KeyRotation(_KeyManagerCore):
    """Rotation without downtime: `rotate` starts a version and re-wraps data keys in batches."""

    # -- rotation --------------------------------------------------------------------------

    def start_rotation(
        self,
        session: Session,
        key_id: str,
        *,
        by: KeyActor,
        now: datetime,
        algorithm: str | None = None,
    ) -> int:
        """Generate and activate the next version; return its number. Only flushes.

        The new version protects everything from now on. A signing key's older active
        versions are archived at once (they still verify); a KEK's stay active — and
        keep unwrapping — until `rotate` has moved every data key off them.
        `algorithm` changes it (e.g. AES-256-GCM → SM4-GCM when a tenant moves to the
        SM suite); by default the newest version's is kept.
        """
        by.require(KmsAction.ROTATE)
        require_aware(now)
        rows = self._rows(session, key_id)
        newest = rows[0]
        if all(row.state == KeyState.DESTROYED for row in rows):
            raise KeyDestroyed("every version of this key was destroyed", key_id=key_id)
        purpose = KeyPurpose(newest.purpose)
        row = self._store._create_key(
            session,
            key_id,
            purpose,
            newest.owner_org,
            now,
            algorithm=algorithm or newest.algorithm,
            actor=by.id,
            detail=f"rotation by {by.id}",
        )
        self._store._emit(
            session,
            event_for(
                KeyOperation.ROTATE,
                row,
                f"version {row.version} active, replacing {newest.version}",
                actor=by.id,
            ),
        )
        if purpose is not KeyPurpose.KEY_WRAPPING:
            self._finish(session, row, now, by)
        return row.version

    def _rewrap_batch(
        self, session: Session, key_id: str, by: KeyActor, now: datetime, batch_size: int
    ) -> RotationProgress:
        """Re-wrap up to `batch_size` data keys onto the KEK's active version. Only flushes.

        Only the wrapped data keys change (unwrap under the old KEK version, wrap under
        the new one); the data they encrypt is untouched. When none is left, the older
        active versions are archived (→ deactivated) and the rotation is finished.
        Rows are taken with FOR UPDATE SKIP LOCKED on PostgreSQL, so concurrent
        rotations or deletions neither block each other nor re-wrap a row twice.
        `rotate` has checked the role and the clock.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        rows = self._rows(session, key_id)
        target = self._usable(rows, now)
        if target.purpose != KeyPurpose.KEY_WRAPPING:
            self._finish(session, target, now, by)
            return RotationProgress(key_id, target.version, 0, 0)
        batch = session.scalars(
            self._pending_query(key_id, target.version)
            .order_by(DataKeyRecord.id)
            .limit(batch_size)
            .with_for_update(of=DataKeyRecord, skip_locked=True)
        ).all()
        new_kek = self._store._unwrap_row(target)
        old_keks: dict[int, tuple[KeyRecord, bytes]] = {}
        for record in batch:
            if record.kek_version not in old_keks:
                old_row = self._row(session, key_id, record.kek_version)
                check_processable(old_row)
                old_keks[record.kek_version] = (old_row, self._store._unwrap_row(old_row))
            old_row, old_kek = old_keks[record.kek_version]
            aad = data_key_aad(record.id, record.object_ref)
            plaintext = kek_unwrap(old_row.algorithm, old_kek, record.wrapped, aad)
            record.wrapped = kek_wrap(target.algorithm, new_kek, plaintext, aad)
            record.kek_version = target.version
        session.flush()
        remaining = self._pending_count(session, key_id, target.version)
        if batch:
            self._store._emit(
                session,
                event_for(
                    KeyOperation.ROTATE,
                    target,
                    f"re-wrapped {len(batch)} data keys onto version {target.version}; "
                    f"{remaining} remain",
                    actor=by.id,
                ),
            )
        if remaining == 0:
            self._finish(session, target, now, by)
        return RotationProgress(key_id, target.version, len(batch), remaining)

    def rotate(
        self,
        session: Session,
        key_id: str,
        *,
        by: KeyActor,
        now: datetime,
        batch_size: int = DEFAULT_BATCH_SIZE,
        algorithm: str | None = None,
    ) -> RotationProgress:
        """Rotate a key without downtime, or resume a rotation that did not finish.

        Unlike every other method this one COMMITS, after the new version and after
        each batch: a rotation of millions of data keys neither holds one long
        transaction nor loses finished batches to a later failure. Call it on a session
        with no transaction of its own work in progress (not inside `session.begin()`).
        The event sink runs inside each batch's transaction.

        If a previous rotation left work (data keys under older versions, older versions
        still active), it is resumed instead of generating another version. A failure
        rolls back the current batch only: every data key is then wrapped under either
        the old version, still active, or the new one, and all of them unwrap.
        """
        by.require(KmsAction.ROTATE)
        require_aware(now)
        try:
            rows = self._rows(session, key_id)
            if not self._unfinished(session, rows, now):
                self.start_rotation(session, key_id, by=by, now=now, algorithm=algorithm)
                session.commit()
            rewrapped = 0
            while True:
                progress = self._rewrap_batch(session, key_id, by, now, batch_size)
                session.commit()
                rewrapped += progress.rewrapped
                if progress.done or progress.rewrapped == 0:
                    return RotationProgress(key_id, progress.version, rewrapped, progress.remaining)
        except BaseException:
            session.rollback()
            raise

    # -- rotation internals ----------------------------------------------------------------

    def _usable(self, rows: Iterable[KeyRecord], now: datetime) -> KeyRecord:
        for row in rows:
            if row.state == KeyState.ACTIVE and in_validity(row, now):
                return row
        raise KeyNotActive("the key has no active version to rotate onto")

    def _pending_query(self, key_id: str, target_version: int) -> Any:
        return select(DataKeyRecord).where(
            DataKeyRecord.kek_id == key_id,
            DataKeyRecord.kek_version != target_version,
            DataKeyRecord.wrapped != b"",
        )

    def _pending_count(self, session: Session, key_id: str, target_version: int) -> int:
        return int(
            session.scalar(
                select(func.count()).select_from(
                    self._pending_query(key_id, target_version).subquery()
                )
            )
            or 0
        )

    def _unfinished(self, session: Session, rows: list[KeyRecord], now: datetime) -> bool:
        """Whether a rotation of this key was started and not finished."""
        try:
            target = self._usable(rows, now)
        except KeyNotActive:
            return False
        older_active = any(
            row.state == KeyState.ACTIVE and row.version < target.version for row in rows
        )
        if older_active:
            return True
        if target.purpose != KeyPurpose.KEY_WRAPPING:
            return False
        return self._pending_count(session, target.id, target.version) > 0

    def _finish(self, session: Session, target: KeyRecord, now: datetime, by: KeyActor) -> None:
        for row in self._versions(session, target.id):
            if row.version < target.version and row.state == KeyState.ACTIVE:
                self._deactivate(session, row, now, f"superseded by version {target.version}", by)

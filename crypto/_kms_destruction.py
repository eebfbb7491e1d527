"""KMS destruction under the two-person rule: request, approve (crypto-shred), cancel."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from crypto._kms_core import _KeyManagerCore
from crypto._kms_views import _CANCELLED, _EXECUTED, _PENDING, DestroyRequest
from crypto.errors import DestroyRequestInvalid, DualControlViolation, KeyDestroyed
from crypto.events import KeyOperation
from crypto.keymaterial import aware, event_for, require_aware
from crypto.lifecycle import KeyPurpose, KeyState
from crypto.models import DataKeyRecord, DestroyRequestRecord, KeyRecord
from crypto.roles import KeyActor, KmsAction


def _who(actor: str, person: str | None) -> str:
    return actor if person is None else f"{actor} (person {person})"


def _check_distinct_people(record: DestroyRequestRecord, by: KeyActor, request_id: str) -> None:
    """Two persons, not two clients of one person, and neither created the other.

    When either half names a person both must (a client of a person cannot pair with
    an anonymous actor); actors without people (the local CLI, unit tests) keep the
    distinct-id rule above. 三员分立 / GB/T 39786-2021 key destruction under dual control.
    """
    requester, sponsor = record.requested_by_person, record.requested_by_sponsor
    if requester is None and by.person is None:
        return
    if requester is None or by.person is None:
        raise DualControlViolation(
            "both halves of the two-person rule must be registered people",
            request_id=request_id,
        )
    if requester == by.person:
        raise DualControlViolation(
            "the same person requested this destruction (through another client)",
            request_id=request_id,
        )
    if by.sponsor == requester or sponsor == by.person:
        raise DualControlViolation(
            "the approver and the requester must not have created one another",
            request_id=request_id,
        )


class _KeyDestruction(_KeyManagerCore):
    """Destroying key versions: two distinct people, a request that expires, zeroised rows."""

    def destroy_requests(
        self, session: Session, *, by: KeyActor, now: datetime, status: str | None = _PENDING
    ) -> list[DestroyRequest]:
        """Destruction requests with `status` at `now` (None: all), oldest first.

        A pending request past `expires_at` is reported with status "expired".
        """
        by.require(KmsAction.INVENTORY)
        require_aware(now)
        records = session.scalars(
            select(DestroyRequestRecord).order_by(DestroyRequestRecord.requested_at)
        ).all()
        requests = [DestroyRequest.from_record(r, now=now) for r in records]
        return [r for r in requests if status is None or r.status == status]

    # -- destruction (two-person rule) ---------------------------------------------------

    def request_destroy(
        self,
        session: Session,
        key_id: str,
        *,
        version: int | None = None,
        by: KeyActor,
        now: datetime,
        reason: str,
    ) -> DestroyRequest:
        """First half of the two-person rule: ask to destroy one version, or all (None).

        Destroying every version of an organisation's KEK (`kek_id(org)`) crypto-shreds
        all its data: the data keys below become unrecoverable.
        """
        by.require(KmsAction.REQUEST_DESTROY)
        require_aware(now)
        if not reason or len(reason) > 512:
            raise ValueError("reason must be 1 to 512 characters")
        targets = self._targets(session, key_id, version)
        pending = session.scalar(
            select(func.count())
            .select_from(DestroyRequestRecord)
            .where(
                DestroyRequestRecord.key_id == key_id,
                DestroyRequestRecord.status == _PENDING,
                DestroyRequestRecord.expires_at > now,
            )
        )
        if pending:
            raise DestroyRequestInvalid(
                "a destruction of this key is already pending", key_id=key_id
            )
        record = DestroyRequestRecord(
            id=str(uuid.uuid4()),
            key_id=key_id,
            version=version,
            reason=reason,
            status=_PENDING,
            requested_by=by.id,
            requested_at=now,
            expires_at=now + self._destroy_ttl,
            requested_by_person=by.person,
            requested_by_sponsor=by.sponsor,
        )
        session.add(record)
        session.flush()
        for row in targets:
            self._store._emit(
                session,
                event_for(
                    KeyOperation.REQUEST_DESTROY,
                    row,
                    f"request {record.id}: {reason}",
                    actor=by.id,
                ),
            )
        return DestroyRequest.from_record(record)

    def approve_destroy(
        self, session: Session, request_id: str, *, by: KeyActor, now: datetime
    ) -> DestroyRequest:
        """Second half: another key administrator approves, and the key is destroyed.

        `DualControlViolation` if `by` requested it. Each targeted version goes to
        destroyed (active and suspended ones through deactivated, as the transition
        table requires), its wrapped material is zeroised, and so is every data key
        wrapped under it.
        """
        by.require(KmsAction.APPROVE_DESTROY)
        require_aware(now)
        record = self._pending_request(session, request_id, now)
        if record.requested_by == by.id:
            raise DualControlViolation(
                "the requester cannot approve their own destruction request",
                request_id=request_id,
            )
        _check_distinct_people(record, by, request_id)
        targets = self._targets(session, record.key_id, record.version)
        approval = (
            f"request {record.id} by {_who(record.requested_by, record.requested_by_person)}, "
            f"approved by {_who(by.id, by.person)}"
        )
        for row in targets:
            if row.state in (KeyState.ACTIVE, KeyState.SUSPENDED):
                self._deactivate(session, row, now, f"deactivated for destruction ({approval})", by)
            shredded = 0
            if row.purpose == KeyPurpose.KEY_WRAPPING:
                result = session.execute(
                    update(DataKeyRecord)
                    .where(DataKeyRecord.kek_id == row.id, DataKeyRecord.kek_version == row.version)
                    .values(wrapped=b"")
                    .execution_options(synchronize_session="fetch")
                )
                shredded = int(getattr(result, "rowcount", 0) or 0)
            self._store._change_state(
                session,
                row,
                KeyState.DESTROYED,
                now,
                KeyOperation.DESTROY,
                f"destroyed ({approval}); {shredded} data keys under it shredded",
                by.id,
            )
        record.status = _EXECUTED
        record.decided_by = by.id
        record.decided_by_person = by.person
        record.decided_at = now
        session.flush()
        return DestroyRequest.from_record(record)

    def cancel_destroy(
        self, session: Session, request_id: str, *, by: KeyActor, now: datetime
    ) -> DestroyRequest:
        """Withdraw a pending destruction request (its requester or another administrator)."""
        by.require(KmsAction.CANCEL_DESTROY)
        require_aware(now)
        record = self._pending_request(session, request_id, now)
        record.status = _CANCELLED
        record.decided_by = by.id
        record.decided_at = now
        session.flush()
        for row in self._targets(session, record.key_id, record.version):
            self._store._emit(
                session,
                event_for(
                    KeyOperation.CANCEL_DESTROY, row, f"request {record.id} cancelled", actor=by.id
                ),
            )
        return DestroyRequest.from_record(record)

    # -- destruction internals -------------------------------------------------------------

    def _targets(self, session: Session, key_id: str, version: int | None) -> list[KeyRecord]:
        rows = (
            self._rows(session, key_id)
            if version is None
            else [self._row(session, key_id, version)]
        )
        live = [row for row in rows if row.state != KeyState.DESTROYED]
        if not live:
            raise KeyDestroyed("already destroyed", key_id=key_id)
        return live

    def _pending_request(
        self, session: Session, request_id: str, now: datetime
    ) -> DestroyRequestRecord:
        record = session.get(DestroyRequestRecord, request_id, with_for_update=True)
        if record is None:
            raise DestroyRequestInvalid("no such destruction request", request_id=request_id)
        if record.status != _PENDING:
            raise DestroyRequestInvalid(
                f"the destruction request is {record.status}", request_id=request_id
            )
        expires_at = aware(record.expires_at)
        if expires_at is not None and expires_at <= now:
            raise DestroyRequestInvalid(
                "the destruction request has expired", request_id=request_id
            )
        return record

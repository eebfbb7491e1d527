"""Key management: inventory, scheduled rotation with re-wrap, state changes, two-person destroy."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from crypto.errors import (
    DestroyRequestInvalid,
    DualControlViolation,
    KeyDestroyed,
    KeyNotActive,
    KeyNotFound,
    KeyPurposeMismatch,
    KeyStateTransitionInvalid,
)
from crypto.events import KeyOperation
from crypto.keymaterial import (
    ALGORITHM_AES_256_GCM,
    MANAGED_PURPOSES,
    PublicKey,
    algorithm_info,
    aware,
    check_processable,
    data_key_aad,
    event_for,
    in_validity,
    kek_algorithm,
    kek_unwrap,
    kek_wrap,
    key_id_for,
    require_aware,
    signing_algorithm,
)
from crypto.keystore import KeyStore
from crypto.lifecycle import (
    DEFAULT_ROTATION_POLICY,
    KeyPurpose,
    KeyState,
    RotationPolicy,
)
from crypto.models import DataKeyRecord, DestroyRequestRecord, KeyRecord
from crypto.roles import KeyActor, KmsAction
from crypto.suites.suite import suite as cipher_suite

DEFAULT_BATCH_SIZE = 500
DEFAULT_DESTROY_REQUEST_TTL = timedelta(days=3)

_PENDING, _EXECUTED, _CANCELLED, _EXPIRED = "pending", "executed", "cancelled", "expired"


@dataclass(frozen=True)
class KeyInfo:
    """One line of the key inventory (COMPLIANCE 4: type, length, owner, purpose, validity, state).

    `type` is "symmetric" or "asymmetric"; `length` in bits. `location` says where the
    secret lives: the root backend's kind for the root key, "database (wrapped)" for
    the rest. `data_keys` counts the live data keys wrapped under a KEK version.
    """

    key_id: str
    version: int
    type: str
    length: int
    owner_org: str | None
    purpose: str
    algorithm: str
    state: str
    not_before: datetime | None
    not_after: datetime | None
    created_at: datetime | None
    state_changed_at: datetime | None
    parent_id: str | None
    location: str
    data_keys: int | None = None

    def to_public(self) -> dict[str, Any]:
        """JSON-ready form for `GET /v1/kms/keys` (times as ISO 8601 UTC)."""
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True)
class RotationDue:
    """A key the rotation policy says needs attention, and why.

    `reason`: "max-age" (active longer than the policy allows), "expired" (past
    `not_after`), "rewrap-pending" (a rotation started but data keys or active older
    versions remain), "compromised" (a compromised version still wraps data keys).
    """

    key_id: str
    version: int
    purpose: str
    owner_org: str | None
    algorithm: str
    active_since: datetime | None
    due_at: datetime | None
    reason: str
    pending_data_keys: int = 0


@dataclass(frozen=True)
class RotationProgress:
    """Where a rotation stands: the active version, data keys moved and left."""

    key_id: str
    version: int
    rewrapped: int
    remaining: int

    @property
    def done(self) -> bool:
        return self.remaining == 0


@dataclass(frozen=True)
class DestroyRequest:
    """A key-destruction request of the two-person rule (`crypto_destroy_requests`)."""

    id: str
    key_id: str
    version: int | None
    reason: str
    status: str
    requested_by: str
    requested_at: datetime | None
    expires_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    requested_by_person: str | None = None
    requested_by_sponsor: str | None = None
    decided_by_person: str | None = None

    @classmethod
    def from_record(
        cls, record: DestroyRequestRecord, *, now: datetime | None = None
    ) -> DestroyRequest:
        status = record.status
        expires_at = aware(record.expires_at)
        if status == _PENDING and now is not None and expires_at is not None:
            status = _EXPIRED if expires_at <= now else status
        return cls(
            id=record.id,
            key_id=record.key_id,
            version=record.version,
            reason=record.reason,
            status=status,
            requested_by=record.requested_by,
            requested_at=aware(record.requested_at),
            expires_at=expires_at,
            decided_by=record.decided_by,
            decided_at=aware(record.decided_at),
            requested_by_person=record.requested_by_person,
            requested_by_sponsor=record.requested_by_sponsor,
            decided_by_person=record.decided_by_person,
        )


def _info(row: KeyRecord, data_keys: int | None) -> KeyInfo:
    algorithm = algorithm_info(row.algorithm)
    return KeyInfo(
        key_id=row.id,
        version=row.version,
        type=algorithm.kind,
        length=algorithm.bits,
        owner_org=row.owner_org,
        purpose=row.purpose,
        algorithm=row.algorithm,
        state=row.state,
        not_before=aware(row.not_before),
        not_after=aware(row.not_after),
        created_at=aware(row.created_at),
        state_changed_at=aware(row.state_changed_at),
        parent_id=row.parent_id,
        location="database (wrapped)",
        data_keys=data_keys,
    )


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


def _active_since(row: KeyRecord) -> datetime | None:
    return aware(row.state_changed_at) or aware(row.not_before) or aware(row.created_at)


class KeyManager:
    """The KMS administrative operations over a `KeyStore`, each checked with `KeyActor`.

    Every method calls `require_key_role` (through `by.require`) first, takes the
    caller's session, and — except `rotate` — only flushes. Every state change goes
    through `crypto.lifecycle.TRANSITIONS` and emits a `KeyEvent` through the
    keystore's sink.

    Destruction zeroises `wrapped_material` (and the wrapped data keys under a KEK)
    in the database row. What it cannot reach: old row versions PostgreSQL keeps until
    VACUUM, and database or key backups taken before. Shredding is complete once those
    age out; key backups (`crypto.backup`) should be destroyed on the same schedule.
    """

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

    @property
    def keystore(self) -> KeyStore:
        return self._store

    @property
    def policy(self) -> RotationPolicy:
        return self._policy

    @staticmethod
    def kek_id(owner_org: str) -> str:
        """The id of an organisation's KEK (every version shares it)."""
        return key_id_for(KeyPurpose.KEY_WRAPPING, owner_org)

    @staticmethod
    def platform_key_id(purpose: str) -> str:
        """The id of the platform-wide key of a signing purpose (e.g. "ledger-signing")."""
        return key_id_for(purpose, None)

    # -- reading -------------------------------------------------------------------------

    def inventory(self, session: Session, *, by: KeyActor) -> list[KeyInfo]:
        """Every key: the root key first, then each stored version (GB/T 39786 key inventory)."""
        by.require(KmsAction.INVENTORY)
        root = self._store.root
        entries = [
            KeyInfo(
                key_id=root.key_id,
                version=1,
                type="symmetric",
                length=256,
                owner_org=None,
                purpose=KeyPurpose.KEY_WRAPPING.value,
                algorithm=ALGORITHM_AES_256_GCM,
                state=KeyState.ACTIVE.value,
                not_before=None,
                not_after=None,
                created_at=None,
                state_changed_at=None,
                parent_id=None,
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

    # -- generation, state changes -------------------------------------------------------

    def generate_key(
        self,
        session: Session,
        *,
        purpose: str,
        owner_org: str | None = None,
        by: KeyActor,
        now: datetime,
        suite: str | None = None,
        algorithm: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> KeyInfo:
        """Generate a key ahead of first use: an organisation's KEK under a chosen suite, say.

        KEKs need `owner_org`; signing keys are platform-wide (`owner_org` None). The
        version starts pre-active if `not_before` is in the future (`activate` it
        later), active otherwise. Refused while the key has a version that is not
        destroyed: `rotate` it instead. After a shredding this re-provisions the
        organisation with a new KEK version.
        """
        by.require(KmsAction.GENERATE)
        require_aware(now)
        chosen = KeyPurpose(purpose)
        if chosen not in MANAGED_PURPOSES:
            raise KeyPurposeMismatch("data keys are made per object, not here", purpose=purpose)
        if (chosen is KeyPurpose.KEY_WRAPPING) != (owner_org is not None):
            raise ValueError("KEKs have an owner organisation; signing keys have none")
        key_id = key_id_for(chosen, owner_org)
        live = [r for r in self._versions(session, key_id) if r.state != KeyState.DESTROYED]
        if live:
            raise KeyStateTransitionInvalid(
                "the key already exists: rotate it instead", key_id=key_id
            )
        picked = cipher_suite(suite) if suite is not None else self._store.suite
        if algorithm is None:
            algorithm = (
                kek_algorithm(picked)
                if chosen is KeyPurpose.KEY_WRAPPING
                else signing_algorithm(picked, chosen)
            )
        state = KeyState.PRE_ACTIVE if not_before and not_before > now else KeyState.ACTIVE
        row = self._store._create_key(
            session,
            key_id,
            chosen,
            owner_org,
            now,
            algorithm=algorithm,
            state=state,
            not_before=not_before,
            not_after=not_after,
            actor=by.id,
            detail=f"generated by {by.id}",
        )
        return _info(row, 0 if chosen is KeyPurpose.KEY_WRAPPING else None)

    def activate(
        self, session: Session, key_id: str, version: int, *, by: KeyActor, now: datetime
    ) -> KeyInfo:
        """pre-active → active."""
        return self._set_state(
            session,
            key_id,
            version,
            by,
            now,
            KmsAction.ACTIVATE,
            KeyOperation.ACTIVATE,
            KeyState.ACTIVE,
            f"by {by.id}",
            only_from=(KeyState.PRE_ACTIVE, "activated"),
        )

    def suspend(
        self,
        session: Session,
        key_id: str,
        version: int,
        *,
        by: KeyActor,
        now: datetime,
        reason: str,
    ) -> KeyInfo:
        """Active → suspended: no protecting or processing until `resume`."""
        return self._set_state(
            session,
            key_id,
            version,
            by,
            now,
            KmsAction.SUSPEND,
            KeyOperation.SUSPEND,
            KeyState.SUSPENDED,
            reason,
        )

    def resume(
        self, session: Session, key_id: str, version: int, *, by: KeyActor, now: datetime
    ) -> KeyInfo:
        """Suspended → active."""
        return self._set_state(
            session,
            key_id,
            version,
            by,
            now,
            KmsAction.RESUME,
            KeyOperation.RESUME,
            KeyState.ACTIVE,
            f"by {by.id}",
            only_from=(KeyState.SUSPENDED, "resumed"),
        )

    def archive(
        self, session: Session, key_id: str, version: int, *, by: KeyActor, now: datetime
    ) -> KeyInfo:
        """→ deactivated: the version only processes (unwraps, verifies) from now on."""
        return self._set_state(
            session,
            key_id,
            version,
            by,
            now,
            KmsAction.ARCHIVE,
            KeyOperation.ARCHIVE,
            KeyState.DEACTIVATED,
            f"by {by.id}",
        )

    def revoke(
        self,
        session: Session,
        key_id: str,
        version: int,
        *,
        by: KeyActor,
        now: datetime,
        reason: str,
        compromised: bool = True,
    ) -> KeyInfo:
        """Revoke a version: → compromised (default) or → deactivated.

        A compromised KEK version still unwraps, so that `rotate` can move its data keys
        to a fresh version (it appears in `due_for_rotation` until it does); a
        compromised signing key is no longer published.
        """
        target = KeyState.COMPROMISED if compromised else KeyState.DEACTIVATED
        return self._set_state(
            session,
            key_id,
            version,
            by,
            now,
            KmsAction.REVOKE,
            KeyOperation.REVOKE,
            target,
            reason,
        )

    def _set_state(
        self,
        session: Session,
        key_id: str,
        version: int,
        by: KeyActor,
        now: datetime,
        action: KmsAction,
        operation: KeyOperation,
        target: KeyState,
        detail: str,
        *,
        only_from: tuple[KeyState, str] | None = None,
    ) -> KeyInfo:
        """The shared body of the state changes: role check, transition, event."""
        by.require(action)
        row = self._row(session, key_id, version)
        if only_from is not None and row.state != only_from[0]:
            raise KeyStateTransitionInvalid(f"a {row.state} key cannot be {only_from[1]}")
        self._store._change_state(session, row, target, now, operation, detail, by.id)
        return _info(row, None)

    def distribute(
        self,
        session: Session,
        key_id: str,
        version: int | None = None,
        *,
        recipient: str,
        by: KeyActor,
        now: datetime,
    ) -> PublicKey:
        """Hand the public half of a signing key to `recipient` (a relying party, witness).

        Secret keys (KEKs, data keys) are never distributed: they leave the module only
        wrapped, in backups.
        """
        by.require(KmsAction.DISTRIBUTE)
        require_aware(now)
        rows = self._rows(session, key_id)
        row = rows[0] if version is None else self._row(session, key_id, version)
        if row.purpose == KeyPurpose.KEY_WRAPPING:
            raise KeyPurposeMismatch("secret keys are never distributed", key_id=key_id)
        published = self._store.public_keys(session, purpose=row.purpose)
        public = next(
            (k for k in published if (k.key_id, k.version) == (row.id, row.version)), None
        )
        if public is None:
            raise KeyNotActive(f"a {row.state} key is not published", key_id=key_id)
        self._store._emit(
            session,
            event_for(KeyOperation.DISTRIBUTE, row, f"public key to {recipient}", actor=by.id),
        )
        return public

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
        keep unwrapping — until `rewrap_batch` has moved every data key off them.
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

    def rewrap_batch(
        self,
        session: Session,
        key_id: str,
        *,
        by: KeyActor,
        now: datetime,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> RotationProgress:
        """Re-wrap up to `batch_size` data keys onto the KEK's active version. Only flushes.

        Only the wrapped data keys change (unwrap under the old KEK version, wrap under
        the new one); the data they encrypt is untouched. When none is left, the older
        active versions are archived (→ deactivated) and the rotation is finished.
        Rows are taken with FOR UPDATE SKIP LOCKED on PostgreSQL, so concurrent
        rotations or deletions neither block each other nor re-wrap a row twice.
        """
        by.require(KmsAction.ROTATE)
        require_aware(now)
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
                progress = self.rewrap_batch(session, key_id, by=by, now=now, batch_size=batch_size)
                session.commit()
                rewrapped += progress.rewrapped
                if progress.done or progress.rewrapped == 0:
                    return RotationProgress(key_id, progress.version, rewrapped, progress.remaining)
        except BaseException:
            session.rollback()
            raise

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
                self._store._change_state(
                    session,
                    row,
                    KeyState.DEACTIVATED,
                    now,
                    KeyOperation.ARCHIVE,
                    f"deactivated for destruction ({approval})",
                    by.id,
                )
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

    # -- internals -------------------------------------------------------------------------

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

    def _usable(self, rows: Iterable[KeyRecord], now: datetime) -> KeyRecord:
        for row in rows:
            if row.state == KeyState.ACTIVE and in_validity(row, now):
                return row
        raise KeyNotActive("the key has no active version to rotate onto")

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
                self._store._change_state(
                    session,
                    row,
                    KeyState.DEACTIVATED,
                    now,
                    KeyOperation.ARCHIVE,
                    f"superseded by version {target.version}",
                    by.id,
                )

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
                    key_id=row.id,
                    version=row.version,
                    purpose=row.purpose,
                    owner_org=row.owner_org,
                    algorithm=row.algorithm,
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

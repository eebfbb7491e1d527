"""Key lifecycle events (GB/T 39786-2021 Annex B) and the sink that audits them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sqlalchemy.orm import Session


class KeyOperation(StrEnum):
    """The lifecycle operations of GB/T 39786-2021 Annex B, plus the state changes between.

    `use` is opt-in (`KeyStore(record_use=True)`): data keys are unwrapped on every
    download and signing keys on every token, so recording each use would put an audit
    write on every read path. The platform's own audit records of those actions
    (`dataset.downloaded`, token issuance) already name the object; `use` events are
    for deployments that must count key uses as well.
    """

    GENERATE = "generate"
    DISTRIBUTE = "distribute"
    STORE = "store"
    USE = "use"
    ROTATE = "rotate"
    ARCHIVE = "archive"
    REVOKE = "revoke"
    BACKUP = "backup"
    RESTORE = "restore"
    DESTROY = "destroy"
    ACTIVATE = "activate"
    SUSPEND = "suspend"
    RESUME = "resume"
    REQUEST_DESTROY = "request-destroy"
    CANCEL_DESTROY = "cancel-destroy"

    @property
    def event_type(self) -> str:
        """The stable dotted audit event type (STYLE habit 10), e.g. `key.rotated`."""
        return _EVENT_TYPES[self]


_EVENT_TYPES: dict[KeyOperation, str] = {
    KeyOperation.GENERATE: "key.generated",
    KeyOperation.DISTRIBUTE: "key.distributed",
    KeyOperation.STORE: "key.stored",
    KeyOperation.USE: "key.used",
    KeyOperation.ROTATE: "key.rotated",
    KeyOperation.ARCHIVE: "key.archived",
    KeyOperation.REVOKE: "key.revoked",
    KeyOperation.BACKUP: "key.backed_up",
    KeyOperation.RESTORE: "key.restored",
    KeyOperation.DESTROY: "key.destroyed",
    KeyOperation.ACTIVATE: "key.activated",
    KeyOperation.SUSPEND: "key.suspended",
    KeyOperation.RESUME: "key.resumed",
    KeyOperation.REQUEST_DESTROY: "key.destroy_requested",
    KeyOperation.CANCEL_DESTROY: "key.destroy_cancelled",
}


@dataclass(frozen=True)
class KeyEvent:
    """One lifecycle operation on one key version; never carries key material.

    `key_id` is a managed key's id, or a data key's id for data-key events (whose
    `version` is then 1 and `owner_org` the owner of the KEK that wraps it). `actor`
    is the `KeyActor.id` of an administrative operation, None for the platform's own
    operations (first-use generation, storing a data key). `state` is the key's state
    after the operation.
    """

    operation: KeyOperation
    key_id: str
    version: int
    purpose: str
    algorithm: str
    owner_org: str | None
    detail: str
    actor: str | None = None
    state: str | None = None

    @property
    def event_type(self) -> str:
        return self.operation.event_type


class KeyEventSink(Protocol):
    """Receives every `KeyEvent`, inside the caller's session and transaction.

    The integrator writes the audit record and ledger entry here, so that they commit
    or roll back with the key change itself. An exception from the sink aborts the
    operation (docs/compliance.md AUD-05: an interrupted audit pipeline blocks the audited action).
    """

    def __call__(self, session: Session, event: KeyEvent) -> None: ...

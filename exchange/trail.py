"""The trail: one call records an authorised operation on the audit log and the ledger.

Both writes join the caller's transaction, so the operation, its audit record and
its ledger entry commit together or not at all. Failures and denials are audited
only: the ledger holds what was authorised and done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

import audit
from crypto.events import KeyEvent
from exchange.party_trail import index_parties
from ledger import Ledger, LedgerRecord, decode_leaf


@dataclass(frozen=True)
class Receipt:
    """Where an operation was recorded: its audit record and (if done) its ledger index."""

    audit_id: str
    ledger_index: int | None


class Trail:
    """Audit + ledger writer shared by every state-changing operation."""

    def __init__(self, ledger: Ledger, clock: Callable[[], datetime] | None = None) -> None:
        self.ledger = ledger
        self._clock = clock or (lambda: datetime.now(UTC))

    def record(
        self,
        session: Session,
        subject: audit.Subject,
        event: audit.AuditEvent,
        *,
        object_type: str,
        now: datetime,
        payload_digest: str | None = None,
        parties: Iterable[str] = (),
    ) -> Receipt:
        """Write the audit record and, for a success, the ledger entry; returns both ids.

        The entry is indexed under the acting organisation and each of `parties` (the
        other organisations it concerns), so each reads it in its own trail.

        Call it last in the transaction: the ledger's sequence row stays locked from
        here until commit, which is what keeps indexes dense and in commit order.
        """
        row = audit.record(session, subject, event, now=now)
        if event.result is not audit.Result.SUCCESS:
            return Receipt(row.id, None)
        index = self.ledger.append(
            session,
            LedgerRecord(
                type=event.event_type,
                action=event.action,
                object_type=object_type,
                object_id=event.object_id,
                actor=subject.subject_id,
                subject_org=subject.subject_org,
                decision_id=subject.decision_id,
                purpose=event.purpose,
                request_id=subject.request_id,
                payload_digest=payload_digest,
                ts=now,
            ),
        )
        row.ledger_index = index
        orgs = {org for org in (subject.subject_org, *parties) if org}
        if orgs:
            index_parties(session, index, orgs)
        return Receipt(row.id, index)

    def key_event(self, session: Session, event: KeyEvent) -> None:
        """`crypto.KeyEventSink`: every key lifecycle operation, audited and on the ledger."""
        self.record(
            session,
            audit.Subject(event.actor or "platform", event.owner_org, None, None, None),
            audit.AuditEvent(
                event.operation.event_type,
                event.operation.value,
                audit.Result.SUCCESS,
                object_id=f"{event.key_id}#v{event.version}",
                detail=f"{event.purpose} {event.algorithm} -> {event.state}: {event.detail}"[:512],
            ),
            object_type="key",
            now=self._clock(),
        )


def decode_type(leaf: bytes) -> str:
    """The `type` of a ledger leaf (for listings; verification decodes fully)."""
    value = decode_leaf(leaf)["type"]
    assert isinstance(value, str)
    return value

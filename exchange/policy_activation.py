"""Activating a policy revision: one use case for the first start and for the policy API.

Validate and record the revision, put `policy.activated` on the ledger (with the bundle's
SHA-256) and load it into the decision point, all in one transaction: when loading
fails the revision rolls back, and when the commit fails after loading the decision
point goes back to what is stored, so the policy in force is always the stored one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

import audit
import policies
from audit.catalogue import Event
from exchange.trail import Trail

__all__ = ["Activate", "PolicyActivated", "activate_policy"]

Activate = Callable[[Session, policies.ActivePolicy], policies.Activation | None]
"""Record a revision given the one in force (`policies.activate`, `policies.install_default`);
None when there is nothing to record."""


@dataclass(frozen=True)
class PolicyActivated:
    """What an activation did: the revision recorded (if any), the policy now in force."""

    activation: policies.Activation | None
    policy: policies.ActivePolicy
    ledger_index: int | None

    @property
    def changed(self) -> bool:
        return self.activation is not None and self.activation.changed


def activate_policy(
    sessions: Callable[[], Session],
    trail: Trail,
    subject: audit.Subject,
    activate: Activate,
    *,
    load: Callable[[policies.ActivePolicy], None],
    now: datetime,
    detail: str | None = None,
) -> PolicyActivated:
    """Record, ledger and load a revision; on any failure the previous policy stays in force.

    `load` puts a policy into the decision point (compiling it first; raising rolls the
    revision back). It is called with the new revision, or with the stored one when
    `activate` records nothing (the first start of a platform that has a policy), and
    not at all when the bundle was already active. `detail` (else the list of changes)
    goes into the audit record.
    """
    previous: policies.ActivePolicy | None = None
    loaded = False
    try:
        with sessions() as session, session.begin():
            previous = policies.active(session)
            activation = activate(session, previous)
            if activation is None:
                load(previous)
                return PolicyActivated(None, previous, None)
            if not activation.changed:
                return PolicyActivated(activation, activation.policy, None)
            receipt = trail.record(
                session,
                subject,
                audit.AuditEvent(
                    Event.POLICY_ACTIVATED,
                    "activate",
                    audit.Result.SUCCESS,
                    object_id=f"policy-revision-{activation.policy.revision}",
                    detail=detail or "; ".join(activation.changes)[:512] or None,
                ),
                object_type="policy",
                payload_digest=f"sha256:{activation.policy.digest}",
                now=now,
            )
            load(activation.policy)
            loaded = True
    except BaseException:
        if loaded and previous is not None:
            load(previous)  # the commit failed after loading: back to what is stored
        raise
    return PolicyActivated(activation, activation.policy, receipt.ledger_index)

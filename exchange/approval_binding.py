"""Approvals bound to the query: a provider approves one operator, parameters, inputs and ε.

docs/privacy.md §7. What a provider approves is a `QueryBinding`: every field that
decides what runs and what it may reveal, in one structure, so a field is added in one
place (the requester's job key fingerprint joins it with party-held keys). The binding's
digest is shown to the parties (`GET /v1/computations/{id}/query`); a provider may name it
when it approves (`query_digest`) and an approval naming another query is refused
(`ApprovalMismatch`, 409). The binding a provider approved is recorded with its approval
(on the provider's authenticated request, and, when it signs the decision, with its own
key's signature over the digest: `exchange.computations.signed_approvals`), and before
an approved computation runs each recorded binding is compared with the computation as
it stands: a run whose query differs from the approved one is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.commitments import canonical
from exchange.errors import ApprovalMismatch
from exchange.models import Computation, Dataset
from exchange.privacy_tables import ApprovalBindingRecord

__all__ = [
    "ApprovalMismatch",
    "QueryBinding",
    "binding_for",
    "check_bindings",
    "record_approval",
]


@dataclass(frozen=True)
class QueryBinding:
    """Everything an approval covers. Add a field here and every check covers it."""

    computation_id: str
    operator: str
    params: dict[str, Any]
    inputs: tuple[tuple[str, str], ...]
    """(dataset id, `sha256:<hex>` content digest) per input, in the request's order."""
    epsilon: float | None
    """The ε charged per input lineage (None: no DP, `open` data)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further bound fields (e.g. the requester's job key fingerprint)."""

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["inputs"] = [{"dataset_id": d, "digest": h} for d, h in self.inputs]
        return doc

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(canonical(self.as_dict())).hexdigest()


def binding_for(session: Session, comp: Computation, **extra: Any) -> QueryBinding:
    """The binding of a computation as it is stored now."""
    inputs = []
    for inp in sorted(comp.inputs, key=lambda i: i.position):
        ds = session.get(Dataset, inp.dataset_id)
        inputs.append((inp.dataset_id, f"sha256:{ds.sha256}" if ds is not None else "missing"))
    eps = comp.obligations.get("dp_epsilon")
    return QueryBinding(
        computation_id=comp.id,
        operator=comp.operator,
        params=dict(comp.params),
        inputs=tuple(inputs),
        epsilon=float(eps) if eps is not None else None,
        extra=dict(extra),
    )


def record_approval(
    session: Session,
    comp: Computation,
    *,
    provider_org: str,
    approved_by: str,
    presented: str | None,
    now: datetime,
) -> QueryBinding:
    """Record the query this provider approves; refuse an approval naming another query."""
    binding = binding_for(session, comp)
    digest = binding.digest()
    if presented is not None and presented != digest:
        raise ApprovalMismatch(
            "the approval names another query than this computation's; read "
            f"GET /v1/computations/{comp.id}/query and approve what it shows",
            computation_id=comp.id,
        )
    session.merge(
        ApprovalBindingRecord(
            computation_id=comp.id,
            provider_org=provider_org,
            binding=binding.as_dict(),
            digest=digest,
            approved_by=approved_by,
            approved_at=now,
        )
    )
    return binding


def check_bindings(session: Session, comp: Computation) -> None:
    """Every provider whose approval the run needs approved exactly this query."""
    needed = {i.provider_org for i in comp.inputs if i.approval == "approved"}
    if not needed:
        return
    rows = {
        r.provider_org: r
        for r in session.scalars(
            select(ApprovalBindingRecord).where(ApprovalBindingRecord.computation_id == comp.id)
        )
    }
    digest = binding_for(session, comp).digest()
    for org in sorted(needed):
        row = rows.get(org)
        if row is None or row.digest != digest:
            raise ApprovalMismatch(
                f"provider {org} approved another query than the one to run",
                computation_id=comp.id,
                provider_org=org,
            )

"""Data-security risk assessment of important data (DSL art. 30; docs/compliance.md DSL-05)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.compliance.base import (
    RISK_REPORT,
    DeploymentFacts,
)
from audit.compliance.models import ComplianceRun, RiskReport
from audit.compliance.runner import Signing, canonical, sign_and_record
from audit.events import AuditEvent, Result
from ledger.models import LedgerEntry

IMPORTANT = ("important", "core")


def build(
    session: Session, facts: DeploymentFacts, matrix: Mapping[str, Any], *, now: datetime
) -> dict[str, Any]:
    """Types, volumes, processing activities (ledger), risks (checks), countermeasures."""
    datasets = [d for d in facts.datasets(session) if d.level in IMPORTANT]
    ids = [d.id for d in datasets]
    types = Counter(" / ".join(d.classification_path[:2]) or "unclassified" for d in datasets)
    activities: Counter[str] = Counter()
    if ids:
        for kind, n in session.execute(
            select(LedgerEntry.type, func.count())
            .where(LedgerEntry.object_id.in_(ids))
            .group_by(LedgerEntry.type)
        ).tuples():
            activities[kind] += n
    computations = [c for c in facts.computations(session) if set(c.input_ids) & set(ids)]
    for c in computations:
        activities[f"computation ({c.state})"] += 1
    latest = session.scalars(
        select(ComplianceRun).order_by(ComplianceRun.started_at.desc()).limit(1)
    ).first()
    risks = []
    if latest is not None:
        findings = json.loads(latest.report)["findings"]
        risks = [
            {"id": f["id"], "summary": f["summary"], "evidence": f["evidence"]}
            for f in findings
            if f["status"] == "fail"
        ]
    cells = matrix.get("cells", {})
    countermeasures = {
        name: cells[name]["actions"].get("computation.request")
        for name in ("important/open", "important/conditional", "core/open", "core/conditional")
        if name in cells
    }
    return {
        "schema": "pdx.risk-report/1",
        "generated_at": now.astimezone(UTC).isoformat(),
        "scope": "important and core data (DSL art. 30)",
        "datasets": [
            {
                "id": d.id,
                "name": d.name,
                "level": d.level,
                "rows": d.rows,
                "size_bytes": d.size_bytes,
                "custody": d.custody,
            }
            for d in datasets
        ],  # fmt: skip
        "types": dict(types),
        "volumes": {
            "datasets": len(datasets),
            "rows": sum(d.rows for d in datasets),
            "bytes": sum(d.size_bytes for d in datasets),
        },
        "processing_activities": dict(activities),
        "risks": risks,
        "risks_from_run": latest.id if latest is not None else None,
        "countermeasures": {
            "grading_cells": countermeasures,
            "enabled_computations": len(matrix.get("enabled_computations", {})),
            "rows_never_leave": "GRD-08 (Rego invariant)",
        },
    }


def _report_event(body: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        RISK_REPORT,
        "assess",
        Result.SUCCESS,
        object_id=f"risk-report-{body['id']}",
        detail=f"{body['volumes']['datasets']} important datasets, {len(body['risks'])} risks",
    )


def record(session: Session, body: dict[str, Any], signing: Signing) -> dict[str, Any]:
    """Sign the report and put its digest on the ledger, in `session`'s transaction."""
    signed = sign_and_record(session, body, signing, _report_event)
    session.add(
        RiskReport(
            id=signed.body["id"],
            generated_at=signing.now,
            by=signing.by[:128],
            report=canonical(signed.body).decode(),
            digest=signed.digest,
            signature=signed.signature,
            ledger_index=signed.ledger_index,
        )
    )
    return {
        **signed.body,
        "digest": signed.digest,
        "signature": signed.signature,
        "ledger_index": signed.ledger_index,
    }


def newest(session: Session) -> RiskReport | None:
    return session.scalars(
        select(RiskReport).order_by(RiskReport.generated_at.desc()).limit(1)
    ).first()

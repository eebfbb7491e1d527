"""A compliance run: every requirement id evaluated, signed, stored and put on the ledger."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.compliance import config, db, ledger, market, policy, retention, safeguards
from audit.compliance.base import (
    COMPLIANCE_RUN,
    Check,
    CheckContext,
    ConfigFacts,
    DeploymentFacts,
    Finding,
    PolicyFacts,
    RunRecorder,
    RunSigner,
    Status,
    load_requirements,
)
from audit.compliance.models import ComplianceRun
from audit.events import AuditEvent, Result

CHECKS: dict[str, Check] = {
    **config.CHECKS,
    **db.CHECKS,
    **ledger.CHECKS,
    **policy.CHECKS,
    **retention.CHECKS,
    **safeguards.CHECKS,
    **market.CHECKS,
}
SCHEMA = "pdx.compliance-report/1"


def canonical(value: Any) -> bytes:
    """Sorted-key compact JSON: the bytes a run's digest and signature cover."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _previous(session: Session) -> dict[str, Any] | None:
    row = session.scalars(
        select(ComplianceRun).order_by(ComplianceRun.started_at.desc()).limit(1)
    ).first()
    if row is None:
        return None
    out: dict[str, Any] = json.loads(row.report)
    out["digest"] = row.digest
    return out


def evaluate(
    session: Session,
    *,
    now: datetime,
    config_facts: ConfigFacts,
    facts: DeploymentFacts,
    policy_facts: PolicyFacts,
    ledger_: Any,
    doc: Path | None = None,
    sample: int = 16,
) -> dict[str, Any]:
    """Evaluate every requirement of the document; ids without a check are `not-automated`."""
    requirements = load_requirements(doc)
    ctx = CheckContext(
        session, now, config_facts, facts, policy_facts, ledger_, _previous(session), sample
    )
    findings: list[dict[str, Any]] = []
    for req in requirements:
        check = CHECKS.get(req.id)
        if check is None:
            finding = Finding(req.id, Status.NOT_AUTOMATED, "no automated check yet")
        else:
            try:
                finding = check(ctx)
            except Exception as exc:  # a broken check is a failure, never a silent pass
                finding = Finding(
                    req.id,
                    Status.FAIL,
                    f"the check raised {type(exc).__name__}",
                    {"error": str(exc)[:500]},
                )
        out = finding.to_json()
        out["evidence"] = {k: v for k, v in out["evidence"].items() if v is not None}
        out.update(requirement=req.text[:400], source=req.source, kind=req.check)
        findings.append(out)
    latest = ledger_.latest(session)
    counts = Counter(f["status"] for f in findings)
    prev = ctx.previous
    return {
        "schema": SCHEMA,
        "started_at": now.astimezone(UTC).isoformat(),
        "environment": config_facts.environment,
        "ledger": {
            "tree_size": latest.block.tree_size if latest else 0,
            "root": base64.b64encode(latest.block.root).decode() if latest else "",
        },
        "previous_run": (
            {"id": prev["id"], "digest": prev["digest"], "tree_size": prev["ledger"]["tree_size"]}
            if prev and "id" in prev
            else None
        ),
        "summary": {s.value: counts.get(s.value, 0) for s in Status},
        "requirements": len(findings),
        "automated_ratio": round(
            sum(1 for r in requirements if r.id in CHECKS) / max(1, len(requirements)), 4
        ),
        "findings": findings,
    }


@dataclass(frozen=True)
class Signing:
    """Who a report is by and when, the key that signs it, the recorder of its ledger entry."""

    by: str
    now: datetime
    signer: RunSigner
    recorder: RunRecorder


@dataclass(frozen=True)
class SignedReport:
    """A report with its id and author, its `sha256:` digest, the signature, its entry."""

    body: dict[str, Any]
    digest: str
    signature: str
    ledger_index: int | None


def sign_and_record(
    session: Session,
    report: Mapping[str, Any],
    signing: Signing,
    event: Callable[[dict[str, Any]], AuditEvent],
) -> SignedReport:
    """`report` with a fresh id and author, signed; `event(body)` recorded with its digest.

    The record and its ledger entry are written in `session`'s transaction.
    """
    body = {**report, "id": str(uuid.uuid4()), "by": signing.by}
    digest = "sha256:" + hashlib.sha256(canonical(body)).hexdigest()
    signature = base64.b64encode(signing.signer.sign(digest.encode())).decode()
    index = signing.recorder(session, event(body), payload_digest=digest, now=signing.now)
    return SignedReport(body, digest, signature, index)


def _run_event(body: dict[str, Any]) -> AuditEvent:
    summary = body["summary"]
    return AuditEvent(
        COMPLIANCE_RUN,
        "check",
        Result.SUCCESS,
        object_id=f"compliance-run-{body['id']}",
        detail=f"pass {summary['pass']} fail {summary['fail']} "
        f"n/a {summary['not-applicable']} not-automated {summary['not-automated']}",
    )


def record_run(session: Session, report: dict[str, Any], signing: Signing) -> dict[str, Any]:
    """Sign the report, store it and put its digest on the ledger, in `session`'s transaction."""
    signed = sign_and_record(session, report, signing, _run_event)
    body, summary, key_id = signed.body, signed.body["summary"], signing.signer.key_id
    session.add(
        ComplianceRun(
            id=body["id"],
            started_at=signing.now,
            by=signing.by[:128],
            passed=summary["pass"],
            failed=summary["fail"],
            not_applicable=summary["not-applicable"],
            not_automated=summary["not-automated"],
            tree_size=body["ledger"]["tree_size"],
            root=body["ledger"]["root"],
            report=canonical(body).decode(),
            digest=signed.digest,
            signature=signed.signature,
            signer_key_id=key_id[:128],
            ledger_index=signed.ledger_index,
        )
    )
    return {
        **body,
        "digest": signed.digest,
        "signature": signed.signature,
        "signer_key_id": key_id,
        "ledger_index": signed.ledger_index,
    }


def verify_run(row: ComplianceRun) -> bool:
    """The stored report still hashes to its digest (the signature is checked by key)."""
    return "sha256:" + hashlib.sha256(row.report.encode()).hexdigest() == row.digest


def get_run(session: Session, run_id: str) -> dict[str, Any] | None:
    row = session.get(ComplianceRun, run_id)
    if row is None:
        return None
    return _full(row)


def _full(row: ComplianceRun) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(row.report)
    out.update(
        digest=row.digest,
        signature=row.signature,
        signer_key_id=row.signer_key_id,
        ledger_index=row.ledger_index,
        intact=verify_run(row),
    )
    return out


def list_runs(session: Session, limit: int = 50) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(ComplianceRun).order_by(ComplianceRun.started_at.desc()).limit(limit)
    ).all()
    return [
        {
            "id": r.id,
            "started_at": r.started_at.isoformat(),
            "by": r.by,
            "pass": r.passed,
            "fail": r.failed,
            "not-applicable": r.not_applicable,
            "not-automated": r.not_automated,
            "digest": r.digest,
            "ledger_index": r.ledger_index,
            "tree_size": r.tree_size,
        }
        for r in rows
    ]


def trend(session: Session, limit: int = 30) -> list[dict[str, Any]]:
    """Oldest first: per run, the counts and the ids that changed status since the one before."""
    rows = list(
        reversed(
            session.scalars(
                select(ComplianceRun).order_by(ComplianceRun.started_at.desc()).limit(limit)
            ).all()
        )
    )
    out: list[dict[str, Any]] = []
    before: Mapping[str, str] = {}
    for r in rows:
        status = {f["id"]: f["status"] for f in json.loads(r.report)["findings"]}
        changed: Sequence[str] = sorted(k for k, v in status.items() if before.get(k, v) != v)
        out.append(
            {
                "id": r.id,
                "started_at": r.started_at.isoformat(),
                "pass": r.passed,
                "fail": r.failed,
                "changed": list(changed),
            }
        )
        before = status
    return out

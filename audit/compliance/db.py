"""Database checks: catalogue, grades, PI flags, reviews, keys, roles, audit records."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, inspect, or_, select

from audit.catalogue import Event
from audit.compliance.base import (
    LEVELS,
    Check,
    CheckContext,
    ComputationFact,
    DatasetFact,
    Finding,
    KeyFacts,
    fail,
    na,
    ok,
    rank,
    verdict,
)
from audit.compliance.models import RiskReport
from audit.decisions import DecisionLog
from audit.models import AuditRecord

ADMIN_ROLES = ("system-admin", "security-admin", "auditor")
# gateway/routers/kms.py KEY_ROLES: platform role -> key role (GB/T 39786 8.6).
KEY_ROLE_OF = {
    "security-admin": "key-administrator",
    "system-admin": "crypto-operator",
    "auditor": "crypto-auditor",
}


def _dataset_check(
    rid: str,
    offenders: Callable[[Sequence[DatasetFact]], list[str]],
    *,
    counted: bool = True,
) -> Check:
    """A check over the catalogue: it passes when `offenders` names no dataset."""

    def check(c: CheckContext) -> Finding:
        datasets = c.datasets()
        evidence = {"datasets": len(datasets)} if counted else {}
        return verdict(rid, offenders(datasets), **evidence)

    return check


_grd01 = _dataset_check(
    "GRD-01",
    lambda ds: [
        d.id for d in ds if d.level not in LEVELS or any(f not in LEVELS for f in d.field_levels)
    ],
)
_grd02 = _dataset_check(
    "GRD-02", lambda ds: [f"{d.id}: {', '.join(d.missing)}" for d in ds if d.missing]
)


def _graded_below(datasets: Sequence[DatasetFact]) -> list[str]:
    bad = []
    for d in datasets:
        floor = max([rank(x) for x in d.field_levels] + [rank(d.scan_min_level)])
        if rank(d.level) < floor:
            bad.append(f"{d.id}: level {d.level} below {LEVELS[floor]} (scan/fields)")
    return bad


_grd03 = _dataset_check("GRD-03", _graded_below)
_grd04 = _dataset_check(
    "GRD-04",
    lambda ds: [
        d.id
        for d in ds
        if (d.field_pi and not d.pi)
        or (d.field_sensitive_pi and not d.sensitive_pi)
        or (d.sensitive_pi and not d.pi)
    ],
    counted=False,
)
_grd05 = _dataset_check(
    "GRD-05",
    lambda ds: [
        d.id
        for d in ds
        if (d.important_data_catalogue and d.level not in ("important", "core"))
        or (d.level in ("important", "core") and d.open_attribute == "open")
    ],
    counted=False,
)


def _computation_check(
    rid: str,
    offends: Callable[[ComputationFact], bool],
    *,
    counted: bool = True,
    needs_one: bool = False,
) -> Check:
    """A check over the computations: it passes when `offends` holds for none of them.

    With `needs_one` it is not applicable before the first computation.
    """

    def check(c: CheckContext) -> Finding:
        comps = c.computations()
        if needs_one and not comps:
            return na(rid, "no computations yet")
        evidence = {"computations": len(comps)} if counted else {}
        return verdict(rid, [x.id for x in comps if offends(x)], **evidence)

    return check


_grd06 = _computation_check(
    "GRD-06",
    lambda x: bool(x.input_levels) and rank(x.data_level) < max(rank(v) for v in x.input_levels),
    needs_one=True,
)


def _grd07(c: CheckContext) -> Finding:
    period = timedelta(days=c.config.review_period_days)
    bad = [
        f"{d.id}: review due {d.next_review_at.isoformat()}"
        for d in c.datasets()
        if d.next_review_at < c.now or d.next_review_at > d.graded_at + period
    ]
    return verdict("GRD-07", bad, review_period_days=c.config.review_period_days)


_pi01 = _computation_check(
    "PI-01",
    lambda x: not x.purpose or (x.contract_purpose is not None and x.contract_purpose != x.purpose),
)
_pi02 = _computation_check("PI-02", lambda x: x.pi_input and not x.legal_basis, counted=False)


def _pi03(c: CheckContext) -> Finding:
    cited = [x.id for x in c.computations() if (x.legal_basis or "").startswith("consent:")]
    if not cited:
        return na("PI-03", "no computation cites a consent")
    return fail(
        "PI-03", "consents are cited but pdx has no consent register", computations=cited[:20]
    )


def _pi08(c: CheckContext) -> Finding:
    tables = set(inspect(c.session.connection()).get_table_names())
    if not any("pseudonym" in t for t in tables):
        return na("PI-08", "no pseudonymisation is deployed (no pseudonym tables)")
    return fail("PI-08", "pseudonym tables exist but their separation is not checked yet")


def _cry04(c: CheckContext) -> Finding:
    bad = [d.id for d in c.datasets() if not d.data_key_live]
    platform = sum(1 for d in c.datasets() if d.custody == "platform")
    if bad:
        return fail("CRY-04", f"{len(bad)} datasets without a live data key", offenders=bad[:20])
    return ok(
        "CRY-04",
        "every stored dataset is encrypted under its own data key",
        trust="operator" if platform else None,
        platform_custody=platform,
        note="platform-custody data is only as safe as the operator's KMS" if platform else None,
    )


def _cry05(c: CheckContext) -> Finding:
    bad = [d.id for d in c.datasets() if not d.has_digests]
    revision, digest, _ = c.memo("policy", lambda: c.policy.active(c.session))
    last = c.session.scalars(
        select(AuditRecord.detail)
        .where(AuditRecord.event_type == Event.POLICY_ACTIVATED, AuditRecord.result == "success")
        .order_by(AuditRecord.ts.desc())
        .limit(1)
    ).first()
    entries = c.ledger.entries(c.session, type=Event.POLICY_ACTIVATED, limit=1_000)
    ledger_digest = None
    if entries:
        from ledger import decode_leaf

        ledger_digest = decode_leaf(entries[-1].leaf).get("payload_digest")
    ev: dict[str, Any] = {
        "policy_revision": revision,
        "policy_digest": f"sha256:{digest}",
        "ledger_digest": ledger_digest,
        "last_activation": last,
    }
    if ledger_digest != f"sha256:{digest}":
        return fail("CRY-05", "the active policy is not the last one activated on the ledger", **ev)
    if bad:
        return fail("CRY-05", f"{len(bad)} datasets without digests", offenders=bad[:20], **ev)
    return ok("CRY-05", "dataset digests present; policy digest matches the ledger", **ev)


def _key_check(rid: str, offenders: Callable[[KeyFacts], Iterable[str]]) -> Check:
    """A check over the key inventory: it passes when `offenders` names no key."""

    def check(c: CheckContext) -> Finding:
        k = c.keys()
        return verdict(rid, list(offenders(k)), keys=k.total)

    return check


_cry10 = _key_check("CRY-10", lambda k: k.bad_purpose)
_cry11 = _key_check(
    "CRY-11",
    lambda k: (
        f"{d['key_id']}#v{d['version']} ({d['purpose']}): {d['reason']}" for d in k.rotation_due
    ),
)
_cry14 = _key_check("CRY-14", lambda k: k.incomplete)


def _cry12(c: CheckContext) -> Finding:
    k = c.keys()
    if not k.destroyed_checked:
        return na("CRY-12", "no key has been destroyed")
    bad = [
        f"{d['key_id']}: {d['data_keys']} data keys still wrapped"
        for d in k.destroyed_with_data_keys
    ]
    return verdict("CRY-12", bad, destroyed=k.destroyed_checked)


def _accounts_two(c: CheckContext, of: dict[str, str]) -> list[str]:
    accounts = c.memo("accounts", lambda: c.facts.accounts(c.session))
    return [
        f"{a.kind} {a.id}: {', '.join(sorted(set(a.roles) & set(of)))}"
        for a in accounts
        if len({of[r] for r in a.roles if r in of}) > 1
    ]


def _cry13(c: CheckContext) -> Finding:
    bad = _accounts_two(c, KEY_ROLE_OF)
    return verdict("CRY-13", bad)


def _aud01(c: CheckContext) -> Finding:
    s = c.session
    null_core = s.scalar(
        select(func.count())
        .select_from(AuditRecord)
        .where(
            or_(
                AuditRecord.action.is_(None),
                AuditRecord.result.is_(None),
                AuditRecord.event_type.is_(None),
                AuditRecord.ts.is_(None),
            )
        )
    )
    no_ip = s.scalar(
        select(func.count())
        .select_from(AuditRecord)
        .where(AuditRecord.request_id.is_not(None), AuditRecord.subject_ip.is_(None))
    )
    total = s.scalar(select(func.count()).select_from(AuditRecord))
    ev: dict[str, Any] = {
        "records": total,
        "null_core_fields": null_core,
        "api_records_without_ip": no_ip,
    }
    if null_core or no_ip:
        return fail("AUD-01", "audit records with missing required fields", **ev)
    return ok("AUD-01", "every audit record has its required fields", **ev)


def _aud08(c: CheckContext) -> Finding:
    bad = _accounts_two(c, {r: r for r in ADMIN_ROLES})
    return verdict("AUD-08", bad)


def _aud09(c: CheckContext) -> Finding:
    allowed = c.session.scalars(
        select(DecisionLog.decision_id).where(
            DecisionLog.allow.is_(True), DecisionLog.input.like('%"action": "audit.read"%')
        )
    ).all()
    if not allowed:
        return na("AUD-09", "no auditor has read audit records yet")
    recorded = set(
        c.session.scalars(
            select(AuditRecord.decision_id).where(AuditRecord.decision_id.in_(allowed))
        ).all()
    )
    bad = [d for d in allowed if d not in recorded]
    return verdict("AUD-09", bad, reads=len(allowed))


# Decision logs are written in batches (gateway/decision_logs.py): a batch another
# thread is committing right now may trail its audit records by a moment. Records
# younger than this are left to the next run rather than reported as lost.
DECISION_LOG_GRACE = timedelta(seconds=5)


def _aud10(c: CheckContext) -> Finding:
    missing = c.session.scalars(
        select(AuditRecord.decision_id)
        .where(
            AuditRecord.decision_id.is_not(None),
            AuditRecord.ts < c.now - DECISION_LOG_GRACE,
            ~AuditRecord.decision_id.in_(select(DecisionLog.decision_id)),
        )
        .limit(50)
    ).all()
    return verdict("AUD-10", list(missing), grace_s=DECISION_LOG_GRACE.total_seconds())


def _zt05(c: CheckContext) -> Finding:
    rows = c.session.scalars(
        select(DecisionLog.input).order_by(DecisionLog.ts.desc()).limit(c.sample)
    ).all()
    if not rows:
        return na("ZT-05", "no decisions logged yet")
    need = ("subject.id", "subject.roles", "action", "resource", "context.time")
    bad = []
    for raw in rows:
        doc = json.loads(raw)
        for path in need:
            node = doc
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                bad.append(path)
    return verdict("ZT-05", sorted(set(bad)), sampled=len(rows))


def _job_record_incomplete(x: ComputationFact) -> bool:
    """PCE-01 and PCE-03 read one fact: each computation's job record is complete."""
    return not x.security_model_complete


_pce01 = _computation_check("PCE-01", _job_record_incomplete, needs_one=True)


def _dsl02(c: CheckContext) -> Finding:
    accounts = c.memo("accounts", lambda: c.facts.accounts(c.session))
    return ok(
        "DSL-02",
        "every party is an account the platform issued and authenticates",
        accounts=len(accounts),
    )


def _dsl05(c: CheckContext) -> Finding:
    important = [d.id for d in c.datasets() if d.level in ("important", "core")]
    if not important:
        return na("DSL-05", "no important or core data is registered")
    newest = c.session.scalar(select(func.max(RiskReport.generated_at)))
    period = timedelta(days=c.config.risk_report_period_days)
    ev: dict[str, Any] = {
        "important_datasets": len(important),
        "period_days": period.days,
        "newest_report": newest.isoformat() if newest else None,
    }
    if newest is None:
        return fail("DSL-05", "important data is registered but no risk report exists", **ev)
    if c.now - newest > period:
        return fail("DSL-05", "the newest risk report is older than its period", **ev)
    return ok("DSL-05", "a signed risk report of important data is within its period", **ev)


def _cry08(c: CheckContext) -> Finding:
    versions = list(c.keys().versions)
    seen = set(
        c.session.scalars(
            select(AuditRecord.object_id).where(
                AuditRecord.event_type.like("key.%"), AuditRecord.ledger_index.is_not(None)
            )
        ).all()
    )
    bad = [v for v in versions if v not in seen]
    return verdict("CRY-08", bad, versions=len(versions))


def _aud05(c: CheckContext) -> Finding:
    return ok(
        "AUD-05",
        "audit records and ledger entries commit with their change "
        "(exchange.Trail in one transaction); see AUD-03 for this period's comparison",
        audit_mode="synchronous, same transaction",
    )


_pce03 = _computation_check("PCE-03", _job_record_incomplete, needs_one=True)


def _pi04(c: CheckContext) -> Finding:
    delivered = c.session.scalar(
        select(func.count())
        .select_from(AuditRecord)
        .where(AuditRecord.event_type == Event.COMPUTATION_RESULT_DELIVERED)
    )
    if not delivered:
        return na("PI-04", "nothing has been delivered yet")
    return fail(
        "PI-04",
        "deliveries record recipient, purpose and method but not the PI categories",
        deliveries=delivered,
    )


CHECKS: dict[str, Check] = {
    "CRY-08": _cry08,
    "AUD-05": _aud05,
    "PCE-03": _pce03,
    "PI-04": _pi04,
    "GRD-01": _grd01,
    "GRD-02": _grd02,
    "GRD-03": _grd03,
    "GRD-04": _grd04,
    "GRD-05": _grd05,
    "GRD-06": _grd06,
    "GRD-07": _grd07,
    "PI-01": _pi01,
    "PI-02": _pi02,
    "PI-03": _pi03,
    "PI-08": _pi08,
    "DSL-02": _dsl02,
    "DSL-05": _dsl05,
    "CRY-04": _cry04,
    "CRY-05": _cry05,
    "CRY-10": _cry10,
    "CRY-11": _cry11,
    "CRY-12": _cry12,
    "CRY-13": _cry13,
    "CRY-14": _cry14,
    "AUD-01": _aud01,
    "AUD-08": _aud08,
    "AUD-09": _aud09,
    "AUD-10": _aud10,
    "ZT-05": _zt05,
    "PCE-01": _pce01,
}

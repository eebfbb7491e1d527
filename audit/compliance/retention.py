"""Retention checks: configured periods at or above their minimum, purges on schedule."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from audit.compliance.base import Check, CheckContext, Finding, fail, na, ok
from audit.compliance.models import RetentionRun
from audit.models import AuditRecord

AUDIT_MIN_DAYS = 180  # Cybersecurity Law art. 21(3)
PI_RECORD_MIN_DAYS = 1095  # PIPL art. 56


def _oldest(c: CheckContext) -> datetime | None:
    value: datetime | None = c.session.scalar(select(func.min(AuditRecord.ts)))
    return value


def _aud07(c: CheckContext) -> Finding:
    days = c.config.audit_retention_days
    ev: dict[str, Any] = {
        "configured_days": days,
        "minimum_days": AUDIT_MIN_DAYS,
        "oldest_record": (o.isoformat() if (o := _oldest(c)) else None),
    }
    if days < AUDIT_MIN_DAYS:
        return fail("AUD-07", "audit logs are configured to be kept less than 180 days", **ev)
    return ok(
        "AUD-07", "audit logs are kept at least their minimum; the platform deletes none", **ev
    )


def _dsl04(c: CheckContext) -> Finding:
    days = c.config.pi_record_retention_days
    ev: dict[str, Any] = {"configured_days": days, "minimum_days": PI_RECORD_MIN_DAYS}
    if days < PI_RECORD_MIN_DAYS:
        return fail("DSL-04", "provision-of-PI records are kept less than 3 years", **ev)
    return ok("DSL-04", "provision-of-PI records are kept at least 3 years", **ev)


def _pi11(c: CheckContext) -> Finding:
    stale = [x.id for x in c.computations() if x.released_readable_past_retention]
    last = c.session.scalar(select(func.max(RetentionRun.ran_at)))
    ev: dict[str, Any] = {
        "result_retention_days": c.config.result_retention_days,
        "last_purge": last.isoformat() if last else None,
        "interval_s": c.config.retention_interval_s,
        "commitment_salts": "none stored yet: releases carry plain digests (PCE-07)",
    }
    if stale:
        return fail(
            "PI-11",
            f"{len(stale)} released outputs past retention still readable",
            offenders=stale[:20],
            **ev,
        )
    if last is None:
        return na("PI-11", "the retention purge has not run yet", **ev)
    if (c.now - last).total_seconds() > 2 * c.config.retention_interval_s:
        return fail("PI-11", "the retention purge is overdue", **ev)
    return ok("PI-11", "no released output is readable past retention; purge on schedule", **ev)


CHECKS: dict[str, Check] = {"AUD-07": _aud07, "DSL-04": _dsl04, "PI-11": _pi11}

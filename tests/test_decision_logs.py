"""Decision logs are delayed by a failed write, never dropped (gateway.decision_logs)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.decisions import DecisionLog
from gateway.decision_logs import DecisionLogWriter
from gateway.platform import Platform
from policies import Decision


def _decision(n: int) -> Decision:
    return Decision(
        decision_id=f"d-{n}",
        path="pdx/authz",
        input={"subject": {"id": "client-1"}, "action": "dataset.read_metadata"},
        result={"allow": True},
        defined=True,
        revision=1,
        digest="sha256:" + "0" * 64,
        timestamp=datetime(2026, 12, 4, tzinfo=UTC),
        allow=True,
        reasons=(),
    )


def test_failed_flush_keeps_the_batch_for_the_next_one(platform: Platform, creds: object) -> None:
    failures = [RuntimeError("database is locked")]

    def sessions() -> Session:
        if failures:
            raise failures.pop()
        return platform.session()

    writer = DecisionLogWriter(sessions)
    for n in range(3):
        writer.add(_decision(n), request_id=f"req-{n}")
    with pytest.raises(RuntimeError):
        writer.flush()
    writer.add(_decision(3), request_id="req-3")
    assert writer.flush() == 4
    with platform.session() as session:
        ids = session.scalars(select(DecisionLog.decision_id).order_by(DecisionLog.decision_id))
        assert list(ids) == ["d-0", "d-1", "d-2", "d-3"]
        assert session.scalar(select(func.count()).select_from(DecisionLog)) == 4

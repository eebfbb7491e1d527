"""Decision logs: a failed write delays them; past a cap they are dropped, visibly."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.decisions import DecisionLog
from audit.models import AuditRecord
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


def test_a_flush_returns_only_after_a_batch_another_thread_took_is_committed(
    platform: Platform, creds: object
) -> None:
    # The writer's thread takes the batch, then waits inside its write; a reader's flush
    # (the console, a policy dry run, AUD-10) must not return before that write commits.
    inside, release = threading.Event(), threading.Event()

    def sessions() -> Session:
        if threading.current_thread().name == "writer":
            inside.set()
            release.wait(30)
        return platform.session()

    writer = DecisionLogWriter(sessions)
    writer.add(_decision(0), request_id="req-0")
    background = threading.Thread(target=writer.flush, name="writer")
    background.start()
    assert inside.wait(30)
    seen: list[int] = []

    def read_after_flush() -> None:
        writer.flush()
        with platform.session() as session:
            seen.append(session.scalar(select(func.count()).select_from(DecisionLog)) or 0)

    reader = threading.Thread(target=read_after_flush)
    reader.start()
    reader.join(0.5)  # the old flush returned here at once, with nothing written yet
    release.set()
    reader.join(30)
    background.join(30)
    assert seen == [1]


def test_over_the_cap_the_oldest_are_dropped_counted_reported_and_not_ready(
    platform: Platform, api: TestClient
) -> None:
    """Issue 13: the retry buffer grew without bound while writes failed. Now it is capped;
    drops are counted (/readyz), reported once the database takes writes again, and the
    rest is still written."""
    writer = platform.decision_logs
    writer.stop()  # no background flushes: this test flushes by hand
    real = writer._sessions
    down = [True]

    def sessions() -> Session:
        if down[0]:
            raise RuntimeError("disk full")
        return real()

    writer._sessions = sessions
    writer.max_pending = 3
    for n in range(2):
        writer.add(_decision(n), request_id=f"req-{n}")
    with pytest.raises(RuntimeError):
        writer.flush()
    for n in range(2, 6):
        writer.add(_decision(n), request_id=f"req-{n}")
    assert (writer.pending, writer.dropped) == (3, 3)
    r = api.get("/readyz")
    assert r.status_code == 503, r.text
    checks = {c["name"]: c for c in r.json()["checks"]}
    assert not checks["decision_logs"]["ok"] and r.json()["decision_logs_dropped"] == 3
    down[0] = False
    assert writer.flush() == 3
    with platform.session() as session:
        ids = session.scalars(
            select(DecisionLog.decision_id).where(DecisionLog.decision_id.like("d-%"))
        )
        assert sorted(ids) == ["d-3", "d-4", "d-5"]
        alerts = list(
            session.scalars(
                select(AuditRecord).where(AuditRecord.event_type == "audit.decisions_dropped")
            )
        )
    assert len(alerts) == 1 and alerts[0].detail is not None and alerts[0].detail.startswith("3 ")
    assert alerts[0].ledger_index is None  # an alert, not an authorised operation
    assert writer.flush() == 0  # reported once

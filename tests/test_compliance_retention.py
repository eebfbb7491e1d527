"""Retention: the platform runs purge_expired on a schedule and records every run."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from audit.compliance import RetentionRun
from audit.models import AuditRecord
from gateway.platform import Platform
from ledger import decode_leaf
from tests.conftest import login
from tests.helpers.i16_compliance import run_check

Creds = dict[str, dict[str, Any]]


def test_retention_run_is_recorded_on_the_ledger_and_audit(
    api: TestClient, creds: Creds, platform: Platform
) -> None:
    before = {f["id"]: f for f in run_check(api, creds)["findings"]}
    assert before["PI-11"]["status"] == "not-applicable"  # the purge never ran
    r = api.post("/v1/compliance/retention-runs", headers=login(api, creds, "security-admin"))
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["results_shredded"] == 0 and run["audit_records_deleted"] == 0
    with platform.session() as s:
        row = s.get(RetentionRun, run["id"])
        record = s.scalars(
            select(AuditRecord).where(AuditRecord.object_id == f"retention-run-{run['id']}")
        ).one()
        leaf = decode_leaf(platform.ledger.entry(s, run["ledger_index"]).leaf)
    assert row is not None and json.loads(row.detail)["results_shredded"] == 0
    assert record.event_type == "retention.run" and record.ledger_index == run["ledger_index"]
    assert leaf["type"] == "retention.run"
    after = {f["id"]: f for f in run_check(api, creds)["findings"]}
    assert after["PI-11"]["status"] == "pass"
    assert after["PI-11"]["evidence"]["last_purge"] is not None
    r = api.post("/v1/compliance/retention-runs", headers=login(api, creds, "auditor"))
    assert r.status_code == 403


def test_the_platform_schedules_retention(platform: Platform, creds: Creds) -> None:
    assert platform.compliance is not None
    services = platform.compliance
    services.settings = replace(services.settings, retention_interval_s=1, interval_s=0)
    services.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with platform.session() as s:
                if s.scalars(select(RetentionRun)).first() is not None:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("no scheduled retention run within 30 s")
    finally:
        services.stop()

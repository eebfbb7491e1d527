"""Compliance bench: a full check over 10^5 datasets and 10^6 ledger entries, automation ratio."""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select

import audit
from audit.models import AuditRecord
from bench import report
from exchange.models import Dataset, Organisation
from gateway.app import create_app
from gateway.platform import build_platform, initialise
from gateway.settings import Settings
from ledger import LedgerRecord

BATCH = 5_000


def _datasets(org: str, start: int, n: int, now: datetime) -> list[dict[str, object]]:
    return [
        {
            "id": str(uuid.uuid4()), "owner_org": org, "name": f"bench dataset {i}",
            "description": None, "classification_path": ["transport", "transit", "trips"],
            "level": "general-2", "impact_object": "public-interest",
            "impact_degree": "minor", "processing_degree": "raw", "source_agency": "bench",
            "source_system": None, "accountable_department": "bench", "pi": False,
            "sensitive_pi": False, "important_data_catalogue": False,
            "share_attribute": "conditional", "open_attribute": "conditional",
            "graded_at": now, "graded_by": "bench", "next_review_at": now + timedelta(days=300),
            "custody": "node", "size_bytes": 1, "rows": 1, "sha256": "0" * 64, "sm3": "0" * 64,
            "data_key_id": "", "scan": {"min_level": "general-1"}, "profile": {},
            "registered_at": now, "registered_by": "bench",
        }
        for i in range(start, start + n)
    ]  # fmt: skip


def run(quick: bool = False) -> Path:
    n_datasets = 1_000 if quick else 100_000
    n_entries = 10_000 if quick else 1_000_000
    work = report.WORK / "compliance"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settings = Settings(home=work / "home", database_url=f"sqlite:///{work / 'pdx.db'}")
    platform = build_platform(settings)
    initialise(platform)
    create_app(platform)  # the route table ZT-01 walks
    now = datetime.now(UTC)
    with platform.session() as s, s.begin():
        org = s.scalars(select(Organisation.id)).first()
        assert org is not None
        for start in range(0, n_datasets, BATCH):
            s.execute(insert(Dataset), _datasets(org, start, min(BATCH, n_datasets - start), now))
    # Entries with their audit records, as exchange.Trail writes them (one per entry).
    for start in range(0, n_entries, BATCH):
        count = min(BATCH, n_entries - start)
        with platform.session() as s, s.begin():
            first = platform.ledger.append_many(
                s,
                [
                    LedgerRecord(type="bench.event", action="bench", object_type="bench",
                                 object_id=f"b-{start + i}", actor="bench", subject_org=None,
                                 decision_id=None, purpose=None, request_id=None,
                                 payload_digest=None, ts=now)
                    for i in range(count)
                ],
            )  # fmt: skip
            s.execute(
                insert(AuditRecord),
                [
                    {"id": str(uuid.uuid4()), "ts": now, "subject_id": "bench",
                     "object_id": f"b-{start + i}", "action": "bench", "result": "success",
                     "event_type": "bench.event", "ledger_index": first + i}
                    for i in range(count)
                ],
            )  # fmt: skip
        if (start // BATCH) % 20 == 19:
            platform.sealer.seal_now()
    platform.sealer.seal_now()
    assert platform.compliance is not None
    timings = []
    result: dict[str, object] = {}
    for _ in range(1 if quick else 3):
        started = time.perf_counter()
        result = platform.compliance.run(audit.Subject("bench", None, None, None, None))
        timings.append(time.perf_counter() - started)
    platform.engine.dispose()
    check_s = report.median(timings)
    ratio = float(result["automated_ratio"])  # type: ignore[arg-type]
    failed = result["summary"]["fail"]  # type: ignore[index]
    return report.write(
        "compliance",
        {"datasets": n_datasets, "entries": n_entries, "runs": len(timings), "failed": failed},
        {
            "check_s_1e5_datasets_1e6_entries": report.Metric(
                round(check_s, 2), "s", "< 60", check_s < 60
            ),
            "requirements_automated_ratio": report.Metric(ratio, "ratio", ">= 0.9", ratio >= 0.9),
        },
    )

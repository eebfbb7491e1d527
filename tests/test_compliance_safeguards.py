"""The safeguard checks (PI-05, PI-07, PI-09, PCE-02, CRY-02, AUD-06): each breaks as it should.

Each test starts from a deployment where the check passes (or does not apply), breaks
one control the way an operator or attacker could, and expects exactly that id to fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

import audit
from exchange import deidentification
from exchange.models import Computation, Dataset, Person, PrivacyBudgetAccount, PrivacyCharge
from gateway.platform import Platform
from gateway.settings import Settings
from tests.conftest import login
from tests.helpers.api import compute_client
from tests.helpers.i16_compliance import register_dataset, run_check
from tests.test_api_computations import PURPOSE, wait_for
from tests.test_api_contracts import active_contract, make_org, measure_csv
from tests.test_api_contracts import register_dataset as register_measures
from tests.test_store_identity import pdx

Creds = dict[str, dict[str, Any]]
BY = audit.Subject("cli:test", None, None, None, None)


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {f["id"]: f["status"] for f in report["findings"]}


def _finding(report: dict[str, Any], rid: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in report["findings"] if f["id"] == rid)
    return found


def test_a_dataset_with_pi_fields_registered_as_not_pi_fails_pi05(
    api: TestClient, creds: Creds, platform: Platform
) -> None:
    dataset = register_dataset(api, creds)["id"]
    before = run_check(api, creds)
    assert _statuses(before)["PI-05"] == "pass"
    # The provider (or a later edit) claims the data is no longer personal information.
    with platform.session() as s, s.begin():
        s.execute(update(Dataset).where(Dataset.id == dataset).values(pi=False))
    after = run_check(api, creds)
    assert _statuses(after)["PI-05"] == "fail"
    assert dataset in json.dumps(_finding(after, "PI-05")["evidence"])


def test_budget_accounts_that_do_not_add_up_fail_pi07(
    api: TestClient, creds: Creds, platform: Platform
) -> None:
    dataset = register_dataset(api, creds)["id"]
    now = platform.now()
    with platform.session() as s, s.begin():
        s.add(
            PrivacyBudgetAccount(
                dataset_id=dataset,
                epsilon_limit=3.0,
                delta_limit=1e-4,
                epsilon_spent=0.5,
                delta_spent=0.0,
                updated_at=now,
            )
        )
        s.add(
            PrivacyCharge(dataset_id=dataset, job_id="j1", epsilon=0.5, delta=0.0, charged_at=now)
        )
    assert _statuses(run_check(api, creds))["PI-07"] == "pass"
    # Someone resets the account's spending without removing its charges (a budget reset).
    with platform.session() as s, s.begin():
        s.execute(
            update(PrivacyBudgetAccount)
            .where(PrivacyBudgetAccount.dataset_id == dataset)
            .values(epsilon_spent=0.0)
        )
    report = run_check(api, creds)
    assert _statuses(report)["PI-07"] == "fail"
    assert "do not add up" in json.dumps(_finding(report, "PI-07")["evidence"])
    # A limit above the configured cap fails too.
    with platform.session() as s, s.begin():
        s.execute(
            update(PrivacyBudgetAccount)
            .where(PrivacyBudgetAccount.dataset_id == dataset)
            .values(epsilon_spent=0.5, epsilon_limit=50.0)
        )
    report = run_check(api, creds)
    assert "above the configured cap" in json.dumps(_finding(report, "PI-07")["evidence"])


def test_the_technique_catalogue_only_counts_code_that_exists(
    monkeypatch: pytest.MonkeyPatch, api: TestClient, creds: Creds
) -> None:
    # Every technique of GB/T 37964-2019 Annex A is declared with code that exists.
    assert set(deidentification.offered()) == set(deidentification.TECHNIQUES)
    assert _finding(run_check(api, creds), "PI-09")["status"] == "pass"
    # Declaring a technique without its component does not make it offered.
    bogus = {**deidentification.TECHNIQUES, "pseudonymisation": "sandbox.stats:no_such_thing"}
    monkeypatch.setattr(deidentification, "TECHNIQUES", bogus)
    assert "pseudonymisation" not in deidentification.offered()
    pi09 = _finding(run_check(api, creds), "PI-09")
    assert pi09["status"] == "fail"
    assert pi09["evidence"]["offenders"] == ["pseudonymisation"]


@pytest.fixture
def capi(platform: Platform) -> Iterator[TestClient]:
    yield from compute_client(platform)


def test_a_release_from_non_open_data_without_dp_fails_pce02(
    capi: TestClient, creds: Creds, platform: Platform
) -> None:
    ent_org, ent = make_org(capi, creds, "Riverside Health Analytics", "enterprise")
    org, prov = make_org(capi, creds, "Northgate District Hospital", "provider")
    ds = register_measures(capi, prov, measure_csv(0, 40), "ward readings", "general-2")
    active_contract(capi, ent, prov, org, [ds["id"]], PURPOSE)
    body = {
        "operator": "stats.count",
        "inputs": [ds["id"]],
        "params": {},
        "purpose": PURPOSE,
    }
    r = capi.post("/v1/computations", headers=ent, json=body)
    assert r.status_code == 201, r.text
    comp = r.json()["id"]
    assert wait_for(capi, ent, comp, "released", "failed", "rejected")["state"] == "released"

    def offenders() -> list[str]:
        found = _finding(run_check(capi, creds), "PCE-02")["evidence"].get("offenders", [])
        return [str(o) for o in found]

    assert not any(comp in o for o in offenders())
    # The job record loses its DP obligation (an edited row, or a policy that dropped it).
    with platform.session() as s, s.begin():
        s.execute(update(Computation).where(Computation.id == comp).values(obligations={}))
    assert any(comp in o and "without DP" in o for o in offenders())


def test_an_administrator_person_without_a_second_factor_fails_cry02(
    api: TestClient, creds: Creds, platform: Platform
) -> None:
    # Every seeded client belongs to an administrator person enrolled with TOTP.
    assert _statuses(run_check(api, creds))["CRY-02"] == "pass"
    with platform.session() as s, s.begin():
        s.execute(update(Person).where(Person.login == "operator-admin").values(totp_sealed=b""))
    report = run_check(api, creds)
    cry = _finding(report, "CRY-02")
    assert cry["status"] == "fail"
    assert "administrator without a second factor" in json.dumps(cry["evidence"])


def test_backups_are_recorded_verified_again_and_aged_for_aud06(
    api: TestClient, creds: Creds, platform: Platform, settings: Settings, tmp_path: Path
) -> None:
    assert platform.compliance is not None
    prod = platform.settings.replace(
        environment="production", seed_demo=False, root_key_passphrase="correct horse battery"
    )
    # Development: no backup yet is a note, production: a failure.
    assert _statuses(platform.compliance.run(BY))["AUD-06"] == "not-applicable"
    assert _statuses(platform.compliance.run(BY, settings=prod))["AUD-06"] == "fail"
    out = tmp_path / "nightly"
    done = pdx(settings, "backup", "create", "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = platform.compliance.run(BY, settings=prod)
    aud = _finding(report, "AUD-06")
    assert aud["status"] == "pass", aud
    assert aud["evidence"]["location"] == str(out.resolve())
    # The backup is on the ledger as an authorised operation.
    with platform.session() as s:
        rows = s.scalars(
            select(audit.AuditRecord).where(audit.AuditRecord.event_type == "backup.created")
        ).all()
    assert len(rows) == 1 and rows[0].ledger_index is not None
    # A backup that no longer verifies (one object flipped) fails.
    victim = next(p for p in sorted((out / "database").iterdir()) if p.stat().st_size > 0)
    data = bytearray(victim.read_bytes())
    data[0] ^= 1
    victim.write_bytes(bytes(data))
    aud = _finding(platform.compliance.run(BY, settings=prod), "AUD-06")
    assert aud["status"] == "fail" and "does not verify" in aud["summary"]
    data[0] ^= 1
    victim.write_bytes(bytes(data))
    # An old backup fails against the schedule.
    late = platform.compliance.settings.backup_interval_s + 60
    with platform.session() as s, s.begin():
        s.execute(
            update(audit.AuditRecord)
            .where(audit.AuditRecord.event_type == "backup.created")
            .values(ts=platform.now() - timedelta(seconds=late))
        )
    aud = _finding(platform.compliance.run(BY, settings=prod), "AUD-06")
    assert aud["status"] == "fail" and "older than the schedule" in aud["summary"]


def test_a_backup_location_too_long_to_record_is_refused_before_any_work(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / ("x" * 120) / ("y" * 120) / ("z" * 120)
    done = pdx(settings, "backup", "create", "--out", str(out))
    assert done.returncode != 0
    assert "longer than 300 characters" in done.stderr
    assert not out.exists()


def test_auditors_read_compliance_runs_but_do_not_run_them(api: TestClient, creds: Creds) -> None:
    report = run_check(api, creds)
    auditor = login(api, creds, "auditor")
    r = api.get(f"/v1/compliance/runs/{report['id']}", headers=auditor)
    assert r.status_code == 200, r.text
    assert r.json()["digest"] == report["digest"]
    assert api.post("/v1/compliance/runs", headers=auditor).status_code == 403

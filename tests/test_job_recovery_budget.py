"""A recovered run does not pay twice: one job, one privacy charge (issue 13).

A run that died after its release gate charged the datasets' budgets is run again under
a new lease; its gate charges the same job again. Before, the charge's primary key made
that second charge fail, and the recovered job ended `failed` (internal-error).
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient

from exchange.jobs import DbPrivacyBudget
from exchange.models import PrivacyBudgetAccount, PrivacyCharge
from gateway.platform import Platform
from tests.helpers.locks import wait_until_blocked
from tests.test_api_contracts import make_org, measure_csv, register_dataset


def test_a_job_charged_once_is_not_charged_again_and_another_job_is(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    _, prov = make_org(capi, creds, "Northgate District Hospital", "provider")
    ds = register_dataset(capi, prov, measure_csv(0, 40), "ward readings", "general-2")["id"]
    budget = DbPrivacyBudget(platform.sessions, platform.now, epsilon=1.0)
    budget.charge([ds], 0.3, 0.0, "job-1")
    budget.charge([ds], 0.3, 0.0, "job-1")  # the recovered run of job-1
    assert budget.remaining(ds)[0] == 0.7
    budget.charge([ds], 0.3, 0.0, "job-2")
    assert round(budget.remaining(ds)[0], 9) == 0.4
    assert [c.job_id for c in budget.charges(ds)] == ["job-1", "job-2"]


def test_two_jobs_charging_a_new_dataset_at_once_both_pay(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """The first charge creates the dataset's account. Before, a second job charging at the
    same moment inserted it too and failed on the key (PostgreSQL): its job ended `failed`."""
    _, prov = make_org(capi, creds, "Northgate District Hospital", "provider")
    ds = register_dataset(capi, prov, measure_csv(0, 40), "ward readings", "general-2")["id"]
    budget = DbPrivacyBudget(platform.sessions, platform.now, epsilon=1.0)
    errors: list[BaseException] = []

    def second_job() -> None:
        try:
            budget.charge([ds], 0.25, 0.0, "job-2")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    with platform.sessions() as session, session.begin():
        # The first job's charge, caught between creating the account and committing.
        session.add(
            PrivacyBudgetAccount(
                dataset_id=ds,
                epsilon_limit=1.0,
                delta_limit=1e-5,
                epsilon_spent=0.25,
                delta_spent=0.0,
                updated_at=platform.now(),
            )
        )
        session.add(
            PrivacyCharge(
                dataset_id=ds, job_id="job-1", epsilon=0.25, delta=0.0, charged_at=platform.now()
            )
        )
        session.flush()
        other = threading.Thread(target=second_job)
        other.start()
        wait_until_blocked(session, other)
    other.join(60)
    assert not other.is_alive() and errors == []
    assert round(budget.remaining(ds)[0], 9) == 0.5
    assert sorted(c.job_id for c in budget.charges(ds)) == ["job-1", "job-2"]

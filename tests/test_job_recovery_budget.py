"""A recovered run does not pay twice: one job, one privacy charge (issue 13).

A run that died after its release gate charged the datasets' budgets is run again under
a new lease; its gate charges the same job again. Before, the charge's primary key made
that second charge fail, and the recovered job ended `failed` (internal-error).
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from exchange.jobs import DbPrivacyBudget
from gateway.platform import Platform
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

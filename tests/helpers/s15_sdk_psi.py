"""A join with the enterprise's own cohort (issue 18): a bank's dataset and an SDK enterprise."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from fastapi.testclient import TestClient
from pdx_client.roles import Enterprise  # noqa: E402  (the SDK from the tree, via i15_sdk)

from tests.helpers.i15_sdk import new_client, sdk_login
from tests.helpers.i18_psi import distinct_phones, noisy_phone
from tests.helpers.i18_wiring import PURPOSE, declare_key


@dataclass
class CohortData:
    """The enterprise's own phones (typed its way) and the bank's (msisdn, amount) rows."""

    cohort: list[str]
    values_csv: str
    common: set[str]
    amount: dict[str, Fraction]

    def total(self) -> Fraction:
        return sum((self.amount[p] for p in self.common), Fraction(0))


def cohort_data(
    seed: int, *, cohort: int = 200, values: int = 240, common: int = 150
) -> CohortData:
    rng = random.Random(seed)
    people = distinct_phones(rng, cohort + values - common)
    mine, theirs = people[:cohort], people[cohort - common :]
    amount = {p: Fraction(rng.randrange(0, 100_00), 100) for p in theirs}
    shuffled = theirs[:]
    rng.shuffle(shuffled)
    rows = ["msisdn,amount"] + [f"{noisy_phone(p, rng)},{float(amount[p]):.2f}" for p in shuffled]
    # The enterprise's list has its own formatting, and one person twice, typed two ways.
    typed = [noisy_phone(p, rng) for p in mine] + [f"+86-{mine[0]}"]
    return CohortData(typed, "\n".join(rows) + "\n", set(mine) & set(theirs), amount)


def register(
    api: TestClient, headers: dict[str, str], text: str, level: str, open_attribute: str
) -> str:
    from tests.test_api_contracts import dataset_metadata

    meta = json.loads(dataset_metadata("loan balances", level, open_attribute))
    meta["pi"] = True
    files = {
        "metadata": (None, json.dumps(meta), "application/json"),
        "file": ("data.csv", text.encode(), "text/csv"),
    }
    r = api.post("/v1/datasets", headers=headers, files=files)
    assert r.status_code == 201, r.text
    out: str = r.json()["id"]
    return out


def cohort_network(
    api: TestClient,
    creds: dict[str, Any],
    data: CohortData,
    *,
    declare: bool = True,
    tag: str = "",
) -> dict[str, Any]:
    """An insurer (SDK client), a bank holding `data.values_csv`, a contract between them."""
    from tests.test_api_contracts import active_contract, make_org

    ent_org, cid, secret = new_client(api, creds, f"Harbour Mutual Insurance{tag}", "enterprise")
    r = api.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
    )
    assert r.status_code == 200, r.text
    ent = {"Authorization": f"Bearer {r.json()['access_token']}"}
    bank_org, bank = make_org(api, creds, f"Riverside Bank{tag}", "provider")
    ds = register(api, bank, data.values_csv, "general-3", "conditional")
    active_contract(api, ent, bank, bank_org, [ds], PURPOSE)
    if declare:
        declare_key(api, bank, ds, "msisdn")
    return {
        "ent": ent,
        "ent_org": ent_org,
        # In-process only (a TestClient); against a real server, log in with "client".
        "sdk": sdk_login(api, Enterprise, cid, secret) if isinstance(api, TestClient) else None,
        "client": (cid, secret),
        "bank": bank,
        "bank_org": bank_org,
        "ds": ds,
    }


def node_held_network(api: TestClient, creds: dict[str, Any], data: CohortData) -> dict[str, Any]:
    """As `cohort_network`, with the bank's dataset on its embedded node (`ds` is that one)."""
    from tests.helpers.i18_wiring import register_pi
    from tests.test_api_contracts import active_contract

    net = cohort_network(api, creds, data, declare=False)
    r = api.put("/v1/nodes/me", headers=net["bank"], json={"kind": "embedded"})
    assert r.status_code == 200, r.text
    held = register_pi(api, net["bank"], data.values_csv, "balances (node)",
                       path="/v1/nodes/datasets")  # fmt: skip
    active_contract(api, net["ent"], net["bank"], net["bank_org"], [held["id"]], PURPOSE)
    declare_key(api, net["bank"], held["id"], "msisdn")
    return {**net, "ds": held["id"]}

"""Join test data (issue 18 wiring): a cohort and a value table sharing people, typed apart."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tests.helpers.i18_psi import distinct_phones, noisy_phone, phone


@dataclass
class JoinData:
    """Two CSV texts (cohort: phone, tier; values: phone, amount) and their plaintext join."""

    cohort_csv: str
    values_csv: str
    common: set[str]
    amount: dict[str, Fraction]
    tier: dict[str, str]

    def sum_over(self, tier: str | None = None) -> Fraction:
        return sum(
            (self.amount[p] for p in self.common if tier is None or self.tier[p] == tier),
            Fraction(0),
        )

    def count(self, tier: str | None = None) -> int:
        return sum(1 for p in self.common if tier is None or self.tier[p] == tier)


def join_data(seed: int, *, cohort: int = 60, values: int = 70, common: int = 40) -> JoinData:
    """Phones written with +86, 0086, spaces or dashes on either side; amounts with 2 decimals."""
    rng = random.Random(seed)
    people = distinct_phones(rng, cohort + values - common)
    left, right = people[:cohort], people[cohort - common :]
    tier = {p: rng.choice("AB") for p in left}
    amount = {p: Fraction(rng.randrange(0, 100_00), 100) for p in right}
    rows = ["mobile,tier"] + [f"{noisy_phone(p, rng)},{tier[p]}" for p in left]
    shuffled = right[:]
    rng.shuffle(shuffled)
    vals = ["msisdn,amount"] + [f"{noisy_phone(p, rng)},{float(amount[p]):.2f}" for p in shuffled]
    return JoinData(
        "\n".join(rows) + "\n",
        "\n".join(vals) + "\n",
        set(left) & set(right),
        amount,
        tier,
    )


PURPOSE = "credit risk research on shared customers"
LEGAL_BASIS = "PIPL art. 13(1): consent ref C-2026-118"
PHONE = {"kind": "phone"}


def join_network(api: Any, creds: dict[str, Any], data: JoinData, *, declare: bool = True) -> Any:
    """A telecom (cohort: mobile, tier) and a bank (msisdn, amount), contracts with an insurer."""
    from tests.test_api_contracts import active_contract, make_org

    ent_org, ent = make_org(api, creds, "Harbour Mutual Insurance", "enterprise")
    tel_org, tel = make_org(api, creds, "City Telecom", "provider")
    bank_org, bank = make_org(api, creds, "Riverside Bank", "provider")
    cohort = register_pi(api, tel, data.cohort_csv, "subscriber tiers")
    values = register_pi(api, bank, data.values_csv, "loan balances")
    active_contract(api, ent, tel, tel_org, [cohort["id"]], PURPOSE)
    active_contract(api, ent, bank, bank_org, [values["id"]], PURPOSE)
    if declare:
        declare_key(api, tel, cohort["id"], "mobile")
        declare_key(api, bank, values["id"], "msisdn")
    return {
        "ent": ent,
        "ent_org": ent_org,
        "tel": tel,
        "tel_org": tel_org,
        "bank": bank,
        "bank_org": bank_org,
        "cohort": cohort["id"],
        "values": values["id"],
    }


def declare_key(api: Any, headers: dict[str, str], dataset_id: str, column: str) -> None:
    r = api.put(
        f"/v1/datasets/{dataset_id}/join-keys",
        headers=headers,
        json={"keys": [{"column": column, **PHONE}]},
    )
    assert r.status_code == 200, r.text


def ask_join(
    api: Any, net: dict[str, Any], operator: str, params: dict[str, Any], inputs: list[str]
) -> Any:
    body = {
        "operator": operator,
        "inputs": inputs,
        "params": params,
        "purpose": PURPOSE,
        "legal_basis": LEGAL_BASIS,
    }
    return api.post("/v1/computations", headers=net["ent"], json=body)


JOIN = {"left_key": "mobile", "right_key": "msisdn", "kind": "phone"}
HETERO = {
    "kind": "phone",
    "keys": ["tel", "tel"],
    "label": "label",
    "features": [["f0", "f1"], ["g0", "g1"]],
    "iterations": 3,
}
"""fl.hetero_logreg over `vertical_csvs`: the guest's f0, f1 and label, the host's g0, g1."""


def approve_all(api: Any, net: dict[str, Any], comp_id: str) -> None:
    for who in ("tel", "bank"):
        r = api.post(f"/v1/computations/{comp_id}/approve", headers=net[who], json={})
        assert r.status_code == 200, r.text


def register_pi(
    api: Any, headers: dict[str, str], text: str, name: str, path: str = "/v1/datasets"
) -> dict[str, Any]:
    """A general-3 dataset holding personal information (phone numbers)."""
    from tests.test_api_contracts import dataset_metadata

    meta = json.loads(dataset_metadata(name, "general-3"))
    meta["pi"] = True
    files = {
        "metadata": (None, json.dumps(meta), "application/json"),
        "file": ("data.csv", text.encode(), "text/csv"),
    }
    r = api.post(path, headers=headers, files=files)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def vertical_csvs(seed: int, n: int = 80, shift: int = 10) -> tuple[str, str, int]:
    """Guest (tel, f0, f1, label) and host (tel, g0, g1) tables; `n - shift` people in both."""
    import numpy as np

    rng = random.Random(seed)
    people: list[str] = []
    while len(people) < n + shift:
        p = phone(rng)
        if p not in people:
            people.append(p)
    x = np.random.default_rng(seed).normal(size=(len(people), 4))
    y = (x @ np.array([1.0, -1.0, 0.8, 0.5]) > 0).astype(int)
    guest = ["tel,f0,f1,label"] + [
        f"{noisy_phone(people[i], rng)},{x[i, 0]:.6f},{x[i, 1]:.6f},{y[i]}" for i in range(n)
    ]
    host = ["tel,g0,g1"] + [
        f"{noisy_phone(people[i], rng)},{x[i, 2]:.6f},{x[i, 3]:.6f}"
        for i in range(shift, n + shift)
    ]
    return "\n".join(guest) + "\n", "\n".join(host) + "\n", n - shift

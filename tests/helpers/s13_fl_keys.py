"""Helpers for `fl.logreg` under a requester key: hospitals with readings and an SDK enterprise."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.helpers.i15_sdk import new_client, sdk_login
from tests.test_api_contracts import active_contract, make_org, measure_csv, register_dataset

from pdx_client.roles import Enterprise  # noqa: E402  (tests.helpers.i15_sdk puts sdk/ on the path)

PURPOSE = "readmission risk research"
FEATURES = ["systolic_bp", "age"]
LABEL = "readmitted"


def fl_network(
    api: TestClient,
    creds: dict[str, Any],
    level: str = "general-1",
    rows: tuple[int, ...] = (60, 45, 75),
    open_attribute: str = "open",
) -> dict[str, Any]:
    """Hospitals with a measure dataset each, contracted to an enterprise the SDK logs in as."""
    ent_org, cid, secret = new_client(api, creds, "Riverside Health Analytics", "enterprise")
    r = api.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
    )
    assert r.status_code == 200, r.text
    ent = {"Authorization": f"Bearer {r.json()['access_token']}"}
    hospitals = []
    for i, n in enumerate(rows):
        org, headers = make_org(api, creds, f"Hospital {i} District", "provider")
        text = measure_csv(i, n)
        ds = register_dataset(
            api, headers, text, f"Hospital {i} readings", level, open_attribute=open_attribute
        )
        active_contract(api, ent, headers, org, [ds["id"]], PURPOSE)
        hospitals.append({"org": org, "h": headers, "ds": ds, "text": text})
    return {
        "ent_org": ent_org,
        "ent": ent,
        "sdk": sdk_login(api, Enterprise, cid, secret),
        "hospitals": hospitals,
        "inputs": [h["ds"]["id"] for h in hospitals],
    }


def rows_of(texts: list[str]) -> tuple[list[list[float]], list[int]]:
    """Features and labels of the hospitals' CSV texts (for accuracy checks)."""
    xs, ys = [], []
    for text in texts:
        for line in text.splitlines()[1:]:
            parts = line.split(",")
            xs.append([float(parts[2]), float(parts[3])])
            ys.append(int(parts[4]))
    return xs, ys

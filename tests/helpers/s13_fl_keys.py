"""Helpers for `fl.logreg` under a requester key: hospitals with readings and an SDK enterprise."""

from __future__ import annotations

import sys
from typing import Any

from fastapi.testclient import TestClient

from tests.helpers.i15_sdk import SDK, new_client, sdk_login
from tests.test_api_contracts import active_contract, make_org, measure_csv, register_dataset

assert str(SDK) in sys.path  # tests.helpers.i15_sdk puts sdk/ on the path
from pdx_client.roles import Enterprise  # noqa: E402

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


# -- the requester of a federated job, as its own process with only the SDK ----------------------


def fl_requester_script() -> str:
    """The requester's program for `fl.logreg`: `tests.helpers.i15_keys.REQUESTER`'s set-up
    (no server package importable), then one job per body in REQUEST_BODIES, each under a
    fresh key, its rounds closed by `pdx_client.fl.drive`; every step's posted reply and
    decrypted aggregate are written out for the test to check."""
    from tests.helpers.i15_keys import REQUESTER

    preamble = REQUESTER.split("url, token =", 1)[0]
    return preamble + _FL_BODY


_FL_BODY = r"""
from pdx_client.errors import ApiError
from pdx_client.fl import drive

url, token = os.environ["PDX_URL"], os.environ["PDX_TOKEN"]
out = os.environ["REQUESTER_OUT"]
headers = {"Authorization": f"Bearer {token}"}


class Http:
    def __init__(self):
        self.posts, self.steps = [], []

    def _json(self, r):
        if r.status_code >= 400:
            raise ApiError(r.text[:300], status=r.status_code)
        return r.json()

    def get(self, path, **params):
        body = self._json(httpx.get(url + path, headers=headers, params=params, timeout=120))
        if path.endswith("/fl-round") and not body["posted"]:
            self.steps.append(body["aggregate"])
        return body

    def post(self, path, json=None, **kw):
        self.posts.append(json)
        return self._json(httpx.post(url + path, headers=headers, json=json, timeout=120))


facts = []
keys = []
for body in json.loads(os.environ["REQUEST_BODIES"]):
    key = JobKey.generate()
    keys.append(key)
    body["job_key"] = key.public()
    r = httpx.post(url + "/v1/computations", headers=headers, json=body, timeout=60)
    assert r.status_code == 201, r.text
    comp_id = r.json()["id"]
    print("ID", comp_id, flush=True)
    http = Http()
    trainer = drive(http, comp_id, key, timeout=600)
    deadline = time.monotonic() + 600
    while True:
        state = http.get(f"/v1/computations/{comp_id}")
        if state["state"] in ("released", "failed", "rejected"):
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state["state"] == "released", state
    result = http.get(f"/v1/computations/{comp_id}/result")
    model = key.decrypt(result)
    sk = key._sk
    facts.append({"id": comp_id, "p": str(sk.p), "q": str(sk.q), "n": str(key.n),
                  "model": model, "history": trainer.history, "posts": http.posts,
                  "sums": [key.open_vector(doc) for doc in http.steps],
                  "final_sum": key.open_vector(result["output"]["final"])})
with open(os.path.join(out, "requester.json"), "w") as f:
    json.dump(facts, f)
print("DONE", flush=True)
sys.stdin.read()  # stay alive (holding the keys) until the test has dumped this process
"""


def byte_hits(paths: list[Any], patterns: dict[str, bytes]) -> list[str]:
    """Where any of the byte patterns occurs in the files (name: file)."""
    from tests.helpers.s16_fast import file_hits

    return [f"{name}: {path}" for name, path in file_hits(paths, patterns)]

"""Helpers for the privacy attack suite: parties, datasets, requests, waiting, a held runner."""

from __future__ import annotations

import csv
import io
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.test_api_contracts import active_contract, make_org, register_dataset

PURPOSE = "readmission risk research"
HEADER = "patient_ref,ward,systolic_bp,age,readmitted"


def rows_csv(rows: list[tuple[str, str, float, int, int]]) -> str:
    return HEADER + "\n" + "".join(f"{a},{b},{c},{d},{e}\n" for a, b, c, d, e in rows) + ""


def readings(seed: int, n: int) -> list[tuple[str, str, float, int, int]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        age = rng.randrange(20, 90)
        bp = round(rng.gauss(110 + age * 0.4, 12), 1)
        out.append((f"S{seed:02d}{i:05d}", rng.choice("ABC"), bp, age, int(bp > 130)))
    return out


def column(text: str, name: str) -> list[float]:
    return [float(r[name]) for r in csv.DictReader(io.StringIO(text))]


class Parties:
    """An enterprise and providers, each provider's datasets under contract with it."""

    def __init__(self, api: TestClient, creds: dict[str, Any]) -> None:
        self.api = api
        self.creds = creds
        self.ent_org, self.ent = make_org(api, creds, "Curious Analytics", "enterprise")
        self.providers: dict[str, tuple[str, dict[str, str]]] = {}

    def provider(self, name: str) -> tuple[str, dict[str, str]]:
        if name not in self.providers:
            self.providers[name] = make_org(self.api, self.creds, f"{name} Hospital", "provider")
        return self.providers[name]

    def dataset(self, provider: str, name: str, text: str, level: str) -> str:
        org, headers = self.provider(provider)
        ds = register_dataset(self.api, headers, text, name, level)
        active_contract(self.api, self.ent, headers, org, [ds["id"]], PURPOSE)
        return str(ds["id"])

    def ask(self, operator: str, inputs: list[str], params: dict[str, Any]) -> Any:
        body = {"operator": operator, "inputs": inputs, "params": params, "purpose": PURPOSE}
        return self.api.post("/v1/computations", headers=self.ent, json=body)

    def wait(self, comp_id: str, *states: str, timeout: float = 180) -> dict[str, Any]:
        states = states or ("released", "rejected", "failed")
        deadline = time.monotonic() + timeout
        while True:
            r = self.api.get(f"/v1/computations/{comp_id}", headers=self.ent)
            body: dict[str, Any] = r.json()
            if body["state"] in states:
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.1)

    def result(self, comp_id: str) -> dict[str, Any]:
        r = self.api.get(f"/v1/computations/{comp_id}/result", headers=self.ent)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out


class HeldRunner:
    """A job runner that holds submitted jobs until `release` runs them in this thread."""

    def __init__(self) -> None:
        self._jobs: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None], key: str = "") -> None:
        with self._lock:
            self._jobs.append(job)

    def release(self) -> int:
        with self._lock:
            jobs, self._jobs = self._jobs, []
        for job in jobs:
            job()
        return len(jobs)

    def stop(self) -> None:
        return None

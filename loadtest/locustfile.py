"""Locust scenarios against a running pdx gateway: tokens, catalogue, ledger proofs, uploads.

A realistic mix, weighted so that reads dominate:

| user class       | client (demo credentials) | what it does                                    |
|------------------|---------------------------|-------------------------------------------------|
| `CatalogReader`  | enterprise-fintech        | GET /v1/datasets, GET /v1/datasets/{id}         |
| `LedgerAuditor`  | auditor                   | checkpoint, inclusion proofs, entries           |
| `Provider`       | provider-transport        | POST /v1/datasets (small CSV), own catalogue    |
| `TokenClient`    | enterprise-fintech        | logins (client_credentials) and refreshes       |

Fair-use scenarios (issue 11; `loadtest/fairuse.py` sets them up and names them, they
stop at once without `PDX_LOADTEST_FAIRSHARE`):

| user class          | client                 | what it does                                   |
|---------------------|------------------------|------------------------------------------------|
| `FairShareVictim`   | enterprise-fintech     | stats.count on open data, request → released   |
| `FairShareFlooder`  | a second enterprise    | the same request, as fast as answered          |
| `CredentialFlooder` | none (wrong secrets)   | POST /v1/auth/token with wrong client secrets  |

Like real clients, users of one client share its access token (one `TokenCache` per
Locust process, as a service shares one token across its worker threads) and renew it
before it expires: with a refresh token when the server issued one (grant_type
refresh_token), else with the client credentials again. Run the read-only classes alone
by naming them: `locust -f loadtest/locustfile.py CatalogReader LedgerAuditor`.

Environment: `PDX_LOADTEST_CREDENTIALS` (default `$PDX_HOME/demo-credentials.json`,
`PDX_HOME` defaulting to `.pdx`), `PDX_LOADTEST_WAIT_S` (think time of the read users,
default 0: closed-loop maximum throughput), `PDX_LOADTEST_UPLOAD_ROWS` (default 50),
`PDX_LOADTEST_FAIRSHARE` (the fair-use setup file: open dataset id, attacker client).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import gevent
from gevent.lock import Semaphore
from locust import between, constant, constant_pacing, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from loadtest.run import dataset_metadata, multipart, small_csv  # noqa: E402 - after sys.path

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# Renew when less than this share of the lifetime (at least 30 s) is left.
RENEW_FRACTION = 0.2
RENEW_MIN_S = 30.0


def _credentials_path() -> Path:
    explicit = os.environ.get("PDX_LOADTEST_CREDENTIALS")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("PDX_HOME") or ".pdx") / "demo-credentials.json"


def _load_credentials() -> dict[str, dict[str, Any]]:
    path = _credentials_path()
    try:
        data: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(
            f"no demo credentials at {path}: start the server once (pdx run) or set "
            "PDX_LOADTEST_CREDENTIALS"
        ) from None
    return data


CREDENTIALS = _load_credentials()


def _load_fairshare() -> dict[str, Any] | None:
    path = os.environ.get("PDX_LOADTEST_FAIRSHARE")
    if not path:
        return None
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    CREDENTIALS["loadtest-flooder"] = data["attacker"]
    return data


FAIRSHARE = _load_fairshare()
READ_WAIT_S = float(os.environ.get("PDX_LOADTEST_WAIT_S", "0"))


UPLOAD = small_csv(int(os.environ.get("PDX_LOADTEST_UPLOAD_ROWS", "50")))


# -- tokens ------------------------------------------------------------------------------------


@dataclass
class Token:
    access: str
    expires_at: float
    lifetime: float
    refresh: str | None

    def due(self, now: float) -> bool:
        margin = max(RENEW_MIN_S, RENEW_FRACTION * self.lifetime)
        return now >= self.expires_at - margin


class TokenCache:
    """Access tokens per client, shared by the users of one process, renewed before expiry."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, Semaphore] = {}

    def header(self, user: FastHttpUser, client: str) -> dict[str, str]:
        token = self._tokens.get(client)
        if token is None or token.due(time.time()):
            lock = self._locks.setdefault(client, Semaphore())
            with lock:  # one renewal per client; the others wait for it
                token = self._tokens.get(client)
                if token is None or token.due(time.time()):
                    token = self._renew(user, client, token)
        return {"Authorization": f"Bearer {token.access}"}

    def forget(self, client: str) -> None:
        self._tokens.pop(client, None)

    def _renew(self, user: FastHttpUser, client: str, old: Token | None) -> Token:
        token = None
        if old is not None and old.refresh:
            token = request_token(user, client, refresh=old.refresh)
        if token is None:
            token = request_token(user, client)
        if token is None:
            raise RuntimeError(f"cannot obtain a token for {client}")
        self._tokens[client] = token
        return token


TOKENS = TokenCache()


def request_token(user: FastHttpUser, client: str, *, refresh: str | None = None) -> Token | None:
    """POST /v1/auth/token (client_credentials, or refresh_token when `refresh` is given)."""
    creds = CREDENTIALS[client]
    form = {"client_id": creds["client_id"], "client_secret": creds["client_secret"]}
    if refresh is None:
        form["grant_type"] = "client_credentials"
    else:
        form["grant_type"] = "refresh_token"
        form["refresh_token"] = refresh
    name = f"/v1/auth/token [{form['grant_type']}]"
    with user.client.post(
        "/v1/auth/token", data=urlencode(form), headers=FORM, name=name, catch_response=True
    ) as r:
        if r.status_code != 200:
            r.failure(f"{r.status_code} {(r.text or '')[:200]}")
            return None
        body = r.json()
        lifetime = float(body["expires_in"])
        return Token(
            access=body["access_token"],
            expires_at=time.time() + lifetime,
            lifetime=lifetime,
            refresh=body.get("refresh_token"),
        )


class PdxUser(FastHttpUser):
    """A user acting as one demo client with a shared, renewed access token."""

    abstract = True
    client_name = "enterprise-fintech"
    # Keep-alive connections, as a real client library would.
    concurrency = 1

    def auth(self) -> dict[str, str]:
        return TOKENS.header(self, self.client_name)

    def get(self, path: str, *, name: str | None = None, **params: Any) -> Any:
        url = f"{path}?{urlencode(params)}" if params else path
        with self.client.get(url, headers=self.auth(), name=name, catch_response=True) as r:
            if r.status_code == 401:
                TOKENS.forget(self.client_name)  # revoked or expired early: log in again
            if r.status_code != 200:
                r.failure(f"{r.status_code} {(r.text or '')[:200]}")
                return None
            return r


# -- shared knowledge of the server (ids, tree size), per process ------------------------------


class Known:
    dataset_ids: list[str] = []
    next_page: str | None = None  # the catalogue's second page (its cursor link)
    tree_size = 0


def _remember_datasets(response: Any) -> None:
    if response is None:
        return
    ids = [d["id"] for d in response.json()["items"]]
    if ids:
        Known.dataset_ids = ids
        Known.next_page = response.json()["next"]


# -- user classes --------------------------------------------------------------------------------


class CatalogReader(PdxUser):
    """An enterprise browsing the catalogue: lists and dataset details."""

    weight = 8
    client_name = "enterprise-fintech"
    wait_time = constant(READ_WAIT_S)

    def on_start(self) -> None:
        if not Known.dataset_ids:
            _remember_datasets(self.get("/v1/datasets", name="/v1/datasets"))

    @task(4)
    def catalogue(self) -> None:
        # Mostly the first page; now and then the second, through the first page's cursor.
        second = Known.next_page if random.random() < 0.25 else None
        if second:
            self.get(second, name="/v1/datasets")
        else:
            _remember_datasets(self.get("/v1/datasets", name="/v1/datasets", limit=20))

    @task(5)
    def detail(self) -> None:
        if not Known.dataset_ids:
            return
        dataset_id = random.choice(Known.dataset_ids)
        self.get(f"/v1/datasets/{dataset_id}", name="/v1/datasets/{id}")


class LedgerAuditor(PdxUser):
    """An auditor checking the log: newest checkpoint, inclusion proofs, entries."""

    weight = 3
    client_name = "auditor"
    wait_time = constant(READ_WAIT_S)

    def on_start(self) -> None:
        if not Known.tree_size:
            self.checkpoint()

    @task(1)
    def checkpoint(self) -> None:
        r = self.get("/v1/ledger/checkpoint")
        if r is not None:
            # C2SP tlog-checkpoint: origin, tree size, root hash, blank line, signatures.
            lines = r.text.split("\n")
            Known.tree_size = max(Known.tree_size, int(lines[1]))

    @task(3)
    def inclusion_proof(self) -> None:
        size = Known.tree_size
        if size < 1:
            return
        index = random.randrange(size)
        self.get(
            "/v1/ledger/proof/inclusion",
            name="/v1/ledger/proof/inclusion",
            index=index,
            tree_size=size,
        )

    @task(3)
    def entry(self) -> None:
        if Known.tree_size < 1:
            return
        index = random.randrange(Known.tree_size)
        self.get(f"/v1/ledger/entries/{index}", name="/v1/ledger/entries/{index}")


class Provider(PdxUser):
    """A data provider registering small datasets now and then and checking its own list."""

    fixed_count = 1
    client_name = "provider-transport"
    wait_time = between(1.0, 3.0)

    @task(1)
    def register(self) -> None:
        name = f"loadtest-{uuid.uuid4().hex[:12]}"
        body, ctype = multipart(dataset_metadata(name), UPLOAD, "sample.csv")
        headers = {**self.auth(), "Content-Type": ctype}
        with self.client.post(
            "/v1/datasets",
            data=body,
            headers=headers,
            name="/v1/datasets [register]",
            catch_response=True,
        ) as r:
            if r.status_code != 201:
                r.failure(f"{r.status_code} {(r.text or '')[:200]}")
            else:
                Known.dataset_ids.append(r.json()["id"])

    @task(2)
    def own_catalogue(self) -> None:
        org = CREDENTIALS[self.client_name].get("org_id", "")
        self.get("/v1/datasets", name="/v1/datasets?owner_org", owner_org=org, limit=20)


class TokenClient(PdxUser):
    """Logins and refreshes at a steady, low rate (each costs a scrypt check on the server)."""

    fixed_count = 1
    client_name = "enterprise-fintech"
    wait_time = constant_pacing(1.0)

    def on_start(self) -> None:
        self.token: Token | None = None

    @task(1)
    def login(self) -> None:
        self.token = request_token(self, self.client_name)

    @task(2)
    def refresh(self) -> None:
        # RFC 6749 §6; until the server issues refresh tokens this is another login.
        if self.token is not None and self.token.refresh:
            self.token = request_token(self, self.client_name, refresh=self.token.refresh)
        else:
            self.token = request_token(self, self.client_name)


# -- fair use (issue 11): a computation flood, a credential flood ------------------------------


JOB_NAME = "stats.count request→released"
JOB_POLL_S = 0.1
JOB_TIMEOUT_S = 600.0


def _computation_body() -> dict[str, Any]:
    assert FAIRSHARE is not None
    return {
        "operator": "stats.count",
        "inputs": [FAIRSHARE["dataset_id"]],
        "purpose": FAIRSHARE["purpose"],
    }


class FairShareVictim(PdxUser):
    """A tenant timing its own stats.count from request to released result, one at a time."""

    fixed_count = 1
    client_name = "enterprise-fintech"
    wait_time = constant(0.2)

    def on_start(self) -> None:
        if FAIRSHARE is None:
            raise StopUser()

    def _sample(self, started: float, error: str | None) -> None:
        self.environment.events.request.fire(
            request_type="JOB",
            name=JOB_NAME,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=RuntimeError(error) if error else None,
            context={},
        )

    @task
    def computation(self) -> None:
        started = time.perf_counter()
        with self.client.post(
            "/v1/computations",
            json=_computation_body(),
            headers=self.auth(),
            name="/v1/computations [victim]",
            catch_response=True,
        ) as r:
            if r.status_code != 201:
                r.failure(f"{r.status_code} {(r.text or '')[:200]}")
                self._sample(started, f"request refused: {r.status_code}")
                return
            comp_id = r.json()["id"]
        while True:
            r = self.get(f"/v1/computations/{comp_id}", name="/v1/computations/{id} [victim]")
            state = r.json()["state"] if r is not None else None
            if state == "released":
                break
            if state in ("failed", "rejected", "review"):
                self._sample(started, f"computation {state}")
                return
            if time.perf_counter() - started > JOB_TIMEOUT_S:
                self._sample(started, "not released in time")
                return
            gevent.sleep(JOB_POLL_S)
        result = self.get(
            f"/v1/computations/{comp_id}/result", name="/v1/computations/{id}/result [victim]"
        )
        self._sample(started, None if result is not None else "result not delivered")


class FairShareFlooder(PdxUser):
    """Another tenant posting cheap computations as fast as the server answers (429 is fine)."""

    client_name = "loadtest-flooder"
    wait_time = constant(float(os.environ.get("PDX_LOADTEST_FLOOD_WAIT_S", "0.05")))

    def on_start(self) -> None:
        if FAIRSHARE is None:
            raise StopUser()

    @task
    def flood(self) -> None:
        with self.client.post(
            "/v1/computations",
            json=_computation_body(),
            headers=self.auth(),
            name="/v1/computations [flood]",
            catch_response=True,
        ) as r:
            if r.status_code in (201, 429):
                r.success()  # accepted, or refused at the organisation's quota
            else:
                r.failure(f"{r.status_code} {(r.text or '')[:200]}")


class CredentialFlooder(FastHttpUser):
    """Wrong client secrets, as fast as answered: for the legitimate client's id and unknown ids."""

    wait_time = constant(0)
    concurrency = 1

    def on_start(self) -> None:
        if FAIRSHARE is None:
            raise StopUser()
        self.victim_id = CREDENTIALS[FAIRSHARE["victim"]]["client_id"]

    @task
    def guess(self) -> None:
        client_id = self.victim_id if random.random() < 0.5 else f"pdx-{uuid.uuid4().hex[:16]}"
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": uuid.uuid4().hex,
        }
        with self.client.post(
            "/v1/auth/token",
            data=urlencode(form),
            headers=FORM,
            name="/v1/auth/token [wrong secret]",
            catch_response=True,
        ) as r:
            if r.status_code in (400, 401, 429):
                r.success()  # refused, or rate-limited: what a flood should get
            else:
                r.failure(f"{r.status_code} {(r.text or '')[:200]}")

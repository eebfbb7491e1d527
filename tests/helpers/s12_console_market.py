"""Console market test helpers: a second verified enterprise, ledger and decision counts."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

import crypto
from audit.decisions import DecisionLog
from gateway.platform import Platform
from ledger.records import decode_leaf
from tests.helpers.i17_market import Party, verify_org
from tests.helpers.i20_console import csrf_of, form_login
from tests.test_api_contracts import make_org


def console_login(api: TestClient, creds: dict[str, Any], who: str) -> str:
    """Sign `who`'s person in through the console form (TOTP); the page's CSRF token."""
    r = form_login(api, creds[who]["person"])
    assert r.status_code == 303, r.text
    page = api.get(r.headers["location"], follow_redirects=True)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def rival_enterprise(api: TestClient, creds: dict[str, Any], name: str, seed: int) -> Party:
    """Another enterprise, verified by the operator, with an Ed25519 key of its own."""
    org_id, headers = make_org(api, creds, name, "enterprise")
    verify_org(api, creds, org_id, seed)
    key = crypto.generate_key_pair("ed25519")
    r = api.post(
        f"/v1/market/parties/{org_id}/keys",
        headers=headers,
        json={"algorithm": "ed25519", "public_key": base64.b64encode(key.public_bytes()).decode()},
    )
    assert r.status_code == 201, r.text
    return Party(org_id, headers, key, r.json()["keys"][-1]["id"])


def decisions(platform: Platform, action: str, *, at_least: int = 0) -> int:
    """Decision logs of `action`, waiting (≤ 5 s) until there are `at_least`.

    The writer's own thread may hold a batch in its transaction while we flush, so a
    decision already made can be a moment late in the table: poll with a deadline.
    """
    deadline = time.monotonic() + 5
    while True:
        platform.decision_logs.flush()
        with platform.session() as s:
            found = [json.loads(i) for i in s.scalars(select(DecisionLog.input))]
        count = sum(1 for d in found if d.get("action") == action)
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def ledger_size(platform: Platform) -> int:
    with platform.session() as s:
        return platform.ledger.size(s)


def entries_since(platform: Platform, start: int) -> list[dict[str, Any]]:
    with platform.session() as s:
        return [decode_leaf(e.leaf) for e in platform.ledger.entries(s, start=start)]


def text_of(html: str) -> str:
    """The page's text without tags (for asserting what a person reads)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))

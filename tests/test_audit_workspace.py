"""The auditors' workspace: filters, pages, JSON Lines, OPA-shaped masked decisions, sink."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from audit.decisions import DecisionLog
from audit.models import AuditRecord
from audit.workspace import DecisionSink
from gateway.platform import Platform
from tests.conftest import login

Creds = dict[str, dict[str, Any]]


def _pages(api: TestClient, headers: dict[str, str], url: str) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    total = -1
    next_url: str | None = url
    while next_url:
        r = api.get(next_url, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert total in (-1, body["total"])
        total = body["total"]
        assert int(r.headers["x-total-count"]) == total
        items += body["items"]
        next_url = body["next"]
    return items, total


def test_records_filter_page_and_export_as_json_lines(
    api: TestClient, creds: Creds, platform: Platform
) -> None:
    auditor = login(api, creds, "auditor")
    consumer = login(api, creds, "enterprise-fintech")
    assert api.get("/v1/kms/keys", headers=consumer).status_code == 403  # a denial to find
    with platform.session() as s:
        issued = set(
            s.scalars(select(AuditRecord.id).where(AuditRecord.event_type == "auth.token_issued"))
        )
        denials = s.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(
                AuditRecord.result == "deny",
                AuditRecord.subject_id == creds["enterprise-fintech"]["client_id"],
            )
        )
    items, total = _pages(api, auditor, "/v1/audit/records?event_type=auth.token_issued&limit=1")
    assert total == len(issued) >= 2
    assert [i["id"] for i in items] and {i["id"] for i in items} == issued
    assert len(items) == len(issued)  # no page repeats or skips a record
    assert [i["ts"] for i in items] == sorted(i["ts"] for i in items)
    who = creds["enterprise-fintech"]["client_id"]
    denied, total = _pages(api, auditor, f"/v1/audit/records?subject={who}&result=deny")
    assert total == denials >= 1 and all(d["result"] == "deny" for d in denied)
    first = items[0]["ts"].replace("Z", "+00:00")
    window, _ = _pages(
        api,
        auditor,
        "/v1/audit/records?"
        + "&".join([f"since={first.replace('+', '%2B')}", "event_type=auth.token_issued"]),
    )
    assert {i["id"] for i in window} == issued
    lines = api.get(
        "/v1/audit/records?format=jsonl&event_type=auth.token_issued&limit=1000", headers=auditor
    )
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    parsed = [json.loads(line) for line in lines.text.splitlines()]
    assert {p["id"] for p in parsed} == issued
    by_accept = api.get(
        "/v1/audit/records?event_type=auth.token_issued",
        headers={**auditor, "Accept": "application/x-ndjson"},
    )
    assert [json.loads(x)["id"] for x in by_accept.text.splitlines()] == [p["id"] for p in parsed]
    bad = api.get("/v1/audit/records?cursor=not-a-cursor", headers=auditor)
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"


def test_every_read_is_audited_and_only_auditors_read(
    api: TestClient, creds: Creds, platform: Platform
) -> None:
    auditor = login(api, creds, "auditor")
    for path in ("/v1/audit/records?limit=3", "/v1/audit/decisions?limit=3"):
        assert api.get(path, headers=auditor).status_code == 200
    with platform.session() as s:
        reads = s.scalars(
            select(AuditRecord).where(
                AuditRecord.event_type.in_(["audit.records_read", "audit.decisions_read"])
            )
        ).all()
    assert sorted(r.event_type for r in reads) == ["audit.decisions_read", "audit.records_read"]
    assert all(r.subject_id == creds["auditor"]["client_id"] and r.decision_id for r in reads)
    for who in ("security-admin", "operator-admin", "provider-transport"):
        r = api.get("/v1/audit/records", headers=login(api, creds, who))
        assert r.status_code == 403, who
    # AUD-09 in the compliance check finds every audited read.
    report = api.post("/v1/compliance/runs", headers=login(api, creds, "security-admin")).json()
    aud09 = next(f for f in report["findings"] if f["id"] == "AUD-09")
    assert aud09["status"] == "pass" and aud09["evidence"]["reads"] >= 2


def test_decisions_in_opa_shape_with_configurable_masks(
    api: TestClient, creds: Creds, platform: Platform
) -> None:
    auditor = login(api, creds, "auditor")
    api.get("/v1/kms/keys", headers=login(api, creds, "enterprise-fintech"))  # denied
    r = api.get("/v1/audit/decisions?result=deny", headers=auditor)
    assert r.status_code == 200
    items = r.json()["items"]
    assert items and all(i["result"]["allow"] is False for i in items)
    event = items[0]
    assert {
        "decision_id",
        "path",
        "input",
        "result",
        "timestamp",
        "labels",
        "req_id",
        "metrics",
        "bundles",
    } <= set(event)
    assert event["labels"] == {"app": "pdx"}
    assert "ip" not in event["input"]["context"] and event["erased"] == ["/input/context/ip"]
    with platform.session() as s:
        stored = json.loads(s.get(DecisionLog, event["decision_id"]).input)  # type: ignore[union-attr]
    assert "ip" in stored["context"]  # masked in the export only; the log keeps it
    assert platform.compliance is not None
    platform.compliance.settings = replace(
        platform.compliance.settings, decision_masks=("/input/subject/roles",)
    )
    again = api.get("/v1/audit/decisions?result=deny", headers=auditor).json()["items"][0]
    assert "roles" not in again["input"]["subject"] and "ip" in again["input"]["context"]
    action = api.get("/v1/audit/decisions?action=kms.read", headers=auditor).json()["items"]
    assert action and all(i["input"]["action"] == "kms.read" for i in action)


class _Sink(BaseHTTPRequestHandler):
    failures_left = 0
    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            if _Sink.failures_left > 0:
                _Sink.failures_left -= 1
                self.send_response(503)
                self.end_headers()
                return
            _Sink.received.extend(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sink_server() -> Iterator[str]:
    _Sink.received = []
    _Sink.failures_left = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/logs"
    server.shutdown()
    server.server_close()


def test_sink_receives_every_decision_with_none_lost_across_an_outage(
    api: TestClient, creds: Creds, platform: Platform, sink_server: str
) -> None:
    sink = DecisionSink(
        platform.sessions,
        sink_server,
        masks=("/input/context/ip",),
        labels={"app": "pdx"},
        batch=3,
        name="test",
    )
    auditor = login(api, creds, "auditor")
    api.get("/v1/ledger/entries", headers=auditor)
    platform.decision_logs.flush()
    _Sink.failures_left = 4  # the sink is down for a while
    assert sink.push_once() == 0 and sink.last_error == "HTTP 503"
    for _ in range(5):  # decisions keep arriving during the outage
        api.get("/v1/ledger/entries", headers=auditor)
    platform.decision_logs.flush()
    delivered = sum(sink.push_once() for _ in range(3))
    assert delivered == 0 and _Sink.received == []  # still down: nothing moved
    assert sink.drain() > 0  # back up
    with platform.session() as s:
        stored = s.scalars(
            select(DecisionLog.decision_id).order_by(DecisionLog.ts, DecisionLog.decision_id)
        ).all()
        state = sink.state(s)
    got = [e["decision_id"] for e in _Sink.received]
    assert got == list(stored)  # every decision, once, in order
    assert all("ip" not in e["input"].get("context", {}) for e in _Sink.received)
    assert state["delivered"] == len(stored) and state["last_error"] is None

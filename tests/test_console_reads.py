"""The console's reads over the app (SQLite and PostgreSQL): few calls per first paint, every
audit read still audited, the decisions chart exact across incremental views, separation of
duties kept, compliance runs shown to the auditor, and both shapes of the API read alike."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from audit.compliance import list_runs
from audit.decisions import DecisionLog
from audit.models import AuditRecord
from gateway.console import i18n, panels, reads
from gateway.console.pages_parties import verdict_route
from gateway.platform import Platform
from tests.helpers.api import login
from tests.helpers.i20_console import csrf_of, form_login
from tests.helpers.s12_console_market import decisions
from tests.test_console import _console

ALLOWED_BAR = re.compile(r'fill="#1a7f37"><title>[^<]*: (\d+)</title>')
DENIED_BAR = re.compile(r'fill="#b42318"><title>[^<]*: (\d+)</title>')


def _sign_in(api: TestClient, creds: dict[str, Any], who: str) -> tuple[str, str]:
    """(CSRF token, person id) of `who` signed in through the form."""
    r = form_login(api, creds[who]["person"])
    assert r.status_code == 303, r.text
    page = api.get(r.headers["location"], follow_redirects=True)
    assert page.status_code == 200, page.text
    return csrf_of(page.text), creds[who]["person"]["person_id"]


def _decisions_by(platform: Platform, subject: str) -> list[str]:
    """The actions of every decision made for `subject`, oldest first."""
    platform.decision_logs.flush()
    with platform.session() as s:
        rows = s.scalars(select(DecisionLog.input).where(DecisionLog.subject_id == subject)).all()
    return [json.loads(i)["action"] for i in rows]


def _audit_reads(platform: Platform, subject: str) -> list[tuple[str, str]]:
    with platform.session() as s:
        rows = s.execute(
            select(AuditRecord.event_type, AuditRecord.detail).where(
                AuditRecord.subject_id == subject, AuditRecord.action == "read"
            )
        ).all()
    return [(e, d or "") for e, d in rows]


def test_the_auditor_first_paint_is_one_ledger_read_and_each_audit_read_is_audited(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """The first paint made six API calls, one of them a day of decision logs (up to
    1,000 documents) for a chart. It is now one ledger read (and the public checkpoint);
    the records and decision-log panels are one `audit.read` each, and each still leaves
    its audit record, carrying the page's filters."""
    _, me = _sign_in(api, creds, "auditor")
    decisions, records = len(_decisions_by(platform, me)), len(_audit_reads(platform, me))
    page = api.get("/console/auditor?event_type=person.signed_in&decision=deny")
    assert page.status_code == 200
    assert _decisions_by(platform, me)[decisions:] == ["ledger.read"]
    assert _audit_reads(platform, me)[records:] == []
    panels = re.findall(
        r'hx-get="(/console/auditor/panels/(?:records|decision-logs)[^"]*)"', page.text
    )
    assert len(panels) == 2, panels
    for url in panels:
        assert api.get(url.replace("&amp;", "&")).status_code == 200, url
    made = _decisions_by(platform, me)[decisions:]
    assert sorted(made) == ["audit.read", "audit.read", "ledger.read"]
    audited = _audit_reads(platform, me)[records:]
    assert sorted(e for e, _ in audited) == ["audit.decisions_read", "audit.records_read"]
    details = " ".join(d for _, d in audited)
    assert "event_type=person.signed_in" in details and "result=deny" in details
    assert "limit=1000" not in details


def test_the_decisions_chart_counts_every_decision_once_across_views(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """The panel reads only decisions newer than its last view: between two views, three
    allowed and one denied decision are made; the chart then equals the decision log."""
    console = _console(api)
    # The panel reads up to SETTLE before its clock (decision logs are buffered for up to
    # 200 ms); here every decision is in the buffer before the read that flushes it, so a
    # clock SETTLE ahead makes each view count up to the moment it reads.
    seen: list[datetime] = []

    def clock() -> datetime:
        seen.append(platform.now() + panels.SETTLE)
        return seen[-1]

    console.clock = clock
    _, me = _sign_in(api, creds, "auditor")
    records = len(_audit_reads(platform, me))
    first = api.get("/console/auditor/panels/decisions")
    assert first.status_code == 200, first.text
    prov = login(api, creds, "provider-transport")
    ent = login(api, creds, "enterprise-fintech")
    denied_before = decisions(platform, "audit.read")
    for _ in range(3):
        assert api.get("/v1/datasets", headers=prov).status_code == 200
    assert api.get("/v1/audit/records", headers=ent).status_code == 403
    # The log writer's own thread may still hold these in its transaction when the view
    # flushes (then they are counted by the next view, SETTLE later); this test reads with
    # no settling, so it waits until they are written.
    assert decisions(platform, "audit.read", at_least=denied_before + 1) > denied_before
    before = len(seen)
    second = api.get("/console/auditor/panels/decisions")
    assert second.status_code == 200, second.text
    # Each view was one audited read of the decision logs.
    assert [e for e, _ in _audit_reads(platform, me)[records:]] == ["audit.decisions_read"] * 2
    at = seen[before].astimezone(UTC)  # the clock the second view read
    first_hour = (at - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
    first_hour += timedelta(hours=1)
    until = at - timedelta(seconds=2)
    platform.decision_logs.flush()
    with platform.session() as s:
        rows = s.execute(
            select(DecisionLog.allow, func.count())
            .where(DecisionLog.ts >= first_hour, DecisionLog.ts < until)
            .group_by(DecisionLog.allow)
        ).all()
    counted: dict[bool, int] = {bool(allow): int(n) for allow, n in rows}
    shown_allowed = sum(int(n) for n in ALLOWED_BAR.findall(second.text))
    shown_denied = sum(int(n) for n in DENIED_BAR.findall(second.text))
    assert (shown_allowed, shown_denied) == (counted.get(True, 0), counted.get(False, 0))
    assert shown_denied >= 1 and shown_allowed >= 3


def test_the_security_admin_reads_no_audit_and_the_auditor_sees_compliance_runs(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """Separation of duties: the security admin's page and panels make no `audit.read`
    and the auditor's panels refuse them; compliance runs (a read action) are shown to
    the auditor with their trend, without the button that runs them."""
    csrf, admin = _sign_in(api, creds, "security-admin")
    for path in ("/console/admin", "/console/admin/panels/keys", "/console/panels/compliance"):
        assert api.get(path).status_code == 200, path
    assert api.get("/console/admin/panels/organisations").status_code == 200
    assert api.get("/console/auditor/panels/decisions").status_code == 403
    assert api.get("/console/auditor/panels/ledger").status_code == 403
    assert "audit.read" not in _decisions_by(platform, admin)
    ran = api.post("/console/compliance/run", data={"csrf": csrf}, follow_redirects=False)
    assert ran.status_code == 303
    ran = api.post("/console/compliance/run", data={"csrf": csrf}, follow_redirects=False)
    assert ran.status_code == 303
    with platform.session() as s:
        runs = list_runs(s, 10)
    assert len(runs) == 2
    _sign_in(api, creds, "auditor")
    panel = api.get("/console/panels/compliance")
    assert panel.status_code == 200, panel.text
    body = panel.text
    for run in runs:  # RFC 3339 with +00:00 today, with Z in the target style (i12-api)
        at = run["started_at"]
        assert at in body or at.replace("+00:00", "Z") in body, at
    assert f'aria-label="{i18n.t("zh-CN", "plot_compliance")}"' in body
    assert body.count("<polyline") == 2  # pass and fail over the runs
    assert "/compliance/run" not in body  # the auditor reads; only the admin runs them


def test_both_shapes_of_a_list_and_of_a_state_read_alike() -> None:
    """Lists and states as main serves them and as the target style (i12-api) will."""
    item = {"id": "c1", "status": "awaiting-approval"}
    for body in (
        [item],
        {"items": [item], "total": 1, "next": None},
        {"entries": [item], "next_start": None, "tree_size": 1},
        {"runs": [item], "trend": []},
    ):
        assert reads.items(body) == [item]
    assert reads.items(None) == [] and reads.items({"detail": "x"}) == []
    assert reads.total({"items": [], "total": 7, "next": None}) == 7
    assert reads.total([item]) is None
    assert reads.state({"status": "awaiting-approval"}) == "awaiting_approval"
    assert reads.state({"state": "awaiting_approval"}) == "awaiting_approval"
    assert reads.normalised(item)["state"] == "awaiting_approval"
    assert reads.digest({"sha256": "ab12"}) == reads.digest({"digest": "sha256:ab12"})
    nxt = {"items": [], "next": "/v1/audit/records?limit=50&cursor=abc"}
    assert reads.next_link(nxt) == ("/v1/audit/records", {"limit": "50", "cursor": "abc"})
    # Only ever an API path of this server: never a link elsewhere.
    assert reads.next_link({"next": "https://evil.example/v1/x"}) is None
    assert reads.next_link({"next": "//evil.example/v1/x"}) is None


def test_the_approve_path_follows_the_routes_the_server_offers(api: TestClient) -> None:
    """A server with only `/approve` is asked for it; one with `approve-run` and
    `approve-release` for the stage the provider saw (a run shown is never approved as a
    release). This app is either (before or after the i12-api merge)."""
    today = reads.Routes(api.app.routes)  # type: ignore[attr-defined]
    template = "/v1/computations/{computation_id}/approve"
    assert today.offers("POST", template) and not today.offers("GET", template)
    expected = "approve-run" if today.offers("POST", template + "-run") else "approve"
    assert verdict_route(today, "approve", "awaiting-approval") == expected
    older = FastAPI()

    @older.post(template)
    def approve(computation_id: str) -> None:
        """The deprecated approval of whichever stage is pending."""

    assert verdict_route(reads.Routes(older.routes), "approve", "review") == "approve"
    newer = FastAPI()

    @newer.post(template + "-run")
    def run(computation_id: str) -> None:
        """The target style's run approval."""

    @newer.post(template + "-release")
    def release(computation_id: str) -> None:
        """The target style's release approval."""

    target = reads.Routes(newer.routes)
    assert verdict_route(target, "approve", "awaiting_approval") == "approve-run"
    assert verdict_route(target, "approve", "awaiting-approval") == "approve-run"
    assert verdict_route(target, "approve", "review") == "approve-release"
    assert verdict_route(target, "approve", "running") == "approve"  # 409 from the server
    assert verdict_route(target, "reject", "review") == "reject"

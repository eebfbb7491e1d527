"""The console over the app (TestClient, SQLite and PostgreSQL): one decision and one ledger
entry per action, CSRF refusals, role separation, timeouts, the message catalogue."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from audit.decisions import DecisionLog
from gateway.console import i18n
from gateway.console.core import Console
from gateway.platform import Platform
from ledger.records import decode_leaf
from tests.helpers.i20_console import csrf_of, form_login

CSV = b"rider,phone,trips\nA,13812345678,3\nB,13987654321,5\n"
FORM = {
    "name": "Rider survey",
    "classification_path": "transport/buses/riders",
    "level": "general-3",
    "impact_object": "individual-rights",
    "impact_degree": "general",
    "share_attribute": "conditional",
    "open_attribute": "conditional",
    "source_agency": "Transport Bureau",
    "accountable_department": "Survey office",
    "pi": "on",
}


def _console(api: TestClient) -> Console:
    for route in api.app.routes:  # type: ignore[attr-defined]
        if getattr(route, "path", "") == "/console":
            console: Console = route.app.state.console  # type: ignore[attr-defined]
            return console
    raise AssertionError("console not mounted")


def _signed_in(api: TestClient, creds: dict[str, Any], who: str) -> str:
    r = form_login(api, creds[who]["person"])
    assert r.status_code == 303, r.text
    page = api.get(r.headers["location"], follow_redirects=True)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def _counts(platform: Platform, action: str) -> tuple[int, int]:
    platform.decision_logs.flush()
    with platform.session() as s:
        decisions = [json.loads(i) for i in s.scalars(select(DecisionLog.input))]
        size = platform.ledger.size(s)
    return sum(1 for d in decisions if d.get("action") == action), size


def _register(api: TestClient, csrf: str | None, **headers: str) -> Any:
    data = dict(FORM)
    if csrf is not None:
        data["csrf"] = csrf
    return api.post(
        "/console/provider/datasets",
        data=data,
        files={"file": ("riders.csv", CSV, "text/csv")},
        headers=headers,
        follow_redirects=False,
    )


def test_a_console_action_is_one_decision_and_one_ledger_entry(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    csrf = _signed_in(api, creds, "provider-transport")
    decisions, entries = _counts(platform, "dataset.register")
    r = _register(api, csrf)
    assert r.status_code == 303 and "/console/provider/datasets/" in r.headers["location"]
    after_decisions, after_entries = _counts(platform, "dataset.register")
    assert after_decisions - decisions == 1
    with platform.session() as s:
        added = [decode_leaf(e.leaf) for e in platform.ledger.entries(s, start=entries)]
    # One entry records the action, by the person, citing the one decision; the KMS's own
    # `key.stored` for the dataset's new data key is the platform's, as over the API.
    person = creds["provider-transport"]["person"]["person_id"]
    mine = [e for e in added if e["actor"] == person]
    assert [e["type"] for e in mine] == ["dataset.registered"]
    assert {e["type"] for e in added if e["actor"] != person} <= {"key.stored"}
    platform.decision_logs.flush()
    with platform.session() as s:
        allowed = s.scalars(
            select(DecisionLog.decision_id).where(DecisionLog.decision_id == mine[0]["decision_id"])
        ).all()
    assert len(allowed) == 1
    page = api.get(r.headers["location"])
    assert "phone" in page.text  # the scan report names the detected field


def test_csrf_and_cross_origin_posts_are_refused_and_write_nothing(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    csrf = _signed_in(api, creds, "provider-transport")
    before = _counts(platform, "dataset.register")
    assert _register(api, None).status_code == 403
    assert _register(api, "not-the-token").status_code == 403
    assert _register(api, csrf, origin="https://evil.example").status_code == 403
    assert _counts(platform, "dataset.register") == before
    assert _register(api, csrf).status_code == 303  # the same post with the token works


def test_an_enterprise_cannot_reach_provider_pages(api: TestClient, creds: dict[str, Any]) -> None:
    csrf = _signed_in(api, creds, "enterprise-fintech")
    assert api.get("/console/provider").status_code == 403
    assert api.get("/console/admin").status_code == 403
    assert api.get("/console/auditor").status_code == 403
    assert _register(api, csrf).status_code == 403
    r = api.get("/console/enterprise")
    assert r.status_code == 200
    assert "HttpOnly" in api.get("/console/login").headers.get("set-cookie", "HttpOnly")


def test_cookie_flags_and_security_headers(api: TestClient, creds: dict[str, Any]) -> None:
    r = form_login(api, creds["auditor"]["person"])
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    page = api.get("/console/auditor")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_wrong_totp_is_refused(api: TestClient, creds: dict[str, Any]) -> None:
    person = dict(creds["auditor"]["person"])
    person["totp_secret"] = "JBSWY3DPEHPK3PXP"  # another authenticator's secret
    r = form_login(api, person)
    assert r.status_code == 401
    assert api.get("/console/auditor", follow_redirects=False).status_code == 303


def test_idle_and_absolute_timeouts_end_the_session(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    console = _console(api)
    now = [platform.now()]
    console.store.clock = lambda: now[0]
    _signed_in(api, creds, "auditor")
    now[0] += console.store.idle - timedelta(seconds=1)
    assert api.get("/console/auditor", follow_redirects=False).status_code == 200
    now[0] += console.store.idle
    r = api.get("/console/auditor", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/console/login")
    # Absolute: requests every few minutes keep it alive only until the absolute limit.
    _signed_in(api, creds, "security-admin")
    step = console.store.idle / 2
    elapsed = timedelta(0)
    while elapsed + step < console.store.absolute:
        now[0] += step
        elapsed += step
        assert api.get("/console/admin", follow_redirects=False).status_code == 200
    now[0] += step
    assert api.get("/console/admin", follow_redirects=False).status_code == 303


def test_every_message_used_by_a_template_is_in_both_languages() -> None:
    folder = Path(__file__).resolve().parents[1] / "gateway" / "console"
    used: set[str] = set()
    code = [p for p in folder.glob("*.py") if p.name != "i18n.py"]
    for path in [*folder.glob("templates/*.html"), *code]:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+)["']""", path.read_text()))
    used |= {"provider", "enterprise", "auditor", "admin", "approve", "reject"}
    used |= {"plot_loss", "plot_accuracy"}  # results.py: t(f"plot_{key}")
    assert used - i18n.keys() == set()
    for key in i18n.keys():
        assert i18n.t("zh-CN", key) != i18n.t("en", key) or key in ("lo",)


def test_the_catalogue_files_have_the_same_keys_and_ship_in_the_wheel() -> None:
    root = Path(__file__).resolve().parents[1]
    folder = root / "gateway" / "console"
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = setuptools["package-data"]["gateway.console"]
    files = sorted((folder / "locales").glob("*.json"))
    assert sorted(f.stem for f in files) == sorted(i18n.LANGUAGES)
    for path in files:
        assert any(path.relative_to(folder).match(glob) for glob in shipped), path
        assert set(json.loads(path.read_text("utf-8"))) == i18n.keys(), path

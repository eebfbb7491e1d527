"""Passkeys in a real browser: chromium's virtual authenticator (CDP) against `pdx run`.

The person signs in with TOTP, adds a passkey on the security page, signs out, and signs
in again with the password and the passkey; axe-core stays clean on both pages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.i20_console import need_axe, need_chromium, totp_code
from tests.helpers.server import RealServer, start_server

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    # The RP id is `localhost` (an IP address cannot be one); the default origins follow
    # PDX_PORT, so the browser opens http://localhost:<port>.
    srv = start_server(tmp_path_factory.mktemp("passkeys"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def browser_page(server: RealServer) -> Iterator[tuple[Any, Any, str]]:
    axe = need_axe()
    path = need_chromium()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        context = browser.new_context(base_url=f"http://localhost:{server.port}", locale="zh-CN")
        context.add_init_script(path=str(axe))
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        cdp = context.new_cdp_session(pg)
        cdp.send("WebAuthn.enable", {"enableUI": False})
        made = cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                }
            },
        )
        yield pg, cdp, made["authenticatorId"]
        browser.close()


def axe_clean(page: Any) -> None:
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))"
    )
    bad = [v for v in found if v["impact"] in ("serious", "critical")]
    assert bad == [], bad


def test_a_person_enrols_a_passkey_and_signs_in_with_it(
    browser_page: tuple[Any, Any, str], server: RealServer
) -> None:
    page, cdp, authenticator = browser_page
    creds = json.loads((server.home / "demo-credentials.json").read_text())
    person = creds["security-admin"]["person"]
    page.goto("/console/login")
    page.get_by_label("用户名").fill(person["login"])
    page.get_by_label("密码").fill(person["password"])
    page.locator("#totp").fill(totp_code(person["totp_secret"]))
    page.get_by_role("button", name="登录", exact=True).click()
    page.wait_for_url("**/console/admin")
    page.get_by_role("link", name="账户安全").click()
    page.wait_for_url("**/console/security")
    assert page.locator("table").count() == 0
    axe_clean(page)
    page.get_by_role("button", name="登记通行密钥").click()
    page.locator("table tbody tr").first.wait_for()
    assert page.locator("table tbody tr").count() == 1
    assert "通行密钥已登记" in page.locator("main").inner_text()
    axe_clean(page)
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(stored["credentials"]) == 1
    # Sign out; sign in with the password and the passkey, no TOTP code.
    page.get_by_role("button", name="退出").click()
    page.wait_for_url("**/console/login")
    page.get_by_label("用户名").fill(person["login"])
    page.get_by_label("密码").fill(person["password"])
    axe_clean(page)
    page.get_by_role("button", name="改用通行密钥").click()
    page.wait_for_url("**/console/admin")
    assert person["login"] in page.locator("header").inner_text()
    used = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert used["credentials"][0]["signCount"] >= 1

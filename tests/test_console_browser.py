"""The console in a real browser (Playwright driving Debian's chromium) against `pdx run`.

Each role signs in with its TOTP code and does its main task; screenshots of each main
page go to docs/screenshots/; axe-core finds no serious or critical violation.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.api import login
from tests.helpers.i20_console import (
    SCREENSHOTS,
    need_axe,
    need_chromium,
    totp_code,
)
from tests.helpers.server import RealServer, start_server
from tests.test_api_contracts import active_contract, measure_csv, register_dataset

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

PURPOSE = "bus ridership research"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    home = tmp_path_factory.mktemp("console")
    srv = start_server(home, {"PDX_LEDGER_SEAL_INTERVAL_MS": "100"})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def creds(server: RealServer) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((server.home / "demo-credentials.json").read_text())
    return data


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = need_chromium()
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, server: RealServer) -> Iterator[Any]:
    axe = need_axe()
    context = browser.new_context(base_url=server.url, locale="zh-CN")
    context.add_init_script(path=str(axe))  # CDP-injected: the page's CSP does not apply
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


def sign_in(page: Any, person: dict[str, str]) -> None:
    page.goto("/console/login")
    page.get_by_label("用户名").fill(person["login"])
    page.get_by_label("密码").fill(person["password"])
    page.locator("#totp").fill(totp_code(person["totp_secret"]))
    page.get_by_role("button", name="登录").click()
    page.wait_for_load_state("networkidle")


def axe_clean(page: Any) -> None:
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))"
    )
    bad = [v for v in found if v["impact"] in ("serious", "critical")]
    assert bad == [], bad


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_provider_registers_a_dataset_and_sees_its_scan_report(
    page: Any, creds: dict[str, Any], tmp_path: Path
) -> None:
    sign_in(page, creds["provider-transport"]["person"])
    assert page.url.endswith("/console/provider")
    axe_clean(page)
    shot(page, "provider")
    csv = tmp_path / "riders.csv"
    csv.write_text("rider,phone,trips\nA,13812345678,3\nB,13987654321,5\nC,13711112222,2\n")
    page.get_by_label("名称").first.fill("Rider survey")
    page.locator("#classification_path").fill("transport/buses/riders")
    page.locator("#level").select_option("general-3")
    page.locator("#impact_object").select_option("individual-rights")
    page.locator("#source_agency").fill("Transport Bureau")
    page.locator("#accountable_department").fill("Survey office")
    page.locator("#pi").check()
    page.locator("#file").set_input_files(str(csv))
    page.get_by_role("button", name="上传并扫描").click()
    page.wait_for_url("**/console/provider/datasets/*")
    # The scan found the phone numbers: the field's detections are on the report.
    report = page.locator("main").inner_text()
    assert "phone" in report and "扫描报告" in report, report
    assert page.get_by_test_id("ledger-index").inner_text().strip().isdigit()
    axe_clean(page)


def test_enterprise_requests_a_computation_and_sees_the_result(
    page: Any, server: RealServer, creds: dict[str, Any]
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as api:
        prov = login(api, creds, "provider-transport")  # type: ignore[arg-type]
        ent = login(api, creds, "enterprise-fintech")  # type: ignore[arg-type]
        # Open general-1 data: the one grade released without DP, so the form needs no clip.
        ds = register_dataset(
            api,  # type: ignore[arg-type]
            prov,
            measure_csv(7, 60),
            "Ward readings",
            "general-1",
            open_attribute="open",
        )
        org = creds["provider-transport"]["org_id"]
        active_contract(api, ent, prov, org, [ds["id"]], PURPOSE)  # type: ignore[arg-type]
    sign_in(page, creds["enterprise-fintech"]["person"])
    assert page.url.endswith("/console/enterprise")
    # htmx live search narrows the catalogue.
    page.locator("#q").fill("Ward")
    expect(page.locator("#catalog")).to_contain_text("Ward readings")
    axe_clean(page)
    shot(page, "enterprise")
    # An enterprise cannot open a provider's pages.
    assert page.goto("/console/provider").status == 403
    page.goto("/console/enterprise/request?operator=stats.mean")
    page.locator(f"input[name=inputs][value='{ds['id']}']").check()
    page.locator("#purpose").fill(PURPOSE)
    page.locator("#p-columns").fill("systolic_bp")  # built from the operator's JSON Schema
    axe_clean(page)
    page.get_by_role("button", name="提交计算请求").click()
    page.wait_for_url("**/console/enterprise/computations/*")
    # htmx polls the progress block until the computation ends.
    expect(page.get_by_test_id("state")).to_have_text(
        re.compile("^(released|failed|rejected)$"), timeout=240_000
    )
    assert page.get_by_test_id("state").inner_text() == "released"
    page.locator("#view-result").click()
    table = page.get_by_test_id("result").inner_text()
    assert "mean(systolic_bp)" in table


def _grow_the_ledger(server: RealServer, creds: dict[str, Any]) -> None:
    """Register a dataset and wait until a newer checkpoint covers it (two blocks at least)."""
    with httpx.Client(base_url=server.url, timeout=60) as api:
        size = int(api.get("/v1/ledger/checkpoint").text.split("\n")[1])
        prov = login(api, creds, "provider-transport")  # type: ignore[arg-type]
        register_dataset(api, prov, measure_csv(11, 30), "Depot readings", "general-2")  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        while int(api.get("/v1/ledger/checkpoint").text.split("\n")[1]) <= size:
            assert time.monotonic() < deadline, "no newer checkpoint was sealed"
            time.sleep(0.1)


def _flip(text: str) -> str:
    """`text` (standard base64) with one bit of its 11th byte flipped."""
    raw = bytearray(base64.b64decode(text))
    raw[10] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def test_auditor_verifies_proofs_and_signatures_in_the_browser(
    page: Any, server: RealServer, creds: dict[str, Any]
) -> None:
    _grow_the_ledger(server, creds)
    sign_in(page, creds["auditor"]["person"])
    assert page.url.endswith("/console/auditor")
    page.wait_for_selector("button.consistency")  # the checkpoints panel arrived (htmx)
    page.wait_for_selector("[data-testid=compliance-runs]")
    axe_clean(page)
    shot(page, "auditor")
    button = page.locator("button.verify").last  # the oldest shown: sealed
    index = button.get_attribute("data-index")
    button.click()
    out = page.get_by_test_id(f"proof-{index}")
    expect(out).to_have_class(re.compile("^(ok|bad)$"))
    # Inclusion checked, and the checkpoint's Ed25519 signature too (chromium has it).
    assert out.get_attribute("class") == "ok", out.inner_text()
    assert out.inner_text() == "包含证明有效", out.inner_text()

    # A proof whose path was altered in transit fails in the browser.
    def tamper_path(route: Any) -> None:
        response = route.fetch()
        doc = response.json()
        first = bytearray(base64.b64decode(doc["hashes"][0]))
        first[0] ^= 1
        doc["hashes"][0] = base64.b64encode(bytes(first)).decode()
        route.fulfill(response=response, json=doc)

    page.route("**/console/auditor/proof*", tamper_path)
    button.click()
    expect(out).to_have_class("bad")
    page.unroute("**/console/auditor/proof*")

    # A checkpoint whose signature was altered fails, though the path itself is intact.
    def tamper_signature(route: Any) -> None:
        response = route.fetch()
        doc = response.json()
        text, _, sigs = doc["checkpoint"].rpartition("\n\n")
        lines = sigs.split("\n")
        log = doc["verifier_key"].split("+")[0]
        at = next(i for i, line in enumerate(lines) if line.startswith(f"\u2014 {log} "))
        name, _, sig = lines[at].rpartition(" ")
        lines[at] = f"{name} {_flip(sig)}"
        doc["checkpoint"] = text + "\n\n" + "\n".join(lines)
        route.fulfill(response=response, json=doc)

    page.route("**/console/auditor/proof*", tamper_signature)
    out.evaluate("e => { e.textContent = ''; e.className = ''; }")
    button.click()
    expect(out).to_have_class("bad")
    page.unroute("**/console/auditor/proof*")

    # Consistency of an older checkpoint with the newest: both signatures and the proof.
    older = page.locator("button.consistency").last
    height = older.get_attribute("data-height")
    older.click()
    cons = page.get_by_test_id(f"cons-{height}")
    expect(cons).to_have_class(re.compile("^(ok|bad)$"))
    assert cons.get_attribute("class") == "ok", cons.inner_text()

    def tamper_consistency(route: Any) -> None:
        response = route.fetch()
        doc = response.json()
        assert doc["hashes"], doc  # an older, smaller tree: the proof has hashes
        doc["hashes"][-1] = _flip(doc["hashes"][-1])
        route.fulfill(response=response, json=doc)

    page.route("**/console/auditor/consistency*", tamper_consistency)
    cons.evaluate("e => { e.textContent = ''; e.className = ''; }")
    older.click()
    expect(cons).to_have_class("bad")
    page.unroute("**/console/auditor/consistency*")

    # A browser without Ed25519 in WebCrypto: the proof is checked, the signature is said
    # not to be, never reported as verified.
    page.add_init_script(
        "const real = crypto.subtle.importKey.bind(crypto.subtle);"
        "crypto.subtle.importKey = (f, k, alg, ...rest) => (alg && alg.name === 'Ed25519')"
        " ? Promise.reject(new DOMException('no Ed25519', 'NotSupportedError'))"
        " : real(f, k, alg, ...rest);"
    )
    page.reload()
    button = page.locator(f"button.verify[data-index='{index}']")
    button.click()
    out = page.get_by_test_id(f"proof-{index}")
    expect(out).to_have_class("ok")
    assert "此浏览器不支持 Ed25519，签名未检查" in out.inner_text()


def test_security_admin_diffs_and_activates_a_policy_change(
    page: Any, creds: dict[str, Any]
) -> None:
    sign_in(page, creds["security-admin"]["person"])
    assert page.url.endswith("/console/admin")
    page.wait_for_selector("[data-testid=compliance-runs]")  # the panels arrived (htmx)
    axe_clean(page)
    shot(page, "admin")
    before = int(page.get_by_test_id("revision").inner_text())
    source = page.locator("#source")
    source.fill(source.input_value() + "\n# reviewed in the console\n")
    page.get_by_role("button", name="查看差异").click()
    page.wait_for_selector("[data-testid=diff]")
    assert "+# reviewed in the console" in page.get_by_test_id("diff").inner_text()
    page.get_by_role("button", name="激活").click()
    page.wait_for_url("**/console/admin")
    assert int(page.get_by_test_id("revision").inner_text()) == before + 1


def test_a_cross_site_form_post_is_refused(
    browser: Any, server: RealServer, creds: dict[str, Any], tmp_path: Path
) -> None:
    """A page on another origin auto-submits the sign-out form while a provider is signed
    in: SameSite=Strict keeps the cookie home and the CSRF check refuses the post, so the
    provider is still signed in afterwards."""
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    sign_in(page, creds["provider-health"]["person"])
    assert page.url.endswith("/console/provider")
    evil = tmp_path / "evil.html"
    evil.write_text(
        f'<form id="f" method="post" action="{server.url}/console/logout">'
        '<input name="csrf" value="guess"></form><script>document.getElementById("f")'
        ".submit()</script>"
    )
    page.goto(evil.as_uri())
    page.wait_for_url("**/console/login")  # no session travelled with the cross-site post
    page.goto("/console/provider")
    assert page.url.endswith("/console/provider")  # the real session is untouched
    context.close()

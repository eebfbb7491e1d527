"""The enterprise's job key made and used in a real browser (Playwright, Debian's chromium)
against `pdx run`: the key is generated in the page (BigInt Paillier in a worker), only n
and its fingerprint are posted, the providers approve over the API, and the values the page
decrypts and shows equal what `pdx_client.jobkeys` opens from the same ciphertext with the
same key (read out of the page's storage). The server's database and $PDX_HOME hold no p, q
or λ of that key; without the key in the browser, the page says the result cannot be read.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import phe  # type: ignore[import-untyped]
import pytest
from pdx_client.jobkeys import JobKey, fingerprint_of

from sandbox._stats_query import StatsQuery
from sandbox.noise_shares import NoisePlan
from tests.helpers.api import login
from tests.helpers.i15_keys import files_under, search
from tests.helpers.server import RealServer, start_server
from tests.test_api_contracts import active_contract, measure_csv, register_dataset
from tests.test_console_browser import axe_clean, shot, sign_in
from tests.test_console_jobkey_js import encrypted_aggregate

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

PURPOSE = "ward blood pressure research"
PROVIDERS = ("provider-transport", "provider-health")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    srv = start_server(tmp_path_factory.mktemp("console-jobkey"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def creds(server: RealServer) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((server.home / "demo-credentials.json").read_text())
    return data


@pytest.fixture
def page(server: RealServer) -> Iterator[Any]:
    from tests.helpers.i20_console import need_axe, need_chromium

    path, axe = need_chromium(), need_axe()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        context = browser.new_context(base_url=server.url, locale="zh-CN")
        context.add_init_script(path=str(axe))
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        yield pg
        context.close()
        browser.close()


def _wait(api: httpx.Client, headers: dict[str, str], comp_id: str, *states: str) -> str:
    deadline = time.monotonic() + 240
    while True:
        state = str(api.get(f"/v1/computations/{comp_id}", headers=headers).json()["state"])
        if state in states:
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.5)


def _approve(api: httpx.Client, providers: list[dict[str, str]], comp_id: str) -> None:
    """Both hospitals approve the run, then (after the release review) the release."""
    for stage, then in (("run", "review"), ("release", "released")):
        for headers in providers:
            r = api.post(f"/v1/computations/{comp_id}/approve-{stage}", headers=headers, json={})
            assert r.status_code == 200, r.text
        assert _wait(api, providers[0], comp_id, then, "failed", "rejected") == then


def test_the_enterprise_decrypts_its_result_in_the_browser_with_its_own_key(
    page: Any, server: RealServer, creds: dict[str, Any]
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        api: Any = http  # the helpers are typed for TestClient; httpx.Client speaks the same
        ent = login(api, creds, "enterprise-fintech")
        providers, inputs = [], []
        for seed, who in enumerate(PROVIDERS):
            prov = login(api, creds, who)
            # general-4: DP (ε 0.5), minimum cohort 10, run and release approvals.
            text = measure_csv(seed + 3, 90)
            ds = register_dataset(api, prov, text, f"Wards {seed}", "general-4")
            active_contract(api, ent, prov, creds[who]["org_id"], [ds["id"]], PURPOSE)
            providers.append(prov)
            inputs.append(ds["id"])

    sent: list[str] = []  # every request the page makes: URL and body
    page.on("request", lambda r: sent.append(r.url + "\n" + (r.post_data or "")))
    sign_in(page, creds["enterprise-fintech"]["person"])
    page.goto("/console/enterprise/request?operator=stats.variance")
    for ds_id in inputs:
        page.locator(f"input[name=inputs][value='{ds_id}']").check()
    page.locator("#purpose").fill(PURPOSE)
    page.locator("#p-columns").fill("systolic_bp")
    page.locator("#p-group_by").fill("ward")
    page.locator("#p-groups").fill("A, B, C")
    page.locator("#p-clip-lo").fill("60")
    page.locator("#p-clip-hi").fill("240")
    assert page.locator("#jobkey-on").is_checked()  # on by default for statistics
    status = page.locator("#jobkey-status")
    expect(status).to_have_class(re.compile("^(ok|bad)$"), timeout=300_000)
    assert status.get_attribute("class") == "ok", status.inner_text()
    key_ms = int(page.locator("#jobkey").get_attribute("data-key-ms"))
    print(f"browser job key (2048-bit Paillier) generated in {key_ms} ms")
    axe_clean(page)

    with page.expect_request(
        lambda r: r.method == "POST" and r.url.endswith("/console/enterprise/request")
    ) as posted:
        page.get_by_role("button", name="提交计算请求").click()
    page.wait_for_url("**/console/enterprise/computations/*")
    comp_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#jobkey-here")).to_have_class("ok")
    axe_clean(page)
    record = page.evaluate(
        "id => JSON.parse(localStorage.getItem('pdx.jobkey.computation.' + id))", comp_id
    )
    p, q = int(record["p"], 16), int(record["q"], 16)
    n = p * q
    assert n.bit_length() == 2048 and p.bit_length() == q.bit_length() == 1024
    assert int(record["n"], 16) == n and record["fingerprint"] == fingerprint_of("paillier", n)

    # The form post carried the public half only: n and the fingerprint the SDK computes.
    body = posted.value.post_data
    form = parse_qs(body)
    assert {k: v for k, v in form.items() if k.startswith("job_key")} == {
        "job_key": ["browser"],
        "job_key.n": [format(n, "x")],
        "job_key.fingerprint": [fingerprint_of("paillier", n)],
    }
    for secret in (p, q):
        assert format(secret, "x") not in body and str(secret) not in body
    # The computation page offers the key as a download: the same p and q.
    with page.expect_download() as download:
        page.locator("#jobkey-download").click()
    saved = json.loads(Path(download.value.path()).read_text())
    assert (int(saved["p"], 16), int(saved["q"], 16)) == (p, q)

    with httpx.Client(base_url=server.url, timeout=60) as http:
        _approve(http, providers, comp_id)
    expect(page.get_by_test_id("state")).to_have_text("released", timeout=60_000)
    with page.expect_response(lambda r: r.url.endswith(f"/{comp_id}/result.json")) as fetched:
        page.locator("#view-result").click()
    result = fetched.value.json()
    assert result["output"]["format"] == "pdx-encrypted-aggregate/1"
    box = page.locator("#sealed-result")
    expect(box).to_have_attribute("data-state", re.compile("^(ok|bad|missing)$"), timeout=60_000)
    assert box.get_attribute("data-state") == "ok", page.locator("#sealed-status").inner_text()
    print(f"decrypted in the browser in {box.get_attribute('data-decrypt-ms')} ms")
    axe_clean(page)
    shot(page, "enterprise_jobkey")

    # What the page shows is what the SDK opens from the same ciphertext with the same key.
    pk = phe.PaillierPublicKey(n)
    expected = JobKey(pk, phe.PaillierPrivateKey(pk, p, q)).decrypt(result)
    shown = page.evaluate(
        "() => [...document.querySelectorAll('#sealed-table tbody tr')].map(tr => ["
        "tr.dataset.group, tr.dataset.measure, tr.querySelector('[data-value]').dataset.value])"
    )
    want = [
        [g["group"], k, "" if v is None else v]
        for g in expected["groups"]
        for k, v in g["values"].items()
    ]
    assert want, expected
    assert [[g, k, float(v) if v else ""] for g, k, v in shown] == want
    assert any(k == "variance(systolic_bp)" for _, k, _ in want)
    facts = page.locator("#sealed-facts").inner_text()
    assert all(s in facts for s in expected["suppressed"]), (facts, expected["suppressed"])

    # A histogram under the same key (laid out as the coordinator lays it out, served in
    # place of the API's answer): the same cells as the SDK's, and a chart per group.
    query = StatsQuery.from_params(
        {"op": "stats.histogram", "columns": ["systolic_bp"], "group_by": "ward",
         "groups": ["A", "B"], "bins": 4, "range": [80.0, 180.0]}
    )  # fmt: skip
    plan = NoisePlan.build(
        query.fields(), clip=None, epsilon=0.5, delta=0.0, mechanism="laplace", providers=2,
        per_partition=1,
    )  # fmt: skip
    cells = [[3, 14, 30, 21, 9, 0], [-2, 6, 11, 25, 4, 1], [0, 2, -1, 3, 0, 1]]
    histogram = encrypted_aggregate(
        JobKey(pk, phe.PaillierPrivateKey(pk, p, q)), query, [c for g in cells for c in g],
        min_cohort=10, dp={"epsilon": 0.5, "delta": 0.0, "mechanism": "laplace"},
        noise=plan.params(),
    )  # fmt: skip
    expected = JobKey(pk, phe.PaillierPrivateKey(pk, p, q)).decrypt(json.loads(histogram))
    page.route(
        f"**/{comp_id}/result.json",
        lambda route: route.fulfill(status=200, content_type="application/json", body=histogram),
    )
    page.reload()
    expect(box).to_have_attribute("data-state", re.compile("^(ok|bad)$"))
    assert box.get_attribute("data-state") == "ok", page.locator("#sealed-status").inner_text()
    shown = page.evaluate(
        "() => [...document.querySelectorAll('#sealed-table tbody tr')].map(tr => ["
        "tr.dataset.group, tr.querySelector('[data-value]').dataset.value])"
    )
    want = [
        [g["group"], "" if c is None else c] for g in expected["groups"] for c in g["histogram"]
    ]
    assert [[g, float(v) if v else ""] for g, v in shown] == want
    assert any(c == "" for _, c in want) and any(c != "" for _, c in want)  # both kinds shown
    charts = page.get_by_test_id("result-charts").locator("svg")
    assert charts.count() == len(expected["groups"]) == 2  # group "__other__" all suppressed
    assert charts.first.locator("rect").count() == 6  # under, four bins, over
    axe_clean(page)
    page.unroute(f"**/{comp_id}/result.json")

    # No private key material on the platform: p, q, λ in no file of $PDX_HOME (the
    # database included); the same search finds the public n there (the control).
    lam = (p - 1) * (q - 1)
    needles = {"p": p, "q": q, "lambda": lam, "lambda-lcm": lam // math.gcd(p - 1, q - 1)}
    files = list(files_under(server.home))
    assert any(f.suffix in (".db", ".sqlite") or "db" in f.name for f in files), files
    assert search(files, needles) == []
    assert any(hit.startswith("n: hex") for hit in search(files, {"n": n}))

    # A browser without the key: the page says so (there is no plaintext to fall back on).
    page.evaluate(
        "id => { for (const k of Object.keys(localStorage)) {"
        " if (k.startsWith('pdx.jobkey.')) localStorage.removeItem(k); } }",
        comp_id,
    )
    page.reload()
    expect(box).to_have_attribute("data-state", "missing")
    assert "本浏览器中没有此计算的私钥" in page.locator("#sealed-status").inner_text()
    assert page.locator("#sealed-table tbody tr").count() == 0
    axe_clean(page)
    # Nothing the page sent, from sign-in to here, carried p or q.
    assert any(format(n, "x") in x for x in sent)  # control: the public n was sent, and seen
    assert not [x for x in sent for k in (p, q) if format(k, "x") in x or str(k) in x]

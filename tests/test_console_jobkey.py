"""The console's browser-held job key over the app (SQLite and PostgreSQL): the request form
offers it for statistics, a request carries only its public half into `job_key`, a missing
or wrong key writes nothing, and the result page holds no value (the browser fetches the
encrypted aggregate once, through result.json, and only the key's holder opens it)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from pdx_client.jobkeys import JobKey

from gateway.console import reads
from gateway.platform import Platform
from tests.helpers.api import login
from tests.helpers.i20_console import csrf_of, form_login
from tests.test_api_computations import ledger_types, wait_for
from tests.test_api_contracts import active_contract, measure_csv, register_dataset

PURPOSE = "bus ridership research"


def _signed_in(api: TestClient, creds: dict[str, Any], who: str) -> str:
    r = form_login(api, creds[who]["person"])
    assert r.status_code == 303, r.text
    page = api.get(r.headers["location"], follow_redirects=True)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def _open_dataset(api: TestClient, creds: dict[str, Any]) -> str:
    """Open general-1 data under an active contract: released without DP or approvals."""
    prov = login(api, creds, "provider-transport")
    ent = login(api, creds, "enterprise-fintech")
    ds = register_dataset(
        api, prov, measure_csv(7, 60), "Ward readings", "general-1", open_attribute="open"
    )
    active_contract(api, ent, prov, creds["provider-transport"]["org_id"], [ds["id"]], PURPOSE)
    return str(ds["id"])


def _form(csrf: str, ds: str, **extra: str) -> dict[str, str]:
    return {
        "csrf": csrf,
        "operator": "stats.mean",
        "inputs": ds,
        "purpose": PURPOSE,
        "p.columns": "systolic_bp",
        **extra,
    }


def _count(api: TestClient, ent: dict[str, str]) -> int:
    return len(reads.items(api.get("/v1/computations", headers=ent, params={"limit": 200}).json()))


def test_the_request_form_offers_a_browser_key_for_statistics_only(
    api: TestClient, creds: dict[str, Any]
) -> None:
    _signed_in(api, creds, "enterprise-fintech")
    page = api.get("/console/enterprise/request?operator=stats.variance")
    assert page.status_code == 200, page.text
    assert 'name="job_key" value="browser" checked' in page.text
    assert 'data-bits="2048"' in page.text  # the SDK's MIN_PAILLIER_BITS
    assert 'name="job_key.n"' in page.text and 'name="job_key.fingerprint"' in page.text
    for script in ("paillier.js", "jobkey.js", "jobkey-worker.js"):
        assert api.get(f"/console/static/{script}").status_code == 200
    # Federated learning runs under the platform's keys: no option there.
    page = api.get("/console/enterprise/request?operator=fl.logreg")
    assert page.status_code == 200 and 'id="jobkey"' not in page.text


def test_a_request_carries_the_public_half_and_the_result_page_holds_no_value(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    ds = _open_dataset(capi, creds)
    csrf = _signed_in(capi, creds, "enterprise-fintech")
    key = JobKey.generate()
    public = key.public()
    r = capi.post(
        "/console/enterprise/request",
        data=_form(
            csrf, ds, job_key="browser", **{"job_key.n": public["n"],
                                              "job_key.fingerprint": public["fingerprint"]}
        ),
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303, r.text
    assert "/console/enterprise/computations/" in r.headers["location"], r.headers
    comp_id = r.headers["location"].rsplit("/", 1)[1]
    ent = login(capi, creds, "enterprise-fintech")
    comp = capi.get(f"/v1/computations/{comp_id}", headers=ent).json()
    assert comp["security_model"]["job_key"]["fingerprint"] == key.fingerprint
    assert comp["security_model"]["job_key"]["key_bits"] == 2048
    page = capi.get(r.headers["location"])
    assert f'data-fingerprint="{key.fingerprint}"' in page.text and "jobkey-held" in page.text
    assert wait_for(capi, ent, comp_id, "released", "failed")["state"] == "released"
    # The result page names the ciphertext's source and shows nothing of it; it took no
    # delivery either (the browser's fetch is the one delivery).
    page = capi.get(f"/console/enterprise/computations/{comp_id}/result")
    assert page.status_code == 200, page.text
    assert 'id="sealed-result"' in page.text and "mean(systolic_bp)" not in page.text
    assert f'data-src="/console/enterprise/computations/{comp_id}/result.json"' in page.text
    assert "computation.result_delivered" not in [t for _, t in ledger_types(platform, comp_id)]
    body = capi.get(f"/console/enterprise/computations/{comp_id}/result.json")
    assert body.status_code == 200 and body.headers["content-type"] == "application/json"
    result = body.json()
    assert result["output"]["format"] == "pdx-encrypted-aggregate/1"
    assert "mean(systolic_bp)" not in body.text  # no plaintext from the server
    opened = key.decrypt(result)
    assert opened["groups"][0]["values"]["mean(systolic_bp)"] > 60
    delivered = [t for _, t in ledger_types(platform, comp_id)]
    assert delivered.count("computation.result_delivered") == 1
    # Another key cannot open it (what a browser without this key would face).
    other = JobKey.generate()
    try:
        other.decrypt(result)
    except Exception as exc:  # noqa: BLE001 - the SDK's JobKeyError
        assert "another job key" in str(exc)
    else:
        raise AssertionError("a different key opened the result")


def test_a_browser_key_option_without_a_key_or_with_a_wrong_one_writes_nothing(
    api: TestClient, creds: dict[str, Any]
) -> None:
    ds = _open_dataset(api, creds)
    csrf = _signed_in(api, creds, "enterprise-fintech")
    ent = login(api, creds, "enterprise-fintech")
    before = _count(api, ent)
    # The option on and no key (no script ran): refused here, not sent under the platform's key.
    r = api.post(
        "/console/enterprise/request", data=_form(csrf, ds, job_key="browser"),
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303 and r.headers["location"].endswith("operator=stats.mean")
    page = api.get(r.headers["location"])
    assert "此浏览器没有生成任务密钥" in page.text
    # A fingerprint that is not the key's: the API refuses it (422) and the page says so.
    key = JobKey.generate().public()
    wrong = "sha256:" + "0" * 64
    r = api.post(
        "/console/enterprise/request",
        data=_form(csrf, ds, job_key="browser", **{"job_key.n": key["n"],
                                                   "job_key.fingerprint": wrong}),
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303 and r.headers["location"].endswith("operator=stats.mean")
    page = api.get(r.headers["location"])
    assert "fingerprint" in page.text and "sha256 of the canonical public key" in page.text
    assert _count(api, ent) == before

"""Leaks and edges (issue 11) attacked through the API: names, lists, nesting and integers."""

from __future__ import annotations

import json
import re
import types
from typing import Any, Union, get_args, get_origin

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from gateway.platform import Platform
from tests.conftest import login

PROBLEM = "application/problem+json"
ID_A = "11010519491231002X"  # GB 11643-1999 published example (valid check digit)
MOBILE = "13812345678"


def metadata(name: str, level: str, open_attribute: str = "conditional", **over: Any) -> str:
    doc: dict[str, Any] = {
        "name": name,
        "classification_path": ["transport", "public transit", "counts"],
        "level": level,
        "impact_object": (
            "public-interest" if level in ("important", "core") else "individual-rights"
        ),
        "impact_degree": "minor",
        "source_agency": "Municipal Transport Bureau",
        "accountable_department": "Transit Data Office",
        "pi": False,
        "sensitive_pi": False,
        "share_attribute": "conditional",
        "open_attribute": open_attribute,
    }
    doc.update(over)
    return json.dumps(doc, ensure_ascii=False)


def register(api: TestClient, headers: dict[str, str], content: bytes, meta: str) -> Any:
    return api.post(
        "/v1/datasets",
        headers=headers,
        files={
            "metadata": (None, meta, "application/json"),
            "file": ("data.csv", content, "text/csv"),
        },
    )


def assert_problem(r: Any, status: int | None = None) -> dict[str, Any]:
    if status is None:
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    else:
        assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body: dict[str, Any] = r.json()
    assert body["status"] == r.status_code
    return body


# -- column names are scanned like values -------------------------------------------------

LEAKY_HEADER = f"联系人{ID_A}电话{MOBILE}"


def test_a_header_holding_an_id_number_and_a_phone_grades_its_field_and_is_never_shown(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    provider = login(api, creds, "provider-transport")
    body = f"station,{LEAKY_HEADER}\nA,1\nB,2\nC,3\n".encode()

    # general-1 is refused: the name held an ID number (general-4), 就高从严.
    r = register(api, provider, body, metadata("leaky header", "general-1", "open"))
    problem = assert_problem(r, 422)
    assert problem["type"].endswith("/level-below-content")
    assert problem["required_level"] == "general-4"
    assert ID_A not in r.text and MOBILE not in r.text

    # Declared honestly, it registers; the name is masked everywhere it is shown.
    meta = metadata("leaky header", "general-4", "open", pi=True, sensitive_pi=True)
    r = register(api, provider, body, meta)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["suggested_level"] == "general-4"
    field = ds["fields"][1]
    assert field["level"] == "general-4" and field["sensitive_pi"] is True
    assert {"id_number", "mobile"} <= set(field["detections"])
    assert "column name" in field["reason"]

    viewers = ["enterprise-fintech", "provider-health", "auditor", "security-admin"]
    for who in ["provider-transport", *viewers]:
        headers = login(api, creds, who)
        for path in ("/v1/datasets?limit=500", f"/v1/datasets/{ds['id']}"):
            r = api.get(path, headers=headers)
            assert ID_A not in r.text and MOBILE not in r.text, (who, path)
    r = api.get(f"/v1/datasets/{ds['id']}/preview", headers=provider)
    assert ID_A not in r.text and MOBILE not in r.text
    # Nor is it stored in the catalogue, the ledger or the audit trail in plaintext.
    r = api.get("/v1/ledger/entries", headers=login(api, creds, "auditor"))
    assert r.status_code == 200 and ID_A not in r.text
    with platform.engine.connect() as conn:
        from sqlalchemy import text

        for table in ("dataset_fields", "datasets", "audit_records"):
            dump = repr(conn.execute(text(f"SELECT * FROM {table}")).all())
            assert ID_A not in dump and MOBILE not in dump, table


def test_formatted_numbers_in_a_header_are_found_too(
    api: TestClient, creds: dict[str, Any]
) -> None:
    provider = login(api, creds, "provider-transport")
    body = b"station,tel 138 1234 5678\nA,1\nB,2\n"
    r = register(api, provider, body, metadata("spaced phone header", "general-1", "open"))
    problem = assert_problem(r, 422)
    assert problem["required_level"] == "general-3"
    assert "1234" not in r.text


# -- listings are filtered by the detail's policy --------------------------------------------


def test_listing_shows_only_what_detail_allows_and_counts_only_that(
    api: TestClient, creds: dict[str, Any]
) -> None:
    provider = login(api, creds, "provider-transport")
    combos = [
        ("general-1", "open"),
        ("general-2", "conditional"),
        ("general-2", "closed"),
        ("important", "conditional"),
        ("important", "closed"),
        ("core", "conditional"),
        ("core", "closed"),
    ]
    for level, open_attribute in combos:
        r = register(
            api,
            provider,
            b"station,count\nA,1\nB,2\n",
            metadata(f"{level} {open_attribute}", level, open_attribute),
        )
        assert r.status_code == 201, r.text

    enterprise = login(api, creds, "enterprise-fintech")
    auditor = login(api, creds, "auditor")
    all_ids = {d["id"] for d in api.get("/v1/datasets?limit=500", headers=auditor).json()["items"]}
    assert len(all_ids) == len(combos)
    detail_ok = {
        i for i in all_ids if api.get(f"/v1/datasets/{i}", headers=enterprise).status_code == 200
    }
    # The attack needs something the detail refuses; the finding is `important`.
    assert detail_ok and detail_ok != all_ids

    r = api.get("/v1/datasets?limit=500", headers=enterprise)
    assert r.status_code == 200
    assert {d["id"] for d in r.json()["items"]} == detail_ok
    assert r.json()["total"] == len(detail_ok)

    for level in ("important", "core"):
        r = api.get(f"/v1/datasets?level={level}", headers=enterprise)
        assert r.status_code == 200
        for d in r.json()["items"]:
            assert d["id"] in detail_ok
            assert api.get(f"/v1/datasets/{d['id']}", headers=enterprise).status_code == 200

    # Pages walk the visible datasets only, with no gap and no repeat.
    paged: list[str] = []
    url: str | None = "/v1/datasets?limit=1"
    while url is not None:
        page = api.get(url, headers=enterprise).json()
        assert page["total"] == len(detail_ok)
        paged += [d["id"] for d in page["items"]]
        url = page["next"]
        assert len(paged) <= len(detail_ok)
    assert sorted(paged) == sorted(detail_ok)


# -- edges: integers and nesting -------------------------------------------------------------


def _is_int_annotation(annotation: Any) -> bool:
    """Whether a parameter is an integer (int, int | None, Optional[int])."""
    if annotation is int:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_int_annotation(a) for a in get_args(annotation))
    return False


def _routes(api: TestClient) -> list[APIRoute]:
    return [r for r in api.app.routes if isinstance(r, APIRoute)]  # type: ignore[attr-defined]


def _int_params(route: APIRoute) -> tuple[list[str], list[str]]:
    ints_path = [
        f.alias for f in route.dependant.path_params if _is_int_annotation(f.field_info.annotation)
    ]
    query: list[str] = []

    def walk(d: Any) -> None:
        query.extend(f.alias for f in d.query_params if _is_int_annotation(f.field_info.annotation))
        for sub in d.dependencies:
            walk(sub)

    walk(route.dependant)
    return ints_path, query


def _fill(path: str, ints: set[str], name: str, value: str) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key == name:
            return value
        return "0" if key in ints else "x"

    return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", sub, path)


@pytest.mark.parametrize("value", [str(10**30), "-1", "1e999", "-" + str(10**30)])
def test_every_integer_parameter_refuses_out_of_range_values_as_problem(
    api: TestClient, creds: dict[str, Any], value: str
) -> None:
    who = ("auditor", "provider-transport", "enterprise-fintech")
    tokens = [login(api, creds, name) for name in who]
    tried = 0
    for route in _routes(api):
        ints_path, ints_query = _int_params(route)
        if not ints_path and not ints_query:
            continue
        method = sorted(route.methods)[0]
        for name in ints_path + ints_query:
            in_path = name in ints_path
            url = _fill(route.path_format, set(ints_path), name if in_path else "", value)
            params = {q: "0" for q in ints_query if q != name}
            if not in_path:
                params[name] = value
            for headers in tokens:
                r = api.request(method, url, params=params, headers=headers)
                assert r.status_code < 500, (method, url, params, r.status_code, r.text[:300])
                assert_problem(r)
                tried += 1
    assert tried >= 30  # the ledger's, the listings' offsets, preview rows ...


def test_huge_ledger_indexes_are_stable_problems(api: TestClient, creds: dict[str, Any]) -> None:
    auditor = login(api, creds, "auditor")
    for path in (
        f"/v1/ledger/entries/{10**30}",
        f"/v1/ledger/blocks/{10**30}",
        f"/v1/ledger/entries?start={10**30}",
        f"/v1/ledger/proof/inclusion?index=0&tree_size={10**30}",
    ):
        body = assert_problem(api.get(path, headers=auditor), 422)
        assert body["type"].endswith("/integer-out-of-range"), body
    # Within int64 but past any page: no overflow when the page end is computed.
    r = api.get(f"/v1/ledger/blocks?start={2**63 - 1}", headers=auditor)
    assert_problem(r, 422)


DEEP = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_every_body_route_refuses_deep_nesting_as_problem(
    api: TestClient, creds: dict[str, Any], content_type: str | None
) -> None:
    headers = login(api, creds, "security-admin")
    if content_type is not None:
        headers["Content-Type"] = content_type
    tried = 0
    for route in _routes(api):
        for method in route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            ints = set(_int_params(route)[0])
            url = _fill(route.path_format, ints, "", "")
            for body in (DEEP, DEEP_OBJECT):
                r = api.request(method, url, content=body, headers=headers)
                assert r.status_code < 500, (method, url, r.status_code, r.text[:300])
                problem = assert_problem(r, 422)
                # A stable type, not FastAPI's generic "error parsing the body".
                assert problem["type"].endswith("/json-too-deep"), (method, url, problem)
                tried += 1
    assert tried >= 20


def test_deep_json_to_an_open_route_is_refused_before_authentication(api: TestClient) -> None:
    r = api.post("/v1/organisations", content=DEEP, headers={"Content-Type": "application/json"})
    body = assert_problem(r, 422)
    assert body["type"].endswith("/json-too-deep")


def test_deep_metadata_part_is_a_problem_and_leaves_nothing(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    provider = login(api, creds, "provider-transport")
    deep = '{"name":"deep","x":' + "[" * 10_000 + "]" * 10_000 + "}"
    r = register(api, provider, b"station,count\nA,1\n", deep)
    body = assert_problem(r, 422)
    assert body["type"].endswith("/json-too-deep")
    r = api.get("/v1/datasets", headers=provider)
    assert r.json() == {"items": [], "total": 0, "next": None}
    # Shallow nesting within the limit is an ordinary metadata error, not a depth one.
    shallow = metadata("shallow", "general-1", "open", extra=[[[[1]]]])
    body = assert_problem(register(api, provider, b"station,count\nA,1\n", shallow))
    assert not body["type"].endswith("/json-too-deep")

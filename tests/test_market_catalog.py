"""The catalog: Chinese full-text search (jieba tokens, FTS5 / PostgreSQL), filters, pages, DSP."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from exchange.market import search as search_index
from exchange.market.search import facet_terms
from gateway.platform import Platform
from tests.helpers.api import assert_problem, login
from tests.helpers.i17_market import list_product, offer, party, product_body
from tests.test_market_flow import register


def _search(api: TestClient, reader: dict[str, str], **params: Any) -> dict[str, Any]:
    r = api.get("/v1/catalog", params=params, headers=reader)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _ids(page: dict[str, Any]) -> set[str]:
    return {item["id"] for item in page["items"]}


def test_chinese_search_filters_and_pages(api: TestClient, creds: dict[str, Any]) -> None:
    prov = party(api, creds, "provider-transport")
    cond = register(api, prov.headers, "ridership", "general-2", "conditional")
    stops = register(api, prov.headers, "stops", "general-1", "open")
    ridership = list_product(api, prov, product_body([cond["id"]]))
    clinics = list_product(
        api,
        prov,
        product_body(
            [cond["id"]],
            title="医院门诊就诊量统计",
            description="各区医院门诊就诊人次的月度统计，按科室汇总。",
            domain="health",
            keywords=["门诊", "医疗"],
            offers=[offer(operators=["stats.mean"], purposes=["卫生规划"], price="5.00")],
        ),
    )
    download = offer(delivery="download", operators=[], price_model="free", price="0")
    open_stops = list_product(
        api,
        prov,
        product_body(
            [stops["id"]],
            title="公共交通站点开放数据",
            description="全市公交站点位置与线路，开放下载。",
            keywords=["站点"],
            delivery_modes=["download"],
            offers=[download],
        ),
    )
    draft = api.post(
        "/v1/market/products",
        headers=prov.headers,
        json=product_body([cond["id"]], title="公共交通草稿"),
    )
    assert draft.status_code == 201
    reader = login(api, creds, "enterprise-fintech")

    def search(**params: Any) -> dict[str, Any]:
        return _search(api, reader, **params)

    assert _ids(search(q="公共交通")) == {ridership["id"], open_stops["id"]}  # not the draft
    assert _ids(search(q="客流")) == {ridership["id"]}
    assert _ids(search(q="门诊")) == {clinics["id"]}
    assert _ids(search(q="交通 开放")) == {open_stops["id"]}  # every word must match
    # Words, not substrings: "交通客" straddles 公共交通|客流 (a LIKE scan would match it).
    assert search(q="交通客")["total"] == 0
    assert search(q="Municipal Transport")["total"] == 3  # the provider's name is indexed too
    assert _ids(search(domain="health")) == {clinics["id"]}
    assert _ids(search(grade="general-1")) == {open_stops["id"]}
    assert search(provider="Municipal Transport Bureau")["total"] == 3
    assert search(provider=prov.org_id)["total"] == 3
    assert search(provider="Municipal Health Commission")["total"] == 0
    assert _ids(search(operator="stats.mean")) == {ridership["id"], clinics["id"]}
    assert _ids(search(max_price="6")) == {clinics["id"], open_stops["id"]}
    item = search(q="门诊")["items"][0]
    assert item["provider_name"] == "Municipal Transport Bureau" and item["min_price"] == "5.00"
    assert item["@type"] == "dcat:Dataset" and item["odrl:hasPolicy"][0]["@type"] == "odrl:Offer"
    assert item["listed_at"].endswith("Z")
    # Pages: totals on each, a relative `next` until the last.
    seen: list[str] = []
    page = search(limit=2)
    assert (
        page["total"] == 3 and len(page["items"]) == 2 and page["next"].startswith("/v1/catalog?")
    )
    seen += [i["id"] for i in page["items"]]
    r = api.get(page["next"], headers=reader)
    last = r.json()
    assert last["total"] == 3 and last["next"] is None
    seen += [i["id"] for i in last["items"]]
    assert sorted(seen) == sorted({ridership["id"], clinics["id"], open_stops["id"]})
    assert_problem(api.get("/v1/catalog?cursor=%25%25", headers=reader), 422)
    # The Dataspace Protocol's catalog request is answered from the same search.
    r = api.post(
        "/v1/dsp/catalog/request",
        headers=reader,
        json={"@type": "CatalogRequestMessage", "filter": {"q": "公共交通"}},
    )
    assert r.status_code == 200, r.text
    dsp = r.json()
    assert dsp["@type"] == "dcat:Catalog" and dsp["pdx:total"] == 2
    assert {d["id"] for d in dsp["dcat:dataset"]} == {ridership["id"], open_stops["id"]}
    assert_problem(api.post("/v1/dsp/catalog/request", headers=reader, json={"@type": "x"}), 422)


def test_words_with_domain_and_grade_narrow_inside_the_index(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """Domain, grade and state are index terms (counted there without a lookup per hit):
    the totals agree with the products' own fields, and words a provider writes never act
    as a filter term."""
    prov = party(api, creds, "provider-transport")
    cond = register(api, prov.headers, "ridership", "general-2", "conditional")
    stops = register(api, prov.headers, "stops", "general-1", "open")
    ridership = list_product(api, prov, product_body([cond["id"]]))
    health_term = facet_terms(domain="health")[0]
    forged = list_product(
        api,
        prov,
        product_body(
            [stops["id"]],
            title="公共交通站点开放数据",
            description=f"全市公交站点位置 {health_term} {facet_terms(grade='general-2')[0]}",
            delivery_modes=["download"],
            offers=[offer(delivery="download", operators=[], price_model="free", price="0")],
        ),
    )
    draft = api.post("/v1/market/products", headers=prov.headers, json=product_body([cond["id"]]))
    assert draft.status_code == 201
    reader = login(api, creds, "enterprise-fintech")

    def search(**params: Any) -> dict[str, Any]:
        return _search(api, reader, **params)

    both = {ridership["id"], forged["id"]}
    assert _ids(search(q="公共交通")) == both and search(q="公共交通")["total"] == 2
    only_cond = search(q="公共交通", grade="general-2")
    assert _ids(only_cond) == {ridership["id"]} and only_cond["total"] == 1
    only_open = search(q="公共交通", grade="general-1", domain="transport")
    assert _ids(only_open) == {forged["id"]} and only_open["total"] == 1
    # The forged description names the health domain's and general-2's terms: no match.
    assert search(q="公共交通", domain="health")["total"] == 0
    assert search(q="站点", grade="general-2")["total"] == 0
    # The same filters with one the index does not hold (a price cap) count by lookup.
    assert search(q="公共交通", grade="general-2", max_price="1000")["total"] == 1
    if platform.engine.dialect.name == "sqlite":
        # An index made before facets existed is remade from the listed products.
        with platform.session() as s, s.begin():
            s.execute(text(f"DROP TABLE {search_index.FTS_TABLE}"))
            s.execute(
                text(f"CREATE VIRTUAL TABLE {search_index.FTS_TABLE} USING fts5(product_id "
                     "UNINDEXED, tokens, tokenize = 'unicode61 remove_diacritics 0')")
            )  # fmt: skip
        search_index._ready.discard(platform.engine)  # as a restarted process
        assert _ids(search(q="公共交通")) == both
        assert search(q="公共交通", grade="general-1")["total"] == 1

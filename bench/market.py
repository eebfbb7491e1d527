"""Market bench: catalog search p99 at 10^5 listings, negotiations/s, settling 10^5 meter records.

In-process, on the domain functions the routers call (no HTTP). The catalog is searched
with Chinese queries through the FTS index (SQLite FTS5 here; PostgreSQL full text when
PDX_BENCH_MARKET_DB names a PostgreSQL URL), never LIKE. Settlement is checked: the
statements must equal the meter sums to the fen.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

import crypto
from bench import report
from exchange.accounts import Caller, OrgKind, Role
from exchange.market import negotiation as xneg
from exchange.market import parties as xparty
from exchange.market import products as xprod
from exchange.market import settlement as xset
from exchange.market.catalog import CatalogQuery, search_catalog
from exchange.market.models import Agreement, MeterRecord, Product
from exchange.market.search import index_many, index_tokens
from exchange.models import Dataset, Organisation
from gateway.platform import build_platform, initialise
from gateway.routers.market import platform_signer
from gateway.settings import Settings

BATCH = 5_000
PLACES = ["上海", "浦东", "徐汇", "深圳", "南山", "杭州", "西湖", "北京", "海淀", "成都"]
SUBJECTS = [
    "公共交通",
    "客流",
    "地铁",
    "公交",
    "出租车",
    "门诊",
    "医院",
    "药品",
    "电力",
    "用电",
    "燃气",
    "供水",
    "气象",
    "降雨",
    "企业",
    "纳税",
    "社保",
    "就业",
    "教育",
    "学校",
    "空气质量",
    "交通事故",
    "停车",
    "充电桩",
    "旅游",
    "酒店",
    "物流",
    "快递",
]
KINDS = ["统计数据", "月度报表", "分布数据", "开放数据", "指数", "画像", "趋势分析"]
DOMAINS = ["transport", "health", "energy", "environment", "economy", "society"]
GRADES = ["general-1", "general-2", "general-3"]
OPERATORS = ["stats.count", "stats.mean", "stats.sum", "stats.histogram"]


def _caller(client: str, org: str, kind: OrgKind, role: Role) -> Caller:
    return Caller(client, org, kind, frozenset({role}))


def _dataset(org: str, now: datetime, open_data: bool) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()), "owner_org": org, "name": f"bench {uuid.uuid4().hex[:8]}",
        "description": None, "classification_path": ["transport", "transit", "trips"],
        "level": "general-1" if open_data else "general-2", "impact_object": "public-interest",
        "impact_degree": "minor", "processing_degree": "raw", "source_agency": "bench",
        "source_system": None, "accountable_department": "bench", "pi": False,
        "sensitive_pi": False, "important_data_catalogue": False,
        "share_attribute": "conditional", "open_attribute": "open" if open_data else "conditional",
        "graded_at": now, "graded_by": "bench", "next_review_at": now + timedelta(days=300),
        "custody": "platform", "size_bytes": 1, "rows": 1000, "sha256": "0" * 64, "sm3": "0" * 64,
        "data_key_id": "", "scan": {"min_level": "general-1"}, "profile": {},
        "registered_at": now, "registered_by": "bench",
    }  # fmt: skip


def _listings(platform: Any, org: str, org_name: str, n: int, now: datetime) -> float:
    """Insert n listed products with jieba tokens and their FTS rows; returns seconds."""
    rng = random.Random(7)
    started = time.perf_counter()
    with platform.session() as s, s.begin():
        ds = _dataset(org, now, False)
        s.execute(insert(Dataset), [ds])
        for start in range(0, n, BATCH):
            rows = []
            for i in range(start, min(n, start + BATCH)):
                title = rng.choice(PLACES) + rng.choice(SUBJECTS) + rng.choice(KINDS)
                desc = "、".join(rng.sample(SUBJECTS, 3)) + "相关的" + rng.choice(KINDS)
                rows.append({
                    "id": str(uuid.uuid4()), "provider_org": org, "provider_name": org_name,
                    "title": title, "description": desc, "domain": rng.choice(DOMAINS),
                    "keywords": [], "datasets": [ds["id"]], "grade": rng.choice(GRADES),
                    "open_data": 0, "provenance": {"statement": "bench", "evidence": []},
                    "rights": {"held": ["holding"], "granted": ["processing_use"]},
                    "delivery_modes": ["computation"], "state": "listed", "precheck": None,
                    "min_price_fen": rng.randrange(0, 100_000),
                    "search_tokens": index_tokens(title, desc, org_name),
                    "created_by": "bench", "created_at": now,
                    "listed_at": now + timedelta(microseconds=i), "ledger_index": None,
                })  # fmt: skip
            s.execute(insert(Product), rows)
            index_many(s, [Product(**r) for r in rows])
    return time.perf_counter() - started


def _searches(platform: Any, runs: int) -> tuple[list[float], int]:
    rng = random.Random(11)
    timings: list[float] = []
    hits = 0
    with platform.session() as s:
        for i in range(runs + 20):
            query = CatalogQuery(q=rng.choice(SUBJECTS) + " " + rng.choice(PLACES), limit=20)
            if i % 3 == 0:
                query = CatalogQuery(q=rng.choice(SUBJECTS), domain=rng.choice(DOMAINS), limit=20)
            started = time.perf_counter()
            with s.begin():
                page = search_catalog(s, query, path="/v1/catalog")
            if i >= 20:  # warm-up first
                timings.append((time.perf_counter() - started) * 1000)
                hits += page["total"]
    return timings, hits


def _negotiations(platform: Any, n: int, prov: Caller, ent: Caller, now: datetime) -> float:
    """Offer to finalized, n times, each step its own transaction; returns per second."""
    trail = platform.trail
    keys = {}
    with platform.session() as s, s.begin():
        for c, code in ((prov, "91310000MA1FL7XQ6F"), (ent, "91440300MA5G0YPQ3T")):
            body = xparty.VerifyParty(credit_code=_valid_code(code))
            xparty.verify_party(
                s,
                _caller("bench-op", c.org_id, OrgKind.OPERATOR, Role.SYSTEM_ADMIN),
                c.org_id,
                body,
                now=now,
                trail=trail,
            )  # noqa: E501
            key = crypto.generate_key_pair("ed25519")
            out = xparty.register_key(
                s, c, c.org_id,
                xparty.KeyCreate(algorithm="ed25519", public_key=base64.b64encode(key.public_bytes()).decode()),  # noqa: E501
                now=now, trail=trail,
            )  # fmt: skip
            keys[c.org_id] = (key, out.keys[-1].id)
        ds = _dataset(prov.org_id, now, True)
        s.execute(insert(Dataset), [ds])
        body = xprod.ProductCreate.model_validate({
            "title": "开放公交站点数据", "description": "bench", "domain": "transport",
            "datasets": [ds["id"]], "provenance": {"statement": "bench provenance",
            "evidence": [{"kind": "notice", "reference": "bench",
                          "digest": "sha256:" + "0" * 64}]},
            "rights": {"held": ["holding"], "granted": ["processing_use"]},
            "delivery_modes": ["computation"],
            "offers": [{"operators": ["stats.count"], "purposes": ["bench purpose"],
                        "price_model": "per_computation", "price": "1.00"}],
        })  # fmt: skip
        product = xprod.create_product(s, prov, body, now=now, trail=trail)
        s.get(Product, product.id).state = "listed"  # type: ignore[union-attr]
    offer_id = product.offers[0].id

    def sign(org: str, digest: str) -> xneg.SignIn:
        key, key_id = keys[org]
        return xneg.SignIn(
            key_id=key_id, signature=base64.b64encode(key.sign(digest.encode())).decode()
        )  # noqa: E501

    started = time.perf_counter()
    for _ in range(n):
        with platform.session() as s, s.begin():
            neg = xneg.start_negotiation(
                s, ent, xneg.NegotiationCreate(offer_id=offer_id, purpose="bench purpose"),
                now=now, trail=trail,
            )  # fmt: skip
        terms = xneg.Terms.model_validate(neg.terms)
        with platform.session() as s, s.begin():
            xneg.counter_offer(s, prov, neg.id, terms, now=now, trail=trail)
        with platform.session() as s, s.begin():
            digest = xneg.accept(s, ent, neg.id, now=now, trail=trail).agreement_digest or ""
        with platform.session() as s, s.begin():
            xneg.agree(s, prov, neg.id, sign(prov.org_id, digest), now=now, trail=trail)
        with platform.session() as s, s.begin():
            xneg.verify(s, ent, neg.id, sign(ent.org_id, digest), now=now, trail=trail)
        with platform.session() as s, s.begin():
            xneg.finalize(s, prov, neg.id, now=now, trail=trail)
    return n / (time.perf_counter() - started)


def _valid_code(prefix: str) -> str:
    chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    total = sum(chars.index(c) * w for c, w in zip(prefix[:17], weights, strict=True))
    return prefix[:17] + chars[(31 - total % 31) % 31]


def _settlement(
    platform: Any, n: int, prov: Caller, ent: Caller, now: datetime
) -> tuple[float, bool]:  # noqa: E501
    """Settle n meter records over 100 agreements; (seconds, statements equal the meter)."""
    rng = random.Random(5)
    at = now - timedelta(hours=1)
    agreements = [str(uuid.uuid4()) for _ in range(100)]
    with platform.session() as s, s.begin():
        s.execute(insert(Agreement), [
            {"id": a, "origin": "negotiation", "negotiation_id": None, "product_id": None,
             "consumer_org": ent.org_id, "provider_org": prov.org_id, "datasets": [],
             "purpose": "bench", "dua_reference": None, "legal_basis": None,
             "terms": {"price_model": "per_1k_rows", "price": "1.23"}, "document": None,
             "digest": None, "signatures": {}, "state": "terminated", "not_before": at,
             "not_after": now, "used_computations": 0, "used_rows": 0, "used_epsilon": 0.0,
             "created_at": at, "terminated_at": None, "ledger_index": None}
            for a in agreements
        ])  # fmt: skip
        for start in range(0, n, BATCH):
            s.execute(insert(MeterRecord), [
                {"id": str(uuid.uuid4()), "agreement_id": rng.choice(agreements),
                 "computation_id": str(uuid.uuid4()), "consumer_org": ent.org_id,
                 "provider_org": prov.org_id, "at": at + timedelta(microseconds=i),
                 "computations": 1, "rows": 1000, "epsilon": 0.0,
                 "amount_fen": rng.randrange(1, 500), "statement_id": None, "ledger_index": None}
                for i in range(start, min(n, start + BATCH))
            ])  # fmt: skip
        expected = s.scalar(
            select(func.sum(MeterRecord.amount_fen)).where(MeterRecord.statement_id.is_(None))
        )  # noqa: E501
    op = _caller("bench-op", prov.org_id, OrgKind.OPERATOR, Role.SYSTEM_ADMIN)
    started = time.perf_counter()
    with platform.session() as s, s.begin():
        out = xset.settle(
            s, op, xset.SettlementCreate(period_start=at - timedelta(seconds=1), period_end=now),
            fee_rate=Decimal("0.05"), sign=platform_signer(platform, s), now=now,
            trail=platform.trail,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    gross = sum(
        int(Decimal(st["statement"]["gross"]) * 100)
        for st in out["statements"] if st["kind"] == "agreement"
    )  # fmt: skip
    return seconds, gross == expected and out["meter_records"] == n


def run(quick: bool = False) -> Path:
    listings = 2_000 if quick else 100_000
    negotiations = 10 if quick else 100
    meters = 10_000 if quick else 100_000
    work = report.WORK / "market"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    url = os.environ.get("PDX_BENCH_MARKET_DB") or f"sqlite:///{work / 'pdx.db'}"
    platform = build_platform(Settings(home=work / "home", database_url=url))
    initialise(platform)
    now = datetime.now(UTC)
    with platform.session() as s:
        orgs = {o.name: o for o in s.scalars(select(Organisation))}
    provider = orgs["Municipal Transport Bureau"]
    enterprise = orgs["Lakeside Fintech Ltd"]
    prov = _caller("bench-prov", provider.id, OrgKind.PROVIDER, Role.DATA_PROVIDER)
    ent = _caller("bench-ent", enterprise.id, OrgKind.ENTERPRISE, Role.DATA_CONSUMER)
    load_s = _listings(platform, provider.id, provider.name, listings, now)
    timings, hits = _searches(platform, 200)
    per_s = _negotiations(platform, negotiations, prov, ent, now)
    settle_s, reconciled = _settlement(platform, meters, prov, ent, datetime.now(UTC))
    backend = platform.engine.dialect.name
    platform.engine.dispose()
    p99 = sorted(timings)[max(0, int(len(timings) * 0.99) - 1)]
    return report.write(
        "market",
        {
            "listings": listings, "searches": len(timings), "search_hits": hits,
            "backend": backend, "index": "FTS5" if backend == "sqlite" else "GIN tsvector",
            "listing_load_s": round(load_s, 1), "negotiations": negotiations,
            "meter_records": meters, "settlement_reconciled": reconciled,
            "loadavg": os.getloadavg(),
        },
        {
            "catalog_search_p50_ms": report.Metric(round(report.median(timings), 2), "ms"),
            "catalog_search_p99_ms": report.Metric(round(p99, 2), "ms", "< 50", p99 < 50),
            "negotiations_per_s": report.Metric(round(per_s, 1), "negotiations/s"),
            "settlement_1e5_meter_records_s": report.Metric(
                round(settle_s, 2), "s", "< 5", settle_s < 5 and reconciled
            ),
        },
    )  # fmt: skip

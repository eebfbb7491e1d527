"""Panels htmx loads after a page's first paint: charts, checkpoints, keys, compliance runs.

A main page answers with what its role looks at first; slower or bulkier parts arrive
as these fragments. Each is the API read it shows (its decision, and for audit reads its
audit record). The ledger-growth and decisions charts read incrementally: a session keeps
what it has already read (the person's own earlier, audited reads) and asks only for
what is newer, so a busy log does not make every view re-read a day of decisions.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from markupsafe import Markup

from gateway.console import plots, reads
from gateway.console.core import Ctx, signed_in
from gateway.console.pages_oversight import allowed

router = APIRouter()
Auditor = Annotated[Ctx, Depends(signed_in("auditor"))]
Admin = Annotated[Ctx, Depends(signed_in("admin"))]
Oversight = Annotated[Ctx, Depends(signed_in("auditor", "admin"))]

BLOCK_PAGE = 500  # blocks per call (the old shape returns up to 1,000 whatever is asked)
OLD_BLOCK_PAGE = 1000
MAX_PAGES = 5  # calls per panel load; a longer backlog is caught up on the next load
MAX_POINTS = 2000
DECISION_PAGE = 1000
# Decision logs are buffered for up to 200 ms before they are written: a read stops this
# far behind the clock so that a later read does not miss what was still in the buffer.
SETTLE = timedelta(seconds=2)
WINDOW = timedelta(hours=24)
CHECKPOINTS = 8


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _chart(ctx: Ctx, svg: Markup) -> Response:
    return ctx.render("_chart.html", chart=svg)


# -- ledger growth ------------------------------------------------------------------------


async def _growth_points(ctx: Ctx) -> list[tuple[float, float]]:
    """(time, tree size) per block, read from the block after the last one this session saw."""
    held = ctx.session.cache.get("growth")
    start = held["next"] if held else 0
    points: list[tuple[float, float]] = list(held["points"]) if held else []
    path, query = "/v1/ledger/blocks", {"start": str(start), "limit": str(BLOCK_PAGE)}
    for _ in range(MAX_PAGES):
        body = await ctx.get_json(path, query=query)
        got = reads.items(body)
        for b in got:
            at = reads.when(b.get("time"))
            if at is not None:
                points.append((at.timestamp(), float(b["tree_size"])))
            start = int(b["height"]) + 1
        following = reads.next_link(body)
        if following is not None:
            path, query = following
        elif len(got) >= OLD_BLOCK_PAGE:  # the old shape: a bare list, paged by `start`
            path, query = "/v1/ledger/blocks", {"start": str(start)}
        else:
            break
    while len(points) > MAX_POINTS:
        points = points[::2]
    # Another request of this session may have moved on meanwhile: keep the first to land.
    if ctx.session.cache.get("growth") is held:
        ctx.session.cache["growth"] = {"next": start, "points": points}
    return points


@router.get("/auditor/panels/ledger")
async def ledger(ctx: Auditor) -> Response:
    """Ledger growth, and the newest blocks' checkpoints.

    Each checkpoint can be checked against the newest in the browser (signatures and
    consistency).
    """
    points = await _growth_points(ctx)
    labels = ("", "")
    if points:
        first, last = (datetime.fromtimestamp(p[0], UTC) for p in (points[0], points[-1]))
        labels = (first.strftime("%Y-%m-%d %H:%M"), last.strftime("%Y-%m-%d %H:%M"))
    held = ctx.session.cache.get("growth")
    newest = int(held["next"]) if held else 0
    body = await ctx.get_json(
        "/v1/ledger/blocks", query={"start": max(0, newest - CHECKPOINTS), "limit": CHECKPOINTS}
    )
    blocks = list(reversed(reads.items(body)[-CHECKPOINTS:]))
    chart = plots.line(ctx.t("plot_growth"), points, labels)
    return ctx.render("_ledger.html", chart=chart, blocks=blocks)


# -- decisions allowed / denied per hour ------------------------------------------------------


async def _decision_counts(ctx: Ctx) -> dict[str, tuple[int, int]]:
    """Per hour of the last 24: (allowed, denied).

    Reads only decisions newer than the ones this session already counted (each read
    is an audited `audit.read`).
    """
    now = ctx.console.clock().astimezone(UTC)
    until = now - SETTLE
    first_hour = (now - WINDOW).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    held = ctx.session.cache.get("decisions")
    fresh = held is None or held["upto"] < first_hour
    since: datetime = first_hour if held is None or fresh else held["upto"]
    counts: Counter[tuple[str, bool]] = Counter()
    if held is not None and not fresh:
        counts = Counter(held["counts"])
    upto = since
    if until > since:
        got, complete = await ctx.get_all(
            "/v1/audit/decisions",
            {"since": _iso(since), "until": _iso(until), "limit": DECISION_PAGE},
            pages=MAX_PAGES,
        )
        last = got[-1].get("timestamp") if got and not complete else None
        for d in got:
            at = str(d.get("timestamp") or "")
            if at and at != last:  # a cut inside one millisecond: re-read from there
                counts[(at[:13], allowed(d))] += 1
        upto = until if complete else (reads.when(last) or since)
    keep = first_hour.isoformat()[:13]
    counts = Counter({k: v for k, v in counts.items() if k[0] >= keep})
    if ctx.session.cache.get("decisions") is held:
        ctx.session.cache["decisions"] = {"upto": upto, "counts": counts}
    hours = sorted({h for h, _ in counts})
    return {h: (counts[(h, True)], counts[(h, False)]) for h in hours}


@router.get("/auditor/panels/decisions")
async def decisions(ctx: Auditor) -> Response:
    buckets = [(h[11:13] + ":00", a, d) for h, (a, d) in (await _decision_counts(ctx)).items()]
    legend = (ctx.t("allowed"), ctx.t("denied"))
    return _chart(ctx, plots.bars(ctx.t("plot_decisions"), buckets, legend))


# -- compliance runs and their trend (auditor: compliance.read; admin: also runs them) ------


async def _runs(ctx: Ctx) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Runs newest first and the trend oldest first, from either shape of the API."""
    body = await ctx.get_json("/v1/compliance/runs", query={"limit": 30})
    runs = reads.items(body)
    trend = reads.items(body.get("trend")) if isinstance(body, dict) and "trend" in body else []
    if not trend and ctx.console.routes.offers("GET", "/v1/compliance/trend"):
        trend = reads.items(await ctx.get_json("/v1/compliance/trend", query={"runs": 30}))
    runs.sort(key=lambda r: str(r.get("started_at", "")), reverse=True)
    trend.sort(key=lambda r: str(r.get("started_at", "")))
    return runs[:10], trend


def _count(point: dict[str, Any], *names: str) -> float:
    """A run's count under its old (`pass`) or typed-model (`passed`) name."""
    for name in names:
        if isinstance(point.get(name), int | float):
            return float(point[name])
    return 0.0


@router.get("/panels/compliance")
async def compliance(ctx: Oversight) -> Response:
    runs, trend = await _runs(ctx)
    points = [
        (float(i), _count(p, "pass", "passed"), _count(p, "fail", "failed"))
        for i, p in enumerate(trend)
    ]
    labels = (
        (str(trend[0].get("started_at", ""))[:16], str(trend[-1].get("started_at", ""))[:16])
        if trend
        else ("", "")
    )
    chart = plots.lines(
        ctx.t("plot_compliance"),
        [
            (ctx.t("passed"), "#1a7f37", [(x, p) for x, p, _ in points]),
            (ctx.t("failed"), "#b42318", [(x, f) for x, _, f in points]),
        ],
        labels,
    )
    return ctx.render("_compliance.html", runs=runs, trend=trend, chart=chart)


# -- security admin: keys and organisations ---------------------------------------------------


@router.get("/admin/panels/keys")
async def keys(ctx: Admin) -> Response:
    found = reads.items(await ctx.get_json("/v1/kms/keys"))
    return ctx.render("_keys.html", keys=[reads.normalised(k) for k in found[:100]])


@router.get("/admin/panels/organisations")
async def organisations(ctx: Admin) -> Response:
    return ctx.render("_orgs.html", orgs=reads.items(await ctx.get_json("/v1/organisations")))

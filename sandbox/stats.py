"""HE statistics: count, sum, mean, variance, histogram over several providers' CSV files.

Protocol (one `StatsJob`):

1. The result party creates the job keys: Paillier (2048-bit, packed pdx path) for
   count/sum/mean/variance, whose sums must be exact; CKKS (`CkksParams.WIDE`) for
   histograms, whose counts are vectors and are rounded exactly after decryption. A query
   may choose the other scheme (`scheme=`).
2. Each provider's node runs the vetted operator (`node_partial`) in its sandbox on its
   CSV: per group, the row count and per column the count, sum and sum of squares of the
   (fixed-point, optionally clipped) values, or the per-bin counts. It encrypts that
   partial vector under the job public key and returns only the envelope.
3. The coordinator adds the envelopes (ciphertexts only).
4. The result party decrypts the sum and hands it to the release gate, which checks the
   cohort on the aggregated counts, suppresses small groups/bins, applies DP noise and
   holds the output for provider review as the obligations require.

Exactness: values are read as decimals and encoded as integers value·10^decimals
(`decimals` = 6 by default; more digits are rounded half-to-even), so Paillier sums
and sums of squares are exact integers and means/variances exact rationals until the
final float conversion.

Group-by: on a low-cardinality column whose values the query declares (`groups`, at most
`MAX_GROUPS`); rows with another value fall in `__other__`. The layout of every
partial therefore comes from the query alone, never from a provider's data. A node whose
group-by column has more than `MAX_GROUPS` distinct values refuses
(`GroupCardinalityExceeded`): the column is not a grouping column.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from sandbox._registry import ProviderInput
from sandbox._stats_query import (
    ALL,
    MAX_BINS,
    MAX_COLUMNS,
    MAX_GROUPS,
    OTHER,
    StatOp,
    StatsQuery,
)
from sandbox.coordinator import (
    SECURITY_MODEL,
    Decrypted,
    JobPublic,
    ProviderJob,
    ResultParty,
    seal_vector,
)
from sandbox.errors import GroupCardinalityExceeded, InvalidParameters
from sandbox.isolation import OperatorContext, Sandbox, run_parallel
from sandbox.paillier import encode_fixed
from sandbox.release import (
    Candidate,
    GatedAggregate,
    Measure,
    Partition,
    Release,
    ReleaseGate,
    ReleaseObligations,
    measures_by_name,
    unique,
)

__all__ = [
    "ALL",
    "MAX_BINS",
    "MAX_COLUMNS",
    "MAX_GROUPS",
    "OTHER",
    "GroupStats",
    "StatOp",
    "StatsJob",
    "StatsQuery",
    "StatsResult",
    "candidate",
    "finish",
    "node_partial",
    "partial_vector",
    "run_stats",
]

_MISSING = frozenset({"", "na", "nan", "null", "none"})
_PLAIN_DECIMAL = re.compile(r"-?\d+(\.\d+)?")


# -- node side (runs inside the sandbox) ------------------------------------------------------


def _rows(paths: Sequence[Path], needed: Sequence[str]) -> Iterator[list[str]]:
    """Yield the `needed` columns of every row of every input CSV, in that order."""
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                continue
            index = {name.strip(): i for i, name in enumerate(header)}
            missing = [c for c in needed if c not in index]
            if missing:
                raise InvalidParameters("input has no column named " + ", ".join(missing))
            idx = [index[c] for c in needed]
            width = max(idx, default=-1)
            for row in reader:
                if not row:
                    continue
                if len(row) <= width:
                    raise InvalidParameters("input has a short row")
                yield [row[i] for i in idx]


def _fixed(text: str, decimals: int) -> int:
    """Exact value·10^decimals of a decimal string (fast path for plain decimals)."""
    if _PLAIN_DECIMAL.fullmatch(text):
        whole, _, frac = text.partition(".")
        if len(frac) <= decimals:
            neg = whole.startswith("-")
            mag = int(whole.lstrip("-") or "0") * int(10**decimals) + int(
                (frac + "0" * decimals)[:decimals] or "0"
            )
            return -mag if neg else mag
    try:
        return encode_fixed(text, decimals)
    except InvalidParameters:
        raise InvalidParameters("input has a non-numeric value in a numeric column") from None


def partial_vector(query: StatsQuery, paths: Sequence[Path]) -> list[int] | list[float]:
    """One node's partial aggregate, laid out as `query.layout()` says."""
    keys = query.group_keys
    slot = {g: i for i, g in enumerate(keys)}
    fields = query.fields()
    width = len(fields)
    needed = list(query.columns) + ([query.group_by] if query.group_by else [])
    seen: set[str] = set()
    if query.op == "stats.histogram":
        return _histogram(query, paths, needed, slot, width, seen)
    out = [0] * (len(keys) * width)
    d = query.decimals
    lo = hi = None
    if query.clip is not None:
        lo, hi = (
            encode_fixed(Decimal(repr(query.clip[0])), d),
            encode_fixed(Decimal(repr(query.clip[1])), d),
        )
    ncol = len(query.columns) if query.op != "stats.count" else 0
    step = 3 if query.op == "stats.variance" else 2
    for row in _rows(paths, needed):
        base = _group_base(query, row, slot, width, seen)
        out[base] += 1
        for j in range(ncol):
            text = row[j].strip()
            if text.lower() in _MISSING:
                continue
            v = _fixed(text, d)
            if lo is not None and hi is not None:
                v = min(max(v, lo), hi)
            k = base + 1 + j * step
            out[k] += 1
            out[k + 1] += v
            if step == 3:
                out[k + 2] += v * v
    return out


def _group_base(
    query: StatsQuery, row: list[str], slot: dict[str, int], width: int, seen: set[str]
) -> int:
    if query.group_by is None:
        return 0
    g = row[-1].strip()
    if g not in seen:
        seen.add(g)
        if len(seen) > MAX_GROUPS:
            raise GroupCardinalityExceeded(
                "group-by column has too many distinct values", max_groups=MAX_GROUPS
            )
    return slot.get(g, slot[OTHER]) * width


def _histogram(
    query: StatsQuery,
    paths: Sequence[Path],
    needed: list[str],
    slot: dict[str, int],
    width: int,
    seen: set[str],
) -> list[float]:
    assert query.range is not None and query.bins is not None
    lo, hi = query.range
    bins = query.bins
    out = np.zeros(len(slot) * width)
    for row in _rows(paths, needed):
        text = row[0].strip()
        if text.lower() in _MISSING:
            continue
        try:
            v = float(text)
        except ValueError:
            raise InvalidParameters("input has a non-numeric value in a numeric column") from None
        if not math.isfinite(v):
            continue
        base = _group_base(query, row, slot, width, seen)
        if v < lo:
            k = 0
        elif v > hi:
            k = bins + 1
        else:  # numpy's convention: the last bin includes hi
            k = 1 + min(int((v - lo) / (hi - lo) * bins), bins - 1)
        out[base + k] += 1.0
    return [float(x) for x in out]


def node_partial(ctx: OperatorContext) -> bytes:
    """Vetted operator `stats.*`: the encrypted partial of this node's input(s)."""
    if "party" in ctx.params:  # a requester-held key: noisy, masked partial
        from sandbox.party_stats import party_partial

        return party_partial(ctx, partial_vector)
    query = StatsQuery.from_params(ctx.params["query"])
    job = JobPublic.from_request(ctx.params["job"], ctx.blobs)
    layout = query.layout()
    values = partial_vector(query, ctx.inputs)
    if job.scheme == "ckks" and query.op != "stats.histogram":
        values = _to_units(query, values)
    return seal_vector(job, query.op, layout, values).to_bytes()


def _to_units(query: StatsQuery, values: Sequence[int | float]) -> list[float]:
    """Fixed-point partial → floats in the data's units (for a CKKS job)."""
    fields = query.fields()
    out: list[float] = []
    for name, v in zip(fields * len(query.group_keys), values, strict=True):
        kind = name.split(":", 1)[0]
        power = {"sum": 1, "sumsq": 2}.get(kind, 0)
        out.append(float(Fraction(int(v), 10 ** (query.decimals * power))))
    return out


# -- result side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupStats:
    """One group's released statistics (noisy under DP)."""

    group: str
    rows: float | None
    values: dict[str, float | None] = field(default_factory=dict)
    exact: dict[str, str] = field(default_factory=dict)
    """Exact decimal/rational text of each value (only without DP noise)."""
    histogram: tuple[float | None, ...] | None = None
    """under, bins..., over; None marks a suppressed cell."""


@dataclass(frozen=True)
class StatsResult:
    operator: str
    columns: tuple[str, ...]
    group_by: str | None
    groups: tuple[GroupStats, ...]
    bin_edges: tuple[float, ...] | None
    dp_epsilon: float | None
    suppressed: tuple[str, ...]
    tolerance: float
    """Absolute error bound of each sum from encryption: 0 for Paillier (exact); for CKKS
    `CkksParams.tolerance(providers)`, plus float64 rounding (2^-52 relative)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def group(self, key: str = ALL) -> GroupStats:
        for g in self.groups:
            if g.group == key:
                return g
        raise KeyError(key)


def candidate(query: StatsQuery, agg: Decrypted, providers: Sequence[ProviderInput]) -> Candidate:
    """The decrypted aggregate as gate partitions, with each measure's sensitivity."""
    fields = query.fields()
    width = len(fields)
    if agg.layout.get("fields") != list(fields) or len(agg.values) != width * len(query.group_keys):
        raise InvalidParameters("aggregate does not match the query layout")
    hist = query.op == "stats.histogram"
    ckks_scheme = query.job_scheme == "ckks"
    vals: list[Fraction] = []
    for name, v in zip(fields * len(query.group_keys), agg.values, strict=True):
        if ckks_scheme and (hist or name == "rows" or name.startswith("n:")):
            vals.append(Fraction(round(float(v))))  # counts: exact after rounding
        elif ckks_scheme:
            vals.append(Fraction(float(v)))
        else:
            vals.append(Fraction(int(v)))
    # Paillier partials are fixed-point integers; CKKS partials are already in units.
    scale = Fraction(1) if ckks_scheme else Fraction(10**query.decimals)
    b = max(abs(query.clip[0]), abs(query.clip[1])) if query.clip else None
    parts: list[Partition] = []
    for gi, g in enumerate(query.group_keys):
        row = vals[gi * width : (gi + 1) * width]
        if hist:
            for name, count in zip(fields, row, strict=True):
                cell = (_exact("rows", count, 1.0),)
                parts.append(Partition(f"{g}|{name}", int(count), cell, zero_releasable=True))
            continue
        measures: list[Measure] = []
        for name, v in zip(fields, row, strict=True):
            kind = name.split(":", 1)[0]
            if kind in ("rows", "n"):
                measures.append(replace(_exact(name, v, 1.0), kind="count"))
            else:
                power = 1 if kind == "sum" else 2
                sens = None if b is None else b**power
                value = v / scale**power
                # CKKS sums are approximate: no exact text for them.
                m = Measure(name, float(value), sens) if ckks_scheme else _exact(name, value, sens)
                # Declared per-record range, for the gate's post-processing under DP.
                per = "n:" + name.split(":", 1)[1]
                measures.append(replace(m, kind="sum", bounds=_range(query, power), per=per))
        parts.append(Partition(g, int(row[0]), tuple(measures)))
    return Candidate(
        query.op,
        tuple(parts),
        unique(p.dataset_id for p in providers),
        unique(p.provider_id for p in providers),
    )


def _range(query: StatsQuery, power: int) -> tuple[float, float] | None:
    """The range of one record's value (power 1) or square (power 2) under the clip."""
    if query.clip is None:
        return None
    lo, hi = query.clip
    if power == 1:
        return (lo, hi)
    top = max(lo * lo, hi * hi)
    return (0.0 if lo <= 0 <= hi else min(lo * lo, hi * hi), top)


def _exact(name: str, value: Fraction, sensitivity: float | None) -> Measure:
    return Measure(name, float(value), sensitivity, value)


def _fraction(m: Measure) -> Fraction:
    return m.exact if m.exact is not None else Fraction(m.value)


def _text(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    d = x.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:  # a terminating decimal
        return format(Decimal(x.numerator) / Decimal(x.denominator), "f")
    return f"{x.numerator}/{x.denominator}"


def finish(query: StatsQuery, tolerance: float) -> Callable[[GatedAggregate], StatsResult]:
    """Post-processing of the gated aggregate into the statistic asked for."""

    def build(gated: GatedAggregate) -> StatsResult:
        groups: list[GroupStats] = []
        if query.op == "stats.histogram":
            kept = {p.key: measures_by_name(p)["rows"] for p in gated.partitions}
            fields = query.fields()
            for g in query.group_keys:
                cells = tuple(kept.get(f"{g}|{f}") for f in fields)
                if all(c is None for c in cells):
                    continue
                rows = sum(c for c in cells if c is not None)
                groups.append(GroupStats(g, rows, histogram=cells))
        else:
            for p in gated.partitions:
                groups.append(_group_values(query, p))
        return StatsResult(
            operator=query.op,
            columns=query.columns,
            group_by=query.group_by,
            groups=tuple(groups),
            bin_edges=tuple(query.edges()) if query.op == "stats.histogram" else None,
            dp_epsilon=gated.epsilon,
            suppressed=gated.suppressed,
            tolerance=tolerance,
        )

    return build


def _group_values(query: StatsQuery, p: Partition) -> GroupStats:
    m = {x.name: x for x in p.measures}
    values: dict[str, float | None] = {}
    exact: dict[str, str] = {}
    rows = m["rows"].value
    # Exact text only when every input is exact (no DP noise, not CKKS).
    is_exact = all(x.exact is not None for x in p.measures)
    if query.op == "stats.count":
        values["count"] = rows
        if is_exact:
            exact["count"] = str(int(rows))
    for c in query.columns if query.op != "stats.count" else ():
        n, s = _fraction(m[f"n:{c}"]), _fraction(m[f"sum:{c}"])
        result: dict[str, Fraction | None] = {f"count({c})": n}
        if query.op == "stats.sum":
            result[f"sum({c})"] = s
        else:
            mean = s / n if n > 0 else None
            result[f"mean({c})"] = mean
            if query.op == "stats.variance":
                q = _fraction(m[f"sumsq:{c}"])
                var = (q - s * s / n) / (n - 1) if n > 1 else None
                if var is not None and query.clip is not None:
                    # Post-processing: no sample of values in [lo, hi] varies more.
                    width = Fraction(query.clip[1]) - Fraction(query.clip[0])
                    var = min(var, width * width / 4 * n / (n - 1))
                result[f"variance({c})"] = max(var, Fraction(0)) if var is not None else None
        for k, v in result.items():
            values[k] = float(v) if v is not None else None
            if is_exact and v is not None:
                exact[k] = _text(v)
    return GroupStats(p.key, rows, values, exact)


# -- the job ----------------------------------------------------------------------------------


class StatsJob(ProviderJob):
    """A statistics computation over several providers; `run()` does every step.

    The steps are public so that the integrator can record each transition and a test
    can look at what the coordinator received (`coordinator.received`).
    """

    def __init__(
        self,
        query: StatsQuery,
        providers: Sequence[ProviderInput],
        *,
        sandbox: Sandbox | None = None,
        job_id: str | None = None,
        paillier_bits: int = 2048,
    ) -> None:
        if not providers:
            raise InvalidParameters("a computation needs at least one provider")
        self.query = query
        super().__init__(
            providers,
            sandbox,
            lambda: ResultParty(query.job_scheme, job_id=job_id, paillier_bits=paillier_bits),
        )
        self.node_seconds: list[float] = []

    def compute_partials(self) -> list[bytes]:
        """Every node's envelope, each computed in its own sandbox (concurrently)."""
        self.sandbox.check()
        pub = self.result_party.public
        params = {"query": self.query.to_params(), "job": pub.params()}
        jobs = [(self.query.op, [p.path], params, pub.blobs()) for p in self.providers]
        outcomes = run_parallel(self.sandbox, jobs)
        self.node_seconds = [o.wall_seconds for o in outcomes if o.ok]
        return [o.unwrap() for o in outcomes]

    def aggregate(self, partials: Sequence[bytes]) -> bytes:
        for provider, data in zip(self.providers, partials, strict=True):
            self.coordinator.submit(provider.provider_id, data)
        return self.coordinator.aggregate()

    def decrypt(self, aggregate: bytes) -> Decrypted:
        return self.result_party.decrypt(aggregate)

    def release(
        self, agg: Decrypted, gate: ReleaseGate, obligations: ReleaseObligations
    ) -> Release[StatsResult]:
        cand = candidate(self.query, agg, self.providers)
        hist = self.query.op == "stats.histogram"
        tol = 0.0 if hist else self.result_party.tolerance(agg.addends)
        return gate.release(
            cand,
            obligations,
            self.job_id,
            finish(self.query, tol),
            security_model=SECURITY_MODEL.as_dict(),
        )

    def run(self, gate: ReleaseGate, obligations: ReleaseObligations) -> Release[StatsResult]:
        aggregate = self.aggregate(self.compute_partials())
        return self.release(self.decrypt(aggregate), gate, obligations)


def run_stats(
    query: StatsQuery,
    providers: Sequence[ProviderInput],
    *,
    gate: ReleaseGate,
    obligations: ReleaseObligations,
    sandbox: Sandbox | None = None,
    job_id: str | None = None,
) -> Release[StatsResult]:
    """Compute `query` over the providers' files and pass it through the release gate."""
    return StatsJob(query, providers, sandbox=sandbox, job_id=job_id).run(gate, obligations)

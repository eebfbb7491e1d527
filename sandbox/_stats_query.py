"""The HE statistics query: one statistic over numeric CSV columns, validated when built.

Its layout (groups, fields, length) is a function of the query alone; see `sandbox.stats`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from sandbox._registry import STATS_OPERATORS
from sandbox.coordinator import Scheme
from sandbox.errors import GroupCardinalityExceeded, InvalidParameters

StatOp = Literal["stats.count", "stats.sum", "stats.mean", "stats.variance", "stats.histogram"]
MAX_GROUPS = 20
MAX_COLUMNS = 64
MAX_BINS = 1000
OTHER = "__other__"
ALL = "*"


# -- the query --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsQuery:
    """One statistic over numeric CSV columns; validated when built."""

    op: StatOp
    columns: tuple[str, ...] = ()
    group_by: str | None = None
    groups: tuple[str, ...] = ()
    bins: int | None = None
    range: tuple[float, float] | None = None
    clip: tuple[float, float] | None = None
    decimals: int = 6
    scheme: Literal["paillier", "ckks"] | None = None

    def __post_init__(self) -> None:
        if self.op not in STATS_OPERATORS:
            raise InvalidParameters(f"unknown statistic {self.op!r}")
        if self.op != "stats.count" and not self.columns:
            raise InvalidParameters(f"{self.op} needs at least one column")
        if len(self.columns) > MAX_COLUMNS or len(set(self.columns)) != len(self.columns):
            raise InvalidParameters(f"at most {MAX_COLUMNS} distinct columns")
        if self.group_by is not None:
            if not self.groups:
                raise InvalidParameters("group_by needs the declared group values (groups)")
            if len(self.groups) > MAX_GROUPS:
                raise GroupCardinalityExceeded(
                    f"at most {MAX_GROUPS} groups", max_groups=MAX_GROUPS
                )
            if len(set(self.groups)) != len(self.groups) or OTHER in self.groups:
                raise InvalidParameters("group values must be distinct")
        elif self.groups:
            raise InvalidParameters("groups given without group_by")
        if self.op == "stats.histogram":
            if len(self.columns) != 1:
                raise InvalidParameters("a histogram is over exactly one column")
            if self.bins is None or not 1 <= self.bins <= MAX_BINS:
                raise InvalidParameters(f"histogram bins must be 1..{MAX_BINS}")
            if self.range is None or not _finite_interval(self.range):
                raise InvalidParameters("histogram needs a finite range lo < hi")
        elif self.bins is not None or self.range is not None:
            raise InvalidParameters("bins and range apply to histograms only")
        if self.clip is not None and not _finite_interval(self.clip):
            raise InvalidParameters("clip must be a finite interval lo < hi")
        if not 0 <= self.decimals <= 12:
            raise InvalidParameters("decimals must be 0..12")
        if self.scheme not in (None, "paillier", "ckks"):
            raise InvalidParameters("scheme must be paillier or ckks")

    @property
    def job_scheme(self) -> Scheme:
        default = "ckks" if self.op == "stats.histogram" else "paillier"
        return "ckks" if (self.scheme or default) == "ckks" else "paillier-packed"

    @property
    def group_keys(self) -> tuple[str, ...]:
        return (*self.groups, OTHER) if self.group_by else (ALL,)

    def fields(self) -> tuple[str, ...]:
        """Names of one group's entries in the partial vector."""
        if self.op == "stats.histogram":
            assert self.bins is not None
            return ("bin:under", *(f"bin:{i}" for i in range(self.bins)), "bin:over")
        out = ["rows"]
        for c in self.columns if self.op != "stats.count" else ():
            out += [f"n:{c}", f"sum:{c}"]
            if self.op == "stats.variance":
                out.append(f"sumsq:{c}")
        return tuple(out)

    def layout(self) -> dict[str, Any]:
        """The public shape of every node's partial: a function of the query only."""
        return {
            "query": self.to_params(),
            "groups": list(self.group_keys),
            "fields": list(self.fields()),
            "length": len(self.group_keys) * len(self.fields()),
        }

    def to_params(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("columns", "groups"):
            d[k] = list(d[k])
        for k in ("range", "clip"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def from_params(cls, d: dict[str, Any]) -> StatsQuery:
        try:
            return cls(
                op=d["op"],
                columns=tuple(str(c) for c in d.get("columns") or ()),
                group_by=d.get("group_by"),
                groups=tuple(str(g) for g in d.get("groups") or ()),
                bins=d.get("bins"),
                range=_pair(d.get("range")),
                clip=_pair(d.get("clip")),
                decimals=int(d.get("decimals", 6)),
                scheme=d.get("scheme"),
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidParameters("malformed statistics query") from None

    def edges(self) -> list[float]:
        assert self.range is not None and self.bins is not None
        return [float(x) for x in np.linspace(self.range[0], self.range[1], self.bins + 1)]


def _finite_interval(pair: tuple[float, float]) -> bool:
    lo, hi = pair
    return math.isfinite(lo) and math.isfinite(hi) and lo < hi


def _pair(v: Any) -> tuple[float, float] | None:
    if v is None:
        return None
    lo, hi = v
    return (float(lo), float(hi))

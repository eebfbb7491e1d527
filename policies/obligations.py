"""The obligations a decision carries, typed once: what the enforcement point and exchange enforce.

A decision's `obligations` object (policies/README.md) arrives as JSON; `Obligations`
reads it once into typed fields (one per name in `KNOWN_OBLIGATIONS`), and
`strictest` merges the obligations of several decisions (one per input) into the
strictest combination, as the enforcement point needs when a request names many resources.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Obligations", "strictest"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# Numeric obligations where the smaller value is the stricter one (a smaller privacy
# budget, fewer rows); for every other number the larger is stricter (a larger cohort).
_SMALLER_IS_STRICTER = frozenset({"dp_epsilon", "max_rows"})


def strictest(obligations: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge several decisions' obligations into the strictest.

    Any true flag holds; the smallest ε and row cap, the largest cohort; a later
    non-numeric value wins.
    """
    merged: dict[str, Any] = {}
    for one in obligations:
        for key, value in one.items():
            old = merged.get(key)
            if old is None or value is None:
                merged[key] = value if old is None else old
            elif isinstance(value, bool):
                merged[key] = bool(old) or value
            elif key in _SMALLER_IS_STRICTER:
                merged[key] = min(old, value)
            elif isinstance(value, int | float):
                merged[key] = max(old, value)
            else:
                merged[key] = value
    return merged


@dataclass(frozen=True)
class Obligations:
    """A decision's obligations as typed fields; `raw` keeps the object as the policy gave it."""

    require_provider_approval: bool = False
    release_review: bool = False
    min_cohort: int | None = None
    dp_epsilon: float | None = None
    desensitise: bool = False
    log_delivery: bool = False
    max_rows: int | None = None
    min_intersection: int | None = None
    """Private joins (policies/joins.rego): the smallest intersection that may be released."""
    raw: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    @classmethod
    def from_decision(cls, raw: Mapping[str, Any]) -> Obligations:
        """Read a decision's (or a stored request's) obligations object once."""
        eps = raw.get("dp_epsilon")
        cohort = raw.get("min_cohort")
        rows = raw.get("max_rows")
        inter = raw.get("min_intersection")
        return cls(
            require_provider_approval=bool(raw.get("require_provider_approval")),
            release_review=bool(raw.get("release_review")),
            min_cohort=int(cohort) if cohort is not None else None,
            dp_epsilon=float(eps) if eps is not None else None,
            desensitise=bool(raw.get("desensitise")),
            log_delivery=bool(raw.get("log_delivery")),
            max_rows=int(rows) if rows is not None else None,
            min_intersection=int(inter) if inter is not None else None,
            raw=MappingProxyType(dict(raw)),
        )

    def cohort(self, default: int) -> int:
        """The minimum cohort, or `default` where the policy names none."""
        return self.min_cohort if self.min_cohort is not None else default

    def as_dict(self) -> dict[str, Any]:
        """The obligations object as the policy gave it (what a request stores and shows)."""
        return dict(self.raw)

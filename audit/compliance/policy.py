"""Policy checks: the active bundle's tests pass and the grading matrix says what it must."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit.compliance.base import Check, CheckContext, Finding, fail, ok, verdict

ROW_ACTIONS = ("dataset.preview", "dataset.download")
RAW_NEVER = ("important/open", "important/conditional", "core/open", "core/conditional", "closed")


def _cells(c: CheckContext) -> Mapping[str, Any]:
    cells: Mapping[str, Any] = c.matrix().get("cells", {})
    return cells


def _granted(cell: Mapping[str, Any], action: str) -> bool:
    rule = cell.get("actions", {}).get(action)
    return isinstance(rule, Mapping) and rule.get("allow") is True


def _tests(c: CheckContext) -> list[str]:
    out: list[str] = c.memo("policy_tests", lambda: list(c.policy.test_failures(c.session)))
    return out


def _grd08(c: CheckContext) -> Finding:
    cells = _cells(c)
    bad = [
        f"{name}: {a}"
        for name in RAW_NEVER
        for a in ROW_ACTIONS
        if _granted(cells.get(name, {}), a)
    ]
    failures = _tests(c)
    if failures:
        return fail("GRD-08", "the active bundle's tests fail", failures=failures[:20])
    return verdict("GRD-08", bad, cells=list(RAW_NEVER))


def _grd09(c: CheckContext) -> Finding:
    bad = []
    for name, cell in _cells(c).items():
        if not name.endswith("/conditional"):
            continue
        for a in ROW_ACTIONS:
            if _granted(cell, a):
                bad.append(f"{name}: grants {a}")
        rule = cell.get("actions", {}).get("computation.request")
        if isinstance(rule, Mapping) and rule.get("allow"):
            req = set(rule.get("requires", []))
            if not {"contract", "agreement", "purpose"} <= req:
                bad.append(f"{name}: computation.request lacks contract/agreement/purpose")
            if not (rule.get("obligations") or {}).get("desensitise"):
                bad.append(f"{name}: computation.request does not oblige desensitise")
    return verdict("GRD-09", bad)


def _grd10(c: CheckContext) -> Finding:
    closed = _cells(c).get("closed", {})
    granted = [
        a for a, r in closed.get("actions", {}).items() if isinstance(r, Mapping) and r.get("allow")
    ]
    return verdict("GRD-10", granted)


def _pi06(c: CheckContext) -> Finding:
    floor = 10
    bad = []
    for name, cell in _cells(c).items():
        for action, rule in cell.get("actions", {}).items():
            cohort = (rule.get("obligations") or {}).get("min_cohort")
            if cohort is not None and cohort < floor:
                bad.append(f"{name}: {action} min_cohort {cohort}")
    return verdict("PI-06", bad, floor=floor)


def _pi10(c: CheckContext) -> Finding:
    bad = []
    for name, cell in _cells(c).items():
        if name.startswith("general-1/open"):
            continue  # open data: no desensitisation obligation
        rule = cell.get("actions", {}).get("computation.request")
        if isinstance(rule, Mapping) and rule.get("allow"):
            if not (rule.get("obligations") or {}).get("desensitise"):
                bad.append(name)
    return verdict("PI-10", bad)


def _mkt04(c: CheckContext) -> Finding:
    bad = [
        f"{name}: {a}"
        for name, cell in _cells(c).items()
        for a in ROW_ACTIONS
        if _granted(cell, a) and not (name.startswith("general-") and name.endswith("/open"))
    ]
    return verdict("MKT-04", bad)


def _zt02(c: CheckContext) -> Finding:
    failures = _tests(c)
    revision, digest, _ = c.memo("policy", lambda: c.policy.active(c.session))
    if failures:
        return fail(
            "ZT-02", "the active bundle's tests fail", failures=failures[:20], revision=revision
        )
    return ok(
        "ZT-02",
        "the active bundle's tests pass (deny by default is among them)",
        revision=revision,
        digest=f"sha256:{digest}",
    )


CHECKS: dict[str, Check] = {
    "GRD-08": _grd08,
    "GRD-09": _grd09,
    "GRD-10": _grd10,
    "PI-06": _pi06,
    "PI-10": _pi10,
    "MKT-04": _mkt04,
    "ZT-02": _zt02,
}

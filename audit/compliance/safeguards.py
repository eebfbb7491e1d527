"""Safeguard checks: de-identification, budgets, the release gate, second factors, backups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit.compliance.base import Check, CheckContext, Finding, fail, na, ok, verdict

# GB/T 37964-2019 Annex A: the techniques PI-09 asks the operator catalogue to offer.
REQUIRED_TECHNIQUES = (
    "masking",
    "suppression",
    "generalisation",
    "pseudonymisation",
    "noise",
    "aggregation",
)
ADMIN_ROLES = frozenset({"system-admin", "security-admin", "auditor"})
# Access-token signatures that count as a cryptographic factor (GB/T 39786-2021 8.4 a).
TOKEN_ALGORITHMS = frozenset({"EdDSA", "SM2", "ES256", "PS256"})
_EPS = 1e-9


def _pi05(c: CheckContext) -> Finding:
    """A dataset whose fields the scan found to be PI, registered as not PI, claims anonymity.

    pdx stores no re-identification assessment, so every such claim fails: de-identified
    data stays PI until an assessment exists.
    """
    claims = [d.id for d in c.datasets() if d.field_pi and not d.pi]
    if not any(d.field_pi for d in c.datasets()):
        return na("PI-05", "no dataset has PI fields, so none claims to be anonymised")
    return verdict(
        "PI-05", claims, datasets_with_pi_fields=sum(1 for d in c.datasets() if d.field_pi)
    )


def _pi07(c: CheckContext) -> Finding:
    budgets = c.facts.budgets(c.session)
    cfg = c.config
    if not budgets:
        return na("PI-07", "no privacy budget has been opened yet")
    bad: list[str] = []
    for b in budgets:
        if b.epsilon_spent > b.epsilon_limit + _EPS or b.delta_spent > b.delta_limit + _EPS:
            bad.append(f"{b.account}: spent above its limit")
        if b.epsilon_limit > cfg.epsilon_cap + _EPS or b.delta_limit > cfg.delta_cap + _EPS:
            bad.append(f"{b.account}: limit above the configured cap")
        if abs(b.epsilon_charged - b.epsilon_spent) > 1e-6 or abs(
            b.delta_charged - b.delta_spent
        ) > max(1e-12, b.delta_spent * 1e-6):
            bad.append(f"{b.account}: charges do not add up to what is spent")
    return verdict(
        "PI-07", bad, accounts=len(budgets), epsilon_cap=cfg.epsilon_cap, delta_cap=cfg.delta_cap
    )


def _pi09(c: CheckContext) -> Finding:
    declared = c.config.techniques
    if declared is None:
        return na("PI-09", "the operator catalogue was not read by this run")
    missing = [t for t in REQUIRED_TECHNIQUES if t not in declared]
    return verdict("PI-09", missing, declared=dict(declared))


def _non_open_cells_without_dp(cells: Mapping[str, Any]) -> list[str]:
    bad = []
    for name, cell in cells.items():
        if name.endswith("/open"):
            continue
        rule = cell.get("actions", {}).get("computation.request")
        if not (isinstance(rule, Mapping) and rule.get("allow")):
            continue
        if not (rule.get("obligations") or {}).get("dp_epsilon"):
            bad.append(name)
    return sorted(bad)


def _pce02(c: CheckContext) -> Finding:
    cells: Mapping[str, Any] = c.matrix().get("cells", {})
    bad = [f"policy cell {n}: no dp_epsilon" for n in _non_open_cells_without_dp(cells)]
    released = [x for x in c.computations() if x.state == "released"]
    for x in released:
        ob = x.obligations
        if ob.get("dp_epsilon") and not (x.epsilon_spent or 0) > 0:
            bad.append(f"computation {x.id}: DP obliged but no ε charged")
        if not x.all_inputs_open and not ob.get("dp_epsilon"):
            bad.append(f"computation {x.id}: released from data that is not open without DP")
    return verdict("PCE-02", bad, released=len(released))


def _cry02(c: CheckContext) -> Finding:
    cfg = c.config
    ev: dict[str, Any] = {"token_algorithm": cfg.token_algorithm, "mtls": cfg.mtls}
    bad = []
    if cfg.token_algorithm is not None and cfg.token_algorithm not in TOKEN_ALGORITHMS:
        bad.append(f"access tokens signed with {cfg.token_algorithm!r}")
    people = [a for a in c.facts.accounts(c.session) if a.kind == "person"]
    bad += [
        f"person {a.id}: administrator without a second factor"
        for a in people
        if ADMIN_ROLES & set(a.roles) and not a.second_factor
    ]
    if cfg.environment == "production" and not cfg.mtls:
        bad.append("production without certificate-bound tokens (mTLS off)")
    ev["administrator_people"] = sum(1 for a in people if ADMIN_ROLES & set(a.roles))
    return verdict("CRY-02", bad, **ev)


def _aud06(c: CheckContext) -> Finding:
    cfg = c.config
    newest = c.facts.newest_backup(c.session)
    if newest is None:
        if cfg.environment != "production":
            return na("AUD-06", "development profile: no backup has been taken")
        return fail("AUD-06", "no backup has been taken")
    age = (c.now - newest.created_at).total_seconds()
    ev: dict[str, Any] = {
        "location": newest.location,
        "created_at": newest.created_at.isoformat(),
        "tree_size": newest.tree_size,
        "age_s": round(age),
        "interval_s": cfg.backup_interval_s,
    }
    if not newest.verified:
        return fail("AUD-06", f"the newest backup does not verify: {newest.problem}", **ev)
    if age > cfg.backup_interval_s:
        return fail("AUD-06", "the newest backup is older than the schedule", **ev)
    return ok("AUD-06", "the newest backup is within the schedule and verifies", **ev)


CHECKS: dict[str, Check] = {
    "PI-05": _pi05,
    "PI-07": _pi07,
    "PI-09": _pi09,
    "PCE-02": _pce02,
    "CRY-02": _cry02,
    "AUD-06": _aud06,
}

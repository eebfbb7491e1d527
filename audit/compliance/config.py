"""Configuration checks: suite, mTLS and TLS in production, root key, token lifetimes."""

from __future__ import annotations

from typing import Any

from audit.compliance.base import Check, CheckContext, Finding, fail, na, ok

PROD_ONLY = "development profile: this production control does not apply"


def _production_mtls(
    c: CheckContext, rid: str, without: str, good: str, **extra: str | None
) -> Finding:
    """Production holds its callers to mTLS; the development profile is not held to it."""
    cfg = c.config
    ev: dict[str, Any] = {"environment": cfg.environment, "mtls": cfg.mtls, **extra}
    if cfg.environment != "production":
        return na(rid, PROD_ONLY, **ev)
    if not cfg.mtls:
        return fail(rid, without, **ev)
    return ok(rid, good, **ev)


def _cry01(c: CheckContext) -> Finding:
    opa_url = c.config.opa_url
    if opa_url is not None and not opa_url.startswith("https://"):
        return fail(
            "CRY-01",
            "the remote OPA link does not authenticate its server",
            environment=c.config.environment,
            mtls=c.config.mtls,
            opa_url=opa_url,
        )
    return _production_mtls(
        c,
        "CRY-01",
        "production profile without mTLS (PDX_MTLS=0)",
        "clients authenticate with certificates from the platform CA",
        opa_url=opa_url,
    )


def _cry03(c: CheckContext) -> Finding:
    return _production_mtls(
        c, "CRY-03", "production profile serves plain HTTP", "only TLS is served"
    )


def _cry07(c: CheckContext) -> Finding:
    cfg = c.config
    ev: dict[str, Any] = {"cipher_suite": cfg.cipher_suite, "ledger_hash": cfg.ledger_hash}
    if cfg.cipher_suite not in ("intl", "sm") or cfg.ledger_hash not in ("sha256", "sm3"):
        return fail("CRY-07", "an algorithm outside the two suites is configured", **ev)
    return ok("CRY-07", "suite and ledger hash are from the two suites", **ev)


def _cry09(c: CheckContext) -> Finding:
    cfg = c.config
    ev: dict[str, Any] = {"key_backend": cfg.key_backend, "root_key_sealed": cfg.root_key_sealed}
    if cfg.key_backend == "pkcs11":
        return ok("CRY-09", "the root key is non-extractable in an HSM", **ev)
    if cfg.root_key_sealed:
        return ok("CRY-09", "the local root key is sealed with a passphrase", **ev)
    if cfg.environment != "production":
        return na("CRY-09", PROD_ONLY + " (the local root key is NOT sealed)", **ev)
    return fail("CRY-09", "production with an unsealed local root key", **ev)


def _zt01(c: CheckContext) -> Finding:
    routes = c.config.unenforced_routes
    if routes is None:
        return na("ZT-01", "the route table was not available to this run")
    if routes:
        return fail("ZT-01", f"{len(routes)} /v1 routes skip the enforcement point", routes=routes)
    return ok("ZT-01", "every /v1 route passes the enforcement point")


def _zt03(c: CheckContext) -> Finding:
    cfg = c.config
    age = c.matrix().get("session", {}).get("max_token_age_s")
    ev: dict[str, Any] = {
        "token_ttl_s": cfg.token_ttl_s,
        "refresh_ttl_s": cfg.refresh_ttl_s,
        "max_token_age_s": age,
    }
    bad = []
    if not 60 <= cfg.token_ttl_s <= 900:
        bad.append("PDX_TOKEN_TTL_S outside 60..900")
    if cfg.refresh_ttl_s > 8 * 3600:
        bad.append("PDX_REFRESH_TTL_S above 8 hours")
    if not isinstance(age, int) or age > 900:
        bad.append("matrix session.max_token_age_s above 900")
    if bad:
        return fail("ZT-03", "; ".join(bad), **ev)
    return ok("ZT-03", "access tokens live at most 900 s", **ev)


def _zt04(c: CheckContext) -> Finding:
    binding = c.matrix().get("cert_binding")
    if not isinstance(binding, dict):
        return fail("ZT-04", "the matrix has no cert_binding rule")
    return ok(
        "ZT-04",
        "every route authenticates; certificate binding per the matrix",
        cert_binding=binding,
    )


def _zt06(c: CheckContext) -> Finding:
    prev = c.previous
    interval = c.config.compliance_interval_s
    if prev is None:
        return na("ZT-06", "first compliance run: no earlier run to age", interval_s=interval)
    from datetime import datetime

    age = (c.now - datetime.fromisoformat(prev["started_at"])).total_seconds()
    if age > interval:
        return fail(
            "ZT-06",
            "the previous compliance run is older than the schedule",
            age_s=round(age),
            interval_s=interval,
        )
    return ok(
        "ZT-06", "the previous run is within the schedule", age_s=round(age), interval_s=interval
    )


def _zt07(c: CheckContext) -> Finding:
    cfg = c.config
    ev: dict[str, Any] = {
        "connect_timeout_ms": cfg.node_connect_timeout_ms,
        "read_timeout_ms": cfg.node_read_timeout_ms,
    }
    if cfg.node_connect_timeout_ms <= 0 or cfg.node_read_timeout_ms <= 0:
        return fail("ZT-07", "outbound connections without timeouts", **ev)
    return ok("ZT-07", "outbound node connections are allow-listed with timeouts", **ev)


def _aud11(c: CheckContext) -> Finding:
    return ok(
        "AUD-11",
        "auditor endpoints /v1/audit/records and /v1/audit/decisions serve",
        sink=c.config.decision_sink,
        masks=list(c.config.decision_masks),
    )


def _pce04(c: CheckContext) -> Finding:
    iso = c.config.sandbox_isolated
    if iso is None:
        return na("PCE-04", "the sandbox probe was not run by this process")
    if not iso:
        return fail("PCE-04", "the sandbox cannot isolate jobs")
    return ok("PCE-04", "the sandbox probe reports isolation enforced")


def _pce06(c: CheckContext) -> Finding:
    anchoring = c.config.anchoring
    if anchoring in (None, "embedded"):
        return na(
            "PCE-06",
            "no independent witness or chain: anchoring is operator-run or off",
            trust="operator",
            anchoring=anchoring,
        )
    return ok("PCE-06", "checkpoints anchored on a remote chain", anchoring=anchoring)


CHECKS: dict[str, Check] = {
    "CRY-01": _cry01,
    "CRY-03": _cry03,
    "CRY-07": _cry07,
    "CRY-09": _cry09,
    "ZT-01": _zt01,
    "ZT-03": _zt03,
    "ZT-04": _zt04,
    "ZT-06": _zt06,
    "ZT-07": _zt07,
    "AUD-11": _aud11,
    "PCE-04": _pce04,
    "PCE-06": _pce06,
}

"""Revision 0024 turns every contract into an agreement; the deprecated route keeps them in step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import text

from exchange.accounts import Caller, OrgKind, Role
from exchange.contracts import terminate_contract
from exchange.market.models import Agreement
from exchange.resources import covering_view
from gateway.platform import alembic_config, build_platform, make_engine
from gateway.settings import Settings


def test_contracts_become_agreements_and_stay_in_step(db_url: str, tmp_path: object) -> None:
    engine = make_engine(db_url)
    cfg = alembic_config(db_url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")  # the schema before the market
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as conn:
        for org, kind in (("org-p", "provider"), ("org-e", "enterprise")):
            conn.execute(
                text(
                    "INSERT INTO organisations (id, name, kind, created_at) VALUES (:i, :n, :k, :t)"
                ),
                {"i": org, "n": f"name {org}", "k": kind, "t": now},
            )
        for cid, status, dua in (("c-active", "active", "DUA-9"), ("c-ended", "terminated", None)):
            conn.execute(
                text(
                    "INSERT INTO contracts (id, consumer_org, provider_org, datasets, purpose, "
                    "agreement_id, not_before, not_after, status, proposed_by, proposed_at, "
                    "transitions) VALUES (:id, 'org-e', 'org-p', '[\"d1\"]', 'research', :dua, "
                    ":nb, :na, :st, 'pdx-e', :nb, '[]')"
                ),
                {"id": cid, "dua": dua, "nb": now, "na": now + timedelta(days=30), "st": status},
            )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, origin, state, dua_reference, purpose, consumer_org, provider_org "
                "FROM market_agreements ORDER BY id"
            )
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("c-active", "contract", "finalized", "DUA-9", "research", "org-e", "org-p"),
        ("c-ended", "contract", "terminated", None, "research", "org-e", "org-p"),
    ]
    # Ending a migrated contract through the deprecated route ends what the policy sees.
    platform = build_platform(Settings(home=tmp_path / "home", database_url=db_url))  # type: ignore[operator]
    try:
        with platform.session() as s:
            agreement = s.get(Agreement, "c-active")
            assert agreement is not None
            assert covering_view(agreement)["status"] == "finalized"
            assert covering_view(agreement)["dua_reference"] == "DUA-9"
        caller = Caller("pdx-p", "org-p", OrgKind.PROVIDER, frozenset({Role.DATA_PROVIDER}))
        with platform.session() as s, s.begin():
            terminate_contract(
                s, caller, "c-active", reason="ended", now=now + timedelta(days=1),
                trail=platform.trail,
            )  # fmt: skip
        with platform.session() as s:
            agreement = s.get(Agreement, "c-active")
            assert agreement is not None and agreement.state == "terminated"
    finally:
        platform.engine.dispose()

"""Policy lifecycle on SQLite and PostgreSQL: activation, refusal, history, the migration."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session

import audit.decisions  # noqa: F401  (registers audit_decisions on AuditBase)
from audit.models import AuditBase
from gateway.platform import make_engine, upgrade_database
from policies import (
    AUTHZ_DECISION,
    EmbeddedDecisionPoint,
    PolicyBase,
    PolicyBundle,
    PolicyConflict,
    PolicyInvalid,
    PolicyRevision,
    PolicyRevisionNotFound,
    PolicyTestsFailed,
    activate,
    active,
    default_bundle,
    describe_changes,
    history,
    install_default,
    revision,
)
from tests.helpers.db import BACKENDS, metadata_engine

NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
MY_TABLES = {"policy_revisions", "audit_decisions"}


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from metadata_engine(request, tmp_path, PolicyBase.metadata, "policies")


def _tighter(bundle: PolicyBundle) -> PolicyBundle:
    """The default bundle with a smaller DP budget per release on general-4 data.

    The bundle's own test expects 0.5, so the change updates the test with the data, as
    the security team must. 0.3 keeps ε falling with the grade (important data has 0.3).
    """
    matrix = json.loads(json.dumps(bundle.matrix))
    for cell in ("general-4/open", "general-4/conditional"):
        matrix["cells"][cell]["actions"]["computation.request"]["obligations"]["dp_epsilon"] = 0.3
    modules = dict(bundle.modules)
    old = '"release_review": true, "dp_epsilon": 0.5}'
    assert old in modules["authz_test.rego"]
    modules["authz_test.rego"] = modules["authz_test.rego"].replace(old, old.replace("0.5", "0.3"))
    return PolicyBundle(modules, matrix)


def test_builtin_is_revision_zero_until_something_is_stored(engine: Engine) -> None:
    with Session(engine) as session:
        policy = active(session)
        assert policy.revision == 0 and policy.digest == default_bundle().digest
        assert revision(session, 0).digest == policy.digest
        with pytest.raises(PolicyRevisionNotFound):
            revision(session, 7)


def test_install_default_once(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        first = install_default(session, now=NOW)
        assert first is not None and first.revision == 1 and first.changed
    with Session(engine) as session, session.begin():
        assert install_default(session, now=NOW) is None
        assert active(session).revision == 1


def test_activate_validates_records_and_describes(engine: Engine) -> None:
    new = _tighter(default_bundle())
    with Session(engine) as session, session.begin():
        act = activate(session, new, by="c-s", now=NOW, isolate=False)
    assert act.changed and act.revision == 1 and act.digest == new.digest
    assert act.previous_revision == 0 and act.previous_digest == default_bundle().digest
    assert act.tests_passed >= 60
    assert act.changes == (
        "module authz_test.rego changed",
        "matrix.cells.general-4/conditional.actions.computation.request.obligations.dp_epsilon:"
        " 0.5 → 0.3",
        "matrix.cells.general-4/open.actions.computation.request.obligations.dp_epsilon: 0.5 → 0.3",
    )
    assert act.description.startswith(
        f"policy revision 1 (sha256:{new.digest[:16]}…) activated by c-s"
    )
    record = act.ledger_record()
    assert record["type"] == "policy.activated" and record["digest"] == f"sha256:{new.digest}"
    with Session(engine) as session:
        current = active(session)
        assert (current.revision, current.digest, current.activated_by) == (1, new.digest, "c-s")
        assert current.bundle.to_json() == new.to_json()
        assert current.activated_at == NOW
        # The stored bundle drives a decision point exactly like the original.
        dp = EmbeddedDecisionPoint(current)
        assert dp.policy.revision == 1


def test_activating_the_active_bundle_changes_nothing(engine: Engine) -> None:
    new = _tighter(default_bundle())
    with Session(engine) as session, session.begin():
        activate(session, new, by="c-s", now=NOW, isolate=False)
    with Session(engine) as session, session.begin():
        again = activate(session, new, by="c-s", now=NOW + timedelta(minutes=1), isolate=False)
    assert not again.changed and again.revision == 1
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(PolicyRevision)) == 1


def test_rollback_is_a_new_revision_and_history_lists_all(engine: Engine) -> None:
    base, new = default_bundle(), _tighter(default_bundle())
    with Session(engine) as session, session.begin():
        install_default(session, now=NOW)
        activate(session, new, by="c-s", now=NOW + timedelta(minutes=1), isolate=False)
        back = activate(session, base, by="c-s", now=NOW + timedelta(minutes=2), isolate=False)
    assert back.revision == 3 and back.digest == base.digest
    with Session(engine) as session:
        revisions = history(session)
        assert [r.revision for r in revisions] == [3, 2, 1]
        assert revisions[0].changes and "0.3 → 0.5" in revisions[0].changes[1]
        assert revision(session, 2).digest == new.digest


def test_refused_bundles_leave_nothing_behind(engine: Engine) -> None:
    base = default_bundle()
    broken = PolicyBundle(
        {**base.modules, "authz.rego": "package pdx.authz\nallow if {"}, base.matrix
    )
    failing_modules = dict(base.modules)
    failing_modules["sod.rego"] = failing_modules["sod.rego"].replace(
        '"kms.read",\n]', '"kms.read",\n\t"kms.admin",\n]'
    )
    assert failing_modules["sod.rego"] != base.modules["sod.rego"]
    with Session(engine) as session, session.begin():
        with pytest.raises(PolicyInvalid):
            activate(session, broken, by="c-s", now=NOW)
        with pytest.raises(PolicyTestsFailed) as caught:
            activate(session, PolicyBundle(failing_modules, base.matrix), by="c-s", now=NOW)
        assert caught.value.extensions["failures"][0]["test"].endswith(
            "auditor_cannot_administer_keys"
        )
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(PolicyRevision)) == 0


def test_conflict_is_reported_as_policy_conflict(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two activations computed the same next revision: the second gets PolicyConflict."""
    new = _tighter(default_bundle())
    with Session(engine) as session, session.begin():
        activate(session, new, by="c-s", now=NOW, isolate=False)
    import policies.store as store

    stale = store._builtin()
    monkeypatch.setattr(store, "active", lambda session: stale)
    with Session(engine) as session, session.begin():
        with pytest.raises(PolicyConflict):
            activate(session, default_bundle(), by="c-s", now=NOW, isolate=False)


def test_describe_changes_lists_modules_and_matrix_paths() -> None:
    base = default_bundle()
    matrix = json.loads(json.dumps(base.matrix))
    matrix["enabled_computations"]["ds-9"] = {"orgs": ["org-c"]}
    del matrix["clearances"]
    modules = {k: v for k, v in base.modules.items() if k != "zerotrust_test.rego"}
    modules["authz.rego"] += "\n# note\n"
    modules["extra_test.rego"] = "package pdx.extra_test\n"
    changes = describe_changes(base, PolicyBundle(modules, matrix))
    assert changes == [
        "module authz.rego changed",
        "module extra_test.rego added",
        "module zerotrust_test.rego removed",
        "matrix.clearances removed",
        'matrix.enabled_computations.ds-9 added: {"orgs": ["org-c"]}',
    ]


def test_migration_builds_exactly_these_tables(tmp_path: Path) -> None:
    """0003 (from 0002) creates what the models declare, and nothing else of ours."""
    engine = make_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    upgrade_database(engine)
    with engine.connect() as conn:
        assert MY_TABLES <= set(inspect(conn).get_table_names())
        ctx = MigrationContext.configure(conn)
        diffs = compare_metadata(ctx, [AuditBase.metadata, PolicyBase.metadata])  # type: ignore[arg-type]
    engine.dispose()

    def table_of(diff: object) -> str | None:
        op = diff[0] if isinstance(diff, list) else diff
        for item in op[1:] if isinstance(op, tuple) else []:
            name = getattr(item, "name", None)
            table = getattr(getattr(item, "table", None), "name", None)
            for candidate in (table, name, item):
                if isinstance(candidate, str) and candidate in MY_TABLES:
                    return candidate
        return None

    assert [d for d in diffs if table_of(d) is not None] == []


def test_decision_points_follow_activation(engine: Engine) -> None:
    """The integrator's sequence: activate in the transaction, load, then commit."""
    body = {
        "subject": {
            "id": "c-c",
            "org": "org-c",
            "org_kind": "enterprise",
            "roles": ["data-consumer"],
        },
        "action": "computation.request",
        "resource": {
            "type": "dataset",
            "id": "ds-1",
            "level": "general-4",
            "open_attribute": "conditional",
            "owner_org": "org-p",
            "contract": {
                "id": "ct-1",
                "status": "active",
                "consumer_org": "org-c",
                "provider_org": "org-p",
                "datasets": ["ds-1"],
                "purpose": "planning",
                "dua_reference": "dua-1",
                "not_before": 0,
                "not_after": 4_000_000_000,
            },
        },
        "context": {"time": 1_800_000_000, "token_issued_at": 1_800_000_000, "purpose": "planning"},
    }
    with Session(engine) as session:
        dp = EmbeddedDecisionPoint(active(session))
    assert dp.decide(AUTHZ_DECISION, body).obligations["dp_epsilon"] == 0.5
    with Session(engine) as session, session.begin():
        act = activate(session, _tighter(default_bundle()), by="c-s", now=NOW, isolate=False)
        dp.load(act.policy)
    d = dp.decide(AUTHZ_DECISION, body)
    assert d.obligations["dp_epsilon"] == 0.3 and d.revision == 1

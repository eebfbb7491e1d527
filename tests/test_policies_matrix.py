"""Every cell of the grading matrix × every role × every action, against an oracle.

The oracle below restates the intended rules in plain Python, independently of the
Rego (the issue's semantics: general-1 open data may be previewed and downloaded;
general-2/3 computations only, under contract and purpose-bound; general-4 also with
provider approval and release checks; important/core no rows ever and computations
only where the security team enabled them; closed: nothing leaves; owners always read
their own metadata; providers approve on their own data only; 三员分立). The decision
point must agree with it on every combination, with and without security enablement.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from exchange.accounts import ROLES_BY_KIND, OrgKind, Role
from exchange.levels import Level, OpenAttribute
from policies import AUTHZ_DECISION, ActivePolicy, EmbeddedDecisionPoint, default_bundle
from policies.checks import deep_merge
from policies.matrix import ACTIONS

NOW = 1_800_000_000
LEVELS = [lv.value for lv in Level]
OPEN = [oa.value for oa in OpenAttribute]
CELLS = list(itertools.product(LEVELS, OPEN))

# One subject per role (plus a provider that does not own the dataset).
SUBJECTS: dict[str, dict[str, Any]] = {
    "owner": {"id": "c-p", "org": "org-p", "org_kind": "provider", "roles": ["data-provider"]},
    "provider": {"id": "c-q", "org": "org-q", "org_kind": "provider", "roles": ["data-provider"]},
    "consumer": {"id": "c-c", "org": "org-c", "org_kind": "enterprise", "roles": ["data-consumer"]},
    "auditor": {"id": "c-a", "org": "org-a", "org_kind": "auditor", "roles": ["auditor"]},
    "security": {"id": "c-s", "org": "org-s", "org_kind": "security", "roles": ["security-admin"]},
    "sysadmin": {"id": "c-o", "org": "org-o", "org_kind": "operator", "roles": ["system-admin"]},
}
# Each client acts for an administrator person of its organisation (issue 11).
for _subject in SUBJECTS.values():
    _subject.update(person_id="p-" + _subject["id"], created_by=None, org_admin=True)
ENABLED = {
    "enabled_computations": {"ds-1": {"orgs": ["org-c"], "by": "c-s"}},
    "clearances": {"org-c": "core"},
}


def test_roles_and_kinds_match_exchange() -> None:
    """The matrix and the subjects here use exchange's vocabulary, nothing else."""
    matrix = default_bundle().matrix
    assert matrix["levels"] == LEVELS
    assert matrix["open_attributes"] == OPEN
    assert {k: set(v) for k, v in matrix["roles_by_kind"].items()} == {
        k.value: {r.value for r in v} for k, v in ROLES_BY_KIND.items()
    }
    assert {r for s in SUBJECTS.values() for r in s["roles"]} == {r.value for r in Role}
    assert {s["org_kind"] for s in SUBJECTS.values()} == {k.value for k in OrgKind}


def resource(action: str, level: str, open_attribute: str) -> dict[str, Any]:
    """The resource each action is asked about, graded as the cell says."""
    if action == "ledger.read":
        return {"type": "ledger.entry", "id": "42", "parties": ["org-p", "org-c"]}
    if action in ("account.create", "account.deactivate", "account.rotate_secret"):
        return {
            "type": "account",
            "org_kind": "provider",
            "owner_org": "org-p",
            "roles": ["data-provider"],
        }
    if action in (
        "audit.read", "policy.read", "policy.write", "kms.read", "kms.admin",
        "compliance.run", "compliance.read",
    ):  # fmt: skip
        return {"type": action.split(".")[0]}
    return {
        "type": "dataset",
        "id": "ds-1",
        "level": level,
        "open_attribute": open_attribute,
        "owner_org": "org-p",
        "pi": True,
        "computation": {"id": "job-1", "requester_org": "org-c"},
        "contract": {
            "id": "ct-1",
            "status": "active",
            "consumer_org": "org-c",
            "provider_org": "org-p",
            "datasets": ["ds-1"],
            "purpose": "traffic planning",
            "dua_reference": "dua-1",
            "not_before": NOW - 86_400,
            "not_after": NOW + 86_400,
        },
    }


def request(who: str, action: str, level: str, open_attribute: str) -> dict[str, Any]:
    return {
        "subject": SUBJECTS[who],
        "action": action,
        "resource": resource(action, level, open_attribute),
        "context": {
            "time": NOW,
            "token_issued_at": NOW - 30,
            "cert_binding": "none",
            "purpose": "traffic planning",
            "legal_basis": "statute:road-traffic-safety-law",
        },
    }


def expected(who: str, action: str, level: str, open_attribute: str, enabled: bool) -> bool:
    """The oracle: should `who` be allowed `action` on data of this grade?"""
    general = level.startswith("general-") and open_attribute != "closed"
    leaves_ok = general or (enabled and open_attribute != "closed")  # important/core enabled
    if action == "dataset.register":
        return who == "owner"
    if action == "dataset.read_metadata":
        if who in ("owner", "security", "auditor"):
            return True
        if who == "consumer":
            return leaves_ok
        if who == "provider":  # not enabled or cleared for org-q
            return general
        return False
    if action in ("dataset.preview", "dataset.download"):
        if who == "owner":
            return general
        if who in ("consumer", "provider"):
            return level == "general-1" and open_attribute == "open"
        return False
    if action == "computation.request":
        return who == "consumer" and leaves_ok
    if action == "computation.approve":
        return who == "owner" and leaves_ok
    if action == "ledger.read":
        return who in ("auditor", "security", "consumer", "owner")
    if action == "audit.read":
        return who == "auditor"
    if action in ("policy.read", "kms.read", "compliance.read"):
        return who in ("security", "auditor")
    if action in ("policy.write", "kms.admin", "compliance.run"):
        return who == "security"
    if action in ("account.create", "account.deactivate", "account.rotate_secret"):
        # Only the organisation's own administrator, never the operator (issue 11).
        return who == "owner"
    raise AssertionError(f"the oracle does not know {action}")


@pytest.fixture(scope="module")
def points() -> dict[bool, EmbeddedDecisionPoint]:
    bundle = default_bundle()
    plain = ActivePolicy(0, bundle.digest, bundle, "test", None, "built-in")
    patched = type(bundle)(bundle.modules, deep_merge(bundle.matrix, ENABLED))
    enabled = ActivePolicy(1, patched.digest, patched, "test", None, "enabled")
    return {
        False: EmbeddedDecisionPoint(plain, cache_size=0),
        True: EmbeddedDecisionPoint(enabled, cache_size=0),
    }


def _mismatches(
    dp: EmbeddedDecisionPoint, who: str, level: str, open_attribute: str, enabled: bool
) -> Iterator[str]:
    for action in ACTIONS:
        d = dp.decide(AUTHZ_DECISION, request(who, action, level, open_attribute))
        want = expected(who, action, level, open_attribute, enabled)
        if d.allow != want:
            yield f"{who} {action} on {level}/{open_attribute}: got {d.allow}, want {want}: " + (
                "; ".join(d.reasons)
            )
        elif not d.allow and not d.reasons:
            yield f"{who} {action} on {level}/{open_attribute}: denied without a reason"


@pytest.mark.parametrize("enabled", [False, True], ids=["default", "enabled"])
@pytest.mark.parametrize("who", list(SUBJECTS))
@pytest.mark.parametrize(("level", "open_attribute"), CELLS, ids=[f"{a}/{b}" for a, b in CELLS])
def test_cell_role_actions(
    points: dict[bool, EmbeddedDecisionPoint],
    level: str,
    open_attribute: str,
    who: str,
    enabled: bool,
) -> None:
    problems = list(_mismatches(points[enabled], who, level, open_attribute, enabled))
    assert problems == []


@pytest.mark.parametrize(("level", "open_attribute"), CELLS, ids=[f"{a}/{b}" for a, b in CELLS])
def test_obligations_by_cell(
    points: dict[bool, EmbeddedDecisionPoint], level: str, open_attribute: str
) -> None:
    """Computations carry the cell's release obligations; general-4 and up need approval."""
    d = points[True].decide(
        AUTHZ_DECISION, request("consumer", "computation.request", level, open_attribute)
    )
    if open_attribute == "closed":
        assert not d.allow
        return
    assert d.allow, d.reasons
    ob = d.obligations
    assert set(ob) == set(default_bundle().matrix["obligation_defaults"])
    rank = LEVELS.index(level)
    assert ob["require_provider_approval"] is (rank >= 3)
    assert ob["release_review"] is (rank >= 3)
    # DP on every computation except on open general-1 data, whose rows are public.
    assert (ob["dp_epsilon"] is not None) is (level != "general-1" or open_attribute != "open")
    if rank >= 2:
        assert ob["min_cohort"] >= 10
    if level != "general-1" or open_attribute == "conditional":
        assert ob["desensitise"] is True
    if rank >= 4:
        assert ob["min_cohort"] >= 20 and ob["dp_epsilon"] <= 0.3


def test_download_of_open_data_is_logged_delivery(
    points: dict[bool, EmbeddedDecisionPoint],
) -> None:
    d = points[False].decide(AUTHZ_DECISION, request("consumer", "dataset.download", *CELLS[0]))
    assert d.allow and d.obligations["log_delivery"] is True


@pytest.mark.parametrize("action", ACTIONS)
def test_two_admin_roles_deny_everything(
    points: dict[bool, EmbeddedDecisionPoint], action: str
) -> None:
    """三员分立: a subject holding two admin roles is refused whatever it asks."""
    for pair in itertools.combinations(["system-admin", "security-admin", "auditor"], 2):
        body = request("security", action, "general-1", "open")
        body["subject"] = {**body["subject"], "roles": list(pair)}
        d = points[False].decide(AUTHZ_DECISION, body)
        assert not d.allow
        assert any("separation of duties" in r for r in d.reasons), d.reasons


@pytest.mark.parametrize(
    "action", [a for a in ACTIONS if a not in ("ledger.read", "audit.read", "policy.read")]
)
def test_auditor_changes_nothing(points: dict[bool, EmbeddedDecisionPoint], action: str) -> None:
    """The auditor reads the ledger and audit logs; every write is refused with that reason."""
    for level, open_attribute in CELLS:
        d = points[True].decide(AUTHZ_DECISION, request("auditor", action, level, open_attribute))
        reads = action in ("dataset.read_metadata", "kms.read", "compliance.read")
        assert d.allow is reads, (action, level, open_attribute, d.reasons)
        if action.split(".")[1] not in ("read_metadata", "read", "preview", "download"):
            assert any("the auditor changes nothing" in r for r in d.reasons)

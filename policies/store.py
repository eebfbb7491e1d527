"""Policy lifecycle: versioned bundles, validated activation, the active revision.

`activate` validates a bundle (every module compiles, the grading matrix fits its
schema, every test passes) and records it as the next revision in the caller's
transaction; the caller adds the ledger entry and audit record to the same
transaction, loads the new policy into its decision point, then commits (README.md,
"Activating a bundle"). Nothing is activated unless all of that succeeds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from policies.bundle import ActivePolicy, PolicyBundle, canonical_json, default_bundle
from policies.checks import validate
from policies.errors import PolicyConflict, PolicyRevisionNotFound
from policies.models import PolicyRevision

__all__ = [
    "Activation",
    "activate",
    "active",
    "describe_changes",
    "history",
    "install_default",
    "revision",
]

_MAX_CHANGES = 50


@dataclass(frozen=True)
class Activation:
    """What an activation did: the new revision and how it differs from the previous one.

    `changed` is False when the bundle was already active (no new revision).
    """

    policy: ActivePolicy
    previous_revision: int
    previous_digest: str
    changes: tuple[str, ...]
    tests_passed: int
    changed: bool

    @property
    def revision(self) -> int:
        return self.policy.revision

    @property
    def digest(self) -> str:
        return self.policy.digest

    @property
    def description(self) -> str:
        return self.policy.description

    def ledger_record(self) -> dict[str, Any]:
        """The facts a `policy.activated` ledger entry should carry."""
        at = self.policy.activated_at
        return {
            "type": "policy.activated",
            "revision": self.revision,
            "digest": f"sha256:{self.digest}",
            "previous_revision": self.previous_revision,
            "previous_digest": f"sha256:{self.previous_digest}",
            "activated_by": self.policy.activated_by,
            "activated_at": at.isoformat() if at is not None else None,
            "tests_passed": self.tests_passed,
            "changes": list(self.changes),
        }


def _to_policy(row: PolicyRevision) -> ActivePolicy:
    bundle = PolicyBundle.from_json(json.loads(row.bundle))
    return ActivePolicy(
        revision=row.revision,
        digest=row.digest,
        bundle=bundle,
        activated_by=row.activated_by,
        activated_at=row.activated_at,
        description=row.description,
    )


def _builtin() -> ActivePolicy:
    bundle = default_bundle()
    return ActivePolicy(0, bundle.digest, bundle, "platform", None, "built-in default policy")


def active(session: Session) -> ActivePolicy:
    """The active policy: the highest stored revision, else the built-in bundle (revision 0)."""
    row = session.scalars(
        select(PolicyRevision).order_by(PolicyRevision.revision.desc()).limit(1)
    ).first()
    return _builtin() if row is None else _to_policy(row)


def revision(session: Session, number: int) -> ActivePolicy:
    """A stored revision (0 is the built-in bundle)."""
    if number == 0:
        return _builtin()
    row = session.get(PolicyRevision, number)
    if row is None:
        raise PolicyRevisionNotFound("no such policy revision", revision=number)
    return _to_policy(row)


@dataclass(frozen=True)
class RevisionSummary:
    revision: int
    digest: str
    activated_by: str
    activated_at: datetime
    description: str
    changes: tuple[str, ...]


def history(session: Session, *, limit: int = 50) -> list[RevisionSummary]:
    """The most recent revisions, newest first (without their bundles)."""
    rows = session.execute(
        select(
            PolicyRevision.revision,
            PolicyRevision.digest,
            PolicyRevision.activated_by,
            PolicyRevision.activated_at,
            PolicyRevision.description,
            PolicyRevision.changes,
        )
        .order_by(PolicyRevision.revision.desc())
        .limit(limit)
    ).all()
    return [RevisionSummary(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5]))) for r in rows]


def activate(
    session: Session,
    bundle: PolicyBundle,
    *,
    by: str,
    now: datetime,
    isolate: bool = True,
    validated: bool = False,
) -> Activation:
    """Validate `bundle` and record it as the next revision in `session`'s transaction.

    Raises `PolicyInvalid` or `PolicyTestsFailed` (listing every failing test) before
    touching the database, and `PolicyConflict` when another activation took the same
    revision number first. Activating the bundle that is already active records
    nothing and returns `changed=False`. `isolate` runs validation in a child process
    (see `policies.checks.validate`); `validated` skips it for a bundle the caller
    has just validated.
    """
    if now.tzinfo is None:
        raise ValueError("activation times must be timezone-aware (UTC)")
    tests_passed = 0 if validated else validate(bundle, isolate=isolate).passed
    current = active(session)
    if bundle.digest == current.digest and current.revision > 0:
        return Activation(current, current.revision, current.digest, (), tests_passed, False)
    changes = tuple(describe_changes(current.bundle, bundle))
    number = current.revision + 1
    at = now.astimezone(UTC)
    summary = "; ".join(changes[:10]) + (" …" if len(changes) > 10 else "")
    description = f"policy revision {number} (sha256:{bundle.digest[:16]}…) activated by {by}" + (
        f": {summary}" if summary else ""
    )
    row = PolicyRevision(
        revision=number,
        digest=bundle.digest,
        previous_digest=current.digest,
        bundle=canonical_json(bundle.to_json()),
        changes=json.dumps(list(changes), ensure_ascii=False),
        description=description[:4000],
        tests_passed=tests_passed,
        activated_by=by[:128],
        activated_at=at,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise PolicyConflict(
            "another policy activation was recorded first; reload and retry",
            revision=number,
        ) from None
    policy = ActivePolicy(number, bundle.digest, bundle, by, at, row.description)
    return Activation(policy, current.revision, current.digest, changes, tests_passed, True)


def install_default(
    session: Session, *, now: datetime, by: str = "platform", check: bool = False
) -> Activation | None:
    """Record the built-in bundle as revision 1 when nothing is stored yet (first start).

    The built-in bundle is tested with the code, so it is not re-validated unless
    `check`; it is compiled when a decision point loads it.
    """
    if session.scalars(select(PolicyRevision.revision).limit(1)).first() is not None:
        return None
    return activate(session, default_bundle(), by=by, now=now, isolate=False, validated=not check)


def describe_changes(old: PolicyBundle, new: PolicyBundle) -> list[str]:
    """Human-readable differences between two bundles (modules, then matrix paths)."""
    changes: list[str] = []
    for name in sorted(set(old.modules) | set(new.modules)):
        before, after = old.modules.get(name), new.modules.get(name)
        if before is None:
            changes.append(f"module {name} added")
        elif after is None:
            changes.append(f"module {name} removed")
        elif before != after:
            changes.append(f"module {name} changed")
    if old.entrypoints != new.entrypoints:
        changes.append(f"entrypoints {list(old.entrypoints)} → {list(new.entrypoints)}")
    _diff(old.matrix, new.matrix, "matrix", changes)
    if len(changes) > _MAX_CHANGES:
        changes = changes[:_MAX_CHANGES] + [f"… and {len(changes) - _MAX_CHANGES} more"]
    return changes


def _diff(old: Any, new: Any, where: str, out: list[str]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new)):
            path = f"{where}.{key}"
            if key not in old:
                out.append(f"{path} added: {_short(new[key])}")
            elif key not in new:
                out.append(f"{path} removed")
            else:
                _diff(old[key], new[key], path, out)
    elif old != new or type(old) is not type(new):
        out.append(f"{where}: {_short(old)} → {_short(new)}")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "…"

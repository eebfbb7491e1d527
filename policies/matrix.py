"""Schema check of the grading matrix (`data.pdx.matrix`) before a bundle is activated.

The Rego policy reads this data, so a typo here would silently change who may do what:
every field is checked for type and vocabulary, and the compliance invariants the
matrix must respect on its own are checked too (docs/compliance.md GRD-08: rows of important,
core and closed data never leave, whatever a request says).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from policies.errors import PolicyInvalid

__all__ = [
    "ACTIONS",
    "LEVELS",
    "OBLIGATIONS",
    "OPEN_ATTRIBUTES",
    "REQUIREMENTS",
    "ROLES",
    "SCOPES",
    "check_matrix",
]

SCHEMA = "pdx.grading-matrix/1"

# exchange.levels.Level values, lowest first; the order is the rank (tests compare).
LEVELS = ("general-1", "general-2", "general-3", "general-4", "important", "core")
OPEN_ATTRIBUTES = ("open", "conditional", "closed")
# exchange.accounts.Role and OrgKind values.
ROLES = ("data-provider", "data-consumer", "auditor", "security-admin", "system-admin")
ORG_KINDS = ("provider", "enterprise", "auditor", "security", "operator")
ADMIN_ROLES = frozenset({"system-admin", "security-admin", "auditor"})

# Every action the platform asks about; the role table must cover each one.
ACTIONS = (
    "dataset.register",
    "dataset.read_metadata",
    "dataset.preview",
    "dataset.download",
    "computation.request",
    "computation.approve",
    "ledger.read",
    "audit.read",
    "policy.read",
    "policy.write",
    "kms.read",
    "kms.admin",
    "account.create",
    "account.deactivate",
    "account.rotate_secret",
    "compliance.run",
    "compliance.read",
)
# Actions graded per cell of the matrix.
DATA_ACTIONS = (
    "dataset.read_metadata",
    "dataset.preview",
    "dataset.download",
    "computation.request",
    "computation.approve",
)
ROW_ACTIONS = ("dataset.preview", "dataset.download")
SCOPES = ("any", "own_org", "owner", "party", "matrix", "issuer")
REQUIREMENTS = ("contract", "agreement", "purpose", "legal_basis", "security_enablement")
# Obligation name → what the enforcement point must do (policies/README.md).
OBLIGATIONS = (
    "require_provider_approval",
    "min_cohort",
    "dp_epsilon",
    "desensitise",
    "release_review",
    "log_delivery",
    "max_rows",
)

Level = Literal["general-1", "general-2", "general-3", "general-4", "important", "core"]
RoleName = Literal["data-provider", "data-consumer", "auditor", "security-admin", "system-admin"]
OrgKind = Literal["provider", "enterprise", "auditor", "security", "operator"]
Scope = Literal["any", "own_org", "owner", "party", "matrix", "issuer"]
Requirement = Literal["contract", "agreement", "purpose", "legal_basis", "security_enablement"]
Text = Annotated[str, Field(min_length=1, max_length=500, strict=True)]
ActionName = Annotated[str, Field(pattern=r"^[a-z]+(\.[a-z_]+)+$", max_length=64)]

_FORBID = ConfigDict(extra="forbid", frozen=True)


class Obligations(BaseModel):
    """Obligations a cell or grant adds; any subset of the known names."""

    model_config = _FORBID
    require_provider_approval: StrictBool | None = None
    min_cohort: Annotated[StrictInt, Field(ge=2, le=100_000)] | None = None
    dp_epsilon: Annotated[float, Field(gt=0, le=10, strict=True)] | None = None
    desensitise: StrictBool | None = None
    release_review: StrictBool | None = None
    log_delivery: StrictBool | None = None
    max_rows: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None


class Grant(BaseModel):
    model_config = _FORBID
    roles: Annotated[list[RoleName], Field(min_length=1)]
    scope: Scope
    obligations: Obligations | None = None


class ActionSpec(BaseModel):
    model_config = _FORBID
    grants: list[Grant]


class CellRule(BaseModel):
    model_config = _FORBID
    allow: StrictBool
    requires: list[Requirement] = []
    obligations: Obligations | None = None
    note: Text | None = None


class Cell(BaseModel):
    model_config = _FORBID
    label: Text
    note: Text
    actions: dict[ActionName, CellRule]


class Enablement(BaseModel):
    """A security-team decision that computations on one dataset may run for some orgs."""

    model_config = _FORBID
    orgs: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(min_length=1)]
    by: Text | None = None
    note: Text | None = None
    until: str | None = None


class Session(BaseModel):
    model_config = _FORBID
    # Tokens live at most 15 minutes (ARCHITECTURE.md, "One request").
    max_token_age_s: Annotated[StrictInt, Field(ge=1, le=900)]
    clock_skew_s: Annotated[StrictInt, Field(ge=0, le=300)]


class CertBinding(BaseModel):
    model_config = _FORBID
    required_actions: list[ActionName]
    required_from_level: Level | None


class Matrix(BaseModel):
    model_config = _FORBID
    schema_: Literal["pdx.grading-matrix/1"] = Field(alias="schema")
    description: Text | None = None
    levels: list[Level]
    open_attributes: list[Literal["open", "conditional", "closed"]]
    default_clearance: Level
    clearances: dict[Annotated[str, Field(min_length=1, max_length=64)], Level]
    enabled_computations: dict[Annotated[str, Field(min_length=1, max_length=128)], Enablement]
    session: Session
    cert_binding: CertBinding
    roles_by_kind: dict[OrgKind, list[RoleName]]
    account_issuers: dict[OrgKind, RoleName]
    obligation_defaults: dict[str, Any]
    actions: dict[ActionName, ActionSpec]
    cells: dict[str, Cell]


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top)"


def check_matrix(doc: Mapping[str, Any]) -> list[str]:
    """Every problem with a grading-matrix document; empty when it may be activated."""
    try:
        m = Matrix.model_validate(dict(doc))
    except ValidationError as exc:
        return [f"matrix.{_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
    problems: list[str] = []
    if tuple(m.levels) != LEVELS:
        problems.append(f"matrix.levels must be exactly {list(LEVELS)} (lowest first)")
    if tuple(m.open_attributes) != OPEN_ATTRIBUTES:
        problems.append(f"matrix.open_attributes must be exactly {list(OPEN_ATTRIBUTES)}")
    if set(m.obligation_defaults) != set(OBLIGATIONS):
        problems.append(f"matrix.obligation_defaults must name exactly {list(OBLIGATIONS)}")
    else:
        try:
            Obligations.model_validate(m.obligation_defaults)
        except ValidationError as exc:
            problems += [
                f"matrix.obligation_defaults.{_where(e['loc'])}: {e['msg']}" for e in exc.errors()
            ]
    missing = [a for a in ACTIONS if a not in m.actions]
    if missing:
        problems.append(f"matrix.actions lacks {missing}")
    for a in m.cert_binding.required_actions:
        if a not in m.actions:
            problems.append(f"matrix.cert_binding.required_actions: unknown action {a!r}")
    for kind, roles in m.roles_by_kind.items():
        if len(ADMIN_ROLES.intersection(roles)) > 1:
            problems.append(
                f"matrix.roles_by_kind.{kind}: separation of duties allows one admin role"
            )
    if set(m.roles_by_kind) != set(ORG_KINDS):
        problems.append(f"matrix.roles_by_kind must name every org kind {list(ORG_KINDS)}")
    if "auditor" in m.account_issuers.values():
        problems.append("matrix.account_issuers: the auditor changes nothing, issues no accounts")
    for name, spec in m.actions.items():
        for i, g in enumerate(spec.grants):
            if g.scope == "matrix" and name not in DATA_ACTIONS:
                problems.append(f"matrix.actions.{name}.grants.{i}: 'matrix' is for data actions")
    wanted_cells = [f"{lv}/{oa}" for lv in LEVELS for oa in OPEN_ATTRIBUTES if oa != "closed"]
    wanted_cells.append("closed")
    if sorted(m.cells) != sorted(wanted_cells):
        problems.append(f"matrix.cells must be exactly {wanted_cells}")
    for cname, cell in m.cells.items():
        for action, rule in cell.actions.items():
            where = f"matrix.cells.{cname}.actions.{action}"
            if action not in DATA_ACTIONS:
                problems.append(f"{where}: only data actions {list(DATA_ACTIONS)} are graded")
            if not rule.allow:
                continue
            # docs/compliance.md GRD-08: never published or delivered raw, whatever a request says.
            if cname == "closed":
                problems.append(f"{where}: closed (不予开放) data permits nothing")
            elif not cname.startswith("general-") and action in ROW_ACTIONS:
                problems.append(f"{where}: rows of {cname.split('/')[0]} data never leave")
            elif not cname.startswith("general-") and action.startswith("computation."):
                if "security_enablement" not in rule.requires:
                    problems.append(f"{where}: must require security_enablement")
    return problems


def require_valid_matrix(doc: Mapping[str, Any]) -> None:
    """Raise `PolicyInvalid` listing every problem unless `doc` is a valid matrix."""
    problems = check_matrix(doc)
    if problems:
        raise PolicyInvalid("the grading matrix is invalid", errors=problems)

"""What a check sees and returns: requirements from docs/compliance.md, facts, findings."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from audit.catalogue import Event
from audit.compliance.wording import VERDICTS
from audit.events import AuditEvent

# The requirements document ships with the repository (docs/compliance.md).
DEFAULT_DOC = Path(__file__).resolve().parents[2] / "docs" / "compliance.md"
_ROW = re.compile(r"^\|\s*([A-Z]{2,3}-\d{2})\s*\|(.*)\|\s*$")
# Event names this package adds (the reshape issue folds them into the event enum).
COMPLIANCE_RUN = Event.COMPLIANCE_CHECKED
RETENTION_RUN = Event.RETENTION_RUN
AUDIT_RECORDS_READ = Event.AUDIT_RECORDS_READ
AUDIT_DECISIONS_READ = Event.AUDIT_DECISIONS_READ
RISK_REPORT = Event.RISK_REPORT_GENERATED


class Status(StrEnum):
    """Outcome of one requirement in a run."""

    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "not-applicable"
    NOT_AUTOMATED = "not-automated"


@dataclass(frozen=True)
class Requirement:
    """One row of docs/compliance.md: its frozen id, text, source and check kind."""

    id: str
    text: str
    source: str
    check: str


def parse_requirements(text: str) -> list[Requirement]:
    """Every requirement row of the document, in document order (ids are frozen)."""
    found: list[Requirement] = []
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if m is None:
            continue
        cells = [c.strip() for c in m.group(2).split(" | ")]
        text_, source, check = (cells + ["", "", ""])[:3]
        found.append(Requirement(m.group(1), text_, source, check))
    return found


def load_requirements(path: Path | None = None) -> list[Requirement]:
    return parse_requirements((path or DEFAULT_DOC).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Finding:
    """A requirement's result with its evidence; `trust` says who the control rests on."""

    id: str
    status: Status
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    trust: str | None = None  # "operator" where the control is only as strong as the operator

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status.value,
            "summary": self.summary,
            "evidence": dict(self.evidence),
        }
        if self.trust is not None:
            out["trust"] = self.trust
        return out


@dataclass(frozen=True)
class ConfigFacts:
    """The running platform's configuration, as the composition root read it."""

    environment: str
    cipher_suite: str
    ledger_hash: str
    mtls: bool
    key_backend: str
    root_key_sealed: bool
    token_ttl_s: int
    refresh_ttl_s: int
    opa_url: str | None
    audit_retention_days: int
    pi_record_retention_days: int
    result_retention_days: int
    review_period_days: int
    compliance_interval_s: int
    retention_interval_s: int
    decision_sink: str | None
    decision_masks: Sequence[str]
    node_connect_timeout_ms: int
    node_read_timeout_ms: int
    risk_report_period_days: int = 365
    sandbox_isolated: bool | None = None
    unenforced_routes: Sequence[str] | None = None  # None: the route table was not walked
    anchoring: str | None = None  # "embedded", "remote" or None
    token_algorithm: str | None = None  # the access-token signature algorithm (CRY-02)
    epsilon_cap: float = 3.0  # PI-07: the most ε any budget account may allow
    delta_cap: float = 1e-4  # PI-07: the most δ any budget account may allow
    backup_interval_s: int = 86_400  # AUD-06: the newest backup is at most this old
    # PI-09: de-identification technique -> the component that implements it (None: not read)
    techniques: Mapping[str, str] | None = None


@dataclass(frozen=True)
class DatasetFact:
    """One catalogue entry with what the checks compare."""

    id: str
    level: str
    open_attribute: str
    important_data_catalogue: bool
    pi: bool
    sensitive_pi: bool
    missing: Sequence[str]  # required metadata fields that are null or empty
    scan_min_level: str | None
    field_levels: Sequence[str]
    field_pi: bool
    field_sensitive_pi: bool
    graded_at: datetime
    next_review_at: datetime
    custody: str
    has_digests: bool
    data_key_live: bool
    rows: int
    size_bytes: int
    name: str = ""
    classification_path: Sequence[str] = ()


@dataclass(frozen=True)
class ComputationFact:
    """One computation with what the checks compare."""

    id: str
    state: str
    purpose: str | None
    contract_purpose: str | None
    legal_basis: str | None
    pi_input: bool
    data_level: str | None
    input_levels: Sequence[str]
    security_model_complete: bool
    transitions_with_ledger: int
    transitions: int
    released_readable_past_retention: bool
    input_ids: Sequence[str] = ()
    obligations: Mapping[str, Any] = field(default_factory=dict)
    epsilon_spent: float | None = None
    all_inputs_open: bool = False  # every input's open attribute is `open` (PCE-02)


@dataclass(frozen=True)
class KeyFacts:
    """Key inventory facts: rotation due, destroyed keys' data keys, incomplete rows."""

    rotation_due: Sequence[Mapping[str, Any]]
    destroyed_with_data_keys: Sequence[Mapping[str, Any]]
    destroyed_checked: int
    incomplete: Sequence[str]
    bad_purpose: Sequence[str]
    total: int
    versions: Sequence[str] = ()  # every "<key id>#v<version>"


@dataclass(frozen=True)
class Account:
    """A client or person and the roles it holds."""

    id: str
    kind: str  # "client" or "person"
    roles: Sequence[str]
    second_factor: bool | None = None  # people: an enrolled, readable second factor (CRY-02)


@dataclass(frozen=True)
class BudgetFact:
    """One privacy-budget account: its limits, what it says is spent, what its charges sum to."""

    account: str  # e.g. "dataset:<id>"
    epsilon_limit: float
    delta_limit: float
    epsilon_spent: float
    delta_spent: float
    epsilon_charged: float  # the sum of the account's charge rows
    delta_charged: float


@dataclass(frozen=True)
class BackupFact:
    """The newest recorded backup and whether it verifies now (AUD-06)."""

    created_at: datetime
    location: str
    tree_size: int
    verified: bool
    problem: str | None = None


@dataclass(frozen=True)
class ProductFact:
    """One market product with what DSL-01 and MKT-01..05 compare."""

    id: str
    listed: bool
    provenance_statement: bool
    evidence: int  # evidence items
    evidence_with_digest: int
    rights_held: Sequence[str]
    rights_granted: Sequence[str]
    delivery_modes: Sequence[str]  # the product's and its offers'
    open_data: bool
    grade: str
    precheck_passed: bool
    on_ledger: bool
    offers: Sequence[Mapping[str, Any]]  # each offer's terms


@dataclass(frozen=True)
class AgreementFact:
    """One agreement: where it came from, what it grants, whether its signatures verify."""

    id: str
    origin: str  # "negotiation" or "contract" (migrated, unsigned)
    state: str
    datasets: Sequence[str]
    rights_granted: Sequence[str] | None
    epsilon_share: float | None
    signatures: int
    signatures_verify: bool


@dataclass(frozen=True)
class MarketFacts:
    """The market's products and agreements, and ε budgets by dataset (MKT-06)."""

    products: Sequence[ProductFact]
    agreements: Sequence[AgreementFact]
    epsilon_budget: Mapping[str, float]  # dataset id -> the ε its budget allows
    unsigned_approvals: int  # provider approvals without the provider's own signature
    signed_approvals: int = 0  # provider approvals whose signature verifies


class DeploymentFacts(Protocol):
    """Domain facts the composition root reads for the checks (audit imports no exchange)."""

    def config(self) -> ConfigFacts: ...

    def datasets(self, session: Session) -> Sequence[DatasetFact]: ...

    def computations(self, session: Session) -> Sequence[ComputationFact]: ...

    def keys(self, session: Session, now: datetime) -> KeyFacts: ...

    def accounts(self, session: Session) -> Sequence[Account]: ...

    def budgets(self, session: Session) -> Sequence[BudgetFact]: ...

    def newest_backup(self, session: Session) -> BackupFact | None: ...

    def market(self, session: Session) -> MarketFacts: ...


class PolicyFacts(Protocol):
    """The active policy bundle: its tests, matrix and digest."""

    def active(self, session: Session) -> tuple[int, str, Mapping[str, Any]]:
        """(revision, sha256 hex digest, grading matrix)."""
        ...

    def test_failures(self, session: Session) -> Sequence[str]:
        """The active bundle's failing tests (empty when all pass)."""
        ...


class RunSigner(Protocol):
    """Signs a run's digest with the ledger signing key (crypto behind the ledger surface)."""

    @property
    def key_id(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


class RunRecorder(Protocol):
    """Writes an audit record + ledger entry in the caller's transaction; returns the index."""

    def __call__(
        self, session: Session, event: AuditEvent, *, payload_digest: str, now: datetime
    ) -> int | None: ...


Check = Callable[["CheckContext"], Finding]

LEVELS = ("general-1", "general-2", "general-3", "general-4", "important", "core")


def rank(level: str | None) -> int:
    return LEVELS.index(level) if level in LEVELS else -1


@dataclass
class CheckContext:
    """Facts gathered once per run, shared by every check (each kind reads what it needs)."""

    session: Session
    now: datetime
    config: ConfigFacts
    facts: DeploymentFacts
    policy: PolicyFacts
    ledger: Any  # ledger.Ledger (audit reads the ledger)
    previous: Mapping[str, Any] | None  # the previous run's report
    sample: int = 16
    _cache: dict[str, Any] = field(default_factory=dict)

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def datasets(self) -> Sequence[DatasetFact]:
        out: Sequence[DatasetFact] = self.memo(
            "datasets", lambda: self.facts.datasets(self.session)
        )
        return out

    def computations(self) -> Sequence[ComputationFact]:
        out: Sequence[ComputationFact] = self.memo(
            "computations", lambda: self.facts.computations(self.session)
        )
        return out

    def keys(self) -> KeyFacts:
        out: KeyFacts = self.memo("keys", lambda: self.facts.keys(self.session, self.now))
        return out

    def matrix(self) -> Mapping[str, Any]:
        out: Mapping[str, Any] = self.memo("policy", lambda: self.policy.active(self.session))[2]
        return out


def ok(rid: str, summary: str, *, trust: str | None = None, **evidence: Any) -> Finding:
    return Finding(rid, Status.PASS, summary, evidence, trust)


def fail(rid: str, summary: str, **evidence: Any) -> Finding:
    return Finding(rid, Status.FAIL, summary, evidence)


def na(rid: str, summary: str, *, trust: str | None = None, **evidence: Any) -> Finding:
    return Finding(rid, Status.NOT_APPLICABLE, summary, evidence, trust)


def verdict(rid: str, bad: Sequence[Any], **evidence: Any) -> Finding:
    """Pass when `bad` is empty; otherwise fail naming up to 20 offenders (wording: VERDICTS)."""
    good, bad_text = (text.format_map(evidence) for text in VERDICTS[rid])
    if bad:
        return fail(rid, f"{len(bad)} {bad_text}", offenders=list(bad)[:20], **evidence)
    return ok(rid, good, **evidence)

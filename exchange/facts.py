"""Deployment facts for the compliance checks (audit.compliance.DeploymentFacts), from the DB."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from audit.catalogue import Event
from audit.compliance import (
    Account,
    BackupFact,
    BudgetFact,
    ComputationFact,
    ConfigFacts,
    DatasetFact,
    KeyFacts,
    MarketFacts,
)
from audit.models import AuditRecord
from crypto.lifecycle import KeyPurpose, KeyState
from crypto.models import DataKeyRecord, KeyRecord
from exchange.models import (
    Client,
    Computation,
    Contract,
    Dataset,
    Person,
    PrivacyBudgetAccount,
    PrivacyCharge,
)

# GRD-02: the catalogue fields that must be set on every dataset.
REQUIRED_FIELDS = (
    "name", "classification_path", "level", "impact_object", "impact_degree",
    "processing_degree", "source_agency", "accountable_department", "share_attribute",
    "open_attribute", "graded_at", "graded_by", "next_review_at",
)  # fmt: skip
_TERMINAL = {"released", "rejected", "failed"}


class DeploymentFactsReader:
    """Reads the facts; `config` comes from the composition root (settings)."""

    def __init__(
        self, config: Callable[[], ConfigFacts], kms: object, clock: Callable[[], datetime]
    ) -> None:
        self._config = config
        self._kms = kms
        self._clock = clock

    def config(self) -> ConfigFacts:
        return self._config()

    def datasets(self, session: Session) -> Sequence[DatasetFact]:
        live = set(session.scalars(select(DataKeyRecord.id).where(DataKeyRecord.wrapped != b"")))
        out = []
        for d in session.scalars(select(Dataset).options(selectinload(Dataset.fields))):
            missing = [f for f in REQUIRED_FIELDS if getattr(d, f) in (None, "", [])]
            if not 2 <= len(d.classification_path or []) <= 8:
                missing.append("classification_path (2 to 8 parts)")
            out.append(
                DatasetFact(
                    id=d.id,
                    level=d.level,
                    open_attribute=d.open_attribute,
                    important_data_catalogue=d.important_data_catalogue,
                    pi=d.pi,
                    sensitive_pi=d.sensitive_pi,
                    missing=missing,
                    scan_min_level=(d.scan or {}).get("min_level"),
                    field_levels=[f.level for f in d.fields],
                    field_pi=any(f.pi for f in d.fields),
                    field_sensitive_pi=any(f.sensitive_pi for f in d.fields),
                    graded_at=d.graded_at,
                    next_review_at=d.next_review_at,
                    custody=d.custody,
                    has_digests=bool(d.sha256 and d.sm3),
                    data_key_live=d.custody != "platform" or d.data_key_id in live,
                    rows=d.rows,
                    size_bytes=d.size_bytes,
                    name=d.name,
                    classification_path=list(d.classification_path or []),
                )
            )
        return out

    def computations(self, session: Session) -> Sequence[ComputationFact]:
        contracts = dict(session.execute(select(Contract.id, Contract.purpose)).tuples().all())
        pi = set(session.scalars(select(Dataset.id).where(Dataset.pi.is_(True))))
        is_open = dict(session.execute(select(Dataset.id, Dataset.open_attribute)).tuples().all())
        # GRD-06: the level the trail recorded for each computation (the lowest it stated).
        recorded: dict[str, str] = {}
        for object_id, level in session.execute(
            select(AuditRecord.object_id, AuditRecord.data_level).where(
                AuditRecord.event_type.like("computation.%"), AuditRecord.data_level.is_not(None)
            )
        ).tuples():
            if object_id is None or level is None:
                continue
            if object_id not in recorded or _rank(level) < _rank(recorded[object_id]):
                recorded[object_id] = level
        now = self._clock()
        out = []
        for c in session.scalars(select(Computation).options(selectinload(Computation.inputs))):
            ids = [i.contract_id for i in c.inputs if i.contract_id]
            model = c.security_model or {}
            levels = [i.level for i in c.inputs]
            out.append(
                ComputationFact(
                    id=c.id,
                    state=c.state,
                    purpose=c.purpose,
                    contract_purpose=contracts.get(ids[0]) if ids else None,
                    legal_basis=c.legal_basis,
                    pi_input=any(i.dataset_id in pi for i in c.inputs),
                    data_level=recorded.get(c.id),
                    input_levels=levels,
                    security_model_complete=bool(
                        model.get("technique") and model.get("keys") and model.get("security_model")
                    ),
                    transitions_with_ledger=sum(
                        1 for t in c.transitions if t.get("ledger_index") is not None
                    ),
                    transitions=len(c.transitions),
                    input_ids=[i.dataset_id for i in c.inputs],
                    obligations=dict(c.obligations or {}),
                    epsilon_spent=c.epsilon_spent,
                    all_inputs_open=bool(c.inputs)
                    and all(is_open.get(i.dataset_id) == "open" for i in c.inputs),
                    released_readable_past_retention=bool(
                        c.result_key_id and c.retain_until and c.retain_until < now
                    ),
                )
            )
        return out

    def keys(self, session: Session, now: datetime) -> KeyFacts:
        from crypto.roles import KeyActor, KeyRole

        actor = KeyActor("compliance", frozenset({KeyRole.KEY_ADMINISTRATOR}))
        due = self._kms.due_for_rotation(session, now=now, by=actor)  # type: ignore[attr-defined]
        rows = session.scalars(select(KeyRecord)).all()
        purposes = {p.value for p in KeyPurpose}
        destroyed = {(r.id, r.version) for r in rows if r.state == KeyState.DESTROYED}
        held = session.execute(
            select(DataKeyRecord.kek_id, DataKeyRecord.kek_version, func.count())
            .where(DataKeyRecord.wrapped != b"")
            .group_by(DataKeyRecord.kek_id, DataKeyRecord.kek_version)
        ).all()
        leaking = [
            {"key_id": f"{k}#v{v}", "data_keys": n} for k, v, n in held if (k, v) in destroyed
        ]
        leaking += [
            {"key_id": f"{r.id}#v{r.version}", "data_keys": 0, "material": "still stored"}
            for r in rows
            if r.state == KeyState.DESTROYED and r.wrapped_material
        ]
        incomplete = [
            f"{r.id}#v{r.version}"
            for r in rows
            if not (r.purpose and r.algorithm and r.state and r.created_at)
        ]
        return KeyFacts(
            rotation_due=[
                {
                    "key_id": d.key_id,
                    "version": d.version,
                    "purpose": d.purpose,
                    "reason": d.reason,
                    "due_at": d.due_at.isoformat() if d.due_at else None,
                }
                for d in due
            ],
            destroyed_with_data_keys=leaking,
            destroyed_checked=len(destroyed),
            incomplete=incomplete,
            bad_purpose=[f"{r.id}#v{r.version}" for r in rows if r.purpose not in purposes],
            total=len(rows),
            versions=[f"{r.id}#v{r.version}" for r in rows],
        )

    def accounts(self, session: Session) -> Sequence[Account]:
        clients = [Account(c.id, "client", list(c.roles)) for c in session.scalars(select(Client))]
        people = [
            Account(p.id, "person", list(p.roles), second_factor=bool(p.totp_sealed))
            for p in session.scalars(select(Person))
        ]
        return clients + people

    def budgets(self, session: Session) -> Sequence[BudgetFact]:
        charged = {
            d: (e or 0.0, dl or 0.0)
            for d, e, dl in session.execute(
                select(
                    PrivacyCharge.dataset_id,
                    func.sum(PrivacyCharge.epsilon),
                    func.sum(PrivacyCharge.delta),
                ).group_by(PrivacyCharge.dataset_id)
            ).tuples()
        }
        return [
            BudgetFact(
                account=f"dataset:{a.dataset_id}",
                epsilon_limit=a.epsilon_limit,
                delta_limit=a.delta_limit,
                epsilon_spent=a.epsilon_spent,
                delta_spent=a.delta_spent,
                epsilon_charged=charged.get(a.dataset_id, (0.0, 0.0))[0],
                delta_charged=charged.get(a.dataset_id, (0.0, 0.0))[1],
            )
            for a in session.scalars(select(PrivacyBudgetAccount))
        ]

    def market(self, session: Session) -> MarketFacts:
        from exchange.market.facts import market_facts

        return market_facts(session)

    def newest_backup(self, session: Session) -> BackupFact | None:
        """The newest `backup.created` record, verified again now (AUD-06)."""
        from exchange.backup import verify_backup
        from exchange.backup_record import BackupRecord, manifest_digest
        from exchange.errors import BackupError

        row = session.scalars(
            select(AuditRecord)
            .where(AuditRecord.event_type == Event.BACKUP_CREATED)
            .order_by(AuditRecord.ts.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        try:
            record = BackupRecord.parse(row.detail or "")
        except BackupError as exc:
            return BackupFact(row.ts, "?", 0, False, exc.detail)
        try:
            verify_backup(record.location, trusted_keys=[record.verifier_key])
            digest = manifest_digest(record.location)
        except BackupError as exc:
            return BackupFact(row.ts, str(record.location), record.tree_size, False, exc.detail)
        if digest != record.manifest_digest:
            problem = "the manifest is not the one recorded when the backup was taken"
            return BackupFact(row.ts, str(record.location), record.tree_size, False, problem)
        return BackupFact(row.ts, str(record.location), record.tree_size, True)


def _rank(level: str) -> int:
    from exchange.levels import Level

    try:
        return Level(level).rank
    except ValueError:
        return -1

"""Composition of the compliance checks, retention scheduler and decision sink (issue 16).

`audit.compliance` imports no `exchange`: this module hands it the facts it needs
(settings, `exchange.facts`, the active policy bundle), the ledger signer and a
recorder that writes through `exchange.Trail` (audit record + ledger entry, one
transaction).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

import audit
import audit.compliance
import exchange.computations
import policies
from audit.compliance import ComplianceRun, ConfigFacts, RetentionRun, RunRecorder
from audit.workspace import DecisionSink
from crypto.periodic import Periodic
from exchange import deidentification
from exchange.computations import DEFAULT_RETENTION
from exchange.facts import DeploymentFactsReader
from exchange.jobs import DEFAULT_DELTA_BUDGET, DEFAULT_EPSILON_BUDGET
from gateway.ledger_signer import ledger_signer_for
from gateway.settings import ComplianceSettings, Settings

if TYPE_CHECKING:
    from gateway.platform import Platform

log = logging.getLogger("pdx.compliance")


class PolicyFactsReader:
    """The active bundle's revision, digest, matrix and test results (audit.PolicyFacts)."""

    def __init__(self) -> None:
        self._tested: dict[str, list[str]] = {}

    def active(self, session: Session) -> tuple[int, str, Mapping[str, Any]]:
        act = policies.active(session)
        return act.revision, act.digest, act.bundle.matrix

    def test_failures(self, session: Session) -> Sequence[str]:
        act = policies.active(session)
        if act.digest not in self._tested:  # a bundle's tests do not change: once per digest
            from policies.checks import run_tests

            report = run_tests(act.bundle)
            self._tested[act.digest] = [
                f"{r.name}: {r.detail}" for r in report.results if not r.passed
            ]
        return self._tested[act.digest]


def config_facts(
    settings: Settings,
    cs: ComplianceSettings,
    *,
    unenforced_routes: Sequence[str] | None,
    token_algorithm: str | None = None,
) -> ConfigFacts:
    return ConfigFacts(
        environment=settings.environment,
        cipher_suite=settings.cipher_suite,
        ledger_hash=settings.ledger_hash,
        mtls=settings.mtls,
        key_backend=settings.key_backend,
        root_key_sealed=bool(settings.root_key_passphrase),
        token_ttl_s=settings.token_ttl_s,
        refresh_ttl_s=settings.refresh_ttl_s,
        opa_url=settings.opa_url,
        audit_retention_days=cs.audit_retention_days,
        pi_record_retention_days=cs.pi_record_retention_days,
        result_retention_days=DEFAULT_RETENTION.days,
        review_period_days=cs.review_period_days,
        risk_report_period_days=cs.risk_report_period_days,
        compliance_interval_s=cs.interval_s or 86_400,
        retention_interval_s=cs.retention_interval_s or 86_400,
        decision_sink=cs.decision_sink_url,
        decision_masks=cs.decision_masks,
        node_connect_timeout_ms=settings.node_connect_timeout_ms,
        node_read_timeout_ms=settings.node_read_timeout_ms,
        unenforced_routes=unenforced_routes,
        anchoring=None,
        token_algorithm=token_algorithm,
        epsilon_cap=DEFAULT_EPSILON_BUDGET,
        delta_cap=DEFAULT_DELTA_BUDGET,
        backup_interval_s=cs.backup_interval_s,
        techniques=deidentification.offered(),
    )


@dataclass
class ComplianceServices:
    """What the routers, CLI and schedulers call (one per platform)."""

    platform: Platform
    settings: ComplianceSettings
    policy: PolicyFactsReader = field(default_factory=PolicyFactsReader)
    unenforced: Callable[[], list[str]] | None = None
    """ZT-01: the app's /v1 routes without an enforcement point (set once an app exists)."""
    token_algorithm: str | None = None
    """CRY-02: the signature algorithm of the app's access tokens (set once an app exists)."""
    sink: DecisionSink | None = None
    _threads: list[Periodic] = field(default_factory=list)

    def facts(self, settings: Settings | None = None) -> DeploymentFactsReader:
        s = settings or self.platform.settings
        routes = self.unenforced() if self.unenforced is not None else None
        return DeploymentFactsReader(
            lambda: config_facts(
                s, self.settings, unenforced_routes=routes, token_algorithm=self.token_algorithm
            ),
            self.platform.kms,
            self.platform.clock,
        )

    def run(
        self, by: audit.Subject, *, settings: Settings | None = None, sample: int = 16
    ) -> dict[str, Any]:
        """Evaluate, sign, store and ledger a run; returns the stored report."""
        p = self.platform
        p.decision_logs.flush()  # AUD-10 compares with the logs written so far
        try:
            p.sealer.seal_now()  # the run proves what the newest checkpoint holds
        except Exception:  # a broken ledger is reported by the checks, not a reason to stop
            log.exception("sealing before the compliance run failed")
        now = p.now()
        facts = self.facts(settings)
        with p.session() as session, session.begin():
            report = audit.compliance.evaluate(
                session,
                now=now,
                config_facts=facts.config(),
                facts=facts,
                policy_facts=self.policy,
                ledger_=p.ledger,
                sample=sample,
            )
            stored = self._signed(audit.compliance.record_run, session, report, by=by, now=now)
        return stored

    def risk_report(self, by: audit.Subject) -> dict[str, Any]:
        """DSL-05: assess important data now; the signed report goes on the ledger."""
        from audit.compliance import risk

        p = self.platform
        now = p.now()
        facts = self.facts()
        with p.session() as session, session.begin():
            body = risk.build(session, facts, self.policy.active(session)[2], now=now)
            return self._signed(risk.record, session, body, by=by, now=now)

    def _signed(
        self,
        record: Callable[[Session, dict[str, Any], audit.compliance.Signing], dict[str, Any]],
        session: Session,
        body: dict[str, Any],
        *,
        by: audit.Subject,
        now: datetime,
    ) -> dict[str, Any]:
        """Store a report signed with the platform's ledger key, on the ledger and audited."""
        p = self.platform
        signer = ledger_signer_for(
            platform_keystore=p.keystore, settings=p.settings, session=session, now=now
        )
        signing = audit.compliance.Signing(
            by.subject_id or "platform", now, signer, self._recorder(by)
        )
        return record(session, body, signing)

    def _recorder(self, by: audit.Subject) -> RunRecorder:
        """Records a run's event as `by`, with its ledger entry; returns the entry's index."""

        def record(
            session: Session, event: audit.AuditEvent, *, payload_digest: str, now: datetime
        ) -> int | None:
            object_type = str(event.event_type).split(".")[0]
            receipt = self.platform.trail.record(
                session, by, event, object_type=object_type, payload_digest=payload_digest, now=now
            )
            return receipt.ledger_index

        return record

    def retention(self) -> dict[str, Any]:
        """PI-11, AUD-07: shred released results past retention; keep every log.

        The platform deletes no audit record, decision log or ledger entry, so logs are
        kept at least their minimum whatever the configured period.
        """
        p = self.platform
        shredded = exchange.computations.purge_expired(p.compute)
        now = p.now()
        detail = {
            "results_shredded": shredded,
            "result_retention_days": DEFAULT_RETENTION.days,
            "audit_retention_days": self.settings.audit_retention_days,
            "audit_records_deleted": 0,
            "ledger_entries_deleted": 0,
            "commitment_salts": "none exist yet (PCE-07): release entries carry plain digests",
        }
        run_id = str(uuid.uuid4())
        with p.session() as session, session.begin():
            receipt = p.trail.record(
                session,
                audit.Subject("platform", None, None, None, None),
                audit.AuditEvent(
                    audit.compliance.RETENTION_RUN,
                    "purge",
                    audit.Result.SUCCESS,
                    object_id=f"retention-run-{run_id}",
                    detail=json.dumps(detail)[:512],
                ),
                object_type="retention",
                now=now,
            )
            session.add(
                RetentionRun(
                    id=run_id,
                    ran_at=now,
                    results_shredded=shredded,
                    detail=json.dumps(detail),
                    ledger_index=receipt.ledger_index,
                )
            )
        return {"id": run_id, **detail, "ledger_index": receipt.ledger_index}

    # -- schedules ------------------------------------------------------------------------

    def _every(self, name: str, interval_s: int, job: Callable[[], Any]) -> None:
        # A failed run is logged and tried at the next tick; ZT-06/PI-11 report lateness.
        ticking = Periodic(interval_s, thread=f"pdx-{name}", job=job, log=log)
        ticking.start()
        self._threads.append(ticking)

    def start(self) -> None:
        if self.settings.retention_interval_s:
            self._every("retention", self.settings.retention_interval_s, self.retention)
        if self.settings.interval_s:
            platform_subject = audit.Subject("platform", None, None, None, None)
            self._every("compliance", self.settings.interval_s, lambda: self.run(platform_subject))
        if self.settings.interval_s:
            self._every(
                "risk-report",
                self.settings.risk_report_period_days * 86_400,
                lambda: self.risk_report(audit.Subject("platform", None, None, None, None)),
            )
        if self.sink is not None:
            self.sink.start()

    def stop(self) -> None:
        for ticking in self._threads:
            ticking.stop()
        self._threads.clear()
        if self.sink is not None:
            self.sink.stop()


def build(platform: Platform, settings: ComplianceSettings | None = None) -> ComplianceServices:
    cs = settings or ComplianceSettings.from_env()
    services = ComplianceServices(platform, cs)
    if cs.decision_sink_url:
        services.sink = DecisionSink(
            platform.sessions,
            cs.decision_sink_url,
            masks=cs.decision_masks,
            labels=dict(cs.labels),
            batch=cs.decision_sink_batch,
            interval_s=cs.decision_sink_interval_ms / 1000,
            clock=platform.clock,
        )
    return services


__all__ = ["ComplianceRun", "ComplianceServices", "build"]

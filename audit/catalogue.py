"""The catalogue of audit event names and ledger record types: stable dotted names by area."""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class Event(StrEnum):
    """Every audit `event_type` the platform writes, grouped by area (`area.event`).

    Values are stable (STYLE habit 10): existing audit rows and ledger leaves carry them,
    so a name is added, never renamed or reused. docs/compliance.md ("Event names in use")
    lists each one; tests/test_event_catalogue.py checks both directions. Names built at
    run time are `<policy action>.denied` (gateway/pep.py) and `<area>.failure_burst`
    (audit/bursts.py). Key lifecycle names come from `crypto.events.KeyOperation` (crypto
    imports no other package); they are repeated here so the catalogue is complete.
    """

    # -- auth: tokens for clients and people (gateway/routers/auth.py, people.py)
    AUTH_TOKEN_ISSUED = "auth.token_issued"
    AUTH_TOKEN_REFRESHED = "auth.token_refreshed"
    AUTH_TOKEN_REVOKED = "auth.token_revoked"
    AUTH_PERSON_TOKEN_ISSUED = "auth.person_token_issued"
    AUTH_DENIED = "auth.denied"
    AUTH_TOKEN_DENIED = "auth.token_denied"
    AUTH_REFRESH_DENIED = "auth.refresh_denied"
    AUTH_REFRESH_REUSED = "auth.refresh_reused"
    AUTH_PERSON_DENIED = "auth.person_denied"
    AUTH_RATE_LIMITED = "auth.rate_limited"

    # -- organisations, clients and people (exchange/accounts.py, clients.py, people.py)
    ORGANISATION_CREATED = "organisation.created"
    ORGANISATION_CREATE_FAILED = "organisation.create_failed"
    CLIENT_CREATED = "client.created"
    CLIENT_DEACTIVATED = "client.deactivated"
    CLIENT_SECRET_ROTATED = "client.secret_rotated"
    CLIENT_CREATE_FAILED = "client.create_failed"
    CLIENT_DEACTIVATE_FAILED = "client.deactivate_failed"
    CLIENT_ROTATE_FAILED = "client.rotate_failed"
    PERSON_INVITED = "person.invited"
    PERSON_ENROLLED = "person.enrolled"
    PERSON_ACTIVATED = "person.activated"
    PERSON_INVITE_FAILED = "person.invite_failed"
    PERSON_REDEEM_DENIED = "person.redeem_denied"
    PERSON_CONFIRM_DENIED = "person.confirm_denied"
    PERSON_PASSKEY_ADDED = "person.passkey_added"
    PERSON_PASSKEY_USED = "person.passkey_used"
    PERSON_PASSKEY_REMOVED = "person.passkey_removed"
    PERSON_PASSKEY_DENIED = "person.passkey_denied"

    # -- certificates for mutual TLS (gateway/cli.py)
    CERTIFICATE_ISSUED = "certificate.issued"

    # -- datasets and provider nodes (exchange/catalog.py, custody.py)
    DATASET_REGISTERED = "dataset.registered"
    DATASET_REGISTRATION_FAILED = "dataset.registration_failed"
    DATASET_ANALYSIS_RULES_SET = "dataset.analysis_rules_set"
    DATASET_ANALYSIS_RULES_FAILED = "dataset.analysis_rules_failed"
    DATASET_JOIN_KEYS_DECLARED = "dataset.join_keys_declared"
    DATASET_JOIN_KEYS_FAILED = "dataset.join_keys_failed"
    NODE_REGISTERED = "node.registered"
    NODE_REGISTER_FAILED = "node.register_failed"

    # -- contracts: `contract.<ContractStatus>` (exchange/contracts.py)
    CONTRACT_PROPOSED = "contract.proposed"
    CONTRACT_ACTIVE = "contract.active"
    CONTRACT_TERMINATED = "contract.terminated"
    CONTRACT_PROPOSE_FAILED = "contract.propose_failed"
    CONTRACT_SIGN_FAILED = "contract.sign_failed"
    CONTRACT_TERMINATE_FAILED = "contract.terminate_failed"

    # -- computations: each transition of the state machine (exchange/computations.py)
    COMPUTATION_REQUESTED = "computation.requested"
    COMPUTATION_AWAITING_APPROVAL = "computation.awaiting_approval"
    COMPUTATION_PROVIDER_APPROVED = "computation.provider_approved"
    COMPUTATION_APPROVED = "computation.approved"
    COMPUTATION_RUNNING = "computation.running"
    COMPUTATION_REVIEW = "computation.review"
    COMPUTATION_RELEASE_APPROVED = "computation.release_approved"
    COMPUTATION_RELEASED = "computation.released"
    COMPUTATION_REJECTED = "computation.rejected"
    COMPUTATION_FAILED = "computation.failed"
    COMPUTATION_RESULT_DELIVERED = "computation.result_delivered"
    COMPUTATION_RESULT_DESTROYED = "computation.result_destroyed"
    COMPUTATION_RECOVERED = "computation.recovered"
    COMPUTATION_REQUEST_FAILED = "computation.request_failed"
    COMPUTATION_APPROVE_FAILED = "computation.approve_failed"
    COMPUTATION_REJECT_FAILED = "computation.reject_failed"
    COMPUTATION_DELIVERY_FAILED = "computation.delivery_failed"
    COMPUTATION_FL_ROUND_POSTED = "computation.fl_round_posted"
    COMPUTATION_FL_ROUND_FAILED = "computation.fl_round_failed"
    COMPUTATION_JOIN_STEP_POSTED = "computation.join_step_posted"
    COMPUTATION_JOIN_STEP_FAILED = "computation.join_step_failed"

    # -- policies (gateway/platform.py, gateway/routers/policies.py)
    POLICY_ACTIVATED = "policy.activated"
    POLICY_ACTIVATION_REFUSED = "policy.activation_refused"

    # -- key lifecycle, GB/T 39786-2021 Annex B (crypto/events.py `KeyOperation.event_type`)
    KEY_GENERATED = "key.generated"
    KEY_DISTRIBUTED = "key.distributed"
    KEY_STORED = "key.stored"
    KEY_USED = "key.used"
    KEY_ROTATED = "key.rotated"
    KEY_ARCHIVED = "key.archived"
    KEY_REVOKED = "key.revoked"
    KEY_BACKED_UP = "key.backed_up"
    KEY_RESTORED = "key.restored"
    KEY_DESTROYED = "key.destroyed"
    KEY_ACTIVATED = "key.activated"
    KEY_SUSPENDED = "key.suspended"
    KEY_RESUMED = "key.resumed"
    KEY_DESTROY_REQUESTED = "key.destroy_requested"
    KEY_DESTROY_CANCELLED = "key.destroy_cancelled"

    # -- compliance, retention and the audit workspace (audit/compliance, gateway/routers)
    COMPLIANCE_CHECKED = "compliance.checked"
    COMPLIANCE_CHECK_FAILED = "compliance.check_failed"
    RETENTION_RUN = "retention.run"
    RETENTION_RUN_FAILED = "retention.run_failed"
    RISK_REPORT_GENERATED = "risk.report_generated"
    RISK_REPORT_FAILED = "risk.report_failed"
    BACKUP_CREATED = "backup.created"
    AUDIT_RECORDS_READ = "audit.records_read"
    AUDIT_DECISIONS_READ = "audit.decisions_read"
    AUDIT_DECISIONS_DROPPED = "audit.decisions_dropped"

    # -- market: parties, products, DSP negotiation, metering, settlement (exchange/market)
    MARKET_PARTY_VERIFIED = "market.party_verified"
    MARKET_KEY_REGISTERED = "market.key_registered"
    MARKET_PRODUCT_CREATED = "market.product_created"
    MARKET_PRODUCT_LISTED = "market.product_listed"
    MARKET_NEGOTIATION_REQUESTED = "market.negotiation_requested"
    MARKET_NEGOTIATION_OFFERED = "market.negotiation_offered"
    MARKET_NEGOTIATION_ACCEPTED = "market.negotiation_accepted"
    MARKET_NEGOTIATION_AGREED = "market.negotiation_agreed"
    MARKET_NEGOTIATION_VERIFIED = "market.negotiation_verified"
    MARKET_NEGOTIATION_FINALIZED = "market.negotiation_finalized"
    MARKET_NEGOTIATION_TERMINATED = "market.negotiation_terminated"
    MARKET_METERED = "market.metered"
    MARKET_STATEMENT_ISSUED = "market.statement_issued"
    MARKET_DISPUTE_OPENED = "market.dispute_opened"
    MARKET_CERTIFICATE_ISSUED = "market.certificate_issued"
    MARKET_OPERATION_FAILED = "market.operation_failed"

    # -- requests the gateway refused or that failed (gateway/auditing.py, security.py)
    REQUEST_DENIED = "request.denied"
    REQUEST_FAILED = "request.failed"
    REQUEST_REJECTED = "request.rejected"


@unique
class RecordType(StrEnum):
    """Every ledger record `type`: the successful, authorised operations (frozen).

    A ledger leaf's `type` equals the audit event's name (exchange/trail.py). Existing
    ledgers are verified against these values forever: later issues add types, never
    rename one. tests/test_event_catalogue.py checks each is also an `Event`.
    """

    ORGANISATION_CREATED = Event.ORGANISATION_CREATED.value
    CLIENT_CREATED = Event.CLIENT_CREATED.value
    CLIENT_DEACTIVATED = Event.CLIENT_DEACTIVATED.value
    CLIENT_SECRET_ROTATED = Event.CLIENT_SECRET_ROTATED.value
    PERSON_INVITED = Event.PERSON_INVITED.value
    PERSON_ENROLLED = Event.PERSON_ENROLLED.value
    PERSON_ACTIVATED = Event.PERSON_ACTIVATED.value
    PERSON_PASSKEY_ADDED = Event.PERSON_PASSKEY_ADDED.value
    PERSON_PASSKEY_USED = Event.PERSON_PASSKEY_USED.value
    PERSON_PASSKEY_REMOVED = Event.PERSON_PASSKEY_REMOVED.value
    CERTIFICATE_ISSUED = Event.CERTIFICATE_ISSUED.value
    DATASET_REGISTERED = Event.DATASET_REGISTERED.value
    DATASET_ANALYSIS_RULES_SET = Event.DATASET_ANALYSIS_RULES_SET.value
    DATASET_JOIN_KEYS_DECLARED = Event.DATASET_JOIN_KEYS_DECLARED.value
    NODE_REGISTERED = Event.NODE_REGISTERED.value
    CONTRACT_PROPOSED = Event.CONTRACT_PROPOSED.value
    CONTRACT_ACTIVE = Event.CONTRACT_ACTIVE.value
    CONTRACT_TERMINATED = Event.CONTRACT_TERMINATED.value
    COMPUTATION_REQUESTED = Event.COMPUTATION_REQUESTED.value
    COMPUTATION_AWAITING_APPROVAL = Event.COMPUTATION_AWAITING_APPROVAL.value
    COMPUTATION_PROVIDER_APPROVED = Event.COMPUTATION_PROVIDER_APPROVED.value
    COMPUTATION_APPROVED = Event.COMPUTATION_APPROVED.value
    COMPUTATION_RUNNING = Event.COMPUTATION_RUNNING.value
    COMPUTATION_REVIEW = Event.COMPUTATION_REVIEW.value
    COMPUTATION_RELEASE_APPROVED = Event.COMPUTATION_RELEASE_APPROVED.value
    COMPUTATION_RELEASED = Event.COMPUTATION_RELEASED.value
    COMPUTATION_REJECTED = Event.COMPUTATION_REJECTED.value
    COMPUTATION_FAILED = Event.COMPUTATION_FAILED.value
    COMPUTATION_RESULT_DELIVERED = Event.COMPUTATION_RESULT_DELIVERED.value
    COMPUTATION_RESULT_DESTROYED = Event.COMPUTATION_RESULT_DESTROYED.value
    COMPUTATION_RECOVERED = Event.COMPUTATION_RECOVERED.value
    COMPUTATION_FL_ROUND_POSTED = Event.COMPUTATION_FL_ROUND_POSTED.value
    COMPUTATION_JOIN_STEP_POSTED = Event.COMPUTATION_JOIN_STEP_POSTED.value
    POLICY_ACTIVATED = Event.POLICY_ACTIVATED.value
    KEY_GENERATED = Event.KEY_GENERATED.value
    KEY_DISTRIBUTED = Event.KEY_DISTRIBUTED.value
    KEY_STORED = Event.KEY_STORED.value
    KEY_USED = Event.KEY_USED.value
    KEY_ROTATED = Event.KEY_ROTATED.value
    KEY_ARCHIVED = Event.KEY_ARCHIVED.value
    KEY_REVOKED = Event.KEY_REVOKED.value
    KEY_BACKED_UP = Event.KEY_BACKED_UP.value
    KEY_RESTORED = Event.KEY_RESTORED.value
    KEY_DESTROYED = Event.KEY_DESTROYED.value
    KEY_ACTIVATED = Event.KEY_ACTIVATED.value
    KEY_SUSPENDED = Event.KEY_SUSPENDED.value
    KEY_RESUMED = Event.KEY_RESUMED.value
    KEY_DESTROY_REQUESTED = Event.KEY_DESTROY_REQUESTED.value
    KEY_DESTROY_CANCELLED = Event.KEY_DESTROY_CANCELLED.value
    COMPLIANCE_CHECKED = Event.COMPLIANCE_CHECKED.value
    RETENTION_RUN = Event.RETENTION_RUN.value
    RISK_REPORT_GENERATED = Event.RISK_REPORT_GENERATED.value
    BACKUP_CREATED = Event.BACKUP_CREATED.value
    MARKET_PARTY_VERIFIED = Event.MARKET_PARTY_VERIFIED.value
    MARKET_KEY_REGISTERED = Event.MARKET_KEY_REGISTERED.value
    MARKET_PRODUCT_CREATED = Event.MARKET_PRODUCT_CREATED.value
    MARKET_PRODUCT_LISTED = Event.MARKET_PRODUCT_LISTED.value
    MARKET_NEGOTIATION_REQUESTED = Event.MARKET_NEGOTIATION_REQUESTED.value
    MARKET_NEGOTIATION_OFFERED = Event.MARKET_NEGOTIATION_OFFERED.value
    MARKET_NEGOTIATION_ACCEPTED = Event.MARKET_NEGOTIATION_ACCEPTED.value
    MARKET_NEGOTIATION_AGREED = Event.MARKET_NEGOTIATION_AGREED.value
    MARKET_NEGOTIATION_VERIFIED = Event.MARKET_NEGOTIATION_VERIFIED.value
    MARKET_NEGOTIATION_FINALIZED = Event.MARKET_NEGOTIATION_FINALIZED.value
    MARKET_NEGOTIATION_TERMINATED = Event.MARKET_NEGOTIATION_TERMINATED.value
    MARKET_METERED = Event.MARKET_METERED.value
    MARKET_STATEMENT_ISSUED = Event.MARKET_STATEMENT_ISSUED.value
    MARKET_DISPUTE_OPENED = Event.MARKET_DISPUTE_OPENED.value
    MARKET_CERTIFICATE_ISSUED = Event.MARKET_CERTIFICATE_ISSUED.value

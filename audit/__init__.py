"""Audit events and records (docs/compliance.md AUD-01), decision logs and verification."""

from audit.bursts import Burst, BurstAggregator, record_burst
from audit.events import AuditEvent, Event, RecordType, Result, Subject, record
from audit.models import AuditBase, AuditRecord

__all__ = [
    "AuditBase",
    "AuditEvent",
    "AuditRecord",
    "Burst",
    "BurstAggregator",
    "Event",
    "RecordType",
    "Result",
    "Subject",
    "record",
    "record_burst",
]

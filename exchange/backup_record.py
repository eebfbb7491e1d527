"""The trail of a backup: `backup.created` names where it is, so AUD-06 can verify it again."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

import audit
from exchange.backup import BackupSummary
from exchange.errors import BackupError
from exchange.trail import Receipt, Trail

# The audit record's detail column holds the record; longer locations cannot be recorded.
MAX_LOCATION = 300


@dataclass(frozen=True)
class BackupRecord:
    """What `backup.created` holds: location, tree size, manifest digest, verifier key."""

    location: Path
    tree_size: int
    manifest_digest: str  # "sha256:<hex>" of manifest.json
    verifier_key: str

    def to_detail(self) -> str:
        return json.dumps(
            {
                "location": str(self.location),
                "tree_size": self.tree_size,
                "manifest": self.manifest_digest,
                "verifier_key": self.verifier_key,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, detail: str) -> BackupRecord:
        try:
            doc = json.loads(detail)
            return cls(
                Path(doc["location"]),
                int(doc["tree_size"]),
                str(doc["manifest"]),
                str(doc["verifier_key"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"unreadable backup record: {exc}") from None


def manifest_digest(path: Path) -> str:
    """The digest of a backup's manifest, as recorded and compared (AUD-06)."""
    try:
        return "sha256:" + hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
    except OSError as exc:
        raise BackupError(f"cannot read the manifest: {exc.strerror}") from None


def check_location(out: Path) -> Path:
    """Refuse, before any work, a location too long to be recorded on the trail."""
    where = out.resolve()
    if len(str(where)) > MAX_LOCATION:
        raise BackupError(f"backup location longer than {MAX_LOCATION} characters")
    return where


def record_backup(
    session: Session,
    trail: Trail,
    by: audit.Subject,
    summary: BackupSummary,
    verifier_key: str,
    *,
    now: datetime,
) -> Receipt:
    """Write `backup.created` (audit record + ledger entry) in the caller's transaction."""
    digest = manifest_digest(summary.path)
    record = BackupRecord(summary.path.resolve(), summary.tree_size, digest, verifier_key)
    return trail.record(
        session,
        by,
        audit.AuditEvent(
            audit.Event.BACKUP_CREATED,
            "backup.create",
            audit.Result.SUCCESS,
            object_id=summary.store_id,
            detail=record.to_detail(),
        ),
        object_type="backup",
        now=now,
        payload_digest=digest,
    )

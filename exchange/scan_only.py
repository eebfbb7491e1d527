"""A scan-only dry run of a registration: every problem at once, nothing stored.

The same pipeline as `Registration` (the CSV reader, the sensitivity scanner, the
grading rule 就高从严 and the PI flags) runs over the upload, but the ciphertext goes
nowhere, no key is kept and nothing is written: a provider fixes its metadata before
the real registration instead of meeting one refusal at a time.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from exchange.accounts import Caller, Role
from exchange.catalog import (
    MAX_METADATA_BYTES,
    NAME_TAKEN,
    SessionFactory,
    _field_counts,
    name_taken,
)
from exchange.errors import ExchangeError
from exchange.ingest import Ingest, IngestResult
from exchange.schemas import DatasetCreate

__all__ = ["ScanFinding", "ScanOnly", "ScanReport"]


class ScanFinding(BaseModel):
    """One problem the real registration would refuse, with the problem `type` it would use."""

    type: str = Field(description="the problem code registration would answer with")
    detail: str
    field: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class ScanFieldPublic(BaseModel):
    name: str
    suggested_level: str
    reason: str | None
    detections: dict[str, int] = Field(description="category -> values that matched")
    pi: bool
    sensitive_pi: bool


class ScanReport(BaseModel):
    """What a registration of this metadata and file would meet."""

    ok: bool = Field(description="true when registration would be accepted by these checks")
    declared_level: str | None
    required_level: str | None
    rows: int | None
    columns: list[str]
    fields: list[ScanFieldPublic]
    findings: list[ScanFinding]


class _Discard(io.RawIOBase):
    """A sink for ciphertext nobody keeps."""

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return len(memoryview(b))


def _finding(exc: ExchangeError) -> ScanFinding:
    extra = {k: v for k, v in exc.extensions.items() if k != "field"}
    field = exc.extensions.get("field")
    return ScanFinding(
        type=exc.code, detail=exc.detail, field=None if field is None else str(field), extra=extra
    )


class ScanOnly:
    """Fed like a `Registration` (metadata part, file chunks); `complete` reports."""

    def __init__(self, caller: Caller, *, max_bytes: int) -> None:
        caller.require(Role.DATA_PROVIDER)
        self._caller = caller
        self._max_bytes = max_bytes
        self.meta: DatasetCreate | None = None
        self.raw_meta: dict[str, Any] | None = None
        self.findings: list[ScanFinding] = []
        self._ingest: Ingest | None = None
        self._broken = False

    def metadata(self, raw: bytes, session_factory: SessionFactory) -> None:
        """Validate the metadata part, keeping every error instead of the first."""
        if len(raw) > MAX_METADATA_BYTES:
            self._add("invalid-metadata", f"metadata exceeds {MAX_METADATA_BYTES} bytes")
            return
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._add("invalid-metadata", "metadata is not valid UTF-8 JSON")
            return
        self.raw_meta = doc if isinstance(doc, dict) else None
        try:
            meta = DatasetCreate.model_validate(doc)
        except ValidationError as exc:
            for e in exc.errors(include_url=False, include_input=False):
                where = ".".join(str(p) for p in e["loc"]) or None
                self._add("invalid-metadata", f"invalid metadata: {e['msg']}", field=where)
            return
        if name_taken(session_factory, self._caller.org_id, meta.name):
            self._add("dataset-name-taken", NAME_TAKEN, field="name")
        self.meta = meta

    def write(self, data: bytes) -> None:
        """The next chunk of the CSV; a broken CSV stops the scan, as it stops registration."""
        if self._broken:
            return
        try:
            if self._ingest is None:
                self._ingest = Ingest(
                    key=os.urandom(32),
                    aad=b"pdx:scan-only",
                    sink=io.BufferedWriter(_Discard()),
                    max_bytes=self._max_bytes,
                )
            self._ingest.write(data)
        except ExchangeError as exc:
            self._stop(exc)

    def complete(self) -> ScanReport:
        content: IngestResult | None = None
        if self._ingest is None and not self._broken:
            self._add("invalid-input", "the file part is missing or empty", field="file")
        elif self._ingest is not None and not self._broken:
            try:
                content = self._ingest.finish()
            except ExchangeError as exc:
                self._stop(exc)
        return self._report(content)

    def abort(self) -> None:
        if self._ingest is not None:
            self._ingest.abort()

    # -- helpers -----------------------------------------------------------------------

    def _add(self, code: str, detail: str, *, field: str | None = None, **extra: Any) -> None:
        self.findings.append(ScanFinding(type=code, detail=detail, field=field, extra=extra))

    def _stop(self, exc: ExchangeError) -> None:
        self.findings.append(_finding(exc))
        self._broken = True
        self.abort()

    def _report(self, content: IngestResult | None) -> ScanReport:
        meta = self.meta
        declared = meta.level.value if meta else None
        if self.raw_meta is not None and declared is None:
            level = self.raw_meta.get("level")
            declared = level if isinstance(level, str) else None
        fields: list[ScanFieldPublic] = []
        required: str | None = None
        if content is not None:
            scan = content.scan
            required = scan.min_level.value
            for f in scan.fields:
                pi, sensitive = _field_counts(f)
                fields.append(
                    ScanFieldPublic(
                        name=f.name,
                        suggested_level=f.suggested_level.value,
                        reason=f.reason,
                        detections={k: v.hits for k, v in f.detections.items()},
                        pi=pi,
                        sensitive_pi=sensitive,
                    )
                )
            if meta is not None:
                self._grading(meta, content)
        return ScanReport(
            ok=not self.findings,
            declared_level=declared,
            required_level=required,
            rows=content.rows if content else None,
            columns=content.columns if content else [],
            fields=fields,
            findings=self.findings,
        )

    def _grading(self, meta: DatasetCreate, content: IngestResult) -> None:
        # The checks `Registration._check_grading` makes, each reported, not the first.
        scan = content.scan
        if meta.level.rank < scan.min_level.rank:
            field = scan.field(scan.most_sensitive_field or "")
            self._add(
                "level-below-content",
                f"declared level {meta.level.value} is below {scan.min_level.value}, which "
                f"field '{field.name}' requires: {field.reason}",
                field=field.name,
                declared_level=meta.level.value,
                required_level=scan.min_level.value,
            )
        for f in scan.fields:
            pi, sensitive = _field_counts(f)
            if pi and not meta.pi:
                self._add(
                    "invalid-metadata",
                    f"field '{f.name}' holds personal information ({f.reason}); set pi=true",
                    field=f.name,
                )
            if sensitive and not meta.sensitive_pi:
                self._add(
                    "invalid-metadata",
                    f"field '{f.name}' holds sensitive personal information ({f.reason}); "
                    "set sensitive_pi=true",
                    field=f.name,
                )

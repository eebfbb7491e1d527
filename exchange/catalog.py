"""Dataset catalogue: registration with grading (就高从严), listing, detail and preview."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from pydantic import ValidationError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import audit
import crypto
from audit.catalogue import Event
from exchange.accounts import Caller, Role
from exchange.errors import (
    DuplicateDatasetName,
    InvalidInput,
    InvalidMetadata,
    LevelTooLow,
)
from exchange.ingest import Ingest, IngestResult
from exchange.levels import Level
from exchange.models import Dataset, DatasetField, load_dataset
from exchange.paging import Slice, Window, after_clause
from exchange.resources import sees_dataset_digests
from exchange.scan import FieldScan, ScanResult
from exchange.schemas import (
    DatasetCreate,
    DatasetPublic,
    DatasetSummary,
    PreviewPublic,
)
from exchange.storage import ObjectStore, storage_errors
from exchange.synth import ShapeProfile, synthesize
from exchange.trail import Trail
from exchange.views import row_values

# Scanner categories that make a field personal information (PIPL art. 4) and the
# subset that is sensitive personal information (PIPL art. 28; GB/T 35273 Annex B:
# identity-card numbers and financial accounts).
PI_CATEGORIES = frozenset({"id_number", "mobile", "bank_card", "email", "plate", "person_name"})
SENSITIVE_PI_CATEGORIES = frozenset({"id_number", "bank_card"})

MAX_METADATA_BYTES = 64 * 1024
DEFAULT_REVIEW_PERIOD = timedelta(days=365)

SessionFactory = Callable[[], Session]


@dataclass(frozen=True)
class CatalogContext:
    """What the catalogue needs from the composition root."""

    keystore: crypto.KeyStore
    objects: ObjectStore
    max_upload_bytes: int
    trail: Trail
    review_period: timedelta = DEFAULT_REVIEW_PERIOD


def object_aad(dataset_id: str) -> bytes:
    """Associated data binding an encrypted object to its dataset id."""
    return f"pdx:dataset:{dataset_id}".encode()


def _close_unflushed(sink: BinaryIO) -> None:
    """Close a partial file being thrown away; a failing flush (full disk) is ignored."""
    try:
        sink.close()
    except OSError:
        # The buffered writer keeps its buffer and stays open after a failed flush:
        # close the descriptor underneath so no file handle leaks.
        raw = getattr(sink, "raw", None)
        if raw is not None and not raw.closed:
            raw.close()


def _field_counts(field: FieldScan) -> tuple[bool, bool]:
    """(pi, sensitive_pi) for a field, counting only detections that graded it."""
    if field.suggested_level == Level.GENERAL_1:
        return False, False
    cats = {name for name, hit in field.detections.items() if hit.counted}
    return bool(cats & PI_CATEGORIES), bool(cats & SENSITIVE_PI_CATEGORIES)


NAME_TAKEN = "this provider already has a dataset with this name"


def name_taken(session_factory: SessionFactory, org_id: str, name: str) -> bool:
    """Whether the organisation already has a dataset of this name."""
    with session_factory() as session:
        taken = session.scalar(
            select(func.count())
            .select_from(Dataset)
            .where(Dataset.owner_org == org_id, Dataset.name == name)
        )
    return bool(taken)


class Registration:
    """One dataset registration, fed part by part by the transport.

    Nothing is visible until `complete` commits: the encrypted object is a partial
    file, the data key exists only in memory, and `abort` removes both.
    """

    def __init__(self, ctx: CatalogContext, caller: Caller, *, now: datetime) -> None:
        caller.require(Role.DATA_PROVIDER)
        self._ctx = ctx
        self._caller = caller
        self._now = now
        self.dataset_id = str(uuid.uuid4())
        self._data_key = ctx.keystore.generate_data_key(object_ref=f"dataset:{self.dataset_id}")
        self.meta: DatasetCreate | None = None
        self._sink: BinaryIO | None = None
        self._ingest: Ingest | None = None

    # -- parts -------------------------------------------------------------------------

    def metadata(self, raw: bytes, session_factory: SessionFactory) -> DatasetCreate:
        """Validate the metadata part; fails fast on a name this provider already used."""
        if self.meta is not None:
            raise InvalidMetadata("the metadata part appears more than once")
        if len(raw) > MAX_METADATA_BYTES:
            raise InvalidMetadata(f"metadata exceeds {MAX_METADATA_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InvalidMetadata("metadata is not valid UTF-8 JSON") from None
        try:
            meta = DatasetCreate.model_validate(doc)
        except ValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in e["loc"]) or None, "message": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            first = errors[0]
            where = f" ({first['field']})" if first["field"] else ""
            raise InvalidMetadata(
                f"invalid metadata{where}: {first['message']}", errors=errors
            ) from None
        if name_taken(session_factory, self._caller.org_id, meta.name):
            raise DuplicateDatasetName(NAME_TAKEN)
        self.meta = meta
        return meta

    def write(self, data: bytes) -> None:
        """The next chunk of the CSV file part."""
        with storage_errors():
            if self._ingest is None:
                self._sink = self._ctx.objects.create_partial(self.dataset_id)
                self._ingest = Ingest(
                    key=self._data_key.key,
                    aad=object_aad(self.dataset_id),
                    sink=self._sink,
                    max_bytes=self._ctx.max_upload_bytes,
                )
            self._ingest.write(data)

    # -- end ---------------------------------------------------------------------------

    def complete(self, session_factory: SessionFactory) -> DatasetPublic:
        """Finish the scan, grade, and commit dataset + key + audit record together."""
        meta, ingest, sink = self._parts()
        with storage_errors():
            content = ingest.finish()
            sink.close()
        self._check_grading(meta, content.scan)
        try:
            with storage_errors(), session_factory() as session, session.begin():
                self._ctx.keystore.store_data_key(
                    session, self._data_key, owner_org=self._caller.org_id, now=self._now
                )
                dataset = self._dataset_row(meta, content)
                session.add(dataset)
                public = self._registered(session, dataset, content)
                self._ctx.objects.publish(self.dataset_id)
        except IntegrityError:
            self._ctx.objects.discard(self.dataset_id)
            raise DuplicateDatasetName(NAME_TAKEN) from None
        except BaseException:
            self._ctx.objects.discard(self.dataset_id)
            raise
        self._ctx.objects.settle(self.dataset_id)
        return public

    def abort(self) -> None:
        """Drop everything this registration wrote; safe to call in any state.

        The partial file is removed whatever happens on the way: on a full disk, closing
        the sink flushes its buffer and fails again (ENOSPC), and the discard must still
        run, or the disk stays full.
        """
        try:
            if self._ingest is not None:
                self._ingest.abort()
        finally:
            try:
                if self._sink is not None and not self._sink.closed:
                    _close_unflushed(self._sink)
            finally:
                self._ctx.objects.discard(self.dataset_id)

    # -- helpers -----------------------------------------------------------------------

    def _parts(self) -> tuple[DatasetCreate, Ingest, BinaryIO]:
        """The metadata, the file's ingest and its sink, once both parts have come."""
        if self.meta is None:
            raise InvalidMetadata("the metadata part is missing")
        if self._ingest is None or self._sink is None:
            raise InvalidInput("the file part is missing or empty", field="file")
        return self.meta, self._ingest, self._sink

    def _registered(
        self, session: Session, dataset: Dataset, content: IngestResult, *, custody: str = ""
    ) -> DatasetPublic:
        """The registration's audit record and ledger entry, and the entry as answered."""
        receipt = self._ctx.trail.record(
            session,
            self._caller.subject(),
            audit.AuditEvent(
                Event.DATASET_REGISTERED,
                "register",
                audit.Result.SUCCESS,
                object_id=dataset.id,
                data_level=dataset.level,
                detail=f"{custody}rows={content.rows} sha256={content.digests['sha256']}",
            ),
            object_type="dataset",
            payload_digest=f"sha256:{content.digests['sha256']}",
            now=self._now,
        )
        session.flush()
        return to_public(dataset).model_copy(update={"ledger_index": receipt.ledger_index})

    def _check_grading(self, meta: DatasetCreate, scan: ScanResult) -> None:
        # 就高从严 (GB/T 43697-2024 §5): never lower than the most sensitive field.
        if meta.level.rank < scan.min_level.rank:
            field = next(f for f in scan.fields if f.name == scan.most_sensitive_field)
            raise LevelTooLow(
                f"declared level {meta.level.value} is below {scan.min_level.value}, which field "
                f"'{field.name}' requires: {field.reason}",
                field=field.name,
                declared_level=meta.level.value,
                required_level=scan.min_level.value,
                detections={k: v.hits for k, v in field.detections.items()},
            )
        for f in scan.fields:
            pi, sensitive = _field_counts(f)
            if pi and not meta.pi:
                raise InvalidMetadata(
                    f"field '{f.name}' holds personal information ({f.reason}); set pi=true",
                    field=f.name,
                )
            if sensitive and not meta.sensitive_pi:
                raise InvalidMetadata(
                    f"field '{f.name}' holds sensitive personal information ({f.reason}); "
                    "set sensitive_pi=true",
                    field=f.name,
                )

    def _dataset_row(self, meta: DatasetCreate, content: IngestResult) -> Dataset:
        fields = []
        for position, f in enumerate(content.scan.fields):
            pi, sensitive = _field_counts(f)
            fields.append(
                DatasetField(
                    position=position,
                    name=f.name,
                    level=f.suggested_level.value,
                    pi=pi,
                    sensitive_pi=sensitive,
                    non_empty=f.non_empty,
                    detections={k: v.to_dict() for k, v in f.detections.items()},
                    reason=f.reason,
                )
            )
        return Dataset(
            id=self.dataset_id,
            owner_org=self._caller.org_id,
            name=meta.name,
            description=meta.description,
            classification_path=meta.classification_path,
            level=meta.level.value,
            impact_object=meta.impact_object.value,
            impact_degree=meta.impact_degree.value,
            processing_degree=meta.processing_degree.value,
            source_agency=meta.source_agency,
            source_system=meta.source_system,
            accountable_department=meta.accountable_department,
            pi=meta.pi,
            sensitive_pi=meta.sensitive_pi,
            important_data_catalogue=meta.important_data_catalogue,
            share_attribute=meta.share_attribute.value,
            open_attribute=meta.open_attribute.value,
            graded_at=self._now,
            graded_by=self._caller.client_id,
            next_review_at=meta.next_review_at or self._now + self._ctx.review_period,
            custody="platform",
            size_bytes=content.size_bytes,
            rows=content.rows,
            sha256=content.digests["sha256"],
            sm3=content.digests["sm3"],
            data_key_id=self._data_key.id,
            scan=content.scan.to_dict(),
            profile=content.profile.to_dict(),
            registered_at=self._now,
            registered_by=self._caller.client_id,
            fields=fields,
        )


def sees_digests(viewer: Caller, ds: Dataset) -> bool:
    """Content digests go to the owner, auditors and security administrators only.

    A digest of a small file confirms a guessed content (one ID number, say); others
    see the catalogue entry without it.
    """
    return sees_dataset_digests(viewer, ds.owner_org)


def to_public(ds: Dataset, *, digests: bool = True) -> DatasetPublic:
    scan = ScanResult.from_dict(ds.scan)
    shown = {
        "suggested_level": scan.min_level,
        "most_sensitive_field": scan.most_sensitive_field,
        "digests": {"sha256": f"sha256:{ds.sha256}", "sm3": f"sm3:{ds.sm3}"} if digests else None,
    }
    return DatasetPublic.model_validate({**row_values(DatasetPublic, ds), **shown})


def get_dataset(session: Session, dataset_id: str, *, viewer: Caller) -> DatasetPublic:
    ds = load_dataset(session, dataset_id, fields=True)
    return to_public(ds, digests=sees_digests(viewer, ds))


# The attributes a catalogue decision depends on (`policy_resource` without the id):
# the listing decides once per distinct combination, not once per dataset.
VISIBILITY_ATTRIBUTES = ("level", "open_attribute", "owner_org", "pi")
_WALK_SHARE = 4  # walk the index when at least one dataset in four is visible
_WALK_BATCH = 64

Visible = Callable[[Mapping[str, Any]], bool]


def list_datasets(
    session: Session,
    *,
    visible: Visible,
    window: Window,
    owner_org: str | None = None,
    level: Level | None = None,
) -> Slice[DatasetSummary]:
    """Datasets whose metadata the caller may read, oldest first by (registered_at, id).

    `visible(resource)` is the caller's `dataset.read_metadata` decision on a policy
    resource (`policy_resource` without its id); a dataset is listed only if its detail
    would be shown. Datasets share few attribute combinations, so the decisions are
    taken per combination (one grouped query) and the page is selected in SQL among
    the allowed ones: pages and the total count visible datasets only.
    """
    filters = []
    if owner_org is not None:
        filters.append(Dataset.owner_org == owner_org)
    if level is not None:
        filters.append(Dataset.level == level.value)
    keys = [getattr(Dataset, name) for name in VISIBILITY_ATTRIBUTES]
    groups = session.execute(select(*keys, func.count()).where(*filters).group_by(*keys)).all()
    allowed: set[tuple[Any, ...]] = set()
    total = everything = 0
    for *values, count in groups:
        everything += int(count)
        resource = {"type": "dataset", **dict(zip(VISIBILITY_ATTRIBUTES, values, strict=True))}
        if visible(resource):
            allowed.add(tuple(values))
            total += int(count)
    if not allowed:
        return Slice(items=[], total=0, last=None)
    # Only the summary's columns, as plain rows: loading whole ORM objects (the scan and
    # shape profile are kilobytes of JSON each) was most of a listing's cost under load.
    columns = [getattr(Dataset, name) for name in DatasetSummary.model_fields]
    order = (Dataset.registered_at, Dataset.id)
    stmt = select(*columns, *keys).where(*filters).order_by(*order)
    if window.after is not None:
        stmt = stmt.where(after_clause(order, window.after))
    if total * _WALK_SHARE >= everything:
        # Most datasets are visible: walk the registration-order index and keep the
        # visible ones (about limit x _WALK_SHARE rows at most). SQLite, given the
        # combinations as an OR, fetched every visible row and sorted them per page.
        rows = []
        walk = session.execute(stmt.execution_options(yield_per=_WALK_BATCH)).mappings()
        for row in walk:
            if tuple(row[k.key] for k in keys) in allowed:
                rows.append(dict(row))
                if len(rows) > window.limit:
                    break
        walk.close()
    else:
        combos = [and_(*(k == v for k, v in zip(keys, c, strict=True))) for c in allowed]
        page = stmt.where(or_(*combos)).limit(window.limit + 1)
        rows = [dict(row) for row in session.execute(page).mappings()]
    more = len(rows) > window.limit
    rows = rows[: window.limit]
    last = (rows[-1]["registered_at"], rows[-1]["id"]) if more and rows else None
    return Slice(items=[DatasetSummary.model_validate(row) for row in rows], total=total, last=last)


def preview(session: Session, dataset_id: str, *, rows: int = 20) -> PreviewPublic:
    """Synthetic rows generated from the stored shape profile; no real value is read."""
    if not 1 <= rows <= 200:
        raise InvalidInput("rows must be 1-200")
    ds = load_dataset(session, dataset_id, fields=True)
    profile = ShapeProfile.from_dict(ds.profile)
    scan = ScanResult.from_dict(ds.scan)
    seed = uuid.UUID(ds.id).int & 0xFFFFFFFF
    return PreviewPublic(
        dataset_id=ds.id,
        columns=[f.name for f in ds.fields],
        rows=synthesize(profile, scan, rows, seed),
    )


def iter_plaintext(ctx: CatalogContext, session: Session, dataset_id: str) -> Iterator[bytes]:
    """Decrypt a platform-held dataset chunk by chunk (for sandboxed operators and checks).

    Authenticity is checked per chunk (the STREAM construction), so a truncated or
    altered object fails with `crypto.InvalidCiphertext` before it ends.
    """
    ds = load_dataset(session, dataset_id, fields=True)
    ref = f"dataset:{ds.id}"
    key = ctx.keystore.data_key(session, ds.data_key_id, object_ref=ref)
    with ctx.objects.open(ds.id) as f:
        yield from crypto.decrypt_stream(key, f, aad=object_aad(ds.id))

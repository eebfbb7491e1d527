"""Custody of datasets: provider nodes, and registering datasets whose rows stay on them.

A dataset is `platform`-held (encrypted at rest in the object store: `Registration`) or
`node`-held: its rows live in its provider's node (`sandbox.nodes`) and the platform
keeps only the catalogue metadata, the grading, the digests, the scan result and the
shape profile. `NodeRegistration` runs the same streaming pipeline as a platform-held
registration (scan, grade, digest), but the ciphertext goes to a private temporary file
under a key that exists only in memory; once the content is graded, the rows are
decrypted once, uploaded to the node with the synthetic preview as their mock, and the
temporary file and key are discarded. Nothing of the rows is stored by the platform.

Each provider organisation has one node: `embedded` (a PySyft Datasite in this
process, the default) or `http` (the provider's own Datasite at a URL it registers,
with the account it created there for the platform, sealed under its KEK).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import uuid
from datetime import datetime
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import audit
import crypto
from exchange.accounts import Caller, OrgKind, Role
from exchange.catalog import CatalogContext, Registration, SessionFactory, object_aad, to_public
from exchange.errors import DuplicateDatasetName, Forbidden, InvalidInput, InvalidMetadata
from exchange.ingest import Ingest
from exchange.jobs import open_sealed, seal
from exchange.models import NodeDataset, ProviderNodeRecord
from exchange.schemas import DatasetPublic
from exchange.synth import synthesize
from exchange.trail import Trail
from sandbox.errors import SandboxError
from sandbox.nodes import NodeRegistry, ProviderNode, SyftNode

__all__ = [
    "NodeCreate",
    "NodePublic",
    "NodeRegistration",
    "list_nodes",
    "node_credentials",
    "node_for",
    "register_node",
]

MOCK_ROWS = 100
NODE_MAX_BYTES = 256 << 20
"""A node-held upload is handed to PySyft as one string: keep it to what fits in memory."""


class NodeCreate(BaseModel):
    """A provider's node: embedded (default) or its own Datasite over HTTP."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: Literal["embedded", "http"] = "embedded"
    url: str | None = Field(default=None, max_length=500, pattern=r"^https?://[^\s]+$")
    email: str | None = Field(default=None, max_length=200, description="the platform's account")
    password: SecretStr | None = Field(default=None, max_length=200)
    can_approve: bool = Field(
        default=False,
        description="the account may approve pdx jobs on the node (approval delegated to "
        "pdx's approval flow); otherwise the node's administrator approves each job there",
    )


class NodePublic(BaseModel):
    org_id: str
    kind: str
    url: str | None
    registered_by: str
    registered_at: datetime
    ledger_index: int | None = None


def _credentials_ref(org_id: str) -> str:
    return f"node:{org_id}:credentials"


def node_credentials(
    keystore: crypto.KeyStore, session: Session, record: ProviderNodeRecord
) -> dict[str, Any]:
    """The account the platform uses on an HTTP node (unsealed with the provider's KEK)."""
    if record.credentials_key_id is None or record.credentials_sealed is None:
        raise InvalidInput("the node has no stored credentials")
    ref = _credentials_ref(record.org_id)
    key = keystore.data_key(session, record.credentials_key_id, object_ref=ref)
    out: dict[str, Any] = json.loads(open_sealed(key, record.credentials_sealed, ref.encode()))
    return out


def node_for(
    nodes: NodeRegistry, keystore: crypto.KeyStore, session: Session, org_id: str
) -> ProviderNode:
    """The organisation's node: already connected, its registered HTTP node, or embedded."""
    node = nodes.get(org_id)
    if node is not None:
        return node
    record = session.get(ProviderNodeRecord, org_id)
    if record is None or record.kind == "embedded":
        return nodes.embedded(org_id)
    creds = node_credentials(keystore, session, record)
    remote = SyftNode.connect(
        org_id,
        record.url or "",
        email=creds["email"],
        password=creds["password"],
        can_approve=bool(creds.get("can_approve")),
    )
    nodes.add(remote)
    return remote


def register_node(
    session: Session,
    caller: Caller,
    body: NodeCreate,
    *,
    keystore: crypto.KeyStore,
    nodes: NodeRegistry,
    trail: Trail,
    now: datetime,
) -> NodePublic:
    """A provider names its node (replacing an earlier one); an HTTP node is logged in to."""
    caller.require(Role.DATA_PROVIDER)
    if caller.org_kind is not OrgKind.PROVIDER:
        raise Forbidden("only a provider organisation has a node")
    record = session.get(ProviderNodeRecord, caller.org_id, with_for_update=True)
    if record is not None and record.credentials_key_id is not None:
        keystore.delete_data_key(session, record.credentials_key_id)
    if record is None:
        record = ProviderNodeRecord(org_id=caller.org_id)
        session.add(record)
    record.kind = body.kind
    record.url = None
    record.credentials_key_id = None
    record.credentials_sealed = None
    record.registered_by = caller.client_id
    record.registered_at = now
    if body.kind == "http":
        if not body.url or not body.email or body.password is None:
            raise InvalidInput("an http node needs url, email and password", field="url")
        try:  # fail now, not at the first job
            node = SyftNode.connect(
                caller.org_id,
                body.url,
                email=body.email,
                password=body.password.get_secret_value(),
                can_approve=body.can_approve,
            )
        except SandboxError as exc:
            raise InvalidInput(exc.detail, field="url") from None
        record.url = body.url
        ref = _credentials_ref(caller.org_id)
        key = keystore.new_data_key(session, owner_org=caller.org_id, object_ref=ref, now=now)
        secret = {
            "email": body.email,
            "password": body.password.get_secret_value(),
            "can_approve": body.can_approve,
        }
        record.credentials_key_id = key.id
        record.credentials_sealed = seal(key, json.dumps(secret).encode(), ref.encode())
        nodes.add(node)
    receipt = trail.record(
        session,
        caller.subject(),
        audit.AuditEvent(
            "node.registered",
            "register",
            audit.Result.SUCCESS,
            object_id=caller.org_id,
            detail=f"kind={body.kind} url={body.url or '-'}",
        ),
        object_type="node",
        now=now,
    )
    return _public(record, receipt.ledger_index)


def _public(record: ProviderNodeRecord, ledger_index: int | None = None) -> NodePublic:
    return NodePublic(
        org_id=record.org_id,
        kind=record.kind,
        url=record.url,
        registered_by=record.registered_by,
        registered_at=record.registered_at,
        ledger_index=ledger_index,
    )


def list_nodes(session: Session, caller: Caller) -> list[NodePublic]:
    """Registered nodes: a provider sees its own, auditors and security every one."""
    stmt = select(ProviderNodeRecord).order_by(ProviderNodeRecord.registered_at)
    if not caller.roles & {Role.AUDITOR, Role.SECURITY_ADMIN}:
        stmt = stmt.where(ProviderNodeRecord.org_id == caller.org_id)
    return [_public(r) for r in session.scalars(stmt)]


def _mock_csv(columns: list[str], rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return out.getvalue()


class NodeRegistration(Registration):
    """A registration whose rows go to the provider's node instead of the object store."""

    def __init__(
        self,
        ctx: CatalogContext,
        caller: Caller,
        *,
        now: datetime,
        nodes: NodeRegistry,
    ) -> None:
        super().__init__(ctx, caller, now=now)
        self._nodes = nodes
        self._spool: BinaryIO | None = None

    def write(self, data: bytes) -> None:
        """The next chunk: scanned and digested as usual, spooled encrypted, never published."""
        if self._ingest is None:
            self._spool = tempfile.TemporaryFile(prefix="pdx-node-upload-")
            self._sink = self._spool
            self._ingest = Ingest(
                key=self._data_key.key,
                aad=object_aad(self.dataset_id),
                sink=self._spool,
                max_bytes=min(self._ctx.max_upload_bytes, NODE_MAX_BYTES),
            )
        self._ingest.write(data)

    def complete(self, session_factory: SessionFactory) -> DatasetPublic:
        """Grade, upload the rows to the node, then commit the catalogue entry and its trail."""
        if self.meta is None:
            raise InvalidMetadata("the metadata part is missing")
        if self._ingest is None or self._spool is None:
            raise InvalidInput("the file part is missing or empty", field="file")
        content = self._ingest.finish()
        meta = self.meta
        self._check_grading(meta, content.scan)
        self._spool.flush()
        self._spool.seek(0)
        rows = b"".join(
            crypto.decrypt_stream(self._data_key.key, self._spool, aad=object_aad(self.dataset_id))
        ).decode("utf-8")
        self._spool.close()
        mock = _mock_csv(
            list(content.columns),
            synthesize(
                content.profile,
                content.scan,
                min(MOCK_ROWS, content.rows),
                uuid.UUID(self.dataset_id).int & 0xFFFFFFFF,
            ),
        )
        with session_factory() as session:
            node = node_for(self._nodes, self._ctx.keystore, session, self._caller.org_id)
        asset_ref = node.upload(self.dataset_id, rows, mock)
        del rows
        try:
            with session_factory() as session, session.begin():
                dataset = self._dataset_row(meta, content)
                dataset.custody = "node"
                dataset.data_key_id = ""  # no content key: the platform holds no rows
                session.add(dataset)
                session.flush()
                session.add(
                    NodeDataset(
                        dataset_id=dataset.id,
                        org_id=self._caller.org_id,
                        asset_ref=asset_ref,
                        uploaded_at=self._now,
                    )
                )
                receipt = self._ctx.trail.record(
                    session,
                    self._caller.subject(),
                    audit.AuditEvent(
                        "dataset.registered",
                        "register",
                        audit.Result.SUCCESS,
                        object_id=dataset.id,
                        data_level=dataset.level,
                        detail=f"custody=node rows={content.rows} "
                        f"sha256={content.digests['sha256']}",
                    ),
                    object_type="dataset",
                    payload_digest=f"sha256:{content.digests['sha256']}",
                    now=self._now,
                )
                session.flush()
                public = to_public(dataset).model_copy(
                    update={"ledger_index": receipt.ledger_index}
                )
        except BaseException as exc:
            try:
                node.remove(asset_ref)
            except SandboxError:
                pass
            if isinstance(exc, IntegrityError):
                raise DuplicateDatasetName(
                    "this provider already has a dataset with this name"
                ) from None
            raise
        return public

    def abort(self) -> None:
        super().abort()
        if self._spool is not None and not self._spool.closed:
            self._spool.close()

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

An embedded node's store lies on the platform's disk, so the rows it is given are
sealed under a data key wrapped by the provider's KEK (`Dataset.data_key_id`, object
`node-dataset:<id>`): the node opens them in a job's private work file only, with the
key the platform unwraps for that job (`node_data_key`). Destroying the provider's KEK
crypto-shreds them like platform-held data.

Connecting to an HTTP node never happens inside a database transaction: registration
logs in first (within `probe_s`, every failure answered alike and at the same time, so
the answer reveals nothing of the port), then writes; at job time the record is read
in a short session that is closed before connecting (`node_for`). Where the platform
may connect is `sandbox.outbound`'s policy.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import audit
import crypto
from audit.catalogue import Event
from crypto.errors import KeyDestroyed
from exchange.accounts import Caller, OrgKind, Role
from exchange.catalog import (
    NAME_TAKEN,
    CatalogContext,
    Registration,
    SessionFactory,
    object_aad,
)
from exchange.errors import (
    DuplicateDatasetName,
    InvalidInput,
    NodeAddressRefused,
    NodeDataShredded,
    NodeUnreachable,
)
from exchange.ingest import Ingest
from exchange.jobs import open_sealed, seal
from exchange.models import Dataset, NodeDataset, ProviderNodeRecord
from exchange.paging import Slice, Window, keyset
from exchange.resources import sees_everything
from exchange.schemas import DatasetPublic
from exchange.synth import synthesize
from exchange.timestamps import Timestamp
from exchange.trail import Trail
from sandbox.errors import OutboundRefused, SandboxError
from sandbox.node_side import SEALED_PREFIX, sealed_aad
from sandbox.nodes import NodeRegistry, ProviderNode, SyftNode
from sandbox.outbound import pad_until, within

__all__ = [
    "NodeAddressRefused",
    "NodeCreate",
    "NodeDataShredded",
    "NodePublic",
    "NodeRegistration",
    "NodeUnreachable",
    "list_nodes",
    "node_credentials",
    "node_data_key",
    "node_for",
    "register_node",
]

MOCK_ROWS = 100
NODE_MAX_BYTES = 256 << 20
"""A node-held upload is handed to PySyft as one string: keep it to what fits in memory."""


_UNREACHABLE = "the node could not be reached as a PySyft Datasite with this account"


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
    model_config = ConfigDict(from_attributes=True)  # read from a ProviderNodeRecord

    org_id: str
    kind: str
    url: str | None
    registered_by: str
    registered_at: Timestamp
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


def _node_data_ref(dataset_id: str) -> str:
    return f"node-dataset:{dataset_id}"


def node_data_key(keystore: crypto.KeyStore, session: Session, dataset: Dataset) -> bytes | None:
    """The key of a node-held dataset's sealed rows (None: the node holds them as they are).

    `NodeDataShredded` once the provider's KEK was destroyed: the rows are unreadable.
    """
    if dataset.custody != "node" or not dataset.data_key_id:
        return None
    try:
        return keystore.data_key(
            session, dataset.data_key_id, object_ref=_node_data_ref(dataset.id)
        )
    except (KeyDestroyed, crypto.KeyNotFound):
        raise NodeDataShredded(
            f"dataset {dataset.id} was crypto-shredded: its provider's key was destroyed"
        ) from None


def node_for(
    nodes: NodeRegistry, keystore: crypto.KeyStore, sessions: SessionFactory, org_id: str
) -> ProviderNode:
    """The organisation's node: already connected, its registered HTTP node, or embedded.

    The record is read in a short session of its own, closed before any connection.
    """
    node = nodes.get(org_id)
    if node is not None:
        return node
    with sessions() as session:
        record = session.get(ProviderNodeRecord, org_id)
        if record is None or record.kind == "embedded":
            record = None
            creds: dict[str, Any] = {}
            url = ""
        else:
            creds = node_credentials(keystore, session, record)
            url = record.url or ""
    if record is None:
        return nodes.embedded(org_id)
    remote = SyftNode.connect(
        org_id,
        url,
        email=creds["email"],
        password=creds["password"],
        can_approve=bool(creds.get("can_approve")),
        policy=nodes.outbound,
    )
    nodes.add(remote)
    return remote


def _probe(nodes: NodeRegistry, org_id: str, body: NodeCreate, probe_s: float) -> ProviderNode:
    """Log in to the provider's HTTP node, outside any transaction, within `probe_s`.

    A refused address fails at once and sends nothing. Every other failure (connection
    refused, timed out, not a Datasite, wrong account) gives the same error after the
    same time, `probe_s` from the start, so neither the body nor the timing tells the
    state of a port (a registration cannot be used to scan the platform's network).
    """
    assert body.url is not None and body.email is not None and body.password is not None
    url, email, password = body.url, body.email, body.password.get_secret_value()
    bounded = replace(
        nodes.outbound,
        connect_timeout_s=min(nodes.outbound.connect_timeout_s, probe_s),
        read_timeout_s=min(nodes.outbound.read_timeout_s, probe_s),
    )
    started = time.monotonic()

    def login() -> ProviderNode:
        node = SyftNode.connect(
            org_id,
            url,
            email=email,
            password=password,
            can_approve=body.can_approve,
            policy=bounded,
        )
        node.repin(nodes.outbound)  # from now on: the job-time timeouts
        return node

    try:
        return within(probe_s, login, name="pdx-node-probe")
    except OutboundRefused:
        raise NodeAddressRefused(
            "the node's address is not allowed by the platform's outbound policy", field="url"
        ) from None
    except Exception:  # noqa: BLE001 - one answer for every cause, see above
        pad_until(started, probe_s)
        raise NodeUnreachable(_UNREACHABLE, field="url") from None


def register_node(
    sessions: SessionFactory,
    caller: Caller,
    body: NodeCreate,
    *,
    keystore: crypto.KeyStore,
    nodes: NodeRegistry,
    trail: Trail,
    now: datetime,
    probe_s: float = 10.0,
) -> NodePublic:
    """A provider names its node (replacing an earlier one); an HTTP node is logged in to.

    The login happens before the write transaction opens, never inside it.
    """
    caller.require_as(
        Role.DATA_PROVIDER, OrgKind.PROVIDER, "only a provider organisation has a node"
    )
    node: ProviderNode | None = None
    if body.kind == "http":
        if not body.url or not body.email or body.password is None:
            raise InvalidInput("an http node needs url, email and password", field="url")
        node = _probe(nodes, caller.org_id, body, probe_s)  # fail now, not at the first job
    try:
        with sessions() as session, session.begin():
            public = _record_node(session, caller, body, keystore=keystore, trail=trail, now=now)
    except BaseException:
        if node is not None:
            node.close()
        raise
    if node is not None:
        nodes.add(node)
    return public


def _record_node(
    session: Session,
    caller: Caller,
    body: NodeCreate,
    *,
    keystore: crypto.KeyStore,
    trail: Trail,
    now: datetime,
) -> NodePublic:
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
        assert body.email is not None and body.password is not None
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
    receipt = trail.record(
        session,
        caller.subject(),
        audit.AuditEvent(
            Event.NODE_REGISTERED,
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
    node = NodePublic.model_validate(record)
    node.ledger_index = ledger_index
    return node


def list_nodes(session: Session, caller: Caller, *, window: Window) -> Slice[NodePublic]:
    """Registered nodes: a provider sees its own, auditors and security every one."""
    stmt = select(ProviderNodeRecord)
    if not sees_everything(caller):
        stmt = stmt.where(ProviderNodeRecord.org_id == caller.org_id)
    order = (ProviderNodeRecord.registered_at, ProviderNodeRecord.org_id)
    return keyset(session, stmt, order, window, _public)


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
        meta, ingest, spool = self._parts()  # the sink is the spool
        content = ingest.finish()
        self._check_grading(meta, content.scan)
        spool.flush()
        spool.seek(0)
        rows = b"".join(
            crypto.decrypt_stream(self._data_key.key, spool, aad=object_aad(self.dataset_id))
        ).decode("utf-8")
        spool.close()
        mock = _mock_csv(
            list(content.columns),
            synthesize(
                content.profile,
                content.scan,
                min(MOCK_ROWS, content.rows),
                uuid.UUID(self.dataset_id).int & 0xFFFFFFFF,
            ),
        )
        node = node_for(self._nodes, self._ctx.keystore, session_factory, self._caller.org_id)
        node_key: crypto.DataKey | None = None
        if node.kind == "embedded":
            # Its store is on the platform's disk: it gets the rows sealed (module doc).
            node_key = self._ctx.keystore.generate_data_key(
                object_ref=_node_data_ref(self.dataset_id)
            )
            sealed = seal(node_key, rows.encode("utf-8"), sealed_aad(self.dataset_id))
            rows = SEALED_PREFIX + base64.b64encode(sealed).decode("ascii")
            del sealed
        asset_ref = node.upload(self.dataset_id, rows, mock)
        del rows
        try:
            with session_factory() as session, session.begin():
                dataset = self._dataset_row(meta, content)
                dataset.custody = "node"
                # The platform holds no rows: only, for an embedded node, the wrapped key
                # of the sealed rows the node holds ("" when the node holds them itself).
                dataset.data_key_id = ""
                if node_key is not None:
                    self._ctx.keystore.store_data_key(
                        session, node_key, owner_org=self._caller.org_id, now=self._now
                    )
                    dataset.data_key_id = node_key.id
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
                public = self._registered(session, dataset, content, custody="custody=node ")
        except BaseException as exc:
            try:
                node.remove(asset_ref)
            except SandboxError:
                pass
            if isinstance(exc, IntegrityError):
                raise DuplicateDatasetName(NAME_TAKEN) from None
            raise
        return public

    def abort(self) -> None:
        super().abort()
        if self._spool is not None and not self._spool.closed:
            self._spool.close()

"""Provider nodes: where node-held data lives, and how a job's operator reaches it.

A node-held dataset's rows live in its provider's node, a PySyft (`syft==0.9.5`)
Datasite: one per provider organisation, launched in-process (`SyftNode.embedded`, the
default and what the tests use) or reached over HTTP at the URL the provider registered
(`SyftNode.connect`). The platform keeps only metadata, digests and the scan result.
An embedded node is given the rows sealed under a key wrapped by the provider's KEK
(`sandbox.node_side`), so its store on the platform's disk holds no plaintext and is
crypto-shredded with the KEK. Every connection to an HTTP node is checked, pinned and
bounded in time by `sandbox.outbound`.

How one job reaches the data (`ProviderNode`):

1. `upload`: the private rows become a Datasite asset whose mock is the synthetic
   preview (what anyone may see of the dataset).
2. `authorise`: the coordinator submits one code request per (job, node): the function
   in `sandbox.syft_functions`, bound by a PySyft `Constant` to the job id, the asset,
   the SHA-256 the platform registered and the operators the job may run. The node's
   data owner approves it: on an embedded node the platform does, acting on the
   provider's approval in pdx (or on the policy, when none is required); on a remote
   node its administrator does, and the coordinator waits for that.
3. `call`: each request of the job (one for a statistic; init and one per round for
   federated learning) is one execution of the approved function. On the node,
   `node_call` (`sandbox.node_side`) checks the data's digest and the operator, runs
   the vetted operator in the node's own sandbox (`sandbox.isolation`: no network,
   read-only input, limits) and returns only the encoded outcome: the encrypted
   partial or a failure code.

`NodeSandbox` puts nodes behind the `Sandbox` interface that `StatsJob` and `FlJob`
already use, so a job can mix platform-held inputs (decrypted for the platform's own
sandbox run) and node-held ones.

PySyft runs an approved function twice when its input has a mock: on the private data
and on the mock. `node_call` recognises the mock run by its digest and returns at once,
so operators run only on the private data, once per call.

The part that does not depend on PySyft (`ProviderNode`, `NodeJob`, `NodeGrant`,
`NodeSandbox`) is in `sandbox._node_access`; import the names from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import crypto
from sandbox import node_side
from sandbox._node_access import (
    NODE_ROOT,
    NodeGrant,
    NodeJob,
    NodeSandbox,
    ProviderNode,
    node_input_path,
)
from sandbox.errors import NodeApprovalRefused, NodeError
from sandbox.node_side import (
    MOCK_OUTPUT,
    decode_outcome,
    encode_outcome,
    node_call,
)
from sandbox.outbound import OutboundPolicy, PinnedTarget, pinned_session

if TYPE_CHECKING:
    import requests

__all__ = [
    "MOCK_OUTPUT",
    "NODE_ROOT",
    "NodeGrant",
    "NodeJob",
    "NodeRegistry",
    "NodeSandbox",
    "ProviderNode",
    "SyftNode",
    "decode_outcome",
    "encode_outcome",
    "node_call",
    "node_input_path",
]

# PySyft's default root account of a fresh Datasite (replaced at first launch).
_DEFAULT_ROOT = ("info@openmined.org", "changethis")
_COORDINATOR_EMAIL = "coordinator@pdx.dev"
_ASSET = "rows"

# -- PySyft Datasites ---------------------------------------------------------------------------


def _syft() -> Any:
    """PySyft, imported on first use (the import takes several seconds)."""
    import syft as sy  # type: ignore[import-untyped]

    _guard_syft_http()
    return sy


# PySyft 0.9.5's HTTP client has no timeouts, retries a refused connection, resolves the
# host on every request, and sends API calls with module-level `requests.post`. The
# platform's connections to a registered node go through a pinned session instead
# (`sandbox.outbound`): keyed by the host the provider registered, installed before the
# first request to it. Connections to any other host (none the platform makes) keep
# PySyft's own behaviour.
_PINS: dict[str, requests.Session] = {}
_PINS_LOCK = threading.Lock()
_GUARD_LOCK = threading.Lock()  # held while the guard is installed: no caller passes early
_GUARDED = False


def _pin(target: PinnedTarget, policy: OutboundPolicy) -> None:
    with _PINS_LOCK:
        _PINS[target.host] = pinned_session(target, policy)


def _pinned_for(connection: Any) -> requests.Session | None:
    host = str(getattr(getattr(connection, "url", None), "host_or_ip", "")).lower()
    with _PINS_LOCK:
        return _PINS.get(host)


def _guard_syft_http() -> None:
    with _GUARD_LOCK:
        if not _GUARDED:
            _install_guard()


def _install_guard() -> None:
    """Route PySyft's HTTP through the pinned sessions; `_GUARDED` is set only once done."""
    global _GUARDED
    import requests
    from syft.client.client import HTTPConnection  # type: ignore[import-untyped]
    from syft.serde.deserialize import _deserialize  # type: ignore[import-untyped]
    from syft.serde.serialize import _serialize  # type: ignore[import-untyped]

    original_session = HTTPConnection.session
    original_make_call = HTTPConnection.make_call

    def session(self: Any) -> Any:
        pinned = _pinned_for(self)
        return pinned if pinned is not None else original_session.fget(self)

    def make_call(self: Any, signed_call: Any) -> Any:
        pinned = _pinned_for(self)
        if pinned is None or self.rtunnel_token:
            return original_make_call(self, signed_call)
        response = pinned.post(
            str(self.api_url), data=_serialize(obj=signed_call, to_bytes=True), headers=self.headers
        )
        if response.status_code != 200:
            raise requests.ConnectionError(f"the node answered {response.status_code}")
        return _deserialize(response.content, from_bytes=True)

    HTTPConnection.session = property(session)
    HTTPConnection.make_call = make_call
    _GUARDED = True


def _unwrap(result: Any, what: str) -> Any:
    sy = _syft()
    if isinstance(result, sy.SyftError):
        raise NodeError(f"{what}: {getattr(result, 'message', result)}"[:500])
    return result


def _dataset(client: Any, name: str) -> Any:
    """The Datasite's dataset `name`, as `client.datasets[name]` finds it.

    PySyft's `datasets[name]` first looks for a `get_index` endpoint the dataset service
    does not have, and a missing endpoint makes the client fetch its whole API again
    before it falls back to this same lookup.
    """
    return client.datasets.get_all()[name]


class SyftNode:
    """A provider's PySyft Datasite, embedded in this process or reached over HTTP.

    `admin` is the node's data-owner client (uploads, approvals: None when the provider
    keeps approval to itself); `coordinator` is the platform's data-scientist account,
    which submits code requests and executes approved ones.
    """

    kind: str

    def __init__(
        self,
        org_id: str,
        *,
        kind: Literal["embedded", "http"],
        admin: Any | None,
        coordinator: Any,
        server: Any | None = None,
        approval_wait_s: float = 600.0,
        poll_s: float = 0.5,
        target: PinnedTarget | None = None,
    ) -> None:
        self.org_id = org_id
        self._target = target
        self.kind = kind
        self._admin = admin
        self._coordinator = coordinator
        self._server = server
        self._approval_wait_s = approval_wait_s
        self._poll_s = poll_s
        self._lock = threading.RLock()

    # construction ----------------------------------------------------------------------------

    @classmethod
    def embedded(cls, org_id: str, home: Path) -> SyftNode:
        """Launch (or relaunch) the organisation's Datasite in this process under `home`.

        The first launch replaces PySyft's default root password and creates the
        coordinator's data-scientist account; both secrets go to `home/node.secret`
        (mode 0600), the node's own directory, standing for the provider's machine.
        """
        sy = _syft()
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret_file = home / "node.secret"
        os.environ.setdefault("PDX_NODE_WORKDIR", str(home.parent / "work"))
        fresh = not secret_file.exists()
        server = sy.orchestra.launch(
            name=f"pdx-node-{org_id}", reset=fresh, db_url=f"sqlite:///{home / 'node.db'}"
        )
        # A PySyft login with `cache` (the default) adds an argon2 hash of the credentials
        # for a session cache nothing here reads; each login through `server` also builds a
        # new guest client. Log in through one guest client, without the cache.
        guest = server.client
        if fresh:
            admin = guest.login(email=_DEFAULT_ROOT[0], password=_DEFAULT_ROOT[1], cache=False)
            stored = {"root": secrets.token_urlsafe(24), "coordinator": secrets.token_urlsafe(24)}
            # The password change keeps the account's signing key, by which PySyft
            # authorises calls: this client stays the admin without a second login (one
            # bcrypt check less).
            _unwrap(admin.account.set_password(stored["root"], confirm=False), "set password")
            _unwrap(
                admin.register(
                    name="pdx coordinator",
                    email=_COORDINATOR_EMAIL,
                    password=stored["coordinator"],
                    password_verify=stored["coordinator"],
                ),
                "register coordinator",
            )
            # Whole or not at all (temporary file, fsync, rename): a first launch that stops
            # while saving leaves no file, so the next one starts afresh; half a file would
            # leave the replaced root password nowhere.
            data = json.dumps(stored).encode()
            crypto.write_file_atomically(secret_file, data, mode=0o600, exclusive=False)
        else:
            stored = json.loads(secret_file.read_text(encoding="utf-8"))
            admin = guest.login(email=_DEFAULT_ROOT[0], password=stored["root"], cache=False)
        coordinator = guest.login(
            email=_COORDINATOR_EMAIL, password=stored["coordinator"], cache=False
        )
        return cls(org_id, kind="embedded", admin=admin, coordinator=coordinator, server=server)

    @classmethod
    def connect(
        cls,
        org_id: str,
        url: str,
        *,
        email: str,
        password: str,
        can_approve: bool = False,
        approval_wait_s: float = 600.0,
        policy: OutboundPolicy | None = None,
    ) -> SyftNode:
        """Log in to a provider's Datasite over HTTP with the account it gave the platform.

        The URL's host is resolved and checked against `policy` (default: public
        addresses only) and every connection is pinned to the checked address, with the
        policy's connect and read timeouts (`sandbox.outbound`).

        The account must be a data owner to upload. With `can_approve` the provider has
        delegated approval of pdx jobs to pdx's own approval flow; otherwise the node's
        administrator approves each job there and the coordinator waits (`approval_wait_s`).
        """
        policy = policy or OutboundPolicy()
        target = policy.resolve(url)  # OutboundRefused: nothing is sent
        sy = _syft()
        _pin(target, policy)
        try:
            client = sy.login(url=url, email=email, password=password, cache=False)
        except Exception:  # noqa: BLE001 - PySyft raises many kinds
            # One message whatever failed (refused, timed out, not a Datasite, wrong
            # account): the answer must not tell a caller the state of a port.
            raise NodeError("the node could not be reached with this account") from None
        if not getattr(client, "authed", False):
            raise NodeError("the node could not be reached with this account")
        return cls(
            org_id,
            kind="http",
            admin=client if can_approve else None,
            coordinator=client,
            approval_wait_s=approval_wait_s,
            target=target,
        )

    def repin(self, policy: OutboundPolicy) -> None:
        """Talk to the checked address under `policy`'s timeouts from now on (HTTP nodes)."""
        if self._target is not None:
            _pin(self._target, policy)

    # ProviderNode ------------------------------------------------------------------------------

    def _owner(self) -> Any:
        return self._admin if self._admin is not None else self._coordinator

    def upload(self, dataset_id: str, private_csv: str, mock_csv: str) -> str:
        sy = _syft()
        dataset = sy.Dataset(
            name=dataset_id,
            description="pdx node-held dataset; the mock is the synthetic preview",
            asset_list=[sy.Asset(name=_ASSET, data=private_csv, mock=mock_csv)],
        )
        with self._lock:
            try:
                _unwrap(self._owner().upload_dataset(dataset), "upload")
            except NodeError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise NodeError(f"upload to the node failed: {type(exc).__name__}") from None
        return dataset_id

    def remove(self, asset_ref: str) -> None:
        with self._lock:
            owner = self._owner()
            try:
                ds = _dataset(owner, asset_ref)
                _unwrap(owner.api.services.dataset.delete(uid=ds.id), "delete")
            except NodeError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise NodeError(f"removing the dataset failed: {type(exc).__name__}") from None

    def authorise(self, job: NodeJob) -> NodeGrant:
        sy = _syft()
        from syft.service.policy.policy import (  # type: ignore[import-untyped]
            OutputPolicyExecuteCount,
        )

        from sandbox import syft_functions

        name = "pdx_" + hashlib.sha256(f"{job.job_id}:{job.dataset_id}".encode()).hexdigest()[:24]
        if job.data_key is not None:
            if self.kind != "embedded":
                raise NodeError("sealed rows are opened only on an embedded node")
            # The embedded node runs in this process: the key stays in its memory.
            node_side.grant_data_key(job.job_id, job.dataset_id, job.data_key)
        with self._lock:
            ds = self._coordinator
            try:
                asset = _dataset(ds, job.asset_ref).assets[_ASSET]
                function = sy.syft_function(
                    input_policy=sy.MixedInputPolicy(
                        data=asset,
                        binding=sy.Constant(val=job.binding()),
                        call=dict,
                        client=ds,
                    ),
                    output_policy=OutputPolicyExecuteCount(limit=job.max_calls),
                    name=name,
                )(syft_functions.pdx_node_call)
                request = _unwrap(ds.code.request_code_execution(function), "code request")
            except NodeError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise NodeError(
                    f"the node refused the code request: {type(exc).__name__}"
                ) from None
            if self._admin is not None:
                pending = self._admin.api.services.request.get_by_uid(request.id)
                _unwrap(pending.approve(), "approval")
            else:
                self._wait_for_approval(request.id)
        return NodeGrant(job, (name, asset))

    def _wait_for_approval(self, request_id: Any) -> None:
        from syft.service.request.request import RequestStatus  # type: ignore[import-untyped]

        deadline = time.monotonic() + self._approval_wait_s
        while True:
            request = self._coordinator.api.services.request.get_by_uid(request_id)
            status = getattr(request, "status", None)
            if status == RequestStatus.APPROVED:
                return
            if status == RequestStatus.REJECTED:
                raise NodeApprovalRefused("the node's administrator rejected the job")
            if time.monotonic() >= deadline:
                raise NodeApprovalRefused("the node's administrator has not approved the job")
            time.sleep(self._poll_s)

    def call(self, grant: NodeGrant, request: dict[str, Any]) -> bytes:
        sy = _syft()
        name, asset = grant.handle
        with self._lock:
            ds = self._coordinator
            try:
                pointer = sy.ActionObject.from_obj(request).send(ds)
                result = getattr(ds.code, name)(data=asset, call=pointer)
                value = result.get() if hasattr(result, "get") else result
            except Exception as exc:  # noqa: BLE001
                raise NodeError(f"the node could not run the job: {type(exc).__name__}") from None
        _unwrap(value, "node call")
        if not isinstance(value, bytes):
            raise NodeError("the node returned something other than an outcome")
        return value

    def close(self) -> None:
        if self._server is not None:
            try:
                self._server.land()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
            self._server = None


class NodeRegistry:
    """The provider nodes this platform process talks to, one per organisation."""

    def __init__(self, home: Path, *, outbound: OutboundPolicy | None = None) -> None:
        self.home = home
        self.outbound = outbound or OutboundPolicy()
        """Where this platform may connect to HTTP nodes, and with which timeouts."""
        self._nodes: dict[str, ProviderNode] = {}
        self._lock = threading.Lock()

    def add(self, node: ProviderNode) -> None:
        """Use `node` for its organisation (tests, or a node connected elsewhere)."""
        with self._lock:
            old = self._nodes.get(node.org_id)
            self._nodes[node.org_id] = node
        if old is not None and old is not node:
            old.close()

    def get(self, org_id: str) -> ProviderNode | None:
        with self._lock:
            return self._nodes.get(org_id)

    def embedded(self, org_id: str) -> ProviderNode:
        """The organisation's embedded Datasite, launched on first use."""
        with self._lock:
            node = self._nodes.get(org_id)
            if node is None:
                node = SyftNode.embedded(org_id, self.home / "nodes" / org_id)
                self._nodes[org_id] = node
            return node

    def close(self) -> None:
        with self._lock:
            nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            node.close()
        node_side.forget_data_keys()

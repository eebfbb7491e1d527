"""Provider nodes: where node-held data lives, and how a job's operator reaches it.

A node-held dataset's rows live in its provider's node, a PySyft (`syft==0.9.5`)
Datasite: one per provider organisation, launched in-process (`SyftNode.embedded`, the
default and what the tests use) or reached over HTTP at the URL the provider registered
(`SyftNode.connect`). The platform keeps only metadata, digests and the scan result.

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
   `node_call` checks the data's digest and the operator, runs the vetted operator in
   the node's own sandbox (`sandbox.isolation`: no network, read-only input, limits)
   and returns only the encoded outcome: the encrypted partial or a failure code.

`NodeSandbox` puts nodes behind the `Sandbox` interface that `StatsJob` and `FlJob`
already use, so a job can mix platform-held inputs (decrypted for the platform's own
sandbox run) and node-held ones.

PySyft runs an approved function twice when its input has a mock: on the private data
and on the mock. `node_call` recognises the mock run by its digest and returns at once,
so operators run only on the private data, once per call.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

from sandbox.errors import SandboxError
from sandbox.isolation import (
    Limits,
    Sandbox,
    SandboxFailure,
    SandboxOutcome,
    SandboxResult,
    SandboxSession,
)
from sandbox.operators import REGISTRY, STATS_OPERATORS, default_sandbox

__all__ = [
    "MOCK_OUTPUT",
    "NodeApprovalRefused",
    "NodeError",
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

NODE_ROOT = Path("/pdx-node")
"""Placeholder paths of node-held inputs (`node_input_path`); nothing exists there."""

MOCK_OUTPUT = b"PDXMOCK\n"
_OUT_MAGIC = b"PDXNODE1\n"
_REASONS = frozenset(
    {
        "memory-limit",
        "cpu-limit",
        "timeout",
        "operator-error",
        "isolation-unavailable",
        "output-too-large",
    }
)
# PySyft's default root account of a fresh Datasite (replaced at first launch).
_DEFAULT_ROOT = ("info@openmined.org", "changethis")
_COORDINATOR_EMAIL = "coordinator@pdx.dev"
_ASSET = "rows"


class NodeError(SandboxError):
    """A provider node could not be reached, refused the job, or failed to run it."""

    code = "node-error"
    title = "Provider node error"


class NodeApprovalRefused(NodeError):
    code = "node-approval-refused"
    title = "The provider's node did not approve the job"


def node_input_path(org_id: str, dataset_id: str) -> Path:
    """The placeholder path that stands for a node-held input in a `ProviderInput`."""
    return NODE_ROOT / org_id / dataset_id


# -- what a node is ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeJob:
    """What the provider's node approves for one job: one asset, named operators, a digest."""

    job_id: str
    dataset_id: str
    asset_ref: str
    sha256: str
    operators: tuple[str, ...]
    max_calls: int

    def binding(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "dataset_id": self.dataset_id,
            "sha256": self.sha256,
            "operators": list(self.operators),
        }


@dataclass(frozen=True)
class NodeGrant:
    """An approved job on one node; `handle` is the node implementation's own reference."""

    job: NodeJob
    handle: Any = field(compare=False)


@runtime_checkable
class ProviderNode(Protocol):
    """A provider's node: holds its rows, runs vetted operators on them, returns partials."""

    org_id: str
    kind: str

    def upload(self, dataset_id: str, private_csv: str, mock_csv: str) -> str:
        """Store the rows (mock: the synthetic preview); returns the asset reference."""

    def remove(self, asset_ref: str) -> None:
        """Delete a dataset from the node (registration rolled back, or withdrawn)."""

    def authorise(self, job: NodeJob) -> NodeGrant:
        """Submit the job's code request and return once the node approved it."""

    def call(self, grant: NodeGrant, request: dict[str, Any]) -> bytes:
        """One execution of the approved job: the encoded outcome (`decode_outcome`)."""

    def close(self) -> None:
        """Release the connection (and stop an embedded Datasite)."""


# -- the outcome of one call, as it leaves the node --------------------------------------------


def encode_outcome(outcome: SandboxOutcome) -> bytes:
    """What leaves the node: the operator's output (an envelope) or a failure without logs."""
    if isinstance(outcome, SandboxResult):
        head: dict[str, Any] = {"ok": True, "wall_seconds": outcome.wall_seconds}
        body = outcome.output
    else:
        head = {
            "ok": False,
            "reason": outcome.reason,
            "code": outcome.code,
            "detail": outcome.detail,
            "extensions": _json_safe(outcome.extensions),
        }
        body = b""
    return _OUT_MAGIC + json.dumps(head, separators=(",", ":")).encode() + b"\n" + body


def _json_safe(value: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return dict(json.loads(json.dumps(dict(value), default=str)))
    except (TypeError, ValueError):
        return {}


def _node_failure(operator: str, detail: str, code: str = NodeError.code) -> SandboxFailure:
    return SandboxFailure(operator=operator, reason="operator-error", detail=detail, code=code)


def decode_outcome(data: bytes, operator: str) -> SandboxOutcome:
    """The node's answer as a sandbox outcome (a malformed answer is a failure)."""
    if data == MOCK_OUTPUT:
        return _node_failure(
            operator,
            "the node's data does not match the digest registered for this dataset",
            "node-data-mismatch",
        )
    if not data.startswith(_OUT_MAGIC):
        return _node_failure(operator, "the node returned a malformed answer")
    head_raw, sep, body = data[len(_OUT_MAGIC) :].partition(b"\n")
    try:
        head = json.loads(head_raw) if sep else None
    except ValueError:
        head = None
    if not isinstance(head, dict):
        return _node_failure(operator, "the node returned a malformed answer")
    if head.get("ok") is True:
        wall = head.get("wall_seconds")
        return SandboxResult(operator, body, float(wall) if isinstance(wall, int | float) else 0.0)
    reason = head.get("reason")
    ext = head.get("extensions")
    return SandboxFailure(
        operator=operator,
        reason=reason if reason in _REASONS else "operator-error",
        detail=str(head.get("detail") or "the operator failed on the node")[:500],
        code=str(head.get("code") or NodeError.code)[:64],
        extensions=ext if isinstance(ext, dict) else {},
    )


# -- node side: executed inside the provider's node ---------------------------------------------

_NODE_LOCK = threading.Lock()
_NODE_SESSIONS: dict[tuple[str, str, str], _NodeSideSession] = {}
_SESSION_IDLE_S = 900.0


def _node_workdir() -> Path:
    root = Path(os.environ.get("PDX_NODE_WORKDIR") or Path(tempfile.gettempdir()) / "pdx-node")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def _write_private(data: str, prefix: str) -> Path:
    """The rows as a CSV file only the node's user can read, in a fresh private directory."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=_node_workdir()))
    path = directory / "input.csv"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(data)
    path.chmod(0o400)
    return path


def _remove_private(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)


class _NodeSideSession:
    """A long-lived sandbox session on the node, owned by one thread for its whole life.

    The sandbox ties its worker to the thread that created it (PR_SET_PDEATHSIG), so the
    session is opened and used from this object's own thread, never from PySyft's.
    """

    def __init__(self, operator: str, data: str) -> None:
        self.operator = operator
        self.last_used = time.monotonic()
        self._path = _write_private(data, "session-")
        self._requests: queue.Queue[
            tuple[Mapping[str, Any], Mapping[str, bytes], Future[SandboxOutcome]] | None
        ] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="pdx-node-session", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        session = default_sandbox(_node_workdir()).open_session(self.operator, [self._path])
        try:
            while True:
                item = self._requests.get()
                if item is None:
                    return
                params, blobs, future = item
                try:
                    future.set_result(session.call(params, blobs))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    future.set_exception(exc)
        finally:
            session.close()
            _remove_private(self._path)

    def call(self, params: Mapping[str, Any], blobs: Mapping[str, bytes]) -> SandboxOutcome:
        self.last_used = time.monotonic()
        future: Future[SandboxOutcome] = Future()
        self._requests.put((params, blobs, future))
        return future.result()

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=30)


def _reap_idle() -> None:
    now = time.monotonic()
    with _NODE_LOCK:
        stale = [k for k, s in _NODE_SESSIONS.items() if now - s.last_used > _SESSION_IDLE_S]
        sessions = [_NODE_SESSIONS.pop(k) for k in stale]
    for s in sessions:
        s.close()


def node_call(data: object, binding: object, call: object) -> bytes:
    """Node side of one call (executed by the Datasite through `sandbox.syft_functions`).

    0. The data must be the registered rows: its SHA-256 must equal the binding's (the
       mock run PySyft adds returns `MOCK_OUTPUT` here, as does altered data).
    1. The operator must be one the provider approved for this job, and a vetted one.
    2. `run` executes it once in a fresh sandbox; `call` sends one request to the job's
       session (opened on first use, own thread); `close` ends the session.
    3. Only the encoded outcome leaves: the operator's output or a failure without logs.
    """
    if not isinstance(data, str) or not isinstance(binding, dict) or not isinstance(call, dict):
        return encode_outcome(_node_failure("?", "malformed node call"))
    if hashlib.sha256(data.encode("utf-8")).hexdigest() != binding.get("sha256"):
        return MOCK_OUTPUT
    operator = str(call.get("operator", ""))
    if operator not in binding.get("operators", ()) or operator not in REGISTRY:
        return encode_outcome(
            _node_failure(operator, "this operator was not approved for this job on the node")
        )
    params = call.get("params") or {}
    blobs = call.get("blobs") or {}
    if not isinstance(params, dict) or not isinstance(blobs, dict):
        return encode_outcome(_node_failure(operator, "malformed node call"))
    cmd = call.get("cmd")
    _reap_idle()
    if cmd == "run":
        path = _write_private(data, "run-")
        try:
            outcome = default_sandbox(_node_workdir()).run(operator, [path], params, blobs)
        finally:
            _remove_private(path)
        return encode_outcome(outcome)
    key = (str(binding.get("job_id")), str(binding.get("dataset_id")), str(call.get("session")))
    if cmd == "call":
        with _NODE_LOCK:
            session = _NODE_SESSIONS.get(key)
            if session is None:
                session = _NodeSideSession(operator, data)
                _NODE_SESSIONS[key] = session
        if session.operator != operator:
            return encode_outcome(_node_failure(operator, "session runs another operator"))
        return encode_outcome(session.call(params, blobs))
    if cmd == "close":
        with _NODE_LOCK:
            closing = _NODE_SESSIONS.pop(key, None)
        if closing is not None:
            closing.close()
        return encode_outcome(SandboxResult(operator, b"closed", 0.0))
    return encode_outcome(_node_failure(operator, "unknown node command"))


# -- platform side: sessions and a sandbox that reach nodes ------------------------------------


class _RemoteSession(SandboxSession):
    """A `SandboxSession` whose worker lives on a provider's node.

    `send` starts the node call on a helper thread (so several nodes work at once, as
    `run_parallel` expects); `receive` waits for it. Statistics are one-shot (`run`);
    other operators keep a node-side session until `close`.
    """

    def __init__(self, node: ProviderNode, grant: NodeGrant, operator: str) -> None:
        # Deliberately not SandboxSession.__init__: no local worker process exists.
        self._node = node
        self._grant = grant
        self._operator = operator
        self._one_shot = operator in STATS_OPERATORS
        self._session_id = uuid.uuid4().hex
        self._future: Future[bytes] | None = None
        self._used = False
        self._closed = False

    def _request(
        self, cmd: str, params: Mapping[str, Any] | None, blobs: Mapping[str, bytes] | None
    ) -> dict[str, Any]:
        return {
            "cmd": cmd,
            "operator": self._operator,
            "session": self._session_id,
            "params": dict(params or {}),
            "blobs": {k: bytes(v) for k, v in (blobs or {}).items()},
        }

    def send(
        self, params: Mapping[str, Any] | None = None, blobs: Mapping[str, bytes] | None = None
    ) -> None:
        if self._future is not None:
            raise RuntimeError("receive() the previous response before sending again")
        if self._closed or (self._one_shot and self._used):
            raise RuntimeError("session is closed")
        self._used = True
        request = self._request("run" if self._one_shot else "call", params, blobs)
        future: Future[bytes] = Future()

        def work() -> None:
            try:
                future.set_result(self._node.call(self._grant, request))
            except BaseException as exc:  # noqa: BLE001 - handed to receive()
                future.set_exception(exc)

        threading.Thread(target=work, name="pdx-node-call", daemon=True).start()
        self._future = future

    def receive(self) -> SandboxOutcome:
        if self._future is None:
            raise RuntimeError("nothing was sent")
        future, self._future = self._future, None
        try:
            return decode_outcome(future.result(), self._operator)
        except SandboxError as exc:
            return _node_failure(self._operator, exc.detail, exc.code)
        except Exception as exc:  # noqa: BLE001 - a node fault is a failed call
            return _node_failure(self._operator, f"node call failed: {type(exc).__name__}")

    def call(
        self, params: Mapping[str, Any] | None = None, blobs: Mapping[str, bytes] | None = None
    ) -> SandboxOutcome:
        self.send(params, blobs)
        return self.receive()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._future is not None:
            try:
                self._future.result(timeout=60)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        if not self._one_shot and self._used:
            try:
                self._node.call(self._grant, self._request("close", None, None))
            except Exception:  # noqa: BLE001 - the node reaps idle sessions itself
                pass

    def __enter__(self) -> SandboxSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        pass


class NodeSandbox(Sandbox):
    """The job's sandbox: node-held inputs go to their node, the rest to the local sandbox.

    `routes` maps each node-held input's placeholder path (`node_input_path`) to its node
    and the grant the node gave for this job. Anything else runs in `local`.
    """

    def __init__(
        self,
        local: Sandbox,
        routes: Mapping[Path, tuple[ProviderNode, NodeGrant]],
        *,
        local_inputs: bool = True,
    ) -> None:
        super().__init__(local.registry)
        self._local = local
        self._routes = dict(routes)
        self._local_inputs = local_inputs
        self.node_calls = 0

    def unavailable_reason(self) -> str | None:
        # Nodes check their own isolation; the platform's matters only for its own inputs.
        return self._local.unavailable_reason() if self._local_inputs else None

    def open_session(
        self,
        operator: str,
        inputs: Sequence[Path] = (),
        *,
        limits: Limits | None = None,
    ) -> SandboxSession:
        paths = [Path(p) for p in inputs]
        if len(paths) == 1 and paths[0] in self._routes:
            self.registry.spec(operator)  # UnknownOperator before anything is sent
            node, grant = self._routes[paths[0]]
            self.node_calls += 1
            return _RemoteSession(node, grant, operator)
        if any(p in self._routes for p in paths):
            raise ValueError("a node-held input must be a session's only input")
        return self._local.open_session(operator, paths, limits=limits)


# -- PySyft Datasites ---------------------------------------------------------------------------


def _syft() -> Any:
    """PySyft, imported on first use (the import takes several seconds)."""
    import syft as sy  # type: ignore[import-untyped]

    return sy


def _unwrap(result: Any, what: str) -> Any:
    sy = _syft()
    if isinstance(result, sy.SyftError):
        raise NodeError(f"{what}: {getattr(result, 'message', result)}"[:500])
    return result


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
    ) -> None:
        self.org_id = org_id
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
        if fresh:
            root = server.login(email=_DEFAULT_ROOT[0], password=_DEFAULT_ROOT[1])
            secrets_ = {"root": secrets.token_urlsafe(24), "coordinator": secrets.token_urlsafe(24)}
            _unwrap(root.account.set_password(secrets_["root"], confirm=False), "set password")
            _unwrap(
                root.register(
                    name="pdx coordinator",
                    email=_COORDINATOR_EMAIL,
                    password=secrets_["coordinator"],
                    password_verify=secrets_["coordinator"],
                ),
                "register coordinator",
            )
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(secrets_, f)
        stored = json.loads(secret_file.read_text(encoding="utf-8"))
        admin = server.login(email=_DEFAULT_ROOT[0], password=stored["root"])
        coordinator = server.login(email=_COORDINATOR_EMAIL, password=stored["coordinator"])
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
    ) -> SyftNode:
        """Log in to a provider's Datasite over HTTP with the account it gave the platform.

        The account must be a data owner to upload. With `can_approve` the provider has
        delegated approval of pdx jobs to pdx's own approval flow; otherwise the node's
        administrator approves each job there and the coordinator waits (`approval_wait_s`).
        """
        sy = _syft()
        try:
            client = sy.login(url=url, email=email, password=password)
        except Exception as exc:  # noqa: BLE001 - PySyft raises many kinds
            raise NodeError(f"cannot log in to the node at {url}: {type(exc).__name__}") from None
        return cls(
            org_id,
            kind="http",
            admin=client if can_approve else None,
            coordinator=client,
            approval_wait_s=approval_wait_s,
        )

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
                ds = owner.datasets[asset_ref]
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
        with self._lock:
            ds = self._coordinator
            try:
                asset = ds.datasets[job.asset_ref].assets[_ASSET]
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

    def __init__(self, home: Path) -> None:
        self.home = home
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

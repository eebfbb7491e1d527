"""What a provider node is to the platform, and the sandbox that routes node-held inputs to it.

Independent of PySyft: `ProviderNode` is the interface (`sandbox.nodes.SyftNode` is the
Datasite implementation), `NodeSandbox` sends a job's requests for node-held inputs to
their node and the rest to the platform's own sandbox. See `sandbox.nodes` for the flow.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sandbox._registry import STATS_OPERATORS
from sandbox.errors import SandboxError
from sandbox.isolation import Limits, OperatorSpec, Sandbox, SandboxOutcome, SandboxSession
from sandbox.node_side import _node_failure, decode_outcome

NODE_ROOT = Path("/pdx-node")
"""Placeholder paths of node-held inputs (`node_input_path`); nothing exists there."""


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
    data_key: bytes | None = field(default=None, repr=False, compare=False)
    """The key of the dataset's sealed rows (embedded nodes); never part of the binding."""
    party: dict[str, Any] | None = field(default=None, compare=False)
    """Requester-held key facts the node approves (`sandbox.party_stats.PartyJob.binding`)."""

    def binding(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "dataset_id": self.dataset_id,
            "sha256": self.sha256,
            "operators": list(self.operators),
        }
        if self.party is not None:
            out["party"] = self.party
        return out


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

    def __del__(self) -> None:
        pass  # nothing of the base's worker to reap; `with` and close() are the base's


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

    def _session(
        self, spec: OperatorSpec, inputs: list[Path], limits: Limits | None
    ) -> SandboxSession:
        # `open_session` has checked the operator (UnknownOperator before anything is sent).
        if len(inputs) == 1 and inputs[0] in self._routes:
            node, grant = self._routes[inputs[0]]
            self.node_calls += 1
            return _RemoteSession(node, grant, spec.name)
        if any(p in self._routes for p in inputs):
            raise ValueError("a node-held input must be a session's only input")
        return self._local.open_session(spec.name, inputs, limits=limits)

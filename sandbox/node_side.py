"""The node side of a provider's Datasite: what runs inside the node for one call of a job.

`node_call` is what the function the platform submits (`sandbox.syft_functions`) runs on
the node: it checks the data against the digest the provider registered, runs a vetted
operator on it in the node's own sandbox and returns only the encoded outcome.

Sealed rows. An embedded node (a Datasite in the platform's process, its store under
`$PDX_HOME/nodes/<org>/node.db`) is given the rows *sealed* (`SEALED_PREFIX` + the
`crypto.stream` ciphertext, base64) under a data key wrapped by the provider's KEK, so
the node's store holds no plaintext and destroying the KEK crypto-shreds it. For a job,
the platform unwraps the key and hands it to the node in memory (`grant_data_key`, keyed
by job and dataset); `node_call` decrypts the rows into the job's private work file
only, and the key is forgotten when the job's grants go idle (`_KEY_IDLE_S`) or the node
closes. A provider's own Datasite over HTTP holds its rows as it likes (plaintext in
its own store, on its own machine).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, get_args

import crypto
from sandbox import mask_signing, party_stats, step_signing
from sandbox._registry import REGISTRY, default_sandbox
from sandbox.errors import NodeError, SandboxError
from sandbox.isolation import FailureReason, SandboxFailure, SandboxOutcome, SandboxResult

__all__ = [
    "MOCK_OUTPUT",
    "SEALED_PREFIX",
    "decode_outcome",
    "encode_outcome",
    "forget_data_keys",
    "grant_data_key",
    "node_call",
    "sealed_aad",
]

MOCK_OUTPUT = b"PDXMOCK\n"
_OUT_MAGIC = b"PDXNODE1\n"
_REASONS: frozenset[str] = frozenset(get_args(FailureReason))


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
_COHORT_RESULTS: set[tuple[str, str]] = set()
"""(job, dataset) whose cohort join this node released (or refused below the minimum)."""

SEALED_PREFIX = "PDXSEALED1:"
"""Marks rows stored sealed on an embedded node (then base64 of a `crypto.stream` ciphertext)."""
_KEY_IDLE_S = 900.0
_KEYS: dict[tuple[str, str], tuple[bytes, float]] = {}


def sealed_aad(dataset_id: str) -> bytes:
    """What the sealed rows of a node-held dataset are bound to (AEAD associated data)."""
    return f"pdx:node-dataset:{dataset_id}".encode()


def grant_data_key(job_id: str, dataset_id: str, key: bytes) -> None:
    """Hand the node the key of a dataset's sealed rows for one job (memory only)."""
    with _NODE_LOCK:
        _KEYS[(job_id, dataset_id)] = (bytes(key), time.monotonic())


def forget_data_keys(job_id: str | None = None) -> None:
    """Drop the keys granted for one job (or every job: the node is closing)."""
    with _NODE_LOCK:
        for k in [k for k in _KEYS if job_id is None or k[0] == job_id]:
            del _KEYS[k]


def _open_rows(data: str, binding: Mapping[str, Any]) -> str | None:
    """The plaintext rows: sealed ones decrypted with the job's key; None when not possible."""
    if not data.startswith(SEALED_PREFIX):
        return data
    dataset_id = str(binding.get("dataset_id"))
    with _NODE_LOCK:
        entry = _KEYS.get((str(binding.get("job_id")), dataset_id))
        if entry is not None:
            _KEYS[(str(binding.get("job_id")), dataset_id)] = (entry[0], time.monotonic())
    if entry is None:
        return None
    try:
        sealed = base64.b64decode(data[len(SEALED_PREFIX) :], validate=True)
        plain = b"".join(
            crypto.decrypt_stream(entry[0], io.BytesIO(sealed), aad=sealed_aad(dataset_id))
        )
        return plain.decode("utf-8")
    except (binascii.Error, crypto.CryptoError, UnicodeDecodeError):
        return None


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
        self.signed = 0
        """How many outputs this session signed (the next one's sequence number)."""
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

    @functools.cached_property
    def identity(self) -> mask_signing.NodeIdentity | None:
        """The node's party key, read at the session's first signed step (None: unsigned)."""
        return mask_signing.node_identity()

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=30)


def _signed(
    session: _NodeSideSession,
    binding: Mapping[str, Any],
    session_id: str,
    params: Mapping[str, Any],
    blobs: Mapping[str, bytes],
) -> SandboxOutcome:
    """One call of the session; a step the requester's SDK acts on is signed by this node."""
    outcome = session.call(params, blobs)
    step = str(params.get("step", ""))
    if step not in step_signing.SIGNED_STEPS or not isinstance(outcome, SandboxResult):
        return outcome
    identity = session.identity
    if identity is None:
        return outcome
    seq, session.signed = session.signed, session.signed + 1
    output = step_signing.sign_step(identity, binding, session_id, seq, step, outcome.output)
    return SandboxResult(outcome.operator, output, outcome.wall_seconds, outcome.cpu_seconds)


def _reap_idle() -> None:
    now = time.monotonic()
    with _NODE_LOCK:
        stale = [k for k, s in _NODE_SESSIONS.items() if now - s.last_used > _SESSION_IDLE_S]
        sessions = [_NODE_SESSIONS.pop(k) for k in stale]
    for s in sessions:
        s.close()
    with _NODE_LOCK:
        for k in [k for k, (_, used) in _KEYS.items() if now - used > _KEY_IDLE_S]:
            del _KEYS[k]


def node_call(data: object, binding: object, call: object) -> bytes:
    """Node side of one call (executed by the Datasite through `sandbox.syft_functions`).

    0. The data must be the registered rows: sealed rows are opened with the key granted
       for this job (in memory only), and the SHA-256 must equal the binding's (the mock
       run PySyft adds returns `MOCK_OUTPUT` here, as does altered data).
    1. The operator must be one the provider approved for this job, and a vetted one.
    2. `run` executes it once in a fresh sandbox; `call` sends one request to the job's
       session (opened on first use, own thread); `close` ends the session.
    3. Only the encoded outcome leaves: the operator's output or a failure without logs.
    """
    if not isinstance(data, str) or not isinstance(binding, dict) or not isinstance(call, dict):
        return encode_outcome(_node_failure("?", "malformed node call"))
    if data.startswith(SEALED_PREFIX):
        opened = _open_rows(data, binding)
        if opened is None:
            return encode_outcome(
                _node_failure(
                    str(call.get("operator", "")),
                    "the node cannot open this dataset's sealed rows for this job",
                    "node-data-key-unavailable",
                )
            )
        data = opened
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
    refusal = party_stats.check_binding(binding, params)
    if refusal is not None:
        return encode_outcome(_node_failure(operator, refusal, "node-binding-mismatch"))
    if cmd == "call" and params.get("step") == "cohort.start" and params.get("reveal"):
        # Revealing, the node blinds whatever elements it is sent and hands them back: a relay
        # could send x(H(z)) for people of its choice and test them against this dataset.
        # No request may reveal members (policies/joins.rego) and the binding names no
        # direction, so a node counts only.
        return encode_outcome(
            _node_failure(
                operator,
                "a node does not run the revealing direction of a cohort join (counts only)",
                "node-binding-mismatch",
            )
        )
    try:
        if cmd == "keys":  # this node's mask key for the job, signed if it has a party key
            public = party_stats.mask_public(str(binding["job_id"]), str(binding["dataset_id"]))
            answer = mask_signing.signed_mask_key(binding, public)
            return encode_outcome(SandboxResult(operator, answer, 0.0))
        # A statistics run, or the first step of a join party's session (its relay key).
        # A cohort join has one provider and no mask keys: its steps are signed instead.
        step = str(params.get("step", ""))
        starts = cmd == "call" and step.endswith(".start") and not step.startswith("cohort.")
        if (cmd == "run" or starts) and "party" in params:
            blobs = {
                **blobs,
                **party_stats.mask_blobs(
                    str(binding["job_id"]), str(binding["dataset_id"]), params["party"], binding
                ),
            }
    except SandboxError as exc:  # e.g. a peer's mask key without its pinned signature
        return encode_outcome(_node_failure(operator, exc.detail, exc.code))
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
        if params.get("step") == "cohort.result":
            # Each session draws fresh DP noise and the platform reads a refusal below the
            # minimum; the requester's steps are not signed, so a relay could run sessions
            # with lists of its own and buy one release (ε) per session. One per job.
            with _NODE_LOCK:
                again = key[:2] in _COHORT_RESULTS
                _COHORT_RESULTS.add(key[:2])
            if again:
                return encode_outcome(
                    _node_failure(
                        operator,
                        "this node already released the result of this cohort join",
                        "node-binding-mismatch",
                    )
                )
        try:
            return encode_outcome(_signed(session, binding, key[2], params, blobs))
        except SandboxError as exc:  # its party key or trusted-parties file cannot be read
            return encode_outcome(_node_failure(operator, exc.detail, exc.code))
    if cmd == "close":
        with _NODE_LOCK:
            closing = _NODE_SESSIONS.pop(key, None)
        if closing is not None:
            closing.close()
        return encode_outcome(SandboxResult(operator, b"closed", 0.0))
    return encode_outcome(_node_failure(operator, "unknown node command"))

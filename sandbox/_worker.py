"""The process that runs inside the sandbox: loads one vetted operator and serves requests.

Started by `sandbox.isolation` as `python -I -B -m sandbox._worker CONFIG_JSON` inside
bubblewrap with resource limits already applied. It reads request frames on stdin and
writes one response frame per request on the output descriptor named in the config; the
operator's return value (bytes) is the only data that leaves. Failures are reported as a
reason and a stable error code; exception messages and tracebacks go to stderr (the
operator log, kept by the parent), never into the response, because a message could
quote the data being processed.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from sandbox import _worker_protocol as proto
from sandbox.errors import SandboxError
from sandbox.isolation import Operator, OperatorContext


class _CpuLimit(BaseException):
    """Raised from the SIGXCPU handler: the soft RLIMIT_CPU was reached."""


def _on_xcpu(signum: int, frame: FrameType | None) -> None:
    raise _CpuLimit


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = n
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_request(max_body: int) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    raw = _read_exact(0, 4)
    if raw is None:
        return None
    header_raw = _read_exact(0, proto.parse_header_len(raw))
    body_len_raw = _read_exact(0, 8)
    if header_raw is None or body_len_raw is None:
        return None
    body = _read_exact(0, proto.parse_body_len(body_len_raw, max_body))
    if body is None:
        return None
    header = proto.parse_header(header_raw)
    params = header.get("params", {})
    if not isinstance(params, dict):
        raise proto.ProtocolError("request params are not an object")
    return params, proto.split_blobs(header, body)


def _cpu_seconds() -> float:
    times = os.times()  # with a session pool's workers once they are reaped
    return float(times.user + times.system + times.children_user + times.children_system)


def _load(target: str) -> Operator:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    op: Operator = getattr(module, attr)
    return op


def _failure(reason: str, code: str, detail: str, **extensions: Any) -> dict[str, Any]:
    try:
        json.dumps(extensions)
    except (TypeError, ValueError):
        extensions = {}
    return {
        "ok": False,
        "reason": reason,
        "code": code,
        "detail": detail,
        "extensions": extensions,
    }


def serve(config: dict[str, Any]) -> int:
    """Run the request loop; return the process exit status."""
    out_fd = int(config["out_fd"])
    signal.signal(signal.SIGXCPU, _on_xcpu)
    # A scratch file past RLIMIT_FSIZE then fails with EFBIG instead of killing us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # Kept so that reporting a MemoryError does not itself need fresh memory.
    reserve = [bytearray(4 << 20)]
    for root in config.get("code_roots", []):
        sys.path.insert(0, str(root))
    try:
        operator = _load(str(config["target"]))
    except Exception:
        traceback.print_exc()
        _write_all(
            out_fd,
            proto.encode_frame(
                _failure("operator-error", "sandbox-operator-error", "operator failed to load")
            ),
        )
        return 3
    _write_all(out_fd, proto.encode_frame({"ready": True}))
    ctx = OperatorContext(
        inputs=tuple(Path(p) for p in config["inputs"]),
        scratch=Path(config["scratch"]),
        params={},
        blobs={},
    )
    max_body = int(config["max_request_bytes"])
    try:
        return _loop(operator, ctx, max_body, out_fd, reserve)
    finally:  # a session's process pool (join parties) never outlives the session
        pools = sys.modules.get("sandbox.session_pool")
        if pools is not None:
            pools.close_all()


def _loop(
    operator: Operator, ctx: OperatorContext, max_body: int, out_fd: int, reserve: list[bytearray]
) -> int:
    while True:
        request = _read_request(max_body)
        if request is None:
            return 0
        ctx.params, ctx.blobs = request
        header: dict[str, Any]
        output = b""
        try:
            result = operator(ctx)
            if not isinstance(result, bytes):
                raise TypeError("operator must return bytes")
            output = result
            header = {"ok": True}
        except MemoryError:
            header = _failure("memory-limit", "sandbox-memory-limit", "memory limit reached")
        except _CpuLimit:
            header = _failure("cpu-limit", "sandbox-cpu-limit", "CPU-time limit reached")
        except SandboxError as exc:
            # Deliberate refusals by vetted operators carry a safe detail and a code.
            header = _failure("operator-error", exc.code, exc.detail, **exc.extensions)
        except Exception as exc:
            traceback.print_exc()
            header = _failure(
                "operator-error", "sandbox-operator-error", f"operator raised {type(exc).__name__}"
            )
        if not header["ok"]:
            # The traceback (and with it the operator's frames) is gone by now; drop the
            # reserve too, so that even a memory bomb's report can be written.
            reserve.clear()
            ctx.state.clear()
        header["cpu_s"] = _cpu_seconds()
        _write_all(out_fd, proto.encode_frame(header, output))
        if not header["ok"]:
            return 4


def main() -> None:
    config = json.loads(sys.argv[1])
    sys.stdout.flush()
    # stdout is the operator log (the parent routes it to the stderr file); the only
    # channel back to the parent is `out_fd`.
    code = serve(config)
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()

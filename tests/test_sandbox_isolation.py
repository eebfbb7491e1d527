"""Isolation of sandboxed operators: network, file system, limits, failure reasons.

The hostile operators below are registered in a test-only registry (`TEST_REGISTRY`);
the worker imports this module inside the sandbox from a read-only bind of tests/.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox import errors
from sandbox.isolation import (
    Limits,
    OperatorContext,
    OperatorRegistry,
    OperatorSpec,
    Sandbox,
    SandboxFailure,
    SandboxResult,
)
from sandbox.operators import REGISTRY

HERE = Path(__file__).resolve().parent

# -- hostile and helper operators (run inside the sandbox) -------------------------------------


_REPO = Path(__file__).resolve().parents[1]


def _errno_of(fn: Any) -> str:
    try:
        fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "OK"


def op_connect(ctx: OperatorContext) -> bytes:
    out: dict[str, str] = {}
    for name, addr in ctx.params["targets"].items():

        def connect(addr: list[Any] = addr) -> None:
            with socket.create_connection((addr[0], int(addr[1])), timeout=3):
                pass

        out[name] = _errno_of(connect)
    out["interfaces"] = ",".join(sorted(n for _, n in socket.if_nameindex()))
    return json.dumps(out).encode()


def op_write(ctx: OperatorContext) -> bytes:
    out: dict[str, str] = {}
    targets = [str(p) for p in ctx.inputs] + [str(ctx.inputs[0].parent / "new.csv")]
    targets += ctx.params["paths"]
    for path in targets:

        def write(path: str = path) -> None:
            with open(path, "a") as f:
                f.write("tampered")

        out[path] = _errno_of(write)
    out["chmod-input"] = _errno_of(lambda: os.chmod(ctx.inputs[0], 0o666))
    out["mkdir-root"] = _errno_of(lambda: os.mkdir("/evil"))
    out["scratch"] = _errno_of(lambda: (ctx.scratch / "ok.txt").write_text("fine"))
    out["read-input"] = ctx.inputs[0].read_text()
    out["listdir-root"] = ",".join(sorted(os.listdir("/")))
    return json.dumps(out).encode()


def op_read(ctx: OperatorContext) -> bytes:
    out = {p: _errno_of(lambda p=p: Path(p).read_bytes()) for p in ctx.params["paths"]}
    return json.dumps(out).encode()


def op_identity(ctx: OperatorContext) -> bytes:
    info = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "env": sorted(os.environ),
        "hostname": socket.gethostname(),
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "cap_eff": next(
            line.split()[1] for line in open("/proc/self/status") if line.startswith("CapEff")
        ),
    }
    return json.dumps(info).encode()


def op_memory_bomb(ctx: OperatorContext) -> bytes:
    hog = []
    while True:
        hog.append(bytearray(16 << 20))


def op_big_alloc(ctx: OperatorContext) -> bytes:
    return bytes(8 << 30)


def op_spin(ctx: OperatorContext) -> bytes:
    n = 0
    while True:
        n += 1


def op_spin_in_c(ctx: OperatorContext) -> bytes:
    # One C call that never returns to the interpreter: only the hard limit stops it.
    return str(sum(range(10**15))).encode()


def op_sleep(ctx: OperatorContext) -> bytes:
    time.sleep(600)
    return b""


def op_raise(ctx: OperatorContext) -> bytes:
    raise ValueError("row 17 has fare 123.45 for card 6222-0000")


def op_refuse(ctx: OperatorContext) -> bytes:
    raise errors.GroupCardinalityExceeded("too many groups", max_groups=20)


def op_counter(ctx: OperatorContext) -> bytes:
    ctx.state["n"] = ctx.state.get("n", 0) + int(ctx.params.get("add", 1))
    return str(ctx.state["n"]).encode() + ctx.blobs.get("suffix", b"")


def op_big_output(ctx: OperatorContext) -> bytes:
    return b"x" * int(ctx.params["size"])


def op_not_bytes(ctx: OperatorContext) -> bytes:
    return "text"  # type: ignore[return-value]


FAST = Limits(cpu_seconds=5, memory_bytes=512 << 20, wall_seconds=20)
NAMES = [name for name in dir() if name.startswith("op_")]
TEST_REGISTRY = OperatorRegistry(
    [OperatorSpec(n[3:], f"test_sandbox_isolation:{n}", limits=FAST, code_root=HERE) for n in NAMES]
)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    sb = Sandbox(TEST_REGISTRY)
    sb.check()
    return sb


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "provider" / "input.csv"
    path.parent.mkdir()
    path.write_text("fare\n1.5\n")
    (tmp_path / "provider" / "secret.key").write_text("do-not-read")
    return path


def _json(outcome: Any) -> dict[str, Any]:
    assert isinstance(outcome, SandboxResult), outcome
    value: dict[str, Any] = json.loads(outcome.output)
    return value


# -- network ------------------------------------------------------------------------------------


def test_connect_from_inside_fails(sandbox: Sandbox) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        # Control: the same connect from outside the sandbox works.
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            listener.accept()[0].close()
        out = _json(
            sandbox.run(
                "connect",
                params={
                    "targets": {
                        "host-loopback": ["127.0.0.1", port],
                        "public": ["1.1.1.1", 53],
                        "private": ["10.0.0.1", 80],
                    }
                },
            )
        )
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing from the sandbox ever arrived
    assert out["host-loopback"] == "ECONNREFUSED"  # its own, empty loopback
    assert out["public"] == "ENETUNREACH"
    assert out["private"] == "ENETUNREACH"
    assert out["interfaces"] == "lo"


# -- file system --------------------------------------------------------------------------------


def test_writes_outside_scratch_and_to_inputs_fail(
    sandbox: Sandbox, data: Path, tmp_path: Path
) -> None:
    paths = ["/x", "/tmp/x", "/dev/shm/x", "/dev/x", str(Path(__file__)), str(tmp_path / "x")]
    out = _json(sandbox.run("write", [data], params={"paths": paths}))
    assert out["/input/0/input.csv"] == "EROFS"
    assert out["/input/0/new.csv"] == "EROFS"
    assert out["chmod-input"] == "EROFS"
    assert out["mkdir-root"] == "EROFS"
    for p in ("/x", "/dev/shm/x", "/dev/x", str(Path(__file__))):
        assert out[p] == "EROFS", p
    # The sandbox binds the interpreter and the checkout read-only; a directory that only
    # exists as their parent (e.g. /tmp for a checkout under /tmp) is read-only too.
    bound = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), _REPO]
    for p in ("/tmp/x", str(tmp_path / "x")):
        parent = str(Path(p).parent).rstrip("/") + "/"
        expected = "EROFS" if any(str(b).startswith(parent) for b in bound) else "ENOENT"
        assert out[p] == expected, p  # absent (or a read-only parent), never writable
    assert out["scratch"] == "OK"
    assert out["read-input"] == "fare\n1.5\n"
    assert set(out["listdir-root"].split(",")) <= {
        "bin", "dev", "input", "lib", "lib32", "lib64", "libx32", "proc", "root", "sbin",
        "scratch", "usr", "work", "etc", "opt", *(b.parts[1] for b in bound),
    }  # fmt: skip
    # The input is untouched and nothing leaked out of the (deleted) scratch directory.
    assert data.read_text() == "fare\n1.5\n"
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in data.parent.iterdir()) == ["input.csv", "secret.key"]


def test_only_inputs_are_visible(sandbox: Sandbox, data: Path) -> None:
    secret = data.parent / "secret.key"
    home = Path.home() / ".bash_history"
    out = _json(
        sandbox.run(
            "read", [data], params={"paths": [str(secret), "/etc/shadow", str(home), "/etc/passwd"]}
        )
    )
    assert set(out.values()) == {"ENOENT"}


def test_identity_and_environment(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDX_SECRET_TOKEN", "x")
    out = _json(sandbox.run("identity"))
    assert out["uid"] == 65534 and out["gid"] == 65534
    assert int(out["cap_eff"], 16) == 0
    assert out["hostname"] == "pdx-sandbox"
    assert "PDX_SECRET_TOKEN" not in out["env"]
    assert len(out["pids"]) <= 3  # its own PID namespace: bwrap's init and the worker


# -- limits -------------------------------------------------------------------------------------


def test_memory_bomb_is_stopped(sandbox: Sandbox) -> None:
    out = sandbox.run("memory_bomb", limits=Limits(memory_bytes=256 << 20, wall_seconds=30))
    assert isinstance(out, SandboxFailure)
    assert out.reason == "memory-limit"
    with pytest.raises(errors.SandboxMemoryLimit):
        out.unwrap()


def test_single_huge_allocation_is_refused(sandbox: Sandbox) -> None:
    out = sandbox.run("big_alloc", limits=Limits(memory_bytes=256 << 20, wall_seconds=30))
    assert isinstance(out, SandboxFailure) and out.reason == "memory-limit"


def test_endless_loop_hits_cpu_limit(sandbox: Sandbox) -> None:
    start = time.monotonic()
    out = sandbox.run("spin", limits=Limits(cpu_seconds=1, wall_seconds=30))
    assert isinstance(out, SandboxFailure)
    assert out.reason == "cpu-limit", out
    assert time.monotonic() - start < 15
    with pytest.raises(errors.SandboxCpuLimit):
        out.unwrap()


def test_endless_loop_in_c_is_killed_at_hard_cpu_limit(sandbox: Sandbox) -> None:
    out = sandbox.run("spin_in_c", limits=Limits(cpu_seconds=1, wall_seconds=30))
    assert isinstance(out, SandboxFailure)
    assert out.reason == "cpu-limit", out


def test_sleeper_hits_wall_clock_limit(sandbox: Sandbox) -> None:
    start = time.monotonic()
    out = sandbox.run("sleep", limits=Limits(wall_seconds=1.0))
    assert isinstance(out, SandboxFailure) and out.reason == "timeout"
    assert time.monotonic() - start < 10
    with pytest.raises(errors.SandboxTimeout):
        out.unwrap()


def test_output_size_is_capped(sandbox: Sandbox) -> None:
    limits = Limits(max_output_bytes=1 << 20)
    out = sandbox.run("big_output", params={"size": 2 << 20}, limits=limits)
    assert isinstance(out, SandboxFailure) and out.reason == "output-too-large"


# -- failures and the protocol -------------------------------------------------------------------


def test_operator_error_hides_the_message(sandbox: Sandbox) -> None:
    out = sandbox.run("raise")
    assert isinstance(out, SandboxFailure) and out.reason == "operator-error"
    assert out.code == "sandbox-operator-error"
    assert "6222" not in out.detail and "ValueError" in out.detail
    assert "6222-0000" in out.log_tail  # kept for the platform log only
    with pytest.raises(errors.OperatorFailed):
        out.unwrap()


def test_refusal_inside_keeps_its_code(sandbox: Sandbox) -> None:
    out = sandbox.run("refuse")
    assert isinstance(out, SandboxFailure)
    assert out.code == "stats-group-cardinality-exceeded"
    with pytest.raises(errors.GroupCardinalityExceeded) as info:
        out.unwrap()
    assert info.value.extensions["max_groups"] == 20


def test_non_bytes_output_is_an_operator_error(sandbox: Sandbox) -> None:
    out = sandbox.run("not_bytes")
    assert isinstance(out, SandboxFailure) and out.reason == "operator-error"


def test_session_keeps_state_and_dies_on_failure(sandbox: Sandbox) -> None:
    with sandbox.open_session("counter") as s:
        assert s.call({"add": 2}).unwrap() == b"2"
        assert s.call({"add": 3}, {"suffix": b"!"}).unwrap() == b"5!"
    with sandbox.open_session("sleep", limits=Limits(wall_seconds=0.5)) as s:
        first = s.call()
        assert isinstance(first, SandboxFailure) and first.reason == "timeout"
        assert s.call() is first


# -- availability and the registry ---------------------------------------------------------------


def test_missing_bwrap_is_refused_not_run_unisolated(data: Path) -> None:
    sb = Sandbox(TEST_REGISTRY, bwrap="/nonexistent/bwrap")
    assert sb.unavailable_reason() is not None
    with pytest.raises(errors.IsolationUnavailable):
        sb.check()
    out = sb.run("write", [data], params={"paths": []})
    assert isinstance(out, SandboxFailure) and out.reason == "isolation-unavailable"
    with pytest.raises(errors.IsolationUnavailable):
        out.unwrap()


def test_bwrap_that_cannot_isolate_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    sb = Sandbox(TEST_REGISTRY, bwrap=str(fake))
    assert "probe exited 1" in (sb.unavailable_reason() or "")
    assert sb.run("identity").reason == "isolation-unavailable"  # type: ignore[union-attr]


def test_unknown_operator_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(errors.UnknownOperator):
        sandbox.run("os.system")


def test_production_registry_is_fixed() -> None:
    assert set(REGISTRY) == {
        "stats.count", "stats.sum", "stats.mean", "stats.variance", "stats.histogram",
        "fl.logreg", "psi.cardinality", "psi.sum", "psi.intersection", "fl.hetero_logreg",
    }  # fmt: skip
    assert all(spec.code_root is None for spec in REGISTRY.values())
    assert all(spec.target.startswith("sandbox.") for spec in REGISTRY.values())
    with pytest.raises(TypeError):
        REGISTRY["evil"] = REGISTRY["stats.sum"]  # type: ignore[index]
    with pytest.raises(ValueError):
        OperatorSpec("x", "not a target")

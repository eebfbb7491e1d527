"""The bubblewrap + prlimit command line of one worker, and the probe that isolation works here.

See `sandbox.isolation` for what each child gets and why bubblewrap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pdx_client.identifiers as _identifiers

from sandbox._isolation_model import Limits, OperatorRegistry, OperatorSpec
from sandbox.errors import IsolationUnavailable
from sandbox.priority import nice_argv

SANDBOX_UID = 65534
SCRATCH = Path("/scratch")
INPUT_ROOT = Path("/input")
_PACKAGE_DIR = Path(__file__).resolve().parent
# The worker's own code is mounted here and put first on `sys.path`, so a child imports
# exactly the `sandbox` package its parent runs, whatever the install layout (an editable
# install of another checkout included).
CODE_ROOT = Path("/opt/pdx")
_CRYPTO_DIR = _PACKAGE_DIR.parent / "crypto"
_CRYPTO_FILES = (
    "psi_ec.py",
    "_h2c_p256.py",
    "_ossl_p256.py",  # psi_ec's bulk path: P-256 multiplication through the system libcrypto
    "_mb_p256.py",  # psi_ec's second blinding on AVX-512 IFMA (crypto_mb), where it loads
    "suites/_jacobian.py",  # _h2c_p256's point doubling (`crypto/suites` is namespace inside)
    "errors.py",
    "problem.py",
    "relay.py",
)
"""The private-join operators' elliptic-curve group (issue 18) and their relay sealing,
without the rest of `crypto` (no KMS, no key store): bound file by file, so
`crypto/__init__.py` is never run inside."""
_IDENTIFIERS = Path(_identifiers.__file__).resolve()
"""The SDK's identifier normalisation (`sandbox.identifiers` re-exports it): bound alone, so
`pdx_client` is a namespace package inside and its HTTP client is never imported there."""
_WORKER_BOOT = (
    f"import sys; sys.path.insert(0, {str(CODE_ROOT)!r}); from sandbox._worker import main; main()"
)

# Checks the properties, not just that bwrap started: only a loopback interface, the
# unprivileged uid, and a read-only root.
_PROBE_SCRIPT = """
import os, socket, sys
ok = [n for _, n in socket.if_nameindex()] == ["lo"] and os.getuid() == 65534
try:
    open("/probe", "w")
    ok = False
except OSError:
    pass
sys.exit(0 if ok else 3)
"""
_PROBE_LOCK = threading.Lock()
_PROBED: dict[tuple[str, str], str | None] = {}


class _Launcher:
    """The host side of isolation: which tools, whether they work, the argv of a worker."""

    def __init__(
        self,
        registry: OperatorRegistry,
        *,
        bwrap: str = "bwrap",
        prlimit: str = "prlimit",
        python: str | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.registry = registry
        self._bwrap = shutil.which(bwrap) or bwrap
        self._prlimit = shutil.which(prlimit) or prlimit
        self._python = python or sys.executable
        self._workdir = workdir

    # availability ---------------------------------------------------------------------------

    def unavailable_reason(self) -> str | None:
        """Why isolation cannot be used on this host, or None when a probe run succeeded."""
        for tool in (self._bwrap, self._prlimit):
            if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
                return f"{os.path.basename(tool)} not found ({tool})"
        key = (self._bwrap, self._prlimit)
        with _PROBE_LOCK:
            if key not in _PROBED:
                reason = self._probe()
                if reason is not None:
                    # Not cached: a failure may be transient (EMFILE, a fork failing under
                    # load), and caching it disabled computations for the process's life.
                    return reason
                _PROBED[key] = None
            return _PROBED[key]

    def check(self) -> None:
        """Raise `IsolationUnavailable` unless isolated runs are possible here."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise IsolationUnavailable(
                f"isolated execution unavailable, refusing to run unisolated: {reason}"
            )

    def _probe(self) -> str | None:
        cmd = [
            self._prlimit,
            "--core=0",
            "--",
            self._bwrap,
            *self._namespace_args(),
            *self._system_mounts(),
            "--remount-ro",
            "/",
            "--",
            self._python,
            "-I",
            "-S",
            "-c",
            _PROBE_SCRIPT,
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"probe failed: {exc}"
        if done.returncode == 3:
            return "probe ran but the namespaces were not effective"
        if done.returncode != 0:
            msg = done.stderr.decode(errors="replace").strip().splitlines()
            return f"probe exited {done.returncode}: {msg[-1] if msg else ''}"
        return None

    # command line ---------------------------------------------------------------------------

    @staticmethod
    def _namespace_args() -> list[str]:
        return [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--cap-drop",
            "ALL",
            "--hostname",
            "pdx-sandbox",
            "--die-with-parent",
        ]

    def _system_mounts(self) -> list[str]:
        args: list[str] = []
        for d in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            p = Path(d)
            if p.is_symlink():
                args += ["--symlink", os.readlink(p), d]
            elif p.is_dir():
                args += ["--ro-bind", d, d]
        for f in ("/etc/ld.so.cache", "/etc/localtime"):
            args += ["--ro-bind-try", f, f]
        roots = {
            Path(sys.prefix).resolve(),
            Path(sys.base_prefix).resolve(),
            Path(self._python).resolve().parent.parent,
        }
        for root in _outermost(roots):
            if not _is_under(root, Path("/usr")):
                args += ["--ro-bind", str(root), str(root)]
        # The venv's python is a symlink into base_prefix: keep its own path valid too.
        venv_bin = Path(self._python).parent
        if not any(_is_under(venv_bin, r) for r in roots):
            args += ["--ro-bind", str(venv_bin), str(venv_bin)]
        return args

    def command(
        self,
        spec: OperatorSpec,
        inputs: Sequence[Path],
        scratch_host: Path,
        limits: Limits,
        out_fd: int,
    ) -> tuple[list[str], list[str]]:
        """The argv for one worker, and the in-sandbox paths of its inputs."""
        mounts = self._system_mounts()
        mounts += ["--ro-bind", str(_PACKAGE_DIR), str(CODE_ROOT / "sandbox")]
        for name in _CRYPTO_FILES:  # the PSI group only: `crypto` is a namespace package inside
            mounts += ["--ro-bind", str(_CRYPTO_DIR / name), str(CODE_ROOT / "crypto" / name)]
        mounts += [
            "--ro-bind",
            str(_IDENTIFIERS),
            str(CODE_ROOT / "pdx_client" / _IDENTIFIERS.name),
        ]
        if spec.code_root is not None:
            root = str(spec.code_root.resolve())
            mounts += ["--ro-bind", root, root]
        inside: list[str] = []
        for i, path in enumerate(inputs):
            target = INPUT_ROOT / str(i) / (path.name or "input")
            mounts += ["--ro-bind", str(path), str(target)]
            inside.append(str(target))
        mounts += ["--bind", str(scratch_host), str(SCRATCH)]
        mounts += ["--dev", "/dev", "--proc", "/proc", "--remount-ro", "/dev", "--remount-ro", "/"]
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(SCRATCH),
            "TMPDIR": str(SCRATCH),
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env_args: list[str] = ["--clearenv"]
        for k, v in env.items():
            env_args += ["--setenv", k, v]
        config = {
            "target": spec.target,
            "out_fd": out_fd,
            "inputs": inside,
            "scratch": str(SCRATCH),
            "max_request_bytes": limits.max_request_bytes,
            "code_roots": [str(spec.code_root.resolve())] if spec.code_root else [],
        }
        cpu = limits.cpu_seconds
        argv = [
            *nice_argv(),
            self._prlimit,
            f"--cpu={cpu}:{cpu + 2}",
            f"--as={limits.memory_bytes}:{limits.memory_bytes}",
            f"--fsize={limits.max_file_bytes}:{limits.max_file_bytes}",
            "--core=0:0",
            "--",
            self._bwrap,
            *self._namespace_args(),
            *env_args,
            *mounts,
            "--chdir",
            str(SCRATCH),
            "--",
            self._python,
            "-I",
            "-B",
            "-c",
            _WORKER_BOOT,
            json.dumps(config),
        ]
        return argv, inside


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _outermost(paths: set[Path]) -> list[Path]:
    ordered = sorted(paths, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in ordered:
        if not any(_is_under(p, k) for k in kept):
            kept.append(p)
    return kept

"""Helpers for the requester-held key tests: HTTP provider nodes, the requester, byte search.

`python -m tests.helpers.i15_keys node PORT EMAIL PASSWORD` runs a provider's own PySyft
Datasite on loopback with a data-owner account for the platform, prints `READY` and
serves until its stdin closes. `REQUESTER` is the requester's program: it runs with only
`sdk/` on its path (no server package importable), generates the job key, asks for the
computation, waits, fetches and decrypts the result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.s16_fast import file_hits, memory_image

REPO = Path(__file__).resolve().parents[2]


# -- how an integer can sit in memory or on disk -------------------------------------------------


def encodings(x: int) -> dict[str, bytes]:
    """The byte strings under which `x` would be found: text, big/little endian, CPython, GMP.

    CPython stores an int as 30-bit digits in uint32 words (little-endian); gmpy2/GMP as
    64-bit limbs, least significant first (the little-endian bytes); phe keeps its keys as
    such ints and mpz; JSON and logs would hold decimal or hex text.
    """
    size = max(1, (x.bit_length() + 7) // 8)
    digits = []
    y = x
    while y:
        digits.append(y & ((1 << 30) - 1))
        y >>= 30
    return {
        "decimal": str(x).encode(),
        "hex": format(x, "x").encode(),
        "big-endian": x.to_bytes(size, "big"),
        "little-endian": x.to_bytes(size, "little"),
        "cpython-digits": b"".join(d.to_bytes(4, "little") for d in digits),
    }


def encoded(needles: dict[str, int]) -> dict[str, bytes]:
    """Every encoding of every needle, as byte patterns named "name: encoding"."""
    return {f"{name}: {enc}": b for name, x in needles.items() for enc, b in encodings(x).items()}


def search(paths: Iterable[Path], needles: dict[str, int]) -> list[str]:
    """Where any encoding of any needle occurs in the files (name: encoding: file)."""
    return [f"{name}: {path}" for name, path in file_hits(paths, encoded(needles))]


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.exists():
            yield from (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def core_dump(pid: int, out_dir: Path) -> Path:
    """A dump of a running process's memory, written to `out_dir`: what `gcore` would write
    that can hold any data (`tests.helpers.s16_fast.memory_image`), without the gigabytes of
    untouched reservations and unchanged library pages it copies too."""
    return memory_image(pid, out_dir / f"core.{pid}")


# -- a provider's own Datasite, as its own process -----------------------------------------------


@dataclass
class NodeProcess:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def start_node(
    port: int, email: str, password: str, tmp: Path, *, deadline_s: float = 180
) -> NodeProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "PDX_NODE_WORKDIR": str(tmp / "work")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.i15_keys", "node", str(port), email, password],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + deadline_s
    assert proc.stdout is not None
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip() == "READY":
            return NodeProcess(proc, port)
    proc.kill()
    raise AssertionError("the node did not start: " + "".join(lines)[-2000:])


def start_requester(
    out: Path, script: str, url: str, token: str, **extra: str
) -> subprocess.Popen[str]:
    """The requester as its own process: `script` run with only the SDK on its path.

    It writes what it learns under `out` (`REQUESTER_OUT`); `extra` adds environment
    variables (the request bodies). Its stdout is the caller's to read.
    """
    out.mkdir()
    (out / "requester.py").write_text(script)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO / "sdk"),
        "PYTHONNOUSERSITE": "1",
        "PDX_URL": url,
        "PDX_TOKEN": token,
        "REQUESTER_OUT": str(out),
        **extra,
    }
    proc = subprocess.Popen(
        [sys.executable, str(out / "requester.py")],
        cwd=out,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    return proc


def _serve_node(port: int, email: str, password: str) -> None:
    import syft as sy  # type: ignore[import-untyped]
    from syft.service.user.user_roles import ServiceRole  # type: ignore[import-untyped]

    server = sy.orchestra.launch(name=f"pdx-provider-{port}", port=port, reset=True)
    root = server.login(email="info@openmined.org", password="changethis")
    root.register(name="pdx", email=email, password=password, password_verify=password)
    root.users.search(email=email)[0].update(role=ServiceRole.DATA_OWNER)
    print("READY", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    server.land()


# -- the requester, as its own process with only the SDK ---------------------------------------

REQUESTER = r"""
import json, os, sys, time
# The shared virtualenv has the server installed (editable): take it off this process's
# import system, as on a requester's machine that installed only the SDK and its deps.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "gateway"))]
import httpx
for server_package in ("gateway", "exchange", "sandbox", "crypto"):
    try:
        __import__(server_package)
    except ImportError:
        pass
    else:
        raise SystemExit(f"the requester can import {server_package}")
from pdx_client.jobkeys import JobKey

url, token = os.environ["PDX_URL"], os.environ["PDX_TOKEN"]
out = os.environ["REQUESTER_OUT"]
headers = {"Authorization": f"Bearer {token}"}
body = json.loads(os.environ["REQUEST_BODY"])
key = JobKey.generate()
body["job_key"] = key.public()
r = httpx.post(url + "/v1/computations", headers=headers, json=body, timeout=60)
assert r.status_code == 201, r.text
comp_id = r.json()["id"]
deadline = time.monotonic() + 600
while True:
    state = httpx.get(url + f"/v1/computations/{comp_id}", headers=headers, timeout=60).json()
    if state["state"] in ("released", "failed", "rejected"):
        break
    assert time.monotonic() < deadline, state
    time.sleep(0.5)
assert state["state"] == "released", state
result = httpx.get(url + f"/v1/computations/{comp_id}/result", headers=headers, timeout=60).json()
opened = key.decrypt(result)
sk = key._sk
with open(os.path.join(out, "requester.json"), "w") as f:
    json.dump({"id": comp_id, "p": str(sk.p), "q": str(sk.q), "n": str(key.n),
               "result": result, "opened": opened}, f)
print("DONE", flush=True)
sys.stdin.read()  # stay alive (holding the key) until the test has dumped this process
"""


def main(argv: list[str]) -> None:
    if argv[:1] == ["node"]:
        _serve_node(int(argv[1]), argv[2], argv[3])
    else:
        raise SystemExit("usage: python -m tests.helpers.i15_keys node PORT EMAIL PASSWORD")


if __name__ == "__main__":
    main(sys.argv[1:])

"""A fresh virtualenv holding only pdx-client and its pinned dependencies (issue 15, must-show 1).

The SDK's declared requirements (sdk/pyproject.toml) are closed over the shared venv's
installed distributions and pinned to the versions found there. The venv is built with
`pip install --no-deps` of the SDK's wheel plus those pins: from the package index when it
is reachable, else from wheels repacked from the shared venv's installed files
(`--no-index --find-links`). Neither working is a skip that says why.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SDK = Path(__file__).resolve().parents[2] / "sdk"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def sdk_pins() -> list[str]:
    """`name==version` for the SDK's requirements and theirs, as installed in this venv."""
    project = tomllib.loads((SDK / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    pins: dict[str, str] = {}
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in pins:
            continue
        dist = metadata.distribution(req.name)
        pins[name] = dist.version
        todo.extend(Requirement(r) for r in dist.requires or [])
    return sorted(f"{n}=={v}" for n, v in pins.items())


def build_sdk_wheel(work: Path) -> Path:
    """The SDK's wheel, built from a copy of sdk/ (the checkout gets no build/ litter)."""
    src = work / "sdk-src"
    shutil.copytree(SDK, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    out = work / "wheels"
    subprocess.run(
        [*PIP, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("pdx_client-*.whl")
    return wheel


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def repack_wheel(pin: str, out: Path) -> Path:
    """A wheel of an installed distribution, rebuilt from its RECORD.

    Scripts and data outside site-packages are left out: pip writes console scripts
    from entry_points.txt.
    """
    name, version = pin.split("==")
    dist = metadata.distribution(name)
    site = Path(str(dist.locate_file("")))
    info = next(p for p in dist.files or [] if p.parent.name.endswith(".dist-info")).parent
    tags = re.findall(r"^Tag: (.+)$", (site / info / "WHEEL").read_text(encoding="utf-8"), re.M)
    stem = f"{re.sub(r'[-.]+', '_', dist.metadata['Name'])}-{version}"
    target = out / f"{stem}-{(tags or ['py3-none-any'])[0]}.whl"
    rows: list[list[str]] = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in dist.files or []:
            if str(rel).startswith("..") or rel.name == "RECORD" or rel.suffix == ".pyc":
                continue
            path = site / rel
            if not path.is_file() or rel.parent.name == "__pycache__":
                continue
            data = path.read_bytes()
            zf.writestr(str(rel), data)
            rows.append([str(rel), _record_hash(data), str(len(data))])
        rows.append([f"{info}/RECORD", "", ""])
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        zf.writestr(f"{info}/RECORD", buf.getvalue())
    return target


def make_venv(root: Path) -> tuple[Path, str]:
    """A venv with only pdx-client and its pins: (its python, how they were installed).

    Raises `RuntimeError` naming both failures when neither the index nor repacking works.
    """
    venv = root / "venv"
    base = shutil.which("python3.11") or getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    wheel = build_sdk_wheel(root)
    pins = sdk_pins()
    install = [*PIP, "--python", str(python), "install", "-q", "--no-deps"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    online = subprocess.run(
        [*install, "--timeout", "30", "--retries", "1", str(wheel), *pins],
        capture_output=True,
        text=True,
        env=env,
    )
    if online.returncode == 0:
        return python, "package index"
    offline = root / "offline"
    offline.mkdir()
    try:
        for pin in pins:
            repack_wheel(pin, offline)
    except (OSError, StopIteration, KeyError) as exc:
        raise RuntimeError(f"index: {online.stderr[-300:]}; repacking: {exc}") from None
    local = subprocess.run(
        [*install, "--no-index", "--find-links", str(offline), str(wheel), *pins],
        capture_output=True,
        text=True,
        env=env,
    )
    if local.returncode != 0:
        raise RuntimeError(f"index: {online.stderr[-300:]}; local wheels: {local.stderr[-300:]}")
    return python, "wheels repacked from the shared venv"

"""`pdx demo --sdk-example DIR`: admit three hospitals, write what the README's script reads."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from gateway.demo_compute import (
    HOSPITALS,
    ComputeDemoError,
    _login,
    admit,
    ward_metadata,
    ward_readings,
)

__all__ = ["write_sdk_example"]


def _private(path: Path, text: str) -> None:
    """Write a file readable by this user only (it may hold client secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def write_sdk_example(
    client: httpx.Client,
    creds: dict[str, Any],
    directory: Path,
    *,
    rows: tuple[int, int, int] = (220, 180, 260),
) -> Path:
    """Admit three hospitals and an enterprise (one client each); write their files.

    `hospitals.json` (the four clients' credentials) and `ward{i}.json` / `ward{i}.csv`
    go into `directory`.

    These are the files the README's Python SDK script reads: in a real deployment each
    organisation's administrator issues its own client and keeps its secret.
    """
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    admin = _login(client, creds, "operator-admin")
    enterprise = admit(client, admin, f"Riverside Health Analytics {stamp}", "enterprise")
    hospitals = []
    for i, (name, n) in enumerate(zip(HOSPITALS, rows, strict=True)):
        hospitals.append(admit(client, admin, f"{name} District Hospital {stamp}", "provider"))
        meta = ward_metadata(f"{name} ward readings", name)
        (directory / f"ward{i}.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        (directory / f"ward{i}.csv").write_text(ward_readings(i, n), encoding="utf-8")
    if len(hospitals) != 3:
        raise ComputeDemoError("the example needs three hospitals")
    path = directory / "hospitals.json"
    _private(path, json.dumps({"enterprise": enterprise, "hospitals": hospitals}, indent=1))
    return path

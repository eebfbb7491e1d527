"""Where the user's profile and remembered checkpoints live (`$PDX_CONFIG_DIR`, else XDG)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "config_dir",
    "job_key_passphrase",
    "load_job_key",
    "load_profile",
    "save_job_key",
    "save_profile",
]


def config_dir() -> Path:
    explicit = os.environ.get("PDX_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pdx"


def _profile_path() -> Path:
    return config_dir() / "profile.json"


def load_profile() -> dict[str, Any]:
    try:
        data = json.loads(_profile_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_profile(profile: dict[str, Any]) -> Path:
    """Write the profile readable by this user only (it holds a client secret)."""
    path = _profile_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(profile, f, indent=1)
    os.replace(tmp, path)
    return path


def _job_key_path(computation_id: str) -> Path:
    safe = "".join(c for c in computation_id if c.isalnum() or c == "-")
    return config_dir() / "jobkeys" / f"{safe}.key"


def save_job_key(computation_id: str, exported: bytes) -> Path:
    """Keep a computation's exported job key (already passphrase-encrypted), mode 0600."""
    path = _job_key_path(computation_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(exported)
    return path


def load_job_key(computation_id: str) -> bytes | None:
    try:
        return _job_key_path(computation_id).read_bytes()
    except OSError:
        return None


def job_key_passphrase() -> str | None:
    """`PDX_JOB_KEY_PASSPHRASE`, else a prompt on a terminal, else None."""
    explicit = os.environ.get("PDX_JOB_KEY_PASSPHRASE")
    if explicit:
        return explicit
    import sys

    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("job key passphrase: ") or None
    return None

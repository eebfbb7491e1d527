"""Where the user's profile and remembered checkpoints live (`$PDX_CONFIG_DIR`, else XDG)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["config_dir", "load_profile", "save_profile"]


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

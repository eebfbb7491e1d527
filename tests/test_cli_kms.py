"""`pdx kms` on the host: inventory, rotation, recovery kit, backup and restore."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import warm_cli


def pdx(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PDX_HOME": str(home), "PDX_SEED_DEMO": "1"}
    return warm_cli.pdx(args, env=env)


@pytest.mark.slow
def test_kms_cli_round_trip(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert pdx(home, "init").returncode == 0
    inv = pdx(home, "kms", "inventory")
    assert inv.returncode == 0, inv.stderr
    keys = json.loads(inv.stdout)
    token_key = next(k for k in keys if k["purpose"] == "token-signing")
    rot = pdx(home, "kms", "rotate", "--key", token_key["key_id"])
    assert rot.returncode == 0, rot.stderr
    assert "version 2" in rot.stdout
    kit = tmp_path / "kit"
    assert pdx(home, "kms", "recovery-init", "--out", str(kit)).returncode == 0
    assert (kit / "share-5.txt").stat().st_mode & 0o077 == 0
    backup = tmp_path / "keys.bak"
    made = pdx(
        home,
        "kms",
        "backup",
        "--recovery-public-key",
        str(kit / "recovery.pub"),
        "--out",
        str(backup),
    )
    assert made.returncode == 0, made.stderr
    shares = [str(kit / f"share-{i}.txt") for i in (1, 3, 5)]
    args = [a for s in shares for a in ("--share", s)]
    ok = pdx(home, "kms", "restore", "--backup", str(backup), *args)
    assert ok.returncode == 0, ok.stderr
    too_few = pdx(home, "kms", "restore", "--backup", str(backup), *args[:4])
    assert too_few.returncode == 2
    assert too_few.stderr.startswith("pdx: error:") and too_few.stderr.count("\n") == 1
    unknown = pdx(home, "kms", "rotate", "--key", "no-such-key")
    assert unknown.returncode == 2 and "pdx: error:" in unknown.stderr

"""Two gateways starting at once on one database: both come up, one seeds, neither crashes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

import exchange
from gateway.platform import database_url
from tests.conftest import REPO


def test_two_processes_initialising_at_once_both_succeed_and_seed_once(
    tmp_path: Path, db_url: str
) -> None:
    """Before: both migrated and seeded at once; one crashed (duplicate tables or rows)."""
    env = {
        **os.environ,
        "PDX_HOME": str(tmp_path / "home"),
        "PDX_DATABASE_URL": db_url,
        "PYTHONPATH": str(REPO),
    }
    # Started together through a barrier file so that both reach initialise at once.
    go = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        "from gateway.platform import build_platform, initialise\n"
        "from gateway.settings import Settings\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        "creds = initialise(build_platform(Settings.from_env()))\n"
        "print('seeded' if creds else 'joined')\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    go.touch()
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        outcomes.append(out.strip().splitlines()[-1])
    assert sorted(outcomes) == ["joined", "seeded"]
    engine = create_engine(database_url(db_url))
    try:
        with engine.connect() as conn:
            activated = conn.execute(
                text("SELECT count(*) FROM ledger_entries WHERE type = 'policy.activated'")
            ).scalar()
            orgs = conn.execute(select(func.count()).select_from(exchange.Organisation)).scalar()
        assert activated == 1  # the built-in policy installed once, not by both
        assert orgs
    finally:
        engine.dispose()

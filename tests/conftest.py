"""Shared fixtures: a platform on each database backend, an API client, demo credentials.

A test that asks for `creds` (or `api`) gets a platform copied from one migrated and
seeded once per backend and settings in the session (tests/helpers/platforms.py); a test
that asks only for `platform` gets a new, empty one, as before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from crypto.backends.pkcs11 import Pkcs11Config
from crypto.secrets import ScryptCost, use_cost
from gateway.app import create_app
from gateway.platform import Platform, build_platform, database_url, initialise
from gateway.settings import Settings
from policies import EmbeddedDecisionPoint
from tests.helpers import api as _api_helpers
from tests.helpers.platforms import PreparedPlatforms, admin_engine, cache_key

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CSV = _api_helpers.EXAMPLE_CSV
POSTGRES_URL = os.environ.get("PDX_TEST_POSTGRES_URL")


# Tests that start real processes (servers, nodes, browsers, witnesses, chains) or kill
# them. Under `pytest -n` (make test) they are one unit of work, run one after the other on
# one worker while the other workers take the in-process tests: two of them at once on a
# 2-core machine would push each other past their start-up deadlines. (The scheduler
# below, not `xdist_group`: pytest-xdist 3.8 renames node ids that pytest 9 no longer
# reads, so `--dist loadgroup` does not group.)
PROCESS_TESTS = frozenset(
    {
        "attacks/test_fl_party_keys.py",
        "attacks/test_hetero_party_keys.py",
        "attacks/test_join_party_keys.py",
        "attacks/test_limits.py",
        "attacks/test_outbound.py",
        "attacks/test_party_held_keys.py",
        "attacks/test_shared_login_budget.py",
        "attacks/test_signed_mask_keys.py",
        "attacks/test_token_flood.py",
        "faults/test_job_dirs.py",
        "faults/test_kill.py",
        "test_api_consistency.py",
        "test_cohort_join_cli.py",
        "test_console_browser.py",
        "test_console_jobkey_browser.py",
        "test_e2e.py",
        "test_fl_job_keys_cli.py",
        "test_ledger_anchor.py",
        "test_ledger_log.py",
        "test_ledger_publish.py",
        "test_passkeys_browser.py",
        "test_platform_anchor.py",
        "test_sdk_cli.py",
        "test_sdk_cli_signed_approvals.py",
        "test_sdk_clients.py",
        "test_sdk_fresh_venv.py",
        "test_sdk_market_cli.py",
        "test_secret_search.py",
        "test_store_startup.py",
    }
)


def starts_processes(nodeid: str) -> bool:
    """Whether the test `nodeid` names is one of the process tests above."""
    path = nodeid.split("::", 1)[0]
    return path.removeprefix("tests/") in PROCESS_TESTS


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pragma: no cover - pytest without xdist runs everything in order
    pass
else:

    class _ProcessTestsTogether(LoadScopeScheduling):
        """Every in-process test its own unit of work; the process tests one unit."""

        def _split_scope(self, nodeid: str) -> str:
            return "process-tests" if starts_processes(nodeid) else nodeid

    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        return _ProcessTestsTogether(config, log)


# scrypt at N = 2**10 instead of 2**14 for the secrets hashed and checked in this process
# (a sixteenth of the work per login), the way Django's docs suggest a fast password
# hasher for tests. `pdx run` and every other process keep the production cost, which
# tests/test_crypto_secrets.py checks in a fresh interpreter.
TEST_SCRYPT_COST = ScryptCost(n=1 << 10)


@pytest.fixture(scope="session", autouse=True)
def fast_scrypt() -> Iterator[ScryptCost]:
    previous = use_cost(TEST_SCRYPT_COST)
    yield TEST_SCRYPT_COST
    use_cost(previous)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if POSTGRES_URL:
        return
    if os.environ.get("CI") == "true":
        raise pytest.UsageError("CI must run the PostgreSQL tests: set PDX_TEST_POSTGRES_URL")
    reason = pytest.mark.skip(
        reason="PDX_TEST_POSTGRES_URL not set (scripts/with-postgres sets it)"
    )
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    assert POSTGRES_URL
    admin = create_engine(database_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    name = f"pdx_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pdx.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=db_url, max_upload_bytes=64 << 20)


@pytest.fixture(scope="session")
def prepared_platforms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PreparedPlatforms]:
    """The session's migrated and seeded platforms, copied into each test that needs one."""
    engines: list[Any] = []

    def admin() -> Any:
        if not engines:
            assert POSTGRES_URL
            engines.append(admin_engine(POSTGRES_URL))
        return engines[0]

    prepared = PreparedPlatforms(tmp_path_factory.mktemp("prepared"), admin)
    yield prepared
    prepared.close()
    for engine in engines:
        engine.dispose()


_RESTORED_CREDS = pytest.StashKey[dict[str, dict[str, Any]] | None]()


@pytest.fixture
def platform(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Platform]:
    """A platform of this test's own; seeded already if the test asks for `creds`.

    Without `creds` the database is empty (the test migrates and seeds as it needs).
    """
    if "creds" in request.fixturenames and cache_key(settings) is not None:
        prepared: PreparedPlatforms = request.getfixturevalue("prepared_platforms")
        request.node.stash[_RESTORED_CREDS] = prepared.restore(settings)
    p = build_platform(settings)
    yield p
    if isinstance(p.pdp, EmbeddedDecisionPoint):
        p.pdp.release_idle()  # as the app's shutdown does: compiled once per session
    p.engine.dispose()


@pytest.fixture
def creds(request: pytest.FixtureRequest, platform: Platform) -> dict[str, dict[str, Any]]:
    """The demo clients' credentials, after `initialise` (which also loads the policy)."""
    seeded = initialise(platform)
    if _RESTORED_CREDS in request.node.stash:
        # A copy of a seeded platform: initialise found it seeded, as on a restart.
        restored: dict[str, dict[str, Any]] | None = request.node.stash[_RESTORED_CREDS]
        assert seeded is None and restored is not None
        return restored
    assert seeded is not None
    return seeded


@pytest.fixture
def api(platform: Platform, creds: dict[str, dict[str, Any]]) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as client:
        yield client


@pytest.fixture
def capi(platform: Platform, creds: dict[str, dict[str, Any]]) -> Iterator[TestClient]:
    """Like `api`, for computations: small Paillier keys (the minimum allowed)."""
    yield from _api_helpers.compute_client(platform)


login = _api_helpers.login  # re-exported: modules import it from here


# -- SoftHSM2: one token per test session (a PKCS#11 module reads its configuration once
# per process), each test its own root-key label ----------------------------------------

SOFTHSM_MODULE = os.environ.get("PDX_TEST_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "pdx-test"
USER_PIN = "4321-user"


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pkcs11Config]:
    """A throwaway SoftHSM2 token in a temporary directory, for the whole session.

    One token per session because a PKCS#11 module reads its configuration once per
    process (C_Initialize); each test gets its own root key object (label) in it.
    Absent SoftHSM2 skips the pkcs11 tests, except under CI, where it fails them.
    """
    util = shutil.which("softhsm2-util")
    if util is None or not Path(SOFTHSM_MODULE).exists():
        reason = "SoftHSM2 not installed (apt-get install softhsm2)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PKCS#11 tests: {reason}")
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {directory / 'tokens'}\n"
        "objectstore.backend = file\nlog.level = ERROR\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN_LABEL]
        + ["--pin", USER_PIN, "--so-pin", "8765-so"],
        check=True,
        capture_output=True,
    )
    yield Pkcs11Config(SOFTHSM_MODULE, TOKEN_LABEL, USER_PIN, key_label="unused")
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous

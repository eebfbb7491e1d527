"""Settings: every PDX_* variable keeps its name and default; bad values name the variable."""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import Settings, SettingsError

# Every setting as it was before pydantic-settings: variable, field, default, a valid value
# and what that value becomes.
VARIABLES: list[tuple[str, str, Any, str, Any]] = [
    ("PDX_HOST", "host", "127.0.0.1", "0.0.0.0", "0.0.0.0"),
    ("PDX_PORT", "port", 8700, "9000", 9000),
    ("PDX_MAX_UPLOAD_BYTES", "max_upload_bytes", 4 << 30, "1024", 1024),
    ("PDX_TOKEN_TTL_S", "token_ttl_s", 900, "600", 600),
    ("PDX_REFRESH_TTL_S", "refresh_ttl_s", 8 * 3600, "60", 60),
    ("PDX_ISSUER", "issuer", "pdx", "other", "other"),
    ("PDX_WEBAUTHN_RP_ID", "webauthn_rp_id", "localhost", "pdx.example.cn", "pdx.example.cn"),
    ("PDX_WEBAUTHN_ORIGINS", "webauthn_origins", "", "https://pdx.example.cn", "https://pdx.example.cn"),
    ("PDX_AUDIENCE", "audience", "pdx-api", "aud", "aud"),
    ("PDX_SEED_DEMO", "seed_demo", True, "0", False),
    ("PDX_ENV", "environment", "development", "development", "development"),
    ("PDX_LEDGER_ORIGIN", "ledger_origin", "pdx.local/ledger", "x.example/log", "x.example/log"),
    ("PDX_LEDGER_HASH", "ledger_hash", "sha256", "sm3", "sm3"),
    ("PDX_LEDGER_SEAL_INTERVAL_MS", "ledger_seal_interval_ms", 200, "50", 50),
    ("PDX_LEDGER_SEAL_ENTRIES", "ledger_seal_entries", 1000, "10", 10),
    ("PDX_CIPHER_SUITE", "cipher_suite", "intl", "sm", "sm"),
    ("PDX_OPA_URL", "opa_url", None, "http://opa:8181", "http://opa:8181"),
    ("PDX_MTLS", "mtls", False, "1", True),
    ("PDX_TLS_DIR", "tls_home", None, "/srv/tls", Path("/srv/tls")),
    ("PDX_KEY_BACKEND", "key_backend", "local", "local", "local"),
    ("PDX_ROOT_KEY_PASSPHRASE", "root_key_passphrase", None, "pw", "pw"),
    ("PDX_PKCS11_MODULE", "pkcs11_module", "/usr/lib/softhsm/libsofthsm2.so", "/m.so", "/m.so"),
    ("PDX_PKCS11_TOKEN_LABEL", "pkcs11_token_label", "pdx", "t", "t"),
    ("PDX_PKCS11_PIN", "pkcs11_pin", None, "1234", "1234"),
    ("PDX_PKCS11_KEY_LABEL", "pkcs11_key_label", "pdx-root-key", "k", "k"),
    ("PDX_MAX_BODY_BYTES", "max_body_bytes", 1 << 20, "2048", 2048),
    ("PDX_TOKEN_RATE_PER_MIN", "token_rate_per_min", 120, "5", 5),
    ("PDX_TOKEN_RATE_BURST", "token_rate_burst", 30, "5", 5),
    ("PDX_AUTH_FAILURES_PER_MIN", "auth_failures_per_min", 30, "5", 5),
    ("PDX_AUTH_FAILURE_BURST", "auth_failure_burst", 20, "5", 5),
    ("PDX_AUDIT_BURST_WINDOW_S", "audit_burst_window_s", 60, "5", 5),
    ("PDX_AUTH_TARPIT_MS", "auth_tarpit_ms", 1000, "0", 0),
    ("PDX_TRUSTED_PROXIES", "trusted_proxies", (), "10.0.0.1, ::1/128", ("10.0.0.1", "::1/128")),
    ("PDX_NODE_ALLOW_NETWORKS", "node_allow_networks", (), "192.168.0.0/16", ("192.168.0.0/16",)),
    ("PDX_NODE_CONNECT_TIMEOUT_MS", "node_connect_timeout_ms", 5000, "7", 7),
    ("PDX_NODE_READ_TIMEOUT_MS", "node_read_timeout_ms", 120_000, "7", 7),
    ("PDX_NODE_PROBE_TIMEOUT_MS", "node_probe_timeout_ms", 10_000, "7", 7),
    ("PDX_QUOTA_QUEUED_PER_ORG", "quota_queued_per_org", 20, "0", 0),
    ("PDX_QUOTA_RUNNING_PER_ORG", "quota_running_per_org", 1, "3", 3),
    ("PDX_JOB_WORKERS", "job_workers", 2, "4", 4),
    ("PDX_FL_ROUND_TIMEOUT_S", "fl_round_timeout_s", 600, "30", 30),
    ("PDX_MAX_OUTPUT_VALUES", "max_output_values", 10_000, "9", 9),
    ("PDX_MAX_ROW_PASSES", "max_row_passes", 2_000_000_000, "9", 9),
    ("PDX_PRIVACY_LINEAGE_EPSILON", "privacy_lineage_epsilon", 3.0, "5", 5.0),
    ("PDX_PRIVACY_REQUESTER_EPSILON", "privacy_requester_epsilon", 2.0, "0.5", 0.5),
    ("PDX_UNSAFE_BENCH_NO_PEP", "unsafe_bench_no_pep", False, "1", True),
    ("PDX_SWEEP_INTERVAL_S", "sweep_interval_s", 300, "60", 60),
    ("PDX_SWEEP_GRACE_S", "sweep_grace_s", 900, "30", 30),
    ("PDX_MIN_FREE_BYTES", "min_free_bytes", 256 << 20, "0", 0),
    ("PDX_WITNESS_QUORUM", "witness_quorum", 0, "0", 0),
    ("PDX_WITNESS_TIMEOUT_MS", "witness_timeout_ms", 2000, "500", 500),
    ("PDX_ANCHOR", "anchor", "embedded", "off", "off"),
    ("PDX_ANCHOR_EVERY_BLOCKS", "anchor_every_blocks", 10, "3", 3),
    ("PDX_ANCHOR_EVERY_S", "anchor_every_s", 2, "5", 5),
    ("PDX_PUBLISHED_FILE", "published_file", None, "/srv/pub.json", Path("/srv/pub.json")),
    ("PDX_MARKET_FEE_RATE", "market_fee_rate", Decimal("0.05"), "0.03", Decimal("0.03")),
    ("PDX_CONSOLE_IDLE_S", "console_idle_s", 900, "60", 60),
    ("PDX_CONSOLE_ABSOLUTE_S", "console_absolute_s", 28_800, "3600", 3600),
    ("PDX_JOB_LEASE_S", "job_lease_s", 30, "12", 12),
    ("PDX_JOB_RECOVERY_INTERVAL_S", "job_recovery_interval_s", 5, "2", 2),
    ("PDX_JOB_WORKDIR", "job_workdir", Path("/dev/shm"), "/run/pdx", Path("/run/pdx")),
    ("PDX_DECISION_LOG_MAX_PENDING", "decision_log_max_pending", 100_000, "500", 500),
]  # fmt: skip


def test_every_setting_is_in_the_table() -> None:
    # witnesses and anchor_contract are checked by tests/test_ledger_publish*.py (their formats).
    fields = set(Settings.model_fields) - {"home", "database_url", "witnesses", "anchor_contract"}
    # job_queue needs PostgreSQL: test_the_shared_job_queue_needs_postgresql.
    assert fields - {"job_queue"} == {field for _, field, *_ in VARIABLES}


def test_the_shared_job_queue_needs_postgresql(tmp_path: Path) -> None:
    base = {"PDX_HOME": str(tmp_path)}
    assert Settings.from_env(base).job_queue == "embedded"
    with pytest.raises(SettingsError, match="PDX_JOB_QUEUE"):
        Settings.from_env({**base, "PDX_JOB_QUEUE": "procrastinate"})
    shared = Settings.from_env(
        {
            **base,
            "PDX_JOB_QUEUE": "procrastinate",
            "PDX_DATABASE_URL": "postgresql://x/y",
            "PDX_JOB_WORKERS": "0",
        }  # fmt: skip
    )
    assert (shared.job_queue, shared.job_workers) == ("procrastinate", 0)
    with pytest.raises(SettingsError, match="PDX_JOB_WORKERS"):
        Settings.from_env({**base, "PDX_JOB_WORKERS": "0"})  # embedded: nothing would run


@pytest.mark.parametrize(
    ("variable", "field", "default", "raw", "value"), VARIABLES, ids=[v[0] for v in VARIABLES]
)
def test_each_variable_keeps_its_name_and_default(
    tmp_path: Path, variable: str, field: str, default: Any, raw: str, value: Any
) -> None:
    base = {"PDX_HOME": str(tmp_path)}
    assert getattr(Settings.from_env(base), field) == default
    assert getattr(Settings.from_env({**base, variable: raw}), field) == value
    assert getattr(Settings.from_env({**base, variable: ""}), field) == default  # empty: unset
    # Tests build settings directly with the same field names.
    assert getattr(Settings(home=tmp_path, **{field: value}), field) == value


def test_home_and_database_url(tmp_path: Path) -> None:
    s = Settings.from_env({"PDX_HOME": str(tmp_path / "h")})
    assert s.home == (tmp_path / "h").resolve()
    assert s.database_url == f"sqlite:///{(tmp_path / 'h').resolve() / 'pdx.db'}"
    s = Settings.from_env({"PDX_HOME": str(tmp_path), "PDX_DATABASE_URL": "postgresql://x/y"})
    assert s.database_url == "postgresql://x/y"


def test_direct_construction_reads_no_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDX_PORT", "1234")
    monkeypatch.setenv("PDX_ENV", "production")
    s = Settings(home=tmp_path, database_url="sqlite://")
    assert (s.port, s.environment) == (8700, "development")
    monkeypatch.setenv("PDX_ENV", "development")
    monkeypatch.setenv("PDX_HOME", str(tmp_path))
    assert Settings.from_env().port == 1234  # from_env() reads the process environment


BAD: list[tuple[dict[str, str], str]] = [
    ({"PDX_PORT": "eighty"}, "PDX_PORT"),
    ({"PDX_PORT": "0"}, "PDX_PORT"),
    ({"PDX_JOB_WORKERS": "0"}, "PDX_JOB_WORKERS"),
    ({"PDX_QUOTA_QUEUED_PER_ORG": "-1"}, "PDX_QUOTA_QUEUED_PER_ORG"),
    ({"PDX_MTLS": "yes"}, "PDX_MTLS"),
    ({"PDX_SEED_DEMO": "2"}, "PDX_SEED_DEMO"),
    ({"PDX_UNSAFE_BENCH_NO_PEP": "true"}, "PDX_UNSAFE_BENCH_NO_PEP"),
    ({"PDX_ENV": "staging"}, "PDX_ENV"),
    ({"PDX_LEDGER_HASH": "md5"}, "PDX_LEDGER_HASH"),
    ({"PDX_CIPHER_SUITE": "des"}, "PDX_CIPHER_SUITE"),
    ({"PDX_KEY_BACKEND": "tpm"}, "PDX_KEY_BACKEND"),
    ({"PDX_KEY_BACKEND": "pkcs11"}, "PDX_PKCS11_PIN"),
    ({"PDX_TOKEN_TTL_S": "901"}, "PDX_TOKEN_TTL_S"),
    ({"PDX_TOKEN_TTL_S": "59"}, "PDX_TOKEN_TTL_S"),
    ({"PDX_LEDGER_ORIGIN": "a b"}, "PDX_LEDGER_ORIGIN"),
    ({"PDX_TRUSTED_PROXIES": "10.0.0.1,proxy.example"}, "PDX_TRUSTED_PROXIES"),
    ({"PDX_NODE_ALLOW_NETWORKS": "lan"}, "PDX_NODE_ALLOW_NETWORKS"),
    # Production refusals: demo secrets, a root key in the clear, the unsafe bench switch.
    ({"PDX_ENV": "production"}, "PDX_ROOT_KEY_PASSPHRASE"),
    (
        {"PDX_ENV": "production", "PDX_ROOT_KEY_PASSPHRASE": "p", "PDX_SEED_DEMO": "1"},
        "PDX_SEED_DEMO",
    ),
    (
        {"PDX_ENV": "production", "PDX_ROOT_KEY_PASSPHRASE": "p", "PDX_UNSAFE_BENCH_NO_PEP": "1"},
        "PDX_UNSAFE_BENCH_NO_PEP",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("env", "variable"), BAD, ids=[f"{v}-{i}" for i, (_, v) in enumerate(BAD)])
def test_invalid_values_are_refused_naming_the_variable(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({"PDX_HOME": str(tmp_path), **env})


def test_production_defaults_to_no_demo_seed(tmp_path: Path) -> None:
    s = Settings.from_env(
        {"PDX_HOME": str(tmp_path), "PDX_ENV": "production", "PDX_ROOT_KEY_PASSPHRASE": "p"}
    )
    assert s.seed_demo is False and s.unsafe_bench_no_pep is False
    with pytest.raises(SettingsError, match="PDX_ROOT_KEY_PASSPHRASE"):
        Settings(home=tmp_path, environment="production")
    with pytest.raises(SettingsError, match="PDX_SEED_DEMO"):
        s.replace(seed_demo=True)  # copies are validated again


def test_secrets_stay_out_of_the_repr(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, root_key_passphrase="hunter2", pkcs11_pin="4321")
    assert "hunter2" not in repr(s) and "4321" not in repr(s)


def test_the_old_bench_switch_name_still_works_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="PDX_UNSAFE_BENCH_NO_PEP"):
        s = Settings.from_env({"PDX_HOME": str(tmp_path), "PDX_BENCH_NO_PEP": "1"})
    assert s.unsafe_bench_no_pep is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = Settings.from_env({"PDX_HOME": str(tmp_path), "PDX_UNSAFE_BENCH_NO_PEP": "1"})
    assert s.unsafe_bench_no_pep is True


def test_unknown_fields_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="max_uplaod_bytes"):
        Settings(home=tmp_path, max_uplaod_bytes=1)


def test_webauthn_origins_default_to_localhost_on_the_port(tmp_path: Path) -> None:
    base = {"PDX_HOME": str(tmp_path), "PDX_PORT": "9100"}
    assert Settings.from_env(base).webauthn_origin_list == (
        "http://localhost:9100",
        "https://localhost:9100",
    )
    given = Settings.from_env({**base, "PDX_WEBAUTHN_ORIGINS": " https://a.cn/, https://b.cn"})
    assert given.webauthn_origin_list == ("https://a.cn", "https://b.cn")

"""Platform settings read from `PDX_*` environment variables, validated at construction."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be ≥ {minimum}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "0")
    if value not in ("0", "1"):
        raise SettingsError(f"{name} must be 0 or 1")
    return value == "1"


@dataclass(frozen=True)
class Settings:
    """Everything the composition root needs. Build with `Settings.from_env()`."""

    home: Path
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8700
    max_upload_bytes: int = 4 << 30
    token_ttl_s: int = 900
    refresh_ttl_s: int = 8 * 3600
    issuer: str = "pdx"
    audience: str = "pdx-api"
    seed_demo: bool = True
    environment: str = "development"
    ledger_origin: str = "pdx.local/ledger"
    ledger_hash: str = "sha256"
    ledger_seal_interval_ms: int = 200
    ledger_seal_entries: int = 1000
    cipher_suite: str = "intl"
    opa_url: str | None = None
    mtls: bool = False
    tls_home: Path | None = None
    key_backend: str = "local"
    root_key_passphrase: str | None = field(default=None, repr=False)
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token_label: str = "pdx"
    pkcs11_pin: str | None = field(default=None, repr=False)
    pkcs11_key_label: str = "pdx-root-key"
    # Limits before work (issue 11): request bodies, token and failure rates, proxies.
    max_body_bytes: int = 1 << 20
    token_rate_per_min: int = 120
    token_rate_burst: int = 30
    auth_failures_per_min: int = 30
    auth_failure_burst: int = 20
    audit_burst_window_s: int = 60
    trusted_proxies: tuple[str, ...] = ()
    node_allow_networks: tuple[str, ...] = ()
    """CIDRs HTTP nodes may be in besides public addresses (e.g. a provider LAN)."""
    node_connect_timeout_ms: int = 5000
    node_read_timeout_ms: int = 120_000
    node_probe_timeout_ms: int = 10_000
    """Registering an HTTP node: the login must finish within this; failures all take it."""
    # Fair use of computations (issue 11): per-organisation quotas, job workers, limits.
    quota_queued_per_org: int = 20
    quota_running_per_org: int = 1
    job_workers: int = 2
    max_output_values: int = 10_000
    max_row_passes: int = 2_000_000_000
    # Crash hygiene and readiness (issue 13).
    sweep_interval_s: int = 300
    """How often leftovers (`.partial`, objects without a row) are swept while serving."""
    sweep_grace_s: int = 900
    """A leftover untouched for less than this may still be another process's upload."""
    min_free_bytes: int = 256 << 20
    """/readyz reports not-ready when the objects' filesystem has less free space."""
    published_file: Path | None = None
    """High-water mark of published checkpoints (default `$PDX_HOME/published.json`)."""
    # Witnesses and chain anchoring (issue 19). One block: parsed by `_publishing_env`,
    # checked by `_check_publishing`.
    witnesses: tuple[str, ...] = ()
    """`name=URL=verifier-key` of each tlog-witness asked to cosign (URL: its prefix)."""
    witness_quorum: int = 0
    """Cosignatures a checkpoint should get (0: all witnesses); fewer is logged."""
    witness_timeout_ms: int = 2000
    anchor: str = "off"
    """`off`, `embedded` (in-process eth-tester chain) or a JSON-RPC URL. `from_env`
    defaults to `embedded` (`make run`); code that builds Settings itself gets `off`."""
    anchor_contract: str | None = None
    """Anchor contract address; without it one is deployed and recorded in anchor.json."""
    anchor_every_blocks: int = 10
    anchor_every_s: int = 2

    def __post_init__(self) -> None:
        self._check_publishing()
        if not self.ledger_origin or any(c.isspace() or c == "+" for c in self.ledger_origin):
            # The origin doubles as the signed-note key name: no spaces, no '+'.
            raise SettingsError("PDX_LEDGER_ORIGIN must be non-empty without spaces or '+'")
        if self.ledger_hash not in ("sha256", "sm3"):
            raise SettingsError("PDX_LEDGER_HASH must be 'sha256' or 'sm3'")
        if self.cipher_suite not in ("intl", "sm"):
            raise SettingsError("PDX_CIPHER_SUITE must be 'intl' or 'sm'")
        if self.key_backend not in ("local", "pkcs11"):
            raise SettingsError("PDX_KEY_BACKEND must be 'local' or 'pkcs11'")
        if self.key_backend == "pkcs11" and not self.pkcs11_pin:
            raise SettingsError("PDX_KEY_BACKEND=pkcs11 needs PDX_PKCS11_PIN")
        if (
            self.environment == "production"
            and self.key_backend == "local"
            and not self.root_key_passphrase
        ):
            # GB/T 39786: the root key is never stored in the clear in production.
            raise SettingsError(
                "production with the local key backend needs PDX_ROOT_KEY_PASSPHRASE"
            )
        if not 60 <= self.token_ttl_s <= 900:
            # The brief caps access tokens at 15 minutes (zero trust: short-lived credentials).
            raise SettingsError("PDX_TOKEN_TTL_S must be between 60 and 900 seconds")
        if self.environment not in ("development", "production"):
            raise SettingsError("PDX_ENV must be 'development' or 'production'")
        if self.environment == "production" and self.seed_demo:
            raise SettingsError("PDX_SEED_DEMO must be 0 in production (demo secrets)")
        for net in self.trusted_proxies:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise SettingsError(
                    f"PDX_TRUSTED_PROXIES: {net!r} is not an IP address or network"
                ) from None
        for network in self.node_allow_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise SettingsError(
                    f"PDX_NODE_ALLOW_NETWORKS: {network!r} is not a network (CIDR)"
                ) from None
        if self.quota_queued_per_org < 0 or self.quota_running_per_org < 1:
            raise SettingsError(
                "PDX_QUOTA_QUEUED_PER_ORG must be ≥ 0 and PDX_QUOTA_RUNNING_PER_ORG ≥ 1"
            )
        if self.job_workers < 1 or self.max_output_values < 1 or self.max_row_passes < 1:
            raise SettingsError(
                "PDX_JOB_WORKERS, PDX_MAX_OUTPUT_VALUES and PDX_MAX_ROW_PASSES must be ≥ 1"
            )

    @property
    def objects_dir(self) -> Path:
        return self.home / "objects"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def credentials_file(self) -> Path:
        return self.home / "demo-credentials.json"

    @property
    def tls_dir(self) -> Path:
        return self.tls_home or self.home / "tls"

    @property
    def published_path(self) -> Path:
        return self.published_file or self.home / "published.json"

    @property
    def url(self) -> str:
        return f"{'https' if self.mtls else 'http'}://{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("PDX_HOME") or ".pdx").resolve()
        database_url = env.get("PDX_DATABASE_URL") or f"sqlite:///{home / 'pdx.db'}"
        environment = env.get("PDX_ENV", "development")
        seed_raw = env.get("PDX_SEED_DEMO", "1" if environment == "development" else "0")
        if seed_raw not in ("0", "1"):
            raise SettingsError("PDX_SEED_DEMO must be 0 or 1")
        return cls(
            home=home,
            database_url=database_url,
            host=env.get("PDX_HOST", "127.0.0.1"),
            port=_int(env, "PDX_PORT", 8700),
            max_upload_bytes=_int(env, "PDX_MAX_UPLOAD_BYTES", 4 << 30),
            token_ttl_s=_int(env, "PDX_TOKEN_TTL_S", 900),
            refresh_ttl_s=_int(env, "PDX_REFRESH_TTL_S", 8 * 3600),
            issuer=env.get("PDX_ISSUER", "pdx"),
            audience=env.get("PDX_AUDIENCE", "pdx-api"),
            seed_demo=seed_raw == "1",
            environment=environment,
            ledger_origin=env.get("PDX_LEDGER_ORIGIN", "pdx.local/ledger"),
            ledger_hash=env.get("PDX_LEDGER_HASH", "sha256"),
            ledger_seal_interval_ms=_int(env, "PDX_LEDGER_SEAL_INTERVAL_MS", 200),
            ledger_seal_entries=_int(env, "PDX_LEDGER_SEAL_ENTRIES", 1000),
            cipher_suite=env.get("PDX_CIPHER_SUITE", "intl"),
            opa_url=env.get("PDX_OPA_URL") or None,
            mtls=_flag(env, "PDX_MTLS"),
            tls_home=Path(env["PDX_TLS_DIR"]).resolve() if env.get("PDX_TLS_DIR") else None,
            key_backend=env.get("PDX_KEY_BACKEND", "local"),
            root_key_passphrase=env.get("PDX_ROOT_KEY_PASSPHRASE") or None,
            pkcs11_module=env.get("PDX_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so"),
            pkcs11_token_label=env.get("PDX_PKCS11_TOKEN_LABEL", "pdx"),
            pkcs11_pin=env.get("PDX_PKCS11_PIN") or None,
            pkcs11_key_label=env.get("PDX_PKCS11_KEY_LABEL", "pdx-root-key"),
            max_body_bytes=_int(env, "PDX_MAX_BODY_BYTES", 1 << 20),
            token_rate_per_min=_int(env, "PDX_TOKEN_RATE_PER_MIN", 120),
            token_rate_burst=_int(env, "PDX_TOKEN_RATE_BURST", 30),
            auth_failures_per_min=_int(env, "PDX_AUTH_FAILURES_PER_MIN", 30),
            auth_failure_burst=_int(env, "PDX_AUTH_FAILURE_BURST", 20),
            audit_burst_window_s=_int(env, "PDX_AUDIT_BURST_WINDOW_S", 60),
            trusted_proxies=tuple(
                n.strip() for n in env.get("PDX_TRUSTED_PROXIES", "").split(",") if n.strip()
            ),
            node_allow_networks=tuple(
                n.strip() for n in env.get("PDX_NODE_ALLOW_NETWORKS", "").split(",") if n.strip()
            ),
            node_connect_timeout_ms=_int(env, "PDX_NODE_CONNECT_TIMEOUT_MS", 5000),
            node_read_timeout_ms=_int(env, "PDX_NODE_READ_TIMEOUT_MS", 120_000),
            node_probe_timeout_ms=_int(env, "PDX_NODE_PROBE_TIMEOUT_MS", 10_000),
            quota_queued_per_org=_int(env, "PDX_QUOTA_QUEUED_PER_ORG", 20, minimum=0),
            quota_running_per_org=_int(env, "PDX_QUOTA_RUNNING_PER_ORG", 1),
            job_workers=_int(env, "PDX_JOB_WORKERS", 2),
            max_output_values=_int(env, "PDX_MAX_OUTPUT_VALUES", 10_000),
            max_row_passes=_int(env, "PDX_MAX_ROW_PASSES", 2_000_000_000),
            sweep_interval_s=_int(env, "PDX_SWEEP_INTERVAL_S", 300),
            sweep_grace_s=_int(env, "PDX_SWEEP_GRACE_S", 900),
            min_free_bytes=_int(env, "PDX_MIN_FREE_BYTES", 256 << 20, minimum=0),
            published_file=(
                Path(env["PDX_PUBLISHED_FILE"]).resolve() if env.get("PDX_PUBLISHED_FILE") else None
            ),
            **_publishing_env(env),
        )

    def _check_publishing(self) -> None:
        for spec in self.witnesses:
            name, url, key = witness_spec(spec)
            if key.split("+", 1)[0] != name:
                raise SettingsError(f"PDX_WITNESSES: the key of {name!r} names another witness")
        if not 0 <= self.witness_quorum <= len(self.witnesses):
            raise SettingsError("PDX_WITNESS_QUORUM must be between 0 and the witnesses given")
        if self.anchor not in ("off", "embedded") and not self.anchor.startswith(
            ("http://", "https://")
        ):
            raise SettingsError("PDX_ANCHOR must be 'off', 'embedded' or an http(s) JSON-RPC URL")
        if self.anchor_contract is not None and not _is_address(self.anchor_contract):
            raise SettingsError("PDX_ANCHOR_CONTRACT must be a 0x-prefixed 20-byte hex address")
        if self.anchor_every_blocks < 1 or self.anchor_every_s < 1:
            raise SettingsError("PDX_ANCHOR_EVERY_BLOCKS and PDX_ANCHOR_EVERY_S must be ≥ 1")

    @property
    def witness_quorum_needed(self) -> int:
        return self.witness_quorum or len(self.witnesses)

    @property
    def anchor_file(self) -> Path:
        """Where the deployed anchor contract is recorded (chain id, address, writer)."""
        return self.home / "anchor.json"


# -- witnesses and chain anchoring (issue 19) ------------------------------------------


def _publishing_env(env: Mapping[str, str]) -> dict[str, Any]:
    """PDX_WITNESSES (comma-separated), PDX_WITNESS_QUORUM, PDX_ANCHOR and its schedule."""
    return {
        "witnesses": tuple(w.strip() for w in env.get("PDX_WITNESSES", "").split(",") if w.strip()),
        "witness_quorum": _int(env, "PDX_WITNESS_QUORUM", 0, minimum=0),
        "witness_timeout_ms": _int(env, "PDX_WITNESS_TIMEOUT_MS", 2000),
        "anchor": env.get("PDX_ANCHOR") or "embedded",
        "anchor_contract": env.get("PDX_ANCHOR_CONTRACT") or None,
        "anchor_every_blocks": _int(env, "PDX_ANCHOR_EVERY_BLOCKS", 10),
        "anchor_every_s": _int(env, "PDX_ANCHOR_EVERY_S", 2),
    }


def witness_spec(spec: str) -> tuple[str, str, str]:
    """Split `name=URL=verifier-key` (the key's base64 may end in '=')."""
    name, sep, rest = spec.partition("=")
    url, sep2, key = rest.partition("=")
    if not (sep and sep2 and name and key) or not url.startswith(("http://", "https://")):
        raise SettingsError(f"PDX_WITNESSES: {spec!r} is not name=http(s)://URL=verifier-key")
    return name, url, key


def _is_address(text: str) -> bool:
    digits = text[2:]
    return (
        text[:2] in ("0x", "0X")
        and len(digits) == 40
        and all(c in "0123456789abcdefABCDEF" for c in digits)
    )

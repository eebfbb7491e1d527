"""Platform settings read from `PDX_*` environment variables, validated at construction."""

from __future__ import annotations

import contextvars
import ipaddress
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PREFIX = "PDX_"
DEPRECATED_NO_PEP_ENV = "PDX_BENCH_NO_PEP"
"""The bench switch's old name: still read, with a DeprecationWarning, for one release."""


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


def _flag(value: Any) -> Any:
    """`0` or `1` from the environment (nothing else: `yes`, `true`, `2` are refused)."""
    if isinstance(value, str):
        if value not in ("0", "1"):
            raise ValueError("must be 0 or 1")
        return value == "1"
    return value


def _csv(value: Any) -> Any:
    """`a, b` from the environment → ("a", "b"); empty items dropped."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]
Count = Annotated[int, Field(ge=1)]
Csv = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_csv)]

_ENV: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "pdx_settings_env", default=None
)


class _MappingEnv(EnvSettingsSource):
    """The `PDX_*` variables of one mapping (`from_env(env)`), empty values unset."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Names compare case-insensitively, as pydantic-settings reads os.environ.
        return {k.lower(): v for k, v in self._mapping.items() if v != ""}


class Settings(BaseSettings):
    """Everything the composition root needs. Build with `Settings.from_env()`.

    Each setting is read from `PDX_<NAME>` (or the alias named beside it) and has its
    default written once, here. Constructing `Settings(home=..., ...)` directly reads no
    environment: it is what tests and benchmarks do. Refusals (STYLE habit 8, the FastAPI
    template's "changethis"): production needs a root key passphrase with the local key
    backend and refuses the demo seed and the unsafe bench switch.
    """

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        case_sensitive=False,
        frozen=True,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    home: Path = Path(".pdx")
    database_url: str = ""
    """Empty: SQLite in `home` (`sqlite:///<home>/pdx.db`)."""
    host: str = "127.0.0.1"
    port: Count = 8700
    max_upload_bytes: Count = 4 << 30
    token_ttl_s: Annotated[int, Field(ge=60, le=900)] = 900
    """The brief caps access tokens at 15 minutes (zero trust: short-lived credentials)."""
    refresh_ttl_s: Count = 8 * 3600
    # The web console (gateway/console): a person's browser session ends after this long
    # without a request (idle) and, whatever happens, this long after the sign-in.
    console_idle_s: Count = 15 * 60
    console_absolute_s: Count = 8 * 3600
    # Passkeys (WebAuthn) as a person's second factor: the relying party id (a domain,
    # never an IP address) and the origins the browser reports, comma-separated; empty
    # means http://localhost:<port> and https://localhost:<port>.
    webauthn_rp_id: str = "localhost"
    webauthn_origins: str = ""
    issuer: str = "pdx"
    audience: str = "pdx-api"
    environment: Literal["development", "production"] = Field(
        "development", validation_alias=AliasChoices("PDX_ENV", "environment")
    )
    seed_demo: Flag | None = None
    """Unset: seeded in development only. Production refuses it (demo secrets)."""
    ledger_origin: str = "pdx.local/ledger"
    ledger_hash: Literal["sha256", "sm3"] = "sha256"
    ledger_seal_interval_ms: Count = 200
    ledger_seal_entries: Count = 1000
    cipher_suite: Literal["intl", "sm"] = "intl"
    opa_url: str | None = None
    mtls: Flag = False
    tls_home: Path | None = Field(None, validation_alias=AliasChoices("PDX_TLS_DIR", "tls_home"))
    key_backend: Literal["local", "pkcs11"] = "local"
    root_key_passphrase: str | None = Field(None, repr=False)
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token_label: str = "pdx"
    pkcs11_pin: str | None = Field(None, repr=False)
    pkcs11_key_label: str = "pdx-root-key"
    # Limits before work (issue 11): request bodies, token and failure rates, proxies.
    max_body_bytes: Count = 1 << 20
    token_rate_per_min: Count = 120
    token_rate_burst: Count = 30
    auth_failures_per_min: Count = 30
    auth_failure_burst: Count = 20
    audit_burst_window_s: Count = 60
    auth_tarpit_ms: Annotated[int, Field(ge=0, le=10_000)] = 1000
    """How late a token request refused by a rate limit is answered (0: at once)."""
    trusted_proxies: Csv = ()
    node_allow_networks: Csv = ()
    """CIDRs HTTP nodes may be in besides public addresses (e.g. a provider LAN)."""
    node_connect_timeout_ms: Count = 5000
    node_read_timeout_ms: Count = 120_000
    node_probe_timeout_ms: Count = 10_000
    """Registering an HTTP node: the login must finish within this; failures all take it."""
    # Fair use of computations (issue 11): per-organisation quotas, job workers, limits.
    quota_queued_per_org: Annotated[int, Field(ge=0)] = 20
    quota_running_per_org: Count = 1
    job_workers: Annotated[int, Field(ge=0)] = 2
    """Job workers in this process (0: none, only with PDX_JOB_QUEUE=procrastinate)."""
    max_output_values: Count = 10_000
    max_row_passes: Count = 2_000_000_000
    # The data market (issue 17): the platform's fee on settled amounts (exact decimal).
    market_fee_rate: Annotated[Decimal, Field(ge=0, le=1, max_digits=6, decimal_places=4)] = (
        Decimal("0.05")
    )
    # Privacy budgets (issue 14, exchange/budgets.py): ε per dataset lineage, every
    # requester together, and one requesting organisation's share of it.
    privacy_lineage_epsilon: Annotated[float, Field(gt=0, le=100)] = 3.0
    privacy_requester_epsilon: Annotated[float, Field(gt=0, le=100)] = 2.0
    # Crash hygiene and readiness (issue 13).
    sweep_interval_s: Count = 300
    """How often leftovers (`.partial`, objects without a row) are swept while serving."""
    sweep_grace_s: Count = 900
    """A leftover untouched for less than this may still be another process's upload."""
    min_free_bytes: Annotated[int, Field(ge=0)] = 256 << 20
    """/readyz reports not-ready when the objects' filesystem has less free space."""
    published_file: Path | None = None
    """High-water mark of published checkpoints (default `$PDX_HOME/published.json`)."""
    # The job queue (issue 13): where approved jobs wait, run leases, job directories.
    job_queue: Literal["embedded", "procrastinate"] = "embedded"
    """`embedded`: this process's workers. `procrastinate` (PostgreSQL): a queue in the
    database that every gateway and `pdx worker` shares."""
    job_lease_s: Count = 30
    """A run not renewed (heartbeat every third of this) for this long is run again."""
    job_recovery_interval_s: Count = 5
    """How often each gateway and worker looks for lapsed runs and dead workers' files."""
    fl_round_timeout_s: Count = 600
    """`fl.logreg` under a requester key: how long a run waits for the requester's next
    global model before the job fails (exchange/computations/fl_rounds.py)."""
    job_workdir: Path = Path("/dev/shm")
    """Memory-backed directory for decrypted job inputs; start-up refuses disk-backed ones."""
    decision_log_max_pending: Count = 100_000
    """Decision logs kept for retry while the database refuses writes; more are dropped,
    counted (/readyz) and reported as `audit.decisions_dropped`."""
    # Witnesses and chain anchoring (issue 19), checked by `_check_publishing`.
    witnesses: Csv = ()
    """`name=URL=verifier-key` of each tlog-witness asked to cosign (URL: its prefix)."""
    witness_quorum: Annotated[int, Field(ge=0)] = 0
    """Cosignatures a checkpoint should get (0: all witnesses); fewer is logged."""
    witness_timeout_ms: Count = 2000
    anchor: str = "off"
    """`off`, `embedded` (in-process eth-tester chain) or a JSON-RPC URL. `from_env`
    defaults to `embedded` (`make run`); code that builds Settings itself gets `off`."""
    anchor_contract: str | None = None
    """Anchor contract address; without it one is deployed and recorded in anchor.json."""
    anchor_every_blocks: Count = 10
    anchor_every_s: Count = 2
    unsafe_bench_no_pep: Flag = Field(
        False,
        validation_alias=AliasChoices(
            "PDX_UNSAFE_BENCH_NO_PEP", DEPRECATED_NO_PEP_ENV, "unsafe_bench_no_pep"
        ),
    )
    """UNSAFE, benchmarks only: skip policy decisions to measure what zero trust costs.
    Development only; production refuses it."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_explain(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = _ENV.get()
        return (init_settings,) if env is None else (init_settings, _MappingEnv(cls, env))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` (default: the process environment)."""
        env = dict(os.environ if env is None else env)
        if env.get(DEPRECATED_NO_PEP_ENV) and not env.get("PDX_UNSAFE_BENCH_NO_PEP"):
            warnings.warn(
                f"{DEPRECATED_NO_PEP_ENV} is deprecated: use PDX_UNSAFE_BENCH_NO_PEP",
                DeprecationWarning,
                stacklevel=2,
            )
        if not env.get("PDX_ANCHOR"):  # `make run` anchors; code-built Settings do not
            env["PDX_ANCHOR"] = "embedded"
        token = _ENV.set(env)
        try:
            return cls()
        finally:
            _ENV.reset(token)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        # Derived defaults, resolved once (frozen model: set through object.__setattr__).
        home = self.home.resolve()
        derived: dict[str, Any] = {
            "home": home,
            "database_url": self.database_url or f"sqlite:///{home / 'pdx.db'}",
            "seed_demo": self.environment == "development"
            if self.seed_demo is None
            else self.seed_demo,
            "tls_home": self.tls_home.resolve() if self.tls_home is not None else None,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        production = self.environment == "production"
        if not self.ledger_origin or any(c.isspace() or c == "+" for c in self.ledger_origin):
            # The origin doubles as the signed-note key name: no spaces, no '+'.
            raise ValueError("PDX_LEDGER_ORIGIN must be non-empty without spaces or '+'")
        if self.key_backend == "pkcs11" and not self.pkcs11_pin:
            raise ValueError("PDX_KEY_BACKEND=pkcs11 needs PDX_PKCS11_PIN")
        if production and self.key_backend == "local" and not self.root_key_passphrase:
            # GB/T 39786: the root key is never stored in the clear in production.
            raise ValueError("production with the local key backend needs PDX_ROOT_KEY_PASSPHRASE")
        if production and self.seed_demo:
            raise ValueError("PDX_SEED_DEMO must be 0 in production (demo secrets)")
        if production and self.unsafe_bench_no_pep:
            raise ValueError("PDX_UNSAFE_BENCH_NO_PEP is refused in production")
        for name in ("trusted_proxies", "node_allow_networks"):
            for net in getattr(self, name):
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError:
                    raise ValueError(
                        f"{_env_name(name)}: {net!r} is not an IP address or network (CIDR)"
                    ) from None
        if self.job_queue == "procrastinate" and not self.database_url.startswith("postgres"):
            raise ValueError("PDX_JOB_QUEUE=procrastinate needs a PostgreSQL PDX_DATABASE_URL")
        if self.job_queue == "embedded" and self.job_workers < 1:
            raise ValueError("PDX_JOB_WORKERS=0 needs PDX_JOB_QUEUE=procrastinate (none would run)")
        self._check_publishing()
        return self

    @property
    def webauthn_origin_list(self) -> tuple[str, ...]:
        """The origins a passkey ceremony may come from (WebAuthn §7.1 step 9)."""
        given = tuple(o.strip().rstrip("/") for o in self.webauthn_origins.split(",") if o.strip())
        return given or (f"http://localhost:{self.port}", f"https://localhost:{self.port}")

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

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes`, validated again (the refusals hold for copies too)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**values, **changes})


def _env_name(field: str) -> str:
    info: FieldInfo | None = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return PREFIX + field.upper()


def _explain(exc: ValidationError) -> str:
    """One line per problem, each naming its environment variable."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = error.get("loc") or ()
        if loc and isinstance(loc[0], str):
            field = loc[0]
            name = field if field.startswith(PREFIX) else _env_name(field)
            if field not in Settings.model_fields and not field.startswith(PREFIX):
                lines.append(f"{field}: not a setting")
                continue
            lines.append(f"{name}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)


def _env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
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


DEFAULT_DECISION_MASKS = (
    "/input/context/ip",
    "/input/context/token",
    "/input/context/cert",
    "/input/subject/token",
    "/input/secret",
)


@dataclass(frozen=True)
class ComplianceSettings:
    """`PDX_COMPLIANCE_*`, `PDX_RETENTION_*`, `PDX_DECISION_SINK_*` (docs/compliance.md)."""

    interval_s: int = 86_400
    """ZT-06: how often the compliance check runs in the platform (0: by hand only)."""
    retention_interval_s: int = 86_400
    """PI-11: how often the retention purge runs (0: never in-process)."""
    audit_retention_days: int = 1095
    """AUD-07: audit records, decision logs and ledger are kept at least this (≥ 180)."""
    pi_record_retention_days: int = 1095
    """DSL-04: records of providing PI or important data (≥ 1,095)."""
    review_period_days: int = 365
    """GRD-07: the longest interval between grading and review."""
    risk_report_period_days: int = 365
    """DSL-05: a risk assessment of important data is generated at least this often."""
    backup_interval_s: int = 86_400
    """AUD-06: the newest `pdx backup create` is at most this old, and it verifies."""
    decision_sink_url: str | None = None
    """Push decision logs to this HTTP endpoint (OPA decision-log plugin shape)."""
    decision_sink_interval_ms: int = 1000
    decision_sink_batch: int = 500
    decision_masks: tuple[str, ...] = DEFAULT_DECISION_MASKS
    """JSON pointers removed from decision inputs in exports and pushes (OPA system.log.mask)."""
    labels: tuple[tuple[str, str], ...] = (("app", "pdx"),)

    def __post_init__(self) -> None:
        if self.audit_retention_days < 180:
            raise SettingsError("PDX_AUDIT_RETENTION_DAYS must be ≥ 180 (Cybersecurity Law 21)")
        if self.pi_record_retention_days < 1095:
            raise SettingsError("PDX_PI_RECORD_RETENTION_DAYS must be ≥ 1095 (PIPL art. 56)")
        for mask in self.decision_masks:
            if not mask.startswith("/input/"):
                raise SettingsError(f"PDX_DECISION_MASKS: {mask!r} must start with /input/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ComplianceSettings:
        env = os.environ if env is None else env
        masks = env.get("PDX_DECISION_MASKS")
        return cls(
            interval_s=_env_int(env, "PDX_COMPLIANCE_INTERVAL_S", 86_400, minimum=0),
            retention_interval_s=_env_int(env, "PDX_RETENTION_INTERVAL_S", 86_400, minimum=0),
            audit_retention_days=_env_int(env, "PDX_AUDIT_RETENTION_DAYS", 1095),
            pi_record_retention_days=_env_int(env, "PDX_PI_RECORD_RETENTION_DAYS", 1095),
            review_period_days=_env_int(env, "PDX_REVIEW_PERIOD_DAYS", 365),
            risk_report_period_days=_env_int(env, "PDX_RISK_REPORT_PERIOD_DAYS", 365),
            backup_interval_s=_env_int(env, "PDX_BACKUP_INTERVAL_S", 86_400, minimum=60),
            decision_sink_url=env.get("PDX_DECISION_SINK_URL") or None,
            decision_sink_interval_ms=_env_int(env, "PDX_DECISION_SINK_INTERVAL_MS", 1000),
            decision_sink_batch=_env_int(env, "PDX_DECISION_SINK_BATCH", 500),
            decision_masks=(
                tuple(m.strip() for m in masks.split(",") if m.strip())
                if masks is not None
                else DEFAULT_DECISION_MASKS
            ),
        )


# -- witnesses and chain anchoring (issue 19) ------------------------------------------


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

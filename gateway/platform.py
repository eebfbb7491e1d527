"""Composition root: builds the engine, stores, key store and services from settings."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, create_engine, event, select
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

import audit
import crypto
import exchange
import exchange.computations
import ledger.models
import migrations
import policies
from crypto.backends import RootKeyBackend
from crypto.kms import KeyManager
from exchange.policy_activation import activate_policy
from exchange.quotas import Quotas
from gateway.decision_logs import DecisionLogWriter
from gateway.settings import Settings
from ledger import KmsLedgerSigner, Ledger, LedgerConfig, Sealer
from sandbox.nodes import NodeRegistry
from sandbox.operators import UsageLimits
from sandbox.outbound import OutboundPolicy

Clock = Callable[[], datetime]
log = logging.getLogger("pdx.platform")

# Every package's tables; one Alembic history covers them all (migrations/).
SCHEMA: tuple[MetaData, ...] = (
    crypto.CryptoBase.metadata,
    audit.AuditBase.metadata,
    policies.PolicyBase.metadata,
    exchange.ExchangeBase.metadata,
    ledger.models.LedgerBase.metadata,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def database_url(raw: str) -> str:
    """Normalise a URL: plain `postgresql://` means the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


WRITE_OPTION = "pdx_write"


class PlatformSession(Session):
    """A session whose explicit `begin()` announces a write (see make_engine)."""

    def begin(self, nested: bool = False) -> SessionTransaction:
        transaction = super().begin(nested)
        bind = self.get_bind()
        if not nested and bind.dialect.name == "sqlite":
            self.connection(execution_options={"pdx_write": True})  # WRITE_OPTION
        return transaction


def make_engine(url: str) -> Engine:
    url = database_url(url)
    if url.startswith("sqlite"):
        # A pool as large as the request thread pool: opening SQLite connections (and
        # their PRAGMAs) per request showed up in profiles under load.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=32,
            max_overflow=16,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite opens transactions lazily and on its own terms, so a SAVEPOINT
            # outside one commits when released. Let SQLAlchemy emit BEGIN itself
            # (the SQLAlchemy docs' "Serializable isolation / Savepoints" recipe).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Write transactions (PlatformSession.begin) take the write lock up front and
            # wait for it (timeout above); a deferred one that read first would fail
            # with "database is locked" once another writer (the sealer) committed.
            immediate = conn.get_execution_options().get(WRITE_OPTION)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    # migrations/env.py reads the schema from here rather than importing the gateway.
    cfg.attributes["target_metadata"] = list(SCHEMA)
    return cfg


def upgrade_database(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    cfg = alembic_config(str(engine.url))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


@dataclass
class Platform:
    """The running platform's shared services (one per process)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[PlatformSession]
    keystore: crypto.KeyStore
    catalog: exchange.CatalogContext
    clock: Clock
    ledger: Ledger
    sealer: Sealer
    trail: exchange.Trail
    kms: KeyManager
    decision_logs: DecisionLogWriter
    compute: exchange.ComputeContext
    pdp: policies.DecisionPoint | None = None  # loaded by initialise() from the DB

    def session(self) -> Session:
        return self.sessions()

    def write_session(self) -> Session:
        """A session for code that commits by itself, such as KMS rotation batches.

        On SQLite every transaction in it takes the write lock up front (make_engine).
        """
        return self.sessions(bind=self.engine.execution_options(pdx_write=True))

    def now(self) -> datetime:
        return self.clock()


def build_platform(settings: Settings, *, clock: Clock = utc_now) -> Platform:
    exchange.configure_arrow_memory()
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = make_engine(settings.database_url)
    sessions = sessionmaker(engine, class_=PlatformSession, expire_on_commit=False)
    ledger_ = Ledger(
        LedgerConfig(
            origin=settings.ledger_origin,
            hash_name=settings.ledger_hash,
            seal_interval_s=settings.ledger_seal_interval_ms / 1000,
            seal_max_entries=settings.ledger_seal_entries,
        )
    )
    trail = exchange.Trail(ledger_, clock)
    keystore = crypto.KeyStore(
        root_key_backend(settings), events=trail.key_event, suite=settings.cipher_suite
    )
    kms = KeyManager(keystore)

    def ledger_signer(session: Session) -> KmsLedgerSigner:
        return ledger_signer_for(
            platform_keystore=keystore, settings=settings, session=session, now=clock()
        )

    sealer = Sealer(ledger_, sessions, ledger_signer, clock)
    catalog = exchange.CatalogContext(
        keystore=keystore,
        objects=exchange.ObjectStore(settings.objects_dir),
        max_upload_bytes=settings.max_upload_bytes,
        trail=trail,
    )
    return Platform(
        settings,
        engine,
        sessions,
        keystore,
        catalog,
        clock,
        ledger_,
        sealer,
        trail,
        kms,
        DecisionLogWriter(sessions),
        exchange.ComputeContext(
            sessions=sessions,
            catalog=catalog,
            nodes=NodeRegistry(
                settings.home,
                outbound=OutboundPolicy.from_strings(
                    settings.node_allow_networks,
                    connect_timeout_s=settings.node_connect_timeout_ms / 1000,
                    read_timeout_s=settings.node_read_timeout_ms / 1000,
                ),
            ),
            workdir=settings.home / "jobs",
            clock=clock,
            runner=exchange.ThreadRunner(
                workers=settings.job_workers, per_key=settings.quota_running_per_org
            ),
            quotas=Quotas(
                queued=settings.quota_queued_per_org, running=settings.quota_running_per_org
            ),
            usage_limits=UsageLimits(
                max_output_values=settings.max_output_values,
                max_row_passes=settings.max_row_passes,
            ),
        ),
    )


def ledger_signer_for(
    *, platform_keystore: crypto.KeyStore, settings: Settings, session: Session, now: datetime
) -> KmsLedgerSigner:
    """The ledger's signer: the KMS key of purpose ledger-signing (Ed25519, or SM2 under sm)."""
    signer = platform_keystore.signer(session, purpose=crypto.KeyPurpose.LEDGER_SIGNING, now=now)
    return KmsLedgerSigner(settings.ledger_origin, signer)


def root_key_backend(settings: Settings) -> RootKeyBackend:
    """The root key: a (passphrase-sealed) local file, or a non-extractable HSM key."""
    if settings.key_backend == "pkcs11":
        from crypto.backends.pkcs11 import Pkcs11Config, Pkcs11RootKey

        assert settings.pkcs11_pin is not None  # Settings refuses pkcs11 without a PIN
        return Pkcs11RootKey(
            Pkcs11Config(
                module_path=settings.pkcs11_module,
                token_label=settings.pkcs11_token_label,
                user_pin=settings.pkcs11_pin,
                key_label=settings.pkcs11_key_label,
            )
        )
    return crypto.LocalRootKey.create_or_load(
        settings.keys_dir / "root.key", settings.root_key_passphrase
    )


def initialise(platform: Platform) -> dict[str, dict[str, Any]] | None:
    """Migrate, clean what a crash left in the object store, seed demo orgs on first start.

    Run once per process before serving. Returns new demo credentials, if seeded.
    """
    upgrade_database(platform.engine)
    # Jobs a crash interrupted are failed (with a reason), never left running.
    exchange.computations.recover(platform.compute)
    with platform.session() as session:
        known = session.scalars(select(exchange.Dataset.id)).all()
    platform.catalog.objects.sweep(known)
    # The signing keys are created here, not on the first request.
    with platform.session() as session, session.begin():
        platform.keystore.signing_key(
            session, purpose=crypto.KeyPurpose.TOKEN_SIGNING, now=platform.now()
        )
        platform.keystore.signer(
            session, purpose=crypto.KeyPurpose.LEDGER_SIGNING, now=platform.now()
        )
    # The active policy bundle (the built-in one, recorded as revision 1 on first start).
    now = platform.now()

    def load(policy: policies.ActivePolicy) -> None:
        platform.pdp = policies.decision_point(policy, opa_url=platform.settings.opa_url)

    activate_policy(
        platform.session,
        platform.trail,
        audit.Subject("platform", None, None, None, None),
        lambda session, previous: policies.install_default(session, now=now),
        load=load,
        now=now,
        detail="built-in bundle installed on first start",
    )
    # A first (possibly empty) block, so a checkpoint exists from the first request.
    platform.sealer.seal_now()
    if not platform.settings.seed_demo:
        return None
    with platform.session() as session, session.begin():
        creds = exchange.seed_demo(
            session, now=platform.now(), trail=platform.trail, keystore=platform.keystore
        )
    platform.sealer.seal_now()
    if creds is not None:
        write_private_json(platform.settings.credentials_file, creds)
    return creds


def write_private_json(path: Path, data: Any) -> None:
    """Write JSON readable by the owner only (mode 0600 from creation, never wider)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
    os.replace(tmp, path)

"""Composition root: builds the engine, stores, key store and services from settings."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

import audit
import crypto
import exchange
import exchange.computations
import exchange.errors
import exchange.hygiene
import exchange.identity
import ledger.models
import migrations
import policies
from crypto.backends import RootKeyBackend
from crypto.kms import KeyManager
from exchange.budgets import BudgetLimits
from exchange.policy_activation import activate_policy
from exchange.quotas import Quotas
from gateway import compliance_root, jobs_root
from gateway.compliance_root import ComplianceServices
from gateway.decision_logs import DecisionLogWriter, dropped_alert
from gateway.ledger_signer import ledger_signer_for
from gateway.publishing import LedgerPublishing
from gateway.settings import Settings
from ledger import KmsLedgerSigner, Ledger, LedgerConfig, Sealer
from sandbox.nodes import NodeRegistry
from sandbox.operators import UsageLimits
from sandbox.outbound import OutboundPolicy

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

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

        guard = _SqliteFileGuard(engine.url.database)

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            guard.check()
            # Write transactions (PlatformSession.begin) take the write lock up front and
            # wait for it (timeout above); a deferred one that read first would fail
            # with "database is locked" once another writer (the sealer) committed.
            immediate = conn.get_execution_options().get(WRITE_OPTION)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class _SqliteFileGuard:
    """Notices a SQLite database file deleted or replaced under a running process.

    Open connections keep writing to an unlinked file, so without this a deleted
    database goes unnoticed and writes are acknowledged into nothing. The file's
    (device, inode) is taken at the first transaction; every transaction checks it.
    """

    def __init__(self, database: str | None) -> None:
        self._path = database if database and database != ":memory:" else None
        self._seen: tuple[int, int] | None = None

    def check(self) -> None:
        if self._path is None:
            return
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            if self._seen is None:
                return  # created by this very connection
            raise exchange.errors.StoreUnavailable(
                "the database file was deleted while the platform was running"
            ) from None
        current = (st.st_dev, st.st_ino)
        if self._seen is None:
            self._seen = current
        elif current != self._seen:
            raise exchange.errors.StoreUnavailable(
                "the database file was replaced while the platform was running"
            )


# Alembic is imported where the schema is checked or migrated (a server's start, `pdx`'s
# migrating verbs, the readiness probe), not with this module: importing the app needs none.


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    # migrations/env.py reads the schema from here rather than importing the gateway.
    cfg.attributes["target_metadata"] = list(SCHEMA)
    return cfg


@functools.cache
def migration_scripts() -> ScriptDirectory:
    """The Alembic history of this code, read once per process.

    Alembic builds it by running every migration module, which cost about as much as
    the rest of a restart on an already-current database.
    """
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def database_heads(engine: Engine) -> tuple[str, ...] | None:
    """The revisions in the database's `alembic_version`, or None if it cannot be read."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            return tuple(sorted(rows))
    except DBAPIError:  # no such table yet (a new database); the upgrade says the rest
        return None


@functools.lru_cache(maxsize=16)
def pending_migrations(current: tuple[str, ...]) -> tuple[str, ...]:
    """The heads of this code's history not applied to a database at `current`.

    Applied means the current revisions and everything they rest on, dependencies
    included (the history has branches, so the database records fewer revisions than
    there are heads). Raises Alembic's error for a revision this code does not know.
    """
    scripts = migration_scripts()
    applied = {r.revision for r in scripts.iterate_revisions(current, "base") if r is not None}
    return tuple(sorted(set(scripts.get_heads()) - applied))


def upgrade_database(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (nothing to do if it is there).

    A database already at the heads is the common start, so it is recognised with one
    query before any of Alembic's machinery runs; otherwise Alembic upgrades as usual
    (and refuses a database at a revision this code does not know).
    """
    from alembic import command
    from alembic.script.revision import RevisionError

    current = database_heads(engine)
    with contextlib.suppress(RevisionError):  # an unknown revision: Alembic refuses below
        if current is not None and not pending_migrations(current):
            return
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
    identity: exchange.StoreIdentity | None = None  # set by initialise()
    sweeper: exchange.hygiene.Sweeper | None = field(default=None, repr=False)
    # Compliance checks, retention and the decision sink (issue 16; gateway.compliance_root).
    compliance: ComplianceServices | None = field(default=None, repr=False)
    publishing: LedgerPublishing | None = field(default=None, repr=False)  # issue 19
    jobs: jobs_root.JobServices | None = field(default=None, repr=False)  # issue 13

    def session(self) -> Session:
        return self.sessions()

    def write_session(self) -> Session:
        """A session for code that commits by itself, such as KMS rotation batches.

        On SQLite every transaction in it takes the write lock up front (make_engine).
        """
        return self.sessions(bind=self.engine.execution_options(pdx_write=True))

    def now(self) -> datetime:
        return self.clock()

    def ledger_signer(self, session: Session) -> KmsLedgerSigner:
        """The ledger's signer (the KMS ledger-signing key) as of now, read in `session`."""
        return ledger_signer_for(
            platform_keystore=self.keystore, settings=self.settings, session=session, now=self.now()
        )


def build_platform(settings: Settings, *, clock: Clock = utc_now) -> Platform:
    exchange.configure_arrow_memory()
    engine = make_engine(settings.database_url)
    # Before anything is written here (the root key file, directories): refuse a home
    # and a database that are not the same store (initialise checks again, authoritatively).
    if settings.home.is_dir():
        with startup_lock(settings, engine):
            check_store(settings, engine)
    else:
        check_store(settings, engine)
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
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
    platform = Platform(
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
        DecisionLogWriter(
            sessions,
            max_pending=settings.decision_log_max_pending,
            alert=dropped_alert(trail, clock),
        ),
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
                workers=max(1, settings.job_workers), per_key=settings.quota_running_per_org
            ),
            lease_s=float(settings.job_lease_s),
            fl_round_timeout_s=float(settings.fl_round_timeout_s),
            job_dirs_base=settings.job_workdir,
            quotas=Quotas(
                queued=settings.quota_queued_per_org, running=settings.quota_running_per_org
            ),
            budget_limits=BudgetLimits(
                lineage_epsilon=settings.privacy_lineage_epsilon,
                requester_epsilon=min(
                    settings.privacy_requester_epsilon, settings.privacy_lineage_epsilon
                ),
            ),
            usage_limits=UsageLimits(
                max_output_values=settings.max_output_values,
                max_row_passes=settings.max_row_passes,
            ),
        ),
    )
    platform.sweeper = exchange.hygiene.Sweeper(
        catalog.objects,
        sessions,
        interval_s=settings.sweep_interval_s,
        grace_s=settings.sweep_grace_s,
    )
    # Issue 16: the checks get their facts from here (audit imports no exchange).
    platform.compliance = compliance_root.build(platform)
    platform.publishing = LedgerPublishing(platform)
    platform.jobs = jobs_root.build(platform)
    return platform


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


@contextlib.contextmanager
def startup_lock(settings: Settings, engine: Engine) -> Iterator[None]:
    """Serialise migrations and first-start seeding between processes starting at once.

    PostgreSQL: a session advisory lock, held on a connection of its own, so gateways
    on several machines wait for each other. SQLite: an exclusive `flock` on a file in
    `$PDX_HOME` (the database is a file there too).
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": STARTUP_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": STARTUP_LOCK_KEY})
                conn.commit()
        return
    fd = os.open(settings.home / ".startup.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# pg_advisory_lock key: the first 8 bytes of SHA-256("pdx:startup"), as a signed bigint.
STARTUP_LOCK_KEY = int.from_bytes(hashlib.sha256(b"pdx:startup").digest()[:8], "big", signed=True)


def check_store(settings: Settings, engine: Engine) -> exchange.identity.Start:
    """Compare `$PDX_HOME` with the database without writing to either (exchange.identity)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database and database != ":memory:" and not Path(database).exists():
        # Connecting would create the file: an absent SQLite database is an empty one.
        state = exchange.identity.DatabaseState(None, migrated=False, blank=True)
    else:
        try:
            with engine.connect() as conn:
                state = exchange.identity.database_state(conn)
        except DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                raise  # unreachable, not corrupt: the caller sees the driver's error
            reason = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
            raise exchange.StoreMismatch(
                f"the database cannot be read ({reason}): it is corrupted; restore it "
                "from a backup (pdx backup restore); refusing to start"
            ) from None
    return exchange.identity.compare(
        home=settings.home,
        file=exchange.identity.read_file(settings.home),
        db=state,
        home_has_objects=exchange.ObjectStore.present(settings.objects_dir),
        ledger_origin=settings.ledger_origin,
    )


def initialise(platform: Platform) -> dict[str, dict[str, Any]] | None:
    """Check the store's identity, migrate, sweep crash leftovers, seed on first start.

    Run once per process before serving, under the start-up lock so that several
    processes starting at once migrate and seed once. Raises `exchange.StoreMismatch`
    (nothing written) when `$PDX_HOME` and the database are not the same store.
    Returns new demo credentials, if seeded.
    """
    with startup_lock(platform.settings, platform.engine):
        return _initialise(platform)


def _initialise(platform: Platform) -> dict[str, dict[str, Any]] | None:
    start = check_store(platform.settings, platform.engine)
    upgrade_database(platform.engine)
    # Jobs whose run's lease lapsed run again; a dead worker's job files are removed.
    jobs_root.recover_at_startup(platform)
    problem = platform.catalog.objects.problem()
    if problem is not None:
        # Reported by /readyz; uploads fail cleanly meanwhile. Not a reason to crash.
        log.error("object store %s: %s", platform.settings.objects_dir, problem)
    else:
        exchange.hygiene.sweep_orphans(
            platform.catalog.objects, platform.session, grace_s=platform.settings.sweep_grace_s
        )
    # The signing keys are created here, not on the first request.
    with platform.session() as session, session.begin():
        platform.keystore.signing_key(
            session, purpose=crypto.KeyPurpose.TOKEN_SIGNING, now=platform.now()
        )
        ledger_key = platform.ledger_signer(session).verifier_key()
    platform.identity = _establish_identity(
        platform, start, exchange.identity.key_fingerprint(ledger_key)
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


def _establish_identity(
    platform: Platform, start: exchange.identity.Start, fingerprint: str
) -> exchange.StoreIdentity:
    """Record the store identity on a new store; return the one both sides hold."""
    home = platform.settings.home
    Start = exchange.identity.Start
    if start is Start.MATCH:
        identity = exchange.identity.read_file(home)
        assert identity is not None
        return identity
    if start is Start.RESUME:
        # A first start stopped after writing the file: the row is missing, and the
        # ledger key the file names must be this database's, or the database is another.
        identity = exchange.identity.read_file(home)
        assert identity is not None
        if identity.ledger_key_fingerprint != fingerprint:
            raise exchange.StoreMismatch(
                f"{home} belongs to store {identity.store_id} whose ledger key is not this "
                "database's: the database was replaced; refusing to start"
            )
    else:
        identity = exchange.identity.new_identity(
            ledger_origin=platform.settings.ledger_origin, fingerprint=fingerprint
        )
        if start is Start.ADOPT:
            log.warning("recording store identity %s on an existing store", identity.store_id)
        # The file first: a crash before the row commits is then recognised (RESUME).
        exchange.identity.write_file(home, identity)
    with platform.session() as session, session.begin():
        exchange.identity.write_row(session, identity, now=platform.now())
    return identity


def write_private_json(path: Path, data: Any) -> None:
    """Write JSON readable by the owner only (mode 0600 from creation, never wider)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
    os.replace(tmp, path)

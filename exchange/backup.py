"""Backup and restore of a whole store: one database snapshot, the objects, a signed manifest.

A backup directory holds:

- `database/<table>.jsonl`: every row of every table, read in ONE snapshot transaction
  (REPEATABLE READ on PostgreSQL; a read transaction on SQLite in WAL mode). Keys are
  in it only in their wrapped forms (the KMS tables); the root key (a file under
  `$PDX_HOME/keys` or an HSM key) is never copied and must be backed up separately.
- `objects/<id>.pdxs`: the encrypted objects of the datasets in that snapshot (objects
  are published before their row commits, so every row's object exists).
- `ledger/`: a `pdx ledger export` of the same snapshot, verifiable offline.
- `manifest.json`: the SHA-256 of every file, the store identity and the tree size;
  `manifest.sig`: a signed note over the manifest's digest by the ledger key.

A restore goes into an empty database and home only, and never below a tree size the
platform already published (a checkpoint a witness or auditor holds): restoring an
older ledger and appending to it would fork the log.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Integer, MetaData, Table, inspect, select, text
from sqlalchemy.orm import Session
from sqlalchemy.schema import sort_tables

import audit.verify
import ledger
from exchange import identity
from exchange.errors import BackupError, RestoreRefused
from exchange.models import Dataset

FORMAT = "pdx-backup/1"
_SIG_PREFIX = "pdx-backup/1 manifest sha256:"
_BATCH = 1000


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    store_id: str
    tree_size: int
    tables: int
    rows: int
    objects: int


class Signer:
    """What a backup needs from the ledger key: a signed-note signer and its verifier key."""

    def __init__(self, note_signer: ledger.NoteSigner, verifier_key: str) -> None:
        self.note_signer = note_signer
        self.verifier_key = verifier_key


# -- row encoding: JSON with tagged values for what JSON lacks --------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, dict | list):
        return {"$j": value}
    return value


def _decode(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    ((tag, raw),) = value.items()
    if tag == "$b":
        return base64.b64decode(raw)
    if tag == "$dt":
        parsed = datetime.fromisoformat(raw)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if tag == "$d":
        return date.fromisoformat(raw)
    if tag == "$dec":
        return Decimal(raw)
    if tag == "$j":
        return raw
    raise BackupError(f"unknown value tag {tag!r} in a table file")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tables(schema: Sequence[MetaData]) -> list[Table]:
    """Every table of the schema, parents before children (foreign keys)."""
    return list(sort_tables([t for m in schema for t in m.sorted_tables]))


def _snapshot(engine: Engine) -> Connection:
    """A connection whose next transaction reads one consistent snapshot."""
    if engine.dialect.name == "postgresql":
        return engine.connect().execution_options(isolation_level="REPEATABLE READ")
    return engine.connect()


# -- create -----------------------------------------------------------------------------


def create_backup(
    *,
    engine: Engine,
    schema: Sequence[MetaData],
    objects_dir: Path,
    log: ledger.Ledger,
    signer: Signer,
    out: Path,
    now: datetime,
) -> BackupSummary:
    """Write a backup of the store to `out` (created; must not exist or be empty)."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty")
    (out / "database").mkdir(parents=True, exist_ok=True)
    (out / "objects").mkdir()
    rows_total = 0
    tables = _tables(schema)
    with _snapshot(engine) as conn, conn.begin():
        present = set(inspect(conn).get_table_names())
        for table in tables:
            if table.name not in present:
                continue
            with open(out / "database" / f"{table.name}.jsonl", "w", encoding="utf-8") as f:
                result = conn.execution_options(yield_per=_BATCH).execute(select(table))
                for row in result.mappings():
                    doc = {k: _encode(v) for k, v in row.items()}
                    f.write(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n")
                    rows_total += 1
        with Session(bind=conn) as session:
            store = identity.read_row(session)
            if store is None:
                raise BackupError("the database has no store identity: initialise it first")
            latest = log.latest(session)
            tree_size = latest.block.tree_size if latest is not None else 0
            root = latest.block.root if latest is not None else b""
            ledger.export(session, log, out / "ledger")
            dataset_ids = list(
                session.scalars(select(Dataset.id).where(Dataset.custody == "platform"))
            )
    copied = 0
    for object_id in dataset_ids:
        source = objects_dir / f"{object_id}.pdxs"
        shutil.copyfile(source, out / "objects" / source.name)
        copied += 1
    files = {str(p.relative_to(out)): _sha256(p) for p in sorted(out.rglob("*")) if p.is_file()}
    manifest = {
        "format": FORMAT,
        "created_at": now.isoformat(),
        "store_id": store.store_id,
        "ledger_origin": store.ledger_origin,
        "ledger_key_fingerprint": store.ledger_key_fingerprint,
        "verifier_key": signer.verifier_key,
        "tree_size": tree_size,
        "root": base64.b64encode(root).decode(),
        "database": engine.dialect.name,
        "keys": "wrapped forms only (KMS tables); the root key is not in this backup",
        "files": files,
    }
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    (out / "manifest.json").write_bytes(raw)
    note = ledger.sign_note(f"{_SIG_PREFIX}{hashlib.sha256(raw).hexdigest()}\n", signer.note_signer)
    (out / "manifest.sig").write_bytes(note)
    return BackupSummary(
        out, store.store_id, tree_size, len(present & {t.name for t in tables}), rows_total, copied
    )


# -- verify -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedBackup:
    manifest: dict[str, Any]
    ledger_report: audit.verify.VerifyReport

    @property
    def tree_size(self) -> int:
        return int(self.manifest["tree_size"])


def verify_backup(path: Path, *, trusted_keys: Sequence[str] = ()) -> VerifiedBackup:
    """Check a backup, in order; the first failing step raises `BackupError`.

    (1) the manifest's signature, (2) every file's digest and no extra file, (3) the
    ledger export verifies and ends at the manifest's tree size and root.

    With `trusted_keys` the signature must come from one of them; without, from the key
    the manifest names (integrity, not authenticity: pin the key for the latter).
    """
    # 1. The signature over the manifest's digest.
    try:
        raw = (path / "manifest.json").read_bytes()
        note = (path / "manifest.sig").read_bytes()
        manifest = json.loads(raw)
        key = str(manifest["verifier_key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"unreadable manifest: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"not a {FORMAT} backup")
    keys = list(trusted_keys) or [key]
    try:
        verifiers = [ledger.parse_verifier_key(k.strip()) for k in keys]
        text_, _ = ledger.open_note(note, verifiers)
    except ledger.LedgerError as exc:
        raise BackupError(f"manifest signature does not verify: {exc.detail}") from None
    if text_ != f"{_SIG_PREFIX}{hashlib.sha256(raw).hexdigest()}\n":
        raise BackupError("manifest signature does not cover this manifest")
    # 2. Every file listed, with its digest; nothing unlisted.
    listed: dict[str, str] = manifest["files"]
    found = {
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.is_file() and str(p.relative_to(path)) not in ("manifest.json", "manifest.sig")
    }
    if found != set(listed):
        extra, missing = sorted(found - set(listed)), sorted(set(listed) - found)
        raise BackupError(
            f"backup files differ from the manifest: extra {extra}, missing {missing}"
        )
    for name, digest in listed.items():
        if _sha256(path / name) != digest:
            raise BackupError(f"{name} does not match its digest in the manifest")
    # 3. The ledger verifies on its own, up to the tree size the manifest claims.
    try:
        report = audit.verify.verify_export(path / "ledger", [*keys])
    except Exception as exc:  # noqa: BLE001 - any failure to verify refuses the backup
        raise BackupError(f"the ledger in the backup does not verify: {exc}") from None
    if not report.ok:
        raise BackupError(f"the ledger in the backup does not verify: {report.problem}")
    if report.tree_size != manifest["tree_size"] or (
        report.tree_size and base64.b64encode(report.root).decode() != manifest["root"]
    ):
        raise BackupError("the ledger in the backup does not end at the manifest's checkpoint")
    return VerifiedBackup(manifest, report)


# -- the published high-water mark ------------------------------------------------------

_published_lock = threading.Lock()
_published_seen: dict[Path, int] = {}


def published_tree_size(path: Path) -> int:
    """The largest tree size recorded as published (0 when nothing was recorded)."""
    try:
        return int(json.loads(path.read_text())["tree_size"])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{path} is unreadable: {exc}") from None


def record_published(path: Path, tree_size: int) -> None:
    """Raise the high-water mark of published checkpoints to `tree_size` (never lower).

    Kept outside the backup set (default `$PDX_HOME/published.json`, or
    PDX_PUBLISHED_FILE): a restore reads it to refuse forking the log. Every worker
    process of the server raises it, so the read-compare-write holds an exclusive
    `flock` on `<name>.lock` beside it, and each writer renames its own temporary file:
    a shared name let one process's rename find the file gone, and a slower writer put
    back a smaller size.
    """
    with _published_lock:
        if _published_seen.get(path, -1) >= tree_size:
            return
        with _exclusive(path.with_suffix(".lock")):
            current = published_tree_size(path)
            if tree_size > current:
                _replace_durably(path, json.dumps({"tree_size": tree_size}) + "\n")
        _published_seen[path] = max(tree_size, current)


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _replace_durably(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- restore ----------------------------------------------------------------------------


def restore_backup(
    path: Path,
    *,
    engine: Engine,
    schema: Sequence[MetaData],
    home: Path,
    objects_dir: Path,
    migrate: Callable[[], None],
    published: Path | None,
    trusted_keys: Sequence[str] = (),
) -> VerifiedBackup:
    """Restore a verified backup into an EMPTY database and home.

    Refuses (`RestoreRefused`) a target that holds a store, and a backup whose tree
    size is below the published high-water mark in `published`. The root key must
    already be in place (the same `$PDX_HOME/keys/root.key` or HSM key).
    """
    verified = verify_backup(path, trusted_keys=trusted_keys)
    if published is not None:
        mark = published_tree_size(published)
        if verified.tree_size < mark:
            raise RestoreRefused(
                f"the backup's ledger has {verified.tree_size} entries but a checkpoint of "
                f"tree size {mark} was already published: restoring it would fork the log"
            )
    with engine.connect() as conn:
        state = identity.database_state(conn)
    if state.identity is not None or not state.blank:
        raise RestoreRefused("the target database is not empty; restore into an empty one")
    if identity.read_file(home) is not None or _has_objects(objects_dir):
        raise RestoreRefused(f"{home} already holds a store; restore into an empty home")
    migrate()
    _load_tables(engine, schema, path / "database")
    objects_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for source in sorted((path / "objects").iterdir()):
        shutil.copyfile(source, objects_dir / source.name)
    m = verified.manifest
    identity.write_file(
        home,
        identity.StoreIdentity(m["store_id"], m["ledger_origin"], m["ledger_key_fingerprint"]),
    )
    return verified


def _has_objects(objects_dir: Path) -> bool:
    try:
        return any(p.suffix == ".pdxs" for p in objects_dir.iterdir())
    except FileNotFoundError:
        return False


def _rows(file: Path) -> Iterator[dict[str, Any]]:
    with open(file, encoding="utf-8") as f:
        for line in f:
            yield {k: _decode(v) for k, v in json.loads(line).items()}


def _batches(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _load_tables(engine: Engine, schema: Sequence[MetaData], directory: Path) -> None:
    """Insert every table's rows in one transaction, parents first."""
    with engine.begin() as conn:
        # Rows the migrations wrote themselves (none today) would collide: start empty.
        for table in reversed(_tables(schema)):
            conn.execute(table.delete())
        for table in _tables(schema):
            file = directory / f"{table.name}.jsonl"
            if not file.exists():
                continue
            for batch in _batches(_rows(file)):
                conn.execute(table.insert(), batch)
        if engine.dialect.name == "postgresql":
            _advance_sequences(conn, _tables(schema))


def _advance_sequences(conn: Connection, tables: Iterable[Table]) -> None:
    """Serial primary keys continue after the restored rows (PostgreSQL sequences)."""
    for table in tables:
        for column in table.primary_key.columns:
            if isinstance(column.type, Integer) and not column.foreign_keys:
                seq = conn.execute(
                    text("SELECT pg_get_serial_sequence(:t, :c)"),
                    {"t": table.name, "c": column.name},
                ).scalar()
                if seq:
                    top = f'COALESCE((SELECT max("{column.name}") FROM "{table.name}"), 0)'
                    conn.execute(text(f"SELECT setval(:s, {top} + 1, false)"), {"s": seq})

"""`pdx backup create|verify|restore`: the whole store in one consistent snapshot."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli._common import CliError, text_arg
from gateway.settings import Settings

if TYPE_CHECKING:
    pass


def _backup(args: argparse.Namespace) -> int:
    """`pdx backup create|verify|restore` (exchange/backup.py)."""
    from exchange.backup import restore_backup, verify_backup
    from exchange.errors import BackupError

    keys = [text_arg(k) for k in args.pubkey or ()]
    try:
        if args.backup_command == "verify":
            verified = verify_backup(Path(args.directory), trusted_keys=keys)
            print(
                f"pdx: backup verified: store {verified.manifest['store_id']}, tree size "
                f"{verified.tree_size}, {len(verified.manifest['files'])} files"
            )
            return 0
        settings = Settings.from_env()
        if args.backup_command == "create":
            return _backup_create(settings, Path(args.out))
        from gateway.platform import SCHEMA, make_engine, startup_lock, upgrade_database

        if settings.key_backend == "local" and not (settings.keys_dir / "root.key").exists():
            raise CliError(
                f"put the store's root key at {settings.keys_dir / 'root.key'} first: "
                "backups never contain it"
            )
        published = Path(args.published) if args.published else settings.published_path
        engine = make_engine(settings.database_url)
        try:
            with startup_lock(settings, engine):
                verified = restore_backup(
                    Path(args.directory),
                    engine=engine,
                    schema=SCHEMA,
                    home=settings.home,
                    objects_dir=settings.objects_dir,
                    migrate=lambda: upgrade_database(engine),
                    published=published,
                    trusted_keys=keys,
                )
        finally:
            engine.dispose()
    except BackupError as exc:
        raise CliError(exc.detail) from None
    print(
        f"pdx: restored store {verified.manifest['store_id']} at tree size "
        f"{verified.tree_size} into {settings.home}"
    )
    return 0


def _backup_create(settings: Settings, out: Path) -> int:
    import audit
    from exchange.backup import Signer, create_backup
    from exchange.backup_record import check_location, record_backup
    from gateway.platform import SCHEMA, build_platform, initialise

    out = check_location(out)
    platform = build_platform(settings)
    try:
        initialise(platform)
        platform.sealer.seal_now()
        with platform.session() as session, session.begin():
            signer = platform.ledger_signer(session)
        summary = create_backup(
            engine=platform.engine,
            schema=SCHEMA,
            objects_dir=settings.objects_dir,
            log=platform.ledger,
            signer=Signer(signer.note_signer, signer.verifier_key()),
            out=out,
            now=platform.now(),
        )
        # AUD-06: the trail says where the newest backup is; compliance verifies it there.
        by = audit.Subject(f"cli:{os.environ.get('USER', 'operator')}", None, None, None, None)
        with platform.session() as session, session.begin():
            record_backup(
                session, platform.trail, by, summary, signer.verifier_key(), now=platform.now()
            )
    finally:
        platform.engine.dispose()
    print(
        f"pdx: backup of store {summary.store_id} in {out}: {summary.rows} rows, "
        f"{summary.objects} objects, tree size {summary.tree_size} "
        "(the root key is not in it: back it up separately)"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The backup verbs."""
    backup = sub.add_parser("backup", help="backup and restore of the whole store").add_subparsers(
        dest="backup_command", required=True
    )
    bcreate = backup.add_parser("create", help="database snapshot, objects, signed manifest")
    bcreate.add_argument("--out", required=True, help="directory to create (must be empty)")
    bcreate.set_defaults(func=_backup, pubkey=None)
    bverify = backup.add_parser("verify", help="check the manifest, digests and the ledger")
    bverify.add_argument("directory")
    bverify.add_argument("--pubkey", action="append", help="trusted ledger verifier key")
    bverify.set_defaults(func=_backup)
    brestore = backup.add_parser("restore", help="restore into an empty home and database")
    brestore.add_argument("directory")
    brestore.add_argument("--pubkey", action="append", help="trusted ledger verifier key")
    brestore.add_argument(
        "--published",
        help="published-checkpoint high-water mark (default PDX_PUBLISHED_FILE or "
        "$PDX_HOME/published.json): a backup below it is refused",
    )
    brestore.set_defaults(func=_backup)

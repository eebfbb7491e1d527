"""`pdx kms` and `pdx ca`: key management and the platform CA on this host."""

from __future__ import annotations

import argparse
import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli._common import CliError, migrated_platform, text_arg
from gateway.settings import Settings

if TYPE_CHECKING:
    pass


def _kms(args: argparse.Namespace) -> int:
    """Key administration on this host (the operator holds the key-administrator role)."""
    import getpass
    import json

    from crypto.backup import create_recovery_key, export_backup, restore_backup, share_to_text
    from crypto.errors import CryptoError
    from crypto.roles import KeyActor, KeyRole

    settings = Settings.from_env()
    if args.kms_command == "seal-root-key":
        import crypto

        passphrase = os.environ.get("PDX_ROOT_KEY_PASSPHRASE")
        if not passphrase:
            raise CliError("set PDX_ROOT_KEY_PASSPHRASE to the new passphrase")
        try:
            crypto.LocalRootKey.seal_file(
                settings.keys_dir / "root.key",
                passphrase,
                old_passphrase=os.environ.get("PDX_OLD_ROOT_KEY_PASSPHRASE") or None,
            )
        except CryptoError as exc:
            raise CliError(exc.detail) from None
        print(f"pdx: sealed {settings.keys_dir / 'root.key'} under the passphrase")
        return 0
    if args.kms_command == "recovery-init":
        kit = create_recovery_key(threshold=args.threshold, shares=args.shares)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "recovery.pub").write_text(base64.b64encode(kit.public_key).decode() + "\n")
        for i, share in enumerate(kit.shares, 1):
            path = out / f"share-{i}.txt"
            path.write_text(share_to_text(share) + "\n")
            path.chmod(0o600)
        print(f"pdx: recovery key {args.threshold}-of-{args.shares}: give each custodian one")
        print(f"     share file from {out} and delete it here; recovery.pub stays")
        return 0
    platform = migrated_platform(settings)
    by = KeyActor(id=f"cli:{getpass.getuser()}", roles=frozenset({KeyRole.KEY_ADMINISTRATOR}))
    now = platform.now()
    try:
        if args.kms_command == "inventory":
            with platform.session() as session:
                keys = [k.to_public() for k in platform.kms.inventory(session, by=by)]
            print(json.dumps(keys, indent=2))
        elif args.kms_command == "rotate-due":
            with platform.session() as session:
                due = platform.kms.due_for_rotation(session, now=now, by=by)
            for item in due:
                print(f"{item.key_id} v{item.version} {item.purpose}: {item.reason}")
            print(f"pdx: {len(due)} key(s) due")
        elif args.kms_command == "rotate":
            with platform.write_session() as session:
                progress = platform.kms.rotate(session, args.key, by=by, now=now)
            print(
                f"pdx: {args.key} now at version {progress.version}; "
                f"{progress.rewrapped} data keys re-wrapped, {progress.remaining} left"
            )
        elif args.kms_command == "backup":
            public = base64.b64decode(text_arg(args.recovery_public_key).strip())
            with platform.session() as session, session.begin():
                blob = export_backup(
                    platform.keystore, session, recovery_public_key=public, by=by, now=now
                )
            Path(args.out).write_bytes(blob)
            print(f"pdx: wrote key backup to {args.out} (sealed to the recovery key)")
        elif args.kms_command == "restore":
            shares = [text_arg(s).strip() for s in args.share]
            with platform.session() as session, session.begin():
                report = restore_backup(
                    platform.keystore,
                    session,
                    Path(args.backup).read_bytes(),
                    shares=shares,
                    by=by,
                    now=now,
                )
            print(f"pdx: restored {report}")
    except CryptoError as exc:
        raise CliError(exc.detail) from None
    except OSError as exc:
        raise CliError(f"{exc.filename}: {exc.strerror}") from None
    platform.sealer.seal_now()
    return 0


def _ca_issue(args: argparse.Namespace) -> int:
    """Issue a client certificate for a registered client (RFC 8705 binding under mTLS)."""
    import audit
    import exchange
    from crypto.ca import CertificateAuthority
    from crypto.errors import CertificateError

    platform = migrated_platform()
    with platform.session() as session, session.begin():
        client = session.get(exchange.Client, args.client)
        if client is None or not client.active:
            raise CliError(f"no active client {args.client}")
        if args.org and args.org != client.org_id:
            raise CliError(f"client {args.client} belongs to another organisation")
        try:
            ca = CertificateAuthority.create_or_load(
                platform.settings.tls_dir / "ca", now=platform.now()
            )
            issued = ca.issue_client(client.org_id, client.id, days=args.days)
            issued.write(Path(args.out), client.id, ca_pem=ca.cert_pem)
        except CertificateError as exc:
            raise CliError(exc.detail) from None
        platform.trail.record(
            session,
            audit.Subject(f"cli:{os.environ.get('USER', 'operator')}", None, None, None, None),
            audit.AuditEvent(
                audit.Event.CERTIFICATE_ISSUED,
                "issue",
                audit.Result.SUCCESS,
                object_id=client.id,
                detail=f"x5t#S256={issued.fingerprint_s256} not_after={issued.not_after}",
            ),
            object_type="certificate",
            now=platform.now(),
        )
    platform.sealer.seal_now()
    print(f"pdx: issued a client certificate for {client.id} into {args.out}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The key-management and certificate verbs."""
    kms = sub.add_parser("kms", help="key management on this host").add_subparsers(
        dest="kms_command", required=True
    )
    kms.add_parser("inventory", help="every key version as JSON").set_defaults(func=_kms)
    kms.add_parser("rotate-due", help="keys the rotation policy says are due").set_defaults(
        func=_kms
    )
    rot = kms.add_parser("rotate", help="new version; re-wrap data keys (resumable)")
    rot.add_argument("--key", required=True)
    rot.set_defaults(func=_kms)
    rec = kms.add_parser("recovery-init", help="recovery key pair split k-of-n (Shamir)")
    rec.add_argument("--threshold", type=int, default=3)
    rec.add_argument("--shares", type=int, default=5)
    rec.add_argument("--out", required=True)
    rec.set_defaults(func=_kms)
    bak = kms.add_parser("backup", help="export key material sealed to the recovery key")
    bak.add_argument("--recovery-public-key", required=True, help="recovery.pub (or its text)")
    bak.add_argument("--out", required=True)
    bak.set_defaults(func=_kms)
    res = kms.add_parser("restore", help="restore a backup with k custodian shares")
    res.add_argument("--backup", required=True)
    res.add_argument("--share", action="append", required=True, help="share line or file")
    res.set_defaults(func=_kms)
    kms.add_parser(
        "seal-root-key", help="seal the local root key under PDX_ROOT_KEY_PASSPHRASE"
    ).set_defaults(func=_kms)

    ca = sub.add_parser("ca", help="the platform's certificate authority").add_subparsers(
        dest="ca_command", required=True
    )
    issue = ca.add_parser("issue", help="issue a client certificate for mutual TLS")
    issue.add_argument("--client", required=True, help="client id")
    issue.add_argument("--org", help="organisation id (checked against the client)")
    issue.add_argument("--out", required=True, help="directory for <client>.pem and key")
    issue.add_argument("--days", type=int, default=90)
    issue.set_defaults(func=_ca_issue)

"""The `pdx` command: run the platform, initialise it, drive the demo, run benchmarks."""

from __future__ import annotations

import argparse
import base64
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.settings import Settings, SettingsError

if TYPE_CHECKING:
    from audit.verify import VerifyReport


class CliError(Exception):
    """A failure to report as one line on stderr with a non-zero exit."""


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.platform import build_platform, initialise

    settings = Settings.from_env()
    host = args.host or settings.host
    port = args.port or settings.port
    platform = build_platform(settings)
    creds = initialise(platform)
    if creds is not None:
        print(f"pdx: seeded demo organisations; credentials in {settings.credentials_file}")
    from gateway.mtls import uvicorn_ssl_kwargs

    ssl_kw = uvicorn_ssl_kwargs(settings, hostnames=[host])
    scheme = "https (mutual TLS)" if ssl_kw else "http"
    print(f"pdx: serving {scheme} on {host}:{port} (docs at /docs), data in {settings.home}")
    # proxy_headers=False: uvicorn would trust X-Forwarded-For from 127.0.0.1; the app's
    # ClientAddress middleware honours it only from PDX_TRUSTED_PROXIES (gateway/limits.py).
    uvicorn.run(
        create_app(platform),
        host=host,
        port=port,
        log_level=args.log_level,
        proxy_headers=False,
        **ssl_kw,
    )
    return 0


def _init(args: argparse.Namespace) -> int:
    from gateway.platform import build_platform, initialise

    settings = Settings.from_env()
    creds = initialise(build_platform(settings))
    where = f"; demo credentials in {settings.credentials_file}" if creds else ""
    print(f"pdx: initialised {settings.home}{where}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import DemoError, run_demo

    settings = Settings.from_env()
    try:
        run_demo(
            url=args.url or settings.url,
            credentials=args.credentials or settings.credentials_file,
            csv_path=args.csv,
            with_computations=not args.no_computations,
        )
    except DemoError as exc:
        raise CliError(str(exc)) from None
    return 0


def _ledger_export(args: argparse.Namespace) -> int:
    from gateway.platform import build_platform, upgrade_database
    from ledger import LedgerError, export

    platform = build_platform(Settings.from_env())
    upgrade_database(platform.engine)
    platform.sealer.seal_now()  # the unsealed tail has no signature yet: seal it first
    try:
        with platform.session() as session:
            summary = export(session, platform.ledger, Path(args.out))
    except LedgerError as exc:
        raise CliError(exc.detail) from None
    print(f"pdx: exported {summary.entries} entries in {summary.blocks} blocks to {args.out}")
    return 0


def _ledger_key(args: argparse.Namespace) -> int:
    from gateway.platform import build_platform, ledger_signer_for, upgrade_database

    settings = Settings.from_env()
    platform = build_platform(settings)
    upgrade_database(platform.engine)
    with platform.session() as session, session.begin():
        signer = ledger_signer_for(
            platform_keystore=platform.keystore,
            settings=settings,
            session=session,
            now=platform.now(),
        )
    print(signer.verifier_key())
    return 0


def _text_arg(value: str) -> str:
    """A literal value, or the contents of the file it names (verifier keys, notes)."""
    path = Path(value)
    if path.is_file():
        return path.read_text()
    return value


def _audit_verify(args: argparse.Namespace) -> int:
    from audit.errors import AuditError
    from audit.verify import verify_export

    keys = [_text_arg(k) for k in args.pubkey]
    report: VerifyReport
    try:
        if args.url:
            report = _monitor(args, keys)
        elif args.directory:
            trusted = [_text_arg(t) for t in args.trusted or ()]
            report = verify_export(Path(args.directory), keys, trusted=trusted)
        else:
            raise CliError("give an export directory or --url")
    except AuditError as exc:
        raise CliError(exc.detail) from None
    if not report.ok:
        print(f"pdx: verification FAILED: {report.problem}", file=sys.stderr)
        return 1
    print(
        f"pdx: verified {report.entries} entries, {report.blocks} blocks, "
        f"{report.checkpoints} checkpoints; tree size {report.tree_size}, "
        f"root {base64.b64encode(report.root).decode()}"
    )
    return 0


def _monitor(args: argparse.Namespace, keys: list[str]) -> VerifyReport:
    import httpx

    from audit.monitor import monitor

    client_id = args.client_id or os.environ.get("PDX_CLIENT_ID")
    secret = os.environ.get("PDX_CLIENT_SECRET")
    if not client_id or not secret:
        raise CliError("set --client-id (or PDX_CLIENT_ID) and PDX_CLIENT_SECRET for --url")
    state = Path(args.state) if args.state else Path(".pdx-monitor") / "state.json"
    with httpx.Client(base_url=args.url, timeout=30) as client:
        try:
            r = client.post(
                "/v1/auth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                },
            )
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {args.url}: {exc}") from None
        if r.status_code != 200:
            raise CliError(f"token request refused ({r.status_code})")
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        return monitor(client, keys, state)


def _kms(args: argparse.Namespace) -> int:
    """Key administration on this host (the operator holds the key-administrator role)."""
    import getpass
    import json

    from crypto.backup import create_recovery_key, export_backup, restore_backup, share_to_text
    from crypto.errors import CryptoError
    from crypto.roles import KeyActor, KeyRole
    from gateway.platform import build_platform, upgrade_database

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
    platform = build_platform(settings)
    upgrade_database(platform.engine)
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
            public = base64.b64decode(_text_arg(args.recovery_public_key).strip())
            with platform.session() as session, session.begin():
                blob = export_backup(
                    platform.keystore, session, recovery_public_key=public, by=by, now=now
                )
            Path(args.out).write_bytes(blob)
            print(f"pdx: wrote key backup to {args.out} (sealed to the recovery key)")
        elif args.kms_command == "restore":
            shares = [_text_arg(s).strip() for s in args.share]
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
    from gateway.platform import build_platform, upgrade_database

    settings = Settings.from_env()
    platform = build_platform(settings)
    upgrade_database(platform.engine)
    with platform.session() as session, session.begin():
        client = session.get(exchange.Client, args.client)
        if client is None or not client.active:
            raise CliError(f"no active client {args.client}")
        if args.org and args.org != client.org_id:
            raise CliError(f"client {args.client} belongs to another organisation")
        try:
            ca = CertificateAuthority.create_or_load(settings.tls_dir / "ca", now=platform.now())
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


def _bench(args: argparse.Namespace) -> int:
    # Benchmarks live in the source checkout (bench/ is not in the wheel) and run in a child
    # process, so the server packages never import them.
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "bench" / "__main__.py").is_file():
        raise CliError("benchmarks run from a source checkout (bench/ not found)")
    command = [sys.executable, "-m", "bench", *args.bench_args]
    return subprocess.run(command, cwd=checkout, check=False).returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdx", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="initialise if needed and serve the gateway")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--log-level", default="info")
    run.set_defaults(func=_run)

    init = sub.add_parser("init", help="migrate the database and seed demo organisations")
    init.set_defaults(func=_init)

    demo = sub.add_parser("demo", help="run the scripted scenario against a running server")
    demo.add_argument("--url", help="server URL (default: the local one from settings)")
    demo.add_argument("--credentials", help="demo credentials file")
    demo.add_argument("--csv", help="CSV to register (default: examples/transit_trips.csv)")
    demo.add_argument(
        "--no-computations", action="store_true", help="skip the three-hospital computations"
    )
    demo.set_defaults(func=_demo)

    ledger = sub.add_parser("ledger", help="the verifiable log").add_subparsers(
        dest="ledger_command", required=True
    )
    exp = ledger.add_parser("export", help="seal, then write entries, blocks, checkpoints")
    exp.add_argument("--out", required=True, help="directory to create (must be empty)")
    exp.set_defaults(func=_ledger_export)
    vkey = ledger.add_parser("verifier-key", help="print the log's signed-note verifier key")
    vkey.set_defaults(func=_ledger_key)

    audit_cmd = sub.add_parser("audit", help="auditor tools").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit_cmd.add_parser(
        "verify", help="verify an export offline, or a live server incrementally (--url)"
    )
    verify.add_argument("directory", nargs="?", help="a `pdx ledger export` directory")
    verify.add_argument(
        "--pubkey", action="append", required=True, help="trusted verifier key (or file)"
    )
    verify.add_argument(
        "--trusted", action="append", help="an earlier checkpoint note (or file) to hold it to"
    )
    verify.add_argument("--url", help="monitor a live server instead of a directory")
    verify.add_argument("--state", help="monitor state file (default .pdx-monitor/state.json)")
    verify.add_argument("--client-id", help="auditor client id for --url")
    verify.set_defaults(func=_audit_verify)

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

    bench = sub.add_parser(
        "bench",
        help="run a benchmark area from a source checkout; writes bench/results/AREA.json",
        add_help=False,
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="AREA [--quick]")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `pdx bench ...` hands everything after the verb to the checkout's bench runner.
    args = (
        argparse.Namespace(func=_bench, bench_args=argv[1:])
        if argv[:1] == ["bench"]
        else parser.parse_args(argv)
    )
    try:
        code: int = args.func(args)
    except (CliError, SettingsError) as exc:
        print(f"pdx: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

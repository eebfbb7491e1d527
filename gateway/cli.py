"""The `pdx` command: run the platform, initialise it, drive the demo, run benchmarks."""

from __future__ import annotations

import argparse
import base64
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.settings import Settings, SettingsError

if TYPE_CHECKING:
    from audit.verify import VerifyReport

BENCH_AREAS = ("ingest", "ledger", "crypto")


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
    print(f"pdx: serving on http://{host}:{port} (docs at /docs), data in {settings.home}")
    uvicorn.run(create_app(platform), host=host, port=port, log_level=args.log_level)
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
        )
    except DemoError as exc:
        raise CliError(str(exc)) from None
    return 0


def _ledger_export(args: argparse.Namespace) -> int:
    from gateway.platform import build_platform, upgrade_database
    from ledger.errors import LedgerError
    from ledger.export import export

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
    import crypto
    from gateway.platform import build_platform, upgrade_database
    from ledger.signing import Ed25519LedgerSigner

    settings = Settings.from_env()
    platform = build_platform(settings)
    upgrade_database(platform.engine)
    with platform.session() as session, session.begin():
        key = platform.keystore.signing_key(
            session, purpose=crypto.KeyPurpose.LEDGER_SIGNING, now=platform.now()
        )
    print(Ed25519LedgerSigner(settings.ledger_origin, key.private_key).verifier_key())
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


def _bench(args: argparse.Namespace) -> int:
    areas = BENCH_AREAS if args.area == "all" else (args.area,)
    for area in areas:
        module = importlib.import_module(f"bench.{area}")
        path = module.run(quick=args.quick)
        print(f"pdx: wrote {path}")
    return 0


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

    bench = sub.add_parser("bench", help="run a benchmark area; writes bench/results/AREA.json")
    bench.add_argument("area", choices=(*BENCH_AREAS, "all"))
    bench.add_argument("--quick", action="store_true", help="reduced size smoke run")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
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

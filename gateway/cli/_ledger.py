"""`pdx ledger`, `pdx audit verify` and `pdx witness`: the verifiable log and its checkers."""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli._common import CliError, migrated_platform, text_arg

if TYPE_CHECKING:
    from audit.verify import VerifyReport, WitnessPolicy


def _ledger_export(args: argparse.Namespace) -> int:
    from ledger import LedgerError, export

    platform = migrated_platform()
    platform.sealer.seal_now()  # the unsealed tail has no signature yet: seal it first
    try:
        with platform.session() as session:
            summary = export(session, platform.ledger, Path(args.out))
    except LedgerError as exc:
        raise CliError(exc.detail) from None
    from exchange.backup import record_published

    record_published(platform.settings.published_path, summary.tree_size)
    print(f"pdx: exported {summary.entries} entries in {summary.blocks} blocks to {args.out}")
    return 0


def _ledger_key(args: argparse.Namespace) -> int:
    platform = migrated_platform()
    with platform.session() as session, session.begin():
        signer = platform.ledger_signer(session)
    print(signer.verifier_key())
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from audit.errors import AuditError
    from audit.verify import verify_export

    keys = [text_arg(k) for k in args.pubkey]
    report: VerifyReport
    try:
        if args.url:
            report = _monitor(args, keys)
        elif args.directory:
            trusted = [text_arg(t) for t in args.trusted or ()]
            report = verify_export(
                Path(args.directory),
                keys,
                trusted=trusted,
                witnesses=_witness_policy(args),
                anchors=_chain_anchors(args),
            )
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
    if report.witnessed_size is not None:
        print(f"pdx: witnessed up to tree size {report.witnessed_size}")
    if args.chain:
        print(f"pdx: {report.anchors_checked} chain anchors agree")
    return 0


def _witness_policy(args: argparse.Namespace) -> WitnessPolicy | None:
    from audit.verify import WitnessPolicy

    if not args.witness:
        return None
    return WitnessPolicy.parse([text_arg(k) for k in args.witness], args.witness_quorum)


def _chain_anchors(args: argparse.Namespace) -> list[tuple[int, bytes]] | None:
    """The roots the chain at --chain anchored for the export's origin."""
    if not args.chain:
        return None
    import json

    from ledger import ChainAnchors, LedgerError
    from ledger.anchor import connect

    if not args.contract:
        raise CliError("--chain needs --contract (the anchor contract's address)")
    origin = json.loads((Path(args.directory) / "manifest.json").read_text())["origin"]
    try:
        return ChainAnchors(connect(args.chain), args.contract).anchors(origin)
    except LedgerError as exc:
        raise CliError(exc.detail) from None
    except Exception as exc:  # web3/requests errors: name them, no traceback
        raise CliError(f"cannot read anchors from {args.chain}: {exc}") from None


def _witness(args: argparse.Namespace) -> int:
    """Run a tlog-witness service with its own Ed25519 key."""
    import time

    from crypto import SignatureAlgorithm, generate_key_pair, load_key_pair
    from ledger import CosignatureV1Signer, LogConfig, Witness, WitnessState, serve_witness
    from ledger.note import parse_verifier_key

    key_path = Path(args.key)
    if key_path.exists():
        pair = load_key_pair(SignatureAlgorithm.ED25519, bytes.fromhex(key_path.read_text()))
    else:
        pair = generate_key_pair(SignatureAlgorithm.ED25519)
        key_path.parent.mkdir(parents=True, exist_ok=True)
        key_path.touch(mode=0o600)
        key_path.write_text(pair.private_bytes().hex())
    signer = CosignatureV1Signer(args.name, pair)
    logs = {}
    for text in args.log:
        verifier = parse_verifier_key(text_arg(text).strip())
        logs[verifier.name] = LogConfig(verifier.name, verifier, args.hash)
    witness = Witness(signer, logs, WitnessState(Path(args.state)), time.time)
    server = serve_witness(witness, args.host, args.port)
    print(f"pdx witness {signer.verifier().verifier_key()}", flush=True)
    print(f"pdx witness listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _monitor(args: argparse.Namespace, keys: list[str]) -> VerifyReport:
    import httpx
    from pdx_client import PdxError, Session

    from audit.monitor import monitor

    client_id = args.client_id or os.environ.get("PDX_CLIENT_ID")
    secret = os.environ.get("PDX_CLIENT_SECRET")
    if not client_id or not secret:
        raise CliError("set --client-id (or PDX_CLIENT_ID) and PDX_CLIENT_SECRET for --url")
    state = Path(args.state) if args.state else Path(".pdx-monitor") / "state.json"
    # The SDK's session keeps the token (login, renewal before expiry, a fresh login on
    # 401); the monitor reads through its own client with that token.
    with Session(args.url, client_id, secret, timeout=30) as session:
        try:
            session.login()
        except PdxError as exc:
            raise CliError(f"cannot log in at {args.url}: {exc}") from None
        with httpx.Client(base_url=args.url, timeout=30, auth=session.auth) as client:
            return monitor(client, keys, state)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ledger, audit and witness verbs."""
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
    verify.add_argument(
        "--witness", action="append", help="a witness's cosignature verifier key (or file)"
    )
    verify.add_argument(
        "--witness-quorum", type=int, help="k: cosignatures needed of the --witness keys (all)"
    )
    verify.add_argument("--chain", help="JSON-RPC URL of the chain the log is anchored on")
    verify.add_argument("--contract", help="address of the anchor contract on --chain")
    verify.set_defaults(func=_audit_verify)

    wit = sub.add_parser("witness", help="run a tlog-witness that cosigns consistent checkpoints")
    wit.add_argument("--name", required=True, help="the witness's key name, e.g. org.example/w1")
    wit.add_argument("--key", required=True, help="Ed25519 key file (hex seed; made if absent)")
    wit.add_argument("--log", action="append", required=True, help="a log's verifier key")
    wit.add_argument("--state", required=True, help="JSON file of the last cosigned trees")
    wit.add_argument("--hash", default="sha256", choices=["sha256", "sm3"])
    wit.add_argument("--host", default="127.0.0.1")
    wit.add_argument("--port", type=int, default=8710)
    wit.set_defaults(func=_witness)

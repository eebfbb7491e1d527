"""`pdx market certificate verify FILE`: check a data-asset registration certificate offline.

Registered through the `pdx.cli` entry point group (pyproject.toml), like the SDK's verbs,
which add the rest of `pdx market` (pdx_client.cli.market): whichever registers first makes
the group, and the SDK's offline `verify` stands in when it came first. (No import of the
SDK here: an older installed SDK must not break the server's command.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gateway.cli._common import CliError


def _key(value: str) -> str:
    path = Path(value)
    return path.read_text(encoding="utf-8").strip() if path.is_file() else value.strip()


def _verify(args: argparse.Namespace) -> int:
    # Imported here: every `pdx` start registers this verb, and the market imports the
    # whole exchange (about 2.5 s), which only this verb needs.
    from exchange.market.certificates import CertificateInvalid, verify_certificate

    try:
        bundle = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the certificate: {exc}") from None
    if not isinstance(bundle, dict):
        raise CliError("the certificate file is not a JSON object")
    try:
        steps = verify_certificate(bundle, _key(args.verifier_key))
    except CertificateInvalid as exc:
        print(f"FAILED {exc}")
        return 1
    for step in steps:
        print(f"ok  {step}")
    cert = bundle["certificate"]
    print(f"VERIFIED certificate {cert['id']} of product {cert['product']['id']} "
          f"held by {cert['holder']['name']}")  # fmt: skip
    return 0


def _subcommands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The sub-commands of verb `name`, the verb made if no other package made it first."""
    parser = sub.choices.get(name) or sub.add_parser(name, help=help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=f"{name}_command", required=True)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The market verbs."""
    market = _subcommands(sub, "market", "the data market")
    verbs = _subcommands(market, "certificate", "data-asset registration certificates")
    if "verify" in verbs.choices:
        return
    verify = verbs.add_parser(
        "verify", help="verify a certificate (GET /v1/market/certificates/{id}) offline"
    )
    verify.add_argument("file", help="the certificate JSON with its ledger proof")
    verify.add_argument(
        "--verifier-key",
        required=True,
        help="the ledger's verifier key (GET /v1/ledger/verifier-key), or a file holding it",
    )
    verify.set_defaults(func=_verify)

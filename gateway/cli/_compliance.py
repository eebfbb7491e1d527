"""`pdx compliance check|retention`: the requirement checks and the retention rules."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli._common import CliError
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.platform import Platform


def _platform() -> Platform:
    from gateway.app import create_app
    from gateway.platform import build_platform, initialise

    platform = build_platform(Settings.from_env())
    initialise(platform)  # migrates; the signing keys and the policy exist afterwards
    create_app(platform)  # the route table ZT-01 walks
    return platform


def _check(args: argparse.Namespace) -> int:
    import audit
    from audit.compliance.render import to_html, to_pdf

    platform = _platform()
    try:
        assert platform.compliance is not None
        report = platform.compliance.run(
            audit.Subject(f"cli:{args.user}", None, None, None, None), sample=args.sample
        )
        with platform.session() as session:
            from audit.compliance import trend

            history = trend(session)
    finally:
        platform.engine.dispose()
    if args.format == "json":
        data = (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode()
    elif args.format == "html":
        data = to_html(report, history).encode()
    else:
        data = to_pdf(report, history)
    if args.out:
        Path(args.out).write_bytes(data)
    elif args.format == "pdf":
        raise CliError("--format pdf needs --out FILE")
    else:
        sys.stdout.write(data.decode())
    s = report["summary"]
    print(
        f"pdx: compliance run {report['id']}: pass {s['pass']}, fail {s['fail']}, "
        f"not-applicable {s['not-applicable']}, not-automated {s['not-automated']} "
        f"(ledger index {report['ledger_index']})",
        file=sys.stderr,
    )
    return 1 if s["fail"] else 0


def _retention(args: argparse.Namespace) -> int:
    platform = _platform()
    try:
        assert platform.compliance is not None
        print(json.dumps(platform.compliance.retention(), indent=2))
    finally:
        platform.engine.dispose()
    return 0


def _risk(args: argparse.Namespace) -> int:
    import audit

    platform = _platform()
    try:
        assert platform.compliance is not None
        body = platform.compliance.risk_report(
            audit.Subject(f"cli:{args.user}", None, None, None, None)
        )
    finally:
        platform.engine.dispose()
    data = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    if args.out:
        Path(args.out).write_text(data, encoding="utf-8")
    else:
        sys.stdout.write(data)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The compliance verbs."""
    comp = sub.add_parser("compliance", help="compliance checks and retention").add_subparsers(
        dest="compliance_command", required=True
    )
    check = comp.add_parser("check", help="evaluate docs/compliance.md; exit 1 on a failure")
    check.add_argument("--format", choices=("json", "html", "pdf"), default="json")
    check.add_argument("--out", help="write the report here (needed for pdf)")
    check.add_argument("--sample", type=int, default=16, help="inclusion proofs to verify")
    check.add_argument("--user", default="operator", help="who runs it (cli:<user>)")
    check.set_defaults(func=_check)
    ret = comp.add_parser("retention", help="shred released results past retention now")
    ret.set_defaults(func=_retention)
    risk = comp.add_parser("risk-report", help="risk assessment of important data (DSL 30)")
    risk.add_argument("--out", help="write the JSON report here")
    risk.add_argument("--user", default="operator", help="who runs it (cli:<user>)")
    risk.set_defaults(func=_risk)

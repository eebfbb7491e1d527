"""The user verbs of `pdx` and the SDK's own `pdx` entry point for machines without the server.

The verbs reach the command through the `pdx.cli` entry-point group, like any package's:
the server's `pdx` loads them beside its own verbs. This package's `pdx` script hands over
to the server's command when one is installed (entry point group `pdx.main`) and
otherwise builds a parser from the `pdx.cli` group alone, so both installs give one `pdx`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from pdx_client.cli import _verbs, market

__all__ = ["main", "register"]

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The SDK's verbs for a `pdx` parser (entry point `pdx.cli` `user`): user and market."""
    _verbs.register(sub)
    market.register(sub)


def _registers() -> list[Register]:
    found: list[Register] = []
    for ep in entry_points(group="pdx.cli"):
        fn = ep.load()
        if fn not in found:
            found.append(fn)
    if register not in found:  # running from a checkout, not installed
        found.insert(0, register)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdx", description="pdx data exchange client")
    sub = parser.add_subparsers(dest="command", required=True)
    for reg in _registers():
        reg(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    for ep in entry_points(group="pdx.main"):  # the server is installed: its `pdx` has all
        server_main: Callable[[list[str]], int] = ep.load()
        return server_main(args_list)
    args = build_parser().parse_args(args_list)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The `pdx` command: run the platform, initialise it, drive the demo, run benchmarks.

Verbs come from modules that each `register` their sub-commands: this package's own, and
any installed package that declares an entry point in the `pdx.cli` group (the SDK's user
verbs), so a user without the server still gets the verbs they need.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from gateway.cli import _backup, _compliance, _keys, _ledger, _serve, _worker
from gateway.cli._common import CliError
from gateway.settings import SettingsError

__all__ = ["CliError", "build_parser", "main"]

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
_BUILT_IN: tuple[Register, ...] = (
    _serve.register,
    _ledger.register,
    _keys.register,
    _backup.register,
    _compliance.register,
    _worker.register,
)


def _plugins() -> list[Register]:
    """`register` functions of other installed packages (entry point group `pdx.cli`)."""
    found: list[Register] = []
    for ep in entry_points(group="pdx.cli"):
        found.append(ep.load())
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdx", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for register in (*_BUILT_IN, *_plugins()):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `pdx bench ...` hands everything after the verb to the checkout's bench runner.
    args = (
        argparse.Namespace(func=_serve._bench, bench_args=argv[1:])
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
    except Exception as exc:
        from exchange.errors import StoreMismatch

        if not isinstance(exc, StoreMismatch):
            raise
        # PDX_HOME and the database are not one store: refuse in one line, write nothing.
        print(f"pdx: error: {exc.detail}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())

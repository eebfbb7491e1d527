"""`pdx` verbs can come from other installed packages (entry point group `pdx.cli`)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

import gateway.cli
from tests.helpers.fresh_python import fresh_python


class _EntryPoint:
    def __init__(self, register: Any) -> None:
        self._register = register

    def load(self) -> Any:
        return self._register


def test_a_plugin_registers_its_verbs_beside_the_servers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        hello = sub.add_parser("hello", help="a verb from another package")
        hello.add_argument("--name", default="world")
        hello.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)

    def fake_entry_points(*, group: str) -> list[_EntryPoint]:
        return [_EntryPoint(register)] if group == "pdx.cli" else []

    monkeypatch.setattr(gateway.cli, "entry_points", fake_entry_points)
    assert gateway.cli.main(["hello", "--name", "pdx"]) == 0
    assert capsys.readouterr().out == "hello pdx\n"
    verbs = gateway.cli.build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"run", "ledger", "kms", "backup", "hello"} <= set(verbs)


def test_building_the_command_line_imports_no_platform_package() -> None:
    """`pdx --help`, `pdx ledger verify` and the SDK's verbs start without the platform.

    Every start builds the whole parser (this package's verbs and every plugin's), so a
    verb module that imports `exchange` at its top makes every command pay for it (about
    2.5 s here, where `pdx --help` takes about 1 s without it); a verb imports what it
    runs when it runs.
    """
    code = (
        "import sys; from gateway.cli import build_parser; build_parser(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'exchange', 'sandbox', 'policies', 'ledger', 'audit', 'fastapi', 'sqlalchemy'}))"
    )
    assert fresh_python(code).strip() == "[]"

"""The house's import rules and module sizes hold (scripts/archcheck.py; issue 12 must-show 1)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]

# Debt recorded when the check was written; each entry goes as its module is reshaped, and
# nothing may be added. A new upward import, circle or oversize module fails the test.
KNOWN_DEBT: dict[str, set[str]] = {
    "upward_imports": set(),
    "import_cycles": set(),
    "oversize_modules": set(),
}


def _archcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("archcheck", ROOT / "scripts" / "archcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["archcheck"] = module
    spec.loader.exec_module(module)
    return module


def test_no_new_upward_imports_cycles_or_oversize_modules() -> None:
    found = _archcheck().report(ROOT)
    oversize = {line.split(" has ")[0] for line in found["oversize_modules"]}
    assert set(found["upward_imports"]) <= KNOWN_DEBT["upward_imports"]
    assert set(found["import_cycles"]) <= KNOWN_DEBT["import_cycles"]
    assert oversize <= KNOWN_DEBT["oversize_modules"]


def test_checker_sees_lazy_upward_imports_and_cycles(tmp_path: Path) -> None:
    ac = _archcheck()
    (tmp_path / "crypto").mkdir()
    (tmp_path / "crypto" / "__init__.py").write_text("")
    (tmp_path / "crypto" / "a.py").write_text("def f():\n    import gateway.app\n")
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "__init__.py").write_text("")
    (tmp_path / "gateway" / "app.py").write_text("from gateway import b\n")
    (tmp_path / "gateway" / "b.py").write_text("from . import app\n" + "x = 1\n" * 601)
    (tmp_path / "gateway" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import crypto.a\n"
    )
    found = ac.modules(tmp_path)
    edges = ac.graph(found)
    assert ac.upward(edges) == ["crypto.a imports gateway.app (crypto may not import gateway)"]
    assert ac.cycles(edges) == [["gateway.app", "gateway.b"]]
    assert ac.oversize(found, tmp_path) == ["gateway/b.py has 602 lines (limit 600)"]
    assert edges["gateway.c"] == set()  # type-checking imports never run

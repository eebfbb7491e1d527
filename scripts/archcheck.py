"""Check the house's import rules and module sizes over the source tree (issue 12, must-show 1).

Reads every module of the seven packages, `migrations` and `bench` with `ast`, so imports
inside functions (lazy imports) count like any other. Reports:

1. imports from a lower package to a higher one (ARCHITECTURE.md: gateway → exchange →
   {sandbox, ledger, policies, audit} → crypto; audit may read ledger; nothing imports gateway
   or bench; migrations import neither gateway, exchange nor bench);
2. import circles between modules;
3. modules of the seven packages over the line limit.

Usage: `python scripts/archcheck.py [--json]`; exits 1 when anything is reported.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "exchange", "sandbox", "ledger", "crypto", "policies", "audit")
SCANNED = (*PACKAGES, "migrations", "bench")
MAX_LINES = 600

# Which other pdx packages each package may import (ARCHITECTURE.md, "Imports point down").
ALLOWED: dict[str, frozenset[str]] = {
    # gateway is the composition root: it also runs the migrations.
    "gateway": frozenset(
        {"exchange", "sandbox", "ledger", "policies", "audit", "crypto", "migrations"}
    ),
    "exchange": frozenset({"sandbox", "ledger", "policies", "audit", "crypto"}),
    "sandbox": frozenset({"crypto"}),
    "ledger": frozenset({"crypto"}),
    "policies": frozenset({"crypto"}),
    "audit": frozenset({"ledger", "crypto"}),
    "crypto": frozenset(),
    "migrations": frozenset({"sandbox", "ledger", "policies", "audit", "crypto"}),
    "bench": frozenset({"gateway", "exchange", "sandbox", "ledger", "policies", "audit", "crypto"}),
}


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name → file, for every scanned package."""
    found: dict[str, Path] = {}
    for package in SCANNED:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """Ids of nodes inside `if TYPE_CHECKING:` blocks: never run, so never part of a circle."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return skipped


def _imported(tree: ast.AST, name: str, is_package: bool) -> Iterator[str]:
    """Absolute names a module's import statements refer to (relative ones resolved).

    Imports inside functions count (they run when called); imports under
    `if TYPE_CHECKING:` do not (they are for the type checker and never run).
    """
    here = name.split(".") if is_package else name.split(".")[:-1]
    skipped = _type_checking_blocks(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                # `from a import b` depends on module a.b when b is a module, else on a.
                yield f"{prefix}.{alias.name}|{prefix}"
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            # importlib.import_module("bench." + area): the literal prefix names the package.
            arg = node.args[0]
            literal = ""
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                literal = arg.value
            elif isinstance(arg, ast.JoinedStr) and arg.values:
                first = arg.values[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    literal = first.value
            if literal:
                yield literal.rstrip(".")


def _is_import_module(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id == "import_module"


def graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the scanned modules it imports (a `from a import b` names `a.b` if a module)."""
    edges: dict[str, set[str]] = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for ref in _imported(tree, name, path.name == "__init__.py"):
            first, _, fallback = ref.partition("|")
            ref = first if first in found or not fallback else fallback
            parts = ref.split(".")
            while parts and ".".join(parts) not in found:
                parts.pop()
            if parts and ".".join(parts) != name:
                targets.add(".".join(parts))
        edges[name] = targets
    return edges


def upward(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for src, targets in sorted(edges.items()):
        top = src.split(".")[0]
        for dst in sorted(targets):
            other = dst.split(".")[0]
            if other != top and other not in ALLOWED[top]:
                out.append(f"{src} imports {dst} ({top} may not import {other})")
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def oversize(found: dict[str, Path], root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    out = []
    for name, path in sorted(found.items()):
        if name.split(".")[0] not in PACKAGES:
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            out.append(f"{path.relative_to(root)} has {lines} lines (limit {limit})")
    return out


def report(root: Path = ROOT) -> dict[str, list[str]]:
    found = modules(root)
    edges = graph(found)
    return {
        "upward_imports": upward(edges),
        "import_cycles": [" -> ".join(c) for c in cycles(edges)],
        "oversize_modules": oversize(found, root),
    }


def _print(lines: Iterable[str], title: str) -> None:
    items = list(lines)
    print(f"{title}: {len(items)}")
    for line in items:
        print(f"  {line}")


def main(argv: list[str]) -> int:
    result = report()
    if "--json" in argv:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        for key, lines in result.items():
            _print(lines, key.replace("_", " "))
    return 1 if any(result.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

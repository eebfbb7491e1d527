"""`conftest.PROCESS_TESTS` names exactly the test modules that start processes.

A module left off the list would start servers or nodes beside another process test on a
2-core machine (and miss start-up deadlines); a module on the list that starts nothing
waits behind the process tests for no reason. The check is over each module's imports:
the helpers below are the ones that start processes.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import PROCESS_TESTS, starts_processes

TESTS = Path(__file__).resolve().parent

# Names that start a process when used: servers, PySyft nodes, witnesses, chains, the
# browser, the queue cluster, a fresh virtual environment, any child (`Popen`). PySyft
# Datasites embedded in this process are not processes: API tests everywhere launch them.
STARTERS = frozenset(
    {
        "RealServer",
        "start_server",
        "real_server",
        "FloodServer",
        "flood_server",
        "NodeProcess",
        "start_node",
        "start_requester",
        "party_key_run",
        "PartyServer",
        "party_server",
        "plain_nodes",
        "pdx_run",
        "pdx_witness",
        "ganache_node",
        "need_chromium",
        "Popen",
        "cluster",
        "Cluster",
        "make_venv",
    }
)


def _names(module: Path) -> set[str]:
    tree = ast.parse(module.read_text(), str(module))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def _modules() -> dict[str, Path]:
    return {
        path.relative_to(TESTS).as_posix(): path
        for path in TESTS.rglob("test_*.py")
        if "helpers" not in path.parts
    }


def test_every_listed_module_exists() -> None:
    assert sorted(PROCESS_TESTS - _modules().keys()) == []


def test_the_list_is_the_modules_that_start_processes() -> None:
    starting = {name for name, path in _modules().items() if _names(path) & STARTERS}
    assert sorted(starting - PROCESS_TESTS) == [], "start processes but are not listed"
    assert sorted(PROCESS_TESTS - starting) == [], "listed but start nothing"


def test_node_ids_are_matched_by_their_path_under_tests() -> None:
    assert starts_processes("tests/attacks/test_limits.py::test_flood[sqlite]")
    assert starts_processes("tests/test_e2e.py::test_run_serves_health_and_docs")
    assert not starts_processes("tests/attacks/test_leaks.py::test_no_secret_in_views")
    assert not starts_processes("tests/test_limits.py::test_x")  # not the attacks module

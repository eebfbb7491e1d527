"""The `pytest -n` split (tests/helpers/s17_lanes.py): balanced lanes that keep what must
stay together, and a table that names only process-test modules that exist."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import starts_processes
from tests.helpers.s17_lanes import BUNDLES, PROCESS_SECONDS, SHARED_SETUPS, lanes, scopes

REPO = Path(__file__).resolve().parents[1]


def test_the_table_names_existing_process_test_modules() -> None:
    assert PROCESS_SECONDS, "the split needs measured times"
    for module in PROCESS_SECONDS:
        assert (REPO / module).is_file(), module
        assert starts_processes(f"{module}::test_x"), module
    for bundle in BUNDLES:
        for module in bundle:
            assert (REPO / module).is_file() and starts_processes(f"{module}::t"), module
    for module in SHARED_SETUPS:
        assert (REPO / module).is_file() and not starts_processes(f"{module}::t"), module


def test_two_lanes_are_balanced_and_bundles_stay_whole() -> None:
    lane_of = lanes(PROCESS_SECONDS, 2)
    assert set(lane_of) == set(PROCESS_SECONDS)
    totals = [sum(PROCESS_SECONDS[m] for m, lane in lane_of.items() if lane == i) for i in (0, 1)]
    # Greedy longest-first: the lanes differ by at most the largest group placed.
    biggest = max(
        max(PROCESS_SECONDS.values()),
        *(sum(PROCESS_SECONDS.get(m, 0.0) for m in b) for b in BUNDLES),
    )
    assert abs(totals[0] - totals[1]) <= biggest, totals
    for bundle in BUNDLES:
        assert len({lane_of[m] for m in bundle}) == 1, bundle
    assert lanes(reversed(list(PROCESS_SECONDS)), 2) == lane_of  # the order does not matter


def test_units_of_work() -> None:
    ids = [
        "tests/attacks/test_a_new_attack.py::test_one",
        "tests/attacks/test_a_new_attack.py::test_two",
        "tests/test_e2e.py::test_demo",
        "tests/test_hetero_lr.py::test_accuracy_within_one_point_of_centralised",
        "tests/test_hetero_lr.py::test_config_refusals",
        "tests/test_units.py::test_alone",
    ]
    units = scopes(ids, 2, starts_processes)
    # A process-test module not in the table still gets a lane, whole.
    assert units[ids[0]] == units[ids[1]] and units[ids[0]].startswith("process-lane-")
    assert units[ids[2]].startswith("process-lane-")
    assert units[ids[3]] == units[ids[4]] == "module-tests/test_hetero_lr.py"
    assert ids[5] not in units  # its own unit
    assert {u for u in scopes(ids, 1, starts_processes).values() if "lane" in u} == {
        "process-lane-0"
    }

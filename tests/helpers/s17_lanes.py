"""How `pytest -n` cuts the suite into units of work: process tests in balanced lanes.

The tests that start real processes (tests/conftest.py `starts_processes`) are split by
module into one lane per worker, greedily by the seconds each module took when measured
alone (`PROCESS_SECONDS`; a module not in the table counts `UNKNOWN_SECONDS`). Each lane
runs its modules one after the other on one worker, so no worker runs two of them at once
and a module's module-scoped set-up is built once. The modules of one `BUNDLES` entry
(the browser tests, the chain tests) share a lane, so they never run at the same time.
A module of in-process tests whose module-scoped set-up is expensive (`SHARED_SETUPS`) is
one unit too, so that set-up is not built again on every worker. Every other test is its
own unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# Seconds per process-test module (its phases of a second or more), measured serially on a
# shared 2-core machine, `--durations=0 --durations-min=1`. Only the split's balance
# depends on these; refresh them when a module's time changes a lot.
PROCESS_SECONDS: dict[str, float] = {
    "tests/attacks/test_fl_party_keys.py": 153,
    "tests/attacks/test_hetero_party_keys.py": 115,
    "tests/attacks/test_signed_mask_keys.py": 93,
    "tests/attacks/test_cohort_signed_steps.py": 84,
    "tests/attacks/test_join_party_keys.py": 78,
    "tests/faults/test_kill.py": 74,
    "tests/attacks/test_shared_login_budget.py": 69,
    "tests/attacks/test_f4_review_s16.py": 63,
    "tests/attacks/test_limits.py": 48,
    "tests/attacks/test_fair_use.py": 46,
    "tests/attacks/test_outbound.py": 43,
    "tests/attacks/test_party_held_keys.py": 42,
    "tests/test_e2e.py": 39,
    "tests/attacks/test_token_flood.py": 36,
    "tests/attacks/test_join_attacks.py": 36,
    "tests/test_console_browser.py": 25,
    "tests/attacks/test_separation_of_duties.py": 21,
    "tests/test_sdk_fresh_venv.py": 21,
    "tests/test_nodes.py": 16,
    "tests/test_ledger_log.py": 15,
    "tests/test_platform_anchor.py": 15,
    "tests/test_console_jobkey_browser.py": 15,
    "tests/test_api_consistency.py": 14,
    "tests/test_sdk_clients.py": 13,
    "tests/test_sdk_cli.py": 12,
    "tests/test_sdk_market_cli.py": 11,
    "tests/test_ledger_publish.py": 11,
    "tests/test_store_startup.py": 11,
    "tests/test_sdk_cli_signed_approvals.py": 8,
    "tests/test_fl_job_keys_cli.py": 7,
    "tests/attacks/test_sod_lineage.py": 7,
    "tests/test_passkeys_browser.py": 7,
    "tests/attacks/test_request_contract_race.py": 6,
    "tests/attacks/test_cohort_review.py": 4,
    # 26 tests of under a second each, so no phase counted; 27 s whole in a lane run. 30 is
    # the default it had in the full run measured with this table (the same split).
    "tests/attacks/test_leaks.py": 30,
    "tests/faults/test_job_dirs.py": 3,
    "tests/test_ledger_anchor.py": 2,
}

UNKNOWN_SECONDS = 30.0

# Modules that never run at the same time: each bundle goes whole into one lane.
BUNDLES: tuple[frozenset[str], ...] = (
    frozenset(  # a Chromium each (Playwright)
        {
            "tests/test_console_browser.py",
            "tests/test_console_jobkey_browser.py",
            "tests/test_passkeys_browser.py",
        }
    ),
    frozenset({"tests/test_ledger_anchor.py", "tests/test_platform_anchor.py"}),  # ganache
)

# In-process modules whose module-scoped fixture costs more than a few seconds (the others'
# cost well under one: keys, data splits, policy points).
SHARED_SETUPS = frozenset({"tests/test_hetero_lr.py"})  # `trained`: ~38 s of Paillier rounds


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def lanes(modules: Iterable[str], count: int) -> dict[str, int]:
    """Each module's lane: the longest bundle first, each onto the lane with the least so far.

    A module outside every bundle is a bundle of its own.
    """
    count = max(1, count)
    present = set(modules)
    groups = [frozenset(b & present) for b in BUNDLES if b & present]
    grouped = set().union(*groups) if groups else set()
    groups += [frozenset({m}) for m in present - grouped]

    def seconds(group: frozenset[str]) -> float:
        return sum(PROCESS_SECONDS.get(m, UNKNOWN_SECONDS) for m in group)

    totals = [0.0] * count
    lane_of: dict[str, int] = {}
    for group in sorted(groups, key=lambda g: (-seconds(g), sorted(g))):
        lane = min(range(count), key=lambda i: (totals[i], i))
        lane_of |= dict.fromkeys(group, lane)
        totals[lane] += seconds(group)
    return lane_of


def scopes(
    nodeids: Iterable[str], workers: int, starts_processes: Callable[[str], bool]
) -> dict[str, str]:
    """The unit of work of every test id that does not run alone (the others: their id)."""
    ids = list(nodeids)
    lane_of = lanes((module_of(n) for n in ids if starts_processes(n)), workers)
    out: dict[str, str] = {}
    for nodeid in ids:
        module = module_of(nodeid)
        if module in lane_of:
            out[nodeid] = f"process-lane-{lane_of[module]}"
        elif module in SHARED_SETUPS:
            out[nodeid] = f"module-{module}"
    return out

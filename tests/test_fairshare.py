"""The fair-share rule on its own (exchange.fairshare), as the later shared job queue keeps it."""

from __future__ import annotations

import pytest

from exchange.fairshare import FairShare


def test_fewest_running_first_then_round_robin() -> None:
    fair: FairShare[str] = FairShare(per_key=2)
    for i in range(4):
        fair.push("attacker", f"a{i}")
    assert fair.take() == ("attacker", "a0")
    fair.push("victim", "v0")
    # The victim has nothing running, the attacker one job: the victim goes first.
    assert fair.take() == ("victim", "v0")
    assert fair.take() == ("attacker", "a1")
    assert fair.take() is None  # the attacker is at its cap; the victim has nothing waiting
    fair.done("attacker")
    assert fair.take() == ("attacker", "a2")


def test_round_robin_between_equals_keeps_arrival_order_within_a_key() -> None:
    fair: FairShare[str] = FairShare(per_key=10)
    for item in ("a0", "a1", "a2"):
        fair.push("a", item)
    for item in ("b0", "b1"):
        fair.push("b", item)
    taken = []
    while (t := fair.take()) is not None:
        taken.append(t[1])
        fair.done(t[0])
    assert taken == ["a0", "b0", "a1", "b1", "a2"]
    assert fair.waiting() == 0 and fair.running() == 0


def test_done_without_a_running_job_is_refused() -> None:
    fair: FairShare[str] = FairShare(per_key=1)
    with pytest.raises(ValueError):
        fair.done("nobody")
    with pytest.raises(ValueError):
        FairShare[str](per_key=0)

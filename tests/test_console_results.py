"""A released result's charts, from the operators' own result types as the API serves them:
histogram bars per group (suppressed cells named), FL loss and accuracy curves per round."""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.console import i18n, results
from sandbox.fl import FlModel, RoundMetrics
from sandbox.stats import GroupStats, StatsResult


def _t(key: str, **values: Any) -> str:
    return i18n.t("en", key, **values)


def _served(value: Any) -> Any:
    """As `exchange.computations.runs` stores a release: `as_dict`, through JSON."""
    return json.loads(json.dumps(value.as_dict(), default=str))


def test_a_histogram_is_one_bar_per_cell_and_names_suppressed_cells() -> None:
    stats = StatsResult(
        operator="stats.histogram",
        columns=("age",),
        group_by="ward",
        groups=(
            GroupStats(group="A", rows=40.0, histogram=(0.0, 5.0, 12.0, 9.0, 1.0)),
            GroupStats(group="B", rows=30.0, histogram=(0.0, None, 7.0, 3.0, 0.0)),
        ),
        bin_edges=(20.0, 40.0, 60.0, 80.0),
        dp_epsilon=None,
        suppressed=(),
        tolerance=0.0,
    )
    charts = results.charts(_served(stats), _t)
    assert len(charts) == 2
    first, second = (str(c) for c in charts)
    assert 'aria-label="Histogram (group A)"' in first
    assert first.count("<rect") == 5  # under, three bins, over
    assert "<title>[40, 60): 12</title>" in first and "<title>&lt; 20: 0</title>" in first
    assert "[20, 40) (suppressed): 0" in second


def test_a_model_has_loss_and_accuracy_curves_and_dp_leaves_out_the_loss() -> None:
    rounds = tuple(RoundMetrics(r, 0.7 - 0.1 * r, 0.6 + 0.05 * r, 1.0, 0.1) for r in range(1, 5))
    model = FlModel(
        features=("age",), coef=(0.3,), intercept=0.1, mean=(50.0,), scale=(10.0,), rows=200,
        rounds=rounds, stopped_early=False, encrypted=True,
    )  # fmt: skip
    loss, accuracy = (str(c) for c in results.charts(_served(model), _t))
    assert 'aria-label="Federated learning: loss per round"' in loss
    assert len(re.findall(r"<circle", loss)) == 4 and "#1" in loss and "#4" in loss
    assert 'aria-label="Federated learning: accuracy per round"' in accuracy
    dp_rounds = tuple(RoundMetrics(r, None, 0.6, 1.0, 0.1) for r in range(1, 4))
    under_dp = FlModel(**{**model.__dict__, "rounds": dp_rounds})
    only = [str(c) for c in results.charts(_served(under_dp), _t)]
    assert len(only) == 1 and "accuracy per round" in only[0]


def test_a_plain_result_has_no_chart() -> None:
    assert results.charts({"mean(systolic_bp)": 121.5}, _t) == []
    assert results.charts(None, _t) == []

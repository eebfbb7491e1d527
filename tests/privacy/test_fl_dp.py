"""Record-level DP federated learning: nothing exact in the model, one record hidden in the noise.

Runs the real `fl.logreg` job (sandboxed nodes, CKKS secure aggregation) on the breast
cancer split of bench/fl.py at the benchmark's DP settings (total ε = 3, δ = 1e-6).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.fl import DP_CONFIG, breast_cancer_split, declared_bounds, write_nodes
from sandbox.fl import FlConfig, FlJob, FlModel
from sandbox.operators import ProviderInput
from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def split() -> dict[str, Any]:
    return breast_cancer_split()


@pytest.fixture(scope="module")
def neighbours(split: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The IID nodes (D) and the same with node 0's last record removed (D')."""
    root = tmp_path_factory.mktemp("fl-dp")
    full = write_nodes(split, root, skewed=False)
    lines = full[0].read_text().splitlines()
    less = root / "node0_minus_one.csv"
    less.write_text("\n".join(lines[:-1]) + "\n")
    return full, [less, *full[1:]]


def _train(split: dict[str, Any], paths: list[Path], dp: bool) -> tuple[FlJob, FlModel]:
    kw: dict[str, Any] = dict(DP_CONFIG, early_stopping=False, encrypted=dp)
    if dp:
        kw |= {"dp_epsilon": 3.0, "dp_delta": 1e-6, "feature_bounds": declared_bounds()}
    job = FlJob(
        FlConfig(features=split["features"], **kw),
        [ProviderInput(f"provider-{i}", f"dataset-{i}", p) for i, p in enumerate(paths)],
    )
    gate = ReleaseGate(InMemoryPrivacyBudget(default=(3.0, 1e-6)))
    return job, job.run(gate, ReleaseObligations(min_cohort=10)).value()


def _w(m: FlModel) -> np.ndarray:
    return np.asarray([*m.coef, m.intercept])


def test_dp_model_carries_no_exact_moments_or_count(split: dict[str, Any], neighbours: Any) -> None:
    full, less = neighbours
    x = split["x_train"]
    exact_mean, exact_std, n = x.mean(axis=0), x.std(axis=0), len(x)
    runs = [_train(split, full, dp=True), _train(split, full, dp=True)]
    runs.append(_train(split, less, dp=True))
    for job, model in runs:
        # No statistics job ran on the data: no exact moments were ever computed.
        assert job.standardisation is None
        b = np.asarray(declared_bounds())
        assert np.allclose(model.mean, b.mean(axis=1))
        assert not np.allclose(model.mean, exact_mean, rtol=1e-3)
        assert not np.allclose(model.scale, exact_std, rtol=1e-3)
        text = json.dumps(model.as_dict())
        for v in (*exact_mean[:5], *exact_std[:5]):
            assert repr(float(v)) not in text
        assert all(r.loss is None and r.accuracy is None for r in model.rounds)
        assert model.dp is not None and model.dp["count_sigma"] > 5
    # The released row counts are noisy: they do not all equal the exact ones.
    assert [m.rows for _, m in runs] != [n, n, n - 1]
    # Coarse neighbouring check: removing a record moves the model no further than
    # retraining on the same data does (the noise dominates one record's influence).
    w1, w2, w_less = (_w(m) for _, m in runs)
    same, neighbour = np.linalg.norm(w1 - w2), np.linalg.norm(w1 - w_less)
    assert same > 0
    assert neighbour < 3 * same, (neighbour, same)
    accs = [m.accuracy(split["x_test"], split["y_test"]) for _, m in runs]
    assert np.median(accs) >= 0.85, accs


def test_without_dp_one_record_is_visible(split: dict[str, Any], neighbours: Any) -> None:
    """The power of the check above: without DP, training is deterministic in the data."""
    full, less = neighbours
    (_, a), (_, b), (_, c) = (_train(split, p, dp=False) for p in (full, full, less))
    assert np.array_equal(_w(a), _w(b))
    assert np.linalg.norm(_w(a) - _w(c)) > 0
    assert a.rows == len(split["y_train"])

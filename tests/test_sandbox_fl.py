"""Federated logistic regression (`fl.logreg`) on the breast cancer set split over 3 nodes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.fl import breast_cancer_split, central_accuracy, node_indices, write_nodes
from sandbox import errors
from sandbox.accounting import rho_for
from sandbox.coordinator import Envelope
from sandbox.fl import FlConfig, FlJob, FlModel, run_fl_logreg
from sandbox.fl_local import local_train
from sandbox.operators import ProviderInput
from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations


@pytest.fixture(scope="module")
def split() -> dict[str, Any]:
    return breast_cancer_split()


@pytest.fixture(scope="module")
def nodes(split: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fl")
    return {
        "iid": write_nodes(split, root, skewed=False),
        "skewed": write_nodes(split, root, skewed=True),
    }


def _providers(paths: list[Path]) -> list[ProviderInput]:
    return [ProviderInput(f"provider-{i}", f"dataset-{i}", p) for i, p in enumerate(paths)]


def _train(
    split: dict[str, Any],
    paths: list[Path],
    obligations: ReleaseObligations | None = None,
    **kw: Any,
) -> tuple[FlJob, FlModel]:
    job = FlJob(FlConfig(features=split["features"], **kw), _providers(paths))
    gate = ReleaseGate(InMemoryPrivacyBudget())
    release = job.run(gate, obligations or ReleaseObligations(min_cohort=10))
    return job, release.value()


def test_label_skew_split_is_skewed(split: dict[str, Any]) -> None:
    y = split["y_train"]
    iid = [y[i].mean() for i in node_indices(y, skewed=False)]
    skewed = [y[i].mean() for i in node_indices(y, skewed=True)]
    assert max(iid) - min(iid) < 0.1
    assert skewed[0] < 0.3 and skewed[2] > 0.85


@pytest.mark.parametrize("layout", ["iid", "skewed"])
def test_fedavg_matches_centralised_accuracy(
    split: dict[str, Any], nodes: dict[str, Any], layout: str
) -> None:
    _, model = _train(split, nodes[layout])
    central = central_accuracy(split)
    acc = model.accuracy(split["x_test"], split["y_test"])
    assert abs(acc - central) <= 0.01, (acc, central)
    # Early stopping ended it, with per-round aggregate metrics.
    assert model.stopped_early and len(model.rounds) < 200
    losses = [r.loss for r in model.rounds if r.loss is not None]
    assert len(losses) == len(model.rounds) and all(r.accuracy is not None for r in model.rounds)
    assert losses[-1] < losses[0] * 0.2
    assert model.rows == len(split["y_train"]) and model.encrypted
    # The federated standardisation is the union's, as StandardScaler computes it.
    assert np.allclose(model.mean, split["x_train"].mean(axis=0), rtol=1e-9)
    assert np.allclose(model.scale, split["x_train"].std(axis=0), rtol=1e-9)


def test_coordinator_sees_only_ciphertexts_of_updates(
    split: dict[str, Any], nodes: dict[str, Any]
) -> None:
    job, _ = _train(split, nodes["iid"], rounds=3, early_stopping=False)
    received = job.coordinator.received
    assert len(received) == 9  # 3 rounds x 3 nodes, nothing else
    blob = b"".join(data for _, data in received)
    assert all(Envelope.from_bytes(d).scheme == "ckks" for _, d in received)
    # Recompute each node's first-round plaintext update and look for it.
    x, y = split["x_train"], split["y_train"]
    mean, std = x.mean(axis=0), x.std(axis=0)
    n = len(y)
    for i, idx in enumerate(node_indices(y, skewed=False)):
        xb = np.hstack([(x[idx] - mean) / std, np.ones((len(idx), 1))])
        w0 = np.zeros(xb.shape[1])
        delta = local_train(xb, y[idx].astype(float), w0, 1.0 / n, 0.5, 20)
        payload = np.concatenate([len(idx) / n * delta, [len(idx) / n]])
        # Test-only oracle: the secret key shows this really is what node i encrypted.
        party, data = received[i]
        assert party == f"provider-{i}"
        sent = np.asarray(job.result_party.decrypt(data).values)[: len(payload)]
        assert np.allclose(sent, payload, atol=1e-6)
        for enc in (payload.astype("<f8"), payload.astype(">f8"), payload.astype("<f4")):
            assert enc.tobytes() not in blob
        for v in payload[:8]:
            assert np.float64(v).tobytes() not in blob
            assert repr(float(v)).encode() not in blob
    contexts = [job.coordinator._ckks_ctx]
    assert all(not c.is_private() for c in contexts)


def test_plain_baseline_gives_the_same_model(split: dict[str, Any], nodes: dict[str, Any]) -> None:
    _, enc = _train(split, nodes["iid"], rounds=15, early_stopping=False)
    _, plain = _train(split, nodes["iid"], rounds=15, early_stopping=False, encrypted=False)
    assert not plain.encrypted
    assert np.allclose(enc.coef, plain.coef, atol=1e-5)


def _bounds(split: dict[str, Any]) -> tuple[tuple[float, float], ...]:
    """Provider-declared bounds: outward-rounded ranges of the training rows."""
    x = split["x_train"]
    lows, highs = np.floor(x.min(0)), np.ceil(x.max(0))
    return tuple((float(lo), float(hi)) for lo, hi in zip(lows, highs, strict=True))


def test_dp_training_charges_budget_and_is_record_level(
    split: dict[str, Any], nodes: dict[str, Any]
) -> None:
    budget = InMemoryPrivacyBudget(default=(2.0, 1e-6))
    gate = ReleaseGate(budget)
    ob = ReleaseObligations(min_cohort=10, dp_epsilon=1.5, dp_delta=1e-6)
    bounds = _bounds(split)
    cfg = FlConfig(
        features=split["features"], rounds=5, local_epochs=2, clip_norm=0.5, feature_bounds=bounds
    )
    release = run_fl_logreg(cfg, _providers(nodes["iid"]), gate=gate, obligations=ob)
    model = release.value()
    assert release.epsilon_spent == 1.5
    assert model.dp is not None
    # The accountant's plan: z = sqrt(T / (2 (rho - rho_count))), sigma = z * C, and the
    # composed cost converts back to the epsilon charged.
    rho = rho_for(1.5, 1e-6)
    z = math.sqrt(10 / (2 * rho * (1 - cfg.count_share)))
    assert model.dp["noise_multiplier"] == pytest.approx(z)
    assert model.dp["sigma"] == pytest.approx(0.5 * z)
    assert model.dp["epsilon_accounted"] == pytest.approx(1.5, rel=1e-6)
    assert len(model.rounds) == 5
    assert all(r.loss is None and r.accuracy is None for r in model.rounds)
    # Standardisation is the declared bounds, not the data's moments.
    assert np.allclose(model.mean, [(lo + hi) / 2 for lo, hi in bounds])
    assert np.allclose(model.scale, [(hi - lo) / 2 for lo, hi in bounds])
    assert budget.remaining("dataset-0")[0] == pytest.approx(0.5)
    # Exhausted: refused before any node runs.
    with pytest.raises(errors.PrivacyBudgetExhausted):
        run_fl_logreg(cfg, _providers(nodes["iid"]), gate=gate, obligations=ob)
    # Without declared bounds: no standardisation at all (clipping keeps it private), and
    # still nothing computed from the exact moments.
    fresh = InMemoryPrivacyBudget(default=(2.0, 1e-6))
    job = FlJob(FlConfig(features=split["features"], rounds=2), _providers(nodes["iid"]))
    bare = job.run(ReleaseGate(fresh), ob).value()
    assert bare.mean == (0.0,) * len(bounds) and bare.scale == (1.0,) * len(bounds)
    assert job.standardisation is None  # no statistics job ran on the data
    assert [c.epsilon for c in fresh.ledger] == [1.5, 1.5, 1.5]


def test_fl_refusals(split: dict[str, Any], nodes: dict[str, Any]) -> None:
    with pytest.raises(errors.CohortTooSmall):
        _train(split, nodes["iid"], ReleaseObligations(min_cohort=10_000), rounds=2)
    with pytest.raises(errors.InvalidParameters):
        FlConfig(features=("a", "a"))
    with pytest.raises(errors.InvalidParameters):
        FlJob(FlConfig(features=split["features"]), _providers(nodes["iid"][:1]))
    with pytest.raises(errors.InvalidParameters):
        _train(split, nodes["iid"], label="no_such_label", rounds=2)

"""Vertical logistic regression is within 1 point of centralised sklearn (issue 18 must-show 1)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from sandbox import hetero_lr
from sandbox.errors import InvalidParameters
from sandbox.identifiers import IdKind, JobDomain
from tests.helpers.breast_cancer import breast_cancer, central_accuracy

GUEST, HOST1, HOST2 = list(range(10)), list(range(10, 20)), list(range(20, 30))


def plaintext_reference(x: Any, y: Any, cfg: hetero_lr.HeteroConfig) -> Any:
    """The same algorithm (polynomial sigmoid, full-batch GD, L2 as sklearn's C) in floats."""
    coef = np.asarray(hetero_lr.sigmoid_coefficients(cfg.degree, cfg.approx_range))
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    for _ in range(cfg.iterations):
        d = np.polyval(coef[::-1], xb @ w) - y
        reg = np.append(w[:-1], 0.0) / (cfg.c * len(y))
        w = w - cfg.learning_rate * (xb.T @ d / len(y) + reg)
    return w


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    data = breast_cancer()
    cfg = hetero_lr.HeteroConfig(key_bits=1024, iterations=20)
    x = data["x_tr"]
    result = hetero_lr.train(x[:, GUEST], data["y_tr"], [x[:, HOST1], x[:, HOST2]], cfg)
    return {"data": data, "cfg": cfg, "result": result}


@pytest.mark.slow
def test_accuracy_within_one_point_of_centralised(trained: dict[str, Any]) -> None:
    data, result = trained["data"], trained["result"]
    x_te = data["x_te"]
    z = result.decision(x_te[:, GUEST], [x_te[:, HOST1], x_te[:, HOST2]])
    acc = float(((z > 0) == data["y_te"]).mean())
    central = central_accuracy()
    assert abs(acc - central) <= 0.01, (acc, central)


@pytest.mark.slow
def test_encrypted_rounds_compute_the_plaintext_algorithm(trained: dict[str, Any]) -> None:
    data, cfg, result = trained["data"], trained["cfg"], trained["result"]
    ref = plaintext_reference(data["x_tr"], data["y_tr"], cfg)
    got = np.concatenate(
        [result.guest_weights[:-1], *result.host_weights, result.guest_weights[-1:]]
    )
    assert np.max(np.abs(got - ref)) < 1e-3  # fixed-point rounding only
    assert len(result.round_seconds) == cfg.iterations


def test_alignment_by_psi_recovers_the_common_rows() -> None:
    rng = np.random.default_rng(7)
    people = [f"{i:05d}@people.example" for i in range(300)]
    guest = [people[i] for i in range(0, 200)]
    host1 = [people[i].upper() for i in rng.permutation(np.arange(50, 300))]
    host2 = [" " + people[i] for i in rng.permutation(np.arange(20, 260))]
    d = JobDomain("job-align", os.urandom(32))

    def m(v: list[str]) -> list[bytes]:
        return [x for x in d.messages(IdKind.EMAIL, v) if x is not None]

    order, host_rows = hetero_lr.align(m(guest), [m(host1), m(host2)], d.dst, batch=64)
    assert sorted(guest[g] for g in order) == people[50:200]
    for rows, hosted in zip(host_rows, (host1, host2), strict=True):
        assert [hosted[r].strip().lower() for r in rows] == [guest[g] for g in order]
    assert order != sorted(order)  # the guest's row order is not revealed by the alignment


def test_config_refusals() -> None:
    with pytest.raises(InvalidParameters):
        hetero_lr.HeteroConfig(degree=4)
    with pytest.raises(InvalidParameters):
        hetero_lr.train(
            np.zeros((3, 1)),
            np.array([0, 1, 2]),
            [np.zeros((3, 1))],
            hetero_lr.HeteroConfig(key_bits=1024, iterations=1),
        )

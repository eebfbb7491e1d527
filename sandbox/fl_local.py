"""A provider's local step of logistic regression: its rows, the loss, gradient descent.

Shared by FedAvg under the platform's key (`sandbox.fl`) and under the requester's key
(`sandbox.party_fl`); runs inside the sandbox.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sandbox.errors import InvalidParameters
from sandbox.isolation import OperatorContext

Array = npt.NDArray[np.float64]

__all__ = ["load_rows", "local_train", "logloss_sum"]


def load_rows(ctx: OperatorContext, features: Sequence[str], label: str) -> tuple[Array, Array]:
    xs: list[list[float]] = []
    ys: list[float] = []
    for path in ctx.inputs:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in (*features, label) if c not in header]
            if missing:
                raise InvalidParameters("input has no column named " + ", ".join(missing))
            idx = [header.index(c) for c in features]
            li = header.index(label)
            for row in reader:
                if not row:
                    continue
                try:
                    xs.append([float(row[i]) for i in idx])
                    ys.append(float(row[li]))
                except (ValueError, IndexError):
                    raise InvalidParameters("input has a malformed row") from None
    y = np.asarray(ys)
    if not np.all((y == 0) | (y == 1)):
        raise InvalidParameters("label must be 0 or 1")
    return np.asarray(xs, dtype=np.float64).reshape(len(ys), len(features)), y


def logloss_sum(xb: Array, y: Array, w: Array) -> tuple[float, float]:
    z = xb @ w
    loss = float(np.sum(np.logaddexp(0.0, z) - y * z))
    correct = float(np.sum((z > 0) == (y == 1)))
    return loss, correct


def local_train(xb: Array, y: Array, w: Array, lam: float, lr: float, epochs: int) -> Array:
    """Full-batch gradient descent on (1/n)Σ logloss + (λ/2)‖w_features‖²."""
    n = max(len(y), 1)
    penal = np.ones_like(w)
    penal[-1] = 0.0
    for _ in range(epochs):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) / n + lam * penal * w
        w = w - lr * grad
    return w

"""The breast cancer split both hetero-LR accuracy tests use, and its centralised baseline.

Computed once per test process (`tests.test_hetero_lr` and `tests.test_hetero_job_keys`
compare against the same sklearn model on the same split). Callers must not modify the
returned arrays.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def breast_cancer() -> dict[str, Any]:
    """bench/fl.py's split (stratified 80/20, seed 42), standardised on the training rows."""
    from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

    data = load_breast_cancer()
    x_tr, x_te, y_tr, y_te = train_test_split(
        data.data, data.target, test_size=0.2, random_state=42, stratify=data.target
    )
    scaler = StandardScaler().fit(x_tr)
    return {
        "x_tr": scaler.transform(x_tr),
        "x_te": scaler.transform(x_te),
        "y_tr": y_tr,
        "y_te": y_te,
    }


@cache
def central_accuracy() -> float:
    """Test accuracy of centralised sklearn logistic regression (C = 1) on all 30 features."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    data = breast_cancer()
    model = LogisticRegression(C=1.0, max_iter=5000).fit(data["x_tr"], data["y_tr"])
    return float(model.score(data["x_te"], data["y_te"]))

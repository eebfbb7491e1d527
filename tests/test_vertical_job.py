"""Vertical LR with each party in its own sandbox equals the in-process protocol on the join."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from sandbox import hetero_lr
from sandbox._registry import ProviderInput
from sandbox.errors import IntersectionTooSmall
from sandbox.operators import default_sandbox
from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations
from sandbox.vertical_ops import HeteroJob
from sandbox.vertical_params import HeteroParams
from sandbox.vertical_party import _features
from tests.helpers.i18_psi import noisy_phone, phone


def _tables(where: Path, n: int = 120) -> tuple[list[ProviderInput], dict[str, object]]:
    """Guest: phone, label, f0, f1; hosts: phone, g0, g1 / h0, h1; 100 people in all three."""
    rng = random.Random(5)
    people = []
    while len(people) < n + 30:
        p = phone(rng)
        if p not in people:
            people.append(p)
    x = np.random.default_rng(5).normal(size=(len(people), 6))
    y = (x @ np.array([1.0, -1.0, 0.5, 0.8, -0.6, 0.3]) + 0.3 > 0).astype(int)
    guest_ids, host1_ids, host2_ids = people[:n], people[10 : n + 10], people[20 : n + 20]
    idx = {p: i for i, p in enumerate(people)}

    def write(name: str, ids: list[str], header: str, cols: list[int], label: bool) -> Path:
        lines = [header]
        for p in ids:
            vals = [f"{x[idx[p], c]:.6f}" for c in cols] + ([str(y[idx[p]])] if label else [])
            lines.append(",".join([noisy_phone(p, rng), *vals]))
        path = where / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n")
        return path

    files = [
        ProviderInput("g", "ds-g", write("g", guest_ids, "tel,f0,f1,label", [0, 1], True)),
        ProviderInput("h1", "ds-h1", write("h1", host1_ids, "tel,g0,g1", [2, 3], False)),
        ProviderInput("h2", "ds-h2", write("h2", host2_ids, "tel,h0,h1", [4, 5], False)),
    ]
    common = sorted(set(guest_ids) & set(host1_ids) & set(host2_ids))
    return files, {"x": x, "y": y, "idx": idx, "common": common}


PARAMS = HeteroParams(
    kind="phone",
    keys=["tel", "tel", "tel"],
    label="label",
    features=[["f0", "f1"], ["g0", "g1"], ["h0", "h1"]],
    iterations=3,
)


def test_sandboxed_parties_train_the_same_model_as_the_in_process_protocol(
    tmp_path: Path,
) -> None:
    files, truth = _tables(tmp_path)
    job = HeteroJob(PARAMS, files, sandbox=default_sandbox(tmp_path), job_id="v1", key_bits=1024)
    weights, rows = job.train()
    common = truth["common"]
    assert rows == len(common) == 100  # type: ignore[arg-type]
    # The same protocol in process on the plaintext join (any row order: full batch).
    x, y, idx = truth["x"], truth["y"], truth["idx"]
    sel = [idx[p] for p in common]  # type: ignore[index, attr-defined]
    part = [
        _features([[f"{v:.6f}" for v in r] for r in x[sel][:, c]], 2, 3)
        for c in ([0, 1], [2, 3], [4, 5])
    ]  # type: ignore[index]
    ref = hetero_lr.train(part[0], y[sel], part[1:], PARAMS.config(1024))  # type: ignore[index]
    assert np.allclose(weights[0], ref.guest_weights, atol=1e-6)
    for got, want in zip(weights[1:], ref.host_weights, strict=True):
        assert np.allclose(got, want, atol=1e-6)
    # The relay never carried a phone number; the released model goes through the gate.
    release = job.release(
        weights, rows, ReleaseGate(InMemoryPrivacyBudget()), ReleaseObligations(min_cohort=20)
    )
    model = release.review()
    assert set(model.weights) == {"ds-g", "ds-h1", "ds-h2"} and model.dp_epsilon is None


def test_too_few_aligned_rows_are_refused_in_the_guest_sandbox(tmp_path: Path) -> None:
    files, _ = _tables(tmp_path)
    job = HeteroJob(
        PARAMS,
        files,
        sandbox=default_sandbox(tmp_path),
        job_id="v2",
        key_bits=1024,
        min_rows=101,
    )
    with pytest.raises(IntersectionTooSmall):
        job.train()

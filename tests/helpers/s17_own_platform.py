"""Helpers for the requester's own platform-held inputs (s17): parties in-process, seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sandbox._isolation_model import OperatorContext, SandboxResult
from sandbox.dp import SeededNoise
from sandbox.join_party import party as join_party
from sandbox.noise_shares import NoisePlan, noise_share
from sandbox.vertical_party import party as vertical_party

_CODE = {"psi.sum": join_party, "fl.hetero_logreg": vertical_party}
"""The registry's code for each session operator (`sandbox._registry`), run here."""


class _Session:
    """One party's session: the real operator code on a context kept between calls."""

    def __init__(self, operator: str, inputs: list[Path]) -> None:
        self.operator, self.fn = operator, _CODE[operator]
        self.ctx = OperatorContext(inputs=tuple(inputs), scratch=Path("/nonexistent"),
                                   params={}, blobs={})  # fmt: skip

    def call(self, params: dict[str, Any], blobs: dict[str, bytes]) -> SandboxResult:
        self.ctx.params, self.ctx.blobs = dict(params), dict(blobs)
        return SandboxResult(self.operator, self.fn(self.ctx), 0.0)

    def close(self) -> None:
        self.ctx.state.clear()

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class InProcessParties:
    """Each party's side in this process, so that a test can seed its DP draw.

    What runs is the operator code a provider's sandbox runs (`sandbox.join_party`,
    `sandbox.vertical_party`); only the bubblewrap process around it is left out, which a
    seeded generator set in this process could not reach.
    """

    def check(self) -> None:
        return None

    def open_session(self, operator: str, inputs: list[Path]) -> _Session:
        return _Session(operator, inputs)


def seed_for_share(plan: NoisePlan, draw: int) -> int:
    """The first seed whose share draw (the production `noise_share` law) is exactly `draw`."""
    for seed in range(20_000):
        if noise_share(plan, 1, rng=np.random.default_rng(seed)) == [draw]:
            return seed
    raise AssertionError(f"no seed draws {draw}")


def seed_for_gate(scale: float, draw: int) -> int:
    """The first seed whose first discrete Laplace draw of the release gate's noise is `draw`."""
    for seed in range(20_000):
        if SeededNoise(np.random.default_rng(seed)).laplace([0], scale) == [draw]:
            return seed
    raise AssertionError(f"no seed draws {draw}")


def phones(start: int, count: int) -> list[str]:
    """Distinct valid mobile numbers (11 digits, 139…)."""
    return [f"139{i:08d}" for i in range(start, start + count)]


def table(header: str, people: list[str], seed: int, label: bool = False) -> str:
    """A CSV of `people` (the header's feature columns normal; a label from a linear model)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(people), len(header.split(",")) - 1 - int(label)))
    rows = [header]
    for p, xi in zip(people, x, strict=True):
        cells = [f"{v:.6f}" for v in xi]
        if label:
            cells.append(str(int(xi.sum() + rng.normal(scale=0.5) > 0)))
        rows.append(",".join([p, *cells]))
    return "\n".join(rows) + "\n"

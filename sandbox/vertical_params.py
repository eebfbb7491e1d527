"""Parameters of `fl.hetero_logreg`: vertical logistic regression over two to four providers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandbox.hetero_lr import HeteroConfig
from sandbox.identifiers import IdKind

__all__ = ["HeteroParams"]


class HeteroParams(BaseModel):
    """inputs[0] is the guest (labels and its features), the others hosts (features only).

    Rows are aligned by ECDH-PSI on each input's `keys[i]` column (normalised as `kind`);
    the alignment stays inside the parties' sandboxes. DP comes from the policy.
    """

    model_config = ConfigDict(extra="forbid")

    kind: IdKind
    keys: list[str] = Field(min_length=2, max_length=4, description="key column per input")
    label: str = Field(min_length=1, max_length=200, description="0/1 column of inputs[0]")
    features: list[list[str]] = Field(
        min_length=2, max_length=4, description="feature columns per input, in input order"
    )
    iterations: int = Field(default=20, ge=1, le=100)
    learning_rate: float = Field(default=1.0, gt=0, le=10)
    C: float = Field(default=1.0, gt=0, le=100)

    @model_validator(mode="after")
    def _shape(self) -> HeteroParams:
        if len(self.features) != len(self.keys):
            raise ValueError("one list of features per input (as many as keys)")
        if any(not f for f in self.features[1:]) or any(len(f) > 32 for f in self.features):
            raise ValueError("each host gives 1 to 32 features, the guest at most 32")
        for key, feats in zip(self.keys, self.features, strict=True):
            if key in feats or len(set(feats)) != len(feats):
                raise ValueError("features are distinct and never the key column")
        if self.label in self.features[0] or self.label == self.keys[0]:
            raise ValueError("the label is neither a feature nor the key")
        return self

    def config(self, key_bits: int) -> HeteroConfig:
        return HeteroConfig(
            key_bits=key_bits,
            iterations=self.iterations,
            learning_rate=self.learning_rate,
            c=self.C,
        )

    def columns(self, position: int) -> list[str]:
        """The columns input `position` reads: key, then features (and the label for the guest)."""
        extra = [self.label] if position == 0 else []
        return [self.keys[position], *self.features[position], *extra]

    def used_columns(self) -> list[str]:
        return []

    def as_job(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

"""Offer terms and their ODRL 2.2 JSON-LD form (DSP-compatible), prices in exact CNY fen.

An offer is what pdx enforces (`Terms`: delivery mode, operators, purposes, duration,
count/rows/ε limits, price model) and what it publishes: an `odrl:Offer` whose
permission carries the constraints (ODRL 2.2 left operands `purpose`, `count`,
`elapsedTime`; pdx's own `pdx:operator`, `pdx:rowsTouched`, `pdx:epsilon`) and whose
`compensate` duty carries the price (`payAmount`, unit CNY).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sandbox.operators import OPERATORS

__all__ = [
    "DSP_CONTEXT",
    "Delivery",
    "PriceModel",
    "Terms",
    "fen",
    "odrl_policy",
    "yuan",
]

DSP_CONTEXT: list[Any] = [
    "https://w3id.org/dspace/2024/1/context.json",
    {
        "odrl": "http://www.w3.org/ns/odrl/2/",
        "dcat": "http://www.w3.org/ns/dcat#",
        "dct": "http://purl.org/dc/terms/",
        "xsd": "http://www.w3.org/2001/XMLSchema#",
        "pdx": "https://pdx.example.org/ns/market#",
    },
]
CNY = "https://www.iso.org/iso-4217-currency-codes.html#CNY"
_CENT = Decimal("0.01")


class Delivery(StrEnum):
    COMPUTATION = "computation"
    DOWNLOAD = "download"


class PriceModel(StrEnum):
    PER_COMPUTATION = "per_computation"
    PER_1K_ROWS = "per_1k_rows"
    SUBSCRIPTION = "subscription"
    FREE = "free"


def fen(amount: Decimal) -> int:
    """An exact CNY amount with at most two decimals as integer fen (分)."""
    scaled = amount * 100
    if scaled != scaled.to_integral_value():
        raise ValueError("CNY amounts have at most two decimals")
    return int(scaled)


def yuan(amount_fen: int) -> str:
    """Integer fen as a decimal string with two places ("12.30")."""
    return str((Decimal(amount_fen) / 100).quantize(_CENT))


def round_fen(value: Decimal) -> int:
    """Round a fractional fen amount half up to a whole fen (the meter's one rounding)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class Terms(BaseModel):
    """The terms of one offer (and of a counter-offer, and of the agreement)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    delivery: Delivery = Delivery.COMPUTATION
    operators: list[str] = Field(default_factory=list, max_length=32)
    purposes: list[str] = Field(min_length=1, max_length=16)
    duration_days: int = Field(default=365, ge=1, le=3650)
    max_computations: int | None = Field(default=None, ge=1, le=10**9)
    max_rows: int | None = Field(default=None, ge=1, le=10**15)
    epsilon_share: float | None = Field(default=None, ge=0, le=100)
    price_model: PriceModel = PriceModel.FREE
    price: Decimal = Field(default=Decimal("0"), ge=0, le=Decimal("100000000"))
    period_days: int | None = Field(default=None, ge=1, le=366)
    currency: Literal["CNY"] = "CNY"

    @field_validator("price")
    @classmethod
    def _two_places(cls, value: Decimal) -> Decimal:
        fen(value)  # raises on a third decimal
        return value.quantize(_CENT)

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, value: list[str]) -> list[str]:
        if any(not 3 <= len(p) <= 500 for p in value):
            raise ValueError("each purpose is 3-500 characters")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _consistent(self) -> Terms:
        unknown = [o for o in self.operators if o not in OPERATORS]
        if unknown:
            raise ValueError(f"unknown operator(s): {', '.join(unknown)}")
        if self.delivery is Delivery.COMPUTATION and not self.operators:
            raise ValueError("a computation offer names the operators it permits")
        if (self.price_model is PriceModel.FREE) != (self.price == 0):
            raise ValueError("a free offer has price 0 and a priced one a price above 0")
        if (self.price_model is PriceModel.SUBSCRIPTION) != (self.period_days is not None):
            raise ValueError("period_days goes with (and only with) a subscription")
        return self

    @property
    def price_fen(self) -> int:
        return fen(self.price)


def odrl_policy(
    terms: Terms,
    *,
    policy_type: str,
    uid: str,
    target: str,
    assigner: str,
    assignee: str | None = None,
) -> dict[str, Any]:
    """The ODRL 2.2 policy (JSON-LD) of these terms: `odrl:Offer` or `odrl:Agreement`."""
    constraints: list[dict[str, Any]] = [
        {"odrl:leftOperand": "odrl:purpose", "odrl:operator": "odrl:isAnyOf",
         "odrl:rightOperand": list(terms.purposes)},
        {"odrl:leftOperand": "pdx:deliveryMode", "odrl:operator": "odrl:eq",
         "odrl:rightOperand": terms.delivery.value},
        {"odrl:leftOperand": "odrl:elapsedTime", "odrl:operator": "odrl:lteq",
         "odrl:rightOperand": {"@value": f"P{terms.duration_days}D", "@type": "xsd:duration"}},
    ]  # fmt: skip
    if terms.operators:
        constraints.append(
            {"odrl:leftOperand": "pdx:operator", "odrl:operator": "odrl:isAnyOf",
             "odrl:rightOperand": list(terms.operators)}
        )  # fmt: skip
    for operand, limit in (
        ("odrl:count", terms.max_computations),
        ("pdx:rowsTouched", terms.max_rows),
        ("pdx:epsilon", terms.epsilon_share),
    ):
        if limit is not None:
            constraints.append(
                {"odrl:leftOperand": operand, "odrl:operator": "odrl:lteq",
                 "odrl:rightOperand": limit}
            )  # fmt: skip
    duty: dict[str, Any] = {
        "odrl:action": "odrl:compensate",
        "pdx:priceModel": terms.price_model.value,
        "odrl:constraint": [
            {"odrl:leftOperand": "odrl:payAmount", "odrl:operator": "odrl:eq",
             "odrl:rightOperand": {"@value": str(terms.price), "@type": "xsd:decimal"},
             "odrl:unit": CNY}
        ],
    }  # fmt: skip
    if terms.period_days is not None:
        duty["pdx:periodDays"] = terms.period_days
    policy: dict[str, Any] = {
        "@context": DSP_CONTEXT,
        "@type": policy_type,
        "@id": uid,
        "odrl:target": target,
        "odrl:assigner": assigner,
        "odrl:permission": [
            {
                "odrl:action": "odrl:use"
                if terms.delivery is Delivery.COMPUTATION
                else "odrl:reproduce",
                "odrl:constraint": constraints,
                "odrl:duty": [duty] if terms.price_model is not PriceModel.FREE else [],
            }
        ],
    }
    if assignee is not None:
        policy["odrl:assignee"] = assignee
    return policy

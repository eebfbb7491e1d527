"""Join test data (issue 18 wiring): a cohort and a value table sharing people, typed differently."""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

from tests.helpers.i18_psi import noisy_phone, phone


@dataclass
class JoinData:
    """Two CSV texts (cohort: phone, tier; values: phone, amount) and their plaintext join."""

    cohort_csv: str
    values_csv: str
    common: set[str]
    amount: dict[str, Fraction]
    tier: dict[str, str]

    def sum_over(self, tier: str | None = None) -> Fraction:
        return sum(
            (self.amount[p] for p in self.common if tier is None or self.tier[p] == tier),
            Fraction(0),
        )

    def count(self, tier: str | None = None) -> int:
        return sum(1 for p in self.common if tier is None or self.tier[p] == tier)


def join_data(seed: int, *, cohort: int = 60, values: int = 70, common: int = 40) -> JoinData:
    """Phones written with +86, 0086, spaces or dashes on either side; amounts with 2 decimals."""
    rng = random.Random(seed)
    people: list[str] = []
    while len(people) < cohort + values - common:
        p = phone(rng)
        if p not in people:
            people.append(p)
    left, right = people[:cohort], people[cohort - common :]
    tier = {p: rng.choice("AB") for p in left}
    amount = {p: Fraction(rng.randrange(0, 100_00), 100) for p in right}
    rows = ["mobile,tier"] + [f"{noisy_phone(p, rng)},{tier[p]}" for p in left]
    shuffled = right[:]
    rng.shuffle(shuffled)
    vals = ["msisdn,amount"] + [f"{noisy_phone(p, rng)},{float(amount[p]):.2f}" for p in shuffled]
    return JoinData(
        "\n".join(rows) + "\n",
        "\n".join(vals) + "\n",
        set(left) & set(right),
        amount,
        tier,
    )

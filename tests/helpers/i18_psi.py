"""Generated identifiers with formatting noise for the PSI and hetero-LR tests (issue 18)."""

from __future__ import annotations

import random

from sandbox.identifiers import id_check_char


def id_number(rng: random.Random) -> str:
    """A valid 18-character resident identity number."""
    body = f"{rng.randrange(110000, 660000)}{rng.randrange(1950, 2005)}"
    body += f"{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}{rng.randrange(0, 1000):03d}"
    return body + id_check_char(body)


def noisy_id(value: str, rng: random.Random) -> str:
    """The same number as a person might type it: spaces, dashes, lower x, full width."""
    choice = rng.randrange(4)
    if choice == 0:
        return f"{value[:6]} {value[6:14]} {value[14:]}".lower()
    if choice == 1:
        return f"{value[:6]}-{value[6:14]}-{value[14:]}"
    if choice == 2:
        return "".join(chr(ord(c) + 0xFEE0) for c in value)  # full-width forms
    return f" {value.lower()} "


def phone(rng: random.Random) -> str:
    return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))


def distinct_phones(rng: random.Random, n: int) -> list[str]:
    """`n` different phone numbers, in the order drawn."""
    people: list[str] = []
    while len(people) < n:
        p = phone(rng)
        if p not in people:
            people.append(p)
    return people


def noisy_phone(value: str, rng: random.Random) -> str:
    choice = rng.randrange(4)
    if choice == 0:
        return f"+86 {value[:3]} {value[3:7]} {value[7:]}"
    if choice == 1:
        return f"0086-{value[:3]}-{value[3:7]}-{value[7:]}"
    if choice == 2:
        return "86" + value
    return value

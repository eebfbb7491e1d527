"""The dataset listing pages the caller's visible datasets in registration order.

`exchange.catalog.list_datasets` takes two routes to a page: it walks the registration
index when most datasets are visible and asks for the visible combinations otherwise.
Both must give the same pages, totals and order: every visible dataset once, none other.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from bench.market import _dataset
from exchange.catalog import list_datasets
from exchange.models import Dataset, Organisation
from exchange.paging import Window
from gateway.platform import Platform

START = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
LEVELS = ["general-1", "general-2", "general-3", "important"]


def _seed(platform: Platform, n: int) -> list[dict[str, Any]]:
    rng = random.Random(5)
    with platform.session() as s, s.begin():
        orgs = [o.id for o in s.scalars(select(Organisation))]
        rows = []
        for i in range(n):
            row = _dataset(rng.choice(orgs), START, rng.random() < 0.3)
            # Some share a registration time: the id breaks the tie.
            row["registered_at"] = START + timedelta(seconds=i // 3)
            row["level"] = rng.choice(LEVELS)
            row["pi"] = rng.random() < 0.2
            row["name"] = f"listing {i}"
            rows.append(row)
        s.execute(insert(Dataset), rows)
    return rows


def _pages(
    platform: Platform, visible: Callable[[Mapping[str, Any]], bool], total: int
) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        with platform.session() as s:
            page = list_datasets(s, visible=visible, window=Window(limit=7, after=after))
        seen += [d.id for d in page.items]
        assert page.total == total
        if page.last is None:
            return seen
        after = page.last


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(lambda r: r["level"] != "important", id="most-visible-walks-the-index"),
        pytest.param(lambda r: r["level"] == "general-3" and not r["pi"], id="few-visible"),
        pytest.param(lambda r: True, id="all"),
    ],
)
def test_every_visible_dataset_once_in_registration_order(
    platform: Platform, creds: dict[str, Any], rule: Callable[[Mapping[str, Any]], bool]
) -> None:
    _seed(platform, 150)
    with platform.session() as s:
        everything = s.execute(
            select(
                Dataset.id, Dataset.registered_at, Dataset.level, Dataset.open_attribute,
                Dataset.owner_org, Dataset.pi,
            )
        ).all()  # fmt: skip
    expected = [
        r.id
        for r in sorted(everything, key=lambda r: (r.registered_at, r.id))
        if rule(
            {
                "type": "dataset",
                "level": r.level,
                "open_attribute": r.open_attribute,
                "owner_org": r.owner_org,
                "pi": r.pi,
            }
        )  # fmt: skip
    ]
    assert 0 < len(expected) <= len(everything)
    assert _pages(platform, rule, len(expected)) == expected

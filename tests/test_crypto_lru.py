"""`crypto.lru.Lru`, the eviction the policy decision cache and TtlCache share."""

from __future__ import annotations

import pytest

from crypto.lru import Lru


def test_the_least_recently_used_entry_goes_first() -> None:
    lru: Lru[str, int] = Lru(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c"), len(lru)) == (1, None, 3, 2)


def test_peek_does_not_renew_and_put_does() -> None:
    lru: Lru[str, int] = Lru(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.peek("a") == 1  # still the oldest
    lru.put("c", 3)
    assert lru.peek("a") is None
    lru.put("b", 20)  # b renewed: c is the oldest now
    lru.put("d", 4)
    assert (lru.peek("b"), lru.peek("c"), lru.peek("d")) == (20, None, 4)


def test_pop_and_clear_forget() -> None:
    lru: Lru[str, int] = Lru(3)
    lru.put("a", 1)
    lru.put("b", 2)
    lru.pop("a")
    lru.pop("missing")
    assert (lru.get("a"), len(lru)) == (None, 1)
    lru.clear()
    assert len(lru) == 0


def test_an_lru_holds_at_least_one_value() -> None:
    with pytest.raises(ValueError):
        Lru(0)

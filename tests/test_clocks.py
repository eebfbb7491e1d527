"""Expiry in the gateway's caches runs on an injected monotonic clock, not on sleeps."""

from __future__ import annotations

from datetime import timedelta

from gateway.cache import TtlCache
from gateway.tokens import TokenService


def test_ttl_cache_entries_expire_on_the_injected_clock() -> None:
    now = [50.0]
    cache: TtlCache[str, int] = TtlCache(ttl_s=5.0, clock=lambda: now[0])
    cache.put("a", 1)
    now[0] += 4.999
    assert cache.get("a") == 1
    now[0] += 0.001
    assert cache.get("a") is None  # dropped exactly at ttl_s


def test_unknown_key_ids_reload_at_most_once_per_interval() -> None:
    now = [0.0]
    tokens = TokenService(
        issuer="pdx", audience="pdx-api", ttl=timedelta(minutes=15), clock=lambda: now[0]
    )
    reloads: list[float] = []
    tokens.reload_with(lambda: reloads.append(now[0]))
    assert tokens._verifier("kid-1") is None  # first unknown kid: reload at once
    assert tokens._verifier("kid-2") is None  # within 5 s: no second database trip
    now[0] += 5.0
    assert tokens._verifier("kid-3") is None
    now[0] += 0.01
    assert tokens._verifier("kid-4") is None
    assert reloads == [0.0, 5.01]

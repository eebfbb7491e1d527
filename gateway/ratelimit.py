"""Token buckets in memory, per process: limits on logins and failures before the costly work.

Keys are (client id, source address) for token requests and the source address for
authentication failures, so a flood from one address spends that address's budget and
no one else's: a victim logging in from elsewhere is not locked out (issue 11).
Each gateway process keeps its own buckets; behind N processes the effective limit is
up to N times the setting, which still bounds the work a flood can cause.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread

from gateway.errors import GatewayError

T = TypeVar("T")

# Buckets kept at most; the least recently used are dropped first (a dropped key
# starts again with a full bucket, so the bound trades a little precision for memory).
MAX_KEYS = 100_000


class RateLimiter:
    """Token buckets: `capacity` requests at once, refilled at `per_minute` a minute."""

    def __init__(
        self,
        *,
        capacity: int,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if capacity < 1 or per_minute <= 0:
            raise ValueError("a rate limit needs capacity >= 1 and a positive rate")
        self.capacity = float(capacity)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _level(self, key: Hashable, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def retry_after(self, key: Hashable) -> float:
        """Seconds until `key` may go ahead (0 when it may now), consuming nothing."""
        with self._lock:
            level = self._level(key, self._clock())
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate

    def take(self, key: Hashable) -> float:
        """Spend one request of `key`'s budget: 0 when allowed, else seconds to wait."""
        with self._lock:
            now = self._clock()
            level = self._level(key, now)
            if level < 1.0:
                self._buckets[key] = (level, now)
                self._buckets.move_to_end(key)
                return (1.0 - level) / self.rate
            self._buckets[key] = (level - 1.0, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return 0.0

    def give_back(self, key: Hashable) -> None:
        """Return one request `take` spent (its work turned out not to count)."""
        with self._lock:
            if key in self._buckets:
                now = self._clock()
                self._buckets[key] = (min(self.capacity, self._level(key, now) + 1.0), now)


class Attempt:
    """One authentication attempt that holds a slot of its address's failure budget.

    The slot is taken before the secret is checked, so concurrent guesses from one
    address can never start more (costly) checks than the budget has room for: when
    the budget was checked and only counted after the check, every guess arriving while
    others were being verified went through too (a flood of 12 users ran ~10x the
    budget's scrypt checks). The slot is spent when the attempt fails and given back
    otherwise; a failure after it was given back (e.g. the client was deactivated
    between the check and the transaction) counts anew.
    """

    def __init__(self, failures: RateLimiter, address: str | None) -> None:
        self._failures = failures
        self._address = address
        self._state = "held"  # held → spent | returned
        self._lock = threading.Lock()

    def failed(self) -> float:
        """Count this attempt as a failure (as `Limits.failed`: the wait if over budget)."""
        with self._lock:
            held, self._state = self._state == "held", "spent"
        return 0.0 if held else self._failures.take(self._address)

    def release(self) -> None:
        """The attempt did not fail its authentication: give its slot back (idempotent)."""
        with self._lock:
            held = self._state == "held"
            if held:
                self._state = "returned"
        if held:
            self._failures.give_back(self._address)


class SecretChecks:
    """Runs secret checks (scrypt) on their own few worker threads, a few per address.

    At most `total` checks run at once, so they never hold the shared thread pool every
    other route needs (40 threads), and at most `per_address` for one source address: a
    flood from one address queues behind its own checks while a client elsewhere finds a
    free slot. Used on the event loop only (no locking needed).
    """

    def __init__(self, *, total: int, per_address: int) -> None:
        if total < 1 or per_address < 1:
            raise ValueError("secret checks need total >= 1 and per_address >= 1")
        self.total = total
        self.per_address = per_address
        self._limiter: anyio.CapacityLimiter | None = None
        self._addresses: dict[str | None, tuple[anyio.Semaphore, int]] = {}

    async def run(self, address: str | None, check: Callable[[], T]) -> T:
        """`check()` in a worker thread once a slot of `address` and an overall one are free."""
        if self._limiter is None:  # created on the event loop, at first use
            self._limiter = anyio.CapacityLimiter(self.total)
        slots, users = self._addresses.get(address) or (anyio.Semaphore(self.per_address), 0)
        self._addresses[address] = (slots, users + 1)
        try:
            async with slots:
                return await anyio.to_thread.run_sync(check, limiter=self._limiter)
        finally:
            slots, users = self._addresses[address]
            if users > 1:
                self._addresses[address] = (slots, users - 1)
            else:
                del self._addresses[address]  # only addresses with checks waiting are kept


class Tarpit:
    """Answers refused token requests late, so a flood that waits for answers goes slowly.

    A flooder over its budget was refused as fast as the event loop could answer (780 a
    second from 12 users), and each refusal took a turn of the loop a legitimate login
    waited for. Held back `delay_s` (at most the `Retry-After` it is told), a flooder that
    waits for its answers (most do) sends one request per connection and delay. At most
    `max_held` refusals are held at once; past that they are answered at once.
    """

    def __init__(self, delay_s: float, *, max_held: int = 1000) -> None:
        self.delay_s = delay_s
        self.max_held = max_held
        self._held = 0  # on the event loop only

    async def hold(self, retry_after: float) -> None:
        delay = min(self.delay_s, retry_after)
        if delay <= 0 or self._held >= self.max_held:
            return
        self._held += 1
        try:
            await anyio.sleep(delay)
        finally:
            self._held -= 1


def too_many(retry_after: float, detail: str) -> GatewayError:
    """429 problem+json with `Retry-After` in whole seconds (RFC 9110 §10.2.3)."""
    return GatewayError(
        "rate-limited",
        "Too many requests",
        detail,
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


@dataclass(frozen=True)
class Limits:
    """The gateway's rate limits, one set per process (on `app.state.limits`)."""

    tokens: RateLimiter  # token requests per (client id, source address)
    failures: RateLimiter  # authentication failures per source address
    tarpit: Tarpit = field(default_factory=lambda: Tarpit(0.0))  # refusals answered late
    checks: SecretChecks = field(  # client-secret checks running at once
        default_factory=lambda: SecretChecks(total=max(4, 2 * (os.cpu_count() or 1)), per_address=2)
    )

    def check_token_request(self, client_id: str, address: str | None) -> None:
        """Before any secret is checked: the address's failure budget, then the client's."""
        wait = self.failures.retry_after(address)
        if wait > 0:
            raise too_many(wait, "too many failed authentications from this address")
        wait = self.tokens.take((client_id, address))
        if wait > 0:
            raise too_many(wait, "too many token requests for this client from this address")

    def admit(self, client_id: str, address: str | None) -> Attempt:
        """Before any secret is checked: hold a failure slot, spend a request of the rate.

        429 when the address's failure budget or the client's rate is exhausted. Settle
        the attempt afterwards (`Attempt.failed` or `Attempt.release`).
        """
        wait = self.failures.take(address)
        if wait > 0:
            raise too_many(wait, "too many failed authentications from this address")
        attempt = Attempt(self.failures, address)
        wait = self.tokens.take((client_id, address))
        if wait > 0:
            attempt.release()
            raise too_many(wait, "too many token requests for this client from this address")
        return attempt

    def failed(self, address: str | None) -> float:
        """Count an authentication failure; the wait if the address is now over budget."""
        return self.failures.take(address)

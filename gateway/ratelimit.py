"""Rate limits before the costly work: token buckets per process, failure budgets shared.

Keys are (client id, source address) for token requests and the source address for
authentication failures, so a flood from one address spends that address's budget and
no one else's: a victim logging in from elsewhere is not locked out (issue 11).
The token-request rate and bearer-token failures are counted per process (behind N
processes up to N times the setting). Sign-in failures (client secrets, person
passwords) are counted in a store every process of the deployment shares
(`SharedFailures` over `exchange.login_budgets`), so N processes do not multiply them.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import anyio
import anyio.to_thread
from fastapi import Request

from audit.catalogue import Event
from exchange.login_budgets import bucket_shape
from gateway.auditing import client_ip
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
        self.capacity, self.rate = bucket_shape(capacity, per_minute, what="a rate limit")
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


class FailureStore(Protocol):
    """Failure budgets every process shares (`exchange.login_budgets.FailureBudgets`)."""

    capacity: float
    rate: float

    def level(self, key: str, now: float) -> float: ...

    def spend(self, key: str, now: float) -> float: ...


class SharedFailures:
    """Sign-in failure budgets in a shared store, with this process's in-flight slots.

    A slot is held while a secret is checked: the store's level, less the slots this
    process holds, must leave one failure. A failure is written to the store (one
    upsert) before its slot is freed, so a check in this process never counts it twice
    too few; a success frees its slot and writes nothing. Other processes' in-flight
    checks are not seen, so a burst may overshoot by them; the store then records a
    debt, and the address waits it off: over time no more than the rate gets through.
    An address found over budget is refused here, without the store, until it refills.
    """

    def __init__(self, store: FailureStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock  # wall-clock seconds: the store's times are shared by processes
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}
        self._blocked: dict[str, float] = {}  # key → when the store's level is back to 1

    def blocked(self, key: str) -> float:
        """Seconds `key` is known to stay over budget (0: ask the store). No I/O."""
        until = self._blocked.get(key)
        if until is None:
            return 0.0
        wait = until - self._clock()
        if wait <= 0:
            self._blocked.pop(key, None)
            return 0.0
        return wait

    def hold(self, key: str) -> float:
        """Take a slot for one check (0), or the seconds to wait. Reads the store."""
        with self._lock:  # the read and the count together: see the class docstring
            now = self._clock()
            level = self.store.level(key, now)
            held = self._held.get(key, 0)
            if level - held < 1.0:
                if level < 1.0:
                    if len(self._blocked) > MAX_KEYS:
                        self._blocked.clear()
                    self._blocked[key] = now + (1.0 - level) / self.store.rate
                return (held + 1.0 - level) / self.store.rate
            self._held[key] = held + 1
            return 0.0

    def spend(self, key: str, *, held: bool) -> float:
        """Count one failure (freeing the slot if `held`); the wait if now over budget."""
        left = self.store.spend(key, self._clock())
        if held:
            self._free(key)
        return 0.0 if left >= 0.0 else -left / self.store.rate

    def free(self, key: str) -> None:
        """A held check did not fail: its slot goes back, nothing is written."""
        self._free(key)

    def _free(self, key: str) -> None:
        with self._lock:
            held = self._held.get(key, 0) - 1
            if held > 0:
                self._held[key] = held
            else:
                self._held.pop(key, None)


def _address_key(address: str | None) -> str:
    return f"addr:{address or '-'}"


class Attempt:
    """One sign-in attempt that holds a slot of its address's failure budget.

    The slot is taken before the secret is checked (`hold`, on the thread that checks
    it), so concurrent guesses from one address can never start more (costly) checks
    than the budget has room for: when the budget was checked and only counted after
    the check, every guess arriving while others were being verified went through too
    (a flood of 12 users ran ~10x the budget's scrypt checks). The slot is spent when
    the attempt fails and given back otherwise; a failure after it was given back (e.g.
    the client was deactivated between the check and the transaction) counts anew.

    A failure is noted where it is found, often inside the request's write transaction,
    and written to the shared store by `settle`, once that transaction is over (on
    SQLite a second writer in the same thread would wait for itself).
    """

    def __init__(self, failures: SharedFailures, address: str | None) -> None:
        self._failures = failures
        self._key = _address_key(address)
        self._state = "new"  # new → held → spent | returned
        self._pending = 0  # failures noted, not yet written
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Take the slot before the check: 429 (`too_many`) when the budget has no room."""
        with self._lock:
            if self._state != "new":
                return
            wait = self._failures.hold(self._key)
            if wait > 0:
                self._state = "returned"
                raise too_many(wait, "too many failed authentications from this address")
            self._state = "held"

    def failed(self) -> None:
        """Note this attempt as a failure; `settle` writes it (spending the held slot)."""
        with self._lock:
            self._pending += 1

    def settle(self) -> None:
        """Write the failures noted so far (no transaction of this thread may be open)."""
        with self._lock:
            pending, self._pending = self._pending, 0
            held = self._state == "held"
            if pending:
                self._state = "spent"
        for i in range(pending):
            self._failures.spend(self._key, held=held and i == 0)

    def release(self) -> None:
        """The request is over: settle, and give a slot no failure spent back (idempotent)."""
        self.settle()
        with self._lock:
            held = self._state == "held"
            if self._state in ("new", "held"):
                self._state = "returned"
        if held:
            self._failures.free(self._key)


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


async def admit(request: Request, subject: str) -> Attempt:
    """Before a sign-in's secret is checked: `Limits.admit`, its 429 answered late.

    The attempt is the request's (`request.state.auth_attempt`): it holds a failure slot
    while the secret is checked (`run_check`), and the route releases it when it ends.
    """
    limits: Limits = request.app.state.limits
    try:
        attempt = limits.admit(subject, client_ip(request))
    except GatewayError as exc:
        await refuse_late(request, subject, exc)
        raise
    request.state.auth_attempt = attempt
    return attempt


async def refuse_late(request: Request, subject: str, exc: GatewayError) -> None:
    """A sign-in refused by a rate limit: audited as such (in bursts), answered late."""
    request.state.audit_event = Event.AUTH_RATE_LIMITED
    request.state.audit_deny = True
    request.state.object_id = subject[:64]
    limits: Limits = request.app.state.limits
    await limits.tarpit.hold(float(exc.headers.get("Retry-After", "1")))


async def run_check(request: Request, subject: str, check: Callable[[], T]) -> T:
    """`check()` (a secret check) on the `SecretChecks` threads, holding a failure slot.

    The request's attempt (`request.state.auth_attempt`, from `Limits.admit`) takes its
    slot on the checking thread first; a 429 then is answered like any other (late).
    """
    limits: Limits = request.app.state.limits
    attempt: Attempt = request.state.auth_attempt

    def held() -> T:
        attempt.hold()
        try:
            return check()
        finally:
            attempt.settle()

    try:
        return await limits.checks.run(client_ip(request), held)
    except GatewayError as exc:
        if exc.code == "rate-limited":
            await refuse_late(request, subject, exc)
        raise


async def settled(request: Request, work: Callable[[], T]) -> T:
    """`work()` on the shared thread pool, then the attempt's failures written (same thread).

    For the part of a sign-in after its secret check, which opens a write transaction.
    """
    attempt: Attempt = request.state.auth_attempt

    def run() -> T:
        try:
            return work()
        finally:
            attempt.settle()

    return await anyio.to_thread.run_sync(run)


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

    tokens: RateLimiter  # token requests per (client id, source address), this process
    failures: RateLimiter  # bearer-token failures per source address, this process
    logins: SharedFailures  # sign-in failures per source address, every process
    tarpit: Tarpit = field(default_factory=lambda: Tarpit(0.0))  # refusals answered late
    checks: SecretChecks = field(  # secret checks running at once
        default_factory=lambda: SecretChecks(total=max(4, 2 * (os.cpu_count() or 1)), per_address=2)
    )

    def admit(self, client_id: str, address: str | None) -> Attempt:
        """Before any secret is checked, on the event loop: the cheap refusals.

        429 when this address is known over its sign-in budget, has spent this
        process's bearer-failure budget, or the client's rate is exhausted. The attempt
        then holds a failure slot (`Attempt.hold`, in the checking thread) and is settled
        afterwards (`Attempt.failed` or `Attempt.release`).
        """
        wait = max(self.logins.blocked(_address_key(address)), self.failures.retry_after(address))
        if wait > 0:
            raise too_many(wait, "too many failed authentications from this address")
        wait = self.tokens.take((client_id, address))
        if wait > 0:
            raise too_many(wait, "too many token requests for this client from this address")
        return Attempt(self.logins, address)

    def failed(self, address: str | None) -> float:
        """Count a bearer-token failure; the wait if the address is now over budget."""
        return self.failures.take(address)

    def login_failed(self, address: str | None) -> float:
        """Count a sign-in failure outside an attempt (shared); the wait if over budget."""
        return self.logins.spend(_address_key(address), held=False)

"""Who a token's client is, and what was revoked: a per-process view of the database.

Every request is checked against it. Client rows and the revocation list are refreshed
from the database at most `ttl` seconds apart (1 s by default), and at once after a
revocation or a client change made in this process; so a revocation made by another
gateway process takes effect there within `ttl`. This keeps the per-request checks
(client active, organisation, roles, token and login family not revoked) off the
database on the hot path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

import exchange
import exchange.people
from exchange.models import Client, Organisation, Person, RevokedToken, TokenFamily
from gateway.cache import TtlCache

# Rows are fetched from slightly before the newest revocation seen, so one committed
# late by a slow transaction (or a skewed clock) is not missed.
_OVERLAP = timedelta(seconds=30)


@dataclass(frozen=True)
class ClientView:
    client_id: str
    org_id: str
    org_kind: exchange.OrgKind
    roles: frozenset[exchange.Role]
    active: bool
    # The person behind the token (the client's owner, or the person themself).
    person_id: str | None = None
    person_created_by: str | None = None
    org_admin: bool = False


class Principals:
    """Thread-safe cache of clients and revocations (see module docstring)."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        *,
        ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock  # monotonic seconds; tests advance a fake one instead of sleeping
        self._sessions = sessions
        self._ttl = ttl_s
        self._lock = threading.Lock()
        # A 1-tuple, so that an unknown client (None) is cached too.
        self._clients: TtlCache[str, tuple[ClientView | None]] = TtlCache(
            ttl_s=ttl_s, clock=lambda: self.clock()
        )
        self._revoked_jtis: set[str] = set()
        self._revoked_families: set[str] = set()
        self._watermark: datetime | None = None
        self._refreshed = float("-inf")  # never

    def invalidate(self) -> None:
        """Forget everything: the next request reloads (after a change in this process)."""
        with self._lock:
            self._clients.clear()
            self._refreshed = float("-inf")  # never

    def client(self, client_id: str) -> ClientView | None:
        """The client (None if unknown); at most `ttl` old."""
        cached = self._clients.get(client_id)
        if cached is not None:
            return cached[0]
        now = self.clock()
        view = self._load(client_id)
        self._clients.put(client_id, (view,), at=now)
        return view

    def _load(self, client_id: str) -> ClientView | None:
        with self._sessions() as session:
            if client_id.startswith(exchange.people.PERSON_PREFIX):
                person = session.execute(
                    select(Person, Organisation.kind)
                    .join(Organisation, Organisation.id == Person.org_id)
                    .where(Person.id == client_id)
                ).first()
                if person is None:
                    return None
                p = person[0]
                return ClientView(
                    client_id=p.id,
                    org_id=p.org_id,
                    org_kind=exchange.OrgKind(person[1]),
                    roles=frozenset(exchange.Role(r) for r in p.roles),
                    active=p.status == exchange.people.ACTIVE,
                    person_id=p.id,
                    person_created_by=p.created_by_person,
                    org_admin=bool(p.org_admin),
                )
            row = session.execute(
                select(
                    Client.id,
                    Client.org_id,
                    Client.roles,
                    Client.active,
                    Organisation.kind,
                    Person.id.label("person_id"),
                    Person.created_by_person,
                    Person.org_admin,
                    Person.status,
                )
                .join(Organisation, Organisation.id == Client.org_id)
                .outerjoin(Person, Person.id == Client.owner_person_id)
                .where(Client.id == client_id)
            ).first()
        if row is None:
            return None
        # A client acts for its owner only while that person is active.
        owner_active = row.person_id is not None and row.status == exchange.people.ACTIVE
        return ClientView(
            client_id=row.id,
            org_id=row.org_id,
            org_kind=exchange.OrgKind(row.kind),
            roles=frozenset(exchange.Role(r) for r in row.roles),
            active=bool(row.active),
            person_id=row.person_id if owner_active else None,
            person_created_by=row.created_by_person if owner_active else None,
            org_admin=bool(row.org_admin) if owner_active else False,
        )

    def revoked(self, *, jti: str, family_id: str | None) -> bool:
        """Whether the access token or its login family is on the revocation list."""
        if self.clock() - self._refreshed >= self._ttl:
            self._refresh()
        return jti in self._revoked_jtis or (
            family_id is not None and family_id in self._revoked_families
        )

    def _refresh(self) -> None:
        with self._lock:
            since = self._watermark - _OVERLAP if self._watermark is not None else None
            with self._sessions() as session:
                jtis = select(RevokedToken.jti, RevokedToken.revoked_at)
                families = select(TokenFamily.id, TokenFamily.revoked_at).where(
                    TokenFamily.revoked_at.is_not(None)
                )
                if since is not None:
                    jtis = jtis.where(RevokedToken.revoked_at >= since)
                    families = families.where(TokenFamily.revoked_at >= since)
                newest = self._watermark
                for jti, at in session.execute(jtis):
                    self._revoked_jtis.add(jti)
                    newest = at if newest is None or at > newest else newest
                for family, at in session.execute(families):
                    self._revoked_families.add(family)
                    newest = at if newest is None or at > newest else newest
            self._watermark = newest
            self._refreshed = self.clock()

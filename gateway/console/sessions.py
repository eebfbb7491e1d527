"""Console sessions: a server-side store keyed by an HttpOnly, SameSite=Strict cookie.

The browser holds only an opaque random id. Each session has a synchronizer CSRF token
(OWASP CSRF cheat sheet), an idle and an absolute timeout, and, once a person has
signed in with password and TOTP, the person's access token for the in-process API
calls. Sign-in replaces the pre-login session with a new id (no session fixation).
The store is per process: several gateways behind a load balancer need sticky sessions
(or a shared store; not built yet).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

COOKIE = "pdx_console"
# The pre-sign-in session (login CSRF) has its own cookie: a cross-site navigation to the
# sign-in page (which carries no SameSite=Strict cookie) must not replace a live session.
PRE_COOKIE = "pdx_console_login"
MAX_SESSIONS = 10_000


@dataclass
class ConsoleSession:
    """One browser's session; `person` is None until the sign-in succeeds."""

    sid: str
    csrf: str
    created_at: datetime
    last_seen: datetime
    lang: str = "zh-CN"
    person: Person | None = None
    token: str = ""
    token_expires_at: datetime | None = None
    flash: list[str] = field(default_factory=list)
    # What this person already read, kept for reuse by this session only (see core.Ctx).
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Person:
    """Who signed in, from the API's `/v1/organisations/me` answer for their token."""

    person_id: str
    org_id: str
    org_kind: str
    roles: tuple[str, ...]
    login: str


class SessionStore:
    """Thread-safe in-memory sessions with idle and absolute expiry."""

    def __init__(
        self, *, idle: timedelta, absolute: timedelta, clock: Callable[[], datetime]
    ) -> None:
        self.idle = idle
        self.absolute = absolute
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, ConsoleSession] = {}

    def new(self, lang: str = "zh-CN") -> ConsoleSession:
        now = self.clock()
        s = ConsoleSession(
            sid=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            lang=lang,
        )
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._evict(now)
            self._sessions[s.sid] = s
        return s

    def get(self, sid: str | None) -> ConsoleSession | None:
        """The live session for `sid` (its idle clock restarted), or None once expired."""
        if not sid:
            return None
        now = self.clock()
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                return None
            if self._expired(s, now):
                del self._sessions[sid]
                return None
            s.last_seen = now
            return s

    def rotate(self, old: ConsoleSession, person: Person, token: str, expires: datetime) -> str:
        """Sign-in: a fresh id and CSRF token for the person; the old id stops working."""
        now = self.clock()
        fresh = ConsoleSession(
            sid=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            created_at=now,  # the absolute timeout counts from the sign-in
            last_seen=now,
            lang=old.lang,
            person=person,
            token=token,
            token_expires_at=expires,
        )
        with self._lock:
            self._sessions.pop(old.sid, None)
            self._sessions[fresh.sid] = fresh
        return fresh.sid

    def end(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def _expired(self, s: ConsoleSession, now: datetime) -> bool:
        return now - s.last_seen >= self.idle or now - s.created_at >= self.absolute

    def _evict(self, now: datetime) -> None:
        for sid in [k for k, v in self._sessions.items() if self._expired(v, now)]:
            del self._sessions[sid]
        if len(self._sessions) >= MAX_SESSIONS:  # still full: drop the oldest pre-logins
            oldest = sorted(self._sessions.values(), key=lambda v: v.last_seen)
            for v in oldest[: MAX_SESSIONS // 10]:
                del self._sessions[v.sid]


def csrf_ok(session: ConsoleSession, presented: str | None) -> bool:
    """Constant-time comparison of the presented token with the session's."""
    return bool(presented) and hmac.compare_digest(session.csrf, presented or "")

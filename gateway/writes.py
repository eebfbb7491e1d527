"""One /v1 write for a route: caller, session, clock and trail, and the failure it is audited as."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Self, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session

import exchange
from audit.catalogue import Event
from gateway.platform import Platform
from gateway.security import CallerDep, ClockDep, PlatformDep, SessionDep

T = TypeVar("T")


@dataclass(frozen=True)
class _Transaction:
    request: Request
    platform: Platform
    session: Session
    now: datetime

    def failing_as(self, event: Event, object_id: str | None = None) -> Self:
        """From here on a failure is audited as `event` (on `object_id` when given)."""
        self.request.state.audit_event = event
        if object_id is not None:
            self.request.state.object_id = object_id
        return self


@dataclass(frozen=True)
class Write(_Transaction):
    """What a state-changing route hands to `exchange`: the same five things every time."""

    caller: exchange.Caller

    def run(self, op: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`op(session, caller, *args, **kwargs, now=…, trail=…)` in one transaction."""
        with self.session.begin():
            return op(
                self.session, self.caller, *args, **kwargs, now=self.now, trail=self.platform.trail
            )


@dataclass(frozen=True)
class EnrolmentWrite(_Transaction):
    """A write before anyone signs in: the invitation code or the password authenticates."""

    def run(self, op: Callable[..., T], /, **kwargs: Any) -> T:
        """`op(session, keystore, **kwargs, now=…, trail=…)` in one transaction."""
        p = self.platform
        with self.session.begin():
            return op(self.session, p.keystore, **kwargs, now=self.now, trail=p.trail)


async def write_of(
    request: Request, caller: CallerDep, platform: PlatformDep, session: SessionDep, now: ClockDep
) -> Write:
    return Write(request, platform, session, now, caller)


async def enrolment_write_of(
    request: Request, platform: PlatformDep, session: SessionDep, now: ClockDep
) -> EnrolmentWrite:
    return EnrolmentWrite(request, platform, session, now)


WriteDep = Annotated[Write, Depends(write_of)]
EnrolmentWriteDep = Annotated[EnrolmentWrite, Depends(enrolment_write_of)]

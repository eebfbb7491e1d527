"""The policy enforcement point: every /v1 route asks the decision point before it acts.

A route declares `Depends(Enforce(action, resources=...))`. The dependency builds the
decision input (subject from the token's client, the resources the route names, the
request context), asks `platform.pdp` (embedded rego-cpp or OPA), queues the decision
log, and either returns the Decision (obligations for the handler) or refuses with 403
problem+json carrying the policy's reasons. A test walks every route and fails if one
has no `Enforce`. Decision logs are written in batches by a background writer, as OPA's
decision-log plugin does; denials are logged like allows.

No `from __future__ import annotations` here: FastAPI reads `Enforce.__call__`'s
annotations at run time, and an instance has no module globals to resolve strings in.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

import policies
from exchange import errors as xe
from exchange.accounts import Caller
from gateway.errors import GatewayError
from gateway.platform import Platform
from gateway.security import CallerDep, PlatformDep

log = logging.getLogger("pdx.pep")

# Bench-only switch (development only): skip decisions to measure what zero trust costs.
NO_PEP_ENV = "PDX_UNSAFE_BENCH_NO_PEP"  # Settings.unsafe_bench_no_pep (old name: deprecated)


@dataclass(frozen=True)
class Target:
    """One thing a request acts on: the policy `resource`, and the purpose it is for."""

    resource: Mapping[str, Any]
    purpose: str | None = None
    legal_basis: str | None = None


Resources = Callable[[Request, Caller, Platform, Session], Sequence[Target]]
Known = Callable[[Request], Sequence[Target] | None]
"""The targets when they are known without a database read (e.g. cached), else None."""


def path_resource(build: Callable[[Session, str], Mapping[str, Any]], param: str) -> Resources:
    """Resources: the one thing `build(session, id)` describes, its id a path parameter."""

    def targets(
        request: Request, caller: Caller, platform: Platform, session: Session
    ) -> list[Target]:
        return [Target(build(session, request.path_params[param]))]

    return targets


def caller_owned(kind: str) -> Resources:
    """Resources: a `kind` the caller's organisation owns and is party to (a new or own one)."""

    def targets(
        request: Request, caller: Caller, platform: Platform, session: Session
    ) -> list[Target]:
        return [Target({"type": kind, "owner_org": caller.org_id, "parties": [caller.org_id]})]

    return targets


def subject_of(caller: Caller) -> dict[str, Any]:
    subject: dict[str, Any] = {
        "id": caller.client_id,
        "org": caller.org_id,
        "org_kind": caller.org_kind.value,
        "roles": sorted(r.value for r in caller.roles),
    }
    if caller.person_id is not None:
        # Separation of duties (policies/sod.rego) reads the person behind the request.
        subject["person_id"] = caller.person_id
        subject["created_by"] = caller.person_created_by
        subject["org_admin"] = caller.org_admin
    return subject


def _combine(decisions: Sequence[policies.Decision]) -> policies.Decision:
    """All must allow; obligations merged to the strictest; reasons concatenated."""
    if len(decisions) == 1:
        return decisions[0]
    merged = policies.strictest(d.obligations for d in decisions)
    reasons = tuple(r for d in decisions for r in d.reasons)
    return replace(
        decisions[0],
        allow=all(d.allow for d in decisions),
        reasons=reasons,
        obligations=merged,
    )


class Deferred:
    """A decision the handler takes once it knows the resource (e.g. from a streamed body)."""

    def __init__(self, enforce: "Enforce", request: Request, caller: Caller, platform: Platform):
        self._enforce = enforce
        self._request = request
        self._caller = caller
        self._platform = platform
        self.decision: policies.Decision | None = None

    def decide(self, targets: Sequence[Target]) -> policies.Decision:
        """Decide now; raises 403 like the eager form. Call exactly once per request."""
        self._request.state.audit_event = f"{self._enforce.action}.denied"
        self.decision = self._enforce.decide_targets(
            self._request, self._caller, self._platform, targets
        )
        return self.decision


class Enforce:
    """FastAPI dependency: decide `action` on the route's resources; refuse or return.

    With `deferred=True` the dependency returns a `Deferred` the handler must call with
    the targets once it has parsed them (the route still counts as enforced). A failure
    before that decision is audited as the action's denial unless `early_event=False`
    (then it keeps the route's own event, e.g. a malformed body's `request.failed`).

    `known` gives the targets when they need no database read (a cache the resources
    function fills): the decision is then taken on the event loop, without a worker
    thread or a session; the resources are read in a thread otherwise.
    """

    def __init__(
        self,
        action: str,
        resources: Resources | None = None,
        *,
        target: Mapping[str, Any] | None = None,
        deferred: bool = False,
        early_event: bool = True,
        known: Known | None = None,
    ) -> None:
        self.action = action
        self.resources = resources
        self.known = known
        self.target = target  # a fixed resource (no database read): decided inline
        self.deferred = deferred
        self.early_event = early_event

    def __repr__(self) -> str:
        return f"Enforce({self.action!r})"

    async def __call__(self, request: Request, caller: CallerDep, platform: PlatformDep) -> Any:
        if self.deferred:
            if self.early_event:
                request.state.audit_event = f"{self.action}.denied"
            return Deferred(self, request, caller, platform)
        if self.resources is None:
            # No database read to make: decide on the event loop (mostly a cache hit),
            # saving a thread hop per request.
            return self._decide(request, caller, platform)
        if self.known is not None and not _bypassed(platform):
            targets = self.known(request)
            if targets is not None:
                return self._decide(request, caller, platform, targets)
        return await run_in_threadpool(self._decide, request, caller, platform)

    def _targets(self, request: Request, caller: Caller, platform: Platform) -> Sequence[Target]:
        if self.resources is None:
            return [Target(self.target or {"type": self.action.split(".", 1)[0]})]
        with platform.session() as session:
            return self.resources(request, caller, platform, session)

    def _decide(
        self,
        request: Request,
        caller: Caller,
        platform: Platform,
        targets: Sequence[Target] | None = None,
    ) -> policies.Decision:
        request.state.audit_event = f"{self.action}.denied"
        if _bypassed(platform):
            return _bypass(self.action)
        if targets is None:
            targets = self._targets(request, caller, platform)
        return self.decide_targets(request, caller, platform, targets)

    def decide_targets(
        self, request: Request, caller: Caller, platform: Platform, targets: Sequence[Target]
    ) -> policies.Decision:
        """Decide `action` on each target; all must allow. Logs every decision."""
        if _bypassed(platform):
            return _bypass(self.action)
        claims = getattr(request.state, "token_claims", None)
        now = platform.now()
        pdp = platform.pdp
        if pdp is None:
            raise GatewayError("unavailable", "Service unavailable", "policies are not loaded")
        decisions = []
        for target in targets:
            decision = pdp.decide(
                policies.AUTHZ_DECISION,
                policies.authz_input(
                    subject=subject_of(caller),
                    action=self.action,
                    resource=target.resource,
                    now=now,
                    token_issued_at=claims.issued_at if claims is not None else None,
                    cert_binding=getattr(request.state, "cert_binding", "none"),
                    purpose=target.purpose,
                    legal_basis=target.legal_basis,
                    ip=caller.ip,
                ),
            )
            platform.decision_logs.add(decision, caller.request_id)
            decisions.append(decision)
        if not decisions:
            raise GatewayError("forbidden", "Forbidden", "nothing to decide on: denied")
        combined = _combine(decisions)
        caller.bind_decision(combined.decision_id)
        unknown = combined.unknown_obligations()
        if not combined.allow or unknown:
            reasons = list(combined.reasons) or ["denied by policy"]
            if unknown:
                reasons.append(f"unknown obligations: {', '.join(unknown)}")
            raise xe.Forbidden(
                "; ".join(reasons),
                reasons=reasons,
                decision_id=combined.decision_id,
                action=self.action,
            )
        return combined


def _bypassed(platform: Platform) -> bool:
    """The bench-only build without decisions (development only)."""
    return platform.settings.unsafe_bench_no_pep and platform.settings.environment == "development"


def _bypass(action: str) -> policies.Decision:
    from datetime import UTC

    return policies.Decision(
        decision_id="bench-no-pep",
        path=policies.AUTHZ_DECISION,
        input={"action": action},
        result=None,
        defined=True,
        revision=-1,
        digest="",
        timestamp=datetime.now(UTC),
        allow=True,
        reasons=("enforcement point disabled for benchmarking",),
    )


def body_before_decision(
    model: type[BaseModel], attribute: str
) -> Callable[[Request], Awaitable[None]]:
    """A dependency validating the JSON body into `request.state.<attribute>`.

    It runs before the enforcement point, for routes whose resources the body names.
    """

    async def parse(request: Request) -> None:
        try:
            body = model.model_validate(await request.json())
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from None
        except ValueError:
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": "body is not JSON"}]
            ) from None
        setattr(request.state, attribute, body)

    return parse


def enforcements(dependant: Any) -> list[Enforce]:
    """Every Enforce in a route's dependency tree (for the walk-all-routes test)."""
    found: list[Enforce] = []
    for dep in dependant.dependencies:
        if isinstance(dep.call, Enforce):
            found.append(dep.call)
        found.extend(enforcements(dep))
    return found


def unenforced_routes(routes: Sequence[Any], public_paths: frozenset[str]) -> list[str]:
    """ZT-01: /v1 routes whose dependencies include no `Enforce` (walks the route table)."""

    def enforced(dependant: Any) -> bool:
        return isinstance(dependant.call, Enforce) or any(
            enforced(d) for d in dependant.dependencies
        )

    out = []
    for route in routes:
        path = getattr(route, "path", "")
        dependant = getattr(route, "dependant", None)
        if path in public_paths or dependant is None:
            continue  # the token and invitation endpoints authenticate by themselves
        if path.startswith("/v1/") and not enforced(dependant):
            out.append(f"{sorted(getattr(route, 'methods', []) or [])} {path}")
    return out

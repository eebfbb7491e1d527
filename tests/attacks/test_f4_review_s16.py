"""Review of the F4 fix (signed cohort-join steps): what a malicious platform can still do.

The fix (docs/privacy.md §6.1.4): a provider's node signs each cohort-join step the
enterprise's SDK acts on; the SDK pins the provider's party key and refuses anything
unsigned. Three holes remained, each attacked here through the real app and the bank's
embedded node, with the node holding its party key and the SDK pinning it:

* The SDK decided whether to check at all from the computation the platform serves it
  (`inputs[0].custody`). A platform that answers "platform" for a node-held dataset
  has every step used unchecked (a warning only), strips the signatures and swaps a
  provider point for r·H(z): the F4 test of a person of its choice, back again.
* The node ran `cohort.start` with whatever `reveal` the relay passed, although no
  request may reveal members (`policies/joins.rego`) and its binding says nothing of a
  direction. In the revealing direction the node blinds any element it is sent and
  hands it back: the relay opens its own session on the node, sends x(H(z)) for people
  of its choice, and finds x(k2·H(z)) among the node's points exactly when z is one of
  the provider's customers; then it runs the join honestly, which releases as usual.
* The node served any number of sessions of one job, each ending in its own DP release
  (fresh noise): the requester's messages are not signed, so after the join the relay
  ran the provider's side again with a list of its own and read the refusal below the
  minimum, one more ε per session. The node now releases one result per job.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pdx_client import psi
from pdx_client.flseal import NodeTrust
from pdx_client.stepsig import StepUnverified, UnverifiedSteps

from sandbox.cohort_joins import SESSION_OPERATOR, CohortJoinJob
from sandbox.errors import SandboxError
from sandbox.identifiers import IdKind, JobDomain, normalise
from sandbox.join_wire import frame, unframe
from sandbox.step_signing import open_step
from tests.attacks.test_cohort_signed_steps import (
    SwappingRelay,
    _finish,
    _targets,
    node_join,
    relay,  # noqa: F401  (fixture)
    signing_node,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.slow


class CustodyLie:
    """The SDK's session, with the platform's answer saying the input is platform-held."""

    def __init__(self, http: Any) -> None:
        self.http = http
        self.lied = False

    def get(self, path: str, **params: Any) -> Any:
        out = self.http.get(path, **params)
        if isinstance(out, dict) and isinstance(out.get("inputs"), list):
            for inp in out["inputs"]:
                if inp.get("custody") == "node":
                    inp["custody"] = "platform"
                    self.lied = True
        return out

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.http.post(path, json, **kw)


def test_a_platform_claiming_platform_custody_cannot_switch_off_the_pinned_check(
    capi: TestClient,
    creds: dict[str, Any],
    relay: Callable[[SwappingRelay], None],  # noqa: F811
    signing_node: Callable[[str], NodeTrust],  # noqa: F811
) -> None:
    """Pinned provider, node-held data, the platform says "platform": still refused."""
    j = node_join(capi, creds, 41, signing_node, relay,
                  lambda d: SwappingRelay(_targets(d), strip=True))  # fmt: skip
    net, comp_id, evil = j.net, j.comp_id, j.evil
    assert evil is not None
    lying = CustodyLie(net["sdk"].session)
    refused: StepUnverified | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedSteps)  # the old code only warned
        try:
            j.drive(lying)
        except StepUnverified as exc:
            refused = exc
    assert lying.lied and evil.swapped
    assert not evil.returned, f"the relay read off membership: {evil.learned()}"
    assert refused is not None and "custody" in str(refused)
    done = _finish(capi, net, comp_id)
    assert done["state"] == "failed" and done["error"]["code"] == "join-stopped", done["error"]


def _steps(job: CohortJoinJob) -> Callable[..., bytes]:
    """The relay calling the provider's session itself: one step, its output unwrapped."""
    bound = {"job": job.party.public.params(), "party": job.party.binding()}

    def call(s: Any, name: str, blobs: dict[str, bytes], **params: Any) -> bytes:
        body, _proof = open_step(s.call({"step": name, **bound, **params}, blobs).unwrap())
        return body

    return call


def _around_exchange(monkeypatch: pytest.MonkeyPatch, before: bool) -> Callable[[Any], None]:
    """Installs a relay whose `probe(job)` runs before (or after) the platform's own join."""
    original = CohortJoinJob.exchange

    def install(evil: Any) -> None:
        def exchange(self: CohortJoinJob, ask: Any, record: Any = None) -> bytes:
            if before:
                evil.probe(self)
            out = original(self, ask, record)
            if not before:
                evil.probe(self)
            return out

        monkeypatch.setattr(CohortJoinJob, "exchange", exchange)

    return install


def _stranger(data: Any) -> str:
    """One of the insurer's people the bank does not hold."""
    return next(p for p in data.cohort[:-1] if normalise(IdKind.PHONE, p) not in {
        normalise(IdKind.PHONE, q) for q in data.amount})  # fmt: skip


class RevealOracle:
    """The relay's own session on the provider's node, in the revealing direction."""

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self.learned: list[bool] | None = None
        self.refused: str | None = None

    def probe(self, job: CohortJoinJob) -> None:
        call = _steps(job)

        try:
            with job.sandbox.open_session(SESSION_OPERATOR, [job.provider.path]) as s:
                head, _ = unframe(call(s, "cohort.start", {}, plan=job.plan.to_params(),
                                       reveal=True))  # fmt: skip
                domain = JobDomain(job.job_id, bytes.fromhex(str(head["salt"])))
                xs = b"".join(self._abscissa(domain, z) for z in self.targets)
                blob = frame({"count": len(self.targets), "final": True}, xs)
                _, doubled = unframe(call(s, "cohort.elements", {"elements": blob}))
                header, points = unframe(call(s, "cohort.pairs", {}, batch=65536))
        except SandboxError as exc:
            self.refused = str(exc)
            return
        theirs = {points[65 * i + 1 : 65 * i + 33] for i in range(int(header["count"]))}
        self.learned = [doubled[32 * i : 32 * (i + 1)] in theirs for i in range(len(self.targets))]

    @staticmethod
    def _abscissa(domain: JobDomain, z: str) -> bytes:
        message = domain.message(IdKind.PHONE, str(normalise(IdKind.PHONE, z)))
        x, _y = psi.hash_to_curve(message, domain.dst)
        return x.to_bytes(32, "big")


def test_the_node_does_not_blind_the_relays_own_identifiers_for_a_counting_join(
    capi: TestClient,
    creds: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    signing_node: Callable[[str], NodeTrust],  # noqa: F811
) -> None:
    """A psi.cardinality join: the relay may not turn the node into a k2 oracle on Y."""

    def oracle_for(data: Any) -> RevealOracle:
        customer = next(p for p in data.amount if p not in data.common)  # the bank's only
        return RevealOracle([customer, _stranger(data)])

    # First its own questions, then the join as usual.
    j = node_join(capi, creds, 42, signing_node, _around_exchange(monkeypatch, True), oracle_for)
    oracle = j.evil
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedSteps)
        j.drive()
    done = _finish(capi, j.net, j.comp_id)
    assert done["state"] == "released", done["error"]
    assert j.party.steps.verified is True
    assert oracle.learned is None, f"the relay tested the bank's customers: {oracle.learned}"
    assert oracle.refused is not None and "reveal" in oracle.refused


class SecondRelease:
    """After the join, the relay runs the provider's side once more with a list of its own."""

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self.outcome: str | None = None
        """What the node's second `cohort.result` told the platform (None: not run)."""
        self.refused: str | None = None

    def probe(self, job: CohortJoinJob) -> None:
        call = _steps(job)

        with job.sandbox.open_session(SESSION_OPERATOR, [job.provider.path]) as s:
            head, _ = unframe(call(s, "cohort.start", {}, plan=job.plan.to_params()))
            domain = JobDomain(job.job_id, bytes.fromhex(str(head["salt"])))
            # The relay plays the SDK with k1 = 1: its own people, unblinded.
            xs = b"".join(RevealOracle._abscissa(domain, z) for z in self.targets)
            call(s, "cohort.elements", {"elements": frame({"count": len(self.targets),
                                                            "final": True}, xs)})  # fmt: skip
            header, points = unframe(call(s, "cohort.pairs", {}, batch=65536))
            n = int(header["count"])
            back = b"".join(points[65 * i + 1 : 65 * i + 33] for i in range(n))
            call(s, "cohort.matched", {"pairs": frame({"count": n}, back)})
            try:
                call(s, "cohort.result", {})
                self.outcome = "a count under the requester's key"
            except SandboxError as exc:
                if "already" in str(exc):
                    self.refused = str(exc)
                else:
                    self.outcome = str(exc)  # e.g. below the minimum: read by the platform


def test_the_node_releases_one_result_per_cohort_join(
    capi: TestClient,
    creds: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    signing_node: Callable[[str], NodeTrust],  # noqa: F811
) -> None:
    """Every session draws fresh DP noise: a relay may not buy a second release of the job.

    The SDK's messages are not signed, so a relay can run the provider's side with a list
    of its own; the node's refusal below the minimum is read by the platform. One such
    outcome per job is what the DP budget accounts for; each further session is another
    ε, as many as the node serves.
    """
    j = node_join(capi, creds, 43, signing_node, _around_exchange(monkeypatch, False),
                  lambda d: SecondRelease([_stranger(d)]))  # fmt: skip
    evil = j.evil
    j.drive()
    done = _finish(capi, j.net, j.comp_id)
    assert done["state"] == "released", done["error"]
    assert evil.outcome is None, f"a second release of the job reached the platform: {evil.outcome}"
    assert evil.refused is not None

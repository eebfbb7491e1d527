"""An active relay that swaps a provider point cannot test a person against the enterprise's list.

Finding F4 of the cohort-join review (docs/privacy.md §6.1.4): in a join with the
enterprise's own cohort the platform relays the provider's points k2·H(y) to the SDK. A
malicious platform replaces one by r·H(z), for a person z of its choice and its own
scalar r; the SDK returns x(k1·r·H(z)) among its shuffled elements, and the platform,
which saw the SDK's x(k1·H(x)), finds x(r·k1·H(x)) there exactly when z is on the list.

The platform here is the real app over the real database, with the bank's dataset on
its embedded node; the attack wraps the platform's own relay (`CohortJoinJob.exchange`)
and edits the step documents it hands the SDK.

* With nothing pinned the attack works (the SDK warns `UnverifiedSteps`): the relay tells
  a member from a non-member. This is the limit the SDK's warning names.
* With the node holding the bank's party key (`PDX_NODE_PARTY_KEY`) and the SDK pinning
  it, the honest join releases with every provider step checked; a swapped point inside
  the signed output, or the signature stripped and the points sent bare, is refused by
  the SDK before it returns a single element: it answers that step with a stop, which
  is recorded, and the job fails (`join-stopped`).

On the code before signed steps, `psi.drive` took no `trust` and the nodes signed
nothing: the pinned tests fail there, and the swap went through unnoticed.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from pdx_client import psi
from pdx_client.flseal import NodeTrust
from pdx_client.jobkeys import JobKey
from pdx_client.partykeys import PartyKey
from pdx_client.stepsig import StepUnverified, UnverifiedSteps
from sqlalchemy import select

from audit.models import AuditRecord
from gateway.platform import Platform
from sandbox.cohort_joins import CohortJoinJob
from sandbox.identifiers import IdKind, JobDomain, normalise
from tests.helpers.i18_wiring import LEGAL_BASIS, PURPOSE
from tests.helpers.s15_sdk_psi import CohortData, cohort_data, node_held_network
from tests.test_api_computations import wait_for

pytestmark = pytest.mark.slow

_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_CURVE = ec.SECP256R1()


def _lift(x: bytes) -> ec.EllipticCurvePublicKey:
    """A point with abscissa `x` (either of the two: x(k·P) is the same for both)."""
    xi = int.from_bytes(x, "big")
    y = pow((xi**3 - 3 * xi + _B) % _P, (_P + 1) // 4, _P)
    encoded = b"\x04" + x + y.to_bytes(32, "big")
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, encoded)


def _times(r: ec.EllipticCurvePrivateKey, point: ec.EllipticCurvePublicKey) -> bytes:
    """x(r·P)."""
    return r.exchange(ec.ECDH(), point)


class SwappingRelay:
    """The platform's relay, turned: one provider point becomes r·H(z) for each target z."""

    def __init__(self, targets: list[str], *, strip: bool = False) -> None:
        self.targets = targets
        self.strip = strip
        self.scalars = [ec.generate_private_key(_CURVE) for _ in targets]
        self.blinded: list[bytes] = []
        self.returned: set[bytes] = set()
        self.domain: JobDomain | None = None
        self.swapped = False

    def _forged(self, r: ec.EllipticCurvePrivateKey, z: str) -> bytes:
        assert self.domain is not None
        message = self.domain.message(IdKind.PHONE, str(normalise(IdKind.PHONE, z)))
        x, y = psi.hash_to_curve(message, self.domain.dst)
        h = ec.EllipticCurvePublicKey.from_encoded_point(
            _CURVE, b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
        )
        # 65 bytes, as the provider's points travel
        return _lift(_times(r, h)).public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def _swap(self, points: bytes) -> bytes:
        out = bytearray(points)
        for i, (r, z) in enumerate(zip(self.scalars, self.targets, strict=True)):
            out[65 * i : 65 * (i + 1)] = self._forged(r, z)
        self.swapped = True
        return bytes(out)

    def tamper(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        if doc["op"] == "blind" and self.domain is None:
            self.domain = JobDomain(str(doc["job_id"]), bytes.fromhex(str(doc["salt"])))
        if doc["op"] != "pairs" or self.swapped:
            return doc
        if "signed" in doc:
            output = base64.b64decode(doc["signed"]["output"])
            head, _, body = output.partition(b"\n")
            if self.strip:  # the signature dropped, the points sent bare
                count = json.loads(head)["count"]
                rest = {k: v for k, v in doc.items() if k != "signed"}
                points = base64.b64encode(self._swap(body[: 65 * count])).decode()
                return {**rest, "count": count, "final": json.loads(head)["final"],
                        "points": points}  # fmt: skip
            forged = head + b"\n" + self._swap(body)
            return {**doc, "signed": {**doc["signed"],
                                      "output": base64.b64encode(forged).decode()}}  # fmt: skip
        points = base64.b64encode(self._swap(base64.b64decode(doc["points"]))).decode()
        return {**doc, "points": points}

    def observe(self, doc: dict[str, Any], reply: dict[str, Any]) -> None:
        elements = base64.b64decode(str(reply.get("elements", "")))
        chunks = [elements[i : i + 32] for i in range(0, len(elements), 32)]
        if doc["op"] == "blind":
            self.blinded += chunks
        elif doc["op"] == "return":
            self.returned.update(chunks)

    def learned(self) -> list[bool]:
        """For each target: is it on the enterprise's list? (what the attack reads off)"""
        return [
            any(_times(r, _lift(q)) in self.returned for q in self.blinded) for r in self.scalars
        ]


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> Callable[[SwappingRelay], None]:
    """Install a swapping relay in the platform's own `CohortJoinJob.exchange`."""
    original = CohortJoinJob.exchange

    def install(evil: SwappingRelay) -> None:
        def exchange(self: CohortJoinJob, ask: Any, record: Any = None) -> bytes:
            def tampered(k: int, doc: dict[str, Any]) -> dict[str, Any]:
                sent = evil.tamper(doc)
                if sent is None:  # held back: the relay answers for the SDK
                    return {"op": doc["op"], "ok": True}
                reply: dict[str, Any] = ask(k, sent)
                evil.observe(sent, reply)
                return reply

            return original(self, tampered, record)

        monkeypatch.setattr(CohortJoinJob, "exchange", exchange)

    return install


@pytest.fixture
def signing_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], NodeTrust]]:
    """The bank's node holds its party key; returns the requester's pins for the bank."""
    key = PartyKey.generate()
    pem = key.save(tmp_path / "bank.pem", passphrase="bank node")
    trusted = tmp_path / "trusted-parties.json"

    def pin(bank_org: str) -> NodeTrust:
        doc = {"parties": {bank_org: [{"algorithm": "ed25519", "public_key": key.public_b64}]}}
        trusted.write_text(json.dumps(doc))
        monkeypatch.setenv("PDX_NODE_PARTY_KEY", str(pem))
        monkeypatch.setenv("PDX_NODE_PARTY_KEY_PASSPHRASE", "bank node")
        monkeypatch.setenv("PDX_NODE_TRUSTED_PARTIES", str(trusted))
        return NodeTrust.from_document(doc)

    yield pin


def _start(capi: TestClient, net: dict[str, Any], data: CohortData, key: JobKey) -> str:
    body = {
        "operator": "psi.cardinality",
        "inputs": [net["ds"]],
        "params": {"cohort": {"key": "msisdn", "kind": "phone", "size": len(data.cohort)}},
        "purpose": PURPOSE,
        "legal_basis": LEGAL_BASIS,
        "job_key": key.public(),
    }
    r = capi.post("/v1/computations", headers=net["ent"], json=body)
    assert r.status_code == 201, r.text
    comp_id: str = r.json()["id"]
    r = capi.post(f"/v1/computations/{comp_id}/approve", headers=net["bank"], json={})
    assert r.status_code == 200, r.text
    return comp_id


def _finish(capi: TestClient, net: dict[str, Any], comp_id: str) -> dict[str, Any]:
    done = wait_for(capi, net["ent"], comp_id, "released", "failed", "rejected", "review")
    if done["state"] == "review":
        capi.post(f"/v1/computations/{comp_id}/approve", headers=net["bank"], json={})
        done = wait_for(capi, net["ent"], comp_id, "released", "failed", "rejected")
    return done


def _targets(data: CohortData) -> list[str]:
    member = data.cohort[0]
    outsider = next(p for p in data.amount if p not in data.common)  # the bank's, not theirs
    assert normalise(IdKind.PHONE, outsider) not in {
        normalise(IdKind.PHONE, p) for p in data.cohort
    }
    return [member, outsider]


@dataclass
class NodeJoin:
    """A started psi.cardinality join of the insurer's list with the bank's node-held rows."""

    data: CohortData
    net: dict[str, Any]
    trust: NodeTrust | None
    key: JobKey
    comp_id: str
    party: psi.CohortParty
    evil: Any = None

    def drive(self, http: Any = None) -> psi.CohortParty:
        """The SDK's side, pinning `trust` (None: nothing pinned)."""
        http = http or self.net["sdk"].session
        fp = self.key.fingerprint
        return psi.drive(http, self.comp_id, self.party, timeout=120, trust=self.trust,
                         fingerprint=fp)  # fmt: skip


def node_join(
    capi: TestClient,
    creds: dict[str, Any],
    seed: int,
    pin: Callable[[str], NodeTrust] | None = None,
    relay: Callable[[Any], None] | None = None,
    evil: Callable[[CohortData], Any] | None = None,
) -> NodeJoin:
    """Parties, data on the bank's node, the bank's key pinned (`pin`), then the request.

    `evil(data)` makes the relay that `relay` installs before the request.
    """
    data = cohort_data(seed, cohort=60, values=70, common=40)
    net = node_held_network(capi, creds, data)
    trust = pin(net["bank_org"]) if pin is not None else None
    attacker = evil(data) if evil is not None else None
    if attacker is not None and relay is not None:
        relay(attacker)
    key = JobKey.generate()
    comp_id = _start(capi, net, data, key)
    party = psi.CohortParty(data.cohort, "phone")
    return NodeJoin(data, net, trust, key, comp_id, party, attacker)


def test_unpinned_a_swapping_relay_tells_a_member_from_an_outsider(
    capi: TestClient,
    creds: dict[str, Any],
    relay: Callable[[SwappingRelay], None],
) -> None:
    """The limit the SDK warns about: with nothing to check, the swap reveals membership."""
    j = node_join(capi, creds, 31, relay=relay, evil=lambda d: SwappingRelay(_targets(d)))
    evil = j.evil
    assert evil is not None
    with pytest.warns(UnverifiedSteps, match="no party keys are pinned"):
        j.drive()
    assert _finish(capi, j.net, j.comp_id)["state"] == "released"
    assert j.party.steps.verified is False
    assert evil.swapped and evil.learned() == [True, False]


def test_a_pinned_node_signs_each_step_and_the_honest_join_releases(
    capi: TestClient, creds: dict[str, Any], signing_node: Callable[[str], NodeTrust]
) -> None:
    j = node_join(capi, creds, 32, signing_node)
    net, key, comp_id, party = j.net, j.key, j.comp_id, j.party
    seen: list[dict[str, Any]] = []
    party._record = seen.append
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedSteps)
        j.drive()
    done = _finish(capi, net, comp_id)
    assert done["state"] == "released", done["error"]
    assert party.steps.verified is True
    # Every provider step the SDK acted on came signed; the points travel only inside.
    provider_steps = [d for d in seen if d["op"] in ("blind", "pairs")]
    assert provider_steps and all("signed" in d for d in provider_steps)
    assert not any("points" in d for d in seen if d["op"] == "pairs")
    result = capi.get(f"/v1/computations/{comp_id}/result", headers=net["ent"]).json()
    eps = done["obligations"]["dp_epsilon"]
    assert abs(key.decrypt(result)["intersection_size"] - 40) < 20 / eps


@pytest.mark.parametrize("strip", [False, True], ids=["swapped-inside", "signature-stripped"])
def test_a_pinned_sdk_refuses_a_swapped_point_before_returning_anything(
    capi: TestClient,
    creds: dict[str, Any],
    platform: Platform,
    relay: Callable[[SwappingRelay], None],
    signing_node: Callable[[str], NodeTrust],
    strip: bool,
) -> None:
    j = node_join(capi, creds, 33, signing_node, relay,
                  lambda d: SwappingRelay(_targets(d), strip=strip))  # fmt: skip
    net, comp_id, evil = j.net, j.comp_id, j.evil
    assert evil is not None
    with pytest.raises(StepUnverified):
        j.drive()
    assert evil.swapped
    assert evil.returned == set()  # the SDK returned no element: nothing to test z against
    done = _finish(capi, net, comp_id)
    assert done["state"] == "failed" and done["error"]["code"] == "join-stopped", done["error"]
    assert "signature" in done["error"]["detail"] or "not signed" in done["error"]["detail"]
    # The stop is an audit record with its ledger entry, like every reply: it is on the record.
    with platform.session() as s:
        stops = s.scalars(
            select(AuditRecord).where(
                AuditRecord.object_id == comp_id,
                AuditRecord.event_type == "computation.join_step_posted",
                AuditRecord.detail.contains("op=stop"),
            )
        ).all()
    assert len(stops) == 1 and stops[0].ledger_index is not None


class HoldingRelay(SwappingRelay):
    """The relay keeps the provider's second batch of points from the SDK."""

    def __init__(self) -> None:
        super().__init__([])
        self.batches = 0

    def tamper(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        if doc["op"] == "pairs":
            self.batches += 1
            if self.batches == 2:
                return None
        return doc


def test_a_pinned_sdk_refuses_a_provider_batch_held_back(
    capi: TestClient,
    creds: dict[str, Any],
    relay: Callable[[SwappingRelay], None],
    signing_node: Callable[[str], NodeTrust],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every batch is signed, but a relay could drop one: the SDK counts them against |Y|."""
    import sandbox.cohort_joins

    monkeypatch.setattr(sandbox.cohort_joins, "PAIR_BATCH", 16)  # several batches of points
    evil = HoldingRelay()
    j = node_join(capi, creds, 34, signing_node, relay, lambda _d: evil)
    with pytest.raises(psi.CohortError, match="points, not the 70 it announced"):
        j.drive()
    assert evil.batches >= 3 and evil.returned == set()
    done = _finish(capi, j.net, j.comp_id)
    assert done["state"] == "failed" and done["error"]["code"] == "join-stopped", done["error"]

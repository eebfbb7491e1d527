"""The remote decision point against a local server that speaks OPA's REST API.

No OPA binary is available from the package registries this project uses (PyPI, npm
and Debian ship OPA clients and SDKs, not the server), so these tests run the adapter
against `FakeOpa`: an HTTP server on loopback implementing the parts of OPA's Policy
and Data APIs the adapter uses (PUT/GET/DELETE /v1/policies, PUT/GET/POST /v1/data,
{} for undefined, OPA's error shape), evaluating with rego-cpp. They check the HTTP
contract and the adapter's behaviour, not OPA's own Rego semantics.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from policies import (
    AUTHZ_DECISION,
    ActivePolicy,
    EmbeddedDecisionPoint,
    PolicyBundle,
    PolicyEngineUnavailable,
    PolicyInvalid,
    PolicyTestsFailed,
    decision_point,
    default_bundle,
)
from policies._engine import UNDEFINED, RegoProgram
from policies.checks import collect_cases
from policies.errors import PolicyError
from policies.remote import RemoteDecisionPoint


class FakeOpa(ThreadingHTTPServer):
    """Just enough of OPA's REST API (v1) for the adapter, backed by rego-cpp."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.policies: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.requests: list[tuple[str, str]] = []
        self.flip: str | None = None  # a path whose "allow" this server inverts
        self._programs: dict[str, RegoProgram] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def evaluate(self, path: str, input_doc: Any) -> Any:
        key = json.dumps([sorted(self.policies.items()), self.data, path], sort_keys=True)
        with self.lock:
            program = self._programs.get(key)
            if program is None:
                modules = {pid.replace("/", "_"): src for pid, src in self.policies.items()}
                program = self._programs[key] = RegoProgram(modules, self.data, [path])
            value = program.evaluate(path, json.dumps(input_doc, ensure_ascii=False))
        if value is not UNDEFINED and path == self.flip and isinstance(value, dict):
            value = {**value, "allow": not value.get("allow")}
        return value


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpa

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any | None) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _route(self) -> tuple[str, str]:
        self.server.requests.append((self.command, self.path))
        path = self.path.split("?")[0]
        for prefix in ("/v1/policies", "/v1/data"):
            if path == prefix or path.startswith(prefix + "/"):
                return prefix, path[len(prefix) :].strip("/")
        return path, ""

    def do_GET(self) -> None:
        kind, rest = self._route()
        if kind == "/v1/policies":
            self._send(
                200, {"result": [{"id": k, "raw": v} for k, v in self.server.policies.items()]}
            )
        elif kind == "/v1/data":
            node: Any = self.server.data
            for part in [p for p in rest.split("/") if p]:
                if not isinstance(node, dict) or part not in node:
                    self._send(200, {})
                    return
                node = node[part]
            self._send(200, {"result": node})
        elif kind == "/health":
            self._send(200, {})
        else:
            self._send(404, {"code": "resource_not_found", "message": "not found"})

    def do_PUT(self) -> None:
        kind, rest = self._route()
        body = self._body()
        if kind == "/v1/policies":
            source = body.decode()
            try:
                RegoProgram({"check.rego": source}, {}, ["x/y"])
            except PolicyError as exc:
                self._send(
                    400,
                    {
                        "code": "invalid_parameter",
                        "message": "error(s) occurred while compiling module(s)",
                        "errors": [
                            {"code": "rego_parse_error", "message": e, "location": {"file": rest}}
                            for e in exc.extensions.get("errors", [])
                        ],
                    },
                )
                return
            self.server.policies[rest] = source
            self._send(200, {})
        elif kind == "/v1/data":
            parts = [p for p in rest.split("/") if p]
            node = self.server.data
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = json.loads(body)
            self._send(204, None)
        else:
            self._send(404, {"code": "resource_not_found", "message": "not found"})

    def do_DELETE(self) -> None:
        kind, rest = self._route()
        if kind == "/v1/policies" and rest in self.server.policies:
            del self.server.policies[rest]
            self._send(200, {})
        else:
            self._send(404, {"code": "resource_not_found", "message": "not found"})

    def do_POST(self) -> None:
        kind, rest = self._route()
        doc = json.loads(self._body() or b"{}")
        if kind != "/v1/data":
            self._send(404, {"code": "resource_not_found", "message": "not found"})
            return
        try:
            value = self.server.evaluate(rest, doc.get("input"))
        except PolicyError as exc:
            self._send(500, {"code": "internal_error", "message": exc.detail})
            return
        self._send(200, {} if value is UNDEFINED else {"result": value, "decision_id": "opa-1"})


@pytest.fixture
def opa() -> Iterator[FakeOpa]:
    server = FakeOpa()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _policy(bundle: PolicyBundle | None = None, revision: int = 0) -> ActivePolicy:
    bundle = bundle or default_bundle()
    return ActivePolicy(revision, bundle.digest, bundle, "test", None, "test")


def test_push_then_decide_like_the_embedded_engine(opa: FakeOpa) -> None:
    remote = decision_point(_policy(), opa_url=opa.url)
    assert isinstance(remote, RemoteDecisionPoint)
    assert set(opa.policies) == {f"pdx/{n}" for n in default_bundle().policy_modules}
    assert opa.data["pdx"]["active"] == {"revision": 0, "digest": default_bundle().digest}
    assert opa.data["pdx"]["matrix"] == default_bundle().matrix
    embedded = EmbeddedDecisionPoint(_policy())
    cases, _ = collect_cases(default_bundle())
    assert len(cases) > 50
    for case in cases:
        if case.matrix is not None:
            continue
        r = remote.decide(case.path, case.input)
        e = embedded.decide(case.path, case.input)
        assert (r.allow, r.reasons, dict(r.obligations)) == (
            e.allow,
            e.reasons,
            dict(e.obligations),
        )
        assert r.result == e.result


def test_undefined_and_errors_are_denials(opa: FakeOpa) -> None:
    remote = RemoteDecisionPoint(opa.url, _policy(), verify_cases=False)
    d = remote.decide("pdx/authz/nothing", {"subject": {}})
    assert not d.allow and not d.defined and "undefined" in d.reasons[0]
    opa.policies["pdx/broken.rego"] = "package pdx.broken\nimport rego.v1\nx := 1\nx := 2 if true\n"
    d = remote.decide("pdx/broken/x", {})
    assert not d.allow and d.reasons[0].startswith("policy evaluation failed: OPA could not")


def test_remote_decisions_are_cached_and_reload_clears(opa: FakeOpa) -> None:
    remote = RemoteDecisionPoint(opa.url, _policy(), verify_cases=False)
    cases, _ = collect_cases(default_bundle())
    body = next(c.input for c in cases if c.allow and c.matrix is None)
    remote.decide(AUTHZ_DECISION, body)
    posts = sum(1 for m, _ in opa.requests if m == "POST")
    assert remote.decide(AUTHZ_DECISION, body).cached
    assert sum(1 for m, _ in opa.requests if m == "POST") == posts
    remote.load(_policy(revision=3))
    assert not remote.decide(AUTHZ_DECISION, body).cached


def test_a_server_holding_the_digest_is_not_pushed_again(opa: FakeOpa) -> None:
    RemoteDecisionPoint(opa.url, _policy(), verify_cases=False)
    puts = sum(1 for m, _ in opa.requests if m == "PUT")
    RemoteDecisionPoint(opa.url, _policy(), verify_cases=False)  # another gateway
    assert sum(1 for m, _ in opa.requests if m == "PUT") == puts


def test_stale_modules_are_deleted(opa: FakeOpa) -> None:
    opa.policies["pdx/old.rego"] = "package pdx.old\n"
    opa.policies["other/keep.rego"] = "package other\n"
    RemoteDecisionPoint(opa.url, _policy(), verify_cases=False)
    assert "pdx/old.rego" not in opa.policies and "other/keep.rego" in opa.policies


def test_opa_refusing_a_module_is_policy_invalid(opa: FakeOpa) -> None:
    base = default_bundle()
    bad = PolicyBundle(
        {**base.modules, "broken.rego": "package pdx.broken\nallow if {"}, base.matrix
    )
    with pytest.raises(PolicyInvalid) as caught:
        RemoteDecisionPoint(opa.url, _policy(bad), verify_cases=False)
    assert caught.value.extensions["engine"] == "opa"
    assert "broken.rego" in caught.value.detail


def test_disagreement_rolls_back_and_refuses(opa: FakeOpa) -> None:
    remote = RemoteDecisionPoint(opa.url, _policy())
    base = default_bundle()
    newer = PolicyBundle(base.modules, {**base.matrix, "description": "revision two"})
    opa.flip = AUTHZ_DECISION  # the server now disagrees with every case
    with pytest.raises(PolicyTestsFailed) as caught:
        remote.load(_policy(newer, revision=2))
    assert caught.value.extensions["engine"] == "opa"
    assert opa.data["pdx"]["active"]["digest"] == base.digest  # the previous bundle is back
    assert remote.policy.digest == base.digest


def test_unreachable_server_fails_closed() -> None:
    with pytest.raises(PolicyEngineUnavailable):
        RemoteDecisionPoint("http://127.0.0.1:9", _policy(), timeout_s=0.5)


def test_server_going_away_fails_closed(opa: FakeOpa) -> None:
    remote = RemoteDecisionPoint(opa.url, _policy(), verify_cases=False, cache_size=0)
    opa.shutdown()
    opa.server_close()
    with pytest.raises(PolicyEngineUnavailable):
        remote.decide(AUTHZ_DECISION, {"subject": {}})


def test_bad_urls_are_refused() -> None:
    with pytest.raises(PolicyEngineUnavailable):
        RemoteDecisionPoint("opa.internal:8181", _policy())

"""The error catalogue: every code is mapped once, statuses are stable, unknowns stay opaque."""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import crypto.errors as ce
import ledger.errors
import sandbox.errors
from crypto.problem import CodedError
from gateway import errors
from gateway.app import create_app
from gateway.platform import Platform
from gateway.problems_doc import render_problems_md

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("crypto", "exchange", "ledger", "policies", "sandbox", "audit", "gateway")

# The statuses clients saw before the catalogue (STATUS, CRYPTO_STATUS, POLICY_STATUS and
# the class fallbacks): problem `type`s and statuses never change.
_PINNED_BY_STATUS = {
    400: (
        "unsupported-grant-type invalid-request invalid-grant dataset-shredded "
        "key-purpose-mismatch key-backup-invalid shares-too-few shares-duplicate "
        "shares-inconsistent"
    ),
    401: "authentication-failed unauthenticated invalid-token invalid-client certificate-invalid",
    403: "forbidden separation-of-duties invitation-invalid key-role-denied",
    404: (
        "not-found ledger-entry-not-found ledger-block-not-found key-not-found "
        "policy-revision-not-found"
    ),
    405: "method-not-allowed",
    409: (
        "conflict dataset-name-taken key-dual-control-violation "
        "key-state-transition-invalid key-destroy-request-invalid key-not-active "
        "key-expired key-suspended key-algorithm-mismatch policy-conflict"
    ),
    410: "key-destroyed",
    413: "upload-too-large request-too-large",
    415: "unsupported-media-type",
    422: (
        "invalid-input invalid-metadata level-below-content csv-invalid csv-empty "
        "csv-header-invalid csv-malformed csv-column-count csv-not-utf8 validation-error "
        "ledger-invalid-range integer-out-of-range json-too-deep "
        "computation-output-too-large computation-too-costly node-address-refused "
        "node-unreachable certificate-request-invalid policy-invalid policy-tests-failed"
    ),
    429: "rate-limited computation-quota-exceeded",
    500: "internal-error ledger-error ledger-seal-race crypto-failure",
    503: (
        "unavailable hsm-unavailable root-key-passphrase-invalid keystore-unavailable "
        "ca-unavailable policy-engine-unavailable policy-evaluation-failed"
    ),
}
PINNED = {code: status for status, codes in _PINNED_BY_STATUS.items() for code in codes.split()}


def _coded_classes() -> Iterator[tuple[str, str, str]]:
    """(module, class, code) for every class that sets `code = "..."` in the packages."""
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            for node in ast.walk(tree):
                if not isinstance(node, ast.ClassDef):
                    continue
                for stmt in node.body:
                    target = (
                        stmt.targets[0]
                        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                        else stmt.target
                        if isinstance(stmt, ast.AnnAssign)
                        else None
                    )
                    value = getattr(stmt, "value", None)
                    if (
                        isinstance(target, ast.Name)
                        and target.id == "code"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                    ):
                        yield module, node.name, value.value


CODED = sorted(set(_coded_classes()))


def test_the_scan_finds_every_package_root() -> None:
    found = {(m, c) for m, c, _ in CODED}
    for root in ("CryptoError", "ExchangeError", "LedgerError", "PolicyError", "AuditError"):
        assert any(c == root for _, c in found), root
    assert ("sandbox.errors", "SandboxError") in found
    assert ("gateway.errors", "InvalidToken") in found
    assert len(CODED) > 100


@pytest.mark.parametrize(("module", "name", "code"), CODED, ids=[f"{m}.{c}" for m, c, _ in CODED])
def test_every_code_is_in_the_mapping(module: str, name: str, code: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert cls.code == code
    assert cls in errors.PROBLEMS, f"{module}.{name} ({code}) is not in gateway/errors.py"


def test_every_root_but_the_sandboxs_is_a_coded_error() -> None:
    for module, name, _ in CODED:
        cls = getattr(importlib.import_module(module), name)
        if issubclass(cls, sandbox.errors.SandboxError):
            continue
        assert issubclass(cls, CodedError), f"{module}.{name}"
    # The sandbox's root keeps the same shape (it cannot import crypto in the worker).
    shape = inspect.signature(CodedError.__init__)
    assert inspect.signature(sandbox.errors.SandboxError.__init__) == shape
    err = sandbox.errors.SandboxError("d", x=1)
    assert (err.detail, err.extensions, str(err)) == ("d", {"x": 1}, "d")


def _literal_codes() -> Iterator[tuple[str, str]]:
    """Codes the gateway passes as strings: `GatewayError("x", ...)` and `code="x"`."""
    pattern = re.compile(
        r"""(?:GatewayError\(\s*|_oauth_error\(\s*|\bcode=)"([a-z0-9-]+)\"""", re.MULTILINE
    )
    for path in sorted((REPO / "gateway").rglob("*.py")):
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            yield str(path.relative_to(REPO)), match.group(1)


def test_every_literal_gateway_code_is_declared() -> None:
    declared = {errors.code_of(cls) for cls in errors.PROBLEMS}
    found = list(_literal_codes())
    assert len(found) > 15
    for where, code in found:
        assert code in declared, f"{where}: {code!r} is not in the catalogue"


def test_statuses_and_types_are_the_ones_clients_know() -> None:
    by_code: dict[str, set[int]] = {}
    for cls, entry in errors.PROBLEMS.items():
        by_code.setdefault(errors.code_of(cls), set()).add(entry.status)
    for code, status in PINNED.items():
        assert by_code.get(code) == {status}, code
    # One problem type, one status: clients may switch on either.
    assert all(len(statuses) == 1 for statuses in by_code.values()), by_code


def test_the_problem_list_in_the_docs_is_generated_from_the_table() -> None:
    text = (REPO / "docs" / "problems.md").read_text(encoding="utf-8")
    assert text == render_problems_md(), "regenerate docs/problems.md (see its header)"


def test_an_undeclared_gateway_code_is_refused_at_construction() -> None:
    assert type(errors.GatewayError("rate-limited", "t", "d")) is errors.RateLimited
    with pytest.raises(ValueError, match="undeclared"):
        errors.GatewayError("made-up", "t", "d")


# -- through the real app -------------------------------------------------------------------


class _Surprise(Exception):
    """Not a pdx error: nothing in the catalogue names it."""


SECRET = "password=hunter2 at /srv/pdx/keys/root.key"

RAISED: list[tuple[BaseException, int, str, bool]] = [
    (_Surprise(SECRET), 500, "internal-error", False),
    (KeyError(SECRET), 500, "internal-error", False),
    (sandbox.errors.CohortTooSmall(SECRET, n=3), 500, "internal-error", False),
    (ce.InvalidCiphertext(SECRET, key_id="k1"), 500, "crypto-failure", False),
    (ce.InvalidKey(SECRET), 500, "crypto-failure", False),
    (ce.KeyNotFound("no such key", key_id=SECRET), 404, "key-not-found", True),
    (ledger.errors.SealRace(SECRET, size=3), 500, "ledger-seal-race", False),
]


def _raiser(exc: BaseException) -> Callable[[], dict[str, Any]]:
    def boom() -> dict[str, Any]:
        raise exc

    return boom


@pytest.fixture
def raising_client(
    platform: Platform, creds: dict[str, dict[str, Any]]
) -> Iterator[tuple[FastAPI, TestClient]]:
    app = create_app(platform)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, client


def test_errors_leave_as_problems_with_nothing_secret(
    raising_client: tuple[FastAPI, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    app, client = raising_client
    # Capture on the gateway's own logger: another library's logging set-up earlier in the
    # session (a root level, a handler) must not decide whether this assertion sees it.
    gateway_log = logging.getLogger("pdx.gateway")
    gateway_log.disabled = False
    caplog.set_level(logging.ERROR, logger="pdx.gateway")
    for n, (exc, status, code, shows_detail) in enumerate(RAISED):
        path = f"/boom/{n}"
        app.add_api_route(path, _raiser(exc), methods=["GET"])
        caplog.clear()
        r = client.get(path)
        what = f"{type(exc).__name__}: {r.text}"
        assert r.status_code == status, what
        assert r.headers["content-type"] == errors.PROBLEM_JSON, what
        body = r.json()
        assert body["type"] == errors.PROBLEM_BASE + code, what
        assert body["status"] == status and body["instance"] == path, what
        assert body.get("request_id"), what
        assert SECRET not in r.text and "hunter2" not in r.text, what
        if shows_detail:
            assert body["detail"] == "no such key", what
        else:
            safe = {e.safe_detail for e in errors.PROBLEMS.values()}
            assert body.get("detail") in safe, what
        if status >= 500:
            # The details stay in the log, beside the request's path.
            assert any(path in rec.getMessage() for rec in caplog.records), what


def test_the_openapi_documents_problems_for_every_operation(
    raising_client: tuple[FastAPI, TestClient],
) -> None:
    _, client = raising_client
    spec = client.get("/openapi.json").json()
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "instance"} <= set(problem["required"])
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    operations = [op for path in spec["paths"].values() for op in path.values()]
    assert len(operations) > 30
    ref = {"$ref": "#/components/schemas/Problem"}
    for op in operations:
        responses = op["responses"]
        assert "4XX" in responses and "5XX" in responses, op["operationId"]
        for status, response in responses.items():
            if status[0] in "45":
                assert response["content"] == {errors.PROBLEM_JSON: {"schema": ref}}, (
                    op["operationId"],
                    status,
                )

"""Validation before activation: modules compile, the matrix fits its schema, tests pass.

Tests live beside the policies in `*_test.rego`. rego-cpp has no `opa test` runner and
cannot evaluate `with` (it crashes or answers wrongly; README, "regopy and OPA"), so a
test module holds two kinds of test, both run here:

* `test_*` rules that need no input (checks on the data and on constant rules), each
  passing when it evaluates to `true`;
* `cases`, an object of named cases `{"input", "allow", "reasons"?, "obligations"?,
  "matrix"?, "path"?}` run through a compiled decision point: `allow` must match,
  each string in `reasons` must appear in some reason, `obligations` must be a subset,
  and `matrix` patches the grading matrix (deep merge) for that case only.

`validate` runs the whole check in a child process by default, so that an engine crash
on a hostile or unlucky bundle refuses the bundle instead of killing the gateway.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from policies.bundle import AUTHZ_DECISION, PolicyBundle
from policies.errors import PolicyError, PolicyInvalid, PolicyTestsFailed
from policies.matrix import check_matrix

__all__ = [
    "Case",
    "TestReport",
    "TestResult",
    "check_case",
    "collect_cases",
    "deep_merge",
    "nondeterministic_builtins",
    "run_cases_on",
    "run_tests",
    "strip_comments",
    "validate",
]

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)
_CASES_RULE = re.compile(r"^cases\s*:?=", re.MULTILINE)
_WITH = re.compile(r"\bwith\s+(input|data)\b")
# Built-ins whose value changes between identical inputs: a policy using one must not
# have its decisions cached (time is an input field instead: context.time).
_NONDETERMINISTIC = re.compile(
    r"\b(time\.now_ns|http\.send|rand\.intn|uuid\.rfc4122|opa\.runtime|net\.lookup_ip_addr"
    r"|crypto\.x509\.parse_and_verify_certificates|io\.jwt\.decode_verify)\b"
)
VALIDATE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest class

    name: str
    passed: bool
    detail: str | None = None
    skipped: bool = False


@dataclass(frozen=True)
class TestReport:
    __test__ = False  # not a pytest class

    results: tuple[TestResult, ...]

    @property
    def failures(self) -> list[TestResult]:
        return [r for r in self.results if not r.passed]

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed and not r.skipped)

    @property
    def skipped(self) -> int:
        return sum(1 for r in self.results if r.skipped)


@dataclass(frozen=True)
class Case:
    """One table case from a test module's `cases` object."""

    name: str
    input: Mapping[str, Any]
    allow: bool
    reasons: tuple[str, ...] = ()
    obligations: Mapping[str, Any] = field(default_factory=dict)
    matrix: Mapping[str, Any] | None = None
    path: str = AUTHZ_DECISION


def strip_comments(source: str) -> str:
    """Rego source with `#` comments removed (strings and raw strings respected)."""
    out: list[str] = []
    quote: str | None = None
    escaped = False
    skipping = False
    for ch in source:
        if skipping:
            if ch == "\n":
                skipping = False
                out.append(ch)
            continue
        if quote is not None:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch == "#":
            skipping = True
            continue
        if ch in ('"', "`"):
            quote = ch
        out.append(ch)
    return "".join(out)


def nondeterministic_builtins(modules: Mapping[str, str]) -> list[str]:
    """Built-ins in the policy whose results vary for the same input (no caching then)."""
    found: set[str] = set()
    for source in modules.values():
        found.update(m.group(1) for m in _NONDETERMINISTIC.finditer(strip_comments(source)))
    return sorted(found)


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `patch` merged in: objects merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in patch.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def _package(source: str) -> str | None:
    m = _PACKAGE.search(strip_comments(source))
    return m.group(1) if m else None


def _parse_case(name: str, raw: Any) -> Case:
    if not isinstance(raw, dict) or not isinstance(raw.get("input"), dict):
        raise ValueError("a case needs an 'input' object")
    if not isinstance(raw.get("allow"), bool):
        raise ValueError("a case needs 'allow': true or false")
    reasons = raw.get("reasons", [])
    obligations = raw.get("obligations", {})
    matrix = raw.get("matrix")
    path = raw.get("path", AUTHZ_DECISION)
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise ValueError("'reasons' must be a list of strings")
    if not isinstance(obligations, dict) or (matrix is not None and not isinstance(matrix, dict)):
        raise ValueError("'obligations' and 'matrix' must be objects")
    if not isinstance(path, str):
        raise ValueError("'path' must be a string")
    unknown = set(raw) - {"input", "allow", "reasons", "obligations", "matrix", "path"}
    if unknown:
        raise ValueError(f"unknown case fields {sorted(unknown)}")
    return Case(name, raw["input"], raw["allow"], tuple(reasons), obligations, matrix, path)


def check_case(case: Case, result: Any, defined: bool = True) -> str | None:
    """Why `result` (a decision document) does not meet `case`; None when it does."""
    if not defined or not isinstance(result, dict):
        return f"no decision (result {result!r})"
    allow = result.get("allow") is True
    raw = result.get("reasons")
    reasons: list[Any] = raw if isinstance(raw, list) else []
    if allow != case.allow:
        return f"allow is {allow}, expected {case.allow}; reasons: {reasons}"
    for want in case.reasons:
        if not any(isinstance(got, str) and want in got for got in reasons):
            return f"no reason contains {want!r}; reasons: {reasons}"
    obligations = result.get("obligations")
    for key, want in case.obligations.items():
        got = obligations.get(key) if isinstance(obligations, dict) else None
        if got != want or type(got) is not type(want):
            return f"obligation {key} is {got!r}, expected {want!r}"
    return None


def collect_cases(bundle: PolicyBundle) -> tuple[list[Case], list[TestResult]]:
    """Every case in the bundle's test modules, plus failures for malformed ones."""
    from policies._engine import UNDEFINED, RegoProgram

    targets = _test_targets(bundle)
    case_paths = [p for p, kind in targets if kind == "cases"]
    if not case_paths:
        return [], []
    program = RegoProgram(bundle.modules, bundle.data(), case_paths)
    cases: list[Case] = []
    broken: list[TestResult] = []
    for path in case_paths:
        package = path.replace("/", ".").removesuffix(".cases")
        value = program.evaluate(path, "{}")
        if value is UNDEFINED or not isinstance(value, dict):
            broken.append(TestResult(f"{package}.cases", False, "cases is not an object"))
            continue
        for name, raw in sorted(value.items()):
            try:
                cases.append(_parse_case(f"{package}.cases.{name}", raw))
            except ValueError as exc:
                broken.append(TestResult(f"{package}.cases.{name}", False, str(exc)))
    return cases, broken


def _test_targets(bundle: PolicyBundle) -> list[tuple[str, str]]:
    """(entrypoint, "rule" | "cases") for every test rule and cases object."""
    targets: list[tuple[str, str]] = []
    for source in bundle.test_modules.values():
        package = _package(source)
        if package is None:
            continue
        code = strip_comments(source)
        prefix = package.replace(".", "/")
        for rule in dict.fromkeys(m.group(1) for m in _TEST_RULE.finditer(code)):
            targets.append((f"{prefix}/{rule}", "rule"))
        if _CASES_RULE.search(code):
            targets.append((f"{prefix}/cases", "cases"))
    return targets


def _unsupported_with(bundle: PolicyBundle) -> list[str]:
    return [
        f"{name}: uses `with {m.group(1)}`, which rego-cpp cannot evaluate; write a case "
        "in `cases` instead (policies/README.md)"
        for name, source in bundle.modules.items()
        for m in [_WITH.search(strip_comments(source))]
        if m is not None
    ]


def run_tests(
    bundle: PolicyBundle,
    decide: Callable[[Case], tuple[Any, bool]] | None = None,
) -> TestReport:
    """Run every test rule and case of `bundle` in this process.

    `decide(case)` evaluates a case on another engine (the remote OPA) and returns
    (result, defined); by default a program compiled from the bundle evaluates it.
    Raises `PolicyInvalid` when the bundle does not compile.
    """
    from policies._engine import UNDEFINED, RegoProgram

    problems = check_matrix(bundle.matrix) + _unsupported_with(bundle)
    if problems:
        raise PolicyInvalid("the policy bundle is invalid", errors=problems)
    # The policy alone must compile for its entrypoints, as the decision point will.
    RegoProgram(bundle.policy_modules, bundle.data(), bundle.entrypoints)
    targets = _test_targets(bundle)
    results: list[TestResult] = []
    rule_paths = [p for p, kind in targets if kind == "rule"]
    if rule_paths:
        tests = RegoProgram(bundle.modules, bundle.data(), rule_paths)
        for path in rule_paths:
            name = path.replace("/", ".")
            try:
                value = tests.evaluate(path, "{}")
            except PolicyError as exc:
                results.append(TestResult(name, False, exc.detail))
                continue
            detail = None if value is True else f"evaluated to {_show(value, UNDEFINED)}"
            results.append(TestResult(name, value is True, detail))
    cases, broken = collect_cases(bundle)
    results += broken
    results += _run_cases(bundle, cases, decide)
    if not results:
        results.append(TestResult("(bundle)", False, "the bundle carries no tests"))
    return TestReport(tuple(results))


def _show(value: Any, undefined: Any) -> str:
    return "undefined" if value is undefined else json.dumps(value, ensure_ascii=False)[:200]


def _run_cases(
    bundle: PolicyBundle,
    cases: list[Case],
    decide: Callable[[Case], tuple[Any, bool]] | None,
) -> Iterator[TestResult]:
    from policies._engine import UNDEFINED, RegoProgram

    programs: dict[str, RegoProgram] = {}
    for case in cases:
        try:
            if decide is not None:
                result, defined = decide(case)
            else:
                key = json.dumps(case.matrix, sort_keys=True)
                program = programs.get(key)
                if program is None:
                    data = bundle.data()
                    if case.matrix is not None:
                        data = {"pdx": {"matrix": deep_merge(bundle.matrix, case.matrix)}}
                    paths = sorted({*bundle.entrypoints, *(c.path for c in cases)})
                    program = programs[key] = RegoProgram(bundle.policy_modules, data, paths)
                value = program.evaluate(case.path, json.dumps(case.input, ensure_ascii=False))
                result, defined = (None, False) if value is UNDEFINED else (value, True)
        except PolicyError as exc:
            yield TestResult(case.name, False, f"{exc.code}: {exc.detail}")
            continue
        failure = check_case(case, result, defined)
        yield TestResult(case.name, failure is None, failure)


def run_cases_on(bundle: PolicyBundle, decide: Callable[[Case], tuple[Any, bool]]) -> TestReport:
    """Run the bundle's cases on another engine (a remote OPA holding the same bundle).

    Cases that patch the grading matrix need data the engine does not hold: skipped.
    """
    cases, broken = collect_cases(bundle)
    results = list(broken)
    plain = [c for c in cases if c.matrix is None]
    results += [
        TestResult(c.name, True, "overrides the matrix: not run remotely", skipped=True)
        for c in cases
        if c.matrix is not None
    ]
    results += _run_cases(bundle, plain, decide)
    return TestReport(tuple(results))


def validate(bundle: PolicyBundle, *, isolate: bool = True) -> TestReport:
    """Refuse `bundle` unless it compiles, its matrix is valid and all its tests pass.

    Raises `PolicyInvalid` (parse, compile or schema errors, all listed) or
    `PolicyTestsFailed` (`extensions["failures"]` names every failing test with why).
    With `isolate` the work runs in a child process with a time limit.
    """
    report = _validate_in_child(bundle) if isolate else run_tests(bundle)
    failures = report.failures
    if failures:
        listed = "; ".join(f"{f.name}: {f.detail}" for f in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise PolicyTestsFailed(
            f"{len(failures)} of {len(report.results)} policy tests failed: {listed}{more}",
            failures=[{"test": f.name, "detail": f.detail} for f in failures],
            passed=report.passed,
        )
    return report


def _validate_in_child(bundle: PolicyBundle) -> TestReport:
    env = dict(os.environ)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "policies._validate"],
            input=json.dumps(bundle.to_json(), ensure_ascii=False).encode(),
            capture_output=True,
            timeout=VALIDATE_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PolicyInvalid(
            f"validating the bundle took longer than {VALIDATE_TIMEOUT_S:.0f} s",
            errors=["timeout"],
        ) from None
    engine_output = proc.stderr.decode(errors="replace")[-4000:]
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise PolicyInvalid(
            f"the policy engine crashed ({name}) while compiling or testing this bundle",
            errors=[
                f"rego-cpp ended with {name}; see policies/README.md for constructs it "
                "cannot handle"
            ],
            engine_output=engine_output,
        )
    try:
        doc = json.loads(proc.stdout.decode())
    except ValueError:
        raise PolicyInvalid(
            "the bundle validator failed", errors=[engine_output or "no output"]
        ) from None
    if doc.get("error"):
        err = doc["error"]
        extensions = dict(err.get("extensions", {}))
        raise PolicyInvalid(err.get("detail", "the bundle is invalid"), **extensions)
    return TestReport(
        tuple(TestResult(r["name"], r["passed"], r.get("detail")) for r in doc["results"])
    )

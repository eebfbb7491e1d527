"""The Rego tests beside the policies, run through rego-cpp; validation refuses bad bundles.

Also pins every regopy-vs-OPA difference policies/README.md documents, so that a
regopy upgrade that changes one shows up here (crashing ones run in a child process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from policies import PolicyBundle, PolicyInvalid, PolicyTestsFailed, default_bundle, validate
from policies._engine import UNDEFINED, RegoProgram, parse_errors
from policies.checks import TestReport, nondeterministic_builtins, run_tests, strip_comments


@pytest.fixture(scope="module")
def report() -> TestReport:
    return run_tests(default_bundle())


def test_every_rego_test_passes(report: TestReport) -> None:
    assert report.failures == []
    names = [r.name for r in report.results]
    # Both kinds of test run: data-only test rules and table cases, from each module.
    assert any(n.endswith(".test_matrix_keeps_rows_in") for n in names)
    for package in ("pdx.authz_test", "pdx.sod_test", "pdx.zerotrust_test"):
        assert sum(n.startswith(f"{package}.cases.") for n in names) >= 7
    assert len(names) >= 60


def test_validation_isolated_in_a_child_process() -> None:
    report = validate(default_bundle())
    assert report.failures == [] and report.passed >= 60


def _with_module(name: str, source: str) -> PolicyBundle:
    base = default_bundle()
    return PolicyBundle({**base.modules, name: textwrap.dedent(source)}, base.matrix)


def test_parse_errors_are_listed_with_locations() -> None:
    bundle = _with_module("broken.rego", "package pdx.broken\nimport rego.v1\nallow if {\n")
    with pytest.raises(PolicyInvalid) as caught:
        validate(bundle, isolate=False)
    assert any(e.startswith("broken.rego:3:") for e in caught.value.extensions["errors"])


def test_compile_errors_come_from_the_engine_diagnostics() -> None:
    # A rule named v1 collides with `import rego.v1` in rego-cpp: a build error whose
    # text only rego-cpp's printed diagnostics carry.
    bundle = _with_module("clash.rego", "package pdx.clash\nimport rego.v1\nv1 := 2\n")
    with pytest.raises(PolicyInvalid) as caught:
        validate(bundle)
    assert any("conflicting definitions" in e for e in caught.value.extensions["errors"])


def test_failing_tests_are_listed_by_name() -> None:
    base = default_bundle()
    modules = dict(base.modules)
    # Let the auditor administer keys: a sod case and a matrix invariant must object.
    modules["sod.rego"] = modules["sod.rego"].replace(
        '"kms.read",\n]', '"kms.read",\n\t"kms.admin",\n]'
    )
    assert modules["sod.rego"] != base.modules["sod.rego"]
    with pytest.raises(PolicyTestsFailed) as caught:
        validate(PolicyBundle(modules, base.matrix), isolate=False)
    failing = {f["test"] for f in caught.value.extensions["failures"]}
    assert failing == {"pdx.sod_test.cases.auditor_cannot_administer_keys"}
    assert "auditor_cannot_administer_keys" in caught.value.detail
    assert caught.value.code == "policy-tests-failed"


def test_a_bundle_without_tests_is_refused() -> None:
    base = default_bundle()
    with pytest.raises(PolicyTestsFailed, match="carries no tests"):
        validate(PolicyBundle(base.policy_modules, base.matrix), isolate=False)


def test_invalid_matrix_is_refused_before_any_rego_runs() -> None:
    base = default_bundle()
    matrix = json.loads(json.dumps(base.matrix))
    matrix["cells"]["core/open"]["actions"]["dataset.download"] = {"allow": True}
    matrix["cells"]["closed"]["actions"]["computation.request"] = {"allow": True}
    matrix["roles_by_kind"]["security"] = ["security-admin", "auditor"]
    with pytest.raises(PolicyInvalid) as caught:
        validate(PolicyBundle(base.modules, matrix), isolate=False)
    errors = caught.value.extensions["errors"]
    assert (
        "matrix.cells.core/open.actions.dataset.download: rows of core data never leave" in errors
    )
    assert any("closed (不予开放) data permits nothing" in e for e in errors)
    assert any("separation of duties" in e for e in errors)


def test_matrix_type_errors_name_the_field() -> None:
    base = default_bundle()
    matrix = json.loads(json.dumps(base.matrix))
    matrix["session"]["max_token_age_s"] = 3600
    matrix["cells"]["general-4/open"]["actions"]["computation.request"]["obligations"][
        "dp_epsilon"
    ] = -1
    with pytest.raises(PolicyInvalid) as caught:
        validate(PolicyBundle(base.modules, matrix), isolate=False)
    errors = " ".join(caught.value.extensions["errors"])
    assert "matrix.session.max_token_age_s" in errors
    assert "dp_epsilon" in errors


def test_with_in_a_module_is_refused_with_advice() -> None:
    bundle = _with_module(
        "w_test.rego",
        """\
        package pdx.w_test
        import rego.v1
        import data.pdx.authz
        test_w if {
        \tauthz.allow with input as {}
        }
        """,
    )
    with pytest.raises(PolicyInvalid, match="invalid") as caught:
        validate(bundle, isolate=False)
    assert "write a case in `cases` instead" in caught.value.extensions["errors"][0]


def test_malformed_bundles() -> None:
    with pytest.raises(PolicyInvalid):
        PolicyBundle({"../evil.rego": "package x"}, {})
    with pytest.raises(PolicyInvalid):
        PolicyBundle.from_json({"modules": {}, "matrix": {}, "extra": 1})
    with pytest.raises(PolicyInvalid):
        PolicyBundle.from_json([1, 2])
    with pytest.raises(PolicyInvalid):
        PolicyBundle({"a.rego": "package a"}, {"x": float("nan")})


def test_digest_is_stable_and_content_addressed() -> None:
    base = default_bundle()
    again = PolicyBundle.from_json(json.loads(json.dumps(base.to_json())))
    assert again.digest == base.digest and len(base.digest) == 64
    changed = PolicyBundle(base.modules, {**base.matrix, "description": "x"})
    assert changed.digest != base.digest


def test_nondeterminism_scan_ignores_comments_and_strings() -> None:
    assert nondeterministic_builtins(default_bundle().policy_modules) == []
    assert nondeterministic_builtins({"a.rego": "x := time.now_ns()\n"}) == ["time.now_ns"]
    assert nondeterministic_builtins({"a.rego": "# time.now_ns()\n"}) == []
    assert strip_comments('a := "#x" # c\n') == 'a := "#x" \n'


# -- regopy 1.5.2 vs OPA (policies/README.md) ------------------------------------------


def _eval(source: str, entry: str, input_doc: object = None) -> object:
    program = RegoProgram({"t.rego": source}, {}, [entry])
    return program.evaluate(entry, json.dumps(input_doc if input_doc is not None else {}))


def _crashes(code: str) -> bool:
    """Whether `code` kills the interpreter (run in a child process)."""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=False
    )
    return proc.returncode < 0


def test_regopy_query_of_a_false_rule_is_undefined() -> None:
    src = "package t\nimport rego.v1\ndefault allow := false\nallow if input.x == 1\n"
    program = RegoProgram({"t.rego": src}, {}, ["t/allow"])
    # Compiled entrypoint: false as OPA would give it.
    assert program.evaluate("t/allow", "{}") is False
    # Ad hoc query `data.t.allow` (OPA: false): rego-cpp says undefined.
    assert program.query_text("data.t.allow").strip() == "undefined"
    assert program.query("data.t.allow") is False  # binding the value works around it


def test_regopy_sprintf_quotes_builtin_made_strings() -> None:
    src = 'package t\nimport rego.v1\nx := sprintf("%v may", [concat("/", ["a", "b"])])\n'
    from policies.errors import PolicyEvaluationFailed

    # OPA: "a/b may". rego-cpp emits "\"a/b\" may" unescaped, so its output is not JSON.
    with pytest.raises(PolicyEvaluationFailed, match="malformed output"):
        _eval(src, "t/x")
    ok = 'package t\nimport rego.v1\nx := concat("", [concat("/", ["a", "b"]), " may"])\n'
    assert _eval(ok, "t/x") == "a/b may"


def test_regopy_strings_keep_json_escapes() -> None:
    src = 'package t\nimport rego.v1\nn := count(input.s)\neq if input.s == "中"\n'
    program = RegoProgram({"t.rego": src}, {}, ["t/n", "t/eq"])
    # Raw UTF-8 input: as OPA.
    assert program.evaluate("t/eq", json.dumps({"s": "中"}, ensure_ascii=False)) is True
    # \u-escaped input: the same JSON value, but rego-cpp sees a different string.
    assert program.evaluate("t/eq", json.dumps({"s": "中"})) is UNDEFINED
    # count() counts escape characters (OPA: 4).
    assert program.evaluate("t/n", json.dumps({"s": 'a"b\n'})) == 6


def test_regopy_rejects_one_line_bodies_opa_accepts() -> None:
    for body in ("p if not q with input as {}", "p if every x in [1] { x > 0 }"):
        with pytest.raises(PolicyInvalid):
            RegoProgram({"t.rego": f"package t\nimport rego.v1\nq := 1\n{body}\n"}, {}, ["t/p"])


def test_regopy_rejects_some_kv_then_semicolon_in_a_comprehension() -> None:
    bad = "package t\nimport rego.v1\nx := {i | some i, v in [1, 2]; v > 1}\n"
    with pytest.raises(PolicyInvalid):
        RegoProgram({"t.rego": bad}, {}, ["t/x"])
    good = "package t\nimport rego.v1\nx := {i | v := [1, 2][i]; v > 1}\n"
    assert _eval(good, "t/x") == [1]


def test_regopy_crashes_on_with_over_dependent_rules() -> None:
    module = 'package a\nimport rego.v1\nallow if input.x == 1\nd := {"allow": allow}\n'
    code = (
        "import regopy\n"
        "r = regopy.Interpreter()\n"
        "r.log_level = regopy.LogLevel.NONE\n"
        f"r.add_module('a.rego', {module!r})\n"
        "print(r.query('x := data.a.d with input as {\"x\": 1}'))\n"
    )
    assert _crashes(code)


def test_regopy_build_failure_reports_no_detail_through_the_api() -> None:
    with pytest.raises(PolicyInvalid) as caught:
        RegoProgram({"t.rego": "package t\nimport rego.v1\nv1 := 1\n"}, {}, ["t/v1"])
    assert caught.value.extensions["errors"] == ["the engine reported an error without detail"]


def test_parse_errors_map_offsets_to_lines() -> None:
    raw = "(rego-errorseq\n  (error 6:m.rego|10|1\n    (errormsg 16:this is unclosed)))"
    assert parse_errors(raw, {"m.rego": "package x\nallow if {"}) == [
        "m.rego:2:1: this is unclosed"
    ]
    assert parse_errors("garbage", {}) == ["garbage"]


# -- input as a value tree vs JSON text ----------------------------------------------------

_ECHO = """package t
import rego.v1
echo := input
n := count(input.s)
eq_cn if input.s == "中"
eq_quote if input.s == "a\\"b"
keys := object.keys(input.o)
big := input.big + 1
"""
_ECHO_PATHS = ["t/echo", "t/n", "t/eq_cn", "t/eq_quote", "t/keys", "t/big"]

_AWKWARD: list[object] = [
    {"s": "中", "o": {"中": 1}},
    {"s": 'a"b', "o": {'k"y': 'v"l'}},
    {"s": "a\\b\n\t\x01\x1f\x7f", "o": {"\\": "\n"}},
    {"s": "", "o": {}, "big": 9_223_372_036_854_775_806, "l": []},
    {"s": "x", "o": {"a": [1, [2, {"b": None}], True, False]}, "big": -(1 << 63)},
    {"s": "x", "o": {}, "big": 1 << 70},  # beyond int64: sent as JSON text
    {"s": "x", "o": {"f": 0.5}, "big": 2},  # float: sent as JSON text
    {"s": "x", "o": {"t": (1, 2)}, "big": 0},
]


def test_value_tree_input_matches_json_text_input_on_awkward_values() -> None:
    program = RegoProgram({"t.rego": _ECHO}, {}, _ECHO_PATHS)
    for doc in _AWKWARD:
        for path in _ECHO_PATHS:
            as_text = program.evaluate(path, json.dumps(doc, ensure_ascii=False))
            assert program.evaluate_value(path, doc) == as_text, (doc, path)


def test_value_tree_input_matches_json_text_input_on_every_policy_case() -> None:
    from policies.checks import collect_cases

    bundle = default_bundle()
    program = RegoProgram(bundle.policy_modules, bundle.data(), bundle.entrypoints)
    cases, _ = collect_cases(bundle)
    inputs = [c.input for c in cases if c.matrix is None and c.path in bundle.entrypoints]
    assert len(inputs) >= 50
    for doc in inputs:
        text = json.dumps(doc, ensure_ascii=False)
        assert program.evaluate_value(cases[0].path, doc) == program.evaluate(
            cases[0].path, text
        ), doc


def test_value_tree_refuses_what_json_refuses() -> None:
    program = RegoProgram({"t.rego": _ECHO}, {}, _ECHO_PATHS)
    with pytest.raises(TypeError):
        program.evaluate_value("t/echo", {"x": object()})
    # Keys that are not strings go the JSON-text route, which turns them into strings.
    assert program.evaluate_value("t/echo", {1: "one"}) == {"1": "one"}
    nested: list[object] = []
    for _ in range(5000):
        nested = [nested]
    with pytest.raises(ValueError):
        program.evaluate_value("t/echo", nested)


def test_value_tree_refuses_depth_whatever_the_recursion_limit() -> None:
    program = RegoProgram({"t.rego": _ECHO}, {}, _ECHO_PATHS)
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(12_288)  # as py-evm sets it in a gateway that anchors
    try:
        nested: list[object] = []
        for _ in range(5000):
            nested = [nested]
        with pytest.raises(ValueError):
            program.evaluate_value("t/echo", nested)
    finally:
        sys.setrecursionlimit(previous)

"""rego-cpp's shared library in a process with other C++ extensions: no leak, no crash.

regopy's `librego_shared.so` exports snmalloc's `operator new`/`delete`. Loaded the
ordinary way after greenlet (SQLAlchemy) it leaked ~89 KB per decision; loaded before
TenSEAL it made TenSEAL abort ("free(): invalid pointer"). `policies._rego` loads it in
its own link-map namespace. Each check runs in a fresh interpreter, because what goes
wrong depends on which library loaded libstdc++ first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from policies import _rego


def _run(code: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


_DECIDE_MANY = """
    import json, resource
    from policies import AUTHZ_DECISION, ActivePolicy, EmbeddedDecisionPoint, default_bundle
    from bench.policy import _variant

    bundle = default_bundle()
    policy = ActivePolicy(0, bundle.digest, bundle, "test", None, "test")
    dp = EmbeddedDecisionPoint(policy, cache_size=0)
    inputs = [_variant(i) for i in range(64)]

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    for i in range(300):
        assert dp.decide(AUTHZ_DECISION, inputs[i % 64]).allow
    before, faults = rss(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    n = 2000
    for i in range(n):
        dp.decide(AUTHZ_DECISION, inputs[i % 64])
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(json.dumps({"growth_per_decision": (rss() - before) / n, "faults": faults / n}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and dlmopen: Linux")
def test_the_engine_loads_in_its_own_namespace() -> None:
    assert _rego.ISOLATED


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("first", ["greenlet", "tenseal", "numpy", "sys"])
def test_decisions_do_not_leak_whatever_loaded_first(first: str) -> None:
    """2,000 uncached decisions; ordinary loading leaked 178 MB (89 KB each) here."""
    got = _run(f"import {first}\n" + textwrap.dedent(_DECIDE_MANY))
    assert got["growth_per_decision"] < 1024, got
    assert got["faults"] < 2, got


@pytest.mark.parametrize("tenseal_first", [True, False])
def test_tenseal_runs_beside_the_engine_whichever_loads_first(tenseal_first: bool) -> None:
    """The gateway process evaluates policies and may run TenSEAL; neither breaks the other.

    (With regopy's own module imported before TenSEAL, TenSEAL aborted on its first
    serialisation; the engine never imports it, which the next test pins.)
    """
    imports = ["import tenseal as ts", "from policies._engine import RegoProgram"]
    if not tenseal_first:
        imports.reverse()
    code = (
        "\n".join(imports)
        + """
import json
from policies import default_bundle

bundle = default_bundle()
program = RegoProgram(bundle.policy_modules, bundle.data(), bundle.entrypoints)
allowed = program.evaluate_value("pdx/authz/decision", {})["allow"]
ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
ctx.global_scale = 2**40
ctx.generate_galois_keys()
vec = ts.ckks_vector(ctx, [1.0, 2.0, 3.0])
back = ts.ckks_vector_from(ctx, vec.serialize())
total = back.sum().decrypt()[0]
ts.context_from(ctx.serialize(save_secret_key=True))
print(json.dumps({"sum": total, "allowed": allowed}))
"""
    )
    got = _run(code)
    assert abs(got["sum"] - 6.0) < 1e-3 and got["allowed"] is False


def test_the_gateway_never_imports_regopys_wrapper() -> None:
    """Importing `regopy` would load its library the ordinary way again (see module doc)."""
    code = """
        import json, sys
        import gateway.app, gateway.cli, bench.policy
        from policies import AUTHZ_DECISION, ActivePolicy, EmbeddedDecisionPoint, default_bundle

        bundle = default_bundle()
        dp = EmbeddedDecisionPoint(ActivePolicy(0, bundle.digest, bundle, "t", None, "t"))
        dp.decide(AUTHZ_DECISION, {})
        print(json.dumps({"imported": "regopy" in sys.modules}))
    """
    assert _run(code) == {"imported": False}

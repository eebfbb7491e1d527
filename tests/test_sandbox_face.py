"""The sandbox package's public face (`sandbox.__all__`) and the result party's key export."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sandbox
from exchange.jobs import export_secret, restore_result_party
from sandbox import ckks
from sandbox.coordinator import Coordinator, ResultParty, Scheme, seal_vector

ROOT = Path(__file__).resolve().parents[1]

# Modules whose import would drag PySyft, TenSEAL, phe, numpy or requests into the worker.
_HEAVY = ("syft", "tenseal", "phe", "numpy", "requests", "sqlalchemy", "crypto")


def test_every_public_name_is_the_object_of_its_module() -> None:
    assert sorted(sandbox.__all__) == sorted(sandbox._exports())
    for name in sandbox.__all__:
        module = importlib.import_module(sandbox._exports()[name])
        assert getattr(sandbox, name) is getattr(module, name), name
    with pytest.raises(AttributeError):
        sandbox.__getattr__("_worker_protocol_secret")
    from sandbox import errors  # a module, not a name of the table

    assert errors.SandboxError is sandbox.SandboxError


def test_the_worker_imports_no_public_module_but_isolation() -> None:
    """`python -I -m sandbox._worker` runs `sandbox/__init__.py`: it must stay lazy."""
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import sandbox._worker\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-B", "-c", script], capture_output=True, check=True, timeout=60
    )
    loaded = set(json.loads(done.stdout))
    assert not {m for m in loaded if m.split(".")[0] in _HEAVY}
    public = set(sandbox._exports().values()) - {"sandbox.errors", "sandbox.isolation"}
    assert not public & loaded


@pytest.mark.parametrize(
    ("scheme", "extra"),
    [
        ("paillier-packed", {"paillier_bits": 1024}),
        ("ckks", {"ckks_params": ckks.CkksParams.COMPACT}),
        ("unsafe-plain", {}),
    ],
)
def test_a_restored_result_party_decrypts_the_jobs_aggregate(
    scheme: Scheme, extra: dict[str, Any]
) -> None:
    party = ResultParty(scheme, **extra)
    coordinator = Coordinator(party.public)
    layout = {"fields": ["a", "b", "c"]}
    coordinator.submit("p1", seal_vector(party.public, "partial", layout, [1, 2, 3]).to_bytes())
    coordinator.submit("p2", seal_vector(party.public, "partial", layout, [10, 20, 30]).to_bytes())
    aggregate = coordinator.aggregate()
    exported = party.export()
    restored = ResultParty.restore(exported)
    assert restored.public == party.public
    assert restored.ckks_params == party.ckks_params
    values = np.asarray(restored.decrypt(aggregate).values, dtype=np.float64)
    assert np.allclose(values, [11, 22, 33], atol=restored.tolerance(2) + 1e-9)
    if scheme != "ckks":  # TenSEAL may serialise a reloaded context differently
        assert restored.export() == exported
    # exchange.jobs seals and reopens job keys through the same two methods.
    again = restore_result_party(export_secret(party))
    assert np.allclose(
        np.asarray(again.decrypt(aggregate).values, dtype=np.float64),
        [11, 22, 33],
        atol=again.tolerance(2) + 1e-9,
    )


def test_a_restored_party_refuses_another_jobs_aggregate() -> None:
    party = ResultParty("paillier-packed", paillier_bits=1024)
    other = ResultParty("paillier-packed", paillier_bits=1024)
    coordinator = Coordinator(other.public)
    coordinator.submit("p1", seal_vector(other.public, "partial", {}, [1]).to_bytes())
    with pytest.raises(sandbox.HomomorphicMismatch):
        ResultParty.restore(party.export()).decrypt(coordinator.aggregate())

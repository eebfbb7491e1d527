"""Policy bundles: Rego modules and grading-matrix data activated together; the built-in one."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import crypto
from policies.errors import PolicyInvalid

__all__ = [
    "AUTHZ_DECISION",
    "ActivePolicy",
    "PolicyBundle",
    "canonical_json",
    "default_bundle",
]

# The decision the gateway asks for on every request (OPA Data API path).
AUTHZ_DECISION = "pdx/authz/decision"

POLICY_DIR = Path(__file__).resolve().parent
MATRIX_FILE = POLICY_DIR / "data" / "grading_matrix.json"

_MODULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}\.rego$")
_ENTRYPOINT = re.compile(r"^[a-z][a-z0-9_]*(/[a-z][a-z0-9_]*)+$")
_MAX_MODULES = 64
_MAX_MODULE_BYTES = 256 << 10


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text, no NaN: one text per JSON value.

    Used for bundle digests and as the decision-cache key. (Not RFC 8785: numbers keep
    Python's repr, which is stable for the values policies and inputs carry.)
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


@dataclass(frozen=True, eq=False)
class PolicyBundle:
    """Rego modules (file name → source) plus the grading matrix (`data.pdx.matrix`).

    Modules named `*_test.rego` hold the bundle's tests; the others are the policy.
    `entrypoints` are the decision paths the embedded engine compiles ahead of time.
    Shapes are checked here; Rego and matrix semantics are checked by
    `policies.checks.validate` before activation.
    """

    modules: Mapping[str, str]
    matrix: Mapping[str, Any]
    entrypoints: tuple[str, ...] = (AUTHZ_DECISION,)
    # SHA-256 (hex) of the canonical bundle: what a revision and the ledger record.
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        errors: list[str] = []
        # Checked at run time too: bundles arrive as JSON from the API.
        modules: Any = self.modules
        matrix: Any = self.matrix
        if not isinstance(modules, Mapping) or not modules:
            errors.append("a bundle needs at least one Rego module")
        elif len(modules) > _MAX_MODULES:
            errors.append(f"a bundle may hold at most {_MAX_MODULES} modules")
        else:
            for name, source in modules.items():
                if not isinstance(name, str) or not _MODULE_NAME.match(name):
                    errors.append(f"module name {name!r} must look like 'authz.rego'")
                elif not isinstance(source, str):
                    errors.append(f"{name}: module source must be text")
                elif len(source.encode()) > _MAX_MODULE_BYTES:
                    errors.append(f"{name}: module is larger than {_MAX_MODULE_BYTES} bytes")
        if not isinstance(matrix, Mapping):
            errors.append("the grading matrix must be a JSON object")
        if not self.entrypoints or not all(
            isinstance(e, str) and _ENTRYPOINT.match(e) for e in self.entrypoints
        ):
            errors.append("entrypoints must be paths like 'pdx/authz/decision'")
        if errors:
            raise PolicyInvalid("the policy bundle is malformed", errors=errors)
        object.__setattr__(self, "modules", dict(sorted(self.modules.items())))
        object.__setattr__(self, "entrypoints", tuple(self.entrypoints))
        try:
            canonical = self.canonical()
        except (TypeError, ValueError) as exc:
            raise PolicyInvalid("the grading matrix is not plain JSON", errors=[str(exc)]) from None
        object.__setattr__(self, "digest", crypto.sha256(canonical).hex())

    @property
    def policy_modules(self) -> dict[str, str]:
        """The policy itself: every module that is not a test."""
        return {n: s for n, s in self.modules.items() if not n.endswith("_test.rego")}

    @property
    def test_modules(self) -> dict[str, str]:
        return {n: s for n, s in self.modules.items() if n.endswith("_test.rego")}

    def data(self) -> dict[str, Any]:
        """The base document the policy sees as `data`."""
        return {"pdx": {"matrix": self.matrix}}

    def to_json(self) -> dict[str, Any]:
        """The bundle as the JSON object stored in a revision and taken by PUT /v1/policies."""
        return {
            "modules": dict(self.modules),
            "matrix": self.matrix,
            "entrypoints": list(self.entrypoints),
        }

    @classmethod
    def from_json(cls, doc: Any) -> PolicyBundle:
        """Build a bundle from its JSON object (see `to_json`), refusing other shapes."""
        if not isinstance(doc, Mapping):
            raise PolicyInvalid(
                "a policy bundle is a JSON object with 'modules' and 'matrix'",
                errors=["not a JSON object"],
            )
        unknown = sorted(set(doc) - {"modules", "matrix", "entrypoints"})
        if unknown:
            raise PolicyInvalid(
                "unknown bundle fields", errors=[f"unknown field {k!r}" for k in unknown]
            )
        modules = doc.get("modules")
        matrix = doc.get("matrix")
        if not isinstance(modules, Mapping) or not isinstance(matrix, Mapping):
            raise PolicyInvalid(
                "a policy bundle needs 'modules' (name → Rego source) and 'matrix' (object)",
                errors=["'modules' and 'matrix' must both be JSON objects"],
            )
        entrypoints = doc.get("entrypoints", [AUTHZ_DECISION])
        if not isinstance(entrypoints, list):
            raise PolicyInvalid("'entrypoints' must be a list", errors=["bad entrypoints"])
        return cls(dict(modules), dict(matrix), tuple(entrypoints))

    def canonical(self) -> bytes:
        return canonical_json(self.to_json()).encode()

    @classmethod
    def load_dir(cls, directory: Path) -> PolicyBundle:
        """Every `*.rego` in `directory` plus `data/grading_matrix.json` beneath it."""
        modules = {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.rego"))}
        matrix = json.loads((directory / "data" / "grading_matrix.json").read_text("utf-8"))
        return cls(modules, matrix)


@cache
def default_bundle() -> PolicyBundle:
    """The built-in bundle shipped in `policies/`: what runs before any activation."""
    return PolicyBundle.load_dir(POLICY_DIR)


@dataclass(frozen=True)
class ActivePolicy:
    """A bundle as activated: its revision number, digest, and who activated it when.

    Revision 0 is the built-in bundle when nothing has been activated yet.
    """

    revision: int
    digest: str
    bundle: PolicyBundle
    activated_by: str
    activated_at: datetime | None
    description: str

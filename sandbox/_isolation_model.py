"""What a sandboxed run is made of: the operator's view, limits, the registry, outcomes.

Imported by the worker inside the sandbox too (through `sandbox.isolation`): standard
library and `sandbox.errors` only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

from sandbox.errors import (
    ERRORS_BY_CODE,
    IsolationUnavailable,
    OperatorFailed,
    OutputTooLarge,
    SandboxCpuLimit,
    SandboxError,
    SandboxMemoryLimit,
    SandboxTimeout,
    UnknownOperator,
)

FailureReason = Literal[
    "memory-limit",
    "cpu-limit",
    "timeout",
    "operator-error",
    "isolation-unavailable",
    "output-too-large",
]

_REASON_ERRORS: dict[str, type[SandboxError]] = {
    "memory-limit": SandboxMemoryLimit,
    "cpu-limit": SandboxCpuLimit,
    "timeout": SandboxTimeout,
    "operator-error": OperatorFailed,
    "isolation-unavailable": IsolationUnavailable,
    "output-too-large": OutputTooLarge,
}


# -- what operators see -----------------------------------------------------------------------


@dataclass
class OperatorContext:
    """What an operator sees: its read-only inputs, its scratch dir and one request.

    `state` survives between requests of one session (for example a federated-learning
    node's parsed data between rounds) and dies with the process.
    """

    inputs: tuple[Path, ...]
    scratch: Path
    params: dict[str, Any]
    blobs: dict[str, bytes]
    state: dict[str, Any] = field(default_factory=dict)


class Operator(Protocol):
    """A vetted operator: called once per request inside the sandbox, returns the output."""

    def __call__(self, ctx: OperatorContext, /) -> bytes: ...


# -- limits and the registry --------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed process (CPU and memory for its whole life)."""

    cpu_seconds: int = 60
    memory_bytes: int = 2 << 30
    wall_seconds: float = 120.0
    """Per request, counted from when the request is sent (the first includes start-up)."""
    max_output_bytes: int = 512 << 20
    max_request_bytes: int = 256 << 20
    max_file_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        if self.cpu_seconds < 1 or self.memory_bytes < (64 << 20) or self.wall_seconds <= 0:
            raise ValueError("limits must be positive (memory at least 64 MiB)")
        if min(self.max_output_bytes, self.max_request_bytes, self.max_file_bytes) < 1:
            raise ValueError("size limits must be positive")


@dataclass(frozen=True)
class OperatorSpec:
    """One vetted operator: a stable name and the `module:function` that implements it."""

    name: str
    target: str
    description: str = ""
    limits: Limits = field(default_factory=Limits)
    code_root: Path | None = None
    """Extra read-only directory put on `sys.path` inside (test registries only)."""

    def __post_init__(self) -> None:
        module, sep, attr = self.target.partition(":")
        if not sep or not module or not attr.isidentifier():
            raise ValueError(f"operator target must be 'module:function', got {self.target!r}")


class OperatorRegistry(Mapping[str, OperatorSpec]):
    """An immutable name → operator table; the only way a request can choose code."""

    def __init__(self, specs: Sequence[OperatorSpec]) -> None:
        table: dict[str, OperatorSpec] = {}
        for spec in specs:
            if spec.name in table:
                raise ValueError(f"operator {spec.name!r} registered twice")
            table[spec.name] = spec
        self._specs = table

    def __getitem__(self, name: str) -> OperatorSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def spec(self, name: str) -> OperatorSpec:
        """The operator called `name`, or `UnknownOperator`."""
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownOperator(f"no vetted operator named {name!r}", operator=name) from None


# -- outcomes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxResult:
    """A request that completed: `output` is exactly the bytes the operator returned."""

    operator: str
    output: bytes
    wall_seconds: float
    cpu_seconds: float | None = None
    ok: Literal[True] = True

    def unwrap(self) -> bytes:
        return self.output


@dataclass(frozen=True)
class SandboxFailure:
    """A request that did not complete, with a reason from a closed set.

    `code` and `detail` are safe for a client; `log_tail` is the end of the operator's
    stderr, for the platform's own log only (it may quote data the operator processed).
    """

    operator: str
    reason: FailureReason
    detail: str
    code: str
    extensions: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""
    ok: Literal[False] = False

    def error(self) -> SandboxError:
        cls = ERRORS_BY_CODE.get(self.code) or _REASON_ERRORS[self.reason]
        return cls(self.detail, operator=self.operator, reason=self.reason, **self.extensions)

    def unwrap(self) -> NoReturn:
        raise self.error()


SandboxOutcome = SandboxResult | SandboxFailure


def _failure(
    operator: str, reason: FailureReason, detail: str, code: str | None = None, **ext: Any
) -> SandboxFailure:
    return SandboxFailure(
        operator=operator,
        reason=reason,
        detail=detail,
        code=code or _REASON_ERRORS[reason].code,
        extensions=ext,
    )

"""The embedded engine: rego-cpp programs compiled once and evaluated many times.

A `RegoProgram` owns one rego-cpp interpreter and a bundle compiled for fixed
entrypoints. Compiling costs tens of milliseconds; evaluating a compiled entrypoint
costs about a millisecond, while `Interpreter.query` recompiles every module on every
call (about 30 ms). A program is not thread-safe (the input is interpreter state):
`policies.decision` gives each concurrent caller its own.

rego-cpp comes from regopy's wheel, but through `policies._rego`, which loads its
shared library in a link-map namespace of its own (loaded the ordinary way it leaks
~89 KB per decision or crashes TenSEAL, depending on import order: see that module).
regopy's Python wrappers are not used: `Output` parses the engine's text twice and
fails on rego-cpp's unescaped strings, and reading a failed output segfaults, so this
module calls the C API and checks every status first (policies/README.md, "regopy and
OPA").

Decision inputs are handed to the engine as a built value tree (`evaluate_value`)
rather than as JSON text for rego-cpp to parse: parsing a 1 KB input cost about 0.25 ms
of a 1.4 ms evaluation, building the tree about 0.07 ms. Strings go in JSON-escaped,
exactly as the engine stores them after parsing JSON text, so both routes give the
same values (a test runs every policy case both ways).
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from policies._rego import LOG_NONE, LOG_OUTPUT, OK, held, lib, read_text
from policies.errors import PolicyEvaluationFailed, PolicyInvalid

__all__ = [
    "UNDEFINED",
    "RegoProgram",
    "diagnostic_lines",
    "engine_version",
    "parse_errors",
    "print_diagnostics",
]


class _Undefined:
    """The value of a query that produced no result (OPA's "undefined")."""

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Any = _Undefined()

_ERROR = re.compile(r"\(error (\d+):")
_ERRMSG = re.compile(r"\(errormsg (\d+):")


def engine_version() -> str:
    return read_text(lib.regoBuildInfoSize, lib.regoBuildInfo)


_diagnostics = False


def print_diagnostics(on: bool) -> None:
    """Let rego-cpp print its diagnostics to standard output (the validator child only).

    Some compile errors (rule conflicts, for instance) reach the API without detail;
    the printed diagnostics carry file, line and message.
    """
    global _diagnostics
    _diagnostics = on


def _interpreter() -> int:
    impl = lib.regoNew()
    if not impl:
        raise MemoryError("rego-cpp could not create an interpreter")
    # rego-cpp prints diagnostics to stdout at the default level; in a server the
    # errors come back through the API instead.
    lib.regoSetLogLevel(impl, LOG_OUTPUT if _diagnostics else LOG_NONE)
    return int(impl)


def diagnostic_lines(text: str) -> list[str]:
    """The meaningful lines of rego-cpp's printed diagnostics (no underlines or banners)."""
    lines = []
    for line in text.splitlines():
        bare = line.strip()
        if not bare or set(bare) <= {"~", "-"} or bare.startswith(("Errors:", "Pass ")):
            continue
        lines.append(line.rstrip()[:300])
    return list(dict.fromkeys(lines))[:40]


def _length_prefixed(text: str, at: int) -> tuple[str, int]:
    """rego-cpp writes strings as `N:chars`; return the string and the index after it."""
    colon = text.index(":", at)
    n = int(text[at:colon])
    return text[colon + 1 : colon + 1 + n], colon + 1 + n


def parse_errors(raw: str, sources: Mapping[str, str]) -> list[str]:
    """Turn rego-cpp's error tree into `file:line:col: message` lines.

    Locations come as byte offsets into the named source; unknown shapes fall back to
    the raw text (cut short).
    """
    found: list[str] = []
    for m in _ERROR.finditer(raw):
        try:
            name, after = _length_prefixed(raw, m.start(1))
            offset = int(raw[after + 1 : raw.index("|", after + 1)])
            msg_match = _ERRMSG.search(raw, after)
            if msg_match is None:
                continue
            message, _ = _length_prefixed(raw, msg_match.start(1))
        except ValueError:
            continue
        source = sources.get(name)
        if source is None:
            found.append(f"{name}: {message}")
            continue
        prefix = source.encode()[:offset].decode(errors="replace")
        line = prefix.count("\n") + 1
        col = len(prefix) - (prefix.rfind("\n") + 1) + 1
        found.append(f"{name}:{line}:{col}: {message}")
    if not found:
        text = " ".join(raw.split())
        found.append(text[:500] if text else "the engine reported an error without detail")
    return list(dict.fromkeys(found))


def _error(impl: int) -> str:
    return read_text(held.regoErrorSize, held.regoError, impl)


def _release(impl: int, bundle: int | None) -> None:
    if bundle:
        lib.regoFreeBundle(bundle)
    lib.regoFree(impl)


# --- Input as a value tree -------------------------------------------------------------
#
# rego-cpp's input builder is a stack machine: push scalars, then `object_item` pops a
# key and a value into an item, `object(n)` / `array(n)` pop n entries into a
# collection. Each call returns a status (0 is OK); statuses are OR-ed and checked once.

_new_input: Callable[[], int | None] = held.regoNewInput
_free_input: Callable[[int], None] = held.regoFreeInput
_push_str: Callable[[int, bytes], int] = held.regoInputString
_push_int: Callable[[int, int], int] = held.regoInputInt
_push_bool: Callable[[int, bool], int] = held.regoInputBoolean
_push_null: Callable[[int], int] = held.regoInputNull
_pop_item: Callable[[int], int] = held.regoInputObjectItem
_pop_object: Callable[[int, int], int] = held.regoInputObject
_pop_array: Callable[[int, int], int] = held.regoInputArray

# The characters JSON escapes (json.dumps with ensure_ascii=False escapes only these).
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]').search
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class _NotBuildable(Exception):
    """A value the tree builder does not take: the caller sends JSON text instead.

    Floats (the engine would format them from a double, not from the JSON text), ints
    beyond 64 bits, and anything that is not JSON (json.dumps then raises as usual).
    """


def _engine_text(s: str) -> bytes:
    """A string as rego-cpp holds it after parsing JSON text: its JSON escapes kept."""
    if _NEEDS_ESCAPE(s):
        s = json.dumps(s, ensure_ascii=False)[1:-1]
    return s.encode()


# Object keys repeat from one decision input to the next ("subject", "roles", …): their
# engine text is kept, up to a bound, so a key costs a dict lookup.
_KEY_TEXT: dict[str, bytes] = {}
_KEY_TEXT_MAX = 4096


def _key_text(key: str) -> bytes:
    text = _KEY_TEXT.get(key)
    if text is None:
        text = _engine_text(key)
        if len(_KEY_TEXT) < _KEY_TEXT_MAX:
            _KEY_TEXT[key] = text
    return text


MAX_INPUT_DEPTH = 256
"""Decision inputs nest far less; refused beyond this whatever the recursion limit (py-evm
raises it to 12,288 in a gateway that anchors, which would let a deep value exhaust the C
stack inside the builder)."""


class _TooDeep(Exception):
    """The value nests deeper than `MAX_INPUT_DEPTH`."""


def _push(handle: int, value: Any, depth: int = 0) -> int:
    if depth > MAX_INPUT_DEPTH:
        raise _TooDeep
    kind = type(value)
    if kind is str:
        return _push_str(handle, _engine_text(value))
    if kind is dict:
        status = 0
        for key, item in value.items():
            if type(key) is not str:
                raise _NotBuildable
            status |= _push_str(handle, _key_text(key))
            status |= _push(handle, item, depth + 1)
            status |= _pop_item(handle)
        return status | _pop_object(handle, len(value))
    if kind is list or kind is tuple:
        status = 0
        for item in value:
            status |= _push(handle, item, depth + 1)
        return status | _pop_array(handle, len(value))
    if kind is bool:
        return _push_bool(handle, value)
    if kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return _push_int(handle, value)
        raise _NotBuildable
    if value is None:
        return _push_null(handle)
    raise _NotBuildable  # floats, subclasses, other types: the JSON text route decides


def _input_tree(value: Any) -> int:
    """A new rego-cpp input holding `value`; the caller frees it. Raises `_NotBuildable`."""
    handle = _new_input()
    if not handle:
        raise PolicyEvaluationFailed("the policy engine could not allocate an input")
    try:
        status = _push(handle, value)
    except BaseException:
        _free_input(handle)
        raise
    if status:
        _free_input(handle)
        raise PolicyEvaluationFailed("the policy engine refused the decision input")
    return handle


class RegoProgram:
    """Modules and data compiled for `entrypoints` in one private rego-cpp interpreter.

    Not thread-safe: use one program per thread (see `policies.decision`).
    Raises `PolicyInvalid` with `file:line:col` messages when the modules do not
    compile.
    """

    def __init__(
        self, modules: Mapping[str, str], data: Mapping[str, Any], entrypoints: Sequence[str]
    ) -> None:
        self._impl = impl = _interpreter()
        self._bundle = 0
        self._finalizer = weakref.finalize(self, _release, impl, None)
        self.entrypoints = frozenset(entrypoints)
        errors: list[str] = []
        # ensure_ascii=False: rego-cpp keeps JSON escapes inside strings, so an escaped
        # "\u4e2d" would not equal the policy's literal "中" (README, "regopy and OPA").
        if lib.regoAddDataJSON(impl, json.dumps(data, ensure_ascii=False).encode()) != OK:
            raise PolicyInvalid("the policy data is not accepted", errors=[_error(impl)])
        for name, source in modules.items():
            if lib.regoAddModule(impl, name.encode(), source.encode()) != OK:
                errors += parse_errors(_error(impl), modules)
        if errors:
            raise PolicyInvalid("a policy module does not compile", errors=errors)
        for entrypoint in entrypoints:
            if lib.regoAddEntrypoint(impl, entrypoint.encode()) != OK:
                raise PolicyInvalid("an entrypoint is not accepted", errors=[_error(impl)])
        # A failed build returns a bundle that is not ok rather than failing.
        bundle = lib.regoBuild(impl)
        if bundle:
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _release, impl, int(bundle))
        if not bundle or not lib.regoBundleOk(bundle):
            raise PolicyInvalid(
                "the policy does not compile", errors=parse_errors(_error(impl), modules)
            )
        self._bundle = int(bundle)

    def evaluate(self, entrypoint: str, input_json: str) -> Any:
        """The value of `entrypoint` for the input (JSON text), or `UNDEFINED`.

        Raises `PolicyEvaluationFailed` when the engine reports an error (for example a
        rule conflict) or produces output that is not JSON.
        """
        if entrypoint not in self.entrypoints:
            return UNDEFINED
        if lib.regoSetInputTerm(self._impl, input_json.encode()) != OK:
            raise PolicyEvaluationFailed(
                "the policy engine refused the decision input", errors=[_error(self._impl)]
            )
        return self._query(entrypoint)

    def evaluate_value(self, entrypoint: str, value: Any) -> Any:
        """As `evaluate`, for the input as a Python value (a JSON document).

        The value is built into the engine's own tree, which is faster than having it
        parse JSON text; values the builder does not take go as JSON text (`TypeError`
        or `ValueError` from `json.dumps` when the value is not JSON).
        """
        if entrypoint not in self.entrypoints:
            return UNDEFINED
        try:
            handle = _input_tree(value)
        except _NotBuildable:
            return self.evaluate(entrypoint, json.dumps(value, ensure_ascii=False))
        except (RecursionError, _TooDeep):
            raise ValueError("the decision input is nested too deeply") from None
        try:
            # The engine clones the value (regoSetInput), so the builder is freed here.
            status = held.regoSetInput(self._impl, handle)
        finally:
            _free_input(handle)
        if status != OK:
            raise PolicyEvaluationFailed(
                "the policy engine refused the decision input", errors=[_error(self._impl)]
            )
        return self._query(entrypoint)

    def _query(self, entrypoint: str) -> Any:
        out = lib.regoBundleQueryEntrypoint(self._impl, self._bundle, entrypoint.encode())
        text = self._read(out, "the policy engine failed to evaluate the decision", path=entrypoint)
        return _value(text, entrypoint)

    def _read(self, out: int | None, failure: str, **context: Any) -> str:
        """The text of an output, freed after; a failed output is never read (it crashes)."""
        if not out:
            raise PolicyEvaluationFailed(failure, errors=[_error(self._impl)], **context)
        try:
            if not held.regoOutputOk(out):
                errors = parse_errors(_error(self._impl), {})
                raise PolicyEvaluationFailed(failure, errors=errors, **context)
            return read_text(held.regoOutputJSONSize, held.regoOutputJSON, out)
        finally:
            held.regoFreeOutput(out)

    def query_text(self, query: str) -> str:
        """rego-cpp's raw output for an ad hoc query (recompiles everything: tests only)."""
        out = lib.regoQuery(self._impl, query.encode())
        return self._read(out, "the policy engine failed to evaluate a query", query=query)

    def query(self, query: str) -> Any:
        """Evaluate an ad hoc query with full recompilation (slow: tests and tooling only)."""
        text = self.query_text(f"__pdx_value__ := {query}")
        if text.strip() == "undefined":
            return UNDEFINED
        try:
            doc = json.loads(text)
        except ValueError:
            raise PolicyEvaluationFailed("the policy engine produced malformed output") from None
        bindings = doc.get("bindings", {}) if isinstance(doc, dict) else {}
        return bindings.get("__pdx_value__", UNDEFINED)


def _value(text: str, entrypoint: str) -> Any:
    """The value in rego-cpp's `{"expressions":[value]}` output; `undefined` when none."""
    if text.strip() == "undefined":
        return UNDEFINED
    try:
        doc = json.loads(text)
    except ValueError:
        # rego-cpp does not escape some strings it builds (README): fail closed.
        raise PolicyEvaluationFailed(
            "the policy engine produced malformed output", path=entrypoint
        ) from None
    if isinstance(doc, list):  # several results: not a single-valued decision
        raise PolicyEvaluationFailed("the decision has more than one value", path=entrypoint)
    expressions = doc.get("expressions") if isinstance(doc, dict) else None
    if not expressions:
        return UNDEFINED
    return expressions[0]

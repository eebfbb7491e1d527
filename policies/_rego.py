"""rego-cpp's C API, from regopy's shared library loaded into a link-map namespace of its own.

Why not `import regopy`: `librego_shared.so` links snmalloc statically and exports
`operator new` / `operator delete`. Which allocator a process then uses depends on which
library loaded libstdc++ first:

- another C++ extension first (greenlet, which SQLAlchemy imports, numpy, TenSEAL):
  libstdc++ allocates with glibc inside rego-cpp (every `std::ostringstream`), rego-cpp
  frees with snmalloc, which ignores foreign pointers. Measured: 89 KB leaked and 22
  page faults per authorisation decision, so a gateway grows by ~89 MB per thousand
  uncached decisions.
- regopy first: libstdc++ is bound to snmalloc for the whole process, and TenSEAL then
  aborts with "free(): invalid pointer" when it frees a string libstdc++ grew.

`dlmopen(LM_ID_NEWLM, …)` gives rego-cpp a private copy of libstdc++ bound to its own
allocator and leaves every other library alone (tested: no growth over thousands of
decisions with greenlet and TenSEAL loaded, and TenSEAL round trips in the same process).
Where `dlmopen` is missing (not glibc) the library is loaded the ordinary way and
`ISOLATED` is False.

This module only declares the C functions (signatures as in rego-cpp's `rego/rego_c.h`,
the same regopy declares); `policies._engine` builds on it. The wheel is still regopy's:
only its Python wrapper is not used.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from ctypes import POINTER, c_bool, c_char, c_char_p, c_int, c_int64, c_long
from ctypes import c_uint32 as c_u32
from ctypes import c_void_p as c_ptr
from pathlib import Path
from typing import Any

__all__ = [
    "ISOLATED",
    "LOG_NONE",
    "LOG_OUTPUT",
    "OK",
    "held",
    "lib",
    "library_path",
    "read_text",
]

OK = 0  # REGO_OK
LOG_NONE = 0
LOG_OUTPUT = 2
_LM_ID_NEWLM = -1


def library_path() -> Path:
    """The `librego_shared.so` of regopy's wheel, found without importing regopy (that loads it)."""
    spec = importlib.util.find_spec("regopy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("regopy is not installed: the embedded policy engine needs it")
    for folder in spec.submodule_search_locations:
        for name in ("librego_shared.so", "librego_shared.dylib", "rego_shared.dll"):
            candidate = Path(folder) / name
            if candidate.exists():
                return candidate
    raise ImportError("regopy is installed without its rego-cpp shared library")


def _load(path: Path) -> tuple[ctypes.CDLL, bool]:
    try:
        libc = ctypes.CDLL(None)
        dlmopen = libc.dlmopen
        dlerror = libc.dlerror
    except (AttributeError, OSError):
        return ctypes.CDLL(str(path), mode=os.RTLD_LOCAL), False
    dlmopen.restype = c_ptr
    dlmopen.argtypes = [c_long, c_char_p, c_int]
    dlerror.restype = c_char_p
    handle = dlmopen(_LM_ID_NEWLM, os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL)
    if not handle:
        reason = dlerror()
        raise ImportError(f"cannot load rego-cpp in its own namespace: {reason!r}")
    return ctypes.CDLL(str(path), handle=handle), True


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "regoBuildInfoSize": (c_u32, []),
    "regoBuildInfo": (c_u32, [POINTER(c_char), c_u32]),
    "regoNew": (c_ptr, []),
    "regoFree": (None, [c_ptr]),
    "regoSetLogLevel": (c_u32, [c_ptr, c_u32]),
    "regoErrorSize": (c_u32, [c_ptr]),
    "regoError": (c_u32, [c_ptr, POINTER(c_char), c_u32]),
    "regoAddModule": (c_u32, [c_ptr, c_char_p, c_char_p]),
    "regoAddDataJSON": (c_u32, [c_ptr, c_char_p]),
    "regoAddEntrypoint": (c_u32, [c_ptr, c_char_p]),
    "regoBuild": (c_ptr, [c_ptr]),
    "regoBundleOk": (c_bool, [c_ptr]),
    "regoFreeBundle": (None, [c_ptr]),
    "regoSetInputTerm": (c_u32, [c_ptr, c_char_p]),
    "regoSetInput": (c_u32, [c_ptr, c_ptr]),
    "regoQuery": (c_ptr, [c_ptr, c_char_p]),
    "regoBundleQueryEntrypoint": (c_ptr, [c_ptr, c_ptr, c_char_p]),
    "regoOutputOk": (c_bool, [c_ptr]),
    "regoOutputJSONSize": (c_u32, [c_ptr]),
    "regoOutputJSON": (c_u32, [c_ptr, POINTER(c_char), c_u32]),
    "regoFreeOutput": (None, [c_ptr]),
    "regoNewInput": (c_ptr, []),
    "regoFreeInput": (None, [c_ptr]),
    "regoInputString": (c_u32, [c_ptr, c_char_p]),
    "regoInputInt": (c_u32, [c_ptr, c_int64]),
    "regoInputBoolean": (c_u32, [c_ptr, c_bool]),
    "regoInputNull": (c_u32, [c_ptr]),
    "regoInputObjectItem": (c_u32, [c_ptr]),
    "regoInputObject": (c_u32, [c_ptr, c_u32]),
    "regoInputArray": (c_u32, [c_ptr, c_u32]),
}

# The same functions twice: `lib` releases the GIL around each call (compiling and
# evaluating: other threads run meanwhile), `held` keeps it (calls of microseconds:
# building an input is ~100 of them, and releasing the GIL around each let other
# request threads in between every one, which under load cost more than the calls).
lib, ISOLATED = _load(library_path())
held = ctypes.PyDLL(lib._name, handle=lib._handle)
for _name, (_restype, _argtypes) in _SIGNATURES.items():
    for _dll in (lib, held):
        _fn = getattr(_dll, _name)
        _fn.restype = _restype
        _fn.argtypes = _argtypes


def read_text(size_fn: Any, read_fn: Any, *handle: Any) -> str:
    """A string the C API hands out as size + copy (`regoError`, `regoOutputJSON`, …)."""
    size = size_fn(*handle)
    buf = ctypes.create_string_buffer(size)
    if read_fn(*handle, buf, size) != OK:
        return ""
    return buf.value.decode("utf-8", errors="replace")

"""Importing the app imports no library that only some operations use.

Every `pdx run` server, `pdx` verb, node process and test worker imports `gateway.app`;
these libraries cost it about a second of CPU together (measured with
`python -X importtime -c "import gateway.app"`), so each is imported by the code that
uses it, when it runs: py_webauthn by the passkey ceremonies, jieba (and the
pkg_resources it loads) by the catalog's text segmentation, requests and urllib3 by a
connection to a provider's node, Alembic by the schema check and migration.
"""

from __future__ import annotations

import os
import subprocess
import sys

LAZY = ("webauthn", "jieba", "pkg_resources", "requests", "urllib3", "alembic")


def test_importing_the_app_imports_no_library_only_some_operations_use() -> None:
    code = f"import sys, gateway.app; print(sorted(set({LAZY!r}) & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr

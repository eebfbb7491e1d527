"""Importing the app imports no library that only some operations use.

Every `pdx run` server, `pdx` verb, node process and test worker imports `gateway.app`;
these libraries cost it about a second of CPU together (measured with
`python -X importtime -c "import gateway.app"`), so each is imported by the code that
uses it, when it runs: py_webauthn by the passkey ceremonies, jieba (and the
pkg_resources it loads) by the catalog's text segmentation, requests and urllib3 by a
connection to a provider's node, Alembic by the schema check and migration.
"""

from __future__ import annotations

from tests.helpers.fresh_python import fresh_python

LAZY = ("webauthn", "jieba", "pkg_resources", "requests", "urllib3", "alembic")


def test_importing_the_app_imports_no_library_only_some_operations_use() -> None:
    code = f"import sys, gateway.app; print(sorted(set({LAZY!r}) & set(sys.modules)))"
    assert fresh_python(code).strip() == "[]"


def test_crypto_mb_loads_when_a_psi_group_is_made_not_when_the_app_is_imported() -> None:
    """Intel's crypto_mb is a ctypes library (not in `sys.modules`): its loader's cache
    tells whether it ran. A PSI group loads it, before any session pool forks."""
    code = (
        "import gateway.app\n"
        "from crypto import _mb_p256 as mb\n"
        "from crypto.psi_ec import PsiGroup\n"
        "before = mb._ecdh.cache_info().currsize; PsiGroup(b'pdx-test-startup-imports')\n"
        "print(before, mb._ecdh.cache_info().currsize)"
    )
    assert fresh_python(code).split() == ["0", "1"]

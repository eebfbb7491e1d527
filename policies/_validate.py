"""Child-process entry for `policies.checks.validate`: bundle JSON in, test report JSON out.

rego-cpp writes diagnostics to standard output; they are moved to standard error so
the parent can show them, and the report goes out on the original standard output.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from policies._engine import diagnostic_lines, print_diagnostics
from policies.bundle import PolicyBundle
from policies.checks import run_tests
from policies.errors import PolicyError


def main() -> int:
    report_fd = os.dup(1)
    engine_out = tempfile.TemporaryFile()
    os.dup2(engine_out.fileno(), 1)
    print_diagnostics(True)
    try:
        bundle = PolicyBundle.from_json(json.loads(sys.stdin.buffer.read()))
        report = run_tests(bundle)
        doc: dict[str, object] = {
            "results": [
                {"name": r.name, "passed": r.passed, "detail": r.detail} for r in report.results
            ]
        }
    except PolicyError as exc:
        sys.stdout.flush()
        engine_out.seek(0)
        printed = diagnostic_lines(engine_out.read().decode(errors="replace"))
        extensions = dict(exc.extensions)
        if printed:
            errors = [e for e in extensions.get("errors", []) if "without detail" not in e]
            extensions["errors"] = errors or printed
            extensions["engine_output"] = printed
        doc = {"error": {"detail": exc.detail, "extensions": extensions}}
    except ValueError as exc:
        doc = {"error": {"detail": "the bundle is not JSON", "extensions": {"errors": [str(exc)]}}}
    with os.fdopen(report_fd, "w", encoding="utf-8") as out:
        json.dump(doc, out, ensure_ascii=False, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())

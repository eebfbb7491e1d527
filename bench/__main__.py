"""`python -m bench AREA [--quick]`: run one benchmark area (or all) from a source checkout.

`pdx bench` runs this in a child process, so the installed server packages never import
`bench` (it is not part of the wheel). Each area module has `run(quick) -> Path`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

AREAS = (
    "ingest", "ledger", "crypto", "policy", "he", "fl", "vertical", "compliance", "sdk",
    "console", "market", "privacy", "jobs",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pdx bench", description=__doc__)
    parser.add_argument("area", choices=(*AREAS, "all"))
    parser.add_argument("--quick", action="store_true", help="reduced size smoke run")
    args = parser.parse_args(argv)
    for area in AREAS if args.area == "all" else (args.area,):
        module = importlib.import_module(f"bench.{area}")
        path = module.run(quick=args.quick)
        print(f"pdx: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

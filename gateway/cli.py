"""The `pdx` command: run the platform, initialise it, drive the demo, run benchmarks."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from gateway.settings import Settings, SettingsError

BENCH_AREAS = ("ingest",)


class CliError(Exception):
    """A failure to report as one line on stderr with a non-zero exit."""


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.platform import build_platform, initialise

    settings = Settings.from_env()
    host = args.host or settings.host
    port = args.port or settings.port
    platform = build_platform(settings)
    creds = initialise(platform)
    if creds is not None:
        print(f"pdx: seeded demo organisations; credentials in {settings.credentials_file}")
    print(f"pdx: serving on http://{host}:{port} (docs at /docs), data in {settings.home}")
    uvicorn.run(create_app(platform), host=host, port=port, log_level=args.log_level)
    return 0


def _init(args: argparse.Namespace) -> int:
    from gateway.platform import build_platform, initialise

    settings = Settings.from_env()
    creds = initialise(build_platform(settings))
    where = f"; demo credentials in {settings.credentials_file}" if creds else ""
    print(f"pdx: initialised {settings.home}{where}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import DemoError, run_demo

    settings = Settings.from_env()
    try:
        run_demo(
            url=args.url or settings.url,
            credentials=args.credentials or settings.credentials_file,
            csv_path=args.csv,
        )
    except DemoError as exc:
        raise CliError(str(exc)) from None
    return 0


def _bench(args: argparse.Namespace) -> int:
    areas = BENCH_AREAS if args.area == "all" else (args.area,)
    for area in areas:
        module = importlib.import_module(f"bench.{area}")
        path = module.run(quick=args.quick)
        print(f"pdx: wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdx", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="initialise if needed and serve the gateway")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--log-level", default="info")
    run.set_defaults(func=_run)

    init = sub.add_parser("init", help="migrate the database and seed demo organisations")
    init.set_defaults(func=_init)

    demo = sub.add_parser("demo", help="run the scripted scenario against a running server")
    demo.add_argument("--url", help="server URL (default: the local one from settings)")
    demo.add_argument("--credentials", help="demo credentials file")
    demo.add_argument("--csv", help="CSV to register (default: examples/transit_trips.csv)")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser("bench", help="run a benchmark area; writes bench/results/AREA.json")
    bench.add_argument("area", choices=(*BENCH_AREAS, "all"))
    bench.add_argument("--quick", action="store_true", help="reduced size smoke run")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (CliError, SettingsError) as exc:
        print(f"pdx: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

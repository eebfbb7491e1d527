"""`pdx run`, `pdx init`, `pdx demo` and `pdx bench`: serve the platform and drive it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli._common import CliError
from gateway.settings import Settings

if TYPE_CHECKING:
    pass


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
    from gateway.mtls import uvicorn_ssl_kwargs

    ssl_kw = uvicorn_ssl_kwargs(settings, hostnames=[host])
    scheme = "https (mutual TLS)" if ssl_kw else "http"
    print(f"pdx: serving {scheme} on {host}:{port} (docs at /docs), data in {settings.home}")
    # proxy_headers=False: uvicorn would trust X-Forwarded-For from 127.0.0.1; the app's
    # ClientAddress middleware honours it only from PDX_TRUSTED_PROXIES (gateway/limits.py).
    uvicorn.run(
        create_app(platform),
        host=host,
        port=port,
        log_level=args.log_level,
        proxy_headers=False,
        **ssl_kw,
    )
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
    if args.sdk_example:
        return _sdk_example(args, settings)
    try:
        run_demo(
            url=args.url or settings.url,
            credentials=args.credentials or settings.credentials_file,
            csv_path=args.csv,
            with_computations=not args.no_computations,
        )
    except DemoError as exc:
        raise CliError(str(exc)) from None
    return 0


def _sdk_example(args: argparse.Namespace, settings: Settings) -> int:
    import json

    import httpx

    from gateway.demo_compute import ComputeDemoError
    from gateway.demo_example import write_sdk_example

    creds_path = Path(args.credentials or settings.credentials_file)
    if not creds_path.exists():
        raise CliError(f"no credentials file at {creds_path}; start the server with `pdx run`")
    creds = json.loads(creds_path.read_text(encoding="utf-8"))
    try:
        with httpx.Client(base_url=args.url or settings.url, timeout=120) as client:
            path = write_sdk_example(client, creds, Path(args.sdk_example))
    except (ComputeDemoError, httpx.HTTPError) as exc:
        raise CliError(str(exc)) from None
    print(f"pdx: wrote {path} and ward0..2.json/.csv for the README's SDK script")
    return 0


def _bench(args: argparse.Namespace) -> int:
    # Benchmarks live in the source checkout (bench/ is not in the wheel) and run in a child
    # process, so the server packages never import them.
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "bench" / "__main__.py").is_file():
        raise CliError("benchmarks run from a source checkout (bench/ not found)")
    command = [sys.executable, "-m", "bench", *args.bench_args]
    return subprocess.run(command, cwd=checkout, check=False).returncode


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The verbs that serve, initialise, demonstrate and benchmark the platform."""
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
    demo.add_argument(
        "--no-computations", action="store_true", help="skip the three-hospital computations"
    )
    demo.add_argument(
        "--sdk-example",
        metavar="DIR",
        help="instead: admit three hospitals and an enterprise; write the SDK example's files",
    )
    demo.set_defaults(func=_demo)
    bench = sub.add_parser(
        "bench",
        help="run a benchmark area from a source checkout; writes bench/results/AREA.json",
        add_help=False,
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="AREA [--quick]")
    bench.set_defaults(func=_bench)

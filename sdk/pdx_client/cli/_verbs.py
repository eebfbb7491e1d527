"""The user verbs: each has `--json`, a progress display on long work and one-line errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from rich.console import Console

from pdx_client import fl, psi
from pdx_client.config import (
    config_dir,
    job_key_passphrase,
    load_job_key,
    load_profile,
    save_job_key,
    save_profile,
)
from pdx_client.errors import PdxError
from pdx_client.jobkeys import JOB_KEY_FL_OPERATORS, JobKey, takes_job_key
from pdx_client.models import Computation
from pdx_client.partykeys import PartyKey
from pdx_client.roles import Enterprise, Provider, _Role
from pdx_client.session import Session
from pdx_client.trail import CheckpointStore

__all__ = ["register"]

Sub = "argparse._SubParsersAction[argparse.ArgumentParser]"
R = TypeVar("R", bound=_Role)
EXIT_FAILED = 1  # the server refused, or a check failed
EXIT_USAGE = 2  # nothing to talk to: no profile, bad arguments

_err = Console(stderr=True, highlight=False)


class _Usage(Exception):
    """A problem with how the verb was called (exit 2)."""


def _out(args: argparse.Namespace, value: Any, text: Callable[[], object]) -> int:
    if args.json:
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        elif isinstance(value, list):
            value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
        print(json.dumps(value, ensure_ascii=False, indent=1, default=str))
    else:
        text()
    return 0


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except PdxError as exc:
            print(f"pdx: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except _Usage as exc:
            print(f"pdx: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as exc:
            print(f"pdx: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
            return EXIT_USAGE

    return run


def _session(args: argparse.Namespace) -> Session:
    profile = load_profile()
    url = os.environ.get("PDX_URL") or profile.get("url")
    cid = os.environ.get("PDX_CLIENT_ID") or profile.get("client_id")
    secret = os.environ.get("PDX_CLIENT_SECRET") or profile.get("client_secret")
    if not (url and cid and secret):
        raise _Usage("not logged in: run `pdx login --url URL --client-id ID` first")
    cert = profile.get("cert")
    return Session(
        url,
        cid,
        secret,
        cert=(cert, profile["key"]) if cert else None,
        verify=profile.get("ca") or True,
    )


def _role(args: argparse.Namespace, cls: type[R]) -> R:
    return cls(_session(args), hash_name=load_profile().get("hash", "sha256"))


def _json_arg(text: str) -> Any:
    if text.startswith("@"):
        return json.loads(Path(text[1:]).read_text(encoding="utf-8"))
    return json.loads(text)


# -- login -----------------------------------------------------------------------------


def _login(args: argparse.Namespace) -> int:
    secret = args.client_secret or os.environ.get("PDX_CLIENT_SECRET")
    if not secret:
        raise _Usage("give the client secret in PDX_CLIENT_SECRET or --client-secret")
    cert = (args.cert, args.key) if args.cert else None
    with Session(args.url, args.client_id, secret, cert=cert, verify=args.ca or True) as s:
        s.login()
        me = s.get("/v1/me")
    profile = {"url": args.url, "client_id": args.client_id, "client_secret": secret}
    profile.update({"roles": me["roles"], "org_id": me["org_id"], "hash": args.hash})
    if args.cert:
        profile.update({"cert": args.cert, "key": args.key, "ca": args.ca})
    path = save_profile(profile)
    return _out(
        args,
        me,
        lambda: print(f"logged in as {me['client_id']} ({', '.join(me['roles'])}); {path}"),
    )


# -- datasets --------------------------------------------------------------------------


def _datasets_list(args: argparse.Namespace) -> int:
    with _role(args, Provider) as p:
        found = p.datasets(owner_org=args.owner)
    return _out(
        args,
        found,
        lambda: [print(f"{d.id}  {d.level:<10} {d.rows or '':>8}  {d.name}") for d in found],
    )


def _datasets_scan(args: argparse.Namespace) -> int:
    with _role(args, Provider) as p, _err.status(f"scanning {args.csv.name}…"):
        report = p.scan(_json_arg(args.metadata), args.csv)

    def text() -> None:
        print(f"{report.rows} rows; content requires {report.required_level}")
        for f in report.fields:
            if f["detections"]:
                print(f"  {f['name']:<20} {f['suggested_level']:<10} {f['detections']}")
        for finding in report.findings:
            where = f" [{finding.field}]" if finding.field else ""
            print(f"  problem {finding.type}{where}: {finding.detail}")
        print("ok: registration would pass these checks" if report.ok else "not ok")

    _out(args, report, text)
    return 0 if report.ok else EXIT_FAILED


def _datasets_register(args: argparse.Namespace) -> int:
    meta = _json_arg(args.metadata)
    with _role(args, Provider) as p:
        if args.dry_run:
            return _datasets_scan(args)
        size = args.csv.stat().st_size
        with _err.status(f"uploading, scanning and encrypting {args.csv.name} ({size} bytes)…"):
            ds = p.register(meta, args.csv, node=args.node)
    return _out(
        args, ds, lambda: print(f"registered {ds.id} ({ds.level}), ledger #{ds.ledger_index}")
    )


# -- agreements ------------------------------------------------------------------------


def _agreements(args: argparse.Namespace) -> int:
    if args.action == "list":
        with _role(args, Enterprise) as e:
            found = e.agreements(args.state)
        return _out(
            args,
            found,
            lambda: [
                print(f"{a.id}  {a.lifecycle:<10} provider {a.provider_org}  {a.purpose}")
                for a in found
            ],
        )
    if args.action == "propose":
        if not (args.provider and args.dataset and args.purpose):
            raise _Usage("propose needs --provider, --dataset and --purpose")
        with _role(args, Enterprise) as e:
            a = e.propose_agreement(args.provider, args.dataset, args.purpose)
    elif args.action == "sign":
        with _role(args, Provider) as p:
            a = p.sign_agreement(_need_id(args))
    else:
        with _role(args, Provider) as p:
            a = p.terminate_agreement(_need_id(args), args.reason or "")
    return _out(args, a, lambda: print(f"agreement {a.id}: {a.lifecycle}"))


def _need_id(args: argparse.Namespace) -> str:
    if not args.id:
        raise _Usage(f"{args.action} needs the agreement id")
    value: str = args.id
    return value


# -- compute ---------------------------------------------------------------------------


def _progress() -> tuple[Callable[[Computation], None], Any]:
    status = _err.status("waiting…")

    def show(job: Computation) -> None:
        status.update(f"computation {job.id[:8]}: {job.state}")

    return show, status


def _party_key(args: argparse.Namespace) -> PartyKey:
    """The provider's own signing key, from this machine (`--key`, else the config dir).

    Its passphrase is `$PDX_PARTY_KEY_PASSPHRASE` (none: an unencrypted file). With
    `--register-key` a missing key is made here and its public half registered; without,
    a missing key is a usage error (nothing is sent).
    """
    passphrase = os.environ.get("PDX_PARTY_KEY_PASSPHRASE") or None
    org = str(load_profile().get("org_id") or "")
    path = Path(args.key) if args.key else None
    if args.register_key:
        return PartyKey.load_or_create(org, path=path, passphrase=passphrase)
    try:
        return PartyKey.load(path, org_id=org, passphrase=passphrase)
    except FileNotFoundError:
        raise _Usage(
            "no party key on this machine: give --key PATH, or add --register-key to make "
            "one and register its public half"
        ) from None
    except (TypeError, ValueError):
        raise _Usage("the party key cannot be opened (check PDX_PARTY_KEY_PASSPHRASE)") from None


def _close_fl_rounds(e: Enterprise, args: argparse.Namespace) -> None:
    """A federated job under this machine's job key: close its rounds here (`pdx_client.fl`)."""
    stored = load_job_key(args.id)
    if stored is None or e.computation(args.id).operator not in JOB_KEY_FL_OPERATORS:
        return
    passphrase = job_key_passphrase()
    if passphrase is None:
        raise _Usage("set PDX_JOB_KEY_PASSPHRASE to close this computation's rounds")
    fl.drive(e.session, args.id, JobKey.load(stored, passphrase), timeout=args.timeout)


def _cohort_party(args: argparse.Namespace, params: dict[str, Any]) -> psi.CohortParty | None:
    """`params.cohort`: your own identifiers from --cohort-file (one a line), joined here."""
    cohort = params.get("cohort")
    if not isinstance(cohort, dict):
        if args.cohort_file:
            raise _Usage("--cohort-file needs params.cohort ({key, kind}: the provider's column)")
        return None
    if not args.cohort_file or not args.wait:
        raise _Usage(
            "params.cohort joins your own identifiers: give --cohort-file PATH and --wait "
            "(your side of the join runs here, in this command)"
        )
    lines = Path(args.cohort_file).read_text(encoding="utf-8").splitlines()
    identifiers = [line.strip() for line in lines if line.strip()]
    party = psi.CohortParty(identifiers, str(cohort.get("kind")))
    party.size = int(cohort.get("size") or len(identifiers))
    return party


def _compute(args: argparse.Namespace) -> int:
    if args.action == "request":
        if not (args.operator and args.input and args.purpose):
            raise _Usage("request needs --operator, --input and --purpose")
        key, passphrase = None, None
        params = _json_arg(args.params)
        party = _cohort_party(args, params)
        if party is not None:
            params = {**params, "cohort": {"size": party.size, **params["cohort"]}}
        if takes_job_key(args.operator, params):
            passphrase = job_key_passphrase()
            if passphrase is None:
                raise _Usage("set PDX_JOB_KEY_PASSPHRASE: the job key is kept encrypted under it")
            key = JobKey.generate()
        with _role(args, Enterprise) as e:
            job = e.request(
                args.operator,
                args.input,
                params,
                args.purpose,
                job_key=key.public() if key is not None else None,
                legal_basis=args.legal_basis,
            )
            if key is not None and passphrase is not None:
                save_job_key(job.id, key.export(passphrase))
            if args.wait:
                show, status = _progress()
                with status:
                    if key is not None and args.operator in JOB_KEY_FL_OPERATORS:
                        fl.drive(e.session, job.id, key, timeout=args.timeout)  # every round
                    if party is not None:  # your side of the join, on this machine
                        fp = key.fingerprint if key is not None else None
                        psi.drive(e.session, job.id, party, timeout=args.timeout, fingerprint=fp)
                    job = e.wait(job.id, progress=show, timeout=args.timeout)
        return _out(args, job, lambda: print(f"computation {job.id}: {job.state}"))
    if not args.id:
        raise _Usage(f"{args.action} needs the computation id")
    if args.action == "approve":
        party_key = _party_key(args) if args.sign else None
        with _role(args, Provider) as p:
            if party_key is not None:
                p.use_key(party_key, register=args.register_key)
            job = p.approve(args.id, args.stage, args.reason or "")
        return _out(args, job, lambda: print(f"computation {job.id}: {job.state}"))
    if args.action == "status":
        with _role(args, Enterprise) as e:
            if args.wait:
                show, status = _progress()
                with status:
                    _close_fl_rounds(e, args)
                    job = e.wait(args.id, progress=show, timeout=args.timeout)
            else:
                job = e.computation(args.id)
        return _out(args, job, lambda: print(f"computation {job.id}: {job.state}"))
    stored, key = load_job_key(args.id), None
    if stored is not None:
        passphrase = job_key_passphrase()
        if passphrase is None:
            raise _Usage("set PDX_JOB_KEY_PASSPHRASE to open this computation's job key")
        key = JobKey.load(stored, passphrase)  # JobKeyError (a PdxError): exit 1
    with _role(args, Enterprise) as e:
        result = e.result(args.id, key)
    return _out(
        args, result, lambda: print(json.dumps(result.output, ensure_ascii=False, indent=1))
    )


# -- trail -----------------------------------------------------------------------------


def _trail(args: argparse.Namespace) -> int:
    if args.action == "show":
        with _role(args, Enterprise) as e:
            found = e.trail.entries(args.org)
        return _out(
            args,
            found,
            lambda: [
                print(f"#{x.index:<6} {x.record.get('type', ''):<32} {x.record.get('object_id')}")
                for x in found
            ],
        )
    store = CheckpointStore(config_dir() / "checkpoints.json")
    with _role(args, Enterprise) as e:
        vkey = args.verifier_key or load_profile().get("verifier_key")
        if not vkey:
            # Trust on first use: the key is remembered with the profile from now on.
            vkey = e.trail.verifier_key()
            save_profile({**load_profile(), "verifier_key": vkey})
        with _err.status("verifying entries against the checkpoint…"):
            result = e.trail.verify(org=args.org, verifier_key=vkey, store=store)

    def text() -> None:
        prev = result.previous_size
        since = f" (consistent with remembered {prev})" if prev else ""
        print(
            f"{len(result.verified)} entries of {result.org} verified in the checkpoint of "
            f"{result.checkpoint_size}{since}; {len(result.pending)} not yet sealed"
        )

    return _out(args, result, text)


# -- wiring ----------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the user verbs to a `pdx` parser (entry point group `pdx.cli`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")

    login = sub.add_parser("login", parents=[common], help="remember a client's credentials")
    login.add_argument("--url", required=True)
    login.add_argument("--client-id", required=True)
    login.add_argument("--client-secret", help="default: $PDX_CLIENT_SECRET")
    login.add_argument("--cert", help="client certificate (PEM) for mutual TLS")
    login.add_argument("--key", help="its private key (PEM)")
    login.add_argument("--ca", help="CA bundle that signed the server's certificate")
    login.add_argument("--hash", default="sha256", choices=["sha256", "sm3"])
    login.set_defaults(func=_guarded(_login))

    ds = sub.add_parser("datasets", help="register, scan and list datasets")
    dsv = ds.add_subparsers(dest="action", required=True)
    for name, fn in (("register", _datasets_register), ("scan", _datasets_scan)):
        p = dsv.add_parser(name, parents=[common])
        p.add_argument("csv", type=Path)
        p.add_argument("--metadata", required=True, help="JSON, or @file.json")
        if name == "register":
            p.add_argument("--dry-run", action="store_true", help="scan only, store nothing")
            p.add_argument("--node", action="store_true", help="keep rows on the own node")
        p.set_defaults(func=_guarded(fn))
    lst = dsv.add_parser("list", parents=[common])
    lst.add_argument("--owner")
    lst.set_defaults(func=_guarded(_datasets_list))

    ag = sub.add_parser("agreements", parents=[common], help="data-use agreements")
    ag.add_argument("action", choices=["list", "propose", "sign", "terminate"])
    ag.add_argument("id", nargs="?")
    ag.add_argument("--provider")
    ag.add_argument("--dataset", action="append")
    ag.add_argument("--purpose")
    ag.add_argument("--state")
    ag.add_argument("--reason")
    ag.set_defaults(func=_guarded(_agreements))

    cp = sub.add_parser("compute", parents=[common], help="computations end to end")
    cp.add_argument("action", choices=["request", "approve", "status", "result"])
    cp.add_argument("id", nargs="?")
    cp.add_argument("--operator")
    cp.add_argument("--input", action="append")
    cp.add_argument("--params", default="{}")
    cp.add_argument("--purpose")
    cp.add_argument("--legal-basis", help="request: consent:<id> or statute:<ref> (PI data)")
    cp.add_argument("--stage", choices=["run", "release"], default="run")
    cp.add_argument("--reason")
    cp.add_argument(
        "--sign",
        action="store_true",
        help="approve: sign the decision with your party key (query digest, or reviewed output)",
    )
    cp.add_argument("--key", help="approve --sign: the party key's PEM (default: config dir)")
    cp.add_argument(
        "--register-key",
        action="store_true",
        help="approve --sign: make the key if missing and register its public half",
    )
    cp.add_argument("--wait", action="store_true", help="poll until a final state")
    cp.add_argument(
        "--cohort-file",
        help="request with params.cohort: your own identifiers, one a line; they stay on "
        "this machine (pdx_client.psi runs your side of the join; needs --wait)",
    )
    cp.add_argument("--timeout", type=float, default=600.0)
    cp.set_defaults(func=_guarded(_compute))

    tr = sub.add_parser("trail", parents=[common], help="your organisation's ledger entries")
    tr.add_argument("action", choices=["show", "verify"])
    tr.add_argument("--org", help="another organisation (auditors only)")
    tr.add_argument("--verifier-key", help="the log's key (default: remembered)")
    tr.set_defaults(func=_guarded(_trail))

"""A remote policy decision point: an OPA server reached over its REST API.

Configured with `PDX_OPA_URL` (the integrator passes the URL in). Same inputs and
outputs as the embedded engine: `decide` POSTs the input to OPA's Data API
(`/v1/data/<path>`), and a response without `result` is undefined, hence a denial.
`load` pushes the active bundle: the grading matrix to `/v1/data/pdx/matrix`, each
policy module to `/v1/policies/pdx/<name>` (stale `pdx/` modules are deleted), and a
marker `{revision, digest}` to `/v1/data/pdx/active` so that every gateway sharing the
server can see what it holds and skip a push that is already done. After a push the
bundle's cases run on the server; if OPA disagrees with them the previous bundle is
pushed back and the activation is refused.

The push is not atomic: between the data and the last module a decision may see a mix
of revisions. OPA's bundle service (signed bundles polled by OPA) is the atomic option
when a central OPA is deployed; see README.md.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import urllib3
from opa_client import OpaClient  # type: ignore[import-untyped]
from opa_client import errors as opa_errors

from policies.bundle import ActivePolicy
from policies.checks import Case, run_cases_on
from policies.decision import Clock, Loaded, _CachingDecisionPoint
from policies.errors import (
    PolicyEngineUnavailable,
    PolicyEvaluationFailed,
    PolicyInvalid,
    PolicyTestsFailed,
)

__all__ = ["RemoteDecisionPoint"]

_PREFIX = "pdx/"
_MARKER = "pdx/active"
_MATRIX = "pdx/matrix"


class RemoteDecisionPoint(_CachingDecisionPoint):
    """Decisions from an OPA server (`url` like `http://127.0.0.1:8181`).

    Raises `PolicyEngineUnavailable` when the server cannot be reached, so callers
    fail closed. `policy` is pushed on construction unless the server already holds
    its digest.
    """

    def __init__(
        self,
        url: str,
        policy: ActivePolicy,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        cache_size: int = 10_000,
        timeout_s: float = 2.0,
        retries: int = 0,
        ca_file: str | None = None,
        verify_cases: bool = True,
    ) -> None:
        super().__init__(clock=clock, cache_size=cache_size)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PolicyEngineUnavailable("the OPA URL must look like http://host:8181", url=url)
        secure = parts.scheme == "https"
        cafile = ca_file or (ssl.get_default_verify_paths().cafile if secure else None)
        self.url = url
        self._client = OpaClient(
            host=f"{parts.scheme}://{parts.hostname}",
            port=parts.port or 8181,
            ssl=secure,
            cert=cafile,
            timeout=timeout_s,
            retries=retries,
            headers={"Content-Type": "application/json"},
        )
        self._verify_cases = verify_cases
        self._current = Loaded(policy, self.cache.generation)
        self.load(policy)

    # -- pushing policies -------------------------------------------------------------

    def held_digest(self) -> str | None:
        """The digest of the bundle the server says it holds (None when it holds none)."""
        doc = self._call(self._client.get_opa_raw_data, _MARKER)
        if isinstance(doc, dict) and isinstance(doc.get("result"), dict):
            digest = doc["result"].get("digest")
            return digest if isinstance(digest, str) else None
        return None

    def load(self, policy: ActivePolicy) -> None:
        """Make the server hold `policy`, check it there, then switch decisions to it.

        Raises `PolicyInvalid` when OPA refuses a module, `PolicyTestsFailed` when OPA
        disagrees with the bundle's cases (the previous bundle is pushed back first).
        """
        previous = self._current.policy
        if self.held_digest() != policy.digest:
            self._push(policy)
            if self._verify_cases:
                report = run_cases_on(policy.bundle, self._case_on_server)
                if report.failures:
                    if previous.digest != policy.digest:
                        self._push(previous)
                    failures = report.failures
                    raise PolicyTestsFailed(
                        f"{len(failures)} policy tests failed on the OPA server",
                        engine="opa",
                        failures=[{"test": f.name, "detail": f.detail} for f in failures],
                        passed=report.passed,
                    )
        self._switch(lambda generation: Loaded(policy, generation))

    def _push(self, policy: ActivePolicy) -> None:
        bundle = policy.bundle
        modules = bundle.policy_modules
        self._put_data(_MATRIX, bundle.matrix)
        for name, source in modules.items():
            try:
                self._call(self._client.update_opa_policy_fromstring, source, _PREFIX + name)
            except opa_errors.RegoParseError as exc:
                raise PolicyInvalid(
                    f"OPA refused {name}", engine="opa", errors=[_opa_message(exc.message)]
                ) from None
        held = self._call(self._client.get_policies_list)
        for policy_id in held if isinstance(held, list) else []:
            if isinstance(policy_id, str) and policy_id.startswith(_PREFIX):
                if policy_id.removeprefix(_PREFIX) not in modules:
                    self._call(self._client.delete_opa_policy, policy_id)
        self._put_data(_MARKER, {"revision": policy.revision, "digest": policy.digest})

    def _put_data(self, path: str, value: Any) -> None:
        if not self._call(self._client.update_or_create_opa_data, value, path):
            raise PolicyEngineUnavailable("OPA refused a data write", path=path, url=self.url)

    def _case_on_server(self, case: Case) -> tuple[Any, bool]:
        return self._query(case.path, case.input)

    # -- deciding ------------------------------------------------------------------------

    def _evaluate(self, current: Loaded, path: str, input: Mapping[str, Any]) -> tuple[Any, bool]:
        return self._query(path, input)

    def _query(self, path: str, input: Mapping[str, Any]) -> tuple[Any, bool]:
        doc = self._call(self._client.check_policy_rule, dict(input), path)
        if not isinstance(doc, dict):
            raise PolicyEvaluationFailed("OPA answered with something other than an object")
        if "result" in doc:
            return doc["result"], True
        if "code" in doc:  # OPA's error shape: {"code", "message", "errors"?}
            raise PolicyEvaluationFailed(
                f"OPA could not evaluate the decision: {doc.get('message', doc['code'])}",
                engine="opa",
                code=doc["code"],
            )
        return None, False  # {} is OPA's undefined

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except urllib3.exceptions.HTTPError as exc:
            raise PolicyEngineUnavailable(
                "the OPA server cannot be reached", url=self.url, error=type(exc).__name__
            ) from None
        except json.JSONDecodeError:
            raise PolicyEvaluationFailed("OPA answered with something other than JSON") from None
        except opa_errors.RegoParseError:
            raise
        except opa_errors.CheckPermissionError:
            raise PolicyEvaluationFailed("OPA answered with an empty body", engine="opa") from None
        except (opa_errors.ConnectionsError, opa_errors.DeletePolicyError) as exc:
            raise PolicyEngineUnavailable(
                "the OPA server refused a request", url=self.url, error=str(exc.message)
            ) from None


def _opa_message(raw: Any) -> str:
    """OPA's parse/compile error body, flattened to `location: message` text."""
    if isinstance(raw, dict):
        errors = raw.get("errors")
        if isinstance(errors, list) and errors:
            out = []
            for e in errors:
                loc = e.get("location", {}) if isinstance(e, dict) else {}
                where = f"{loc.get('file', '')}:{loc.get('row', '?')}:{loc.get('col', '?')}"
                out.append(f"{where}: {e.get('message') if isinstance(e, dict) else e}")
            return "; ".join(out)
        return str(raw.get("message", raw))
    return str(raw)

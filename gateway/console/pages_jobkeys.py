"""The enterprise's own job key in the console: made and used in the browser, never here.

The request form of an operator that runs under a requester-held key offers a key made
in the browser (static/paillier.js, jobkey.js); the form then carries only its public
half (n and fingerprint, `job_key_from_form`), which goes in the request's `job_key`.
A result under such a key is an encrypted aggregate: its page (`sealed_page`) holds no
value, and the browser fetches the API's answer (`result_json`) and opens it itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from exchange.computations.job_keys import MIN_PAILLIER_BITS
from gateway.console.core import SECURITY_HEADERS, Ctx, signed_in
from gateway.console.forms import FormError
from sandbox.operators import OPERATORS, StatsParams

router = APIRouter()
Enterprise = Annotated[Ctx, Depends(signed_in("enterprise"))]

BROWSER = "browser"  # the form's `job_key` value when the option is on
KEY_BITS = MIN_PAILLIER_BITS


def takes_job_key(operator: str) -> bool:
    """Whether the server runs `operator` under a requester-held key (as `job_keys.check_request`).

    The form cannot ask for a join (an object parameter), so every statistics operator does.
    """
    spec = OPERATORS.get(operator)
    return spec is not None and issubclass(spec.params, StatsParams)


def job_key_from_form(form: Mapping[str, str], *, missing: str) -> dict[str, str] | None:
    """The request's `job_key` from the form: its public half, or None when the option is off.

    With the option on and no key (the browser made none), the request is refused here
    rather than sent under the platform's key.
    """
    if form.get("job_key") != BROWSER:
        return None
    n = form.get("job_key.n", "").strip()
    fingerprint = form.get("job_key.fingerprint", "").strip()
    if not (n and fingerprint):
        raise FormError(missing)
    return {"scheme": "paillier", "n": n, "fingerprint": fingerprint}


def fingerprint_of(comp: Mapping[str, Any]) -> str | None:
    """The fingerprint of the computation's requester-held key, None if platform-keyed."""
    model = comp.get("security_model")
    key = model.get("job_key") if isinstance(model, Mapping) else None
    found = key.get("fingerprint") if isinstance(key, Mapping) else None
    return found if isinstance(found, str) else None


def sealed_page(ctx: Ctx, comp: dict[str, Any], fingerprint: str) -> Response:
    """The result page of a job under the requester's key: the browser decrypts."""
    return ctx.render(
        "result_sealed.html", title=ctx.t("result"), comp=comp, fingerprint=fingerprint
    )


@router.get("/enterprise/computations/{computation_id}/result.json")
async def result_json(computation_id: str, ctx: Enterprise) -> Response:
    """GET /v1/computations/{id}/result as the API answers it (a delivery on the ledger)."""
    answer = await ctx.api("GET", f"/v1/computations/{computation_id}/result")
    media = answer.headers.get("content-type", "application/json")
    return Response(
        answer.body, status_code=answer.status, media_type=media, headers=SECURITY_HEADERS
    )

"""Sign-in with password and TOTP or a passkey (the person grant), sign-out, language, home."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gateway.console.core import BASE, Ctx, Refusal, anonymous, area_of, check_csrf, signed_in
from gateway.console.i18n import LANGUAGES
from gateway.console.sessions import COOKIE, PRE_COOKIE, Person

PERSON_GRANT = "urn:pdx:params:oauth:grant-type:person"

router = APIRouter()
AnyCtx = Annotated[Ctx, Depends(anonymous)]
SignedIn = Annotated[Ctx, Depends(signed_in())]


@router.get("/login")
async def login_page(ctx: AnyCtx) -> Response:
    if ctx.person is not None:
        return ctx.redirect(f"{BASE}/")
    return ctx.render("login.html", title=ctx.t("sign_in"))


@router.post("/login")
async def login(ctx: AnyCtx) -> Response:
    """The person grant of /v1/auth/token: its rate limits, failure budget and audit."""
    await check_csrf(ctx)
    form = await ctx.request.form()
    fields = {k: str(form.get(k, ""))[:256] for k in ("login", "password", "totp")}
    grant = {"grant_type": PERSON_GRANT, "username": fields["login"]}
    grant["password"] = fields["password"]
    passkey = str(form.get("passkey", ""))[:6000]  # static/passkeys.js: the assertion
    if passkey:
        grant["passkey"] = passkey
    else:
        grant["totp"] = fields["totp"].strip()
    answer = await ctx.console.api.call(ctx.request, "POST", "/v1/auth/token", form=grant)
    if not answer.ok:
        key = "too_many" if answer.status == 429 else "bad_credentials"
        ctx.session.flash.append(ctx.t(key))
        return ctx.render("login.html", status=401, title=ctx.t("sign_in"))
    grant = answer.json()
    token = grant["access_token"]
    me = await ctx.console.api.call(ctx.request, "GET", "/v1/me", token=token)
    if not me.ok:
        ctx.session.flash.append(me.problem())
        return ctx.render("login.html", status=403, title=ctx.t("sign_in"))
    body = me.json()
    person = Person(
        person_id=body["client_id"],
        org_id=body["org_id"],
        org_kind=body["org_kind"],
        roles=tuple(body["roles"]),
        login=fields["login"].strip().lower(),
    )
    expires = ctx.console.clock() + timedelta(seconds=int(grant["expires_in"]))
    sid = ctx.console.store.rotate(ctx.session, person, token, expires)
    fresh = ctx.console.store.get(sid)
    assert fresh is not None
    response = Ctx(ctx.console, ctx.request, fresh).redirect(f"{BASE}/")
    response.delete_cookie(PRE_COOKIE, path=BASE)
    return response


@router.post("/logout")
async def logout(ctx: SignedIn) -> Response:
    ctx.console.store.end(ctx.session.sid)
    fresh = ctx.console.store.new(ctx.session.lang)
    response = Ctx(ctx.console, ctx.request, fresh).redirect(f"{BASE}/login")
    response.delete_cookie(COOKIE, path=BASE)
    return response


@router.get("/lang/{code}")
async def language(code: str, ctx: AnyCtx, request: Request) -> Response:
    if code not in LANGUAGES:
        raise Refusal(404, ctx.t("not_found"))
    ctx.session.lang = code
    back = request.query_params.get("next", "")
    # Only a path inside the console (no scheme, no host): never an open redirect.
    target = back if back.startswith(BASE + "/") and "//" not in back else f"{BASE}/"
    return ctx.redirect(target)


@router.get("/")
async def home(ctx: AnyCtx) -> Response:
    if ctx.person is None:
        return ctx.redirect(f"{BASE}/login")
    area = area_of(ctx.session)
    if area is None:
        raise Refusal(403, ctx.t("forbidden"))
    return ctx.redirect(f"{BASE}/{area}")

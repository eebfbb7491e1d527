"""A person's security page: passkeys (WebAuthn) beside TOTP; the passkey sign-in step."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from gateway.console.core import BASE, SECURITY_HEADERS, Ctx, anonymous, check_csrf, signed_in

router = APIRouter()
AnyCtx = Annotated[Ctx, Depends(anonymous)]
SignedIn = Annotated[Ctx, Depends(signed_in())]
_MAX_CREDENTIAL = 8 * 1024


def _json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=SECURITY_HEADERS)


@router.get("/security")
async def security(ctx: SignedIn) -> Response:
    """The person's passkeys; add one (static/passkeys.js), remove one with a TOTP code."""
    body = await ctx.get_json("/v1/me/passkeys", query={"limit": 50})
    keys = body["items"] if body else []
    return ctx.render("security.html", title=ctx.t("security"), passkeys=keys)


@router.post("/security/passkeys/options")
async def creation_options(ctx: SignedIn) -> Response:
    answer = await ctx.api("POST", "/v1/me/passkeys/options")
    if not answer.ok:
        return _json({"error": answer.problem()}, answer.status)
    return _json(answer.json())


@router.post("/security/passkeys")
async def add_passkey(ctx: SignedIn) -> Response:
    """The browser's answer to the creation options, passed to the API as it came."""
    raw = await ctx.request.body()
    if len(raw) > _MAX_CREDENTIAL:
        return _json({"error": ctx.t("passkey_failed")}, 413)
    answer = await ctx.api("POST", "/v1/me/passkeys", body=raw, content_type="application/json")
    if not answer.ok:
        return _json({"error": answer.problem()}, answer.status)
    ctx.session.flash.append(ctx.t("passkey_added"))
    return _json({"ok": True, "next": f"{BASE}/security"})


@router.post("/security/passkeys/{passkey_id}/remove")
async def remove_passkey(passkey_id: str, ctx: SignedIn) -> Response:
    """Removal needs a fresh second factor: the TOTP code typed beside the passkey."""
    form = await ctx.request.form()
    totp = str(form.get("totp", ""))[:6].strip()
    answer = await ctx.api(
        "POST", f"/v1/me/passkeys/{passkey_id[:64]}/remove", json_body={"totp": totp}
    )
    ctx.session.flash.append(ctx.t("passkey_removed") if answer.ok else ctx.t("passkey_refused"))
    return ctx.redirect(f"{BASE}/security")


@router.post("/login/passkey-options")
async def signin_options(ctx: AnyCtx) -> Response:
    """After the password: the person's passkey challenge, or null (use the TOTP code)."""
    await check_csrf(ctx)
    form = await ctx.request.form()
    answer = await ctx.console.api.call(
        ctx.request,
        "POST",
        "/v1/auth/passkey-options",
        json_body={
            "username": str(form.get("login", ""))[:64],
            "password": str(form.get("password", ""))[:256],
        },
    )
    if not answer.ok:
        key = "too_many" if answer.status == 429 else "bad_credentials"
        return _json({"error": ctx.t(key)}, 401 if answer.status != 429 else 429)
    options = answer.json()["options"]
    return _json({"options": options, "message": None if options else ctx.t("no_passkey")})

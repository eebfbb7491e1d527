"""Access tokens: EdDSA-signed JWTs (RFC 7519, RFC 8037) with a published JWKS."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from sqlalchemy.orm import Session

import crypto
from gateway.errors import GatewayError

ALGORITHM = "EdDSA"
_LEEWAY = timedelta(seconds=10)
_RELOAD_INTERVAL_S = 5.0
_VERIFIED_MAX = 10_000


def invalid_token(detail: str) -> GatewayError:
    """401 with RFC 6750 §3 `WWW-Authenticate: Bearer error="invalid_token"`."""
    return GatewayError(
        "invalid-token",
        "Invalid access token",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="pdx", error="invalid_token"'},
    )


@dataclass(frozen=True)
class TokenClaims:
    client_id: str
    org_id: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    family_id: str | None = None  # the refresh family the token was issued in
    cnf_x5t: str | None = None  # RFC 8705 certificate binding


class TokenService:
    """Issues and verifies access tokens with the KMS-held token-signing key."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        ttl: timedelta,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock  # monotonic seconds, for the key-reload throttle
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self._signer: crypto.SigningKey | None = None
        self._verifiers: dict[str, Any] = {}
        self._jwks: list[dict[str, str]] = []
        self._reload: Callable[[], None] | None = None
        self._reloaded_at = float("-inf")  # never
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._verified_lock = threading.Lock()

    def reload_with(self, reload: Callable[[], None]) -> None:
        """Set how to refetch keys when a token names an unseen `kid` (rotated elsewhere).

        Tried at most every few seconds, so unknown kids cannot hammer the database.
        """
        self._reload = reload

    def _verifier(self, kid: str) -> Any:
        key = self._verifiers.get(kid)
        if key is None and self._reload is not None:
            now = self.clock()
            if now - self._reloaded_at > _RELOAD_INTERVAL_S:
                self._reloaded_at = now
                self._reload()
                key = self._verifiers.get(kid)
        return key

    def load_keys(self, keystore: crypto.KeyStore, session: Session, *, now: datetime) -> None:
        """(Re)load the active signing key and every key still valid for verification."""
        self._signer = keystore.signing_key(
            session, purpose=crypto.KeyPurpose.TOKEN_SIGNING, now=now
        )
        self._jwks = keystore.public_jwks(session, purpose=crypto.KeyPurpose.TOKEN_SIGNING)
        self._verifiers = {k["kid"]: jwt.PyJWK(k).key for k in self._jwks}
        with self._verified_lock:
            self._verified.clear()  # a key may have been withdrawn: verify afresh

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": list(self._jwks)}

    def issue(
        self,
        *,
        client_id: str,
        org_id: str,
        now: datetime,
        family_id: str | None = None,
        cnf_x5t: str | None = None,
    ) -> tuple[str, int]:
        if self._signer is None:
            raise RuntimeError("token keys not loaded")
        exp = now + self.ttl
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client_id,
            "client_id": client_id,  # RFC 9068 §2.2: the OAuth client the token was issued to
            "org": org_id,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(exp.timestamp()),
            "jti": str(uuid.uuid4()),
        }
        if family_id is not None:
            claims["fam"] = family_id
        if cnf_x5t is not None:
            claims["cnf"] = {"x5t#S256": cnf_x5t}
        token = jwt.encode(
            claims,
            self._signer.private_key,
            algorithm=ALGORITHM,
            headers={"kid": self._signer.kid, "typ": "at+jwt"},
        )
        return token, int(self.ttl.total_seconds())

    def verify(self, token: str, *, now: datetime) -> TokenClaims:
        """Check signature, algorithm, kid, issuer, audience and times; one error shape.

        A token whose signature, issuer and audience verified is remembered (bounded
        LRU keyed by the exact token text), so repeat requests skip the Ed25519 check;
        times and the claims' shape are checked on every call.
        """
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify_signature(token)
            with self._verified_lock:
                self._verified[token] = claims
                if len(self._verified) > _VERIFIED_MAX:
                    self._verified.popitem(last=False)
        return self._check_claims(claims, now)

    def _verify_signature(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise invalid_token("malformed token") from None
        # Accept exactly one algorithm: blocks alg=none and HS/RS confusion (RFC 8725 §2.1).
        if header.get("alg") != ALGORITHM:
            raise invalid_token("unsupported token algorithm")
        key = self._verifier(str(header.get("kid")))
        if key is None:
            raise invalid_token("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=_LEEWAY,
                options={
                    "require": ["exp", "iat", "nbf", "sub", "jti", "aud", "iss"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            raise invalid_token("token signature or claims are invalid") from None
        if not isinstance(claims, dict):
            raise invalid_token("token claims are not an object")
        return claims

    def _check_claims(self, claims: dict[str, Any], now: datetime) -> TokenClaims:
        # Times are checked against the injected clock, not the wall clock.
        ts = now.timestamp()
        leeway = _LEEWAY.total_seconds()
        if not isinstance(claims.get("exp"), int) or ts > claims["exp"] + leeway:
            raise invalid_token("token expired")
        if not isinstance(claims.get("nbf"), int) or ts + leeway < claims["nbf"]:
            raise invalid_token("token not yet valid")
        if claims["exp"] - claims["iat"] > self.ttl.total_seconds():
            raise invalid_token("token lifetime exceeds the platform maximum")
        org = claims.get("org")
        if not isinstance(org, str):
            raise invalid_token("token has no organisation")
        family = claims.get("fam")
        cnf = claims.get("cnf")
        x5t = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
        if (family is not None and not isinstance(family, str)) or (
            cnf is not None and not isinstance(x5t, str)
        ):
            raise invalid_token("token has malformed claims")
        return TokenClaims(
            client_id=str(claims["sub"]),
            org_id=org,
            jti=str(claims["jti"]),
            issued_at=datetime.fromtimestamp(claims["iat"], now.tzinfo),
            expires_at=datetime.fromtimestamp(claims["exp"], now.tzinfo),
            family_id=family,
            cnf_x5t=x5t,
        )

"""WebAuthn (passkeys) ceremonies: options and verification, a typed seam over py_webauthn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

# py_webauthn is imported where a ceremony runs, not here: every server and `pdx` process
# imports this module (through exchange), and only passkey sign-ups and sign-ins use it.

__all__ = [
    "PasskeyRejected",
    "RegisteredKey",
    "authentication_options",
    "challenge_of",
    "credential_id_of",
    "registration_options",
    "verify_assertion",
    "verify_attestation",
]

TIMEOUT_MS = 120_000


class PasskeyRejected(ValueError):
    """The authenticator's answer does not verify (origin, RP id, challenge, signature...)."""


@dataclass(frozen=True)
class RegisteredKey:
    """What a verified registration yields: the credential to store."""

    credential_id: str  # base64url
    public_key: bytes  # COSE_Key
    sign_count: int
    transports: tuple[str, ...]


def _descriptor(
    credential_id: str, transports: tuple[str, ...] = ()
) -> PublicKeyCredentialDescriptor:
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    known = {t.value for t in AuthenticatorTransport}
    return PublicKeyCredentialDescriptor(
        id=_b64(credential_id),
        transports=[AuthenticatorTransport(t) for t in transports if t in known] or None,
    )


def _b64(value: str) -> bytes:
    from webauthn.helpers import base64url_to_bytes

    try:
        return base64url_to_bytes(value)
    except (ValueError, TypeError):
        raise PasskeyRejected("malformed credential id") from None


def registration_options(
    *,
    rp_id: str,
    rp_name: str,
    user_id: bytes,
    user_name: str,
    display_name: str,
    challenge: bytes,
    exclude: list[str],
) -> dict[str, object]:
    """PublicKeyCredentialCreationOptions as JSON for navigator.credentials.create."""
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers.structs import (
        AttestationConveyancePreference,
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_id=user_id,
        user_name=user_name,
        user_display_name=display_name,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(c) for c in exclude],
    )
    parsed: dict[str, object] = json.loads(options_to_json(options))
    return parsed


def authentication_options(
    *, rp_id: str, challenge: bytes, allow: list[tuple[str, tuple[str, ...]]]
) -> dict[str, object]:
    """PublicKeyCredentialRequestOptions as JSON for navigator.credentials.get."""
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers.structs import UserVerificationRequirement

    options = generate_authentication_options(
        rp_id=rp_id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=[_descriptor(c, t) for c, t in allow],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    parsed: dict[str, object] = json.loads(options_to_json(options))
    return parsed


def challenge_of(credential_json: str, *, registration: bool) -> bytes:
    """The challenge the authenticator signed (from clientDataJSON), to find it server-side."""
    from webauthn.helpers import (
        parse_authentication_credential_json,
        parse_client_data_json,
        parse_registration_credential_json,
    )
    from webauthn.helpers.exceptions import WebAuthnException

    try:
        if registration:
            reg = parse_registration_credential_json(credential_json)
            client_data = reg.response.client_data_json
        else:
            auth = parse_authentication_credential_json(credential_json)
            client_data = auth.response.client_data_json
        return parse_client_data_json(client_data).challenge
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise PasskeyRejected("malformed credential") from None


def credential_id_of(credential_json: str) -> str:
    """The base64url credential id an assertion names (its raw id)."""
    from webauthn.helpers import bytes_to_base64url, parse_authentication_credential_json
    from webauthn.helpers.exceptions import WebAuthnException

    try:
        return bytes_to_base64url(parse_authentication_credential_json(credential_json).raw_id)
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise PasskeyRejected("malformed credential") from None


@contextmanager
def _refused(invalid: type[Exception]) -> Iterator[None]:
    """py_webauthn's refusals (`invalid`, bad JSON) and malformed input as `PasskeyRejected`."""
    from webauthn.helpers.exceptions import InvalidJSONStructure, WebAuthnException

    try:
        yield
    except (invalid, InvalidJSONStructure, WebAuthnException) as exc:
        raise PasskeyRejected(str(exc)) from None
    except (ValueError, TypeError, KeyError):
        raise PasskeyRejected("malformed credential") from None


def verify_attestation(
    credential_json: str, *, challenge: bytes, rp_id: str, origins: list[str]
) -> RegisteredKey:
    """Verify a registration (attestation 'none' or self/packed) for this RP and origin."""
    from webauthn import verify_registration_response
    from webauthn.helpers import bytes_to_base64url, parse_registration_credential_json
    from webauthn.helpers.exceptions import InvalidRegistrationResponse

    with _refused(InvalidRegistrationResponse):
        cred = parse_registration_credential_json(credential_json)
        verified = verify_registration_response(
            credential=cred,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origins,
        )
    transports = tuple(t.value for t in (cred.response.transports or []))
    return RegisteredKey(
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=transports,
    )


def verify_assertion(
    credential_json: str,
    *,
    challenge: bytes,
    rp_id: str,
    origins: list[str],
    public_key: bytes,
    sign_count: int,
) -> int:
    """Verify an assertion; the authenticator's new sign count.

    A counter that does not move forward (when either side is non-zero) is refused:
    the mark of a cloned authenticator (WebAuthn §6.1.1).
    """
    from webauthn import verify_authentication_response
    from webauthn.helpers import parse_authentication_credential_json
    from webauthn.helpers.exceptions import InvalidAuthenticationResponse

    with _refused(InvalidAuthenticationResponse):
        verified = verify_authentication_response(
            credential=parse_authentication_credential_json(credential_json),
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origins,
            credential_public_key=public_key,
            credential_current_sign_count=sign_count,
        )
    if (sign_count or verified.new_sign_count) and verified.new_sign_count <= sign_count:
        raise PasskeyRejected("sign count did not increase: possibly a cloned authenticator")
    return verified.new_sign_count

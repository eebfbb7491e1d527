"""Root key inside a PKCS#11 token (HSM): non-extractable AES-256, AES-GCM done by the token."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from dataclasses import dataclass, field
from typing import Any, cast

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams
from pkcs11.types import DecryptMixin, EncryptMixin

from crypto.errors import HsmUnavailable, InvalidCiphertext

ROOT_KEY_BITS = 256
_NONCE_SIZE = 12
_TAG_BITS = 128
# Blob: version byte 0x81 (token AES-256-GCM; distinct from keywrap's 0x01) ‖ nonce ‖
# ciphertext ‖ tag. The nonce is random (NIST SP 800-38D 8.2.2): the root key wraps
# only KEKs and signing keys, far below the 2**32 random-nonce limit.
_VERSION = 0x81
_HEADER = 1 + _NONCE_SIZE

# Errors a token gives for a ciphertext that does not authenticate. SoftHSM2 reports
# a GCM tag mismatch as CKR_GENERAL_ERROR; others use CKR_ENCRYPTED_DATA_INVALID.
_DECRYPT_FAILURES: tuple[type[Exception], ...] = (
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.DataInvalid,
    p11.DataLenRange,
    p11.GeneralError,
    p11.FunctionFailed,
)


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the root key lives: the PKCS#11 module, the token, its user PIN, the key label."""

    module_path: str
    token_label: str
    user_pin: str = field(repr=False)
    key_label: str = "pdx-root-key"

    def __post_init__(self) -> None:
        for name in ("module_path", "token_label", "user_pin", "key_label"):
            if not getattr(self, name):
                raise ValueError(f"PKCS#11 {name} must not be empty")


class _TokenSession:
    """One logged-in session per (module, token) in this process, shared by every backend.

    PKCS#11 login state belongs to the application, not the session: a second
    `C_Login` fails with CKR_USER_ALREADY_LOGGED_IN, and closing any session that
    logged in logs all of them out. So backends on the same token share this session,
    serialised by `lock` (a session runs one operation at a time, PKCS#11 v2.40 5.6).
    """

    def __init__(self, session: pkcs11.Session, pin_digest: bytes, serial: bytes) -> None:
        self.session = session
        self.pin_digest = pin_digest
        self.serial = serial
        self.lock = threading.Lock()
        self.users = 0


_REGISTRY_LOCK = threading.Lock()
_SESSIONS: dict[tuple[str, str], _TokenSession] = {}


def _pin_digest(pin: str) -> bytes:
    return hashlib.sha256(b"pdx pkcs11 pin\x00" + pin.encode("utf-8")).digest()


def _open_token(config: Pkcs11Config) -> _TokenSession:
    try:
        library = pkcs11.lib(config.module_path)
    except p11.PKCS11Error:
        raise HsmUnavailable("cannot load the PKCS#11 module", module=config.module_path) from None
    try:
        token = library.get_token(token_label=config.token_label)
    except p11.NoSuchToken:
        raise HsmUnavailable("no PKCS#11 token with this label", token=config.token_label) from None
    except p11.PKCS11Error as error:
        raise HsmUnavailable(f"PKCS#11 token lookup failed: {type(error).__name__}") from None
    try:
        session = token.open(rw=True, user_pin=config.user_pin)
    except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
        raise HsmUnavailable("wrong PKCS#11 user PIN", token=config.token_label) from None
    except p11.PinLocked:
        raise HsmUnavailable("PKCS#11 user PIN is locked", token=config.token_label) from None
    except p11.PKCS11Error as error:
        raise HsmUnavailable(f"cannot log in to the token: {type(error).__name__}") from None
    return _TokenSession(session, _pin_digest(config.user_pin), bytes(token.serial))


def _acquire(config: Pkcs11Config) -> _TokenSession:
    key = (os.path.realpath(config.module_path), config.token_label)
    with _REGISTRY_LOCK:
        shared = _SESSIONS.get(key)
        if shared is None:
            shared = _open_token(config)
            _SESSIONS[key] = shared
        elif not hmac.compare_digest(shared.pin_digest, _pin_digest(config.user_pin)):
            # Already logged in, so the token cannot check this PIN for us; compare it
            # with the one that logged in (constant time).
            raise HsmUnavailable("wrong PKCS#11 user PIN", token=config.token_label)
        shared.users += 1
        return shared


def _release(config: Pkcs11Config, shared: _TokenSession) -> None:
    key = (os.path.realpath(config.module_path), config.token_label)
    with _REGISTRY_LOCK:
        shared.users -= 1
        if shared.users > 0:
            return
        if _SESSIONS.get(key) is shared:
            del _SESSIONS[key]
        try:
            shared.session.close()  # logs out
        except p11.PKCS11Error:
            pass


class Pkcs11RootKey:
    """`RootKeyBackend` whose AES-256 root key never leaves the token.

    The key object is created with CKA_SENSITIVE = true and CKA_EXTRACTABLE = false
    (so the token refuses C_GetAttributeValue(CKA_VALUE) and C_WrapKey on it), and
    CKA_TOKEN, CKA_PRIVATE = true (persistent, only after login). `wrap`/`unwrap` are
    C_Encrypt/C_Decrypt with CKM_AES_GCM inside the token. Call `close` (or use it as
    a context manager) to release the login; after a `fork` open a new one.
    """

    def __init__(self, config: Pkcs11Config, *, create: bool = True) -> None:
        self._config = config
        self._closed = False
        self._shared = _acquire(config)
        try:
            self._key = self._find_or_create(create)
            self._key_id = self._self_test()
        except BaseException:
            self._closed = True
            _release(config, self._shared)
            raise

    def __repr__(self) -> str:
        return f"Pkcs11RootKey(key_id={self._key_id!r})"

    def __enter__(self) -> Pkcs11RootKey:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def kind(self) -> str:
        return "pkcs11"

    def close(self) -> None:
        """Release this backend's share of the token login (idempotent)."""
        if not self._closed:
            self._closed = True
            _release(self._config, self._shared)

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        params = GCMParams(nonce, aad, _TAG_BITS)
        key = cast(EncryptMixin, self._key)
        sealed = self._call(
            lambda: key.encrypt(plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params)
        )
        return bytes((_VERSION,)) + nonce + sealed

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < _HEADER + _TAG_BITS // 8 or blob[0] != _VERSION:
            raise InvalidCiphertext()
        params = GCMParams(blob[1:_HEADER], aad, _TAG_BITS)
        ciphertext = blob[_HEADER:]
        key = cast(DecryptMixin, self._key)
        return self._call(
            lambda: key.decrypt(ciphertext, mechanism=Mechanism.AES_GCM, mechanism_param=params),
            decrypting=True,
        )

    def attributes(self) -> dict[str, Any]:
        """The root key object's protection attributes, for the inventory and tests."""

        def read() -> dict[str, Any]:
            return {
                "sensitive": bool(self._key[Attribute.SENSITIVE]),
                "extractable": bool(self._key[Attribute.EXTRACTABLE]),
                "always_sensitive": bool(self._key[Attribute.ALWAYS_SENSITIVE]),
                "never_extractable": bool(self._key[Attribute.NEVER_EXTRACTABLE]),
                "value_len": int(self._key[Attribute.VALUE_LEN]),
                "label": str(self._key[Attribute.LABEL]),
            }

        facts: dict[str, Any] = self._locked(read)
        return facts

    # -- internals ---------------------------------------------------------------------

    def _locked(self, operation: Any) -> Any:
        if self._closed:
            raise HsmUnavailable("the PKCS#11 root key backend is closed")
        with self._shared.lock:
            return operation()

    def _call(self, operation: Any, *, decrypting: bool = False) -> bytes:
        try:
            result = self._locked(operation)
        except _DECRYPT_FAILURES:
            if decrypting:
                raise InvalidCiphertext() from None
            raise HsmUnavailable("the token refused the operation") from None
        except p11.PKCS11Error as error:
            raise HsmUnavailable(f"PKCS#11 operation failed: {type(error).__name__}") from None
        if not isinstance(result, bytes):
            raise HsmUnavailable("the token returned no data")
        return result

    def _find_or_create(self, create: bool) -> pkcs11.SecretKey:
        session = self._shared.session
        label = self._config.key_label
        with self._shared.lock:
            try:
                found = session.get_key(
                    object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label
                )
            except p11.NoSuchKey:
                found = None
            except p11.MultipleObjectsReturned:
                raise HsmUnavailable(
                    "several root key objects have this label", label=label
                ) from None
            except p11.PKCS11Error as error:
                raise HsmUnavailable(f"root key lookup failed: {type(error).__name__}") from None
            if found is not None:
                if not isinstance(found, pkcs11.SecretKey):
                    raise HsmUnavailable("root key object is not a secret key", label=label)
                return found
            if not create:
                raise HsmUnavailable("no root key object with this label in the token", label=label)
            try:
                return session.generate_key(
                    KeyType.AES,
                    ROOT_KEY_BITS,
                    id=os.urandom(16),
                    label=label,
                    store=True,
                    capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                    template={
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.WRAP: False,
                        Attribute.UNWRAP: False,
                        Attribute.SIGN: False,
                        Attribute.VERIFY: False,
                        Attribute.DERIVE: False,
                    },
                )
            except p11.PKCS11Error as error:
                raise HsmUnavailable(
                    f"cannot generate the root key in the token: {type(error).__name__}"
                ) from None

    def _self_test(self) -> str:
        """Refuse a root key object that the token would let out; return its key id."""
        facts = self.attributes()
        if (
            not facts["sensitive"]
            or facts["extractable"]
            or facts["value_len"] != ROOT_KEY_BITS // 8
        ):
            raise HsmUnavailable(
                "the token's root key object must be a sensitive, non-extractable AES-256 key",
                label=self._config.key_label,
            )

        def read_value() -> object:
            return self._key[Attribute.VALUE]

        try:
            self._locked(read_value)
        except p11.AttributeSensitive:
            pass  # what a correct token does
        except p11.PKCS11Error:
            pass
        else:
            raise HsmUnavailable("the token discloses the root key value; refusing to use it")

        def read_id() -> bytes:
            return bytes(self._key[Attribute.ID] or b"")

        object_id = self._locked(read_id)
        name = object_id.hex() if object_id else self._config.key_label
        return f"pkcs11:{self._shared.serial.decode('ascii', 'replace').strip()}:{name}"[:128]

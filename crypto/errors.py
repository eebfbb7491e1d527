"""Crypto error hierarchy: every failure `crypto` raises on purpose, with a stable code."""

from __future__ import annotations

from typing import Any

from crypto.problem import CodedError


class CryptoError(CodedError):
    """Root of every error `crypto` raises on purpose.

    Its shape is `crypto.problem.CodedError`'s. `detail` never holds key material or
    plaintext; `extensions` holds key ids and purposes.
    """

    code = "crypto-error"
    title = "Cryptographic error"


class KeyNotFound(CryptoError):
    code = "key-not-found"
    title = "Key not found"


class KeyPurposeMismatch(CryptoError):
    code = "key-purpose-mismatch"
    title = "Key used for a purpose it was not created for"


class KeyStoreUnavailable(CryptoError):
    code = "keystore-unavailable"
    title = "Key store unavailable"


class InvalidCiphertext(CryptoError):
    """Every decryption or authentication failure, deliberately opaque.

    Like Fernet's `InvalidToken`: the same code and detail whether the key, the
    nonce, the associated data, the framing or the tag was wrong, so that an
    attacker probing with modified ciphertexts learns nothing about which check
    failed (STYLE habit 5).
    """

    code = "invalid-ciphertext"
    title = "Invalid ciphertext"

    def __init__(
        self, detail: str = "ciphertext could not be decrypted", **extensions: Any
    ) -> None:
        super().__init__(detail, **extensions)


class InvalidKey(CryptoError):
    """Key material that cannot be a key of the stated algorithm (length, encoding, curve)."""

    code = "invalid-key"
    title = "Invalid key material"


class InvalidGroupElement(CryptoError):
    """An encoded element is not the abscissa of a P-256 point (or a scalar is out of range)."""

    code = "invalid-group-element"
    title = "Invalid group element"


class UnsupportedAlgorithm(CryptoError):
    """An algorithm or cipher-suite name that `crypto` does not implement."""

    code = "unsupported-algorithm"
    title = "Unsupported algorithm"


class InvalidShares(CryptoError):
    """Root of the secret-sharing failures (`crypto.shamir.combine`)."""

    code = "invalid-shares"
    title = "Invalid secret shares"


class TooFewShares(InvalidShares):
    code = "shares-too-few"
    title = "Fewer shares than the threshold"


class DuplicateShares(InvalidShares):
    code = "shares-duplicate"
    title = "Two shares have the same index"


class InconsistentShares(InvalidShares):
    """Malformed shares, shares of different splits, or a failed integrity check."""

    code = "shares-inconsistent"
    title = "Shares do not belong together"


# -- key management (crypto.keystore, crypto.kms, crypto.backup, crypto.backends) -------------


class KeyDestroyed(CryptoError):
    """The key (or the key-encryption key above it) was destroyed: nothing can unwrap it."""

    code = "key-destroyed"
    title = "Key destroyed"


class KeySuspended(CryptoError):
    """The key is suspended: neither protecting nor processing until it is resumed."""

    code = "key-suspended"
    title = "Key suspended"


class KeyNotActive(CryptoError):
    """The key is in a state (pre-active, deactivated, compromised) that forbids this use."""

    code = "key-not-active"
    title = "Key not active"


class KeyExpired(KeyNotActive):
    """`now` is outside the key's validity period (not_before, not_after)."""

    code = "key-expired"
    title = "Key outside its validity period"


class KeyStateTransitionInvalid(CryptoError):
    """A lifecycle operation asked for a state change the transition table forbids."""

    code = "key-state-transition-invalid"
    title = "Key state transition not allowed"


class KeyAlgorithmMismatch(CryptoError):
    """The stored key has another algorithm than the operation needs (e.g. SM2 for JWT)."""

    code = "key-algorithm-mismatch"
    title = "Key has another algorithm"


class KeyRoleDenied(CryptoError):
    """The actor lacks the key-management role the operation needs (docs/compliance.md CRY-13)."""

    code = "key-role-denied"
    title = "Key management role required"


class DualControlViolation(CryptoError):
    """Two-person rule: the approver of a destruction must differ from its requester."""

    code = "key-dual-control-violation"
    title = "A second, different administrator must approve"


class DestroyRequestInvalid(CryptoError):
    """Unknown, expired, cancelled or already executed key-destruction request."""

    code = "key-destroy-request-invalid"
    title = "Key destruction request not pending"


class RootKeyPassphraseInvalid(KeyStoreUnavailable):
    """The passphrase does not open the sealed root key file (or the file is damaged)."""

    code = "root-key-passphrase-invalid"
    title = "Wrong root key passphrase"


class HsmUnavailable(KeyStoreUnavailable):
    """The PKCS#11 module, token, PIN or root key object cannot be used."""

    code = "hsm-unavailable"
    title = "Hardware security module unavailable"


class BackupInvalid(CryptoError):
    """A key backup that is malformed, of another format, or fails authentication."""

    code = "key-backup-invalid"
    title = "Invalid key backup"


# -- certificates (crypto.ca: the platform CA for mutual TLS) -------------------------------


class CertificateError(CryptoError):
    """Root of the certificate-authority failures (`crypto.ca`)."""

    code = "certificate-error"
    title = "Certificate error"


class CertificateRequestInvalid(CertificateError):
    """A request to issue that the CA refuses: bad id, name, address, lifetime or CSR."""

    code = "certificate-request-invalid"
    title = "Invalid certificate request"


class CertificateInvalid(CertificateError):
    """A presented certificate that is not a valid pdx certificate, deliberately opaque.

    The same code whether it could not be parsed, was issued by another CA, is outside
    its validity period, lacks the client EKU or carries no pdx identity (STYLE habit 5).
    """

    code = "certificate-invalid"
    title = "Invalid certificate"

    def __init__(self, detail: str = "certificate is not acceptable", **extensions: Any) -> None:
        super().__init__(detail, **extensions)


class CertificateAuthorityUnavailable(CertificateError):
    """The CA's files are missing, unreadable, too widely readable, or do not belong together."""

    code = "ca-unavailable"
    title = "Certificate authority unavailable"

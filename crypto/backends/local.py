"""Root key in a local file (mode 0600), sealed under a passphrase with scrypt + AES-256-GCM."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import unicodedata
from pathlib import Path

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from crypto.errors import InvalidCiphertext, KeyStoreUnavailable, RootKeyPassphraseInvalid
from crypto.suites import keywrap
from crypto.suites.aead import NONCE_SIZE, TAG_SIZE, AeadSuite, new_aead

ROOT_KEY_SIZE = 32

# Sealed file, version 1:
#   magic "PDXRK\x01" ‖ log2(N) (1 B) ‖ r (1 B) ‖ p (1 B) ‖ salt (16 B) ‖ nonce (12 B)
#   ‖ AES-256-GCM(scrypt(passphrase, salt, N, r, p), root key, aad = everything before)
# scrypt per RFC 7914; N = 2**15, r = 8, p = 1 costs 32 MiB and ~0.1 s per opening,
# the interactive setting of Percival's paper and within OWASP's current guidance.
_MAGIC = b"PDXRK\x01"
_SALT_SIZE = 16
_HEADER_SIZE = len(_MAGIC) + 3 + _SALT_SIZE
SEALED_FILE_SIZE = _HEADER_SIZE + NONCE_SIZE + ROOT_KEY_SIZE + TAG_SIZE
DEFAULT_SCRYPT_LOG2_N = 15
_SCRYPT_R = 8
_SCRYPT_P = 1
# Bounds on what a (damaged or hostile) header can make us spend: up to 1 GiB at 2**20.
_LOG2_N_RANGE = range(10, 21)
_MAX_FILE_SIZE = max(ROOT_KEY_SIZE, SEALED_FILE_SIZE)

Passphrase = str | bytes


class LocalRootKey:
    """A 256-bit root key read from a file; wraps with AES-256-GCM (`suites.keywrap`).

    With a passphrase the file is sealed (format above) and `kind` is "local-sealed".
    Without one the file holds the 32 raw key bytes: the unsealed format of the first
    releases, kept for development and tests; production settings must pass a
    passphrase, and `seal_file` converts an existing unsealed file in place.
    """

    def __init__(self, key: bytes, *, sealed: bool = False) -> None:
        if len(key) != ROOT_KEY_SIZE:
            raise ValueError(f"a root key is {ROOT_KEY_SIZE} bytes")
        self._key = bytes(key)
        self._sealed = sealed
        # A name for the key that reveals nothing about it: a domain-separated hash.
        fingerprint = hashlib.sha256(b"pdx root key id\x00" + self._key).hexdigest()
        self._key_id = f"local:{fingerprint[:32]}"

    def __repr__(self) -> str:
        return f"LocalRootKey(key_id={self._key_id!r}, kind={self.kind!r})"

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def kind(self) -> str:
        return "local-sealed" if self._sealed else "local"

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        return keywrap.wrap(self._key, plaintext, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        return keywrap.unwrap(self._key, blob, aad)

    @classmethod
    def load(cls, path: Path, passphrase: Passphrase | None = None) -> LocalRootKey:
        """Read an existing root key file; `KeyStoreUnavailable` if missing or unsafe.

        Refuses a file that group or others may access at all, or that is not a
        regular file. Without `passphrase` the file must be an unsealed 32-byte key;
        with one it must be sealed, and `RootKeyPassphraseInvalid` says the passphrase
        does not open it.
        """
        content = _read_private(Path(path))
        if passphrase is None:
            if content.startswith(_MAGIC):
                raise RootKeyPassphraseInvalid("root key file is sealed: a passphrase is needed")
            if len(content) != ROOT_KEY_SIZE:
                raise KeyStoreUnavailable(f"root key file must hold exactly {ROOT_KEY_SIZE} bytes")
            return cls(content)
        if not content.startswith(_MAGIC):
            raise KeyStoreUnavailable(
                "root key file is not sealed; convert it with LocalRootKey.seal_file"
            )
        return cls(_unseal(content, _passphrase_bytes(passphrase)), sealed=True)

    @classmethod
    def create_or_load(
        cls,
        path: Path,
        passphrase: Passphrase | None = None,
        *,
        scrypt_log2_n: int = DEFAULT_SCRYPT_LOG2_N,
    ) -> LocalRootKey:
        """Load the root key at `path`, first creating it (32 random bytes) if absent.

        Sealed under `passphrase` when one is given. Safe against concurrent callers:
        the file is written completely to a private temporary file and then hard-linked
        into place, which fails if `path` already exists, so every process ends up with
        the one key that won.
        """
        path = Path(path)
        if not os.path.lexists(path):
            key = os.urandom(ROOT_KEY_SIZE)
            if passphrase is None:
                content = key
            else:
                content = _seal(key, _passphrase_bytes(passphrase), scrypt_log2_n)
            _create(path, content, replace=False)
        return cls.load(path, passphrase)

    @classmethod
    def seal_file(
        cls,
        path: Path,
        passphrase: Passphrase,
        *,
        old_passphrase: Passphrase | None = None,
        scrypt_log2_n: int = DEFAULT_SCRYPT_LOG2_N,
    ) -> LocalRootKey:
        """Seal an unsealed file under `passphrase`, or re-seal under a new one.

        `old_passphrase` opens a file that is already sealed (a passphrase change). The
        key itself is unchanged, so everything it wraps stays readable; the new file
        replaces the old one atomically.
        """
        path = Path(path)
        current = cls.load(path, old_passphrase)
        content = _seal(current._key, _passphrase_bytes(passphrase), scrypt_log2_n)
        _create(path, content, replace=True)
        return cls.load(path, passphrase)


def _passphrase_bytes(passphrase: Passphrase) -> bytes:
    if isinstance(passphrase, str):
        # NFC so the same passphrase typed on different systems gives the same bytes.
        passphrase = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if not passphrase:
        raise ValueError("the root key passphrase must not be empty")
    return passphrase


def _kdf(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(passphrase)


def _seal(key: bytes, passphrase: bytes, log2_n: int) -> bytes:
    if log2_n not in _LOG2_N_RANGE:
        raise ValueError(f"scrypt_log2_n must be in [{_LOG2_N_RANGE.start}, {_LOG2_N_RANGE.stop})")
    salt = os.urandom(_SALT_SIZE)
    header = _MAGIC + bytes((log2_n, _SCRYPT_R, _SCRYPT_P)) + salt
    nonce = os.urandom(NONCE_SIZE)
    sealing_key = _kdf(passphrase, salt, log2_n, _SCRYPT_R, _SCRYPT_P)
    sealed = new_aead(AeadSuite.AES_256_GCM, sealing_key).encrypt(nonce, key, header)
    return header + nonce + sealed


def _unseal(content: bytes, passphrase: bytes) -> bytes:
    if len(content) != SEALED_FILE_SIZE:
        raise KeyStoreUnavailable(f"sealed root key file must hold {SEALED_FILE_SIZE} bytes")
    log2_n, r, p = content[len(_MAGIC) : len(_MAGIC) + 3]
    if log2_n not in _LOG2_N_RANGE or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise KeyStoreUnavailable("sealed root key file has unsupported scrypt parameters")
    header = content[:_HEADER_SIZE]
    salt = header[-_SALT_SIZE:]
    nonce = content[_HEADER_SIZE : _HEADER_SIZE + NONCE_SIZE]
    sealing_key = _kdf(passphrase, salt, log2_n, r, p)
    try:
        aead = new_aead(AeadSuite.AES_256_GCM, sealing_key)
        return aead.decrypt(nonce, content[_HEADER_SIZE + NONCE_SIZE :], header)
    except InvalidCiphertext:
        # GCM cannot tell a wrong passphrase from a damaged file; neither can we.
        raise RootKeyPassphraseInvalid(
            "wrong root key passphrase (or a damaged root key file)"
        ) from None


def _read_private(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyStoreUnavailable("root key file does not exist") from None
    except OSError as error:
        raise KeyStoreUnavailable(f"root key file cannot be opened: {error.strerror}") from None
    try:
        # fstat the opened descriptor, not the path, so the checks apply to the
        # very file that is read even if the path is swapped in between.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyStoreUnavailable("root key path is not a regular file")
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise KeyStoreUnavailable(
                f"root key file is accessible by group or others (mode {mode:04o}); "
                "it must be 0600 or stricter"
            )
        if info.st_size > _MAX_FILE_SIZE:
            raise KeyStoreUnavailable(
                f"root key file must hold exactly {ROOT_KEY_SIZE} bytes "
                f"(or {SEALED_FILE_SIZE} when sealed)"
            )
        return os.read(fd, _MAX_FILE_SIZE + 1)
    except OSError as error:
        raise KeyStoreUnavailable(f"root key file cannot be read: {error.strerror}") from None
    finally:
        os.close(fd)


def _create(path: Path, content: bytes, *, replace: bool) -> None:
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_CREAT | O_EXCL with mode 0600 on a fresh random name (mkstemp).
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    except OSError as error:
        raise KeyStoreUnavailable(f"cannot create the root key file: {error.strerror}") from None
    try:
        try:
            os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
            if os.write(fd, content) != len(content):
                raise KeyStoreUnavailable("cannot create the root key file: short write")
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temporary, path)
        else:
            try:
                # link(2) is atomic and never replaces an existing file: the first
                # creator's complete key wins, later ones keep theirs unpublished.
                os.link(temporary, path)
            except FileExistsError:
                return
        _fsync_directory(directory)
    except OSError as error:
        raise KeyStoreUnavailable(f"cannot create the root key file: {error.strerror}") from None
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

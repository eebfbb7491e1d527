"""Root key in a local file (mode 0600), for development and single-host deployments."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from crypto.errors import KeyStoreUnavailable
from crypto.suites import keywrap

ROOT_KEY_SIZE = 32


class LocalRootKey:
    """A 256-bit root key read from a file; wraps with AES-256-GCM (`suites.keywrap`).

    The file holds the 32 raw key bytes and nothing else. Sealing it under a passphrase
    later changes only how the bytes are obtained before `LocalRootKey(key)` is built.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != ROOT_KEY_SIZE:
            raise ValueError(f"a root key is {ROOT_KEY_SIZE} bytes")
        self._key = bytes(key)
        # A name for the key that reveals nothing about it: a domain-separated hash.
        fingerprint = hashlib.sha256(b"pdx root key id\x00" + self._key).hexdigest()
        self._key_id = f"local:{fingerprint[:32]}"

    def __repr__(self) -> str:
        return f"LocalRootKey(key_id={self._key_id!r})"

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        return keywrap.wrap(self._key, plaintext, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        return keywrap.unwrap(self._key, blob, aad)

    @classmethod
    def load(cls, path: Path) -> LocalRootKey:
        """Read an existing root key file; `KeyStoreUnavailable` if missing or unsafe.

        Refuses a file that group or others may access at all, that is not a regular
        file, or that is not exactly 32 bytes long.
        """
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
            if info.st_size != ROOT_KEY_SIZE:
                raise KeyStoreUnavailable(f"root key file must hold exactly {ROOT_KEY_SIZE} bytes")
            key = os.read(fd, ROOT_KEY_SIZE + 1)
        except OSError as error:
            raise KeyStoreUnavailable(f"root key file cannot be read: {error.strerror}") from None
        finally:
            os.close(fd)
        if len(key) != ROOT_KEY_SIZE:
            raise KeyStoreUnavailable(f"root key file must hold exactly {ROOT_KEY_SIZE} bytes")
        return cls(key)

    @classmethod
    def create_or_load(cls, path: Path) -> LocalRootKey:
        """Load the root key at `path`, first creating it (32 random bytes) if absent.

        Safe against concurrent callers: the key is written completely to a private
        temporary file and then hard-linked into place, which fails if `path` already
        exists, so every process ends up with the one key that won.
        """
        path = Path(path)
        if not os.path.lexists(path):
            _create(path)
        return cls.load(path)


def _create(path: Path) -> None:
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
            if os.write(fd, os.urandom(ROOT_KEY_SIZE)) != ROOT_KEY_SIZE:
                raise KeyStoreUnavailable("cannot create the root key file: short write")
            os.fsync(fd)
        finally:
            os.close(fd)
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

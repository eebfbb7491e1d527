"""Private PEM file handling for the CA: checked reads, atomic writes with final modes, locks."""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crypto.errors import CertificateAuthorityUnavailable

MAX_PEM_BYTES = 64 * 1024


def read_pem_file(path: Path, *, private: bool) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CertificateAuthorityUnavailable(f"{path.name} does not exist") from None
    except OSError as error:
        raise CertificateAuthorityUnavailable(
            f"{path.name} cannot be opened: {error.strerror}"
        ) from None
    try:
        # fstat the opened descriptor so the checks apply to the file actually read.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CertificateAuthorityUnavailable(f"{path.name} is not a regular file")
        if private and info.st_mode & 0o077:
            # Like ssh with private keys: a key others can read is refused, not used.
            raise CertificateAuthorityUnavailable(
                f"{path.name} may be read by others (mode {stat.S_IMODE(info.st_mode):o}); "
                "chmod 600 it"
            )
        if info.st_size > MAX_PEM_BYTES:
            raise CertificateAuthorityUnavailable(f"{path.name} is too large")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, *, mode: int, exclusive: bool) -> None:
    """Write via a private temporary file, then link (exclusive) or rename it into place.

    The file has its final mode from creation, so a private key is never readable by
    others even for a moment; `exclusive` refuses to replace an existing file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed a public file's mode
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise CertificateAuthorityUnavailable(
                    f"{path.name} already exists; not replacing it"
                ) from None
        else:
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

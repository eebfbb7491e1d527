"""Identifier normalisation (ID numbers, phones, e-mail) and per-job keyed domain separation.

One implementation for both sides of a join (issue 18): the enterprise's SDK hashes its own
cohort with it, and a provider's sandbox imports it (`sandbox.identifiers`), so the two
normalise byte for byte alike. Standard library only.

Two parties join only if they hash byte-identical strings, so each identifier kind has one
canonical form, computed before anything is hashed:

- `id_number`: resident identity numbers (GB 11643-1999): NFKC (full-width digits and
  letters become ASCII), spaces, dashes and dots removed, check character upper-case `X`;
  the 18th character must be the GB 11643-1999 §8.2 MOD 11-2 check character; 15-digit
  numbers issued before 1999 are widened to 18 (century 19 inserted, check computed).
- `phone`: NFKC, separators removed; mainland numbers lose +86 / 0086 / 86; mobiles are 11
  digits starting with 1, landlines keep (or regain) their leading 0 area code; other
  countries keep E.164 form `+<digits>`.
- `email`: NFKC, trimmed, lower-cased (the whole address: mailbox case-folding is what
  users expect even if RFC 5321 leaves the local part case-sensitive).

A value that cannot be normalised is `None`: the party drops it locally (it cannot join).

Keyed domain separation (`JobDomain`): the PSI input for identifier v of kind k is
HMAC-SHA256(job_salt, "pdx-psi/v1" ‖ job_id ‖ k ‖ v), and the hash-to-curve DST names the
job. `job_salt` is 32 random bytes the two parties agree on and the coordinator never sees
(the integrator delivers it sealed to the parties), so blinded elements of two jobs never
match and nobody without the salt can test a guessed identifier against a transcript.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212._/()]+")
DST_PREFIX = b"PDX-PSI-V01-CS01-with-P256_XMD:SHA-256_SSWU_RO_"


class IdKind(StrEnum):
    """Kinds of identifier a PSI job may join on."""

    ID_NUMBER = "id_number"
    PHONE = "phone"
    EMAIL = "email"


def _clean(value: str) -> str:
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", value)).strip()


def id_check_char(first17: str) -> str:
    """GB 11643-1999 §8.2 MOD 11-2 check character of the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def normalise_id_number(value: str) -> str | None:
    """The canonical 18-character resident identity number, or None if it is not one."""
    s = _clean(value).upper()
    if len(s) == 15 and s.isdigit():  # pre-1999 numbers: YYMMDD birth date, no check char
        body = s[:6] + "19" + s[6:]
        return body + id_check_char(body)
    if len(s) != 18 or not s[:17].isdigit() or s[17] not in "0123456789X":
        return None
    return s if id_check_char(s[:17]) == s[17] else None


def normalise_phone(value: str) -> str | None:
    """The canonical phone number (mainland without +86; others `+<digits>`), or None."""
    s = _clean(value)
    international = False
    if s.startswith("+"):
        international, s = True, s[1:]
    elif s.startswith("00"):
        international, s = True, s[2:]
    if not s.isdigit():
        return None
    if international or (s.startswith("86") and len(s) == 13):
        if not s.startswith("86"):
            return "+" + s if 6 <= len(s) <= 15 else None
        s = s[2:]
        if not (len(s) == 11 and s.startswith("1")) and not s.startswith("0"):
            s = "0" + s  # +86 10 1234 5678 is the landline 010 1234 5678
    if len(s) == 11 and s.startswith("1"):
        return s
    if s.startswith("0") and 10 <= len(s) <= 12:
        return s
    return None


def normalise_email(value: str) -> str | None:
    """The canonical e-mail address (lower case), or None without exactly one `@`."""
    s = unicodedata.normalize("NFKC", value).strip().lower()
    local, at, domain = s.partition("@")
    if not at or not local or not domain or "@" in domain or any(c.isspace() for c in s):
        return None
    return s


_NORMALISERS = {
    IdKind.ID_NUMBER: normalise_id_number,
    IdKind.PHONE: normalise_phone,
    IdKind.EMAIL: normalise_email,
}


def normalise(kind: IdKind | str, value: str) -> str | None:
    """Canonical form of `value` as an identifier of `kind`, or None."""
    return _NORMALISERS[IdKind(kind)](value)


@dataclass(frozen=True)
class JobDomain:
    """Per-job keyed domain separation: what both parties of one PSI job share."""

    job_id: str
    salt: bytes

    def __post_init__(self) -> None:
        if len(self.salt) < 16:
            raise ValueError("the job salt must be at least 16 random bytes")
        if not self.job_id or len(self.job_id) > 128:
            raise ValueError("job id must be 1 to 128 characters")

    @property
    def dst(self) -> bytes:
        """RFC 9380 DST naming the suite and the job (≤ 255 bytes)."""
        tag = hashlib.sha256(self.job_id.encode()).hexdigest()[:32]
        return DST_PREFIX + b"-job-" + tag.encode()

    def message(self, kind: IdKind | str, canonical: str) -> bytes:
        """The 32-byte PSI input for an already normalised identifier."""
        data = b"\x00".join(
            (b"pdx-psi/v1", self.job_id.encode(), str(IdKind(kind)).encode(), canonical.encode())
        )
        return hmac.new(self.salt, data, hashlib.sha256).digest()

    def messages(self, kind: IdKind | str, values: Iterable[str]) -> Iterator[bytes | None]:
        """`message(normalise(v))` per value, None where a value cannot be normalised."""
        k = IdKind(kind)
        for v in values:
            c = normalise(k, v)
            yield None if c is None else self.message(k, c)

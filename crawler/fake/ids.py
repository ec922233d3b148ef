"""Keyed, invertible 64-bit mixing and the id formats of the fake API (pure, no I/O).

The fake never stores an id -> index map: a batch id carries hex(mix(i ^ key)), so the server
inverts the mix to find the index in O(1), and a check word (derived from a seed tag) rejects
ids that were never issued. Two spellings, both 38 characters:

- realistic (the default): `batch_` + 8 hex of created_at + 16 hex of the mixed index + 8 hex
  of check, as OpenAI's ids begin with their creation second (about 1 in 10 one second
  earlier, as in recorded responses); ids then arrive nearly in key order, as in real use;
- random: `batch_` + 16 hex of the mixed index + 16 hex of check: fully random keys, the
  worst case for SQLite's primary-key index.

Output and error file ids (`FileIds`) invert the same way, to a batch index and a kind.
"""

from __future__ import annotations

import binascii
from typing import Literal

_M64 = (1 << 64) - 1
# splitmix64 finaliser constants and their inverses mod 2**64: the mix is a bijection.
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_C1_INV = pow(_C1, -1, 1 << 64)
_C2_INV = pow(_C2, -1, 1 << 64)

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_PAIRS = [a + b for a in _B62 for b in _B62]
_B62_VALUE = {ch: n for n, ch in enumerate(_B62)}
_NOT_ALNUM = bytes.maketrans(b"+/", b"Qz")  # base64's two symbols that ids never contain
_B62_WORD = 11  # 62**11 > 2**64, so one 64-bit word is 11 base62 digits
_ODD2 = 0xD6E8FEB86659FD93
_BATCH_ID_LENGTH = 38

IdStyle = Literal["realistic", "random"]
ID_STYLES: tuple[IdStyle, ...] = ("realistic", "random")


def mix(x: int) -> int:
    """Scramble a 64-bit value bijectively (splitmix64 finaliser)."""
    x &= _M64
    x = ((x ^ (x >> 30)) * _C1) & _M64
    x = ((x ^ (x >> 27)) * _C2) & _M64
    return x ^ (x >> 31)


def unmix(x: int) -> int:
    """Invert `mix`."""
    x ^= (x >> 31) ^ (x >> 62)
    x = (x * _C2_INV) & _M64
    x ^= (x >> 27) ^ (x >> 54)
    x = (x * _C1_INV) & _M64
    return x ^ (x >> 30) ^ (x >> 60)


def derive_key(seed: int, purpose: int) -> int:
    """Derive an independent 64-bit key for one purpose from a seed."""
    return mix(mix(seed & _M64) ^ purpose)


def build_b62_word(x: int) -> str:
    """Encode a 64-bit word as exactly 11 base62 digits (two digits per division: cheap)."""
    x, a = divmod(x, 3844)
    x, b = divmod(x, 3844)
    x, c = divmod(x, 3844)
    x, d = divmod(x, 3844)
    x, e = divmod(x, 3844)
    p = _B62_PAIRS
    return _B62[x] + p[e] + p[d] + p[c] + p[b] + p[a]


def parse_b62_word(text: str) -> int | None:
    """Decode 11 base62 digits, or None when the text is not one 64-bit word."""
    if len(text) != _B62_WORD:
        return None
    value = 0
    for ch in text:
        digit = _B62_VALUE.get(ch)
        if digit is None:
            return None
        value = value * 62 + digit
    return value if value <= _M64 else None


def build_opaque_file_id(word: int) -> str:
    """Build a file id that only needs to look right: base64 in C, 3x cheaper than base62."""
    raw = binascii.b2a_base64(word.to_bytes(18, "little"), newline=False)
    return "file-" + raw.translate(_NOT_ALNUM).decode()


FileKind = Literal["output", "error"]
_FILE_KINDS: tuple[FileKind, ...] = ("output", "error")
_FILE_ID_LENGTH = 5 + 24


class FileIds:
    """The output and error file ids of one seed: (batch index, kind) -> id, and back in O(1).

    An id is `file-` + 24 alphanumerics: 11 base62 digits of the mixed (index, kind), then 13
    characters of a check derived from them; parsing re-encodes the id to confirm it was issued.
    """

    def __init__(self, seed: int) -> None:
        self._key = derive_key(seed, 8)
        self._tag = derive_key(seed, 9)

    def build(self, i: int, kind: FileKind) -> str:
        """Return the id of batch i's file of this kind."""
        word = mix((i << 1 | _FILE_KINDS.index(kind)) ^ self._key)
        check = mix(word ^ self._tag) << 16 | word >> 48  # 80 bits: enough for 13 characters
        raw = binascii.b2a_base64(check.to_bytes(10, "little"), newline=False)[:13]
        return "file-" + build_b62_word(word) + raw.translate(_NOT_ALNUM).decode()

    def parse(self, file_id: str) -> tuple[int, FileKind] | None:
        """Return the batch index and kind of an issued file id, else None."""
        if len(file_id) != _FILE_ID_LENGTH or not file_id.startswith("file-"):
            return None
        word = parse_b62_word(file_id[5 : 5 + _B62_WORD])
        if word is None:
            return None
        n = unmix(word) ^ self._key
        i, kind = n >> 1, _FILE_KINDS[n & 1]
        return (i, kind) if self.build(i, kind) == file_id else None


class BatchIds:
    """The batch ids of one seed in one style: index -> word -> id, and back in O(1)."""

    def __init__(self, seed: int, style: IdStyle = "realistic") -> None:
        if style not in ID_STYLES:
            raise ValueError(f"ids must be one of {ID_STYLES}, got {style!r}")
        self.style = style
        self._key = derive_key(seed, 1)
        self._tag = derive_key(seed, 2)

    def word(self, i: int) -> int:
        """Return the id word of batch i: its index, mixed (random-looking, invertible)."""
        return mix(i ^ self._key)

    def index(self, word: int) -> int:
        """Invert `word`."""
        return unmix(word) ^ self._key

    def build(self, word: int, created_at: int) -> str:
        """Spell the id of the batch with this word, created at `created_at`."""
        # A multiply is enough: the word is already random, and this runs once per batch.
        check = ((word ^ self._tag) * _ODD2) & _M64
        if self.style == "random":
            return f"batch_{word:016x}{check:016x}"
        # About 1 in 10 recorded ids carry the second before created_at.
        second = created_at - 1 if (check & 0xFFFFFFFF) % 10 == 0 else created_at
        return f"batch_{second:08x}{word:016x}{check >> 32:08x}"

    def parse(self, batch_id: str) -> int | None:
        """Return the word an id of this style carries, or None when it cannot be one.

        The caller re-encodes the word to confirm the id was issued: `int` alone accepts
        spellings (`+`, `_`, upper case) that no issued id has.
        """
        if len(batch_id) != _BATCH_ID_LENGTH or not batch_id.startswith("batch_"):
            return None
        digits = batch_id[6:22] if self.style == "random" else batch_id[14:30]
        try:
            return int(digits, 16) & _M64
        except ValueError:
            return None

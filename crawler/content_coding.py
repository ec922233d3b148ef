"""A compressed file body decoded as it arrives, its end checked.

aiohttp checks that a deflate stream ended, not a gzip one: a gzip body cut at a flush
point inside its declared length would pass for the whole file. Decoding file bodies here
makes every compressed stream that stops before its end a cut transfer.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

# The encodings a file request accepts (the request says so in its Accept-Encoding).
FILE_ENCODINGS = ("gzip", "deflate")

# Decoded pieces are at most this large: a few KB of gzip can unpack to gigabytes, and the
# reader takes each piece before the next is unpacked.
PIECE_BYTES = 2**18


class BrokenEncodingError(Exception):
    """A compressed body that is corrupt, or that stopped before its stream's end."""


def _decompressor(encoding: str, first: bytes) -> zlib._Decompress:
    if encoding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    # "deflate" is a zlib stream by the RFC, but some servers send raw deflate: a zlib
    # stream's first byte names method 8 in its low bits.
    wrapped = first[0] & 0x0F == 8
    return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)


async def decoded(chunks: AsyncIterator[bytes], encoding: str) -> AsyncIterator[bytes]:
    """The bytes of `chunks` decoded from `encoding` (gzip or deflate), a piece at a time.

    Raises BrokenEncodingError for corrupt data and for a stream that stops before its end.
    Gzip members following each other are read as one body, as gzip tools do; zero bytes
    after the last member are padding.
    """
    unpacker: zlib._Decompress | None = None
    try:
        async for chunk in chunks:
            data = chunk
            while data:
                if unpacker is None or unpacker.eof:
                    data = _after_a_stream(unpacker, data, encoding)
                    if not data:
                        break
                    unpacker = _decompressor(encoding, data)
                while True:
                    piece = unpacker.decompress(data, PIECE_BYTES)
                    if piece:
                        yield piece
                    data = unpacker.unconsumed_tail
                    # A full piece may leave more output inside, with all input taken.
                    if not data and len(piece) < PIECE_BYTES:
                        break
                data = unpacker.unused_data if unpacker.eof else b""
    except zlib.error as exc:
        raise BrokenEncodingError(f"the {encoding} body is corrupt ({exc})") from None
    if unpacker is not None and not unpacker.eof:
        raise BrokenEncodingError(f"the {encoding} body stopped before its stream's end")


def _after_a_stream(previous: zlib._Decompress | None, data: bytes, encoding: str) -> bytes:
    """What of `data`, coming after a finished stream (or first), starts a new one."""
    if previous is None:
        return data
    if encoding != "gzip":
        return b""  # a deflate body holds one stream; what follows it is not the file's
    return data.lstrip(b"\0")

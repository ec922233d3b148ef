"""A compressed body decoded as it arrives, its end checked.

aiohttp checks that a deflate stream ended, not a gzip one: a gzip body cut at a flush
point inside its declared length would pass for the whole file. Decoding every body here
makes each compressed stream that stops before its end a broken body, asked again.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator

# The encodings every request accepts (its Accept-Encoding), decoded here.
ENCODINGS = ("gzip", "deflate")

# Decoded pieces are at most this large: a few KB of gzip can unpack to gigabytes, and the
# reader takes each piece before the next is unpacked.
PIECE_BYTES = 2**18


# Compressed bytes in a row that decode to nothing, at most: a server may send zero padding,
# empty members or empty blocks for ever, at any pace, and no file needs a MiB of them.
MAX_IDLE_BYTES = 2**20


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
    Gzip members following each other are read as one body, as gzip tools do; what follows
    the last stream and is not one (zero padding, a stray line end) is ignored, as GNU gzip
    does (with a warning), and not read: a request file's line count is checked against its
    batch's. Past MAX_IDLE_BYTES decoding to nothing it is broken (padding sent for ever).
    """
    streams = _Streams(encoding)
    try:
        async for chunk in chunks:
            if streams.read_all(len(chunk)):
                break
            for piece in streams.decode(chunk):
                yield piece
    except zlib.error as exc:
        raise BrokenEncodingError(f"the {encoding} body is corrupt ({exc})") from None
    streams.check_end()


class _Streams:
    """The streams of one body, one after another: what `decoded` has taken of them."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.unpacker: zlib._Decompress | None = None
        self.after_the_end = b""  # bytes past a finished stream, too few yet to tell
        self.ignoring = False  # past the last stream: the rest is not the file's
        self.idle = 0  # bytes taken since the last decoded one

    def read_all(self, coming: int) -> bool:
        """Whether the body is read, `coming` bytes more arriving: the rest is to be
        ignored. BrokenEncodingError once it ran on decoding to nothing (in a stream, or
        between two: a member may follow padding, and the file so cut would pass for whole)."""
        if self.ignoring:
            return True
        if self.idle > MAX_IDLE_BYTES:
            raise BrokenEncodingError(
                f"the {self.encoding} body ran on for {MAX_IDLE_BYTES // 2**20} MiB decoding "
                "to nothing"
            )
        self.idle += coming
        return False

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The pieces `data` decodes to (zlib.error for corrupt data)."""
        while data:
            if self.unpacker is not None and self.unpacker.eof:
                self.after_the_end, data = _next_stream(self.after_the_end + data, self.encoding)
                self.ignoring = not (self.after_the_end or data)
                if not data:
                    return
            if self.unpacker is None or self.unpacker.eof:
                self.unpacker = _decompressor(self.encoding, data)
            unpacker = self.unpacker
            while True:
                piece = unpacker.decompress(data, PIECE_BYTES)
                if piece:
                    self.idle = 0
                    yield piece
                if unpacker.eof:
                    # What follows the stream (zlib keeps it in unused_data).
                    data = unpacker.unused_data
                    break
                data = unpacker.unconsumed_tail
                # A full piece may leave more output inside, with all input taken.
                if not data and len(piece) < PIECE_BYTES:
                    return

    def check_end(self) -> None:
        """BrokenEncodingError if the body stopped inside a stream."""
        # A lone first byte of a member's magic at the end is a member cut short, not padding.
        unpacker = self.unpacker
        if (unpacker is not None and not unpacker.eof) or self.after_the_end == _GZIP_MAGIC[:1]:
            raise BrokenEncodingError(f"the {self.encoding} body stopped before its stream's end")


_GZIP_MAGIC = b"\x1f\x8b"


def _next_stream(data: bytes, encoding: str) -> tuple[bytes, bytes]:
    """Of `data`, coming after a finished stream: (bytes to hold until more come, bytes that
    start the next stream); both empty when the rest of the body is to be ignored. Only a
    gzip member follows another, after any zero padding."""
    if encoding != "gzip":
        return b"", b""
    rest = data.lstrip(b"\0")
    if not rest:
        return b"\0", b""  # padding so far: held (as one zero) until more comes
    if len(rest) < len(_GZIP_MAGIC):
        return rest, b""
    return b"", rest if rest.startswith(_GZIP_MAGIC) else b""

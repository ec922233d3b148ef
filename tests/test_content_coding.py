"""Compressed file bodies decoded as they arrive: whole streams read, cut or corrupt ones
refused, and no piece larger than the bound however much a few bytes unpack to."""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing
import sys
import zlib
from collections.abc import AsyncIterator

import pytest

from crawler.content_coding import MAX_IDLE_BYTES, PIECE_BYTES, BrokenEncodingError, decoded

from .waits import HANG_GUARD

CONTENT = b"".join(b'{"custom_id": "r%d"}\n' % n for n in range(5000))


async def arriving(body: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def decode(body: bytes, encoding: str, size: int = 1000) -> bytes:
    return b"".join([piece async for piece in decoded(arriving(body, size), encoding)])


def deflated(content: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(wbits=wbits)
    return packer.compress(content) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(CONTENT)),
        ("deflate", deflated(CONTENT, zlib.MAX_WBITS)),
        ("deflate", deflated(CONTENT, -zlib.MAX_WBITS)),
    ],
    ids=["gzip", "deflate (zlib)", "deflate (raw, as some servers send it)"],
)
@pytest.mark.parametrize("size", [1, 7, 1000, 10**7], ids=lambda size: f"{size} bytes a chunk")
async def test_a_whole_stream_decodes_to_its_content(encoding: str, body: bytes, size: int) -> None:
    assert await decode(body, encoding, size) == CONTENT


async def test_gzip_members_one_after_another_read_as_one_body_padding_ignored() -> None:
    half = len(CONTENT) // 2
    body = gzip.compress(CONTENT[:half]) + b"\0" * 3 + gzip.compress(CONTENT[half:]) + b"\0" * 9
    assert await decode(body, "gzip", 13) == CONTENT


def decodes_to(body: bytes, encoding: str, content: bytes) -> None:
    """Exit 0 if `body` decodes to `content` (run in a process of its own)."""
    sys.exit(0 if asyncio.run(decode(body, encoding, 2**16)) == content else 1)


def decoded_in_a_process(body: bytes, encoding: str, content: bytes) -> bool:
    """Whether `body` decodes to `content`, in a process of its own: a loop that never hands
    back control (nor the GIL) is killed after the hang guard instead of hanging the tests."""
    process = multiprocessing.get_context("spawn").Process(
        target=decodes_to, args=(body, encoding, content)
    )
    process.start()
    process.join(HANG_GUARD)
    if process.exitcode is None:
        process.kill()
        process.join()
        pytest.fail("still decoding after the hang guard")
    return process.exitcode == 0


LARGE = CONTENT * 8  # past PIECE_BYTES decoded: a stream ends inside a call that filled a piece


@pytest.mark.parametrize(
    ("encoding", "body", "content"),
    [
        ("gzip", gzip.compress(LARGE) + b"\r\n", LARGE),
        ("gzip", gzip.compress(LARGE) + gzip.compress(LARGE), LARGE * 2),
        ("gzip", gzip.compress(LARGE) + b"junk" + gzip.compress(b"not the file's"), LARGE),
        ("deflate", deflated(LARGE, zlib.MAX_WBITS) + b"junk", LARGE),
    ],
    ids=["gzip, a line end", "gzip, a second member", "gzip, junk", "deflate, junk"],
)
def test_what_follows_a_large_stream_is_read_or_ignored_never_spun_on(
    encoding: str, body: bytes, content: bytes
) -> None:
    """Bytes after the end of a stream decoded in full pieces: zlib keeps them as input not
    taken too, and asking it again returned nothing, forever, the event loop blocked."""
    assert len(LARGE) > PIECE_BYTES
    assert decoded_in_a_process(body, encoding, content)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_stream_flushed_at_a_line_end_but_never_ended_is_cut(encoding: str) -> None:
    """What aiohttp lets pass for gzip: whole lines, then no end of stream."""
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    packer = zlib.compressobj(wbits=wbits)
    body = packer.compress(CONTENT) + packer.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(BrokenEncodingError, match="stopped before its stream's end"):
        await decode(body, encoding)


@pytest.mark.parametrize("keep", [0.2, 0.9])
async def test_a_gzip_body_cut_anywhere_is_cut(keep: float) -> None:
    body = gzip.compress(CONTENT)
    with pytest.raises(BrokenEncodingError, match="stopped before"):
        await decode(body[: int(len(body) * keep)], "gzip")


@pytest.mark.parametrize("padding", [b"", b"\0\0"], ids=["right after", "after padding"])
async def test_a_second_member_cut_after_its_first_byte_is_cut(padding: bytes) -> None:
    """The first byte of a gzip member's magic was held to tell what it begins, then taken,
    at the end, for padding: half the file passed for the whole."""
    half = len(CONTENT) // 2
    body = gzip.compress(CONTENT[:half]) + padding + gzip.compress(CONTENT[half:])[:1]
    with pytest.raises(BrokenEncodingError, match="stopped before"):
        await decode(body, "gzip", 7)


async def test_corrupt_data_is_refused() -> None:
    """A stream whose checksum does not match its content."""
    body = bytearray(gzip.compress(CONTENT))
    body[-8] ^= 0xFF
    with pytest.raises(BrokenEncodingError, match="gzip body is corrupt"):
        await decode(bytes(body), "gzip")


async def test_an_empty_body_is_an_empty_file() -> None:
    assert await decode(b"", "gzip") == b""


async def test_a_bomb_unpacks_a_bounded_piece_at_a_time() -> None:
    """A few hundred KB that unpack to 400 MB come out in pieces of at most PIECE_BYTES."""
    size = 400 * 2**20
    body = deflated(b"\n" * size, 16 + zlib.MAX_WBITS)
    assert len(body) < 2**20
    total = 0
    async for piece in decoded(arriving(body, 2**16), "gzip"):
        assert len(piece) <= PIECE_BYTES
        total += len(piece)
    assert total == size


_PACKER = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
STREAMED_NOT_ENDED = _PACKER.compress(CONTENT) + _PACKER.flush(zlib.Z_SYNC_FLUSH)


class Endless:
    """A body of `head`, then `tail` again and again (a server sending it for ever), cut off
    after `bound` bytes: how many the decoder took says whether it would have stopped."""

    def __init__(self, head: bytes, tail: bytes, bound: int = 16 * MAX_IDLE_BYTES) -> None:
        self.head, self.tail, self.bound = head, tail, bound
        self.taken = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        self.taken = len(self.head)
        yield self.head
        while self.taken < self.bound:
            self.taken += len(self.tail)
            yield self.tail


async def test_junk_after_a_gzip_body_is_not_read() -> None:
    """What follows the last stream and begins no member is not the file's: it was read
    (and ignored) for as long as it came."""
    body = Endless(gzip.compress(CONTENT), b"junk" * 2**14)
    content = b"".join([piece async for piece in decoded(body.chunks(), "gzip")])
    assert content == CONTENT
    assert body.taken <= 2 * MAX_IDLE_BYTES


@pytest.mark.parametrize(
    ("head", "tail"),
    [
        (gzip.compress(CONTENT), b"\0" * 2**16),
        (gzip.compress(CONTENT), gzip.compress(b"") * 2**10),
        (STREAMED_NOT_ENDED, b"\x00\x00\x00\xff\xff" * 2**12),  # stored blocks of no byte
    ],
    ids=["zero padding", "empty members", "empty blocks inside a stream"],
)
async def test_a_body_running_on_decoding_to_nothing_is_refused(head: bytes, tail: bytes) -> None:
    """Sent for ever, they were read for ever; and past a MiB of padding, a member may
    follow (the file stored short, as whole, had its end been taken there)."""
    body = Endless(head, tail)
    with pytest.raises(BrokenEncodingError, match="ran on for 1 MiB decoding to nothing"):
        async for _ in decoded(body.chunks(), "gzip"):
            pass
    assert body.taken <= 2 * MAX_IDLE_BYTES

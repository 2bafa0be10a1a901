"""Model bodies kept deflated, so a gzip response is assembled from stored bytes instead of compressed per request.

A body is deflated once (by whoever first puts it in Redis) into a raw deflate fragment that ends
with a sync flush: byte-aligned and not final. A gzip member for `prefix + body + suffix` — the
list envelopes of the contract wrap a stored body this way — is then the gzip header, the prefix
as a stored block, the fragment, the suffix as the final stored block, and the trailer. Its
CRC-32 comes from the body's stored CRC, shifted past the prefix (see `_crc_joined`), so the body
is never read again. Readers that must see the plain bytes (identity responses, other pages and
sorts) inflate it, which costs a fraction of compressing.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

# Below this a body is kept and served plain: gzip would save little and cost a header and a trailer.
PACK_MIN_BYTES = 1024
# Level 1: a third of level 6's CPU for a few percent more bytes; bodies are deflated on the write path.
LEVEL = 1
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS
_ZEROS = bytes(1 << 20)


class Packed(NamedTuple):
    deflated: bytes  # raw deflate, sync-flushed, no final block
    size: int  # length of the plain body
    crc: int  # CRC-32 of the plain body


def pack(plain: bytes) -> Packed:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    deflated = compressor.compress(plain) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return Packed(deflated, len(plain), zlib.crc32(plain))


def unpack(packed: Packed) -> bytes:
    return zlib.decompressobj(-15).decompress(packed.deflated)


def _stored_block(data: bytes, final: bool) -> bytes:
    """A deflate block holding `data` as is (a stored block starts on a byte boundary, as a sync flush leaves it)."""
    size = len(data)
    return (b"\x01" if final else b"\x00") + struct.pack("<HH", size, size ^ 0xFFFF) + data


def _crc_joined(prefix_crc: int, body: Packed) -> int:
    """CRC-32 of prefix + body from the two CRCs: zlib's crc32_combine, which Python does not expose.

    Appending n bytes is linear in the CRC register; running zlib over n zero bytes from the
    complemented prefix CRC applies exactly that shift, and the body's own CRC is XORed in.
    """
    zeros = body.size
    shifted = 0xFFFFFFFF ^ prefix_crc
    while zeros:
        step = min(zeros, len(_ZEROS))
        shifted = zlib.crc32(memoryview(_ZEROS)[:step], shifted)
        zeros -= step
    return shifted ^ 0xFFFFFFFF ^ body.crc


def gzip_member(prefix: bytes, body: Packed, suffix: bytes) -> bytes:
    """The gzip encoding of prefix + body + suffix, for envelopes under 64 KiB each."""
    crc = zlib.crc32(suffix, _crc_joined(zlib.crc32(prefix), body))
    size = (len(prefix) + body.size + len(suffix)) & 0xFFFFFFFF
    head = _GZIP_HEADER + _stored_block(prefix, False) if prefix else _GZIP_HEADER
    return head + body.deflated + _stored_block(suffix, True) + struct.pack("<II", crc, size)

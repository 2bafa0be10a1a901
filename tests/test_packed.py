"""Gzip responses assembled from deflated bodies must be what any gzip reader expects, byte for byte."""

import gzip
import zlib

import pytest

from projections.packed import pack, unpack, gzip_member

ENVELOPE = (b'{"product":"40344","page":0,"count":1000,"results":', b"}")


@pytest.mark.parametrize("size", [0, 1, 1500, 65535, 65536, 1_100_000, 2_500_000])
def test_gzip_member_round_trips(size):
    body = bytes((i * 7919 + i // 13) % 251 for i in range(size))
    packed = pack(body)
    assert (packed.size, packed.crc, unpack(packed)) == (size, zlib.crc32(body), body)
    for prefix, suffix in ((b"", b""), ENVELOPE):
        member = gzip_member(prefix, packed, suffix)
        assert gzip.decompress(member) == prefix + body + suffix
        strict = zlib.decompressobj(31)  # checks the CRC and length in the trailer
        assert strict.decompress(member) == prefix + body + suffix and strict.eof and not strict.unused_data


def test_json_bodies_shrink():
    body = b"[" + b",".join(b'{"review_id":%d,"rating":5,"summary":"Fits well"}' % i for i in range(200)) + b"]"
    assert len(pack(body).deflated) * 4 < len(body)

"""Read models in Redis: where they live, how a write is versioned, how readers hear of changes.

Layout: one hash per product (`atelier:rm:p:<id>`, one field per kind) and one per question
(`atelier:rm:q:<id>`), so a reader that misses its local cache fetches every model of the product
page in one round trip. A field holds `b"<version> <items>\\n" + body`, or, when a reader or
the pre-fill put a body of `PACK_MIN_BYTES` or more there, `b"<version> <items> <size> <crc>\\n"
+ deflated body` (`projections.packed`): a quarter of the memory and of the bytes a reader pulls,
and gzip responses are assembled from it without compressing. The worker publishes plain bodies
(see `publish`).

Every hash carries a TTL: Redis runs with `volatile-lru`, which evicts only keys that have one,
and these are caches — PostgreSQL holds the truth.

Writes go through one Lua script that compares versions: a field is replaced only by a strictly
newer version (consistency rule 1: a reader's fill that raced a worker's refresh can never put an
older body back). After storing, `publish` tells every reader which (kind, key, version) changed
so they drop older local copies.

The functions take any client with `async execute_command(*args)` — redis.asyncio's client (the
worker) or the reader's lean pipelined client.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

from projections.kinds import PRODUCT_KINDS, TABLES, Kind
from projections.packed import PACK_MIN_BYTES, Packed, pack, unpack
from projections.store import Row

TTL_SECONDS = 24 * 3600
CHANNEL = b"atelier:rm:invalidate"
# An invalidation that means "forget everything" (after a bulk rebuild replaced all models).
EVERYTHING = b"*"

_PRODUCT_HASH = b"atelier:rm:p:%d"
_QUESTION_HASH = b"atelier:rm:q:%d"
_PATTERN = b"atelier:rm:[pq]:*"

# KEYS[i]: hash; ARGV[1]: ttl; ARGV[3i-1], ARGV[3i], ARGV[3i+1]: field, version, value of KEYS[i].
_COMPARE_AND_SET = b"""
local written = 0
for i = 1, #KEYS do
  local field = ARGV[3 * i - 1]
  local version = tonumber(ARGV[3 * i])
  local current = redis.call('HGET', KEYS[i], field)
  if (not current) or tonumber(string.match(current, '^%d+')) < version then
    redis.call('HSET', KEYS[i], field, ARGV[3 * i + 1])
    written = written + 1
  end
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return written
"""


def hash_key(kind: Kind, key: int) -> bytes:
    return (_QUESTION_HASH if kind == Kind.ANSWERS else _PRODUCT_HASH) % key


def field(kind: Kind) -> bytes:
    return b"%d" % kind


_KIND_OF_FIELD = {field(kind): kind for kind in Kind}  # a dict lookup: calling the enum costs a reader ~1 µs


class Cached(NamedTuple):
    """A model as Redis holds it: small bodies plain, the others deflated."""

    kind: Kind
    key: int
    version: int
    items: int
    plain: bytes | None
    packed: Packed | None

    @property
    def size(self) -> int:
        return self.packed.size if self.packed is not None else len(self.plain)

    @property
    def body(self) -> bytes:
        return self.plain if self.packed is None else unpack(self.packed)


def hold(row: Row, deflate: bool = True) -> Cached:
    """The cached form of a stored row (deflating the body when asked and large enough to be worth it)."""
    if not deflate or len(row.body) < PACK_MIN_BYTES:
        return Cached(row.kind, row.key, row.version, row.items, row.body, None)
    return Cached(row.kind, row.key, row.version, row.items, None, pack(row.body))


def encode(model: Cached) -> bytes:
    if model.packed is None:
        return b"%d %d\n" % (model.version, model.items) + model.plain
    packed = model.packed
    return b"%d %d %d %d\n" % (model.version, model.items, packed.size, packed.crc) + packed.deflated


def decode(kind: Kind, key: int, value: bytes) -> Cached:
    head, _, body = value.partition(b"\n")
    fields = head.split(b" ")
    if len(fields) == 2:
        return Cached(kind, key, int(fields[0]), int(fields[1]), body, None)
    version, items, size, crc = map(int, fields)
    return Cached(kind, key, version, items, None, Packed(body, size, crc))


def decode_hash(key: int, flat: list[bytes]) -> dict[Kind, Cached]:
    """An HGETALL reply (field, value, field, value, …) as cached models by kind."""
    models = {}
    for i in range(0, len(flat), 2):
        kind = _KIND_OF_FIELD[flat[i]]
        models[kind] = decode(kind, key, flat[i + 1])
    return models


async def store(redis, models: Iterable[Cached], ttl: int = TTL_SECONDS) -> int:
    """Write models whose version is newer than what Redis holds; return how many were written."""
    keys: list[bytes] = []
    args: list[bytes | int] = [ttl]
    for model in models:
        keys.append(hash_key(model.kind, model.key))
        args += [field(model.kind), model.version, encode(model)]
    if not keys:
        return 0
    return int(await redis.execute_command("EVAL", _COMPARE_AND_SET, len(keys), *keys, *args))


def invalidation(rows: Iterable[Row]) -> bytes:
    return b",".join(b"%d:%d:%d" % (row.kind, row.key, row.version) for row in rows)


def parse_invalidation(message: bytes) -> list[tuple[Kind, int, int]] | None:
    """(kind, key, version) triples; None means forget everything."""
    if message == EVERYTHING:
        return None
    out = []
    for part in message.split(b","):
        kind, key, version = part.split(b":")
        out.append((Kind(int(kind)), int(key), int(version)))
    return out


async def publish(redis, rows: list[Row], ttl: int = TTL_SECONDS) -> None:
    """After the worker's commit: store newer versions in Redis, then tell readers to drop old copies.

    Bodies go in plain: the worker's CPU bounds how many writes a second are applied, and deflating
    every refreshed model raised it from 153 to 240-290 µs per applied write. A reader compresses
    such a body on its first gzip answer, once per version.
    """
    if not rows:
        return
    await store(redis, [hold(row, deflate=False) for row in rows], ttl)
    await redis.execute_command("PUBLISH", CHANNEL, invalidation(rows))


async def forget_all(redis) -> int:
    """Drop every cached model (after a bulk rebuild replaced them all) and tell readers to do the same."""
    removed = 0
    cursor = b"0"
    while True:
        cursor, keys = await redis.execute_command("SCAN", cursor, "MATCH", _PATTERN, "COUNT", 1000)
        if keys:
            removed += int(await redis.execute_command("UNLINK", *keys))
        if int(cursor) == 0:
            break
    await redis.execute_command("PUBLISH", CHANNEL, EVERYTHING)
    return removed


def _bundles_sql() -> str:
    kinds = PRODUCT_KINDS
    columns = ", ".join(f"t{int(k)}.version, t{int(k)}.items, t{int(k)}.body" for k in kinds)
    first = f"{TABLES[kinds[0]]} t{int(kinds[0])}"
    joins = " ".join(f"JOIN {TABLES[k]} t{int(k)} USING (key)" for k in kinds[1:])
    return f"SELECT key, {columns} FROM {first} {joins} ORDER BY key"


async def warm(conn, redis, budget_bytes: int | None = None, batch: int = 100, ttl: int = TTL_SECONDS) -> dict:
    """Copy stored product models into Redis, product by product (compare-and-set, so never over a
    newer copy), until `budget_bytes` of cached values are sent; return what was sent.

    After a bulk load Redis is empty and every first request of a product pays a PostgreSQL read;
    an operator (or a benchmark) can pre-fill it instead. Rows stream through a cursor, so memory
    stays flat whatever the data set size; a budget below Redis's maxmemory keeps the fill from
    evicting what it just wrote.
    """
    products = sent_models = sent_bytes = 0
    models: list[Cached] = []
    async with conn.transaction():
        async for record in conn.cursor(_bundles_sql(), prefetch=batch * 4):
            key = record[0]
            for i, kind in enumerate(PRODUCT_KINDS):
                version, items, body = record[1 + 3 * i], record[2 + 3 * i], record[3 + 3 * i]
                model = hold(Row(kind, key, version, body, items))
                models.append(model)
                sent_bytes += model.size if model.packed is None else len(model.packed.deflated)
            products += 1
            if products % batch == 0:
                await store(redis, models, ttl)
                sent_models += len(models)
                models = []
            if budget_bytes is not None and sent_bytes >= budget_bytes:
                break
    if models:
        await store(redis, models, ttl)
        sent_models += len(models)
    return {"products": products, "models": sent_models, "bytes": sent_bytes}

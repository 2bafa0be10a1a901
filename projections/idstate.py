"""Which ids exist, kept in Redis so the writer can answer 404 without asking PostgreSQL.

The writer must keep accepting writes while PostgreSQL is down, yet reject a vote on a review that
does not exist. So the loader publishes, and the worker extends, two compact structures:

- one bitmap per kind (`atelier:ids:<kind>`, bit N set when id N exists). Ids are nearly dense,
  so 6M reviews take 720 KB and a lookup is one GETBIT;
- each product's characteristic ids as a comma-joined string, in hashes of 128 products each
  (`atelier:chars:<product_id // 128>`, field = product id), which Redis stores as compact
  listpacks: a few tens of bytes per product instead of a key each.

None of these keys has a TTL: the Redis eviction policy (volatile-lru) only evicts keys that do,
and losing id state would make the writer refuse valid writes.
"""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

KINDS = {
    "products": "products",
    "skus": "skus",
    "reviews": "reviews",
    "questions": "questions",
    "answers": "answers",
}
CHARS_BUCKET = 128


def bitmap_key(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown id kind {kind!r}")
    return f"atelier:ids:{kind}"


def chars_key(product_id: int) -> str:
    return f"atelier:chars:{product_id // CHARS_BUCKET}"


def parse_chars(raw: bytes | str | None) -> set[int]:
    if not raw:
        return set()
    if isinstance(raw, bytes):
        raw = raw.decode()
    return {int(part) for part in raw.split(",")}


def mark_created(pipe, kind: str, ids) -> None:
    """Queue SETBITs for rows the worker just committed (on a pipeline the caller executes)."""
    key = bitmap_key(kind)
    for row_id in ids:
        pipe.setbit(key, row_id, 1)


async def exists(redis: aioredis.Redis, kind: str, row_id: int) -> bool:
    return bool(await redis.getbit(bitmap_key(kind), row_id))


async def product_characteristics(redis: aioredis.Redis, product_id: int) -> set[int]:
    return parse_chars(await redis.hget(chars_key(product_id), str(product_id)))


def _bitmap(pairs) -> bytes:
    """Bitmap bytes from (byte index, byte value) pairs, Redis bit order (bit 0 = MSB of byte 0)."""
    size = max((index for index, _ in pairs), default=-1) + 1
    out = bytearray(size)
    for index, value in pairs:
        out[index] = value
    return bytes(out)


async def _publish_bitmap(conn: asyncpg.Connection, redis: aioredis.Redis, kind: str) -> int:
    table = KINDS[kind]
    # PostgreSQL folds ids into bytes, so Python touches one row per 8 ids, not one per id.
    rows = await conn.fetch(
        f"SELECT id >> 3 AS i, bit_or(128 >> (id & 7)) AS b, max(id) AS top FROM {table} GROUP BY 1"
    )
    top = max((r["top"] for r in rows), default=0)
    key = bitmap_key(kind)
    staging = key + ":staging"
    await redis.set(staging, _bitmap([(r["i"], r["b"]) for r in rows]))
    await redis.rename(staging, key)
    # Rows a worker committed while we read keep their bit (they are above our snapshot's top id).
    later = await conn.fetch(f"SELECT id FROM {table} WHERE id > $1", top)
    if later:
        async with redis.pipeline(transaction=False) as pipe:
            mark_created(pipe, kind, [r["id"] for r in later])
            await pipe.execute()
    return await redis.bitcount(key)


async def _publish_characteristics(conn: asyncpg.Connection, redis: aioredis.Redis) -> int:
    buckets: dict[int, dict[str, str]] = {}
    async with conn.transaction():
        cursor = conn.cursor(
            "SELECT product_id, string_agg(id::text, ',' ORDER BY id) AS ids "
            "FROM characteristics GROUP BY product_id",
            prefetch=20_000,
        )
        count = 0
        async for row in cursor:
            buckets.setdefault(row["product_id"] // CHARS_BUCKET, {})[str(row["product_id"])] = row["ids"]
            count += 1
    items = list(buckets.items())
    for start in range(0, len(items), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for bucket, mapping in items[start:start + 500]:
                pipe.hset(f"atelier:chars:{bucket}", mapping=mapping)
            await pipe.execute()
    return count


async def publish_all(conn: asyncpg.Connection, redis_url: str) -> dict[str, int]:
    """Publish the id state of everything in PostgreSQL (the loader calls this after a load).

    Returns how many ids of each kind (and products with characteristics) were published.
    """
    redis = aioredis.from_url(redis_url)
    try:
        counts = {kind: await _publish_bitmap(conn, redis, kind) for kind in KINDS}
        counts["products_with_characteristics"] = await _publish_characteristics(conn, redis)
        return counts
    finally:
        await redis.aclose()

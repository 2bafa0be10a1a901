"""Where a read model comes from: local cache → Redis → PostgreSQL row → fresh build.

The storefront's product page asks for six models of one product at once, so a miss fetches
the whole group in one round trip (one Redis hash; one PostgreSQL query over the six tables) and
fills the local cache for all of them; concurrent misses for the same group share one fetch.
Rows read from PostgreSQL are deflated once (`cache.hold`) and written back to Redis through the
versioned compare-and-set, so the other readers get them ready to serve.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import hiredis

from projections import cache
from projections.kinds import PRODUCT_KINDS, Kind
from projections.store import Row, build_and_store, stored, stored_product_bundle
from reader.local_cache import Entry, LocalCache
from infra.lean_redis import LeanRedis

log = logging.getLogger(__name__)

# PostgreSQL unreachable, restarting or too slow: the request gets a 503, never a hang.
PG_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)
REDIS_FAILURES = (ConnectionError, OSError, hiredis.ReplyError, hiredis.ProtocolError, ValueError)


class Unavailable(Exception):
    """A dependency the answer needs is down."""


class Stats:
    """Where answers came from, per layer (the ops metrics read these)."""

    # `coalesced`: requests that joined a fetch another request of the same product had started.
    __slots__ = ("local_hits", "coalesced", "redis_hits", "postgres_hits", "builds", "not_found", "redis_errors",
                 "postgres_errors", "not_modified", "invalidations", "resubscribes")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def group_of(kind: Kind) -> tuple[Kind, ...]:
    return PRODUCT_KINDS if kind in PRODUCT_KINDS else (kind,)


class ModelSource:
    def __init__(self, local: LocalCache, redis: LeanRedis, pool: asyncpg.Pool, stats: Stats,
                 acquire_timeout: float = 2.0):
        self.local = local
        self.redis = redis
        self.pool = pool
        self.stats = stats
        self.acquire_timeout = acquire_timeout
        self._inflight: dict[bytes, asyncio.Future] = {}

    async def entry(self, kind: Kind, key: int) -> Entry | None:
        """The model's entry, or None when the key does not exist (404)."""
        entry = self.local.get(kind, key)
        if entry is not None:
            self.stats.local_hits += 1
            return entry
        group_key = cache.hash_key(kind, key)
        pending = self._inflight.get(group_key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_group(kind, key))
            self._inflight[group_key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(group_key, None))
        else:
            self.stats.coalesced += 1
        entries = await asyncio.shield(pending)
        entry = entries.get(kind)
        if entry is None:
            entry = await self._build(kind, key)
        return entry

    async def _fetch_group(self, kind: Kind, key: int) -> dict[Kind, Entry]:
        entries: dict[Kind, Entry] = {}
        try:
            flat = await self.redis.execute_command(b"HGETALL", cache.hash_key(kind, key))
            for model in cache.decode_hash(key, flat).values():
                entries[model.kind] = self.local.put(model)
        except REDIS_FAILURES as exc:
            self.stats.redis_errors += 1
            log.debug("redis read failed: %s", exc)
        if kind in entries:
            self.stats.redis_hits += 1
            return entries
        rows = await self._stored_group(kind, key)
        if kind in rows:
            self.stats.postgres_hits += 1
        fill = [cache.hold(row) for k, row in rows.items() if k not in entries]
        for model in fill:
            entries[model.kind] = self.local.put(model)
        await self._fill_redis(fill)
        return entries

    async def _stored_group(self, kind: Kind, key: int) -> dict[Kind, Row]:
        try:
            async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
                if kind in PRODUCT_KINDS:
                    return await stored_product_bundle(conn, key)
                row = await stored(conn, kind, key)
                return {kind: row} if row is not None else {}
        except PG_UNAVAILABLE as exc:
            self.stats.postgres_errors += 1
            raise Unavailable(str(exc)) from exc

    async def _build(self, kind: Kind, key: int) -> Entry | None:
        """Not in the group fetched: the stored row, or one built from the source tables and stored
        (None: no such key)."""
        try:
            async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
                rows = await build_and_store(conn, kind, [key])
        except PG_UNAVAILABLE as exc:
            self.stats.postgres_errors += 1
            raise Unavailable(str(exc)) from exc
        if not rows:
            self.stats.not_found += 1
            return None
        self.stats.builds += 1
        model = cache.hold(rows[0])
        await self._fill_redis([model])
        return self.local.put(model)

    async def _fill_redis(self, models: list[cache.Cached]) -> None:
        if not models:
            return
        try:
            await cache.store(self.redis, models)
        except REDIS_FAILURES as exc:
            self.stats.redis_errors += 1
            log.debug("redis fill failed: %s", exc)

    async def fetch(self, sql: str, *args):
        """A plain query for what has no read model (the product list, carts)."""
        try:
            async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
                return await conn.fetch(sql, *args)
        except PG_UNAVAILABLE as exc:
            self.stats.postgres_errors += 1
            raise Unavailable(str(exc)) from exc

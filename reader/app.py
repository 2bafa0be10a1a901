"""The reader: every GET of the contract, answered from read-model bytes.

`create_app(settings)` wires the layers (local cache → Redis → PostgreSQL) and two background
duties that live as long as the app: the connections (asyncpg pool, lean Redis client) and the
invalidation listener, which keeps the local cache honest.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from infra.observability import METRICS, CounterBridge, setup_observability
from infra.settings import Settings
from projections import cache
from reader.local_cache import LocalCache
from infra.lean_redis import LeanRedis
from reader.routes import ROUTES, SOURCE, STATS
from reader.source import PG_UNAVAILABLE, ModelSource, Stats

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
LOCAL = web.AppKey("local", LocalCache)
RESUBSCRIBE_DELAY = 0.5
FREEZE_SECONDS = 0.1
FULL_COLLECTION_SECONDS = 300
PREOPENED_CONNECTIONS = 8
POOL_CLOSE_SECONDS = 5


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Readers keep no session state, so the pool's per-release RESET (a third of throughput) is skipped."""


async def _connections(app: web.Application):
    settings = app[SETTINGS]
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=0,  # start (and report not-ready) even while PostgreSQL is down
        max_size=settings.reader_pool_size,
        reset=_no_reset,
        command_timeout=10,
    )
    redis = LeanRedis(settings.cache_url)
    app[SOURCE] = ModelSource(app[LOCAL], redis, pool, app[STATS])
    opening = asyncio.create_task(_open_some(pool, min(PREOPENED_CONNECTIONS, settings.reader_pool_size)))
    yield
    opening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await opening
    await redis.close()
    try:
        # A graceful close waits for every acquired connection; one that a cancelled task never
        # gave back must not keep the process from exiting.
        await asyncio.wait_for(pool.close(), POOL_CLOSE_SECONDS)
    except asyncio.TimeoutError:
        log.warning("PostgreSQL pool did not close within %ss; terminating it", POOL_CLOSE_SECONDS)
        pool.terminate()


async def _open_some(pool: asyncpg.Pool, count: int) -> None:
    """Open a few connections in the background, so the first misses under load do not each pay a
    connection set-up (several ms); if PostgreSQL is down, requests find out on their own."""
    held = []
    try:
        for _ in range(count):
            held.append(await pool.acquire())
    except PG_UNAVAILABLE as exc:
        log.warning("could not pre-open PostgreSQL connections: %s", exc)
    finally:
        # Shielded: a cancellation arriving mid-release must not strand the remaining connections.
        await asyncio.shield(asyncio.gather(*(pool.release(conn) for conn in held)))


def apply_invalidation(local: LocalCache, stats: Stats, data: bytes) -> None:
    changed = cache.parse_invalidation(data)
    stats.invalidations += 1
    if changed is None:
        local.clear()
        return
    for kind, key, version in changed:
        local.invalidate(kind, key, version)


async def listen_for_invalidations(app: web.Application) -> None:
    """Subscribe to the invalidation channel for ever; the local cache is trusted only while subscribed.

    Messages published while we were not subscribed are lost, so every (re)subscription starts
    from an empty local cache.
    """
    local, stats = app[LOCAL], app[STATS]
    client = aioredis.from_url(app[SETTINGS].cache_url, health_check_interval=5)
    try:
        while True:
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(cache.CHANNEL)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        local.clear()
                        local.trusted = True
                        stats.resubscribes += 1
                    elif message["type"] == "message":
                        try:
                            apply_invalidation(local, stats, message["data"])
                        except ValueError:  # not ours to understand: forget everything, stay safe
                            log.warning("unreadable invalidation %r; local cache cleared", message["data"][:100])
                            local.clear()
            except (ConnectionError, OSError, aioredis.RedisError) as exc:
                log.warning("invalidation channel lost (%s); local cache off until resubscribed", exc)
            finally:
                local.trusted = False
                local.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(RESUBSCRIBE_DELAY)  # back off before reconnecting to a failed Redis
    finally:
        await client.aclose()


async def _invalidations(app: web.Application):
    task = asyncio.create_task(listen_for_invalidations(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# Stats counter → (layer, result) of atelier_cache_lookups_total.
CACHE_SERIES = {
    "local_hits": ("local", "hit"), "coalesced": ("local", "coalesced"),
    "redis_hits": ("redis", "hit"), "postgres_hits": ("postgres", "hit"),
    "builds": ("source_tables", "build"), "not_found": ("postgres", "not_found"),
    "redis_errors": ("redis", "error"), "postgres_errors": ("postgres", "error"),
}


async def _garbage_collection_off_the_request_path(app: web.Application):
    """Keep the cycle collector from pausing requests: freeze what exists every FREEZE_SECONDS, and
    collect everything once every FULL_COLLECTION_SECONDS.

    CPython starts a young collection when tracked allocations exceed deallocations by a threshold.
    A full local cache allocates a new entry for every one it evicts, so that count stands still
    while the young generations fill with entries: measured under the Zipf mix, a young collection
    then walked 100k-340k objects and stalled the reader for 50-300 ms, several times a minute
    (the p99). `gc.freeze()` moves every tracked object to the permanent generation in O(1), so
    young collections only ever see the last tenth of a second. Entries form no reference cycles
    (see `local_cache.Rendered`), so reference counting frees evicted ones, frozen or not; a cycle
    that was frozen while alive and dies later waits for the full collection, which unfreezes first.
    """
    loop = asyncio.get_running_loop()

    async def run():
        last_full = loop.time()
        while True:
            await asyncio.sleep(FREEZE_SECONDS)
            if loop.time() - last_full >= FULL_COLLECTION_SECONDS:
                gc.unfreeze()
                gc.collect()
                last_full = loop.time()
            gc.freeze()

    task = asyncio.create_task(run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    gc.unfreeze()


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[STATS] = Stats()
    setup_observability(app, settings, "reader")
    app.cleanup_ctx.append(CounterBridge(app[METRICS], app[STATS].as_dict, CACHE_SERIES).run)
    app[LOCAL] = LocalCache(settings.local_cache_entries)
    app.cleanup_ctx.append(_connections)
    app.cleanup_ctx.append(_invalidations)
    app.cleanup_ctx.append(_garbage_collection_off_the_request_path)
    app.router.add_routes(ROUTES)
    return app

"""Real servers for the whole test session.

The run starts its own embedded PostgreSQL, durable Redis and cache Redis on free loopback ports
under a temporary folder (so several runs, and a running `atelier up`, never collide), applies the
migrations, and stops them at the end. Set ATELIER_TEST_DATABASE_URL / ATELIER_TEST_REDIS_URL /
ATELIER_TEST_CACHE_URL to test against servers you already run instead.
"""

from __future__ import annotations

import os

import asyncpg
import pytest
import redis.asyncio as aioredis

from infra.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from infra.settings import Settings
from schema.migrate import migrate_url

SOURCE_TABLES = (
    "answers_photos", "answers", "questions", "characteristic_reviews", "characteristics",
    "reviews_photos", "reviews", "cart", "related", "skus", "photos", "styles", "features", "products",
)


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    """(database_url, redis_url, cache_url) of real servers that live for the whole session."""
    root = tmp_path_factory.mktemp("servers")
    started = []
    database_url = os.environ.get("ATELIER_TEST_DATABASE_URL")
    redis_url = os.environ.get("ATELIER_TEST_REDIS_URL")
    cache_url = os.environ.get("ATELIER_TEST_CACHE_URL")
    if not database_url:
        postgres = EmbeddedPostgres(root / "postgres", free_port(), profile="test")
        postgres.start()
        started.append(postgres)
        database_url = postgres.url
    if not redis_url:
        redis_server = EmbeddedRedis(root / "redis", free_port(), maxmemory_mb=512)
        redis_server.start()
        started.append(redis_server)
        redis_url = redis_server.url
    if not cache_url:
        cache_server = EmbeddedRedis(root / "redis-cache", free_port(), maxmemory_mb=512, durable=False)
        cache_server.start()
        started.append(cache_server)
        cache_url = cache_server.url
    import asyncio

    asyncio.run(migrate_url(database_url))
    yield database_url, redis_url, cache_url
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="session")
def settings(servers, tmp_path_factory) -> Settings:
    database_url, redis_url, cache_url = servers
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        cache_url=cache_url,
        data_dir=tmp_path_factory.mktemp("data"),
        port=free_port(),
        log_json=False,
    )


@pytest.fixture
async def db(settings):
    conn = await asyncpg.connect(settings.database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def redis(settings):
    """The durable Redis: queue, receipts, id state."""
    client = aioredis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def cache_redis(settings):
    """The cache Redis: read models and their invalidations."""
    client = aioredis.from_url(settings.cache_url)
    yield client
    await client.aclose()


async def truncate_all(conn: asyncpg.Connection) -> None:
    """Empty every table but the migration log, so a test starts from a known state."""
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
    )
    if tables:
        names = ", ".join(f'"{t["tablename"]}"' for t in tables)
        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")

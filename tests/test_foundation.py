"""Settings, embedded servers and migrations, against real servers."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
import pytest

import redis

from infra.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from infra.services import ensure_services, resolve_urls
from infra.settings import Settings
from schema.migrate import discover, migrate


def test_settings_read_from_environment(tmp_path):
    settings = Settings.from_env(
        {
            "ATELIER_DATABASE_URL": "postgresql://u@h/db",
            "ATELIER_REDIS_URL": "redis://h:1/0",
            "ATELIER_CACHE_URL": "redis://c:2/0",
            "ATELIER_DATA_DIR": str(tmp_path),
            "ATELIER_PORT": "8080",
            "ATELIER_READERS": "3",
        }
    )
    assert settings.database_url == "postgresql://u@h/db"
    assert (settings.redis_url, settings.cache_url) == ("redis://h:1/0", "redis://c:2/0")
    assert settings.data_dir == tmp_path
    assert (settings.port, settings.readers) == (8080, 3)
    assert Settings.from_env(settings.to_env()) == settings


def test_settings_defaults_mean_embedded_servers():
    settings = Settings.from_env({})
    assert settings.database_url is None and settings.redis_url is None and settings.cache_url is None
    assert settings.port == 3000
    assert settings.data_dir.name == ".atelier"


def test_settings_reject_garbage():
    with pytest.raises(ValueError, match="ATELIER_PORT"):
        Settings.from_env({"ATELIER_PORT": "eighty"})


async def test_migrations_rerun_as_a_no_op(db):
    assert await migrate(db) == []
    versions = [r["version"] for r in await db.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m.version for m in discover()]


async def test_schema_protects_the_data(db):
    async with db.transaction():
        await db.execute(
            "INSERT INTO products (id, name, slogan, description, category, default_price) "
            "VALUES (2147482000, 'n', 's', 'd', 'c', 10)"
        )
        with pytest.raises(asyncpg.CheckViolationError):
            async with db.transaction():
                await db.execute(
                    "INSERT INTO reviews (id, product_id, rating, date, summary, body, recommend, "
                    "reviewer_name, reviewer_email) VALUES (2147483000, 2147482000, 6, now(), '', 'b', true, 'n', 'e')"
                )
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            async with db.transaction():
                await db.execute("INSERT INTO features (id, product_id, feature) VALUES (2147483000, 123456789, 'x')")
        await db.execute("DELETE FROM products WHERE id = 2147482000")


def test_embedded_servers_start_are_reused_and_stop(tmp_path):
    postgres = EmbeddedPostgres(tmp_path / "pg", free_port(), profile="test")
    redis_server = EmbeddedRedis(tmp_path / "redis", free_port(), maxmemory_mb=64)
    try:
        assert postgres.start() is True
        assert redis_server.start() is True
        # A second start (another command, another process) reuses the running servers.
        assert EmbeddedPostgres(tmp_path / "pg", free_port(), profile="test").start() is False
        assert EmbeddedRedis(tmp_path / "redis", free_port()).start() is False
        out = subprocess.run(
            [sys.executable, "-c", "import redis; print(redis.Redis.from_url(%r).config_get('append*'))"
             % redis_server.url],
            capture_output=True, text=True, check=True,
        ).stdout
        assert "'appendonly': 'yes'" in out and "'appendfsync': 'everysec'" in out
    finally:
        postgres.stop()
        redis_server.stop()
    assert postgres.running_pid() is None
    assert redis_server.running_pid() is None


def test_the_cache_is_its_own_unpersisted_server_unless_one_redis_is_configured(tmp_path):
    settings = Settings(database_url="postgresql://u@h/db", data_dir=tmp_path, embedded_redis_port=free_port(),
                        embedded_cache_port=free_port())
    services = ensure_services(settings)
    try:
        resolved = services.settings_for(settings)
        assert resolved.cache_url != resolved.redis_url
        assert resolve_urls(settings) == resolved  # what a child process finds under the data folder
        durable, cache = redis.Redis.from_url(resolved.redis_url), redis.Redis.from_url(resolved.cache_url)
        assert durable.config_get("appendonly")["appendonly"] == "yes"
        assert durable.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
        assert cache.config_get("appendonly")["appendonly"] == "no" and cache.config_get("save")["save"] == ""
        assert cache.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
        durable.close()
        cache.close()
    finally:
        services.stop_started()
    one = Settings(database_url="postgresql://u@h/db", redis_url="redis://h:1/0", data_dir=tmp_path)
    assert resolve_urls(one).cache_url == "redis://h:1/0"
    assert ensure_services(one).settings_for(one).cache_url == "redis://h:1/0"


def test_cli_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "infra.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("up", "down", "migrate", "generate", "load", "check-drift"):
        assert command in out.stdout

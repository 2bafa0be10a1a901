"""Where PostgreSQL and the two Redis roles are: the configured URLs, or embedded servers started on demand.

The durable Redis (queue, receipts, id state) and the cache Redis (read models, invalidations)
are two servers when both are embedded; with `redis_url` set and no `cache_url`, one configured
Redis plays both roles.
"""

from __future__ import annotations

import dataclasses

from infra.embedded import EmbeddedPostgres, EmbeddedRedis
from infra.settings import Settings


@dataclasses.dataclass
class Services:
    database_url: str
    redis_url: str
    cache_url: str = ""
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    cache: EmbeddedRedis | None = None
    started: list = dataclasses.field(default_factory=list)

    def settings_for(self, settings: Settings) -> Settings:
        """`settings` with every URL resolved to these servers."""
        return settings.replace(database_url=self.database_url, redis_url=self.redis_url, cache_url=self.cache_url)

    def stop_started(self) -> None:
        """Stop only what this process started; servers it merely reused keep running."""
        for server in reversed(self.started):
            server.stop()
        self.started.clear()


def embedded_postgres(settings: Settings, profile: str = "service") -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.data_dir / "postgres", settings.embedded_pg_port, profile)


def embedded_redis(settings: Settings) -> EmbeddedRedis:
    return EmbeddedRedis(settings.data_dir / "redis", settings.embedded_redis_port)


def embedded_cache(settings: Settings) -> EmbeddedRedis:
    return EmbeddedRedis(settings.data_dir / "redis-cache", settings.embedded_cache_port, durable=False)


def ensure_services(settings: Settings, profile: str = "service") -> Services:
    """Resolve every URL, starting the embedded server for each one that is not configured."""
    services = Services(database_url=settings.database_url or "", redis_url=settings.redis_url or "",
                        cache_url=settings.cache_url or settings.redis_url or "")
    if not settings.database_url:
        services.postgres = embedded_postgres(settings, profile)
        if services.postgres.start():
            services.started.append(services.postgres)
        services.database_url = services.postgres.url
    if not settings.redis_url:
        services.redis = embedded_redis(settings)
        if services.redis.start():
            services.started.append(services.redis)
        services.redis_url = services.redis.url
    if not services.cache_url:
        services.cache = embedded_cache(settings)
        if services.cache.start():
            services.started.append(services.cache)
        services.cache_url = services.cache.url
    return services


def stop_embedded(settings: Settings) -> list[str]:
    """`atelier down`: stop the embedded servers under the data folder, whoever started them."""
    stopped = []
    for name, server in (("redis", embedded_redis(settings)), ("redis-cache", embedded_cache(settings)),
                         ("postgres", embedded_postgres(settings))):
        if server.running_pid():
            server.stop()
            stopped.append(name)
    return stopped


def resolve_urls(settings: Settings) -> Settings:
    """Settings whose missing URLs name the embedded servers `atelier up` left running under the
    data folder (a child process finds them there; it never starts a server itself)."""
    if not settings.database_url:
        postgres = embedded_postgres(settings)
        postgres.running_pid()
        settings = settings.replace(database_url=postgres.url)
    if not settings.cache_url:
        if settings.redis_url:
            settings = settings.replace(cache_url=settings.redis_url)
        else:
            cache = embedded_cache(settings)
            cache.running_pid()
            settings = settings.replace(cache_url=cache.url)
    if not settings.redis_url:
        redis = embedded_redis(settings)
        redis.running_pid()
        settings = settings.replace(redis_url=redis.url)
    return settings

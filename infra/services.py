"""Where PostgreSQL and Redis are: the configured URLs, or embedded servers started on demand."""

from __future__ import annotations

import dataclasses

from infra.embedded import EmbeddedPostgres, EmbeddedRedis
from infra.settings import Settings


@dataclasses.dataclass
class Services:
    database_url: str
    redis_url: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    started: list = dataclasses.field(default_factory=list)

    def stop_started(self) -> None:
        """Stop only what this process started; servers it merely reused keep running."""
        for server in reversed(self.started):
            server.stop()
        self.started.clear()


def embedded_postgres(settings: Settings, profile: str = "service") -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.data_dir / "postgres", settings.embedded_pg_port, profile)


def embedded_redis(settings: Settings) -> EmbeddedRedis:
    return EmbeddedRedis(settings.data_dir / "redis", settings.embedded_redis_port)


def ensure_services(settings: Settings, profile: str = "service") -> Services:
    """Resolve both URLs, starting the embedded server for each one that is not configured."""
    services = Services(database_url=settings.database_url or "", redis_url=settings.redis_url or "")
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
    return services


def stop_embedded(settings: Settings) -> list[str]:
    """`atelier down`: stop the embedded servers under the data folder, whoever started them."""
    stopped = []
    for name, server in (("redis", embedded_redis(settings)), ("postgres", embedded_postgres(settings))):
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
    if not settings.redis_url:
        redis = embedded_redis(settings)
        redis.running_pid()
        settings = settings.replace(redis_url=redis.url)
    return settings

"""Configuration, read once from the environment into one immutable object.

Every process (reader, writer, worker, the CLI) builds a `Settings` at start-up and passes it
down explicitly; nothing reads `os.environ` anywhere else, so a test can run several stacks
side by side just by building several `Settings`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a process needs to know about where it runs.

    `database_url` / `redis_url` of None mean "start the embedded server under `data_dir`".
    `redis_url` is the durable Redis (queue, receipts, id state: append-only file on); `cache_url`
    the Redis that caches read models and carries their invalidations, which needs no persistence.
    A `cache_url` of None means the durable Redis when `redis_url` is set (one Redis for both),
    else an embedded cache server of its own.
    """

    database_url: str | None = None
    redis_url: str | None = None
    cache_url: str | None = None
    data_dir: Path = Path(".atelier")
    host: str = "127.0.0.1"
    port: int = 3000
    readers: int = 2
    workers: int = 1
    # Embedded servers listen on these loopback ports (0: pick a free one).
    embedded_pg_port: int = 54329
    embedded_redis_port: int = 63799
    embedded_cache_port: int = 63800
    # Bounded in-process cache of ready response bytes, per reader process.
    local_cache_entries: int = 600_000
    # PostgreSQL connections per reader process: at least its concurrency on misses, or a long tail.
    reader_pool_size: int = 40
    # Size the nginx micro-cache in front of readers; 0 turns it off.
    micro_cache_seconds: int = 0
    log_json: bool = True
    # Worker: writes applied per transaction, how long a batch waits to fill, and how long a job
    # waits for its batch before asking arq for a retry (also bounds a killed worker's hold on jobs).
    worker_batch_size: int = 250
    worker_batch_wait_ms: int = 5
    worker_job_timeout: int = 60
    # One JSON line per request (infra/observability.py); off only to measure what logging costs.
    access_log: bool = True
    # prometheus_client's own switch for multiprocess metrics (it reads the same variable at import):
    # `atelier up` points every process at one folder so any reader's /metrics shows the whole stack.
    prometheus_multiproc_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            database_url=env.get("ATELIER_DATABASE_URL") or None,
            redis_url=env.get("ATELIER_REDIS_URL") or None,
            cache_url=env.get("ATELIER_CACHE_URL") or None,
            data_dir=Path(env.get("ATELIER_DATA_DIR") or ".atelier").absolute(),
            host=env.get("ATELIER_HOST") or "127.0.0.1",
            port=_int(env, "ATELIER_PORT", 3000),
            readers=_int(env, "ATELIER_READERS", 2),
            workers=_int(env, "ATELIER_WORKERS", 1),
            embedded_pg_port=_int(env, "ATELIER_EMBEDDED_PG_PORT", 54329),
            embedded_redis_port=_int(env, "ATELIER_EMBEDDED_REDIS_PORT", 63799),
            embedded_cache_port=_int(env, "ATELIER_EMBEDDED_CACHE_PORT", 63800),
            local_cache_entries=_int(env, "ATELIER_LOCAL_CACHE_ENTRIES", 600_000),
            reader_pool_size=_int(env, "ATELIER_READER_POOL_SIZE", 40),
            micro_cache_seconds=_int(env, "ATELIER_MICRO_CACHE_SECONDS", 0),
            log_json=_flag(env, "ATELIER_LOG_JSON", True),
            worker_batch_size=_int(env, "ATELIER_WORKER_BATCH_SIZE", 250),
            worker_batch_wait_ms=_int(env, "ATELIER_WORKER_BATCH_WAIT_MS", 5),
            worker_job_timeout=_int(env, "ATELIER_WORKER_JOB_TIMEOUT", 60),
            access_log=_flag(env, "ATELIER_ACCESS_LOG", True),
            prometheus_multiproc_dir=Path(env["PROMETHEUS_MULTIPROC_DIR"]) if env.get("PROMETHEUS_MULTIPROC_DIR") else None,
        )

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The environment that makes a child process build these same settings."""
        env = {
            "ATELIER_DATA_DIR": str(self.data_dir),
            "ATELIER_HOST": self.host,
            "ATELIER_PORT": str(self.port),
            "ATELIER_READERS": str(self.readers),
            "ATELIER_WORKERS": str(self.workers),
            "ATELIER_EMBEDDED_PG_PORT": str(self.embedded_pg_port),
            "ATELIER_EMBEDDED_REDIS_PORT": str(self.embedded_redis_port),
            "ATELIER_EMBEDDED_CACHE_PORT": str(self.embedded_cache_port),
            "ATELIER_LOCAL_CACHE_ENTRIES": str(self.local_cache_entries),
            "ATELIER_READER_POOL_SIZE": str(self.reader_pool_size),
            "ATELIER_MICRO_CACHE_SECONDS": str(self.micro_cache_seconds),
            "ATELIER_LOG_JSON": "1" if self.log_json else "0",
            "ATELIER_WORKER_BATCH_SIZE": str(self.worker_batch_size),
            "ATELIER_WORKER_BATCH_WAIT_MS": str(self.worker_batch_wait_ms),
            "ATELIER_WORKER_JOB_TIMEOUT": str(self.worker_job_timeout),
            "ATELIER_ACCESS_LOG": "1" if self.access_log else "0",
        }
        if self.prometheus_multiproc_dir:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.prometheus_multiproc_dir)
        if self.database_url:
            env["ATELIER_DATABASE_URL"] = self.database_url
        if self.redis_url:
            env["ATELIER_REDIS_URL"] = self.redis_url
        if self.cache_url:
            env["ATELIER_CACHE_URL"] = self.cache_url
        return env

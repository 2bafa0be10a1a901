"""`python -m worker [--burst]`: run the arq worker that applies queued writes.

`--burst` drains the queue (including jobs deferred for a retry) and exits: tests and the write
benchmark use it. Without it the worker runs until SIGTERM, on which it finishes its batches.
"""

from __future__ import annotations

import argparse
import logging

import uvloop

from infra.services import embedded_postgres, embedded_redis
from infra.settings import Settings
from worker.jobs import create_worker


def resolved(settings: Settings) -> Settings:
    """Fill in the URLs of the embedded servers `atelier up` started, when none are configured."""
    if not settings.database_url:
        postgres = embedded_postgres(settings)
        postgres.running_pid()
        settings = settings.replace(database_url=postgres.url)
    if not settings.redis_url:
        redis = embedded_redis(settings)
        redis.running_pid()
        settings = settings.replace(redis_url=redis.url)
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    # arq logs two lines per job; at thousands of jobs a second that is most of the CPU.
    logging.getLogger("arq.worker").setLevel(logging.WARNING)
    uvloop.install()
    worker = create_worker(resolved(Settings.from_env()), burst=args.burst)
    worker.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

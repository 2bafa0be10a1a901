"""Helpers for the write-path tests: a loaded sample, the writer app, and a real arq worker.

`prepare(db, redis)` empties both servers, inserts the reader's sample catalogue, resets the id
sequences (as the loader does after a load), publishes the id state and bulk-builds the read models.
`drain(settings)` runs a real arq worker in burst mode until the queue is empty.
"""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

import projections
from infra.settings import Settings
from projections import idstate
from tests.conftest import truncate_all
from tests.reader_sample import insert_sample
from worker.jobs import create_worker

SEQUENCED = ("products", "skus", "reviews", "reviews_photos", "characteristic_reviews", "questions", "answers",
             "answers_photos")

REVIEW = {
    "product_id": 1,
    "rating": 4,
    "summary": "Warm and well made",
    "body": "I wore it every day for a month and it still looks new. " * 2,
    "recommend": True,
    "name": "jo",
    "email": "jo@example.com",
    "photos": ["https://img.example.com/a.jpg"],
    "characteristics": {"1": 4, "3": 5},
}
QUESTION = {"body": "Does it shrink?", "name": "kim", "email": "kim@example.com", "product_id": 1}
ANSWER = {"body": "Not at all.", "name": "lee", "email": "lee@example.com", "photos": ["http://a.example/p.png"]}


async def reset_sequences(conn: asyncpg.Connection) -> None:
    for table in SEQUENCED:
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}"
        )


async def prepare(db: asyncpg.Connection, redis, settings: Settings) -> None:
    await truncate_all(db)
    await redis.flushdb()
    cache = aioredis.from_url(settings.cache_url)
    await cache.flushdb()
    await cache.aclose()
    await insert_sample(db)
    await reset_sequences(db)
    await projections.bulk.build_all(db, progress=False, dsn=settings.database_url)
    await idstate.publish_all(db, settings.redis_url)


async def drain(settings: Settings) -> int:
    """Run a real arq worker in burst mode until the queue is empty; return the jobs it completed."""
    worker = create_worker(settings, burst=True, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await worker.close()
    return worker.jobs_complete

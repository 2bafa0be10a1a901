"""Consistency rule 3 under failure: a worker killed with SIGKILL, PostgreSQL going away, Redis going away."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys

import asyncpg
import pytest
from redis.asyncio import from_url

from infra.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from projections import drift
from schema.migrate import migrate_url
from tests.write_stack import QUESTION, REVIEW, drain, prepare
from worker import protocol
from worker.jobs import create_worker
from writer.app import create_app


async def until(predicate, timeout: float = 60, what: str = "condition") -> None:
    """Poll an observable condition (rows committed, a counter) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def submit_mix(client, votes: int, reviews: int) -> list[str]:
    """`votes` helpful votes on review 4 and `reviews` new reviews, sent concurrently; their write ids."""
    responses = await asyncio.gather(
        *(client.put("/reviews/4/helpful") for _ in range(votes)),
        *(client.post("/reviews", json=REVIEW) for _ in range(reviews)),
    )
    assert {r.status for r in responses} <= {201, 204}
    return [r.headers["Location"].removeprefix("/writes/") for r in responses]


async def worker_that_has_applied(db, env: dict, count: int) -> asyncio.subprocess.Process:
    """`python -m worker` as a child process, once it has committed `count` writes."""
    worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "worker", env=env,
                                                  stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

    async def applied() -> bool:
        return await db.fetchval("SELECT count(*) FROM applied_writes") >= count

    await until(applied, what=f"the worker to commit {count} writes")
    return worker


async def burst_worker_retrying(settings) -> tuple:
    """A burst worker (and the task running it) once it has met an outage: a job asked for a retry."""
    worker = create_worker(settings, burst=True, handle_signals=False)
    draining = asyncio.create_task(worker.async_run())

    async def retried() -> bool:
        assert not draining.done()
        return worker.jobs_retried > 0

    await until(retried, what="the worker to meet the outage")
    return worker, draining


async def all_applied(redis, write_ids) -> bool:
    async with redis.pipeline(transaction=False) as pipe:
        for write_id in write_ids:
            pipe.hget(protocol.receipt_key(write_id), "status")
        return set(await pipe.execute()) == {b"applied"}


async def test_worker_killed_mid_batch_applies_every_write_exactly_once(aiohttp_client, settings, db, redis,
                                                                        cache_redis):
    await prepare(db, redis, settings)
    client = await aiohttp_client(create_app(settings))
    helpful_before = await db.fetchval("SELECT helpfulness FROM reviews WHERE id = 4")
    reviews_before = await db.fetchval("SELECT count(*) FROM reviews")
    write_ids = await submit_mix(client, votes=1500, reviews=300)

    env = {**os.environ, **settings.replace(worker_batch_size=50, worker_job_timeout=1).to_env()}
    worker = await worker_that_has_applied(db, env, 200)
    worker.send_signal(signal.SIGKILL)
    await worker.wait()
    applied_at_kill = await db.fetchval("SELECT count(*) FROM applied_writes")
    assert applied_at_kill < len(write_ids), "the worker finished before it was killed; nothing was tested"

    restarted = await asyncio.create_subprocess_exec(sys.executable, "-m", "worker", "--burst", env=env,
                                                     stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, errors = await asyncio.wait_for(restarted.communicate(), 120)
    assert restarted.returncode == 0, errors.decode()[-2000:]

    assert await redis.zcard(protocol.QUEUE) == 0
    assert await all_applied(redis, write_ids)
    assert await db.fetchval("SELECT count(*) FROM applied_writes") == len(write_ids)
    assert await db.fetchval("SELECT helpfulness FROM reviews WHERE id = 4") == helpful_before + 1500
    assert await db.fetchval("SELECT count(*) FROM reviews") == reviews_before + 300
    assert (await drift.check(db, cache_redis)).mismatches == []


async def test_sigterm_lets_the_worker_finish_what_it_started(aiohttp_client, settings, db, redis):
    await prepare(db, redis, settings)
    client = await aiohttp_client(create_app(settings))
    write_ids = await submit_mix(client, votes=2000, reviews=0)
    env = {**os.environ, **settings.replace(worker_batch_size=50).to_env()}
    worker = await worker_that_has_applied(db, env, 100)
    worker.send_signal(signal.SIGTERM)
    _, errors = await asyncio.wait_for(worker.communicate(), 60)
    assert worker.returncode == 0, errors.decode()[-2000:]
    # Everything it had started is applied and acknowledged: no job is left marked in progress, and
    # what is still queued is exactly what was never applied.
    assert await redis.keys("arq:in-progress:*") == []
    applied = await db.fetchval("SELECT count(*) FROM applied_writes")
    assert applied < len(write_ids), "the worker finished before the signal; nothing was tested"
    assert await redis.zcard(protocol.QUEUE) == len(write_ids) - applied
    await drain(settings)
    assert await db.fetchval("SELECT helpfulness FROM reviews WHERE id = 4") == 7 + 2000


@pytest.fixture
async def own_postgres(tmp_path, settings, db, redis):
    """A PostgreSQL of this test's own (the session's one must not be stopped), loaded with the sample."""
    postgres = EmbeddedPostgres(tmp_path / "pg", free_port(), profile="test")
    await asyncio.to_thread(postgres.start)
    try:
        await migrate_url(postgres.url)
        conn = await asyncpg.connect(postgres.url)
        own = settings.replace(database_url=postgres.url)
        await prepare(conn, redis, own)
        await conn.close()
        yield postgres, own
    finally:
        await asyncio.to_thread(postgres.stop)


async def test_writes_accepted_during_a_postgres_outage_are_applied_after_it(aiohttp_client, own_postgres, redis,
                                                                            cache_redis):
    postgres, own = own_postgres
    await asyncio.to_thread(postgres.stop)
    client = await aiohttp_client(create_app(own))
    write_ids = await submit_mix(client, votes=40, reviews=10)
    question = await client.post("/qa/questions", json=QUESTION)
    assert question.status == 201

    worker, draining = await burst_worker_retrying(own)
    await asyncio.to_thread(postgres.start)
    await asyncio.wait_for(draining, 60)
    await worker.close()

    assert await all_applied(redis, write_ids)
    conn = await asyncpg.connect(postgres.url)
    try:
        assert await conn.fetchval("SELECT helpfulness FROM reviews WHERE id = 4") == 7 + 40
        assert await conn.fetchval("SELECT count(*) FROM reviews WHERE reviewer_name = 'jo'") == 10
        assert await conn.fetchval("SELECT count(*) FROM questions WHERE asker_name = 'kim'") == 1
        assert (await drift.check(conn, cache_redis)).mismatches == []
    finally:
        await conn.close()


async def test_redis_outage_is_a_clean_503_and_accepted_writes_survive_a_restart(aiohttp_client, tmp_path, settings):
    server = EmbeddedRedis(tmp_path / "redis", free_port(), maxmemory_mb=64)
    await asyncio.to_thread(server.start)
    own = settings.replace(redis_url=server.url)
    try:
        redis = from_url(server.url)
        await redis.setbit("atelier:ids:reviews", 4, 1)
        client = await aiohttp_client(create_app(own))
        accepted = await client.put("/reviews/4/helpful", headers={"Idempotency-Key": "k1"})
        assert accepted.status == 204
        await asyncio.to_thread(server.stop)

        refused = await client.put("/reviews/4/helpful", headers={"Idempotency-Key": "k2"})
        assert refused.status == 503 and refused.headers["Retry-After"] == "1"
        assert (await client.post("/reviews", json=REVIEW)).status == 503

        await asyncio.to_thread(server.start)  # the AOF brings back what was acknowledged, and only that
        assert await redis.zrange(protocol.QUEUE, 0, -1) == [accepted.headers["Location"].removeprefix("/writes/").encode()]
        assert len(await redis.keys(protocol.JOB_PREFIX + "*")) == 1
        assert len(await redis.keys(protocol.RECEIPT_PREFIX + "*")) == 1
        assert await redis.exists("atelier:idem:" + hashlib.sha256(b"k2").hexdigest()) == 0
        # A client retries a 503 after Retry-After, as the writer asked; the replay is the first answer.
        for _ in range(10):
            again = await client.put("/reviews/4/helpful", headers={"Idempotency-Key": "k1"})
            if again.status != 503:
                break
            await asyncio.sleep(float(again.headers["Retry-After"]))
        assert again.status == 204
        assert again.headers["Location"] == accepted.headers["Location"]
        assert await redis.zcard(protocol.QUEUE) == 1
        await redis.aclose()
    finally:
        await asyncio.to_thread(server.stop)


async def test_writes_applied_while_the_cache_redis_is_down_settle_and_refresh_when_it_returns(
        aiohttp_client, tmp_path, settings, db, redis):
    """The cache can fail on its own now: the worker commits, cannot publish, and retries the jobs
    (receipts stay `queued`) until the cache is back; then every model there is the fresh one."""
    cache_server = EmbeddedRedis(tmp_path / "cache", free_port(), maxmemory_mb=64, durable=False)
    await prepare(db, redis, settings)
    own = settings.replace(cache_url=cache_server.url)
    client = await aiohttp_client(create_app(own))
    write_ids = await submit_mix(client, votes=30, reviews=5)

    worker, draining = await burst_worker_retrying(own)
    assert await db.fetchval("SELECT count(*) FROM applied_writes") > 0  # committed, not yet published
    assert not await all_applied(redis, write_ids)
    await asyncio.to_thread(cache_server.start)
    try:
        await asyncio.wait_for(draining, 60)
        await worker.close()
        assert await all_applied(redis, write_ids)
        assert await db.fetchval("SELECT helpfulness FROM reviews WHERE id = 4") == 7 + 30
        cache = from_url(cache_server.url)
        try:
            assert await cache.exists(b"atelier:rm:p:1")  # review 4's product, republished on the retry
            assert (await drift.check(db, cache)).mismatches == []
        finally:
            await cache.aclose()
    finally:
        await asyncio.to_thread(cache_server.stop)

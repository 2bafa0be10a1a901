"""loadtest/staleness.py against the real apps: the write benchmark's staleness figures come from here.

Writer and reader apps on real sockets, a real arq worker applying the writes, the open-loop
generator driving both: every tracked review is seen through the reader, none is counted before
its write was acknowledged, and nothing from the warm-up is tracked.
"""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer

from loadtest.openloop import OpenLoop
from loadtest.staleness import Staleness
from loadtest.write_mix import WriteMix
from reader.app import LOCAL
from reader.app import create_app as create_reader
from tests.write_stack import prepare
from worker import protocol
from worker.jobs import create_worker
from writer.app import create_app as create_writer


async def targets(db) -> dict:
    async def ids(table: str) -> list[int]:
        return [r["id"] for r in await db.fetch(f"SELECT id FROM {table} WHERE NOT reported ORDER BY id")]

    products = await db.fetch(
        "SELECT p.id, coalesce(array_agg(c.id ORDER BY c.id) FILTER (WHERE c.id IS NOT NULL), '{}') AS chars "
        "FROM products p LEFT JOIN characteristics c ON c.product_id = p.id GROUP BY p.id ORDER BY p.id")
    return {"reviews": await ids("reviews"), "questions": await ids("questions"), "answers": await ids("answers"),
            "products": [{"id": r["id"], "characteristics": list(r["chars"])} for r in products]}


async def test_every_tracked_review_is_seen_after_its_ack(settings, db, redis):
    await prepare(db, redis, settings)
    writer_server, reader_server = TestServer(create_writer(settings)), TestServer(create_reader(settings))
    await writer_server.start_server()
    await reader_server.start_server()
    for _ in range(500):
        if reader_server.app[LOCAL].trusted:
            break
        await asyncio.sleep(0.01)
    worker = create_worker(settings, handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    writes = OpenLoop(writer_server.host, writer_server.port, 8)
    reads = OpenLoop(reader_server.host, reader_server.port, 8)
    try:
        await asyncio.gather(writes.open(), reads.open())
        mix = WriteMix(await targets(db), f"{writer_server.host}:{writer_server.port}", seed=3)
        reviews_before = await db.fetchval("SELECT count(*) FROM reviews")
        figures = await Staleness(writes, reads, mix).run(write_rate=40, read_rate=40, seconds=1, warmup=0.5)
        while await redis.zcard(protocol.QUEUE):  # the last votes applied and acked: closing cancels no job
            await asyncio.sleep(0.01)
    finally:
        writes.close()
        reads.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()
        await writer_server.close()
        await reader_server.close()
    assert (figures["tracked"], figures["never_visible"], figures["write_errors"]) == (4, 0, 0)
    assert 0 < figures["p50_ms"] <= figures["max_ms"] < 30_000
    assert figures["reads"]["requests"] == 40 and figures["reads"]["failed"] == 0
    # Two reviews in the warm-up (untracked) and four tracked ones were written.
    assert await db.fetchval("SELECT count(*) FROM reviews") == reviews_before + 6
    assert await db.fetchval("SELECT count(*) FROM reviews WHERE summary LIKE 'stale-%'") == 4

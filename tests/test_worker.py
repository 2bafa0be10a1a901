"""Writer → Redis queue → real arq worker → PostgreSQL source rows, read models and Redis caches."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import orjson
import pytest

import projections
from projections import cache, idstate
from projections.kinds import TABLES, Kind
from tests.write_stack import ANSWER, QUESTION, REVIEW, drain, prepare
from worker import protocol
from worker.batcher import Batcher
from worker.jobs import create_worker
from writer.app import create_app


@pytest.fixture
async def writer(aiohttp_client, settings, db, redis):
    await prepare(db, redis, settings)
    return await aiohttp_client(create_app(settings))


async def receipt(writer, response) -> dict:
    answer = await writer.get(response.headers["Location"])
    assert answer.status == 200
    return await answer.json()


async def model(db, kind: Kind, key: int):
    """The stored read model, which must also equal a fresh build (no drift) and what Redis holds."""
    row = await db.fetchrow(f"SELECT version, body FROM {TABLES[kind]} WHERE key = $1", key)
    assert row is not None
    assert row["body"] == await projections.build_one(db, kind, key)
    return orjson.loads(row["body"])


async def cached(cache_redis, kind: Kind, key: int):
    value = await cache_redis.hget(cache.hash_key(kind, key), cache.field(kind))
    return orjson.loads(cache.decode(kind, key, value).body) if value else None


def today() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT00:00:00.000Z")


async def test_new_review_shows_in_reviews_meta_and_cache(writer, db, redis, cache_redis, settings):
    response = await writer.post("/reviews", json=REVIEW)
    assert (await receipt(writer, response))["status"] == "queued"
    assert await drain(settings) == 1
    settled = await receipt(writer, response)
    assert settled["status"] == "applied"
    review_id = settled["resource"]["review_id"]
    assert await idstate.exists(redis, "reviews", review_id)

    reviews = await model(db, Kind.REVIEWS, 1)
    new = next(r for r in reviews if r["review_id"] == review_id)
    assert new["rating"] == 4 and new["summary"] == REVIEW["summary"] and new["body"] == REVIEW["body"]
    assert new["recommend"] is True and new["response"] is None and new["helpfulness"] == 0
    assert new["reviewer_name"] == "jo" and new["date"] == today()
    assert [p["url"] for p in new["photos"]] == REVIEW["photos"]
    assert await cached(cache_redis, Kind.REVIEWS, 1) == reviews

    meta = await model(db, Kind.META, 1)
    assert meta["ratings"]["4"] == "3"  # two sample reviews rated 4, plus this one
    assert meta["characteristics"]["Fit"]["value"] == "3.4000000000000000"  # 3, 3, 4, 3 and the new 4
    assert await cached(cache_redis, Kind.META, 1) == meta
    # Read models live in the cache server only; the durable one (and its append-only file) never sees them.
    assert await redis.keys("atelier:rm:*") == []
    row = await db.fetchrow("SELECT reviewer_email, reported FROM reviews WHERE id = $1", review_id)
    assert (row["reviewer_email"], row["reported"]) == ("jo@example.com", False)


async def test_question_answer_and_votes_show_everywhere(writer, db, cache_redis, settings):
    asked = await writer.post("/qa/questions", json=QUESTION)
    answered = await writer.post("/qa/questions/3/answers", json=ANSWER)
    votes = [await writer.put(path) for path in
             ("/qa/questions/4/helpful", "/qa/answers/3/helpful", "/qa/answers/3/helpful", "/reviews/2/helpful")]
    assert all(v.status == 204 for v in votes)
    await drain(settings)
    question_id = (await receipt(writer, asked))["resource"]["question_id"]
    answer_id = (await receipt(writer, answered))["resource"]["answer_id"]

    questions = {q["question_id"]: q for q in await model(db, Kind.QUESTIONS, 1)}
    assert questions[question_id]["question_body"] == QUESTION["body"]
    assert questions[question_id]["question_date"] == today() and questions[question_id]["answers"] == {}
    assert questions[3]["answers"][str(answer_id)]["photos"] == ANSWER["photos"]
    assert questions[4]["question_helpfulness"] == 10
    assert questions[1]["answers"]["3"]["helpfulness"] == 6
    answers = {a["answer_id"]: a for a in await model(db, Kind.ANSWERS, 3)}
    assert answers[answer_id]["body"] == ANSWER["body"] and answers[answer_id]["answerer_name"] == "lee"
    assert [p["url"] for p in answers[answer_id]["photos"]] == ANSWER["photos"]
    assert next(r for r in await model(db, Kind.REVIEWS, 1) if r["review_id"] == 2)["helpfulness"] == 3
    assert await cached(cache_redis, Kind.QUESTIONS, 1) == list(questions.values())
    # A vote on the new answer is accepted now that the id state knows it.
    assert (await writer.put(f"/qa/answers/{answer_id}/helpful")).status == 204


async def test_reported_items_disappear_from_every_model(writer, db, cache_redis, settings):
    for path in ("/reviews/1/report", "/qa/questions/3/report", "/qa/answers/3/report"):
        assert (await writer.put(path)).status == 204
    await drain(settings)
    assert 1 not in {r["review_id"] for r in await model(db, Kind.REVIEWS, 1)}
    meta = await model(db, Kind.META, 1)
    assert meta["ratings"] == {"2": "1", "4": "2"}  # review 1 (rated 5) no longer counts
    questions = await model(db, Kind.QUESTIONS, 1)
    assert 3 not in {q["question_id"] for q in questions}
    assert "3" not in next(q for q in questions if q["question_id"] == 1)["answers"]
    assert 3 not in {a["answer_id"] for a in await model(db, Kind.ANSWERS, 1)}
    assert await cached(cache_redis, Kind.ANSWERS, 1) == await model(db, Kind.ANSWERS, 1)
    assert await db.fetchval("SELECT count(*) FROM reviews WHERE id = 1 AND reported") == 1


async def test_thousand_concurrent_helpful_votes_add_exactly_a_thousand(writer, db, settings):
    before = await db.fetchval("SELECT helpfulness FROM reviews WHERE id = 4")
    responses = await asyncio.gather(*(writer.put("/reviews/4/helpful") for _ in range(1000)))
    assert [r.status for r in responses] == [204] * 1000
    assert await drain(settings) == 1000
    assert await db.fetchval("SELECT helpfulness FROM reviews WHERE id = 4") == before + 1000
    assert next(r for r in await model(db, Kind.REVIEWS, 1) if r["review_id"] == 4)["helpfulness"] == before + 1000


async def test_repeated_idempotency_key_creates_one_row(writer, db, settings):
    before = await db.fetchval("SELECT count(*) FROM reviews")
    headers = {"Idempotency-Key": "review-once"}
    answers = [await writer.post("/reviews", json=REVIEW, headers=headers) for _ in range(3)]
    await drain(settings)
    answers.append(await writer.post("/reviews", json=REVIEW, headers=headers))
    await drain(settings)
    assert {a.status for a in answers} == {201}
    assert len({a.headers["Location"] for a in answers}) == 1
    assert await db.fetchval("SELECT count(*) FROM reviews") == before + 1


async def test_cart_adds_accumulate_per_caller(writer, db, settings):
    for sku in (1, 1, 2):
        assert (await writer.post("/cart", json={"sku_id": sku})).status == 201
    other = {"Authorization": "Bearer other"}
    assert (await writer.post("/cart", json={"sku_id": 1}, headers=other)).status == 201
    await drain(settings)
    rows = await db.fetch("SELECT cart_key, sku_id, count FROM cart_items ORDER BY cart_key = 'Bearer other', sku_id")
    assert [(r["sku_id"], r["count"]) for r in rows] == [(1, 2), (2, 1), (1, 1)]
    assert rows[-1]["cart_key"] == "Bearer other"


async def test_write_whose_target_vanished_is_rejected_with_a_reason(writer, db, settings):
    response = await writer.post("/qa/questions/4/answers", json=ANSWER)
    await db.execute("DELETE FROM answers_photos; DELETE FROM answers; DELETE FROM questions WHERE id = 4")
    await drain(settings)
    assert await receipt(writer, response) == {
        "id": response.headers["Location"].removeprefix("/writes/"), "status": "rejected", "error": "question not found",
    }


async def test_prefer_wait_answers_once_the_write_is_visible(writer, db, settings):
    worker = create_worker(settings, handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    try:
        response = await writer.post("/reviews", json=REVIEW, headers={"Prefer": "wait=10"})
        assert response.status == 201
        assert response.headers["Preference-Applied"] == "wait=10"
        review_id = (await receipt(writer, response))["resource"]["review_id"]
        assert review_id in {r["review_id"] for r in await model(db, Kind.REVIEWS, 1)}
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()


async def test_an_idle_worker_is_woken_by_a_new_write_not_by_its_poll_timer(writer, db, redis, settings):
    worker = create_worker(settings, handle_signals=False)
    worker.idle_wait_s = 3600  # were it left to poll, the write below would wait an hour
    running = asyncio.create_task(worker.async_run())
    try:
        while not await redis.exists(worker.health_check_key):  # written by its first poll, before it idles
            await asyncio.sleep(0.01)
        response = await writer.post("/reviews", json=REVIEW, headers={"Prefer": "wait=10"})
        assert (await receipt(writer, response))["status"] == "applied"
        while await redis.zcard(protocol.QUEUE):  # acked too, so closing the worker cancels nothing
            await asyncio.sleep(0.01)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()


async def test_warming_a_worker_changes_nothing(writer, db, redis, cache_redis, settings):
    """The warm-up batch a worker runs at start names no existing row and is rolled back."""
    counts = "SELECT (SELECT count(*) FROM applied_writes), (SELECT max(version) FROM rm_reviews), " \
             "(SELECT count(*) FROM reviews), (SELECT count(*) FROM cart_items)"
    before = await db.fetchrow(counts)
    pool = await asyncpg.create_pool(settings.database_url, min_size=0, max_size=1)
    try:
        await Batcher(pool, redis, cache_redis, size=10, wait=0.005).warm()
    finally:
        await pool.close()
    assert await db.fetchrow(counts) == before


async def test_a_write_postgres_refuses_is_rejected_alone(writer, db, settings):
    """A write that passes validation but breaks a constraint must not take its batch down with it."""
    await db.execute("ALTER TABLE questions ADD CONSTRAINT test_no_poison CHECK (body <> 'poison')")
    try:
        good = [await writer.post("/qa/questions", json=QUESTION) for _ in range(3)]
        bad = await writer.post("/qa/questions", json={**QUESTION, "body": "poison"})
        vote = await writer.put("/reviews/1/helpful")
        await drain(settings)
    finally:
        await db.execute("ALTER TABLE questions DROP CONSTRAINT test_no_poison")
    assert [(await receipt(writer, r))["status"] for r in (*good, vote)] == ["applied"] * 4
    refused = await receipt(writer, bad)
    assert refused["status"] == "rejected" and "CheckViolation" in refused["error"]
    assert await db.fetchval("SELECT count(*) FROM questions WHERE body = 'poison'") == 0
    assert await db.fetchval("SELECT count(*) FROM questions WHERE asker_name = 'kim'") == 3


async def test_applied_write_ids_are_forgotten_after_a_week(writer, db, settings):
    await db.execute(
        "INSERT INTO applied_writes (write_id, applied_at, status) VALUES "
        "('00000000-0000-0000-0000-000000000001', now() - interval '8 days', 'applied'), "
        "('00000000-0000-0000-0000-000000000002', now() - interval '6 days', 'applied')"
    )
    assert (await writer.put("/reviews/1/helpful")).status == 204
    await drain(settings)
    kept = {r["write_id"].int for r in await db.fetch("SELECT write_id FROM applied_writes WHERE applied_at < now() - interval '1 day'")}
    assert kept == {2}
    assert await db.fetchval("SELECT count(*) FROM applied_writes") == 2


async def test_the_request_id_follows_a_write_into_the_workers_log(writer, settings, capfdbinary):
    response = await writer.post("/reviews", json=REVIEW, headers={"X-Request-Id": "trace-42"})
    assert response.status == 201
    capfdbinary.readouterr()
    assert await drain(settings.replace(log_json=True, access_log=True)) == 1
    events = [orjson.loads(line) for line in capfdbinary.readouterr().out.splitlines() if line.startswith(b"{")]
    applied = [e for e in events if e.get("app") == "worker" and e.get("request_id") == "trace-42"]
    assert len(applied) == 1
    assert applied[0]["event"] == "applied" and applied[0]["kind"] == "review"
    assert applied[0]["write_id"] == response.headers["Location"].rsplit("/", 1)[1]

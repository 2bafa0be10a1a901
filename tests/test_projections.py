"""The read models against real PostgreSQL and Redis: exact bodies, bulk == per-id, refresh, CAS."""

from __future__ import annotations

import asyncio

import orjson

import projections
from projections import cache
from projections.affected import Affected
from projections.kinds import TABLES, Kind
from projections.store import Row, build_and_store, stored, stored_product_bundle
from tests.reader_sample import sample  # noqa: F401 - the fixture is used by name

PRODUCT_KEYS = (1, 2, 3, 404)
QUESTION_KEYS = (1, 2, 3, 10, 404)


def keys_of(kind: Kind):
    return QUESTION_KEYS if kind == Kind.ANSWERS else PRODUCT_KEYS


async def test_product_detail_body_is_exact(sample):
    body = await projections.build_one(sample, Kind.PRODUCT, 1)
    assert body == (
        b'{"id":1,"campus":"hr-rfp","name":"Camo Onesie","slogan":"Blend in to your crowd",'
        b'"description":"The \\"best\\" onesie,\\nreally","category":"Jackets","default_price":"140.00",'
        b'"created_at":"2021-08-13T14:37:33.145Z","updated_at":"2021-08-13T14:37:33.145Z",'
        b'"features":[{"feature":"Fabric","value":"Canvas"},{"feature":"Buttons","value":null},'
        b'{"feature":"Fabric","value":"Canvas"}]}'
    )
    assert orjson.loads(await projections.build_one(sample, Kind.PRODUCT, 2))["features"] == []
    assert await projections.build_one(sample, Kind.PRODUCT, 404) is None


async def test_styles_body_is_exact(sample):
    assert await projections.build_one(sample, Kind.STYLES, 1) == (
        b'{"product_id":"1","results":[{"style_id":1,"name":"Forest Green & Black","original_price":"140.00",'
        b'"sale_price":null,"default?":true,"photos":[{"thumbnail_url":null,"url":"https://img/1.jpg"},'
        b'{"thumbnail_url":"https://thumb/2.jpg","url":"https://img/2.jpg"}],'
        b'"skus":{"1":{"quantity":8,"size":"XS"},"2":{"quantity":16,"size":"S"},"3":{"quantity":0,"size":"S"}}},'
        b'{"style_id":2,"name":"Desert Brown","original_price":"140.00","sale_price":"100.00","default?":false,'
        b'"photos":[{"thumbnail_url":null,"url":null}],"skus":{"null":{"quantity":null,"size":null}}}]}'
    )
    assert await projections.build_one(sample, Kind.STYLES, 2) == b'{"product_id":"2","results":[]}'


async def test_related_keeps_order_duplicates_and_self_references(sample):
    assert await projections.build_one(sample, Kind.RELATED, 1) == b"[3,2,3,1]"
    assert await projections.build_one(sample, Kind.RELATED, 2) == b"[]"


async def test_meta_omits_empty_buckets_and_reported_reviews(sample):
    assert await projections.build_one(sample, Kind.META, 1) == (
        b'{"product_id":"1","ratings":{"2":"1","4":"2","5":"1"},"recommended":{"false":"2","true":"2"},'
        b'"characteristics":{"Fit":{"id":1,"value":"3.2500000000000000"},"Length":{"id":2,"value":null},'
        b'"Comfort":{"id":3,"value":"1.6666666666666667"}}}'
    )
    assert await projections.build_one(sample, Kind.META, 2) == (
        b'{"product_id":"2","ratings":{},"recommended":{},"characteristics":{}}'
    )


async def test_reviews_are_relevant_ordered_without_reported(sample):
    reviews = orjson.loads(await projections.build_one(sample, Kind.REVIEWS, 1))
    assert [r["review_id"] for r in reviews] == [4, 2, 1, 3]
    assert list(reviews[2]) == [
        "review_id", "rating", "summary", "recommend", "response", "body", "date", "reviewer_name",
        "helpfulness", "photos",
    ]
    assert reviews[2]["photos"] == [{"id": 1, "url": "https://r/1.jpg"}, {"id": 2, "url": "https://r/2.jpg"}]
    assert reviews[2]["date"] == "2019-01-01T00:00:00.000Z"


async def test_questions_nest_non_reported_answers(sample):
    questions = orjson.loads(await projections.build_one(sample, Kind.QUESTIONS, 1))
    assert [q["question_id"] for q in questions] == [4, 1, 3]
    assert questions[1]["answers"] == {
        "3": {"id": 3, "body": "No, true to size", "date": "2019-05-03T00:00:00.000Z", "answerer_name": "y",
              "helpfulness": 4, "photos": ["https://a/1.jpg", "https://a/2.jpg"]},
        "2": {"id": 2, "body": "Yes, size up", "date": "2019-05-02T00:00:00.000Z", "answerer_name": "Seller",
              "helpfulness": 1, "photos": []},
    }
    answers = orjson.loads(await projections.build_one(sample, Kind.ANSWERS, 1))
    assert [a["answer_id"] for a in answers] == [3, 2]
    assert answers[0]["photos"] == [{"id": 1, "url": "https://a/1.jpg"}, {"id": 2, "url": "https://a/2.jpg"}]


async def test_bulk_build_equals_per_id_build_byte_for_byte(sample, settings):
    report = await projections.bulk.build_all(sample, progress=False, dsn=settings.database_url)
    assert report["product"]["rows"] == 3 and report["answers"]["rows"] == 11
    versions = set()
    for kind in Kind:
        for key in keys_of(kind):
            row = await stored(sample, kind, key)
            fresh = await projections.build_one(sample, kind, key)
            if fresh is None:
                assert row is None
                continue
            assert row.body == fresh, (kind, key)
            versions.add(row.version)
            if fresh.startswith(b"["):
                assert row.items == len(orjson.loads(fresh))
    assert len(versions) == 1
    bundle = await stored_product_bundle(sample, 1)
    assert set(bundle) == set(projections.kinds.PRODUCT_KINDS)


async def test_refresh_rebuilds_what_a_batch_touched_with_newer_versions(sample):
    await projections.bulk.build_all(sample, progress=False)
    before = {kind: await stored(sample, kind, 1) for kind in Kind}
    async with sample.transaction():
        await sample.execute("UPDATE reviews SET reported = true WHERE id = 4")
        await sample.execute("UPDATE answers SET helpful = helpful + 10 WHERE id = 2")
        rows = await projections.refresh(sample, Affected(review_products={1}, answer_questions={1}))
    got = {(row.kind, row.key) for row in rows}
    # The answer's question belongs to product 1, whose questions model nests it.
    assert got == {(Kind.REVIEWS, 1), (Kind.META, 1), (Kind.QUESTIONS, 1), (Kind.ANSWERS, 1)}
    for row in rows:
        assert row.version > before[row.kind].version
        assert row.body == await projections.build_one(sample, row.kind, row.key)
        assert (await stored(sample, row.kind, row.key)) == row
    assert [r["review_id"] for r in orjson.loads((await stored(sample, Kind.REVIEWS, 1)).body)] == [2, 1, 3]
    assert (await stored(sample, Kind.PRODUCT, 1)) == before[Kind.PRODUCT]
    assert await projections.refresh(sample, Affected()) == []


async def waiting_for_advisory_lock(conn) -> None:
    """Return once some backend waits for an advisory lock (the event the next step depends on)."""
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    for _ in range(1000):
        if await conn.fetchval(query):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second batch never waited for the first one's lock")


async def test_concurrent_refreshes_never_store_a_stale_body(sample, settings):
    """Two batches touching the same product: the later commit must see the earlier one's rows."""
    import asyncpg

    await projections.bulk.build_all(sample, progress=False)
    other = await asyncpg.connect(settings.database_url)
    try:
        first = sample.transaction()
        await first.start()
        await sample.execute("UPDATE reviews SET helpfulness = helpfulness + 100 WHERE id = 3")
        await projections.refresh(sample, Affected(review_products={1}))

        async def second_batch():
            async with other.transaction():
                await other.execute("UPDATE reviews SET helpfulness = helpfulness + 50 WHERE id = 1")
                return await projections.refresh(other, Affected(review_products={1}))

        second = asyncio.create_task(second_batch())
        await waiting_for_advisory_lock(sample)
        await first.commit()
        rows = await second
    finally:
        await other.close()
    reviews = orjson.loads((await stored(sample, Kind.REVIEWS, 1)).body)
    assert [(r["review_id"], r["helpfulness"]) for r in reviews[:2]] == [(3, 100), (1, 52)]
    assert rows[0].body == await projections.build_one(sample, Kind.REVIEWS, 1)


async def test_build_and_store_fills_a_missing_row_once(sample):
    rows = await build_and_store(sample, Kind.ANSWERS, [1, 404])
    assert [(r.key, r.body) for r in rows] == [(1, await projections.build_one(sample, Kind.ANSWERS, 1))]
    again = await build_and_store(sample, Kind.ANSWERS, [1])
    assert again == rows  # an existing row is kept, not rebuilt
    assert await sample.fetchval(f"SELECT count(*) FROM {TABLES[Kind.ANSWERS]}") == 1


async def test_redis_compare_and_set_never_goes_backwards(sample, cache_redis):
    redis = cache_redis
    newer = cache.hold(Row(Kind.REVIEWS, 7, 20, b"[2]", 1))
    older = cache.hold(Row(Kind.REVIEWS, 7, 10, b"[1]", 1))
    assert await cache.store(redis, [newer]) == 1
    assert await cache.store(redis, [older]) == 0
    raw = await redis.hget(cache.hash_key(Kind.REVIEWS, 7), cache.field(Kind.REVIEWS))
    assert cache.decode(Kind.REVIEWS, 7, raw) == newer
    same = cache.hold(Row(Kind.REVIEWS, 7, 20, b"[3]", 1))
    assert await cache.store(redis, [same]) == 0  # only a strictly newer version replaces
    large = b"[" + b",".join(b'{"n":%d}' % i for i in range(500)) + b"]"
    newest = cache.hold(Row(Kind.REVIEWS, 7, 21, large, 500))
    assert await cache.store(redis, [newest, cache.hold(Row(Kind.META, 7, 1, b"{}", 0))]) == 2
    flat = await redis.hgetall(cache.hash_key(Kind.REVIEWS, 7))
    held = cache.decode_hash(7, [x for kv in flat.items() for x in kv])
    assert held == {Kind.REVIEWS: newest, Kind.META: cache.hold(Row(Kind.META, 7, 1, b"{}", 0))}
    assert held[Kind.REVIEWS].packed is not None and held[Kind.REVIEWS].body == large
    assert len(flat[cache.field(Kind.REVIEWS)]) < len(large) // 2
    assert 0 < await redis.ttl(cache.hash_key(Kind.REVIEWS, 7)) <= cache.TTL_SECONDS


async def test_publish_stores_then_announces(sample, cache_redis, settings):
    import redis.asyncio as aioredis

    listener = aioredis.from_url(settings.cache_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(cache.CHANNEL)
    try:
        assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
        rows = [Row(Kind.ANSWERS, 9, 5, b"[]", 0), Row(Kind.META, 9, 6, b"{}", 0)]
        await cache.publish(cache_redis, rows)
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert cache.parse_invalidation(message["data"]) == [(Kind.ANSWERS, 9, 5), (Kind.META, 9, 6)]
        assert await cache_redis.hexists(cache.hash_key(Kind.ANSWERS, 9), cache.field(Kind.ANSWERS))
        assert await cache.forget_all(cache_redis) == 2
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert cache.parse_invalidation(message["data"]) is None
    finally:
        await pubsub.aclose()
        await listener.aclose()


async def test_warm_copies_stored_product_models_within_a_budget(sample, cache_redis):
    redis = cache_redis
    await projections.bulk.build_all(sample, progress=False)
    sent = await cache.warm(sample, redis)
    assert (sent["products"], sent["models"]) == (3, 18)
    flat = await redis.hgetall(cache.hash_key(Kind.STYLES, 1))
    held = cache.decode_hash(1, [x for kv in flat.items() for x in kv])
    assert {kind: (m.version, m.items, m.body) for kind, m in held.items()} == {
        kind: (row.version, row.items, row.body) for kind, row in (await stored_product_bundle(sample, 1)).items()
    }
    await redis.flushdb()
    assert (await cache.warm(sample, redis, budget_bytes=1, batch=2))["products"] == 1
    assert await redis.exists(cache.hash_key(Kind.PRODUCT, 1)) and not await redis.exists(cache.hash_key(Kind.PRODUCT, 2))


async def test_a_helpful_vote_rebuilds_the_reviews_list_but_not_the_meta(sample):
    async with sample.transaction():
        await sample.execute("UPDATE reviews SET helpfulness = helpfulness + 1 WHERE id = 3")
        rows = await projections.refresh(sample, Affected(review_lists={1}))
    assert [(row.kind, row.key) for row in rows] == [(Kind.REVIEWS, 1)]
    assert rows[0].body == await projections.build_one(sample, Kind.REVIEWS, 1)
    assert Affected(review_lists={1}) and not Affected()

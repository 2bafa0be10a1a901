"""The reader's cache layers: every layer answers the same bytes, and invalidations keep them fresh."""

from __future__ import annotations

import pytest

import projections
from projections import cache
from projections.affected import Affected
from projections.kinds import Kind
from reader.app import LOCAL, create_app
from reader.routes import STATS
from tests.reader_sample import sample, until  # noqa: F401 - fixtures are used by name

PATHS = {
    Kind.PRODUCT: "/products/1",
    Kind.STYLES: "/products/1/styles",
    Kind.RELATED: "/products/1/related",
    Kind.META: "/reviews/meta?product_id=1",
}


async def started(aiohttp_client, settings):
    app = create_app(settings)
    client = await aiohttp_client(app)
    await until(lambda: app[LOCAL].trusted, "the invalidation subscription")
    return app, client


@pytest.mark.parametrize("kind", list(PATHS))
async def test_every_layer_answers_the_fresh_build(aiohttp_client, settings, sample, cache_redis, kind):  # noqa: F811
    fresh = await projections.build_one(sample, kind, 1)
    path = PATHS[kind]

    # No stored row, nothing cached: built from the source tables and stored.
    app, client = await started(aiohttp_client, settings)
    assert await (await client.get(path)).read() == fresh
    assert app[STATS].builds == 1
    stored = await projections.store.stored(sample, kind, 1)
    assert stored.body == fresh

    # Same process again: the local cache.
    assert await (await client.get(path)).read() == fresh
    assert app[STATS].local_hits == 1

    # A new process: Redis (filled by the first one).
    app, client = await started(aiohttp_client, settings)
    assert await (await client.get(path)).read() == fresh
    assert (app[STATS].redis_hits, app[STATS].builds) == (1, 0)

    # Redis emptied: the stored PostgreSQL row.
    await cache_redis.flushdb()
    app, client = await started(aiohttp_client, settings)
    assert await (await client.get(path)).read() == fresh
    assert (app[STATS].postgres_hits, app[STATS].builds) == (1, 0)


async def test_a_product_page_miss_fills_every_model_of_the_product(aiohttp_client, settings, sample):  # noqa: F811
    await projections.bulk.build_all(sample, progress=False)
    app, client = await started(aiohttp_client, settings)
    await client.get("/products/1")
    for path in ("/products/1/styles", "/products/1/related", "/reviews?product_id=1",
                 "/reviews/meta?product_id=1", "/qa/questions?product_id=1"):
        assert (await client.get(path)).status == 200
    assert (app[STATS].postgres_hits, app[STATS].local_hits) == (1, 5)


async def test_a_published_refresh_replaces_the_local_copy(aiohttp_client, settings, sample, cache_redis):  # noqa: F811
    await projections.bulk.build_all(sample, progress=False)
    app, client = await started(aiohttp_client, settings)
    before = await (await client.get("/reviews?product_id=1")).read()
    async with sample.transaction():
        await sample.execute("UPDATE reviews SET reported = true WHERE id = 4")
        rows = await projections.refresh(sample, Affected(review_products={1}))
    seen = app[STATS].invalidations
    await cache.publish(cache_redis, rows)
    await until(lambda: app[STATS].invalidations > seen, "the invalidation")
    after = await (await client.get("/reviews?product_id=1")).read()
    assert after != before and b'"review_id":4' not in after
    meta = await (await client.get("/reviews/meta?product_id=1")).read()
    assert meta == await projections.build_one(sample, Kind.META, 1)


async def test_a_stale_fill_after_an_invalidation_is_not_kept(settings):
    """A row read before a newer version was announced must not become the local copy."""
    from reader.local_cache import LocalCache
    from projections.store import Row

    local = LocalCache(10)
    local.trusted = True
    local.invalidate(Kind.REVIEWS, 1, 20)
    local.put(cache.hold(Row(Kind.REVIEWS, 1, 19, b"[]", 0)))
    assert local.get(Kind.REVIEWS, 1) is None
    local.put(cache.hold(Row(Kind.REVIEWS, 1, 20, b"[1]", 1)))
    assert local.get(Kind.REVIEWS, 1).model.version == 20
    local.put(cache.hold(Row(Kind.REVIEWS, 1, 18, b"[]", 0)))
    assert local.get(Kind.REVIEWS, 1).model.version == 20


async def test_an_unreadable_invalidation_clears_the_local_cache(aiohttp_client, settings, sample, cache_redis):  # noqa: F811
    app, client = await started(aiohttp_client, settings)
    await client.get("/products/1")
    assert len(app[LOCAL]) > 0
    await cache_redis.publish(cache.CHANNEL, b"not an invalidation")
    await until(lambda: len(app[LOCAL]) == 0, "the local cache to be cleared")
    assert app[LOCAL].trusted
    assert (await client.get("/products/1")).status == 200


async def test_a_deflated_list_answers_the_same_bytes_in_every_encoding(aiohttp_client, settings, sample, cache_redis):  # noqa: F811
    """Bodies of 1 KiB or more are held deflated in Redis: the gzip answer is assembled from them, the
    identity answer inflated, and both must be the fresh build inside its envelope at every layer."""
    import gzip

    await sample.execute(
        "INSERT INTO reviews (id, product_id, rating, date, summary, body, recommend, reviewer_name, reviewer_email)"
        " SELECT 100 + n, 3, 1 + n % 5, '2021-01-01'::date + n, 'summary ' || n, repeat('Soft and warm. ', n),"
        " n % 2 = 0, 'shopper' || n, 's@x.y' FROM generate_series(1, 40) AS n")
    path = "/reviews?product_id=3&count=1000"
    body = await projections.build_one(sample, Kind.REVIEWS, 3)
    expected = b'{"product":"3","page":0,"count":1000,"results":' + body + b"}"
    assert len(body) > 4 * 1024

    async def both_encodings(client) -> None:
        plain = await client.get(path, headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers and await plain.read() == expected
        zipped = await client.get(path, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await zipped.read()) == expected
        newest = await client.get(path + "&sort=newest", headers={"Accept-Encoding": "gzip"})
        assert [r["review_id"] for r in (await newest.json())["results"]][:3] == [140, 139, 138]

    app, client = await started(aiohttp_client, settings)  # built from the source tables
    await both_encodings(client)
    await both_encodings(client)  # the local cache
    assert app[STATS].builds == 1
    raw = await cache_redis.hget(cache.hash_key(Kind.REVIEWS, 3), cache.field(Kind.REVIEWS))
    assert cache.decode(Kind.REVIEWS, 3, raw).packed is not None and len(raw) < len(body) // 2
    app, client = await started(aiohttp_client, settings)  # Redis, deflated
    await both_encodings(client)
    assert (app[STATS].redis_hits, app[STATS].builds) == (1, 0)
    await cache_redis.flushdb()
    app, client = await started(aiohttp_client, settings)  # the stored PostgreSQL row
    await both_encodings(client)
    assert (app[STATS].postgres_hits, app[STATS].builds) == (1, 0)


def test_an_evicted_entry_is_freed_without_the_cycle_collector():
    """Under a uniform load the local cache evicts thousands of entries a second: if an entry and its
    renderings formed a reference cycle, each would wait (and pile up) for a full collection."""
    import gc

    from projections.store import Row
    from reader.local_cache import LocalCache, Rendered

    body = b"[" + b",".join(b'{"review_id":%d}' % i for i in range(300)) + b"]"
    local = LocalCache(1)
    local.trusted = True
    entry = local.put(cache.hold(Row(Kind.REVIEWS, 1, 1, body, 300)))
    entry.remember("whole", Rendered('"a"', wrapped=(b"{", entry.model, b"}")))
    entry.remember("page", Rendered('"b"', b"[]"))
    assert entry.variants["whole"].gzip and entry.plain == body
    del entry
    gc.collect()
    gc.disable()
    try:
        local.put(cache.hold(Row(Kind.REVIEWS, 2, 1, b"[]", 0)))  # evicts the first entry
        assert gc.collect() == 0
    finally:
        gc.enable()

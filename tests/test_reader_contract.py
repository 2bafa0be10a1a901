"""Every GET of the contract through the real reader app, real PostgreSQL and real Redis."""

from __future__ import annotations

import gzip

import orjson
import pytest

import projections
from infra.embedded import free_port
from projections.kinds import Kind
from reader.app import LOCAL, create_app
from reader.local_cache import GZIP_MIN_BYTES
from reader.routes import STATS
from tests.reader_sample import sample, until  # noqa: F401 - fixtures are used by name

JSON_TYPE = "application/json; charset=utf-8"


@pytest.fixture
async def client(aiohttp_client, settings, sample):
    app = create_app(settings)
    test_client = await aiohttp_client(app)
    await until(lambda: app[LOCAL].trusted, "the invalidation subscription")
    return test_client


async def get_json(client, path: str, status: int = 200, **kwargs):
    response = await client.get(path, **kwargs)
    assert response.status == status, (path, response.status, await response.text())
    assert response.headers["Content-Type"] == JSON_TYPE
    return orjson.loads(await response.read())


async def test_product_detail_is_the_stored_body(client, sample):
    response = await client.get("/products/1")
    assert response.status == 200
    assert response.headers["Content-Type"] == JSON_TYPE
    assert await response.read() == await projections.build_one(sample, Kind.PRODUCT, 1)
    assert (await get_json(client, "/products/2"))["features"] == []


async def test_styles_related_and_meta_bodies(client, sample):
    for path, kind in (("/products/1/styles", Kind.STYLES), ("/products/1/related", Kind.RELATED),
                       ("/reviews/meta?product_id=1", Kind.META)):
        response = await client.get(path)
        assert await response.read() == await projections.build_one(sample, kind, 1), path
    styles = await get_json(client, "/products/1/styles")
    assert styles["results"][1]["photos"] == [{"thumbnail_url": None, "url": None}]
    assert styles["results"][1]["skus"] == {"null": {"quantity": None, "size": None}}
    assert await get_json(client, "/products/1/related") == [3, 2, 3, 1]
    meta = await get_json(client, "/reviews/meta?product_id=1")
    assert meta["ratings"] == {"2": "1", "4": "2", "5": "1"}  # no 1 or 3: zero buckets are omitted
    assert meta["characteristics"]["Fit"] == {"id": 1, "value": "3.2500000000000000"}
    assert meta["characteristics"]["Length"] == {"id": 2, "value": None}


async def test_existing_product_without_items_is_200_with_empty_results(client):
    assert await get_json(client, "/products/2/styles") == {"product_id": "2", "results": []}
    assert await get_json(client, "/products/2/related") == []
    assert await get_json(client, "/reviews?product_id=2") == {"product": "2", "page": 0, "count": 5, "results": []}
    assert await get_json(client, "/reviews/meta?product_id=2") == {
        "product_id": "2", "ratings": {}, "recommended": {}, "characteristics": {}}
    assert await get_json(client, "/qa/questions?product_id=2") == {"product_id": "2", "results": []}
    assert await get_json(client, "/qa/questions/3/answers") == {"question": "3", "page": 1, "count": 5, "results": []}


async def test_reviews_sorts_paging_and_envelope(client):
    relevant = await get_json(client, "/reviews?product_id=1")
    assert [r["review_id"] for r in relevant["results"]] == [4, 2, 1, 3]  # reported review 5 absent
    assert (relevant["product"], relevant["page"], relevant["count"]) == ("1", 0, 5)
    newest = await get_json(client, "/reviews?product_id=1&sort=newest")
    assert [r["review_id"] for r in newest["results"]] == [3, 2, 1, 4]
    helpful = await get_json(client, "/reviews?product_id=1&sort=helpful")
    assert [r["review_id"] for r in helpful["results"]] == [4, 2, 1, 3]
    # product 3: helpfulness ties broken by date desc (relevant) or id desc (helpful)
    ids = lambda body: [r["review_id"] for r in body["results"]]  # noqa: E731
    assert ids(await get_json(client, "/reviews?product_id=3&count=100")) == [15, 12, 14, 11, 16, 13, 10]
    assert ids(await get_json(client, "/reviews?product_id=3&count=100&sort=helpful")) == [15, 12, 14, 11, 16, 13, 10]
    assert ids(await get_json(client, "/reviews?product_id=3&count=100&sort=newest")) == [16, 15, 14, 13, 12, 11, 10]
    second = await get_json(client, "/reviews?product_id=3&page=2&count=3&sort=newest")
    assert (second["page"], second["count"], ids(second)) == (3, 3, [13, 12, 11])
    past = await get_json(client, "/reviews?product_id=3&page=9&count=3")
    assert (past["page"], past["results"]) == (24, [])
    whole = await get_json(client, "/reviews?product_id=3&count=1000")
    assert len(whole["results"]) == 7 and whole["count"] == 1000


async def test_review_objects_expose_only_contract_keys(client):
    review = (await get_json(client, "/reviews?product_id=1&sort=newest&count=3"))["results"][2]
    assert review == {
        "review_id": 1, "rating": 5, "summary": "Great", "recommend": True, "response": None,
        "body": "Loved it, truly", "date": "2019-01-01T00:00:00.000Z", "reviewer_name": "ann", "helpfulness": 2,
        "photos": [{"id": 1, "url": "https://r/1.jpg"}, {"id": 2, "url": "https://r/2.jpg"}],
    }


async def test_questions_envelope_order_and_paging(client):
    body = await get_json(client, "/qa/questions?product_id=1&count=100")
    assert list(body) == ["product_id", "results"]
    assert [q["question_id"] for q in body["results"]] == [4, 1, 3]  # reported question 2 absent
    assert list(body["results"][1]["answers"]) == ["3", "2"]  # reported answer 1 absent
    assert body["results"][1]["answers"]["3"]["photos"] == ["https://a/1.jpg", "https://a/2.jpg"]
    assert body["results"][0]["reported"] is False
    page2 = await get_json(client, "/qa/questions?product_id=3&page=2&count=3")
    assert [q["question_id"] for q in page2["results"]] == [10, 12, 14]
    assert (await get_json(client, "/qa/questions?product_id=3&page=4&count=3"))["results"] == []


async def test_answers_page_as_requested(client):
    body = await get_json(client, "/qa/questions/1/answers?page=1&count=100")
    assert (body["question"], body["page"], body["count"]) == ("1", 1, 100)
    assert [a["answer_id"] for a in body["results"]] == [3, 2]
    assert body["results"][0]["photos"] == [{"id": 1, "url": "https://a/1.jpg"}, {"id": 2, "url": "https://a/2.jpg"}]
    second = await get_json(client, "/qa/questions/1/answers?page=2&count=1")
    assert (second["page"], [a["answer_id"] for a in second["results"]]) == (2, [2])


async def test_products_list_is_a_bare_array_without_features(client, sample):
    body = await get_json(client, "/products")
    assert [p["id"] for p in body] == [1, 2, 3]
    assert list(body[0]) == ["id", "campus", "name", "slogan", "description", "category", "default_price",
                             "created_at", "updated_at"]
    assert body[0]["campus"] == "hr-rfp" and body[0]["default_price"] == "140.00"
    assert [p["id"] for p in await get_json(client, "/products?page=2&count=2")] == [3]
    assert await get_json(client, "/products?page=3&count=2") == []


async def test_products_count_is_clamped_to_1000(client, sample):
    await sample.execute(
        "INSERT INTO products (id, name, slogan, description, category, default_price)"
        " SELECT g, 'p' || g, 's', 'd', 'c', 1 FROM generate_series(4, 1100) g"
    )
    body = await get_json(client, "/products?count=5000")
    assert len(body) == 1000 and body[-1]["id"] == 1000


async def test_unknown_ids_are_404(client):
    for path in ("/products/404", "/products/404/styles", "/products/404/related", "/reviews?product_id=404",
                 "/reviews/meta?product_id=404", "/qa/questions?product_id=404", "/qa/questions/404/answers",
                 "/products/99999999999"):
        body = await get_json(client, path, status=404)
        assert set(body) == {"error", "field"}, path


@pytest.mark.parametrize("path, field", [
    ("/reviews?product_id=abc", "product_id"),
    ("/reviews", "product_id"),
    ("/reviews/meta", "product_id"),
    ("/reviews/meta?product_id=-1", "product_id"),
    ("/qa/questions?product_id=", "product_id"),
    ("/reviews?product_id=1&sort=oldest", "sort"),
    ("/reviews?product_id=1&page=0", "page"),
    ("/reviews?product_id=1&count=-5", "count"),
    ("/reviews?product_id=1&count=1.5", "count"),
    ("/qa/questions?product_id=1&page=x", "page"),
    ("/qa/questions/1/answers?count=0", "count"),
    ("/qa/questions/abc/answers", "question_id"),
    ("/products/abc", "product_id"),
    ("/products?page=0", "page"),
    ("/products?count=abc", "count"),
])
async def test_bad_parameters_are_422_naming_the_field(client, path, field):
    assert (await get_json(client, path, status=422))["field"] == field


async def test_liberal_paths_and_parameters(client):
    pairs = [
        ("/products/", "/products"),
        ("/reviews/?product_id=1", "/reviews?product_id=1"),
        ("/reviews/meta/?product_id=1", "/reviews/meta?product_id=1"),
        ("/qa/questions/?product_id=1", "/qa/questions?product_id=1"),
        ("/qa/questions/1/answers?&page=1&count=100", "/qa/questions/1/answers?page=1&count=100"),
        ("/products/1/", "/products/1"),
        ("/products/1/styles/", "/products/1/styles"),
        ("/reviews?product_id=1&page=&count=", "/reviews?product_id=1"),
    ]
    for liberal, plain in pairs:
        assert await get_json(client, liberal, headers={"Authorization": "Bearer x"}) == await get_json(client, plain)


async def test_gzip_when_asked_for_large_bodies(client, sample):
    await sample.execute(
        "INSERT INTO reviews (id, product_id, rating, date, summary, body, recommend, reviewer_name, reviewer_email)"
        " VALUES (100, 3, 5, '2021-01-01', 'long', repeat('Lovely fabric. ', 400), true, 'gus', 'g@y.z')")
    plain = await client.get("/reviews?product_id=3&count=1000", headers={"Accept-Encoding": "identity"})
    raw = await plain.read()
    assert len(raw) > GZIP_MIN_BYTES and "Content-Encoding" not in plain.headers
    zipped = await client.get("/reviews?product_id=3&count=1000", headers={"Accept-Encoding": "gzip, deflate"},
                              auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await zipped.read()) == raw
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    small = await client.get("/products/1/related", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers


async def test_etag_and_if_none_match(client):
    first = await client.get("/products/1/styles")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = await client.get("/products/1/styles", headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    other = await client.get("/products/1/styles", headers={"If-None-Match": '"nope"'})
    assert other.status == 200
    page1 = await client.get("/reviews?product_id=3&count=2")
    page2 = await client.get("/reviews?product_id=3&count=2&page=2")
    assert page1.headers["ETag"] != page2.headers["ETag"]


async def test_cart_by_authorization_then_cookie(client, sample):
    assert await get_json(client, "/cart") == []
    await sample.executemany("INSERT INTO cart_items (cart_key, sku_id, count) VALUES ($1, $2, $3)",
                             [("token-a", 2, 3), ("token-a", 1, 1), ("cookie-b", 3, 2)])
    assert await get_json(client, "/cart", headers={"Authorization": "token-a"}) == [
        {"sku_id": 1, "count": 1}, {"sku_id": 2, "count": 3}]
    assert await get_json(client, "/cart", headers={"Cookie": "cart=cookie-b"}) == [{"sku_id": 3, "count": 2}]
    assert await get_json(client, "/cart/", headers={"Authorization": "someone-else"}) == []


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).status == 200
    ready = await get_json(client, "/readyz")
    assert ready == {"postgres": "ok", "redis": "ok", "invalidations": "subscribed"}


async def test_cache_redis_down_falls_through_to_postgres(aiohttp_client, settings, sample):
    app = create_app(settings.replace(cache_url=f"redis://127.0.0.1:{free_port()}/0"))
    client = await aiohttp_client(app)
    response = await client.get("/products/1/related")
    assert response.status == 200 and await response.read() == b"[3,2,3,1]"
    assert app[STATS].redis_errors >= 1


async def test_postgres_down_and_not_cached_is_503_with_retry_after(aiohttp_client, settings, sample):
    app = create_app(settings.replace(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/atelier"))
    client = await aiohttp_client(app)
    response = await client.get("/products/1")
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert set(orjson.loads(await response.read())) == {"error", "field"}
    assert (await client.get("/readyz")).status == 503


async def test_unknown_paths_answer_the_json_error_shape(client):
    for path in ("/no/such/thing", "/products/1/nothing", "/qa/answers"):
        body = await get_json(client, path, status=404)
        assert body["field"] is None and path in body["error"]
    assert (await client.get("/metrics")).status == 200

"""The writer against real Redis: validation, existence checks, receipts, idempotency, cart, outages."""

from __future__ import annotations

import orjson
import pytest

from infra.embedded import free_port
from tests.write_stack import ANSWER, QUESTION, REVIEW, prepare
from worker import protocol
from writer.app import create_app


@pytest.fixture
async def writer(aiohttp_client, settings, db, redis):
    await prepare(db, redis, settings)
    return await aiohttp_client(create_app(settings))


async def queued(redis) -> int:
    return await redis.zcard(protocol.QUEUE)


async def job_of(redis, response) -> dict:
    write_id = response.headers["Location"].removeprefix("/writes/")
    job = orjson.loads(await redis.get(protocol.JOB_PREFIX + write_id))
    assert job["f"] == protocol.APPLY_FUNCTION
    return job["a"][0]


def with_(base: dict, **changes) -> dict:
    body = dict(base)
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


BAD_REVIEWS = [
    (with_(REVIEW, product_id=...), 422, "product_id"),
    (with_(REVIEW, product_id=True), 422, "product_id"),
    (with_(REVIEW, product_id=1.5), 422, "product_id"),
    (with_(REVIEW, product_id="abc"), 422, "product_id"),
    (with_(REVIEW, product_id=404), 404, "product_id"),
    (with_(REVIEW, product_id=0), 404, "product_id"),
    (with_(REVIEW, product_id=2**40), 404, "product_id"),
    (with_(REVIEW, rating=0), 422, "rating"),
    (with_(REVIEW, rating=6), 422, "rating"),
    (with_(REVIEW, rating="5.0"), 422, "rating"),
    (with_(REVIEW, rating=...), 422, "rating"),
    (with_(REVIEW, summary="s" * 61), 422, "summary"),
    (with_(REVIEW, summary=5), 422, "summary"),
    (with_(REVIEW, body="b" * 49), 422, "body"),
    (with_(REVIEW, body="b" * 1001), 422, "body"),
    (with_(REVIEW, body=" " * 60), 422, "body"),
    (with_(REVIEW, body="nul\x00" * 20), 422, "body"),
    (with_(REVIEW, recommend="yes"), 422, "recommend"),
    (with_(REVIEW, recommend=...), 422, "recommend"),
    (with_(REVIEW, name=""), 422, "name"),
    (with_(REVIEW, name="n" * 61), 422, "name"),
    (with_(REVIEW, email="not-an-email"), 422, "email"),
    (with_(REVIEW, email="a" * 50 + "@example.com"), 422, "email"),
    (with_(REVIEW, photos=["ftp://x/y.jpg"]), 422, "photos"),
    (with_(REVIEW, photos="https://x/y.jpg"), 422, "photos"),
    (with_(REVIEW, photos=["https://x/y.jpg"] * 6), 422, "photos"),
    (with_(REVIEW, characteristics=...), 422, "characteristics"),
    (with_(REVIEW, characteristics=[]), 422, "characteristics"),
    (with_(REVIEW, characteristics={"1": 6}), 422, "characteristics"),
    (with_(REVIEW, characteristics={"fit": 3}), 422, "characteristics"),
    # Characteristic 1 belongs to product 1, not to product 3.
    (with_(REVIEW, product_id=3, characteristics={"1": 3}), 422, "characteristics"),
    (with_(REVIEW, characteristics={"1": 3, "99": 3}), 422, "characteristics"),
]


@pytest.mark.parametrize("body,status,field", BAD_REVIEWS)
async def test_bad_review_is_refused_and_nothing_is_queued(writer, redis, body, status, field):
    response = await writer.post("/reviews", json=body)
    assert response.status == status
    answer = await response.json()
    assert answer["field"] == field and answer["error"]
    assert await queued(redis) == 0


BAD_OTHERS = [
    ("post", "/qa/questions", with_(QUESTION, body=""), 422, "body"),
    ("post", "/qa/questions", with_(QUESTION, body="q" * 1001), 422, "body"),
    ("post", "/qa/questions", with_(QUESTION, name=...), 422, "name"),
    ("post", "/qa/questions", with_(QUESTION, email="x@y"), 422, "email"),
    ("post", "/qa/questions", with_(QUESTION, product_id=404), 404, "product_id"),
    ("post", "/qa/questions/404/answers", ANSWER, 404, "question_id"),
    ("post", "/qa/questions/abc/answers", ANSWER, 404, "question_id"),
    ("post", "/qa/questions/1/answers", with_(ANSWER, body=""), 422, "body"),
    ("post", "/qa/questions/1/answers", with_(ANSWER, photos=[1]), 422, "photos"),
    ("put", "/reviews/404/helpful", None, 404, "review_id"),
    ("put", "/reviews/-1/report", None, 404, "review_id"),
    ("put", "/qa/questions/404/helpful", None, 404, "question_id"),
    ("put", "/qa/answers/404/report", None, 404, "answer_id"),
    ("post", "/cart", {"sku_id": 404}, 404, "sku_id"),
    ("post", "/cart", {"sku": 1}, 422, "sku_id"),
]


@pytest.mark.parametrize("method,path,body,status,field", BAD_OTHERS)
async def test_bad_writes_are_refused_and_nothing_is_queued(writer, redis, method, path, body, status, field):
    response = await getattr(writer, method)(path, json=body)
    assert response.status == status
    answer = await response.json()
    assert answer["field"] == field and answer["error"]
    assert await queued(redis) == 0


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"product_id=1", b""])
async def test_malformed_post_bodies_are_400(writer, redis, raw):
    response = await writer.post("/reviews", data=raw, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["field"] is None
    assert await queued(redis) == 0


async def test_oversized_body_is_413(writer, redis):
    response = await writer.post("/reviews", json=with_(REVIEW, body="x" * 70_000))
    assert response.status == 413
    assert await response.json() == {"error": "request body larger than 64 KiB", "field": None}
    assert await queued(redis) == 0


async def test_review_is_queued_with_a_receipt(writer, redis):
    response = await writer.post("/reviews/", json=with_(REVIEW, unknown_key="ignored"))
    assert response.status == 201
    assert await response.text() == "Created"
    assert response.content_type == "text/plain"
    location = response.headers["Location"]
    assert location.startswith("/writes/")
    mutation = await job_of(redis, response)
    assert mutation["kind"] == "review" and mutation["product_id"] == 1 and mutation["summary"] == REVIEW["summary"]
    assert "unknown_key" not in mutation
    receipt = await writer.get(location)
    assert receipt.status == 200
    assert await receipt.json() == {"id": location.removeprefix("/writes/"), "status": "queued"}
    # Acknowledged jobs must never expire or be evicted.
    assert await redis.ttl(protocol.JOB_PREFIX + location.removeprefix("/writes/")) == -1


async def test_storefront_spellings_are_accepted(writer, redis):
    body = with_(REVIEW, product_id="1", rating="5", recommend="false", summary=..., photos=None,
                 characteristics={"1": "2"})
    response = await writer.post("/reviews", json=body)
    assert response.status == 201
    mutation = await job_of(redis, response)
    assert (mutation["product_id"], mutation["rating"], mutation["recommend"]) == (1, 5, False)
    assert (mutation["summary"], mutation["photos"], mutation["characteristics"]) == ("", [], {"1": 2})


@pytest.mark.parametrize("path", ["/reviews/1/helpful", "/reviews/5/report", "/qa/questions/1/helpful",
                                  "/qa/questions/2/report", "/qa/answers/3/helpful", "/qa/answers/1/report"])
async def test_votes_accept_an_empty_form_body(writer, redis, path):
    response = await writer.put(path, data=b"", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 204
    assert await response.read() == b""
    mutation = await job_of(redis, response)
    assert mutation["kind"] == "vote" and mutation["action"] == path.rsplit("/", 1)[1]


async def test_question_and_answer_are_queued(writer, redis):
    assert (await writer.post("/qa/questions", json=QUESTION)).status == 201
    response = await writer.post("/qa/questions/1/answers", json=with_(ANSWER, question_id=9))
    assert response.status == 201
    assert (await job_of(redis, response))["question_id"] == 1
    assert await queued(redis) == 2


async def test_repeated_idempotency_key_answers_the_first_answer(writer, redis):
    headers = {"Idempotency-Key": "abc-123"}
    first = await writer.post("/reviews", json=REVIEW, headers=headers)
    again = await writer.post("/reviews", json=REVIEW, headers=headers)
    assert first.status == again.status == 201
    assert first.headers["Location"] == again.headers["Location"]
    assert await queued(redis) == 1
    different = await writer.post("/reviews", json=with_(REVIEW, rating=1), headers=headers)
    assert different.status == 422
    assert (await different.json())["field"] == "Idempotency-Key"
    assert await queued(redis) == 1
    vote = {"Idempotency-Key": "vote-1"}
    assert (await writer.put("/reviews/1/helpful", headers=vote)).status == 204
    assert (await writer.put("/reviews/1/helpful", headers=vote)).status == 204
    assert await queued(redis) == 2


async def test_cart_sets_a_cookie_once_and_uses_authorization_when_sent(writer, redis):
    first = await writer.post("/cart", json={"sku_id": 1, "count": 7})
    assert first.status == 201
    token = first.cookies["cart"].value
    assert (await job_of(redis, first)) == {"kind": "cart", "cart_key": token, "sku_id": 1}
    # The test client keeps the cookie, as a browser would: the second add goes to the same cart.
    second = await writer.post("/cart", json={"sku_id": "2"})
    assert "cart" not in second.cookies
    assert (await job_of(redis, second))["cart_key"] == token
    third = await writer.post("/cart", json={"sku_id": 2}, headers={"Authorization": "Bearer shopper-7"})
    assert (await job_of(redis, third))["cart_key"] == "Bearer shopper-7"


async def test_unknown_write_receipt_is_404(writer):
    for write_id in ("0" * 32, "nope"):
        response = await writer.get(f"/writes/{write_id}")
        assert response.status == 404
        assert (await response.json())["field"] == "write_id"


async def test_health_and_readiness(writer):
    assert (await writer.get("/healthz")).status == 200
    assert (await writer.get("/readyz")).status == 200


async def test_redis_unreachable_is_503_with_retry_after(aiohttp_client, settings):
    dead = settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await aiohttp_client(create_app(dead))
    response = await client.post("/reviews", json=REVIEW)
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["error"]
    assert (await client.put("/reviews/1/helpful")).status == 503
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200

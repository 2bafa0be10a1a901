"""Every write, end to end: the writer app, a real arq worker, then the reader app's GETs.

Each test warms the reader's caches first (a GET before the write), so a stale local or Redis copy
would show; after the queue drains, the GET must show the write once the reader has heard the
worker's invalidation.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from reader.app import LOCAL
from reader.app import create_app as create_reader
from tests.write_stack import ANSWER, QUESTION, REVIEW, drain, prepare
from writer.app import create_app as create_writer


@pytest.fixture
async def apps(aiohttp_client, settings, db, redis):
    await prepare(db, redis, settings)
    writer = await aiohttp_client(create_writer(settings))
    reader_app = create_reader(settings)
    reader = await aiohttp_client(reader_app)
    for _ in range(500):
        if reader_app[LOCAL].trusted:
            break
        await asyncio.sleep(0.01)
    return writer, reader


async def get(reader, path: str, **kwargs):
    response = await reader.get(path, **kwargs)
    assert response.status == 200, (path, response.status, await response.text())
    return orjson.loads(await response.read())


async def shows(reader, path: str, predicate, **kwargs):
    """The GET's answer once `predicate` holds for it (the reader applies invalidations
    asynchronously, a few milliseconds after the worker published them)."""
    for _ in range(300):
        body = await get(reader, path, **kwargs)
        if predicate(body):
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"GET {path} never showed the write; last answer: {body}")


async def written(writer, response) -> dict:
    assert response.status in (201, 204), await response.text()
    return await (await writer.get(response.headers["Location"])).json()


async def test_new_review_is_listed_and_counted(apps, settings):
    writer, reader = apps
    before = await get(reader, "/reviews/meta?product_id=1")
    await get(reader, "/reviews?product_id=1&sort=newest")
    response = await writer.post("/reviews", json=REVIEW)
    await drain(settings)
    review_id = (await written(writer, response))["resource"]["review_id"]

    page = await shows(reader, "/reviews/?product_id=1&sort=newest&count=1",
                       lambda b: b["results"] and b["results"][0]["review_id"] == review_id)
    assert page["product"] == "1" and page["page"] == 0 and page["count"] == 1
    review = page["results"][0]
    assert set(review) == {"review_id", "rating", "summary", "recommend", "response", "body", "date",
                           "reviewer_name", "helpfulness", "photos"}
    assert (review["rating"], review["summary"], review["helpfulness"], review["response"]) == (4, REVIEW["summary"], 0, None)
    assert [p["url"] for p in review["photos"]] == REVIEW["photos"] and isinstance(review["photos"][0]["id"], int)
    meta = await shows(reader, "/reviews/meta?product_id=1", lambda b: b != before)
    assert int(meta["ratings"]["4"]) == int(before["ratings"]["4"]) + 1
    assert int(meta["recommended"]["true"]) == int(before["recommended"]["true"]) + 1


async def test_question_answer_and_helpful_votes_show(apps, settings):
    writer, reader = apps
    await get(reader, "/qa/questions?product_id=1&count=100")
    await get(reader, "/qa/questions/1/answers?count=100")
    asked = await writer.post("/qa/questions/", json=QUESTION)
    answered = await writer.post("/qa/questions/1/answers", json=ANSWER)
    for path in ("/qa/questions/1/helpful", "/qa/answers/2/helpful", "/reviews/3/helpful"):
        assert (await writer.put(path, data=b"", headers={"Content-Type": "application/x-www-form-urlencoded"})).status == 204
    await drain(settings)
    question_id = (await written(writer, asked))["resource"]["question_id"]
    answer_id = (await written(writer, answered))["resource"]["answer_id"]

    body = await shows(reader, "/qa/questions?product_id=1&count=100",
                       lambda b: question_id in {q["question_id"] for q in b["results"]})
    questions = {q["question_id"]: q for q in body["results"]}
    assert questions[question_id]["answers"] == {} and questions[question_id]["reported"] is False
    assert questions[1]["question_helpfulness"] == 6
    assert questions[1]["answers"][str(answer_id)]["photos"] == ANSWER["photos"]
    assert questions[1]["answers"]["2"]["helpfulness"] == 2
    answers = await shows(reader, "/qa/questions/1/answers?page=1&count=100",
                          lambda b: answer_id in {a["answer_id"] for a in b["results"]})
    assert answers["question"] == "1"
    new = next(a for a in answers["results"] if a["answer_id"] == answer_id)
    assert new["answerer_name"] == "lee" and [p["url"] for p in new["photos"]] == ANSWER["photos"]
    reviews = await shows(reader, "/reviews?product_id=1&sort=helpful&count=10",
                          lambda b: any(r["review_id"] == 3 and r["helpfulness"] == 1 for r in b["results"]))
    assert reviews["results"]


async def test_reports_hide_items_from_every_get(apps, settings):
    writer, reader = apps
    await get(reader, "/reviews?product_id=1")
    await get(reader, "/qa/questions?product_id=1")
    await get(reader, "/qa/questions/1/answers")
    for path in ("/reviews/4/report", "/qa/questions/4/report", "/qa/answers/3/report"):
        assert (await writer.put(path)).status == 204
    await drain(settings)
    await shows(reader, "/reviews?product_id=1&count=100",
                lambda b: 4 not in {r["review_id"] for r in b["results"]})
    meta = await shows(reader, "/reviews/meta?product_id=1", lambda b: b["ratings"].get("4") == "1")
    assert meta["recommended"] == {"false": "1", "true": "2"}
    questions = await shows(reader, "/qa/questions?product_id=1&count=100",
                            lambda b: 4 not in {q["question_id"] for q in b["results"]})
    assert "3" not in next(q for q in questions["results"] if q["question_id"] == 1)["answers"]
    await shows(reader, "/qa/questions/1/answers", lambda b: 3 not in {a["answer_id"] for a in b["results"]})


async def test_cart_adds_show_in_the_callers_cart(apps, settings):
    writer, reader = apps
    for sku in (2, 1, 2):
        assert (await writer.post("/cart", json={"sku_id": sku})).status == 201
    auth = {"Authorization": "Bearer shopper"}
    assert (await writer.post("/cart", json={"sku_id": 3, "extra": True}, headers=auth)).status == 201
    await drain(settings)
    # The test clients are separate sessions: hand the writer's cookie to the reader as a browser would.
    cookie = writer.session.cookie_jar.filter_cookies(writer.make_url("/"))["cart"].value
    assert await get(reader, "/cart", cookies={"cart": cookie}) == [{"sku_id": 1, "count": 1}, {"sku_id": 2, "count": 2}]
    assert await get(reader, "/cart", headers=auth) == [{"sku_id": 3, "count": 1}]

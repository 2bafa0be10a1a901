"""A tiny catalogue with every edge the read contract names, inserted row by row so the tests can
state the exact bytes each GET must answer.

Product 1 has everything (a feature with a null value and a repeated one, a style without photos
or SKUs, a SKU size listed twice, related ids with a duplicate and a self-reference, reported
reviews/questions/answers, a characteristic without scores); product 2 has nothing at all;
product 3 has seven reviews and seven questions for paging and sorting.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

from tests.conftest import truncate_all

D = dt.date


async def insert_sample(conn: asyncpg.Connection) -> None:
    await conn.executemany(
        "INSERT INTO products (id, name, slogan, description, category, default_price, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        [
            (1, "Camo Onesie", "Blend in to your crowd", 'The "best" onesie,\nreally', "Jackets", 140,
             dt.datetime(2021, 8, 13, 14, 37, 33, 145000, tzinfo=dt.timezone.utc)),
            (2, "Bright Future Sunglasses", "You've got to wear shades", "Where you're going", "Accessories", 69,
             dt.datetime(2021, 8, 13, 14, 37, 33, 145000, tzinfo=dt.timezone.utc)),
            (3, "Morning Joggers", "Make yourself a morning person", "Whether you're a morning person", "Pants",
             40, dt.datetime(2021, 8, 13, 14, 37, 33, 145000, tzinfo=dt.timezone.utc)),
        ],
    )
    await conn.executemany(
        "INSERT INTO features (id, product_id, feature, value) VALUES ($1, $2, $3, $4)",
        [(1, 1, "Fabric", "Canvas"), (2, 1, "Buttons", None), (3, 1, "Fabric", "Canvas"), (4, 3, "Fit", "Slim")],
    )
    await conn.executemany(
        "INSERT INTO styles (id, product_id, name, sale_price, original_price, default_style)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [(1, 1, "Forest Green & Black", None, 140, True), (2, 1, "Desert Brown", 100, 140, False)],
    )
    await conn.executemany(
        "INSERT INTO photos (id, style_id, url, thumbnail_url) VALUES ($1, $2, $3, $4)",
        [(2, 1, "https://img/2.jpg", "https://thumb/2.jpg"), (1, 1, "https://img/1.jpg", None)],
    )
    await conn.executemany(
        "INSERT INTO skus (id, style_id, size, quantity) VALUES ($1, $2, $3, $4)",
        [(1, 1, "XS", 8), (2, 1, "S", 16), (3, 1, "S", 0)],
    )
    await conn.executemany(
        "INSERT INTO related (id, current_product_id, related_product_id) VALUES ($1, $2, $3)",
        [(1, 1, 3), (2, 1, 2), (3, 1, 3), (4, 1, 1)],
    )
    reviews = [
        # id, product, rating, date, summary, body, recommend, reported, name, response, helpfulness
        (1, 1, 5, D(2019, 1, 1), "Great", "Loved it, truly", True, False, "ann", None, 2),
        (2, 1, 4, D(2020, 1, 1), "Good", "Quite good", True, False, "bob", "Thanks!", 2),
        (3, 1, 2, D(2020, 6, 1), "Meh", "Not for me", False, False, "cat", None, 0),
        (4, 1, 4, D(2018, 1, 1), "Fine", "Does the job", False, False, "dan", None, 7),
        (5, 1, 1, D(2021, 1, 1), "Spam", "Buy pills", False, True, "eve", None, 9),
    ]
    reviews += [
        (10 + i, 3, 1 + i % 5, D(2020, 1, 1 + i), f"r{i}", f"body {i}", i % 2 == 0, False, f"n{i}", None, i % 3)
        for i in range(7)
    ]
    await conn.executemany(
        "INSERT INTO reviews (id, product_id, rating, date, summary, body, recommend, reported, reviewer_name,"
        " reviewer_email, response, helpfulness) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'x@y.z', $10, $11)",
        reviews,
    )
    await conn.executemany(
        "INSERT INTO reviews_photos (id, review_id, url) VALUES ($1, $2, $3)",
        [(1, 1, "https://r/1.jpg"), (2, 1, "https://r/2.jpg"), (3, 5, "https://r/3.jpg")],
    )
    await conn.executemany(
        "INSERT INTO characteristics (id, product_id, name) VALUES ($1, $2, $3)",
        [(1, 1, "Fit"), (2, 1, "Length"), (3, 1, "Comfort")],
    )
    await conn.executemany(
        "INSERT INTO characteristic_reviews (id, characteristic_id, review_id, value) VALUES ($1, $2, $3, $4)",
        # Fit: 3, 3, 4, 3 over non-reported reviews (mean 3.25); the reported review's 1 is ignored.
        # Comfort: 1, 2, 2 (mean 1.666…); Length: no scores.
        [(1, 1, 1, 3), (2, 1, 2, 3), (3, 1, 3, 4), (4, 1, 4, 3), (5, 1, 5, 1),
         (6, 3, 1, 1), (7, 3, 2, 2), (8, 3, 3, 2)],
    )
    questions = [
        # id, product, body, date, asker, reported, helpful
        (1, 1, "Does it run small?", D(2019, 4, 14), "q1", False, 5),
        (2, 1, "Reported question", D(2019, 4, 15), "q2", True, 50),
        (3, 1, "Is it warm?", D(2019, 4, 16), "q3", False, 5),
        (4, 1, "Washable?", D(2019, 4, 17), "q4", False, 9),
    ]
    questions += [(10 + i, 3, f"question {i}", D(2020, 2, 1 + i), f"a{i}", False, i % 2) for i in range(7)]
    await conn.executemany(
        "INSERT INTO questions (id, product_id, body, date_written, asker_name, asker_email, reported, helpful)"
        " VALUES ($1, $2, $3, $4, $5, 'q@y.z', $6, $7)",
        questions,
    )
    await conn.executemany(
        "INSERT INTO answers (id, question_id, body, date_written, answerer_name, answerer_email, reported, helpful)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            (1, 1, "Reported answer", D(2019, 5, 1), "x", "x@y.z", True, 3),
            (2, 1, "Yes, size up", D(2019, 5, 2), "Seller", None, False, 1),
            (3, 1, "No, true to size", D(2019, 5, 3), "y", "y@y.z", False, 4),
            (4, 2, "Answer of a reported question", D(2019, 5, 4), "z", "z@y.z", False, 0),
        ],
    )
    await conn.executemany(
        "INSERT INTO answers_photos (id, answer_id, url) VALUES ($1, $2, $3)",
        [(2, 3, "https://a/2.jpg"), (1, 3, "https://a/1.jpg"), (3, 1, "https://a/3.jpg")],
    )


@pytest.fixture
async def sample(db, redis, cache_redis):
    """The sample catalogue in an otherwise empty database, with both Redis servers empty."""
    await truncate_all(db)
    await insert_sample(db)
    await redis.flushdb()
    await cache_redis.flushdb()
    return db


async def until(predicate, what: str) -> None:
    """Wait for a condition the app reaches asynchronously (subscription, an invalidation)."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")

"""`atelier check-drift`: finds tampered models, and finds none after a random workload drains."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from projections import cache, drift
from projections.kinds import Kind
from tests.write_stack import ANSWER, QUESTION, REVIEW, drain, prepare
from writer.app import create_app


@pytest.fixture
async def writer(aiohttp_client, settings, db, redis):
    await prepare(db, redis, settings)
    return await aiohttp_client(create_app(settings))


def check_drift_cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.to_env()}
    return subprocess.run([sys.executable, "-m", "infra.cli", "check-drift", *args], env=env,
                          capture_output=True, text=True, timeout=120)


async def test_fresh_build_has_no_drift_and_tampering_is_found(writer, db, cache_redis, settings):
    report = await drift.check(db, cache_redis)
    assert report.checked > 0 and report.mismatches == []
    assert check_drift_cli(settings).returncode == 0

    await db.execute("UPDATE rm_reviews SET body = convert_to('[]', 'UTF8') WHERE key = 1")
    await db.execute("INSERT INTO rm_answers (key, version, items, body) VALUES (999, 1, 0, '\\x5b5d')")
    row = await db.fetchrow("SELECT version, items, body FROM rm_meta WHERE key = 1")
    await cache_redis.hset(cache.hash_key(Kind.META, 1), cache.field(Kind.META),
                     cache.encode(cache.hold(cache.Row(Kind.META, 1, row["version"] - 1, b"{}", 0))))
    found = {(m.problem, m.kind, m.key) for m in (await drift.check(db, cache_redis)).mismatches}
    assert found == {("stale", "reviews", 1), ("orphan", "answers", 999), ("cache", "meta", 1)}
    result = check_drift_cli(settings, "--sample", "50")
    assert result.returncode == 1 and "3 mismatches" in result.stdout


async def test_no_drift_after_a_random_mixed_workload(writer, db, cache_redis, settings):
    rng = random.Random(7)
    reviews, questions, answers = [1, 2, 3, 4, 10, 11, 12], [1, 3, 4, 10, 11], [2, 3, 4]
    for _ in range(300):
        roll = rng.random()
        if roll < 0.15:
            await writer.post("/reviews", json={**REVIEW, "product_id": rng.choice([1, 2, 3]),
                                                "rating": rng.randint(1, 5), "characteristics": {}})
        elif roll < 0.25:
            await writer.post("/qa/questions", json={**QUESTION, "product_id": rng.choice([1, 2, 3])})
        elif roll < 0.35:
            await writer.post(f"/qa/questions/{rng.choice(questions)}/answers", json=ANSWER)
        elif roll < 0.85:
            target, ids = rng.choice([("reviews", reviews), ("qa/questions", questions), ("qa/answers", answers)])
            await writer.put(f"/{target}/{rng.choice(ids)}/helpful")
        else:
            target, ids = rng.choice([("reviews", reviews), ("qa/questions", questions), ("qa/answers", answers)])
            await writer.put(f"/{target}/{rng.choice(ids)}/report")
    # Question 2's only answer is reported too: its answers model must become empty, not stay stale.
    await writer.put("/qa/answers/4/report")
    await drain(settings)
    report = await drift.check(db, cache_redis)
    assert report.checked > 0
    assert report.mismatches == []

"""Applying a batch of writes to the source tables, set-based, inside the caller's transaction.

`apply_batch` runs one statement per kind of change for the whole batch (unnest of arrays), not
one per write, and reports what it touched as an `Affected` for `projections.refresh`. Every
write it settles gets a row in `applied_writes` in the same transaction: a write found there was
applied before (by a worker that died after COMMIT) and is not applied again; its first outcome is
reported instead, and what it touched is still listed so the caches get refreshed.

Votes on one row coalesce into one UPDATE (`helpfulness = helpfulness + n`). Rows are written in
id order so two batches touching the same rows lock them in the same order.

A write whose target vanished since the writer accepted it (the id state in Redis said it
existed) is rejected with a reason; nothing else fails at this point.
"""

from __future__ import annotations

import collections
import dataclasses

import asyncpg
import orjson

from projections.affected import Affected
from worker.protocol import AddToCart, Mutation, PostAnswer, PostQuestion, PostReview, Vote

# Today in UTC: the date new reviews, questions and answers carry.
_TODAY = "(now() AT TIME ZONE 'UTC')::date"


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str  # "applied" | "rejected"
    resource: dict | None = None
    error: str | None = None


def applied(resource: dict | None = None) -> Outcome:
    return Outcome("applied", resource)


def rejected(error: str) -> Outcome:
    return Outcome("rejected", error=error)


@dataclasses.dataclass
class BatchResult:
    outcomes: dict[str, Outcome] = dataclasses.field(default_factory=dict)
    affected: Affected = dataclasses.field(default_factory=Affected)
    # New ids by id-state kind ("reviews", "questions", "answers"), for the writer's existence checks.
    created: dict[str, list[int]] = dataclasses.field(default_factory=lambda: collections.defaultdict(list))


async def _new_ids(conn: asyncpg.Connection, table: str, count: int) -> list[int]:
    rows = await conn.fetch(
        "SELECT nextval(pg_get_serial_sequence($1, 'id')) AS id FROM generate_series(1, $2)", table, count
    )
    return sorted(r["id"] for r in rows)


async def _existing(conn: asyncpg.Connection, table: str, ids) -> dict[int, int | None]:
    """id → product_id (or None for tables without one) of the rows among `ids` that exist."""
    column = "product_id" if table in ("reviews", "questions", "characteristics") else "NULL::int"
    rows = await conn.fetch(f"SELECT id, {column} AS owner FROM {table} WHERE id = ANY($1::int[])", list(ids))
    return {r["id"]: r["owner"] for r in rows}


async def _photos(conn, table: str, owner: str, ids: list[int], accepted: list) -> None:
    rows = [(i, url) for i, (_, write) in zip(ids, accepted) for url in write.photos]
    if rows:
        await conn.execute(f"INSERT INTO {table} ({owner}, url) SELECT * FROM unnest($1::int[], $2::text[])", *zip(*rows))


def _keep(writes: list, valid, reason: str, result: BatchResult) -> list:
    """The writes for which `valid(command)` holds; the others are rejected with `reason`."""
    kept = []
    for write_id, write in writes:
        if valid(write):
            kept.append((write_id, write))
        else:
            result.outcomes[write_id] = rejected(reason)
    return kept


async def _reviews(conn, writes: list[tuple[str, PostReview]], result: BatchResult) -> None:
    products = await _existing(conn, "products", {w.product_id for _, w in writes})
    characteristics = await _existing(conn, "characteristics", {c for _, w in writes for c in w.characteristics})
    accepted = _keep(
        _keep(writes, lambda r: r.product_id in products, "product not found", result),
        lambda r: all(characteristics.get(c) == r.product_id for c in r.characteristics),
        "characteristic is not one of this product's",
        result,
    )
    if not accepted:
        return
    ids = await _new_ids(conn, "reviews", len(accepted))
    columns = list(zip(*[(i, r.product_id, r.rating, r.summary, r.body, r.recommend, r.name, r.email)
                         for i, (_, r) in zip(ids, accepted)]))
    await conn.execute(
        "INSERT INTO reviews (id, product_id, rating, date, summary, body, recommend, reviewer_name, reviewer_email) "
        f"SELECT i, p, r, {_TODAY}, s, b, rec, n, e FROM unnest($1::int[], $2::int[], $3::smallint[], $4::text[], "
        "$5::text[], $6::bool[], $7::text[], $8::text[]) AS v(i, p, r, s, b, rec, n, e)",
        *columns,
    )
    await _photos(conn, "reviews_photos", "review_id", ids, accepted)
    scores = [(c, i, v) for i, (_, r) in zip(ids, accepted) for c, v in sorted(r.characteristics.items())]
    if scores:
        await conn.execute(
            "INSERT INTO characteristic_reviews (characteristic_id, review_id, value) "
            "SELECT * FROM unnest($1::int[], $2::int[], $3::smallint[])",
            *zip(*scores),
        )
    for review_id, (write_id, review) in zip(ids, accepted):
        result.outcomes[write_id] = applied({"review_id": review_id})
        result.affected.review_products.add(review.product_id)
        result.created["reviews"].append(review_id)


async def _questions(conn, writes: list[tuple[str, PostQuestion]], result: BatchResult) -> None:
    products = await _existing(conn, "products", {w.product_id for _, w in writes})
    accepted = _keep(writes, lambda q: q.product_id in products, "product not found", result)
    if not accepted:
        return
    ids = await _new_ids(conn, "questions", len(accepted))
    await conn.execute(
        "INSERT INTO questions (id, product_id, body, date_written, asker_name, asker_email) "
        f"SELECT i, p, b, {_TODAY}, n, e FROM unnest($1::int[], $2::int[], $3::text[], $4::text[], $5::text[]) "
        "AS v(i, p, b, n, e)",
        *zip(*[(i, q.product_id, q.body, q.name, q.email) for i, (_, q) in zip(ids, accepted)]),
    )
    for question_id, (write_id, question) in zip(ids, accepted):
        result.outcomes[write_id] = applied({"question_id": question_id})
        result.affected.question_products.add(question.product_id)
        result.created["questions"].append(question_id)


async def _answers(conn, writes: list[tuple[str, PostAnswer]], result: BatchResult) -> None:
    questions = await _existing(conn, "questions", {w.question_id for _, w in writes})
    accepted = _keep(writes, lambda a: a.question_id in questions, "question not found", result)
    if not accepted:
        return
    ids = await _new_ids(conn, "answers", len(accepted))
    await conn.execute(
        "INSERT INTO answers (id, question_id, body, date_written, answerer_name, answerer_email) "
        f"SELECT i, q, b, {_TODAY}, n, e FROM unnest($1::int[], $2::int[], $3::text[], $4::text[], $5::text[]) "
        "AS v(i, q, b, n, e)",
        *zip(*[(i, a.question_id, a.body, a.name, a.email) for i, (_, a) in zip(ids, accepted)]),
    )
    await _photos(conn, "answers_photos", "answer_id", ids, accepted)
    for answer_id, (write_id, answer) in zip(ids, accepted):
        result.outcomes[write_id] = applied({"answer_id": answer_id})
        result.affected.answer_questions.add(answer.question_id)
        result.affected.question_products.add(questions[answer.question_id])
        result.created["answers"].append(answer_id)


# Per target: (table, helpful column, what RETURNING yields to find the affected read models).
_VOTE_SQL = {
    "review": (
        "UPDATE reviews r SET helpfulness = r.helpfulness + v.n FROM unnest($1::int[], $2::int[]) AS v(id, n) "
        "WHERE r.id = v.id RETURNING r.id, r.product_id AS product, NULL::int AS question",
        "UPDATE reviews SET reported = true WHERE id = ANY($1::int[]) "
        "RETURNING id, product_id AS product, NULL::int AS question",
    ),
    "question": (
        "UPDATE questions q SET helpful = q.helpful + v.n FROM unnest($1::int[], $2::int[]) AS v(id, n) "
        "WHERE q.id = v.id RETURNING q.id, q.product_id AS product, NULL::int AS question",
        "UPDATE questions SET reported = true WHERE id = ANY($1::int[]) "
        "RETURNING id, product_id AS product, NULL::int AS question",
    ),
    "answer": (
        "UPDATE answers a SET helpful = a.helpful + v.n FROM unnest($1::int[], $2::int[]) AS v(id, n), questions q "
        "WHERE a.id = v.id AND q.id = a.question_id RETURNING a.id, q.product_id AS product, q.id AS question",
        "UPDATE answers a SET reported = true FROM questions q WHERE a.id = ANY($1::int[]) AND q.id = a.question_id "
        "RETURNING a.id, q.product_id AS product, q.id AS question",
    ),
}


def _touch(affected: Affected, target: str, product: int, question: int | None, meta: bool = True) -> None:
    """Record the read models a vote reaches; a helpful vote on a review leaves the meta as it is."""
    if target == "review":
        (affected.review_products if meta else affected.review_lists).add(product)
    else:
        affected.question_products.add(product)
        if question is not None:
            affected.answer_questions.add(question)


async def _votes(conn, writes: list[tuple[str, Vote]], result: BatchResult) -> None:
    for target, (helpful_sql, report_sql) in _VOTE_SQL.items():
        helpful = collections.Counter(v.target_id for _, v in writes if v.target == target and v.action == "helpful")
        reports = sorted({v.target_id for _, v in writes if v.target == target and v.action == "report"})
        found: dict[tuple[int, str], tuple[int, int | None]] = {}
        if helpful:
            ids = sorted(helpful)
            rows = await conn.fetch(helpful_sql, ids, [helpful[i] for i in ids])
            found.update(((r["id"], "helpful"), (r["product"], r["question"])) for r in rows)
        if reports:
            rows = await conn.fetch(report_sql, reports)
            found.update(((r["id"], "report"), (r["product"], r["question"])) for r in rows)
        for write_id, vote in writes:
            if vote.target != target:
                continue
            where = found.get((vote.target_id, vote.action))
            if where:
                result.outcomes[write_id] = applied()
                _touch(result.affected, target, *where, meta=vote.action == "report")
            else:
                result.outcomes[write_id] = rejected(f"{target} not found")


async def _cart(conn, writes: list[tuple[str, AddToCart]], result: BatchResult) -> None:
    skus = await _existing(conn, "skus", {w.sku_id for _, w in writes})
    adds = collections.Counter()
    for write_id, add in _keep(writes, lambda a: a.sku_id in skus, "sku not found", result):
        adds[(add.cart_key, add.sku_id)] += 1
        result.outcomes[write_id] = applied()
    if adds:
        keys = sorted(adds)
        await conn.execute(
            "INSERT INTO cart_items (cart_key, sku_id, count) SELECT * FROM unnest($1::text[], $2::int[], $3::int[]) "
            "ON CONFLICT (cart_key, sku_id) DO UPDATE SET count = cart_items.count + EXCLUDED.count",
            [k for k, _ in keys], [s for _, s in keys], [adds[k] for k in keys],
        )


_APPLY = ((PostReview, _reviews), (PostQuestion, _questions), (PostAnswer, _answers), (Vote, _votes),
          (AddToCart, _cart))


async def _touched_by_replays(conn, writes: list[tuple[str, Mutation]], affected: Affected) -> None:
    """What writes applied by an earlier run touched, so their read models are refreshed again."""
    for _, write in writes:
        if isinstance(write, (PostReview, PostQuestion)):
            (affected.review_products if isinstance(write, PostReview) else affected.question_products).add(
                write.product_id
            )
    question_ids = {w.question_id for _, w in writes if isinstance(w, PostAnswer)}
    question_ids |= {w.target_id for _, w in writes if isinstance(w, Vote) and w.target == "question"}
    review_ids = {w.target_id for _, w in writes if isinstance(w, Vote) and w.target == "review"}
    answer_ids = {w.target_id for _, w in writes if isinstance(w, Vote) and w.target == "answer"}
    for row in await conn.fetch(
        "SELECT 'review' AS t, product_id AS product, NULL::int AS question FROM reviews WHERE id = ANY($1::int[]) "
        "UNION ALL SELECT 'question', product_id, id FROM questions WHERE id = ANY($2::int[]) "
        "UNION ALL SELECT 'answer', q.product_id, q.id FROM answers a JOIN questions q ON q.id = a.question_id "
        "WHERE a.id = ANY($3::int[])",
        list(review_ids), list(question_ids), list(answer_ids),
    ):
        _touch(affected, row["t"], row["product"], row["question"])


async def apply_batch(conn: asyncpg.Connection, writes: list[tuple[str, Mutation]]) -> BatchResult:
    """Apply `writes` ((write id, command) pairs, ids unique) inside the caller's transaction."""
    result = BatchResult()
    done = await conn.fetch(
        "SELECT write_id, status, resource, error FROM applied_writes WHERE write_id = ANY($1::uuid[])",
        [write_id for write_id, _ in writes],
    )
    for row in done:
        resource = orjson.loads(row["resource"]) if row["resource"] else None
        result.outcomes[row["write_id"].hex] = Outcome(row["status"], resource, row["error"])
    replays = [(i, w) for i, w in writes if i in result.outcomes]
    fresh = [(i, w) for i, w in writes if i not in result.outcomes]
    if replays:
        await _touched_by_replays(conn, replays, result.affected)
    for cls, apply in _APPLY:
        group = [(i, w) for i, w in fresh if isinstance(w, cls)]
        if group:
            await apply(conn, group, result)
    if fresh:
        await record_outcomes(conn, {i: result.outcomes[i] for i, _ in fresh})
    return result


async def record_outcomes(conn: asyncpg.Connection, outcomes: dict[str, Outcome]) -> None:
    """Remember settled writes. A concurrent run of the same write makes this a unique violation,
    which the caller treats as "retry": the retry then finds the write applied."""
    ids = list(outcomes)
    await conn.execute(
        "INSERT INTO applied_writes (write_id, status, resource, error) "
        "SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[])",
        ids,
        [outcomes[i].status for i in ids],
        [orjson.dumps(outcomes[i].resource).decode() if outcomes[i].resource else None for i in ids],
        [outcomes[i].error for i in ids],
    )

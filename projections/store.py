"""Read models in PostgreSQL: build one fresh, fetch a stored one, rebuild what a batch touched.

Concurrency: every rebuild first takes a transaction-scoped advisory lock per (kind, key), in one
sorted order. Under READ COMMITTED the INSERT that follows takes its snapshot only after the
locks are granted, so when two worker batches rebuild the same model the second one sees the
first one's committed source rows — without the lock, `INSERT … ON CONFLICT DO UPDATE` would
quietly write a body built from a snapshot older than the row it replaces. The version comes
from `nextval` inside that same INSERT, so a later rebuild always carries a larger version.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import asyncpg

from projections.affected import Affected
from projections.kinds import PRODUCT_KINDS, TABLES, Kind, select_for_keys


class Row(NamedTuple):
    kind: Kind
    key: int
    version: int
    body: bytes
    items: int = 0


def _upsert_sql(kind: Kind, on_conflict: str) -> str:
    return (
        f"INSERT INTO {TABLES[kind]} (key, version, items, body) "
        f"SELECT key, nextval('read_model_version'), items, convert_to(body, 'UTF8') "
        f"FROM ({select_for_keys(kind)}) AS fresh "
        f"ON CONFLICT (key) DO {on_conflict} RETURNING key, version, items, body"
    )


_BUILD = {kind: f"SELECT convert_to(body, 'UTF8') FROM ({select_for_keys(kind)}) AS fresh" for kind in Kind}
_REPLACE = {
    kind: _upsert_sql(kind, "UPDATE SET version = EXCLUDED.version, items = EXCLUDED.items, body = EXCLUDED.body")
    for kind in Kind
}
_FILL = {kind: _upsert_sql(kind, "NOTHING") for kind in Kind}
_STORED = {kind: f"SELECT version, items, body FROM {TABLES[kind]} WHERE key = $1" for kind in Kind}
_PRODUCT_BUNDLE = " UNION ALL ".join(
    f"SELECT {int(kind)} AS kind, version, items, body FROM {TABLES[kind]} WHERE key = $1" for kind in PRODUCT_KINDS
)
_LOCK = (
    "SELECT pg_advisory_xact_lock(k, x) FROM unnest($1::int[], $2::int[]) AS t(k, x) ORDER BY k, x"
)
_PRODUCTS_OF_QUESTIONS = "SELECT DISTINCT product_id FROM questions WHERE id = ANY($1::int[])"


async def build_one(conn: asyncpg.Connection, kind: Kind, key: int) -> bytes | None:
    """The body a fresh build from the source tables gives now (nothing stored); None if no such key."""
    return await conn.fetchval(_BUILD[Kind(kind)], [key])


async def stored(conn: asyncpg.Connection, kind: Kind, key: int) -> Row | None:
    record = await conn.fetchrow(_STORED[kind], key)
    if record is None:
        return None
    return Row(kind, key, record["version"], record["body"], record["items"])


async def stored_product_bundle(conn: asyncpg.Connection, product_id: int) -> dict[Kind, Row]:
    """Every stored model of one product in one round trip (the storefront asks for all of them)."""
    records = await conn.fetch(_PRODUCT_BUNDLE, product_id)
    return {
        Kind(r["kind"]): Row(Kind(r["kind"]), product_id, r["version"], r["body"], r["items"]) for r in records
    }


async def _lock(conn: asyncpg.Connection, targets: dict[Kind, set[int]]) -> None:
    kinds, keys = [], []
    for kind, wanted in targets.items():
        for key in wanted:
            kinds.append(int(kind))
            keys.append(key)
    if keys:
        await conn.execute(_LOCK, kinds, keys)


async def _write(conn: asyncpg.Connection, statements: dict[Kind, str], targets: dict[Kind, set[int]]) -> list[Row]:
    rows: list[Row] = []
    for kind, keys in targets.items():
        if not keys:
            continue
        for r in await conn.fetch(statements[kind], sorted(keys)):
            rows.append(Row(kind, r["key"], r["version"], r["body"], r["items"]))
    return rows


async def build_and_store(conn: asyncpg.Connection, kind: Kind, keys: Iterable[int]) -> list[Row]:
    """A reader's miss: the stored rows of these keys, building (and storing) those that have none.

    A row that appears meanwhile (a worker's refresh, another reader) is kept, never replaced:
    it is at least as new as what this call built. Keys that do not exist are left out.
    """
    wanted = sorted(set(keys))
    found = {key: row for key in wanted if (row := await stored(conn, kind, key)) is not None}
    missing = {key for key in wanted if key not in found}
    if missing:
        async with conn.transaction():
            await _lock(conn, {kind: missing})
            await _write(conn, _FILL, {kind: missing})
            for key in sorted(missing):
                if (row := await stored(conn, kind, key)) is not None:
                    found[key] = row
    return [found[key] for key in wanted if key in found]


def targets_of(affected: Affected, products_of_questions: Iterable[int] = ()) -> dict[Kind, set[int]]:
    """Which models a batch's changes reach. An answer shows up nested in its product's questions."""
    return {
        Kind.REVIEWS: set(affected.review_products) | set(affected.review_lists),
        Kind.META: set(affected.review_products),
        Kind.QUESTIONS: set(affected.question_products) | set(products_of_questions),
        Kind.ANSWERS: set(affected.answer_questions),
    }


async def refresh(conn: asyncpg.Connection, affected: Affected) -> list[Row]:
    """Rebuild, inside the caller's transaction, every model the batch touched; return the new rows.

    The caller publishes the returned rows to Redis only after its transaction commits.
    """
    if not affected:
        return []
    products_of_questions: list[int] = []
    if affected.answer_questions:
        products_of_questions = [
            r[0] for r in await conn.fetch(_PRODUCTS_OF_QUESTIONS, sorted(affected.answer_questions))
        ]
    targets = targets_of(affected, products_of_questions)
    await _lock(conn, targets)
    return await _write(conn, _REPLACE, targets)

"""Build every read model of the whole data set, right after a load.

One INSERT … SELECT per kind, each the set-based rendering of the same query the per-id builder
uses (projections/kinds.py), so bulk and per-id bodies are byte-identical by construction.

Per kind, in one transaction: TRUNCATE (a new relfilenode, so under wal_level=minimal the fill
skips WAL), drop the primary key, fill, re-create the key (one sorted index build is far cheaper
than 1M index insertions), ANALYZE. Readers keep answering from the old rows until the commit.
PostgreSQL never runs an INSERT … SELECT with a parallel plan, so with a `dsn` two kinds are built
at once on two connections to keep both cores of the box busy.

Every row of a bulk build carries the same version, one value of the shared sequence taken at the
start: any later refresh takes a larger one. Copies of the previous build may still sit in Redis
and in readers: follow a rebuild with `projections.cache.forget_all(redis)`.
"""

from __future__ import annotations

import asyncio
import sys
import time

import asyncpg

from projections.kinds import TABLES, Kind, select_everything

WORK_MEM = "256MB"  # per sort/hash node, two connections: well inside the box's 24 GiB

# Heaviest first, so two connections finish close together.
ORDER = (Kind.QUESTIONS, Kind.REVIEWS, Kind.STYLES, Kind.ANSWERS, Kind.META, Kind.PRODUCT, Kind.RELATED)


def _fill_sql(kind: Kind) -> str:
    return (
        f"INSERT INTO {TABLES[kind]} (key, version, items, body) "
        f"SELECT key, $1::bigint, items, convert_to(body, 'UTF8') FROM ({select_everything(kind)}) AS fresh"
    )


async def build_kind(conn: asyncpg.Connection, kind: Kind, version: int) -> int:
    """Replace every row of one kind; return the number of rows built."""
    table = TABLES[kind]
    async with conn.transaction():
        # Whole-table sorts and hashes of JSON text: give them memory rather than temp files.
        await conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        await conn.execute(f"TRUNCATE {table}")
        await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_pkey")
        status = await conn.execute(_fill_sql(kind), version)
        await conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (key)")
    await conn.execute(f"ANALYZE {table}")
    return int(status.split()[-1])


async def _drain(conn: asyncpg.Connection, queue: list[Kind], version: int, progress: bool, report: dict) -> None:
    while queue:
        kind = queue.pop(0)
        started = time.perf_counter()
        rows = await build_kind(conn, kind, version)
        seconds = time.perf_counter() - started
        report[kind.name.lower()] = {"rows": rows, "seconds": round(seconds, 2)}
        if progress:
            print(f"read model {kind.name.lower():<10} {rows:>10,} rows in {seconds:7.1f}s", file=sys.stderr, flush=True)


async def build_all(conn: asyncpg.Connection, progress: bool = True, dsn: str | None = None) -> dict:
    """Build every model of every kind; with `dsn`, a second connection builds kinds alongside.

    Returns per-kind rows and seconds plus the total, for the loader's report.
    """
    started = time.perf_counter()
    version = await conn.fetchval("SELECT nextval('read_model_version')")
    queue = list(ORDER)
    report: dict = {}
    if dsn is None:
        await _drain(conn, queue, version, progress, report)
    else:
        other = await asyncpg.connect(dsn)
        try:
            await asyncio.gather(
                _drain(conn, queue, version, progress, report),
                _drain(other, queue, version, progress, report),
            )
        finally:
            await other.close()
    report["total_seconds"] = round(time.perf_counter() - started, 2)
    if progress:
        print(f"read models built in {report['total_seconds']:.1f}s", file=sys.stderr, flush=True)
    return report

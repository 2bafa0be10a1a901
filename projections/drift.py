"""`atelier check-drift [--sample N]`: prove that stored read models equal a fresh rebuild.

Consistency rule 2: once the queue has drained, every stored model (the PostgreSQL row and the
copy Redis holds) is byte for byte what `projections.build_one` builds from the source tables now.
The check walks every key of every kind (or N random keys per kind) and reports:
- `stale`: the stored body differs from a fresh build;
- `orphan`: a body is stored for a key that a fresh build no longer has (e.g. its last item
  was reported) — readers would still serve it;
- `cache`: Redis holds a different version or body than PostgreSQL (a cache that is merely
  absent is fine: it is filled on the next read).
Keys without a stored row are not drift: the reader builds and stores those on the first miss.
Exit status 1 if anything was found, so scripts and CI can assert on it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys

import asyncpg
import orjson
import redis.asyncio as aioredis

from projections import cache
from projections.kinds import TABLES, Kind, select_for_keys

CHUNK = 500


@dataclasses.dataclass
class Mismatch:
    problem: str  # stale | orphan | cache
    kind: str
    key: int
    detail: str = ""


@dataclasses.dataclass
class Report:
    checked: int = 0
    mismatches: list[Mismatch] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return {"checked": self.checked, "mismatches": [dataclasses.asdict(m) for m in self.mismatches]}


async def _keys(conn: asyncpg.Connection, kind: Kind, sample: int | None) -> list[int]:
    if sample is None:
        return [r[0] for r in await conn.fetch(f"SELECT key FROM {TABLES[kind]} ORDER BY key")]
    return [r[0] for r in await conn.fetch(f"SELECT key FROM {TABLES[kind]} ORDER BY random() LIMIT $1", sample)]


def _fresh_sql(kind: Kind) -> str:
    # The query `store.build_one` runs, for a chunk of keys at once instead of one key per round trip.
    return f"SELECT key, convert_to(body, 'UTF8') AS body FROM ({select_for_keys(kind)}) AS fresh"


async def _check_chunk(conn, redis, kind: Kind, keys: list[int], report: Report) -> None:
    # One REPEATABLE READ snapshot: the stored rows and the fresh build see the same source rows.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        stored = {r["key"]: r for r in await conn.fetch(
            f"SELECT key, version, body FROM {TABLES[kind]} WHERE key = ANY($1::int[])", keys)}
        fresh = {r["key"]: r["body"] for r in await conn.fetch(_fresh_sql(kind), keys)}
    held = {}
    if redis is not None:
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(cache.hash_key(kind, key), cache.field(kind))
            held = dict(zip(keys, await pipe.execute()))
    name = kind.name.lower()
    for key in keys:
        row = stored.get(key)
        if row is None:  # removed since the keys were listed
            continue
        report.checked += 1
        if key not in fresh:
            report.mismatches.append(Mismatch("orphan", name, key, "no fresh body for a stored row"))
        elif fresh[key] != row["body"]:
            report.mismatches.append(Mismatch("stale", name, key, f"stored version {row['version']}"))
        if held.get(key) is not None:
            copy = cache.decode(kind, key, held[key])
            if (copy.version, copy.body) != (row["version"], row["body"]):
                report.mismatches.append(
                    Mismatch("cache", name, key, f"redis version {copy.version}, stored {row['version']}"))


async def check(conn: asyncpg.Connection, redis: aioredis.Redis | None, sample: int | None = None) -> Report:
    """Compare the stored models of every kind (all keys, or `sample` random keys per kind)."""
    report = Report()
    for kind in Kind:
        keys = await _keys(conn, kind, sample)
        for start in range(0, len(keys), CHUNK):
            await _check_chunk(conn, redis, kind, keys[start:start + CHUNK], report)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample", type=int, metavar="N", help="check N random keys per kind instead of all")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


async def _run(args: argparse.Namespace) -> int:
    from infra.services import ensure_services
    from infra.settings import Settings

    services = ensure_services(Settings.from_env())
    conn = await asyncpg.connect(services.database_url)
    redis = aioredis.from_url(services.cache_url)
    try:
        report = await check(conn, redis, args.sample)
    finally:
        await conn.close()
        await redis.aclose()
    if args.json:
        print(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        for m in report.mismatches[:50]:
            print(f"{m.problem:<7} {m.kind:<10} {m.key:>10}  {m.detail}")
        print(f"checked {report.checked} stored models: {len(report.mismatches)} mismatches")
    return 1 if report.mismatches else 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))

"""`atelier load DIR`: bulk-load the 14 CSV files of the data set, then build the read models.

The data set is ~62M rows and the box has two cores, so the work is set-based SQL in two
parallel steps at a time, in phases (each timed in the report):

1. prepare — a database that already holds source rows is refused unless `--replace`, which
   empties the source tables, the read models and the tables pointing at source rows (carts).
   Every key, index and foreign key of the source tables is saved and dropped, and the CHECKs
   of the tables loaded directly (schema/load_sql.py).
2. copy — each file goes as it is through PostgreSQL's own CSV parser (COPY … FREEZE: frozen
   rows, no hint bits to set later, no WAL under wal_level=minimal). A file whose every field
   COPY can parse into its column (one record per line, no dates, no `null` words: 38 of the
   62M rows) goes straight into its table. The others go into an UNLOGGED staging table plus a
   record number, numbers and booleans typed by COPY. A file with an unparseable value is staged
   again as text, where SQL finds and reports it; a file COPY refuses for its structure is split
   by Python into good and bad records; photos.csv is repaired line by line on the way
   (schema/csv_sources.py explains both).
3. validate/insert — per table, parents before children: one pass records every row that may
   not go in with its first reason (missing value, unparseable number or date, a CHECK of the
   schema, an orphan foreign key). Staged files: the rest is relayed into the emptied table as
   binary COPY … FREEZE (see `_relay`). Direct files: the rejected rows are deleted.
   Each table's primary key is built right away (a duplicated id keeps the first record in file
   order; the later ones are rejected), so its children's orphan checks read the parent's ids
   from the key's index rather than from the whole table.
4. index — the CHECKs, other indexes and foreign keys, from the saved definitions.
5. rejects — the rejects file is written.
6. analyze — ANALYZE, and every identity sequence set so the next insert takes max(id) + 1.
7. projections / idstate — the read models' bulk build and the writer's id state in Redis.

Both editions load unchanged: dates as epoch milliseconds or "YYYY-MM-DD", booleans as
true/false or 1/0 (even mixed in one file), headers with or without a space after each comma.
The bare word `null` is NULL in styles.sale_price, features.value, reviews.response and
answers.answerer_email. Loaded text is kept as it is (long review summaries, short bodies).

Bad rows never stop a load: each goes to the rejects file (JSON lines, or CSV when the name ends
in .csv) with its file, physical line number, reason and the record, and the summary counts them
per file and reason. A child of a rejected row is rejected in turn as an orphan.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import csv
import importlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import asyncpg
from tqdm import tqdm

from schema.csv_sources import (
    SOURCES, BadRecord, Source, SourceError, check_folder, estimate_records, file_chunks, read_lines,
    record_text, split_records,
)
from schema.load_sql import (
    REJECTS, SCHEMA, SavedDdl, TablePlan, drop_schema, ensure_schema, ident, plan_table, raw_columns, restored,
    save_and_drop, saved_ddl,
)

SOURCE_TABLES = tuple(s.table for s in SOURCES)


class LoadRefused(Exception):
    """The target database is not in a state this load may touch."""


@dataclass
class FileReport:
    file: str
    table: str
    rows_loaded: int = 0
    rejected: Counter = field(default_factory=Counter)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())


@dataclass
class LoadReport:
    files: dict[str, FileReport]
    phases: dict[str, float] = field(default_factory=dict)
    rejects_path: Path | None = None
    projections: dict | None = None
    idstate: dict | None = None
    skipped: list[str] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files.values())

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files.values())

    def to_dict(self) -> dict:
        return {
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "phases_seconds": {k: round(v, 2) for k, v in self.phases.items()},
            "files": {
                name: {"table": f.table, "rows_loaded": f.rows_loaded, "rows_rejected": f.rows_rejected,
                       "rejected_by_reason": dict(sorted(f.rejected.items()))}
                for name, f in self.files.items()
            },
            "rejects_file": str(self.rejects_path) if self.rejects_path else None,
            "projections": self.projections,
            "idstate": self.idstate,
            "skipped": self.skipped,
        }

    def summary(self) -> str:
        lines = [f"{'file':<28}{'loaded':>14}{'rejected':>10}"]
        for f in self.files.values():
            lines.append(f"{f.file:<28}{f.rows_loaded:>14,}{f.rows_rejected:>10,}")
            for reason, count in sorted(f.rejected.items()):
                lines.append(f"    {count:>8,}  {reason}")
        lines.append(f"{'total':<28}{self.rows_loaded:>14,}{self.rows_rejected:>10,}")
        lines.append("phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.phases.items()))
        if self.rejects_path:
            lines.append(f"rejected records: {self.rejects_path}")
        lines.extend(self.skipped)
        return "\n".join(lines)


@dataclass
class Reject:
    file: str
    line: int
    reason: str
    record: str


@dataclass
class _File:
    """One source file on its way in."""

    source: Source
    path: Path
    plan: TablePlan
    report: FileReport
    copied: int = 0                      # records COPY took in
    first_lines: object = None           # set when Python split the file: line of each staged record
    bad: list[BadRecord] = field(default_factory=list)
    rejects: list["Reject"] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.path.stat().st_size


# --- two connections, a queue of jobs -------------------------------------------------------------

@dataclass
class Job:
    name: str
    work: Callable[[list[asyncpg.Connection]], Awaitable[None]]
    weight: float = 0.0
    after: frozenset[str] = frozenset()
    exclusive: frozenset[str] = frozenset()   # tables locked against every other job
    shared: frozenset[str] = frozenset()      # tables only exclusive jobs must keep away from


async def run_jobs(workers: list[list[asyncpg.Connection]], jobs: list[Job]) -> None:
    """Run jobs on the workers (each a pair of connections), heaviest ready job first, honouring
    order and table locks.

    Jobs that would only wait for each other's table locks are never started together, so no
    connection sits blocked while another job could run.
    """
    pending = sorted(jobs, key=lambda j: -j.weight)
    known = {j.name for j in jobs}
    done: set[str] = set()
    running: list[Job] = []
    changed = asyncio.Condition()

    def ready(job: Job) -> bool:
        if not (job.after & known) <= done:
            return False
        return not any(job.exclusive & (o.exclusive | o.shared) or job.shared & o.exclusive for o in running)

    async def worker(conns: list[asyncpg.Connection]) -> None:
        while True:
            async with changed:
                while True:
                    if not pending:
                        return
                    job = next((j for j in pending if ready(j)), None)
                    if job is not None:
                        break
                    if not running:
                        raise RuntimeError(f"jobs that can never run: {[j.name for j in pending]}")
                    await changed.wait()
                pending.remove(job)
                running.append(job)
            try:
                await job.work(conns)
            finally:
                async with changed:
                    running.remove(job)
                    done.add(job.name)
                    changed.notify_all()

    try:
        async with asyncio.TaskGroup() as group:
            for conns in workers:
                group.create_task(worker(conns))
    except* Exception as failed:
        raise failed.exceptions[0] from None


# --- progress -------------------------------------------------------------------------------------

class _Progress:
    """A bar per file being copied (rows, rows/s, ETA) and one line per finished step, on stderr.

    Bars only on a terminal: in a log file their redraws would be noise, the lines suffice.
    """

    def __init__(self, enabled: bool, slots: int):
        self.enabled = enabled
        self.bars = enabled and sys.stderr.isatty()
        self.free = list(range(slots))

    def say(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text, file=sys.stderr)

    @contextmanager
    def bar(self, label: str, estimate: int):
        slot = self.free.pop(0) if self.free else 0
        bar = tqdm(total=estimate, desc=f"{label:<27}", unit=" rows", unit_scale=True, position=slot,
                   leave=False, file=sys.stderr, disable=not self.bars, mininterval=0.5, dynamic_ncols=True)
        try:
            yield bar
        finally:
            bar.close()
            self.free.append(slot)
            self.free.sort()


# --- the phases -----------------------------------------------------------------------------------

async def _connect(database_url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(database_url)
    # Hash joins against a parent's ids stay in memory; staged tables are scanned in file order.
    await conn.execute("SET work_mem = '1GB'; SET synchronize_seqscans = off; SET statement_timeout = 0")
    return conn


async def _read_model_tables() -> list[str]:
    try:
        kinds = importlib.import_module("projections.kinds")
    except ModuleNotFoundError as exc:
        if exc.name not in ("projections.kinds", "projections"):
            raise
        return []
    return list(kinds.TABLES.values())


async def _prepare_target(conn: asyncpg.Connection, replace: bool, progress: _Progress) -> None:
    holding = [t for t in SOURCE_TABLES if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {t})")]
    if holding and not replace:
        raise LoadRefused(
            f"the database already holds data ({', '.join(holding)}); "
            "run again with --replace to empty the source tables and read models first"
        )
    if not replace:
        return
    referencing = await conn.fetch(
        "SELECT DISTINCT conrelid::regclass::text AS t FROM pg_constraint WHERE contype = 'f' "
        "AND confrelid = ANY($1::regclass[]) AND NOT conrelid = ANY($1::regclass[])",
        list(SOURCE_TABLES),
    )
    existing = {r["t"] for r in await conn.fetch("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'")}
    models = [t for t in await _read_model_tables() if t in existing]
    tables = [*SOURCE_TABLES, *models, *sorted(r["t"] for r in referencing)]
    await conn.execute(f"TRUNCATE {', '.join(tables)}")
    progress.say(f"--replace: emptied {', '.join(tables)}")


# COPY refuses these for the file's structure (field count, quoting, encoding), not for one value.
_STRUCTURAL = (asyncpg.BadCopyFileFormatError, asyncpg.CharacterNotInRepertoireError,
               asyncpg.UntranslatableCharacterError)


def _copy_job(item: _File, progress: _Progress) -> Job:
    async def copy(conn: asyncpg.Connection, plan: TablePlan, source, header: bool) -> int:
        async with conn.transaction():
            if plan.direct:
                # Straight into the emptied table: FREEZE, and no WAL under wal_level=minimal.
                await conn.execute(f"TRUNCATE {item.source.table}")
                not_null_text = [c.name for c in plan.columns if c.is_text and c.not_null]
                status = await conn.copy_to_table(item.source.table, source=source, format="csv", header=header,
                                                  columns=[c.name for c in plan.columns], freeze=True,
                                                  force_not_null=not_null_text or None)
            else:
                await conn.execute(plan.create_staging_sql())
                status = await conn.copy_to_table(f"s_{item.source.table}", schema_name=SCHEMA, source=source,
                                                  columns=raw_columns(item.source), format="csv", header=header,
                                                  freeze=True)
        return int(status.split()[-1])

    def fallback(plan: TablePlan, exc: Exception) -> TablePlan | None:
        """What to try after COPY refused `plan`: staged typed, staged as text, or Python's split."""
        if isinstance(exc, _STRUCTURAL) or not (plan.direct or plan.typed):
            return None
        if plan.direct and isinstance(exc, asyncpg.IntegrityConstraintViolationError) and item.plan.typed:
            return item.plan  # an empty required field: typed staging reports it as missing
        return item.plan.staged_as_text()

    async def work(conns: list[asyncpg.Connection]) -> None:
        conn, source = conns[0], item.source
        started = time.perf_counter()
        rows = None
        # First straight into the table (or staged with numbers and booleans typed by COPY
        # itself, parsed once, in C); a file with an unparseable value somewhere is staged again
        # as text, where SQL finds and reports it.
        plan = item.plan.loaded_directly() if item.plan.direct_capable else item.plan
        while plan is not None:
            try:
                with progress.bar(source.file, estimate_records(item.path)) as bar:
                    chunks = file_chunks(item.path, repair=source.one_record_per_line,
                                         on_chunk=lambda b: bar.update(b.count(b"\n")))
                    rows = await copy(conn, plan, chunks, header=True)
                item.plan = plan
                break
            except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
                plan = fallback(plan, exc)
                if plan is not None:
                    progress.say(f"{source.file}: {exc}; staging it {'typed' if plan.typed else 'as text'} "
                                 "to set such values aside")
        if rows is None:
            # Wrong number of fields, an unterminated quote, bytes that are not UTF-8: only
            # Python can tell the good records from the bad ones, so it re-reads this file.
            progress.say(f"{source.file}: COPY refused its structure; separating its bad records")
            item.plan = item.plan.staged_as_text()
            handle, name = tempfile.mkstemp(prefix=f"atelier-{source.name}-", suffix=".csv")
            os.close(handle)
            good = Path(name)
            try:
                split = await asyncio.to_thread(split_records, item.path, good, len(source.columns),
                                                one_record_per_line=source.one_record_per_line)
                rows = await copy(conn, item.plan, good, header=False)
            finally:
                good.unlink(missing_ok=True)
            item.first_lines, item.bad = split.first_lines, split.bad
            for bad in split.bad:
                item.report.rejected[bad.reason] += 1
        item.copied = rows
        seconds = time.perf_counter() - started
        how = "into the table" if item.plan.direct else "staged typed" if item.plan.typed else "staged as text"
        progress.say(f"copied   {source.file:<27}{rows:>12,} records in {seconds:6.1f}s "
                     f"({rows / max(seconds, 1e-9):>10,.0f} rows/s), {how}")

    return Job(f"copy:{item.source.table}", work, weight=item.size, exclusive=frozenset({item.source.table}))


def _insert_job(item: _File, keys: list[SavedDdl], files: dict[str, "_File"], progress: _Progress) -> Job:
    """Check, insert, then build the table's primary key at once: its children's orphan checks
    then read the parent's ids from the key's index instead of scanning the whole (wide) table."""

    async def work(conns: list[asyncpg.Connection]) -> None:
        conn, plan, table = conns[0], item.plan, item.source.table
        started = time.perf_counter()
        rejected = 0
        sql = plan.reject_sql()
        if sql:
            rejected = int((await conn.execute(sql)).split()[-1])
        checked = time.perf_counter()
        if plan.direct:
            await _keep_good_rows_in_place(conn, item, keys)
        else:
            item.report.rows_loaded = await _relay(conn, plan.select_sql(skip_rejects=rejected > 0),
                                                   conns[-1], table, [c.name for c in plan.columns])
            for key in keys:
                await _build(conn, key, files, progress)
            # Every reject of this file is known now: keep them, and free the staged copy at once.
            item.rejects = await _rejects(conn, item)
            await conn.execute(f"DROP TABLE {plan.staging}")
        counted = await conn.fetch(f"SELECT reason, count(*) AS n FROM {REJECTS} WHERE tbl = $1 GROUP BY 1", table)
        for row in counted:
            item.report.rejected[row["reason"]] += row["n"]
        rejected = sum(row["n"] for row in counted)
        progress.say(f"inserted {table:<27}{item.report.rows_loaded:>12,} rows in {time.perf_counter() - started:6.1f}s"
                     f" (checks {checked - started:.1f}s)"
                     f"{f', {rejected:,} rejected' if rejected else ''}")

    parents = frozenset(f"insert:{fk.parent}" for fk in item.plan.parents if fk.parent != item.source.table)
    return Job(f"insert:{item.source.table}", work, weight=item.size, after=parents,
               exclusive=frozenset({item.source.table}))


async def _relay(source: asyncpg.Connection, query: str, target: asyncpg.Connection, table: str,
                 columns: list[str]) -> int:
    """Rows of `query` into `table` as COPY … FREEZE in binary, from one connection to the other.

    INSERT … SELECT would be simpler, but its rows carry no hint bits: the first scan after the
    load (an index build) then rewrites every page, and with data checksums on (PostgreSQL 18's
    default) logs each one to WAL — more than doubling the cost of the insert. COPY FREEZE writes
    frozen rows and the visibility map at once; with the TRUNCATE in the same transaction and
    wal_level=minimal it writes no WAL either.
    """
    chunks: asyncio.Queue = asyncio.Queue(maxsize=8)

    async def sink(chunk: bytes) -> None:
        await chunks.put(bytes(chunk))

    async def produce() -> None:
        try:
            await source.copy_from_query(query, output=sink, format="binary")
        finally:
            await chunks.put(None)

    async def stream():
        while (chunk := await chunks.get()) is not None:
            yield chunk

    async with target.transaction():
        await target.execute(f"TRUNCATE {table}")
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(produce())
                copied = group.create_task(target.copy_to_table(table, source=stream(), columns=columns,
                                                                format="binary", freeze=True))
        except* Exception as failed:
            raise failed.exceptions[0] from None
    return int(copied.result().split()[-1])


async def _keep_good_rows_in_place(conn: asyncpg.Connection, item: _File, keys: list[SavedDdl]) -> None:
    """A file loaded straight into its table: reject duplicates too, note every rejected record
    with its line, delete those rows, and build the keys."""
    table = item.source.table
    waiting = []
    for key in keys:
        try:
            await conn.execute(key.create_sql())
            await restored(conn, key)
        except asyncpg.UniqueViolationError:
            if len(key.columns) != 1:
                raise
            waiting.append(key)
            await _reject_duplicates_in_place(conn, item, key.columns[0])
    item.rejects = await _rejects(conn, item)
    tids = [r["tid"] for r in await conn.fetch(f"SELECT tid FROM {REJECTS} WHERE tbl = $1", table)]
    await conn.execute(f"DELETE FROM {table} WHERE ctid = ANY($1::tid[])", tids)
    for key in waiting:
        await conn.execute(key.create_sql())
        await restored(conn, key)
    item.report.rows_loaded = item.copied - len(tids)


async def _reject_duplicates_in_place(conn: asyncpg.Connection, item: _File, key: str) -> None:
    """Keep the first row (file order) of each duplicated key among the rows not yet rejected."""
    table = item.source.table
    gone = {r["tid"] for r in await conn.fetch(f"SELECT tid FROM {REJECTS} WHERE tbl = $1", table)}
    seen, later = set(), []
    for row in await conn.fetch(item.plan.duplicate_rows_sql(key)):
        if row["tid"] in gone:
            continue
        if row["key"] in seen:
            later.append((table, 0, row["tid"], f"duplicate {key}"))
        seen.add(row["key"])
    await conn.executemany(f"INSERT INTO {REJECTS} (tbl, rec, tid, reason) VALUES ($1, $2, $3, $4)", later)


async def _dedupe(conn: asyncpg.Connection, item: _File, key: str) -> int:
    """Keep the first record (file order) of each duplicated key, reject the others; return how many."""
    table, plan = item.source.table, item.plan
    dups = [r[0] for r in await conn.fetch(f"SELECT {ident(key)} FROM {table} GROUP BY 1 HAVING count(*) > 1")]
    keep: dict = {}
    later = []
    for row in await conn.fetch(plan.key_sql(key), dups):
        if row["key"] in keep:
            later.append((row["rec"], row["tid"]))
        else:
            keep[row["key"]] = row["rec"]
    reason = f"duplicate {key}"
    async with conn.transaction():
        await conn.executemany(f"INSERT INTO {REJECTS} (tbl, rec, tid, reason) VALUES ($1, $2, $3, $4)",
                               [(table, rec, tid, reason) for rec, tid in later])
        await conn.execute(f"DELETE FROM {table} WHERE {ident(key)} = ANY($1)", dups)
        await conn.execute(plan.reinsert_sql(), list(keep.values()))
    item.report.rows_loaded -= len(later)
    return len(later)


async def _build(conn: asyncpg.Connection, item: SavedDdl, files: dict[str, _File], progress: _Progress) -> None:
    """Re-create one saved key, index or foreign key; a key refused for duplicates is deduplicated."""
    started = time.perf_counter()
    try:
        await conn.execute(item.create_sql())
    except asyncpg.UniqueViolationError:
        source_file = files.get(item.table)
        if source_file is None or len(item.columns) != 1:
            raise
        dropped = await _dedupe(conn, source_file, item.columns[0])
        progress.say(f"{item.table}: {dropped:,} rows with a duplicate {item.columns[0]} rejected")
        await conn.execute(item.create_sql())
    await restored(conn, item)
    progress.say(f"built    {item.name:<40} in {time.perf_counter() - started:6.1f}s")


def _ddl_jobs(saved: list[SavedDdl], files: dict[str, _File], progress: _Progress) -> list[Job]:
    rows = {t: f.report.rows_loaded for t, f in files.items()}
    keys_of: dict[str, set[str]] = {}
    for item in saved:
        if item.kind in ("p", "u"):
            keys_of.setdefault(item.table, set()).add(f"ddl:{item.table}:{item.name}")
    jobs = []
    for item in saved:
        def make(item: SavedDdl = item):
            async def work(conns: list[asyncpg.Connection]) -> None:
                await _build(conns[0], item, files, progress)
            return work

        weight = rows.get(item.table, 0)
        name = f"ddl:{item.table}:{item.name}"
        if item.kind in ("p", "u"):
            jobs.append(Job(name, make(), weight=weight * 2, exclusive=frozenset({item.table})))
        elif item.kind == "c":
            jobs.append(Job(name, make(), weight=weight, after=frozenset(keys_of.get(item.table, ())),
                            exclusive=frozenset({item.table})))
        elif item.kind == "i":
            jobs.append(Job(name, make(), weight=weight, after=frozenset(keys_of.get(item.table, ())),
                            shared=frozenset({item.table})))
        else:
            after = keys_of.get(item.table, set()) | keys_of.get(item.parent or "", set())
            jobs.append(Job(name, make(), weight=weight / 2, after=frozenset(after),
                            exclusive=frozenset({item.table, item.parent or ""})))
    return jobs


async def _rejects(conn: asyncpg.Connection, item: _File) -> list[Reject]:
    """Every rejected record of one file with its physical line number."""
    found = [Reject(item.source.file, b.line, b.reason, b.raw.rstrip("\r\n")) for b in item.bad]
    rows = await conn.fetch(f"SELECT rec, tid, reason FROM {REJECTS} WHERE tbl = $1 ORDER BY rec, tid",
                            item.source.table)
    if not rows:
        return found
    staged = {r["ctid"]: r for r in await conn.fetch(item.plan.staged_rows_sql(), [r["tid"] for r in rows])}
    line_of = await _line_numbers(conn, item, rows)
    columns = raw_columns(item.source)
    raw: dict[int, str] = {}
    if item.source.one_record_per_line:
        # The record exactly as the file has it (typed columns would come back re-formatted).
        raw = await asyncio.to_thread(read_lines, item.path, {line_of(row) for row in rows})
    for row in rows:
        line = line_of(row)
        text = raw.get(line) or record_text([staged[row["tid"]][c] for c in columns])
        found.append(Reject(item.source.file, line, row["reason"], text))
    return found


async def _line_numbers(conn: asyncpg.Connection, item: _File, rows: list) -> Callable[[asyncpg.Record], int]:
    """How to turn a rejected row (its record number or row address) into its file line."""
    if item.plan.direct:
        # Record number = rows of the pages before + offset in the page (COPY fills pages in
        # order); the rows between consecutive pages holding rejects are counted once each.
        before, total, previous = {}, 0, 0
        for page in sorted({r["tid"][0] for r in rows}):
            total += await conn.fetchval(item.plan.rows_between_sql(), (previous, 0), (page, 0))
            before[page], previous = total, page
        return lambda row: before[row["tid"][0]] + row["tid"][1] + 1
    if item.first_lines is not None:
        return lambda row: item.first_lines[row["rec"] - 1]
    # Line of record N = N + 1 (the header) + the line breaks inside the records before it.
    sql = item.plan.newline_sql()
    breaks = await conn.fetch(sql, max(r["rec"] for r in rows) + 1) if sql else []
    recs = [b["rec"] for b in breaks]
    before_rec = [0]
    for b in breaks:
        before_rec.append(before_rec[-1] + b["breaks"])
    return lambda row: row["rec"] + 1 + before_rec[bisect.bisect_left(recs, row["rec"])]


def _write_rejects(path: Path, rejects: list[Reject]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        if path.suffix == ".csv":
            writer = csv.writer(handle)
            writer.writerow(["file", "line", "reason", "record"])
            for r in rejects:
                writer.writerow([r.file, r.line, r.reason, r.record])
        else:
            for r in rejects:
                handle.write(json.dumps({"file": r.file, "line": r.line, "reason": r.reason, "record": r.record},
                                        ensure_ascii=False) + "\n")


def _analyze_job(table: str) -> Job:
    async def work(conns: list[asyncpg.Connection]) -> None:
        conn = conns[0]
        await conn.execute(f"ANALYZE {table}")
        for row in await conn.fetch("SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass "
                                    "AND attidentity <> '' AND NOT attisdropped", table):
            column = ident(row["attname"])
            # is_called = false: the next insert takes exactly max + 1 (or 1 in an empty table).
            await conn.execute(f"SELECT setval(pg_get_serial_sequence($1, $2), coalesce(max({column}), 0) + 1, false) "
                               f"FROM {table}", table, row["attname"])

    return Job(f"analyze:{table}", work)


def _optional(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None


async def _projections(conn: asyncpg.Connection, database_url: str, redis_url: str | None, cache_url: str | None,
                       report: LoadReport, progress: _Progress, timed) -> None:
    bulk = _optional("projections.bulk")
    if bulk is None:
        report.skipped.append("read models: projections.bulk is not in this build, skipped")
    else:
        with timed("projections"):
            report.projections = await bulk.build_all(conn, progress=progress.enabled, dsn=database_url)
    idstate = _optional("projections.idstate")
    if idstate is None:
        report.skipped.append("id state: projections.idstate is not in this build, skipped")
    elif redis_url is None:
        report.skipped.append("id state: no Redis URL given, not published")
    else:
        with timed("idstate"):
            report.idstate = await idstate.publish_all(conn, redis_url)
        cache = _optional("projections.cache")
        if cache is not None:
            import redis.asyncio as aioredis

            client = aioredis.from_url(cache_url or redis_url)
            try:
                await cache.forget_all(client)
            finally:
                await client.aclose()
    for line in report.skipped:
        progress.say(line)


async def load(database_url: str, data_dir: Path | str, *, replace: bool = False,
               rejects_path: Path | str | None = None, progress: bool = True, jobs: int = 2,
               redis_url: str | None = None, cache_url: str | None = None) -> LoadReport:
    """Load every CSV file of `data_dir`; see the module docstring for how."""
    data_dir = Path(data_dir)
    paths = check_folder(data_dir)
    rejects_path = Path(rejects_path) if rejects_path else Path.cwd() / "load-rejects.jsonl"
    report = LoadReport({s.file: FileReport(s.file, s.table) for s in SOURCES})
    shown = _Progress(progress, max(1, jobs))

    @contextmanager
    def timed(phase: str):
        started = time.perf_counter()
        shown.say(f"-- {phase}")
        try:
            yield
        finally:
            report.phases[phase] = report.phases.get(phase, 0.0) + time.perf_counter() - started

    # Each worker holds two connections: the second receives the relayed rows of the insert step.
    conns = [await _connect(database_url) for _ in range(2 * max(1, jobs))]
    workers = [conns[n:n + 2] for n in range(0, len(conns), 2)]
    main = conns[0]
    restored_all = True
    try:
        with timed("prepare"):
            await _prepare_target(main, replace, shown)
            await ensure_schema(main)
            files = {}
            for source in SOURCES:
                plan = await plan_table(main, source)
                files[source.table] = _File(source, paths[source.file], plan, report.files[source.file])
            restored_all = False
            direct = {t for t, f in files.items() if f.plan.direct_capable}
            constraints = await save_and_drop(main, list(SOURCE_TABLES), checks_of=direct)
            for item in files.values():
                item.plan = item.plan.with_constraints(constraints)
            saved = await saved_ddl(main)  # what was dropped, to re-create
        with timed("copy"):
            await run_jobs(workers, [_copy_job(f, shown) for f in files.values()])
        with timed("validate_insert"):
            keys = {t: [d for d in saved if d.kind in ("p", "u") and d.table == t] for t in files}
            await run_jobs(workers, [_insert_job(f, keys[t], files, shown) for t, f in files.items()])
        with timed("index"):
            rest = [d for d in saved if not (d.kind in ("p", "u") and d.table in files)]
            await run_jobs(workers, _ddl_jobs(rest, files, shown))
        with timed("rejects"):
            found = [r for item in files.values() for r in sorted(item.rejects, key=lambda r: r.line)]
            if found:
                _write_rejects(rejects_path, found)
                report.rejects_path = rejects_path
        with timed("analyze"):
            await run_jobs(workers, [_analyze_job(t) for t in SOURCE_TABLES])
            await drop_schema(main)
            restored_all = True
        await _projections(main, database_url, redis_url, cache_url, report, shown, timed)
    except Exception as exc:
        if not restored_all:
            exc.add_note("The load stopped half way: keys, indexes and foreign keys of the source tables not yet "
                         f"rebuilt are listed in {SCHEMA}.saved_ddl; `atelier load --replace` rebuilds them.")
        raise
    finally:
        for conn in conns:
            await conn.close()
    return report


# --- the command ----------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", metavar="DIR", type=Path, help="folder holding the 14 CSV files")
    parser.add_argument("--replace", action="store_true",
                        help="empty the source tables and read models first (refused otherwise when data exists)")
    parser.add_argument("--rejects", type=Path, default=None, metavar="FILE",
                        help="where rejected records go: JSON lines, or CSV if FILE ends in .csv "
                             "(default ./load-rejects.jsonl)")
    parser.add_argument("--jobs", type=int, default=2, metavar="N",
                        help="steps run side by side (default 2, one per core); each holds two connections, "
                             "the second receiving the rows it relays")
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the summary")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the report as JSON")


def run(args: argparse.Namespace) -> int:
    from infra.services import ensure_services
    from infra.settings import Settings

    services = ensure_services(Settings.from_env())
    from schema.migrate import migrate_url

    asyncio.run(migrate_url(services.database_url))
    try:
        report = asyncio.run(load(services.database_url, args.data_dir, replace=args.replace,
                                  rejects_path=args.rejects, progress=not args.quiet, jobs=args.jobs,
                                  redis_url=services.redis_url, cache_url=services.cache_url))
    except (LoadRefused, SourceError, OSError) as exc:
        print(f"atelier load: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 0

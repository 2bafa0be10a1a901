"""The SQL of a bulk load, derived from the catalogue so the schema stays defined only in migrations.

Column types, NOT NULL, CHECK constraints and foreign keys are read from PostgreSQL, and each
file's validation and insert queries are built from them: a new CHECK in a migration becomes a
new reject reason without touching the loader.

Indexes, primary keys and foreign keys of the source tables (and the CHECKs of the tables COPY
fills directly) are dropped before the load and re-created after it from their saved catalogue
definitions (pg_get_indexdef / pg_get_constraintdef). The definitions are kept in `atelier_load.saved_ddl` until they are back,
so a load that dies half way leaves them on record and the next load restores them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import asyncpg

from schema.csv_sources import Source

SCHEMA = "atelier_load"
REJECTS = f"{SCHEMA}.rejects"
SAVED_DDL = f"{SCHEMA}.saved_ddl"

# Dates come as epoch milliseconds (current edition) or "YYYY-MM-DD" (older edition). Only
# those: PostgreSQL alone would also take 'yesterday' or 'epoch'. Regular expressions cost
# ~2 µs a row here, so the tests are made of cheaper string functions.
_EPOCH_MS_LAST = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def _epoch_ms(value: str) -> str:
    return f"pg_input_is_valid({value}, 'bigint')"


def _iso_day(value: str) -> str:
    return (f"length({value}) = 10 AND substr({value}, 5, 1) = '-' AND substr({value}, 8, 1) = '-' "
            f"AND pg_input_is_valid({value}, 'date')")


_TEXT_TYPES = ("text", "character varying")


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def staging_table(source: Source) -> str:
    return f"{SCHEMA}.{ident('s_' + source.table)}"


def raw_columns(source: Source) -> list[str]:
    return [f"c{i}" for i in range(1, len(source.columns) + 1)]


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class ColumnPlan:
    raw: str        # staging column
    name: str       # table column
    type: str       # format_type() of the table column
    not_null: bool
    null_word: bool
    # Staged in its final type, parsed by COPY itself (see TablePlan); otherwise staged as text.
    staged_typed: bool = False

    @property
    def copy_typed(self) -> bool:
        """Whether COPY can parse this column straight into its type (dates have two formats)."""
        return not (self.is_text or self.type == "date" or self.null_word)

    @property
    def staged_type(self) -> str:
        return self.type if self.staged_typed else "text"

    @property
    def value(self) -> str:
        """The raw text with the bare word `null` turned into NULL where the data set uses it."""
        return f"NULLIF(s.{self.raw}, 'null')" if self.null_word else f"s.{self.raw}"

    @property
    def is_text(self) -> bool:
        return self.type.startswith(_TEXT_TYPES)

    def checked(self) -> str:
        """The typed value, or NULL when the text does not parse (never an error)."""
        return self._typed(validate=True)

    def cast(self) -> str:
        """The typed value of a row already validated (cheaper than `checked`)."""
        return self._typed(validate=False)

    def _typed(self, validate: bool) -> str:
        value = self.value
        if self.staged_typed:
            if validate and self.type.startswith("numeric"):
                return f"CASE WHEN {value} NOT IN ('NaN', 'Infinity', '-Infinity') THEN {value} END"
            return value
        if self.is_text:
            return f"COALESCE({value}, '')" if self.not_null else value
        if self.type == "date":
            day = f"date '1970-01-01' + ({value}::bigint / 86400000)::integer"
            if validate:
                return (f"CASE WHEN {_epoch_ms(value)} THEN CASE WHEN {value}::bigint BETWEEN 0 AND {_EPOCH_MS_LAST} "
                        f"THEN {day} END WHEN {_iso_day(value)} THEN {value}::date END")
            return f"CASE WHEN {_epoch_ms(value)} THEN {day} ELSE {value}::date END"
        if not validate:
            return f"{value}::{self.type}"
        valid = f"pg_input_is_valid({value}, {literal(self.type)})"
        if self.type.startswith("numeric"):
            # numeric accepts NaN and ±Infinity, which compare as valid to every CHECK; no price is.
            valid += f" AND {value}::{self.type} NOT IN ('NaN', 'Infinity', '-Infinity')"
        return f"CASE WHEN {valid} THEN {value}::{self.type} END"

    def problems(self) -> list[tuple[str, str]]:
        """(condition over the checked row `v`, reason) pairs, in the order they are reported."""
        if self.is_text:
            return []
        raw = f"v.{self.raw}"
        if self.staged_typed:  # COPY parsed it: it can only be missing (or a NaN price)
            found = [(f"{raw} IS NULL", f"{self.name}: missing")] if self.not_null else []
            if self.type.startswith("numeric"):
                found.append((f"{raw} IS NOT NULL AND v.{ident(self.name)} IS NULL",
                              f"{self.name}: not a valid {self.type}"))
            return found
        present = f"NULLIF({raw}, 'null') IS NOT NULL" if self.null_word else f"{raw} IS NOT NULL"
        found = []
        if self.not_null:
            found.append((f"NOT ({present})", f"{self.name}: missing"))
        what = "date (epoch ms or YYYY-MM-DD)" if self.type == "date" else self.type
        found.append((f"{present} AND v.{ident(self.name)} IS NULL", f"{self.name}: not a valid {what}"))
        return found


@dataclass(frozen=True)
class TablePlan:
    """How one file becomes rows of its table.

    Staged (the general case): COPY into `atelier_load.s_<table>`, check there, relay the good
    rows into the table. Direct (a file whose every field COPY can parse into its column as it
    is, one record per line): COPY straight into the table, check the rows in place and delete
    the few rejected ones — the staging round trip is skipped for most of the data set's rows.
    """

    source: Source
    columns: tuple[ColumnPlan, ...]
    checks: tuple[tuple[str, str], ...] = ()      # (constraint name, expression over typed columns)
    parents: tuple[ForeignKey, ...] = ()          # foreign keys to check for orphans
    direct: bool = False

    @property
    def direct_capable(self) -> bool:
        return self.source.one_record_per_line and all(
            c.copy_typed or (c.is_text and not c.null_word) for c in self.columns)

    def loaded_directly(self) -> "TablePlan":
        typed = tuple(dataclasses.replace(c, staged_typed=c.copy_typed) for c in self.columns)
        return dataclasses.replace(self, direct=True, columns=typed)

    def with_constraints(self, saved: list["SavedDdl"]) -> "TablePlan":
        """The CHECKs and foreign keys (to source tables) this table's rows must satisfy."""
        mine = [d for d in saved if d.table == self.source.table]
        checks = tuple((d.name, d.check_expression()) for d in mine if d.kind == "c")
        parents = tuple(d.foreign_key() for d in mine if d.kind == "f")
        return dataclasses.replace(self, checks=checks, parents=parents)

    @property
    def rows(self) -> str:
        """Where the rows to check are, as (rec, row_tid, c1 … cN): the staged copy or the table itself."""
        raws = raw_columns(self.source)
        if self.direct:
            cols = ", ".join(f"{ident(c.name)} AS {c.raw}" for c in self.columns)
            return f"(SELECT 0::bigint AS rec, ctid AS row_tid, {cols} FROM {self.source.table})"
        return f"(SELECT rec, ctid AS row_tid, {', '.join(raws)} FROM {self.staging})"

    @property
    def staging(self) -> str:
        return staging_table(self.source)

    @property
    def typed(self) -> bool:
        return any(c.staged_typed for c in self.columns)

    def staged_as_text(self) -> "TablePlan":
        """The same plan with every column staged as text: for a file COPY could not type."""
        as_text = tuple(dataclasses.replace(c, staged_typed=False) for c in self.columns)
        return dataclasses.replace(self, columns=as_text, direct=False)

    def create_staging_sql(self) -> str:
        cols = ", ".join(f"{c.raw} {c.staged_type}" for c in self.columns)
        return (f"DROP TABLE IF EXISTS {self.staging}; "
                f"CREATE UNLOGGED TABLE {self.staging} (rec bigint GENERATED ALWAYS AS IDENTITY, {cols})")

    def reject_sql(self) -> str:
        """One pass over the staged rows: record every row that may not go in, with its first reason."""
        typed = ", ".join(f"{c.checked()} AS {ident(c.name)}" for c in self.columns)
        raws = ", ".join(f"s.{c.raw}" for c in self.columns)
        whens = [f"WHEN {cond} THEN {literal(reason)}" for c in self.columns for cond, reason in c.problems()]
        whens += [f"WHEN NOT v.k{n} THEN {literal('check ' + name + ' failed')}"
                  for n, (name, _) in enumerate(self.checks)]
        checks = "".join(f", ({expr}) AS k{n}" for n, (_, expr) in enumerate(self.checks))
        joins = []
        for n, fk in enumerate(self.parents):
            alias = f"p{n}"
            on = " AND ".join(f"{alias}.{ident(pc)} = v.{ident(c)}" for c, pc in zip(fk.columns, fk.parent_columns))
            joins.append(f"LEFT JOIN {fk.parent} {alias} ON {on}")
            nulls = " AND ".join(f"v.{ident(c)} IS NOT NULL" for c in fk.columns)
            first = ident(fk.parent_columns[0])
            reason = f"orphan: {', '.join(fk.columns)} not in {fk.parent}"
            whens.append(f"WHEN {nulls} AND {alias}.{first} IS NULL THEN {literal(reason)}")
        if not whens:
            return ""
        # CHECK expressions from the catalogue are evaluated where the typed columns carry the
        # table's column names and nothing else is in scope, so they apply as they are.
        # OFFSET 0 keeps the typed row a subquery of its own: each value is parsed once, not
        # once per reference (flattened, every `v.x` would repeat the whole CASE).
        return (
            f"INSERT INTO {REJECTS} (tbl, rec, tid, reason) "
            f"SELECT DISTINCT ON (tid) {literal(self.source.table)}, rec, tid, reason FROM ("
            f" SELECT v.rec, v.tid, CASE {' '.join(whens)} END AS reason"
            f" FROM (SELECT t.*{checks} FROM (SELECT s.rec, s.row_tid AS tid, {raws}, {typed} FROM {self.rows} s"
            f" OFFSET 0) t) v"
            f" {' '.join(joins)}"
            f") checked WHERE reason IS NOT NULL ORDER BY tid"
        )

    def select_sql(self, skip_rejects: bool) -> str:
        """The staged rows as typed table rows, in file order, minus the rejected ones."""
        values = ", ".join(c.cast() for c in self.columns)
        where = ""
        if skip_rejects:
            where = (f" WHERE NOT EXISTS (SELECT 1 FROM {REJECTS} r"
                     f" WHERE r.tbl = {literal(self.source.table)} AND r.rec = s.rec)")
        return f"SELECT {values} FROM {self.staging} s{where}"

    def reinsert_sql(self) -> str:
        """Insert chosen staged records again (the kept copy of a duplicated key)."""
        names = ", ".join(ident(c.name) for c in self.columns)
        return (f"INSERT INTO {self.source.table} ({names}) {self.select_sql(False)} "
                f"WHERE s.rec = ANY($1::bigint[])")

    def key_sql(self, key: str) -> str:
        """Staged records, in file order, whose validated `key` is one of $1 (to sort out duplicates)."""
        column = next(c for c in self.columns if c.name == key)
        return (f"SELECT s.rec, s.ctid AS tid, {column.checked()} AS key FROM {self.staging} s "
                f"WHERE {column.checked()} = ANY($1) AND NOT EXISTS (SELECT 1 FROM {REJECTS} r "
                f"WHERE r.tbl = {literal(self.source.table)} AND r.rec = s.rec) ORDER BY s.rec")

    def newline_sql(self) -> str | None:
        """Records up to $1 whose fields hold line breaks, and how many (to turn records into lines);
        None when no staged field can hold one."""
        raws = [c.raw for c in self.columns if not c.staged_typed]
        if not raws:
            return None
        count = " + ".join(f"coalesce(length({c}) - length(replace({c}, E'\\n', '')), 0)" for c in raws)
        found = " OR ".join(f"strpos({c}, E'\\n') > 0" for c in raws)
        return f"SELECT rec, {count} AS breaks FROM {self.staging} WHERE rec < $1 AND ({found}) ORDER BY rec"

    def staged_rows_sql(self) -> str:
        """Staged (or directly loaded) records by row address ($1, a tid[]): a TID scan, however
        large the table."""
        raws = ", ".join(f"s.{c}::text AS {c}" for c in raw_columns(self.source))
        return f"SELECT s.row_tid AS ctid, {raws} FROM {self.rows} s WHERE s.row_tid = ANY($1::tid[])"

    def rows_between_sql(self) -> str:
        """Rows of a directly loaded table from page $1 up to (not including) page $2: a TID range
        scan that only counts. COPY fills pages in file order, so a row's record number is the
        rows of the pages before it plus its offset in its page."""
        return f"SELECT count(*) FROM {self.source.table} WHERE ctid >= $1::tid AND ctid < $2::tid"

    def duplicate_rows_sql(self, key: str) -> str:
        """Rows of a directly loaded table sharing a `key` value, in file order."""
        return (f"SELECT ctid AS tid, {ident(key)} AS key FROM {self.source.table} WHERE {ident(key)} IN "
                f"(SELECT {ident(key)} FROM {self.source.table} GROUP BY 1 HAVING count(*) > 1) ORDER BY ctid")


async def plan_table(conn: asyncpg.Connection, source: Source) -> TablePlan:
    """The file's columns as the catalogue types them; constraints come from `with_constraints`."""
    rows = await conn.fetch(
        "SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull FROM pg_attribute "
        "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
        source.table,
    )
    catalog = {r["attname"]: r for r in rows}
    missing = [c for c in source.columns if c not in catalog]
    if missing:
        raise RuntimeError(f"table {source.table} has no column {', '.join(missing)} (migrations not applied?)")
    columns = tuple(
        ColumnPlan(raw, name, catalog[name]["type"], catalog[name]["attnotnull"], name in source.null_words)
        for raw, name in zip(raw_columns(source), source.columns)
    )
    return TablePlan(source, tuple(dataclasses.replace(c, staged_typed=c.copy_typed) for c in columns))


# --- dropping and restoring keys, indexes and foreign keys ------------------------------------

_DDL_ORDER = {"p": 0, "u": 1, "c": 2, "i": 3, "f": 4}


@dataclass(frozen=True)
class SavedDdl:
    kind: str                 # p primary key, u unique, c check, i index, f foreign key
    table: str
    name: str
    definition: str
    columns: tuple[str, ...] = ()
    parent: str | None = None
    parent_columns: tuple[str, ...] = ()

    def create_sql(self) -> str:
        if self.kind == "i":
            return self.definition
        return f"ALTER TABLE {self.table} ADD CONSTRAINT {ident(self.name)} {self.definition}"

    def drop_sql(self) -> str:
        if self.kind == "i":
            return f"DROP INDEX IF EXISTS {self.name}"
        return f"ALTER TABLE {self.table} DROP CONSTRAINT IF EXISTS {ident(self.name)}"

    def foreign_key(self) -> ForeignKey:
        return ForeignKey(self.name, self.table, self.columns, self.parent or "", self.parent_columns)

    def check_expression(self) -> str:
        return self.definition.removeprefix("CHECK ").removesuffix(" NOT VALID")


_CATALOG_DDL = """
WITH tables AS (SELECT unnest($1::text[])::regclass AS oid)
SELECT c.contype AS kind, c.conrelid::regclass::text AS tbl, c.conname AS name,
       pg_get_constraintdef(c.oid) AS def,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)::text[] AS cols,
       c.confrelid::regclass::text AS parent,
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)::text[] AS pcols
FROM pg_constraint c
WHERE (c.contype IN ('p', 'u', 'c') AND c.conrelid IN (SELECT oid FROM tables))
   OR (c.contype = 'f' AND (c.conrelid IN (SELECT oid FROM tables) OR c.confrelid IN (SELECT oid FROM tables)))
UNION ALL
SELECT 'i', i.indrelid::regclass::text, i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid),
       '{}'::text[], NULL, '{}'::text[]
FROM pg_index i
WHERE i.indrelid IN (SELECT oid FROM tables)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))
"""


async def ensure_schema(conn: asyncpg.Connection) -> None:
    await conn.execute(
        f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}; "
        f"CREATE TABLE IF NOT EXISTS {SAVED_DDL} (kind text NOT NULL, tbl text NOT NULL, name text NOT NULL, "
        f" def text NOT NULL, cols text[] NOT NULL, parent text, pcols text[] NOT NULL, UNIQUE (kind, tbl, name)); "
        f"DROP TABLE IF EXISTS {REJECTS}; "
        f"CREATE UNLOGGED TABLE {REJECTS} "
        f"(tbl text NOT NULL, rec bigint NOT NULL, tid tid NOT NULL, reason text NOT NULL)"
    )


async def save_and_drop(conn: asyncpg.Connection, tables: list[str], checks_of: set[str]) -> list[SavedDdl]:
    """Record every key, index, foreign key and CHECK of `tables` (and any left by an interrupted
    load), then drop them in one transaction — CHECKs only of the tables in `checks_of` (loaded
    directly, where a CHECK would stop COPY at the first bad row). Returns everything recorded;
    CHECKs left in place are not kept on record, since nothing needs to bring them back."""
    async with conn.transaction():
        await conn.execute(
            f"INSERT INTO {SAVED_DDL} (kind, tbl, name, def, cols, parent, pcols) "
            f"SELECT kind, tbl, name, def, cols, parent, pcols FROM ({_CATALOG_DDL}) found "
            f"ON CONFLICT DO NOTHING",
            tables,
        )
        saved = await saved_ddl(conn)
        for item in sorted(saved, key=lambda d: -_DDL_ORDER[d.kind]):
            if item.kind == "c" and item.table not in checks_of:
                still_there = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2)",
                    item.table, item.name)
                if still_there:
                    await restored(conn, item)
                    continue
            await conn.execute(item.drop_sql())
    return saved


async def saved_ddl(conn: asyncpg.Connection) -> list[SavedDdl]:
    rows = await conn.fetch(f"SELECT * FROM {SAVED_DDL}")
    items = [SavedDdl(r["kind"], r["tbl"], r["name"], r["def"], tuple(r["cols"]), r["parent"], tuple(r["pcols"]))
             for r in rows]
    return sorted(items, key=lambda d: (_DDL_ORDER[d.kind], d.table, d.name))


async def restored(conn: asyncpg.Connection, item: SavedDdl) -> None:
    """Mark one definition as back in the catalogue."""
    await conn.execute(f"DELETE FROM {SAVED_DDL} WHERE kind = $1 AND tbl = $2 AND name = $3",
                       item.kind, item.table, item.name)


async def drop_schema(conn: asyncpg.Connection) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")

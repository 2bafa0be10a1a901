"""The bulk loader against a real PostgreSQL: every quirk of the data set, every kind of bad row.

Most tests write a small, consistent data set by hand (the base below, with the rows a test
changes), so each quirk is pinned by a row one can read; the last ones round-trip the generator.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import asyncpg
import pytest

from schema.csv_sources import SOURCES, split_records
from schema.load import LoadRefused, load
from tests.conftest import SOURCE_TABLES, truncate_all

BASE: dict[str, list[str]] = {
    "product.csv": [
        '2,"Heir Force Ones","A sneaker dynasty","Now where da boss at?",Kicks,99',
        '1,"Camo Onesie","Blend in to your crowd","The So Fatigues will wake you up, and fit you in.",Jackets,140',
        '3,"Bright Future Sunglasses","You\'ve got to wear shades","Where you\'re going you might not need roads",'
        'Accessories,69',
    ],
    "features.csv": ['1,1,"Fabric","Canvas"', '2,1,"Buttons",null', '3,2,"Sole","Rubber"'],
    "styles.csv": ['1,1,"Forest Green & Black",null,140,1', '2,1,"Desert Brown & Tan",100,140,0',
                   '3,2,"White",null,99,1'],
    "photos.csv": ['1,1,"https://img/1.jpg","https://img/1t.jpg"', '2,1,"https://img/2.jpg","https://img/2t.jpg"',
                   '3,3,"https://img/3.jpg","https://img/3t.jpg"'],
    "skus.csv": ['1,1,"XS",8', '2,1,"S",16', '3,3,"7.5",0'],
    "related.csv": ["1,1,2", "2,1,3", "3,2,1"],
    "cart.csv": ["1,1234,1,1", "2,1234,3,0"],
    "reviews.csv": [
        '1,1,5,1596080481467,"This product was great!","I really did or did not like this product based on '
        'whether it was sustainably sourced.",true,false,"funtime","first.last@gmail.com",null,8',
        '2,1,4,1610178433963,"This product was ok!","I really did not like this product solely because I am '
        'tiny and do not fit into it.",false,false,"mymainstreammother","first.last@gmail.com",null,2',
        '3,2,3,1609325851021,"I am liking these glasses","They are very dark. But that\'s good because I\'m in '
        'very sunny spots",true,true,"bigbrotherbenjamin","first.last@gmail.com","Glad you\'re enjoying it!",5',
    ],
    "reviews_photos.csv": ['1,1,"https://rev/1.jpg"', '2,3,"https://rev/2.jpg"'],
    "characteristics.csv": ['1,1,"Fit"', '2,1,"Length"', '3,2,"Quality"'],
    "characteristic_reviews.csv": ["1,1,1,4", "2,2,1,3", "3,1,2,5", "4,3,3,2"],
    "questions.csv": [
        '1,1,"What fabric is the top made of?",1595884714409,"yankeelover","first.last@gmail.com",0,1',
        '2,2,"HEY THIS IS A WEIRD QUESTION!!!!?",1613888219613,"jbilas","first.last@gmail.com",1,4',
    ],
    "answers.csv": [
        '1,1,"Supposedly suede, but I think its synthetic",1599958385988,"sillyguy","first.last@gmail.com",0,1',
        '2,1,"Something pretty soft but I can\'t be sure",1599990560555,"Seller",null,0,5',
        '3,2,"Its the best! Seriously magic fabric",1614451524662,"Seller","first.last@gmail.com",0,7',
    ],
    "answers_photos.csv": ['1,1,"https://ans/1.jpg"', '2,3,"https://ans/2.jpg"'],
}
HEADERS = {s.file: ",".join(s.header) for s in SOURCES}


def write_dataset(folder: Path, changes: dict[str, list[str]] | None = None, *, headers: dict[str, str] | None = None,
                  final_newline: bool = False) -> Path:
    """The base data set with some files' rows replaced; no final newline unless asked."""
    folder.mkdir(parents=True, exist_ok=True)
    for file, rows in {**BASE, **(changes or {})}.items():
        header = (headers or {}).get(file, HEADERS[file])
        text = "\n".join([header, *rows]) + ("\n" if final_newline else "")
        (folder / file).write_bytes(text.encode())
    return folder


def read_rejects(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_line_of(rows: list[dict]) -> dict[tuple[str, int], str]:
    return {(r["file"], int(r["line"])): r["record"] for r in rows}


async def counts(db) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in SOURCE_TABLES}


@pytest.fixture
async def empty(db):
    await truncate_all(db)
    return db


async def run_load(settings, folder: Path, rejects: Path, **kwargs):
    return await load(settings.database_url, folder, rejects_path=rejects, progress=False,
                      redis_url=settings.redis_url, **kwargs)


async def test_current_edition_quirks_survive(settings, empty, tmp_path):
    db = empty
    folder = write_dataset(tmp_path / "data", {
        "reviews.csv": BASE["reviews.csv"] + [
            # Commas, doubled quotes and line breaks in text; a summary over 60 characters and a
            # body under 50 (the API's limits apply to new posts only).
            '4,3,2,1596080481467,"'
            + "A summary that goes on and on, well past the sixty characters a new post may have"
            + '","Short, ""quoted""\nand on two lines",false,false,"x","x@example.com",null,0',
        ],
        # thumbnail_url of record 2 has no closing quote: rows 3 and 4 must not be swallowed.
        "photos.csv": ['1,1,"https://img/1.jpg","https://img/1t.jpg"', '2,1,"https://img/2.jpg","https://img/2t.jpg',
                       '4,3,"https://img/4.jpg","https://img/4t.jpg"', '3,3,"https://img/3.jpg","https://img/3t.jpg"'],
        "skus.csv": BASE["skus.csv"] + ['4,1,"XS",3'],          # the same size twice for one style
        "related.csv": BASE["related.csv"] + ["4,2,0"],          # related_product_id = 0
    })
    report = await run_load(settings, folder, tmp_path / "rejects.jsonl")

    assert await counts(db) == {
        "answers_photos": 2, "answers": 3, "questions": 2, "characteristic_reviews": 4, "characteristics": 3,
        "reviews_photos": 2, "reviews": 4, "cart": 2, "related": 3, "skus": 4, "photos": 4, "styles": 3,
        "features": 3, "products": 3,
    }
    assert report.rows_loaded == 42 and report.rows_rejected == 1
    photos = {r["id"]: r["thumbnail_url"] for r in await db.fetch("SELECT id, thumbnail_url FROM photos")}
    assert photos == {n: f"https://img/{n}t.jpg" for n in (1, 2, 3, 4)}
    assert await db.fetchval("SELECT sale_price FROM styles WHERE id = 1") is None
    assert await db.fetchval("SELECT sale_price FROM styles WHERE id = 2") == 100
    assert await db.fetchval("SELECT default_style FROM styles WHERE id = 1") is True
    assert await db.fetchval("SELECT value FROM features WHERE id = 2") is None
    assert await db.fetchval("SELECT answerer_email FROM answers WHERE id = 2") is None
    assert await db.fetchval("SELECT answerer_email FROM answers WHERE id = 3") == "first.last@gmail.com"
    review = await db.fetchrow("SELECT * FROM reviews WHERE id = 4")
    assert review["body"] == 'Short, "quoted"\nand on two lines'
    assert len(review["summary"]) > 60
    assert review["response"] is None
    first = await db.fetchrow("SELECT * FROM reviews WHERE id = 1")
    assert first["date"] == dt.date(2020, 7, 30)  # 1596080481467 ms
    assert (first["recommend"], first["reported"], first["helpfulness"]) == (True, False, 8)
    assert await db.fetchval("SELECT response FROM reviews WHERE id = 3") == "Glad you're enjoying it!"
    assert await db.fetchval("SELECT reported FROM questions WHERE id = 2") is True
    assert await db.fetchval("SELECT date_written FROM answers WHERE id = 3") == dt.date(2021, 2, 27)
    assert await db.fetchval("SELECT count(*) FROM skus WHERE style_id = 1 AND size = 'XS'") == 2
    assert await db.fetchval("SELECT default_price FROM products WHERE id = 3") == 69
    assert await db.fetchval("SELECT active FROM cart WHERE id = 2") is False
    [reject] = read_rejects(tmp_path / "rejects.jsonl")
    assert reject == {"file": "related.csv", "line": 5, "reason": "orphan: related_product_id not in products",
                      "record": "4,2,0"}
    assert report.files["related.csv"].rejected == {"orphan: related_product_id not in products": 1}
    # Keys, indexes and foreign keys are back, exactly as the migrations define them.
    assert await db.fetchval("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                             "AND conrelid = 'characteristic_reviews'::regclass") == 2
    assert await db.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 'characteristic_reviews'") == 3
    assert await db.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'atelier_load'") == 0


async def test_bad_rows_are_rejected_with_file_line_and_reason(settings, empty, tmp_path):
    db = empty
    folder = write_dataset(tmp_path / "data", {
        "reviews.csv": [
            # Record 1 spans three lines, so record N starts on line N + 3 from here on.
            '1,1,5,1596080481467,"Fine","Line one\nline two\nline three",true,false,"a","a@x.com",null,8',
            '2,1,4,1610178433963,"Ok","A body long enough to be a body.",false,false,"b","b@x.com",null,2',
            '3,2,3,1609325851021,"Dark","Very dark glasses indeed, nice.",true,false,"c","c@x.com",null,5',
            '10,1,7,1609325851021,"Seven","Rated seven of five",true,false,"d","d@x.com",null,0',
            '11,1,4,1609325851021,"Abc","Helpfulness is not a number",true,false,"e","e@x.com",null,abc',
            '12,1,4,yesterday,"When","The date is not a date",true,false,"f","f@x.com",null,0',
            '13,99,4,1609325851021,"Orphan","No product 99",true,false,"g","g@x.com",null,0',
            '2,1,2,1609325851021,"Again","The id 2 a second time",true,false,"h","h@x.com",null,0',
            '14,1,,1609325851021,"Empty","No rating at all",true,false,"i","i@x.com",null,0',
            '15,1,4,1609325851021,"Yes","Recommend is maybe",maybe,false,"j","j@x.com",null,0',
            '16,1,4,-1609325851021,"Before","Before 1970",true,false,"k","k@x.com",null,0',
            '17,1,4,99999999999999999,"After","After 9999",true,false,"l","l@x.com",null,0',
        ],
        "styles.csv": BASE["styles.csv"] + ['4,1,"Bad price",null,NaN,0', '5,1,"Negative",null,-3,0'],
        # Typed by COPY itself (no unparseable value in this file): rejects come from SQL checks.
        "characteristic_reviews.csv": BASE["characteristic_reviews.csv"] + ["5,1,1,6", "6,1,1,"],
    })
    report = await run_load(settings, folder, tmp_path / "rejects.csv")

    with (tmp_path / "rejects.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    found = {(r["file"], int(r["line"]), r["reason"]) for r in rows}
    assert found == {
        ("styles.csv", 5, "original_price: not a valid numeric(12,2)"),
        ("styles.csv", 6, "check styles_original_price_check failed"),
        ("reviews.csv", 7, "check reviews_rating_check failed"),
        ("reviews.csv", 8, "helpfulness: not a valid integer"),
        ("reviews.csv", 9, "date: not a valid date (epoch ms or YYYY-MM-DD)"),
        ("reviews.csv", 10, "orphan: product_id not in products"),
        ("reviews.csv", 11, "duplicate id"),
        ("reviews.csv", 12, "rating: missing"),
        ("reviews.csv", 13, "recommend: not a valid boolean"),
        ("reviews.csv", 14, "date: not a valid date (epoch ms or YYYY-MM-DD)"),
        ("reviews.csv", 15, "date: not a valid date (epoch ms or YYYY-MM-DD)"),
        ("characteristic_reviews.csv", 6, "check characteristic_reviews_value_check failed"),
        ("characteristic_reviews.csv", 7, "value: missing"),
    }
    assert by_line_of(rows)[("characteristic_reviews.csv", 7)] == "6,1,1,"
    by_line = by_line_of(rows)
    assert by_line[("reviews.csv", 8)].startswith("11,1,4,1609325851021,Abc,")
    assert by_line[("reviews.csv", 11)].endswith(",null,0")
    assert by_line[("styles.csv", 5)] == '4,1,"Bad price",null,NaN,0'  # as the file has it
    # The first record with a duplicated id is the one kept.
    assert await db.fetchval("SELECT summary FROM reviews WHERE id = 2") == "Ok"
    assert await db.fetchval("SELECT body FROM reviews WHERE id = 1") == "Line one\nline two\nline three"
    assert await db.fetchval("SELECT count(*) FROM reviews") == 3
    assert report.files["reviews.csv"].rows_loaded == 3
    assert report.files["reviews.csv"].rejected["duplicate id"] == 1
    assert report.files["reviews.csv"].rows_rejected == 9
    assert report.files["styles.csv"].rows_rejected == 2
    assert "reviews.csv" in report.summary() and "duplicate id" in report.summary()


async def test_wrong_number_of_fields_mid_file_does_not_abort(settings, empty, tmp_path):
    db = empty
    folder = write_dataset(tmp_path / "data", {
        "reviews.csv": [
            BASE["reviews.csv"][0],
            '5,1,4,1610178433963,"Too few","Fields here",false,false',
            '6,1,3,1609325851021,"Two\nlines","Body",true,false,"c","c@x.com",null,5,"extra"',
            BASE["reviews.csv"][1],
            BASE["reviews.csv"][2],
        ],
        "skus.csv": ['1,1,"XS",8', '2,1,"S",16,9', '3,3,"7.5",0'],
        "photos.csv": ['1,1,"https://img/1.jpg","https://img/1t.jpg"', '2,1,"https://img/2.jpg"',
                       '3,3,"https://img/3.jpg","https://img/3t.jpg', '4,3,"https://img/4.jpg","https://img/4t.jpg"'],
    })
    report = await run_load(settings, folder, tmp_path / "rejects.jsonl")

    found = {(r["file"], r["line"], r["reason"]) for r in read_rejects(tmp_path / "rejects.jsonl")}
    assert found == {
        ("reviews.csv", 3, "wrong number of fields (8, expected 12)"),
        ("reviews.csv", 4, "wrong number of fields (13, expected 12)"),
        ("skus.csv", 3, "wrong number of fields (5, expected 4)"),
        ("photos.csv", 3, "wrong number of fields (3, expected 4)"),
    }
    assert sorted(r["id"] for r in await db.fetch("SELECT id FROM reviews")) == [1, 2, 3]
    assert sorted(r["id"] for r in await db.fetch("SELECT id FROM skus")) == [1, 3]
    assert await db.fetchval("SELECT thumbnail_url FROM photos WHERE id = 3") == "https://img/3t.jpg"
    assert sorted(r["id"] for r in await db.fetch("SELECT id FROM photos")) == [1, 3, 4]
    assert report.files["reviews.csv"].rows_rejected == 2
    # The kept children of the reviews are all there.
    assert await db.fetchval("SELECT count(*) FROM characteristic_reviews") == 4


async def test_rejects_after_a_split_file_keep_their_lines(settings, empty, tmp_path):
    """A file split by Python maps staged records to lines through that pass, not by counting."""
    folder = write_dataset(tmp_path / "data", {
        "reviews.csv": [
            '1,1,5,1596080481467,"Fine","Line one\nline two",true,false,"a","a@x.com",null,8',
            '5,1,4,1610178433963,"Too few"',
            '2,1,4,1610178433963,"Ok","Body\n\nwith a blank line",false,false,"b","b@x.com",null,2',
            '3,2,9,1609325851021,"Nine","Rated nine",true,false,"c","c@x.com",null,5',
        ],
    })
    await run_load(settings, folder, tmp_path / "rejects.jsonl")
    found = {(r["file"], r["line"], r["reason"]) for r in read_rejects(tmp_path / "rejects.jsonl")}
    assert ("reviews.csv", 4, "wrong number of fields (5, expected 12)") in found
    assert ("reviews.csv", 8, "check reviews_rating_check failed") in found


async def test_file_loaded_straight_into_its_table_rejects_in_place(settings, empty, tmp_path):
    """related.csv has only numbers: COPY puts it straight into its table; bad rows go afterwards."""
    db = empty
    folder = write_dataset(tmp_path / "data", {
        "related.csv": ["1,1,2", "2,1,3", "1,2,3", "3,2,1", "4,2,99", "5,3,3"],
        "characteristic_reviews.csv": BASE["characteristic_reviews.csv"] + ["5,2,2,0"],
    })
    report = await run_load(settings, folder, tmp_path / "rejects.jsonl")
    found = {(r["file"], r["line"], r["reason"], r["record"]) for r in read_rejects(tmp_path / "rejects.jsonl")}
    assert found == {
        ("related.csv", 4, "duplicate id", "1,2,3"),
        ("related.csv", 6, "orphan: related_product_id not in products", "4,2,99"),
        ("characteristic_reviews.csv", 6, "check characteristic_reviews_value_check failed", "5,2,2,0"),
    }
    rows = await db.fetch("SELECT id, current_product_id, related_product_id FROM related ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, 1, 2), (2, 1, 3), (3, 2, 1), (5, 3, 3)]
    assert report.files["related.csv"].rows_loaded == 4
    assert report.files["characteristic_reviews.csv"].rows_loaded == 4
    # The CHECKs dropped for the straight COPY are back.
    checks = await db.fetch("SELECT conrelid::regclass::text AS t FROM pg_constraint WHERE contype = 'c' "
                            "AND conrelid IN ('characteristic_reviews'::regclass, 'skus'::regclass)")
    assert sorted(r["t"] for r in checks) == ["characteristic_reviews", "skus"]
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO characteristic_reviews (characteristic_id, review_id, value) VALUES (1, 1, 7)")


async def test_older_edition_loads(settings, empty, tmp_path):
    db = empty
    spaced = {f: ", ".join(HEADERS[f].split(",")) for f in ("questions.csv", "answers.csv", "answers_photos.csv")}
    folder = write_dataset(tmp_path / "data", {
        "reviews.csv": [
            '1,1,5,"2020-07-30","Great","Body one",true,false,"a","a@x.com",null,8',
            '2,1,4,"2021-01-09","Ok","Body two",false,true,"b","b@x.com",null,2',
            '3,2,3,"2020-12-30","Dark","Body three",1,0,"c","c@x.com","Thanks",5',
            '4,2,2,"2020-12-31","Meh","Body four",0,1,"d","d@x.com",null,0',
        ],
        "questions.csv": ['1,1,"Fabric?","2020-07-27","y","y@x.com",0,1',
                          '2,2,"Weird?","2021-02-21","j","j@x.com",1,4'],
        "answers.csv": ['1,1,"Suede","2020-09-13","s","s@x.com",0,1', '2,1,"Soft","2020-09-13","Seller",null,0,5',
                        '3,2,"Magic","2021-02-27","Seller","s@x.com",0,7'],
    }, headers=spaced, final_newline=True)
    report = await run_load(settings, folder, tmp_path / "rejects.jsonl")
    assert report.rows_rejected == 0
    rows = await db.fetch("SELECT id, date, recommend, reported FROM reviews ORDER BY id")
    assert [tuple(r) for r in rows] == [
        (1, dt.date(2020, 7, 30), True, False), (2, dt.date(2021, 1, 9), False, True),
        (3, dt.date(2020, 12, 30), True, False), (4, dt.date(2020, 12, 31), False, True),
    ]
    assert await db.fetchval("SELECT date_written FROM questions WHERE id = 2") == dt.date(2021, 2, 21)
    assert await db.fetchval("SELECT count(*) FROM answers") == 3
    assert await db.fetchval("SELECT count(*) FROM answers_photos") == 2


async def test_loaded_database_is_refused_unless_replace(settings, empty, tmp_path):
    db = empty
    folder = write_dataset(tmp_path / "data")
    await run_load(settings, folder, tmp_path / "rejects.jsonl")
    before = await counts(db)

    with pytest.raises(LoadRefused, match="--replace"):
        await run_load(settings, folder, tmp_path / "rejects.jsonl")
    assert await counts(db) == before

    # Style 3 is gone: its photo and its SKU (which a cart points at) become orphans.
    smaller = write_dataset(tmp_path / "smaller", {"styles.csv": BASE["styles.csv"][:2]})
    await db.execute("INSERT INTO cart_items (cart_key, sku_id, count) VALUES ('k', 3, 1)")
    report = await run_load(settings, smaller, tmp_path / "rejects.jsonl", replace=True)
    assert await db.fetchval("SELECT count(*) FROM styles") == 2
    assert await db.fetchval("SELECT count(*) FROM skus") == 2
    assert await db.fetchval("SELECT count(*) FROM cart_items") == 0
    assert report.files["skus.csv"].rejected == {"orphan: style_id not in styles": 1}
    assert report.files["photos.csv"].rejected == {"orphan: style_id not in styles": 1}
    if report.projections is not None:
        assert await db.fetchval("SELECT count(*) FROM rm_styles") == 3


async def test_a_load_that_died_half_way_is_repaired_by_the_next(settings, empty, tmp_path):
    """Keys, indexes, foreign keys and CHECKs dropped by a load that never finished come back."""
    from schema.load_sql import ensure_schema, save_and_drop

    db = empty
    schema_sql = """SELECT conrelid::regclass::text AS t, conname AS name, pg_get_constraintdef(oid) AS def
                    FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'u', 'f', 'c')
                    UNION ALL SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"""
    before = {tuple(r) for r in await db.fetch(schema_sql)}
    await ensure_schema(db)
    await save_and_drop(db, list(SOURCE_TABLES), checks_of={"characteristic_reviews", "skus"})
    assert await db.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 'reviews'") == 0

    report = await run_load(settings, write_dataset(tmp_path / "data"), tmp_path / "rejects.jsonl", replace=True)
    assert report.rows_rejected == 0
    assert {tuple(r) for r in await db.fetch(schema_sql)} == before


async def test_sequences_continue_after_the_highest_id(settings, empty, tmp_path):
    db = empty
    await run_load(settings, write_dataset(tmp_path / "data"), tmp_path / "rejects.jsonl")
    new_product = await db.fetchval(
        "INSERT INTO products (name, slogan, description, category, default_price) "
        "VALUES ('n', 's', 'd', 'c', 1) RETURNING id")
    assert new_product == 4
    new_review = await db.fetchval(
        "INSERT INTO reviews (product_id, rating, date, summary, body, recommend, reviewer_name, reviewer_email) "
        "VALUES (1, 5, current_date, 's', 'b', true, 'n', 'e') RETURNING id")
    assert new_review == 4
    assert await db.fetchval("SELECT nextval('answers_photos_id_seq')") == 3


async def test_generated_tiny_data_set_round_trips(settings, empty, redis, tmp_path):
    from schema.generate import BAD_ROW_FILES, generate

    db = empty
    written = generate(tmp_path / "tiny", "tiny", seed=3)
    with (tmp_path / "tiny" / "related.csv").open(newline="") as handle:
        zeros = sum(1 for row in csv.DictReader(handle) if row["related_product_id"] == "0")
    report = await run_load(settings, tmp_path / "tiny", tmp_path / "rejects.jsonl")

    # Tiny is one chunk of the generator: one orphan in every file but product and cart, one
    # bad row in each of BAD_ROW_FILES, plus the related rows that point at product 0.
    for source in SOURCES:
        stem = source.name
        expected = 0 if stem in ("product", "cart") else 1
        expected += stem in BAD_ROW_FILES
        expected += zeros if stem == "related" else 0
        file_report = report.files[source.file]
        assert file_report.rows_rejected == expected, (source.file, file_report.rejected)
        assert file_report.rows_loaded == written[stem] - expected, source.file
        assert await db.fetchval(f"SELECT count(*) FROM {source.table}") == file_report.rows_loaded
    # Each reject's line is where its record starts in the file.
    for reject in read_rejects(tmp_path / "rejects.jsonl"):
        lines = (tmp_path / "tiny" / reject["file"]).read_bytes().decode().split("\n")
        assert lines[reject["line"] - 1].split(",")[0] == reject["record"].split(",")[0], reject
    # Broken photos.csv rows (the first at record 48) are recovered, not rejected.
    assert not any("photos" in f and "orphan" not in r for f, r in
                   ((r["file"], r["reason"]) for r in read_rejects(tmp_path / "rejects.jsonl")))
    assert await db.fetchval("SELECT count(*) FROM photos WHERE thumbnail_url LIKE '%' || chr(10) || '%'") == 0
    thumbnail = await db.fetchval("SELECT thumbnail_url FROM photos WHERE id = 48")
    assert thumbnail.startswith("https://") and thumbnail.endswith("q=80")
    # The read models and the writer's id state follow the load.
    if report.projections is not None:
        assert await db.fetchval("SELECT count(*) FROM rm_product") == written["product"]
    if report.idstate is not None:
        assert await redis.bitcount("atelier:ids:products") == written["product"]


def test_split_records_recovers_after_a_runaway_quote(tmp_path):
    path = tmp_path / "skus.csv"
    path.write_text('id,styleId,size,quantity\n1,1,"XS,8\n2,1,"S",16\n3,1,M,2\n\n4,1,"L",1')
    split = split_records(path, tmp_path / "good.csv", 4, one_record_per_line=True)
    assert [(b.line, b.reason) for b in split.bad] == [(2, "wrong number of fields (3, expected 4)")]
    assert list(split.first_lines) == [3, 4, 6]
    assert (tmp_path / "good.csv").read_text() == "2,1,S,16\n3,1,M,2\n4,1,L,1\n"


def test_cli_loads_then_refuses(settings, tmp_path, monkeypatch, capsys):
    import asyncio

    from infra.cli import main

    async def empty_database():
        conn = await asyncpg.connect(settings.database_url)
        try:
            await truncate_all(conn)
        finally:
            await conn.close()

    asyncio.run(empty_database())
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    folder = write_dataset(tmp_path / "data")
    rejects = tmp_path / "rejects.jsonl"
    assert main(["load", str(folder), "--quiet", "--rejects", str(rejects), "--json", str(tmp_path / "r.json")]) == 0
    assert "answers_photos.csv" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["rows_loaded"] == 39
    assert main(["load", str(folder), "--quiet"]) == 1
    assert "--replace" in capsys.readouterr().err

"""The data set generator writes the original's formats and faults, consistently and reproducibly.

Loaders are tested against these files, so every quirk dataset.md lists must be present even in
the tiny set, and everything that is not a deliberate fault must be consistent.
"""

from __future__ import annotations

import argparse
import collections
import csv
import pathlib
import shutil
import subprocess
import sys

import pytest

from schema import generate as gen

REPO = pathlib.Path(__file__).resolve().parents[1]

# Copied from dataset.md rather than imported: the test checks the generator against the spec.
EXPECTED_HEADERS = {
    "product": "id,name,slogan,description,category,default_price",
    "features": "id,product_id,feature,value",
    "styles": "id,productId,name,sale_price,original_price,default_style",
    "photos": "id,styleId,url,thumbnail_url",
    "skus": "id,styleId,size,quantity",
    "related": "id,current_product_id,related_product_id",
    "cart": "id,user_session,product_id,active",
    "reviews": "id,product_id,rating,date,summary,body,recommend,reported,reviewer_name,reviewer_email,"
    "response,helpfulness",
    "reviews_photos": "id,review_id,url",
    "characteristics": "id,product_id,name",
    "characteristic_reviews": "id,characteristic_id,review_id,value",
    "questions": "id,product_id,body,date_written,asker_name,asker_email,reported,helpful",
    "answers": "id,question_id,body,date_written,answerer_name,answerer_email,reported,helpful",
    "answers_photos": "id,answer_id,url",
}

# Which columns the originals double-quote ("q"), leave bare ("n"), or quote unless the bare
# word null ("q|null").
QUOTING = {
    "product": ("n", "q", "q", "q", "q", "n"),
    "features": ("n", "n", "q", "q|null"),
    "styles": ("n", "n", "q", "n", "n", "n"),
    "photos": ("n", "n", "q", "q"),
    "skus": ("n", "n", "q", "n"),
    "related": ("n", "n", "n"),
    "cart": ("n", "n", "n", "n"),
    "reviews": ("n", "n", "n", "n", "q", "q", "n", "n", "q", "q", "q|null", "n"),
    "reviews_photos": ("n", "n", "q"),
    "characteristics": ("n", "n", "q"),
    "characteristic_reviews": ("n", "n", "n", "n"),
    "questions": ("n", "n", "q", "n", "q", "q", "n", "n"),
    "answers": ("n", "n", "q", "n", "q", "q|null", "n", "n"),
    "answers_photos": ("n", "n", "q"),
}

# Each file's foreign keys: (column, parent file).
FOREIGN_KEYS = {
    "features": (("product_id", "product"),),
    "styles": (("productId", "product"),),
    "photos": (("styleId", "styles"),),
    "skus": (("styleId", "styles"),),
    "related": (("current_product_id", "product"), ("related_product_id", "product")),
    "cart": (("product_id", "product"),),
    "reviews": (("product_id", "product"),),
    "reviews_photos": (("review_id", "reviews"),),
    "characteristics": (("product_id", "product"),),
    "characteristic_reviews": (("review_id", "reviews"), ("characteristic_id", "characteristics")),
    "questions": (("product_id", "product"),),
    "answers": (("question_id", "questions"),),
    "answers_photos": (("answer_id", "answers"),),
}


# ---------------------------------------------------------------------------------- helpers


def read_rows(folder: pathlib.Path, name: str) -> list[dict[str, str]]:
    """Rows as dicts; photos.csv is read line by line, its broken rows repaired, as a loader might."""
    path = folder / f"{name}.csv"
    if name == "photos":
        lines = path.read_text(encoding="utf-8").split("\n")
        repaired = [line if line.endswith('"') or index == 0 else line + '"' for index, line in enumerate(lines)]
        return list(csv.DictReader(repaired))
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def records_with_quoting(text: str) -> list[list[tuple[str, bool]]]:
    """Split CSV text into records of (value, was_quoted), strictly: a stray quote is an error."""
    records, record, value, quoted = [], [], [], False
    index, length = 0, len(text)
    at_field_start = True
    while index < length:
        char = text[index]
        if at_field_start and char == '"':
            quoted, at_field_start = True, False
            index += 1
            while True:
                end = text.index('"', index)
                value.append(text[index:end])
                if text.startswith('""', end):
                    value.append('"')
                    index = end + 2
                    continue
                index = end + 1
                break
            if index < length and text[index] not in ",\n":
                raise ValueError(f"character after closing quote at {index}")
            continue
        if char == ",":
            record.append(("".join(value), quoted))
            value, quoted, at_field_start = [], False, True
        elif char == "\n":
            record.append(("".join(value), quoted))
            records.append(record)
            record, value, quoted, at_field_start = [], [], False, True
        else:
            if char == '"':
                raise ValueError(f"quote inside an unquoted field at {index}")
            value.append(char)
            at_field_start = False
        index += 1
    record.append(("".join(value), quoted))
    records.append(record)
    return records


def is_int(value: str) -> bool:
    return value.lstrip("-").isdigit()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[pathlib.Path, dict[str, int]]:
    folder = tmp_path_factory.mktemp("tiny")
    return folder, gen.generate(folder, "tiny", seed=1)


@pytest.fixture(scope="module")
def rows(tiny) -> dict[str, list[dict[str, str]]]:
    folder, _ = tiny
    return {name: read_rows(folder, name) for name in EXPECTED_HEADERS}


@pytest.fixture(scope="module")
def ids(rows) -> dict[str, set[int]]:
    return {name: {int(row["id"]) for row in table} for name, table in rows.items()}


# ---------------------------------------------------------------------------------- formats


def test_writes_the_fourteen_files_with_the_exact_headers(tiny):
    folder, counts = tiny
    assert sorted(path.name for path in folder.iterdir()) == sorted(f"{name}.csv" for name in EXPECTED_HEADERS)
    assert list(counts) == list(EXPECTED_HEADERS)
    for name, header in EXPECTED_HEADERS.items():
        first_line = (folder / f"{name}.csv").read_text(encoding="utf-8").split("\n", 1)[0]
        assert first_line == header, name


def test_returned_counts_are_the_rows_written(tiny, rows):
    _, counts = tiny
    assert {name: len(table) for name, table in rows.items()} == counts
    assert all(count > 0 for count in counts.values())


def test_no_file_ends_with_a_newline(tiny):
    folder, _ = tiny
    for name in EXPECTED_HEADERS:
        data = (folder / f"{name}.csv").read_bytes()
        assert not data.endswith(b"\n"), name
        assert not data.endswith(b"\r"), name


def test_text_is_quoted_numbers_are_bare_and_null_is_a_bare_word(tiny):
    folder, _ = tiny
    for name, rules in QUOTING.items():
        text = (folder / f"{name}.csv").read_text(encoding="utf-8")
        if name == "photos":  # the broken rows are checked on their own
            text = "\n".join(line if line.endswith('"') or line.startswith("id,") else line + '"'
                             for line in text.split("\n"))
        records = records_with_quoting(text)[1:]
        for record in records:
            assert len(record) == len(rules), (name, record)
            for (value, was_quoted), rule in zip(record, rules):
                if rule == "q":
                    assert was_quoted, (name, record)
                elif rule == "n":
                    assert not was_quoted, (name, record)
                else:
                    assert was_quoted or value == "null", (name, record)


def test_every_other_file_parses_with_the_csv_module_to_its_header_width(tiny):
    folder, _ = tiny
    for name, header in EXPECTED_HEADERS.items():
        if name == "photos":
            continue
        with (folder / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
            widths = {len(record) for record in csv.reader(handle)}
        assert widths == {header.count(",") + 1}, name


def test_value_encodings(rows):
    reviews = [row for row in rows["reviews"] if row["rating"] in "12345"]
    assert all(len(row["date"]) == 13 and row["date"].isdigit() for row in reviews)
    assert {row["recommend"] for row in reviews} == {"true", "false"}
    assert {row["reported"] for row in reviews} == {"true", "false"}
    for name in ("questions", "answers"):
        assert {row["reported"] for row in rows[name]} == {"0", "1"}, name
        assert all(len(row["date_written"]) == 13 and row["date_written"].isdigit() for row in rows[name])
    assert {row["default_style"] for row in rows["styles"]} == {"0", "1"}
    assert {row["active"] for row in rows["cart"]} == {"0", "1"}
    assert all(row["default_price"].isdigit() for row in rows["product"])
    assert all(row["original_price"].isdigit() or row["original_price"] == "NaN" for row in rows["styles"])
    assert {row["name"] for row in rows["characteristics"]} <= {"Fit", "Length", "Comfort", "Quality", "Size", "Width"}
    assert all(row["url"].startswith("https://images.unsplash.com/photo-") for row in rows["reviews_photos"])
    assert all(row["thumbnail_url"].endswith("&w=300&q=80") for row in rows["photos"])


# ---------------------------------------------------------------------------------- quirks


def test_broken_photo_rows_lack_the_closing_quote_first_at_record_48(tiny):
    folder, _ = tiny
    lines = (folder / "photos.csv").read_text(encoding="utf-8").split("\n")
    broken = [line for line in lines[1:] if not line.endswith('"')]
    broken_ids = [int(line.split(",", 1)[0]) for line in broken]
    assert lines[48].startswith("48,") and not lines[48].endswith('"')
    assert broken_ids[0] == 48
    assert len(broken_ids) >= 4 and len(broken_ids) % 2 == 0  # in pairs, so a COPY loses rows quietly
    assert all(line.count('"') == 3 for line in broken)
    assert lines[-1].endswith('"')


def test_a_strict_parser_swallows_the_lines_after_a_broken_photo_row(tiny):
    folder, _ = tiny
    lines = (folder / "photos.csv").read_text(encoding="utf-8").split("\n")
    broken_ids = {int(line.split(",", 1)[0]) for line in lines[1:] if not line.endswith('"')}
    with (folder / "photos.csv").open(encoding="utf-8", newline="") as handle:
        records = list(csv.reader(handle))[1:]
    wide = [record for record in records if len(record) != 4]
    assert wide and all(int(record[0]) in broken_ids and len(record) > 4 for record in wide)
    assert len(records) < len(lines) - 1  # rows went missing: the loader must notice


def test_photos_repaired_line_by_line_keep_every_id(rows, ids):
    assert all(len(row) == 4 and None not in row.values() for row in rows["photos"])
    assert len(ids["photos"]) == len(rows["photos"])


def test_ids_are_unique_dense_and_not_always_sorted(rows, ids):
    for name, table in rows.items():
        row_ids = [int(row["id"]) for row in table]
        assert len(set(row_ids)) == len(row_ids), name
        assert set(row_ids) == set(range(1, len(row_ids) + 1)), name
        assert any(later < earlier for earlier, later in zip(row_ids, row_ids[1:])), name
    assert ids["product"] == set(range(1, 201))


def test_null_words(rows):
    assert {row["value"] == "null" for row in rows["features"]} == {True, False}
    assert {row["sale_price"] == "null" for row in rows["styles"]} == {True, False}
    assert {row["response"] == "null" for row in rows["reviews"]} == {True, False}
    seller_emails = [row["answerer_email"] for row in rows["answers"] if row["answerer_name"] == "Seller"]
    assert "null" in seller_emails
    assert all(row["answerer_email"] != "null" for row in rows["answers"] if row["answerer_name"] != "Seller")


def test_review_text_quirks(rows):
    summaries = [row["summary"] for row in rows["reviews"]]
    bodies = [row["body"] for row in rows["reviews"]]
    assert any(len(summary) > 60 for summary in summaries)
    assert any(len(body) < 50 for body in bodies)
    assert any("\n" in body for body in bodies)
    assert any('"' in body for body in bodies)
    assert sum("," in body for body in bodies) > len(bodies) / 10
    assert all(len(body) <= 1000 for body in bodies)


def test_a_style_lists_a_size_twice(rows):
    sizes = collections.Counter((row["styleId"], row["size"]) for row in rows["skus"])
    assert max(sizes.values()) >= 2


def test_a_product_repeats_a_feature(rows):
    features = collections.Counter((row["product_id"], row["feature"]) for row in rows["features"])
    assert max(features.values()) >= 2


def test_related_has_duplicates_self_references_and_zero(rows):
    pairs = [(row["current_product_id"], row["related_product_id"]) for row in rows["related"]]
    assert any(current == related for current, related in pairs)
    assert ("0" in {related for _, related in pairs})
    assert max(collections.Counter(pairs).values()) >= 2


def test_every_file_but_product_has_a_few_orphans(rows, ids):
    for name, keys in FOREIGN_KEYS.items():
        orphans = [row for row in rows[name]
                   if any(int(row[column]) not in ids[parent] and row[column] != "0" for column, parent in keys)]
        assert 1 <= len(orphans) <= 3, (name, len(orphans))


def test_single_bad_rows_are_present(rows):
    assert any(not 1 <= int(row["rating"]) <= 5 for row in rows["reviews"])
    assert any(not 1 <= int(row["value"]) <= 5 for row in rows["characteristic_reviews"])
    assert any(not row["quantity"].isdigit() for row in rows["skus"])
    assert any(not row["original_price"].isdigit() for row in rows["styles"])
    assert any(not row["helpful"].isdigit() for row in rows["questions"])
    assert any(not row["helpful"].isdigit() for row in rows["answers"])


# ---------------------------------------------------------------------------------- consistency


def test_characteristic_reviews_point_at_characteristics_of_the_reviews_product(rows, ids):
    product_of_review = {int(row["id"]): int(row["product_id"]) for row in rows["reviews"]
                         if row["rating"] in "12345" and int(row["product_id"]) in ids["product"]}
    characteristics = {int(row["id"]): int(row["product_id"]) for row in rows["characteristics"]}
    names_of_product = collections.defaultdict(set)
    for row in rows["characteristics"]:
        names_of_product[int(row["product_id"])].add(int(row["id"]))
    pairs = collections.Counter()
    orphans = 0
    for row in rows["characteristic_reviews"]:
        review_id, characteristic_id = int(row["review_id"]), int(row["characteristic_id"])
        if review_id not in ids["reviews"] or characteristic_id not in characteristics:
            orphans += 1
            continue
        if not 1 <= int(row["value"]) <= 5:
            continue  # a deliberately bad row
        assert characteristics[characteristic_id] == product_of_review[review_id], row
        pairs[review_id, characteristic_id] += 1
    assert 1 <= orphans <= 3
    expected = {(review_id, characteristic_id) for review_id, product_id in product_of_review.items()
                for characteristic_id in names_of_product[product_id]}
    assert set(pairs) == expected
    assert set(pairs.values()) == {1}


def test_styles_keep_the_price_of_their_product(rows):
    price = {row["id"]: row["default_price"] for row in rows["product"]}
    for row in rows["styles"]:
        if row["productId"] in price and row["original_price"].isdigit():
            assert row["original_price"] == price[row["productId"]]
            if row["sale_price"] != "null":
                assert int(row["sale_price"]) < int(row["original_price"])


def test_answers_come_after_their_question(rows):
    asked = {row["id"]: int(row["date_written"]) for row in rows["questions"]}
    answered = [(asked[row["question_id"]], int(row["date_written"])) for row in rows["answers"]
                if row["question_id"] in asked and row["helpful"].isdigit()]
    assert answered and all(question <= answer for question, answer in answered)


def test_content_is_skewed_like_the_original(rows):
    per_product = collections.Counter(int(row["product_id"]) for row in rows["reviews"])
    counts = [per_product.get(product_id, 0) for product_id in range(1, 201)]
    assert counts.count(0) >= 20
    assert max(counts) >= 4 * (sum(counts) / len(counts))
    ratings = collections.Counter(row["rating"] for row in rows["reviews"])
    assert ratings["4"] + ratings["5"] > 0.55 * len(rows["reviews"])
    reported = sum(row["reported"] == "true" for row in rows["reviews"]) / len(rows["reviews"])
    assert 0.005 < reported < 0.08
    helpfulness = sorted(int(row["helpfulness"]) for row in rows["reviews"])
    assert helpfulness[len(helpfulness) // 2] <= 10 and helpfulness[-1] >= 30
    assert any(row["answerer_name"] == "Seller" for row in rows["answers"])


# ---------------------------------------------------------------------------------- reproducibility


def test_same_seed_same_bytes_other_seed_other_bytes(tiny, tmp_path):
    folder, _ = tiny
    gen.generate(tmp_path / "again", "tiny", seed=1)
    gen.generate(tmp_path / "other", "tiny", seed=2)
    for name in EXPECTED_HEADERS:
        original = (folder / f"{name}.csv").read_bytes()
        assert (tmp_path / "again" / f"{name}.csv").read_bytes() == original, name
    assert (tmp_path / "other" / "reviews.csv").read_bytes() != (folder / "reviews.csv").read_bytes()


def test_the_process_pool_writes_the_same_bytes_as_one_process(tiny, tmp_path):
    folder, _ = tiny
    gen.generate_files(tmp_path, gen.SCALES["tiny"], 1, progress=False, processes=2)
    for name in EXPECTED_HEADERS:
        assert (tmp_path / f"{name}.csv").read_bytes() == (folder / f"{name}.csv").read_bytes(), name


def test_full_scale_plan_matches_the_original_row_counts():
    """Plan a sample of full-scale chunks (no files) and extrapolate: the shape must match."""
    scale = gen.SCALES["full"]
    chunks = gen.chunk_count(scale)
    sample = range(1, chunks, 10)
    totals = collections.Counter()
    for chunk in sample:
        totals.update(gen.ChunkPlan(1, scale, chunk).table_rows())
    factor = chunks / len(sample)
    original = {"features": 2_219_279, "styles": 1_958_102, "photos": 5_655_656, "skus": 11_323_917,
                "related": 4_508_263, "reviews": 5_774_952, "reviews_photos": 2_742_540,
                "characteristics": 3_347_679, "characteristic_reviews": 19_327_575, "questions": 3_518_963,
                "answers": 6_879_306, "answers_photos": 2_063_759}
    for name, count in original.items():
        assert abs(totals[name] * factor / count - 1) < 0.05, (name, totals[name] * factor, count)
    assert scale.products == 1_000_011


# ---------------------------------------------------------------------------------- the demo scale


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    yield folder, gen.generate(folder, "small", seed=1)
    shutil.rmtree(folder, ignore_errors=True)  # 340 MB: not worth keeping among pytest's last runs


def test_small_has_fifty_thousand_products(small):
    folder, counts = small
    assert counts["product"] == 50_000
    with (folder / "product.csv").open(encoding="utf-8", newline="") as handle:
        product_ids = {int(row["id"]) for row in csv.DictReader(handle)}
    assert product_ids == set(range(1, 50_001))


def test_small_product_40344_has_content(small):
    folder, _ = small
    product = "40344"
    reviews = [row for row in read_rows(folder, "reviews") if row["product_id"] == product]
    assert len(reviews) >= 3
    questions = {row["id"] for row in read_rows(folder, "questions") if row["product_id"] == product}
    answered = {row["question_id"] for row in read_rows(folder, "answers") if row["question_id"] in questions}
    assert questions and answered == questions
    styles = {row["id"] for row in read_rows(folder, "styles") if row["productId"] == product}
    assert styles
    assert styles == {row["styleId"] for row in read_rows(folder, "photos") if row["styleId"] in styles}
    assert styles == {row["styleId"] for row in read_rows(folder, "skus") if row["styleId"] in styles}
    characteristics = [row for row in read_rows(folder, "characteristics") if row["product_id"] == product]
    assert len(characteristics) == 4


# ---------------------------------------------------------------------------------- command line


def test_command_line_help_and_run(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    gen.add_arguments(parser)
    help_text = parser.format_help()
    assert "tiny" in help_text and "small" in help_text and "full" in help_text and "--seed" in help_text
    args = parser.parse_args(["--scale", "tiny", "--out", str(tmp_path / "set"), "--quiet"])
    assert gen.run(args) == 0
    assert "reviews.csv" in capsys.readouterr().out
    assert (tmp_path / "set" / "answers_photos.csv").exists()


def test_python_dash_m_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "schema.generate", "--scale", "tiny", "--out", str(tmp_path),
                             "--seed", "3"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "generate reviews" in result.stderr  # progress
    assert len(list(tmp_path.glob("*.csv"))) == 14

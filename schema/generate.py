"""Write a synthetic Atelier data set: the 14 CSV files of dataset.md, quirks included.

The loader must accept the original files unchanged, so the generator reproduces their formats
and their faults (broken photo rows, orphans, out-of-range values, unsorted ids, `null` words,
no final newline); load tests need the original's size and skew, so `full` matches its row counts.
Quoting follows the originals: every text column is double-quoted (quotes inside doubled), ids,
numbers, epoch-ms dates and true/false or 0/1 flags are bare, and so is the word null.

How it stays fast, deterministic and small in memory
----------------------------------------------------
Products are cut into chunks of CHUNK_PRODUCTS. Everything that decides how many rows a chunk
produces in any file (reviews per product, answers per question, photos per style, ...) is drawn
by a *plan* from random streams seeded by (seed, stream, chunk) only. Any process can therefore
re-derive any chunk's plan on its own. A first pass sums each chunk's row counts per table; the
prefix sums give the first id of every table in every chunk, which is all a file writer needs to
produce foreign keys that agree with the files written by the other processes. Each file is then
written by one process of a pool, chunk after chunk, holding one chunk's rows at a time; the
text of a row comes from its own (seed, file, chunk) stream, so no writer depends on another.

Random draws use lookup tables indexed by `getrandbits` and text is joined from pre-escaped pools;
that keeps the standard library fast enough (no numpy dependency) for the 70 million rows of full.
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing
import os
import pathlib
import random
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from statistics import NormalDist

# --------------------------------------------------------------------------------------------
# Files and scales
# --------------------------------------------------------------------------------------------

HEADERS: dict[str, str] = {
    "product": "id,name,slogan,description,category,default_price",
    "features": "id,product_id,feature,value",
    "styles": "id,productId,name,sale_price,original_price,default_style",
    "photos": "id,styleId,url,thumbnail_url",
    "skus": "id,styleId,size,quantity",
    "related": "id,current_product_id,related_product_id",
    "cart": "id,user_session,product_id,active",
    "reviews": "id,product_id,rating,date,summary,body,recommend,reported,reviewer_name,"
    "reviewer_email,response,helpfulness",
    "reviews_photos": "id,review_id,url",
    "characteristics": "id,product_id,name",
    "characteristic_reviews": "id,characteristic_id,review_id,value",
    "questions": "id,product_id,body,date_written,asker_name,asker_email,reported,helpful",
    "answers": "id,question_id,body,date_written,answerer_name,answerer_email,reported,helpful",
    "answers_photos": "id,answer_id,url",
}
FILES: tuple[str, ...] = tuple(HEADERS)
CHUNKED_TABLES: tuple[str, ...] = tuple(name for name in FILES if name != "cart")


@dataclass(frozen=True)
class Scale:
    """One size of data set; every per-product distribution is the same at every scale."""

    name: str
    products: int
    cart_rows: int
    photo_break_every: int  # one pair of broken photos.csv rows per this many photo rows
    about: str


SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", 200, 40, 400, "200 products, ~1.2 MB, for tests (about a second)"),
    "small": Scale("small", 50_000, 250, 40_000, "50,000 products, ~3.5 M rows, ~340 MB, the demo"),
    "full": Scale("full", 1_000_011, 5_000, 40_000,
                  "1,000,011 products, ~70 M rows, ~7 GB, the original's row counts"),
}

CHUNK_PRODUCTS = 500
# Products whose pages are opened by the storefront and the demos: always rich in content.
SHOWCASE_PRODUCTS = frozenset({1, 40344})

# Files that carry the odd deliberately invalid row (besides orphans, which every file but
# product has). product never does: product ids must stay dense 1..N.
BAD_ROW_FILES = frozenset({"reviews", "characteristic_reviews", "skus", "styles", "questions", "answers"})
# Chunk 0 has one orphan per file (but product and cart) and one bad row per BAD_ROW_FILES file,
# so even tiny has them; then one every ORPHAN_EVERY_CHUNKS / BAD_EVERY_CHUNKS chunks: a few per
# file in full, spaced out rather than random so that no file ends up with none.
ORPHAN_EVERY_CHUNKS = 400
BAD_EVERY_CHUNKS = 800
SWAP_RATE = 1 / 5000  # adjacent rows swapped so ids are not always sorted
RELATED_ZERO_RATE = 1.3e-5  # ~58 related rows pointing at product 0 in the full set

DATE_FIRST_MS = 1_589_000_000_000  # 2020-05-09
DATE_LAST_MS = 1_621_000_000_000  # 2021-05-14

# --------------------------------------------------------------------------------------------
# Distributions as lookup tables: one getrandbits call and one index per draw
# --------------------------------------------------------------------------------------------


def weighted_table(weights: dict, bits: int = 10) -> tuple:
    """Spread values over 2**bits slots in proportion to their weights (largest remainder).

    Drawing `table[getrandbits(bits)]` is several times cheaper than random.choices, and the
    table's exact mean is what the data set gets, which makes row counts easy to tune.
    """
    size = 1 << bits
    total = sum(weights.values())
    exact = [(value, weight * size / total) for value, weight in weights.items()]
    counts = {value: int(share) for value, share in exact}
    missing = size - sum(counts.values())
    by_remainder = sorted(exact, key=lambda item: item[1] - int(item[1]), reverse=True)
    for value, _ in by_remainder[:missing]:
        counts[value] += 1
    table: list = []
    for value, count in counts.items():
        table.extend([value] * count)
    return tuple(table)


@functools.cache
def long_tail_table(mean: float, zero_share: float, sigma: float, cap: int, bits: int = 12) -> tuple[int, ...]:
    """Quantiles of 'zero with probability zero_share, else a rounded lognormal', tuned to `mean`.

    Long-tailed counts are what make the original realistic: many products without reviews,
    most with a few, a handful with hundreds.
    """
    size = 1 << bits
    normal = NormalDist()
    quantiles: list[float | None] = []
    for slot in range(size):
        u = (slot + 0.5) / size
        quantiles.append(None if u < zero_share else normal.inv_cdf((u - zero_share) / (1 - zero_share)))

    def table_for(mu: float) -> tuple[int, ...]:
        return tuple(0 if z is None else min(cap, max(1, round(math.exp(mu + sigma * z)))) for z in quantiles)

    low, high = -6.0, 12.0
    for _ in range(40):
        middle = (low + high) / 2
        if sum(table_for(middle)) / size < mean:
            low = middle
        else:
            high = middle
    below, above = table_for(low), table_for(high)
    return min((below, above), key=lambda table: abs(sum(table) / size - mean))


# Per-product counts (means from the original's row counts divided by its 1,000,011 products).
def reviews_per_product() -> tuple[int, ...]:
    return long_tail_table(5.775, 0.20, 1.30, 2000)


def questions_per_product() -> tuple[int, ...]:
    return long_tail_table(3.519, 0.22, 1.15, 1000)


def answers_per_question() -> tuple[int, ...]:
    return long_tail_table(1.955, 0.22, 0.85, 200)


def helpfulness_counts() -> tuple[int, ...]:
    return long_tail_table(4.5, 0.22, 1.15, 1500)


FEATURES_PER_PRODUCT = weighted_table({0: 6, 1: 21, 2: 36, 3: 24, 4: 9, 5: 4})
STYLES_PER_PRODUCT = weighted_table({0: 2, 1: 42.5, 2: 30, 3: 14.5, 4: 7, 5: 2.5, 6: 1.5})
RELATED_PER_PRODUCT = weighted_table({0: 3, 1: 8, 2: 11, 3: 14, 4: 16, 5: 15, 6: 12, 7: 9, 8: 7, 9: 3, 10: 2})
PHOTOS_PER_STYLE = weighted_table({0: 3, 1: 22, 2: 20, 3: 20, 4: 16, 5: 11, 6: 8})
PHOTOS_PER_REVIEW = weighted_table({0: 758, 1: 110, 2: 70, 3: 35, 4: 17, 5: 10})
PHOTOS_PER_ANSWER = weighted_table({0: 85, 1: 7, 2: 4, 3: 2, 4: 1, 5: 1})
RATINGS = weighted_table({1: 8, 2: 7, 3: 15, 4: 30, 5: 40})
SKU_QUANTITIES = weighted_table({q: (6 if q == 0 else 3 if q < 40 else 1) for q in range(0, 61)})
# A characteristic's 1-5 score given the review's rating: close to it, sometimes not.
CHARACTERISTIC_VALUES = {rating: weighted_table({v: 8 / (1 + 3 * abs(v - rating)) for v in range(1, 6)}, 6)
                         for rating in range(1, 6)}
RECOMMEND_BY_RATING = {1: 0.10, 2: 0.20, 3: 0.55, 4: 0.90, 5: 0.96}

NICE_PRICES = weighted_table({p: 1 for p in (20, 25, 30, 35, 40, 45, 49, 50, 55, 60, 65, 69, 70, 75, 80, 85,
                                            90, 95, 99, 100, 110, 120, 125, 130, 140, 150, 160, 170, 175, 180,
                                            190, 199, 200, 220, 225, 240, 250, 275, 299, 300, 320, 350, 375,
                                            399, 400, 425, 450, 475, 499, 500, 550, 599, 600, 650, 699, 700,
                                            750, 799, 800, 850, 899, 900, 950, 999)}, 6)
APPAREL, FOOTWEAR, ACCESSORY = 0, 1, 2
KINDS = weighted_table({APPAREL: 54, FOOTWEAR: 30, ACCESSORY: 16})
CATEGORIES: dict[int, tuple[str, ...]] = {
    APPAREL: ("Jackets", "Pants", "Shorts", "Shirt", "Sweatpants", "Tank Top", "Skirt", "Dress",
              "Suit", "Slacks", "Jumpsuit", "Joggers", "Blazer", "Pajamas", "Socks", "Onesie", "Hoodie"),
    FOOTWEAR: ("Kicks", "Dress Shoes", "Heels", "Boots", "Sandals", "Slippers", "Loafers", "Running Shoes"),
    ACCESSORY: ("Accessories", "Jewelry", "Sunglasses", "Belt", "Backpack", "Cap", "Hat", "Watch",
                "Scarf", "Bag", "Wallet"),
}
CHARACTERISTIC_SETS = {
    APPAREL: weighted_table({("Fit", "Length", "Comfort", "Quality"): 88, ("Fit", "Length", "Quality"): 5,
                             ("Comfort", "Quality"): 3, ("Quality",): 2, (): 2}),
    FOOTWEAR: weighted_table({("Size", "Width", "Comfort", "Quality"): 90, ("Size", "Comfort", "Quality"): 5,
                              ("Comfort", "Quality"): 2, (): 3}),
    ACCESSORY: weighted_table({("Quality",): 60, ("Quality", "Comfort"): 30, (): 10}),
}
APPAREL_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
SHOE_SIZES = ("7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "11.5", "12", "12.5", "13")
APPAREL_SIZE_SETS = weighted_table({APPAREL_SIZES: 72, APPAREL_SIZES[:5]: 12, APPAREL_SIZES[1:5]: 10,
                                    APPAREL_SIZES[1:4]: 5, (): 1})
SHOE_RUN_LENGTHS = weighted_table({6: 10, 7: 12, 8: 16, 9: 20, 10: 19, 11: 14, 12: 5, 13: 4})
ACCESSORY_SIZE_SETS = weighted_table({("One Size",): 92, (): 8})
DUPLICATE_SIZE_RATE = 1 / 3000
BROKEN_PAIR_GAPS = weighted_table({1: 70, 2: 25, 3: 5}, 6)  # rows between the two broken rows

# --------------------------------------------------------------------------------------------
# Deterministic random streams
# --------------------------------------------------------------------------------------------


def stream(seed: int, name: str, chunk: int) -> random.Random:
    """A generator that depends only on (seed, name, chunk): any process can re-create it.

    Seeding from a string hashes it with SHA-512, independent of PYTHONHASHSEED.
    """
    return random.Random(f"atelier/{seed}/{name}/{chunk}")


@functools.cache
def extra_row_phases(seed: int) -> dict[str, tuple[int, int]]:
    """Per file, which chunk (modulo the spacing) gets an orphan and which a bad row."""
    rng = stream(seed, "plan-extras", 0)
    return {name: (1 + int(rng.random() * (ORPHAN_EVERY_CHUNKS - 1)), 1 + int(rng.random() * (BAD_EVERY_CHUNKS - 1)))
            for name in FILES}


def chunk_count(scale: Scale) -> int:
    return -(-scale.products // CHUNK_PRODUCTS)


# --------------------------------------------------------------------------------------------
# The plan of one chunk: how many rows of everything, and the facts several files share
# --------------------------------------------------------------------------------------------


@dataclass
class ProductLayer:
    """Per product of the chunk (index i is product first_id + i)."""

    first_id: int
    kind: list[int]
    category: list[str]
    price: list[int]
    n_features: list[int]
    n_styles: list[int]
    n_related: list[int]
    n_reviews: list[int]
    characteristics: list[tuple[str, ...]]
    n_questions: list[int]


@dataclass
class StyleLayer:
    product_index: list[int]
    n_photos: list[int]
    sizes: list[tuple[str, ...]]


@dataclass
class ReviewLayer:
    product_index: list[int]
    rating: list[int]
    n_photos: list[int]


@dataclass
class QuestionLayer:
    product_index: list[int]
    date: list[int]
    n_answers: list[int]


@dataclass
class AnswerLayer:
    question_index: list[int]
    n_photos: list[int]


class ChunkPlan:
    """Row counts and shared facts of one chunk, each layer derived only when a writer needs it."""

    def __init__(self, seed: int, scale: Scale, chunk: int):
        self.seed = seed
        self.scale = scale
        self.chunk = chunk
        self.first_product = chunk * CHUNK_PRODUCTS + 1
        self.last_product = min(scale.products, (chunk + 1) * CHUNK_PRODUCTS)

    @cached_property
    def products(self) -> ProductLayer:
        rng = stream(self.seed, "plan-products", self.chunk)
        bits, rnd = rng.getrandbits, rng.random
        reviews_table, questions_table = reviews_per_product(), questions_per_product()
        layer = ProductLayer(self.first_product, [], [], [], [], [], [], [], [], [])
        for product_id in range(self.first_product, self.last_product + 1):
            kind = KINDS[bits(10)]
            categories = CATEGORIES[kind]
            category = categories[int(rnd() * len(categories))]
            price = int(rnd() * 1000) + 1 if rnd() < 0.5 else NICE_PRICES[bits(6)]
            counts = [FEATURES_PER_PRODUCT[bits(10)], STYLES_PER_PRODUCT[bits(10)],
                      RELATED_PER_PRODUCT[bits(10)], reviews_table[bits(12)], questions_table[bits(12)]]
            characteristics = CHARACTERISTIC_SETS[kind][bits(10)]
            if product_id in SHOWCASE_PRODUCTS:
                kind, category, characteristics = APPAREL, "Jackets", ("Fit", "Length", "Comfort", "Quality")
                counts = [max(counts[0], 3), 4, max(counts[2], 4), 8, 6]
            layer.kind.append(kind)
            layer.category.append(category)
            layer.price.append(price)
            layer.n_features.append(counts[0])
            layer.n_styles.append(counts[1])
            layer.n_related.append(counts[2])
            layer.n_reviews.append(counts[3])
            layer.n_questions.append(counts[4])
            layer.characteristics.append(characteristics)
        return layer

    @cached_property
    def styles(self) -> StyleLayer:
        rng = stream(self.seed, "plan-styles", self.chunk)
        bits, rnd = rng.getrandbits, rng.random
        products = self.products
        layer = StyleLayer([], [], [])
        for index, (kind, count) in enumerate(zip(products.kind, products.n_styles)):
            showcase = products.first_id + index in SHOWCASE_PRODUCTS
            for _ in range(count):
                n_photos = PHOTOS_PER_STYLE[bits(10)]
                if kind == APPAREL:
                    sizes = APPAREL_SIZE_SETS[bits(10)]
                elif kind == FOOTWEAR:
                    run = SHOE_RUN_LENGTHS[bits(10)]
                    start = int(rnd() * (len(SHOE_SIZES) - run + 1))
                    sizes = SHOE_SIZES[start:start + run]
                else:
                    sizes = ACCESSORY_SIZE_SETS[bits(10)]
                forced_duplicate = self.chunk == 0 and len(layer.sizes) == 2
                if sizes and (forced_duplicate or rnd() < DUPLICATE_SIZE_RATE):
                    sizes = sizes + (sizes[int(rnd() * len(sizes))],)
                if showcase:
                    n_photos, sizes = max(n_photos, 3), APPAREL_SIZES
                layer.product_index.append(index)
                layer.n_photos.append(n_photos)
                layer.sizes.append(sizes)
        return layer

    @cached_property
    def reviews(self) -> ReviewLayer:
        rng = stream(self.seed, "plan-reviews", self.chunk)
        bits = rng.getrandbits
        products = self.products
        layer = ReviewLayer([], [], [])
        for index, count in enumerate(products.n_reviews):
            showcase = products.first_id + index in SHOWCASE_PRODUCTS
            for nth in range(count):
                layer.product_index.append(index)
                layer.rating.append(RATINGS[bits(10)])
                n_photos = PHOTOS_PER_REVIEW[bits(10)]
                layer.n_photos.append(2 if showcase and nth == 0 else n_photos)
        return layer

    @cached_property
    def questions(self) -> QuestionLayer:
        rng = stream(self.seed, "plan-questions", self.chunk)
        bits, rnd = rng.getrandbits, rng.random
        table = answers_per_question()
        products = self.products
        layer = QuestionLayer([], [], [])
        span = DATE_LAST_MS - DATE_FIRST_MS
        for index, count in enumerate(products.n_questions):
            showcase = products.first_id + index in SHOWCASE_PRODUCTS
            for _ in range(count):
                n_answers = table[bits(12)]
                layer.product_index.append(index)
                layer.date.append(DATE_FIRST_MS + int(rnd() * span))
                layer.n_answers.append(max(1, min(n_answers, 6)) if showcase else n_answers)
        return layer

    @cached_property
    def answers(self) -> AnswerLayer:
        rng = stream(self.seed, "plan-answers", self.chunk)
        bits = rng.getrandbits
        questions = self.questions
        products = self.products
        layer = AnswerLayer([], [])
        for index, (product_index, count) in enumerate(zip(questions.product_index, questions.n_answers)):
            showcase = products.first_id + product_index in SHOWCASE_PRODUCTS
            for nth in range(count):
                layer.question_index.append(index)
                n_photos = PHOTOS_PER_ANSWER[bits(10)]
                layer.n_photos.append(1 if showcase and nth == 0 and index % 2 == 0 else n_photos)
        return layer

    @cached_property
    def extras(self) -> dict[str, tuple[str, ...]]:
        """The deliberate orphan and bad rows each file gets at the end of this chunk."""
        phases = extra_row_phases(self.seed)
        kinds: dict[str, tuple[str, ...]] = {}
        for name in FILES:
            orphan_phase, bad_phase = phases[name]
            chosen = []
            first = self.chunk == 0
            if name not in ("product", "cart") and (first or self.chunk % ORPHAN_EVERY_CHUNKS == orphan_phase):
                chosen.append("orphan")
            if name in BAD_ROW_FILES and (first or self.chunk % BAD_EVERY_CHUNKS == bad_phase):
                chosen.append("bad")
            kinds[name] = tuple(chosen)
        return kinds

    def table_rows(self) -> dict[str, int]:
        """Rows this chunk adds to each chunked table, extras included: the basis of all ids."""
        products, styles, reviews = self.products, self.styles, self.reviews
        extras = {name: len(kinds) for name, kinds in self.extras.items()}
        return {
            "product": self.last_product - self.first_product + 1,
            "features": sum(products.n_features) + extras["features"],
            "styles": sum(products.n_styles) + extras["styles"],
            "photos": sum(styles.n_photos) + extras["photos"],
            "skus": sum(map(len, styles.sizes)) + extras["skus"],
            "related": sum(products.n_related) + extras["related"],
            "reviews": sum(products.n_reviews) + extras["reviews"],
            "reviews_photos": sum(reviews.n_photos) + extras["reviews_photos"],
            "characteristics": sum(map(len, products.characteristics)) + extras["characteristics"],
            "characteristic_reviews": sum(n * len(chars) for n, chars in
                                          zip(products.n_reviews, products.characteristics))
            + extras["characteristic_reviews"],
            "questions": sum(products.n_questions) + extras["questions"],
            "answers": sum(self.questions.n_answers) + extras["answers"],
            "answers_photos": sum(self.answers.n_photos) + extras["answers_photos"],
        }


@dataclass(frozen=True)
class Layout:
    """First id of every table in every chunk, shared by all writers so foreign keys agree."""

    seed: int
    scale: Scale
    starts: dict[str, tuple[int, ...]]  # table -> first id per chunk, plus total + 1 at the end

    def first_id(self, table: str, chunk: int) -> int:
        return self.starts[table][chunk]

    def total(self, table: str) -> int:
        return self.starts[table][-1] - 1


def chunk_rows_for_range(seed: int, scale_name: str, first_chunk: int, stop_chunk: int) -> list[dict[str, int]]:
    """Rows per table of a run of chunks (the unit of work of the planning pass)."""
    scale = SCALES[scale_name]
    return [ChunkPlan(seed, scale, chunk).table_rows() for chunk in range(first_chunk, stop_chunk)]


def layout_from_chunk_rows(seed: int, scale: Scale, per_chunk: list[dict[str, int]]) -> Layout:
    starts: dict[str, tuple[int, ...]] = {}
    for table in CHUNKED_TABLES:
        next_id, firsts = 1, []
        for rows in per_chunk:
            firsts.append(next_id)
            next_id += rows[table]
        firsts.append(next_id)
        starts[table] = tuple(firsts)
    return Layout(seed, scale, starts)


# --------------------------------------------------------------------------------------------
# Text pools: built once per writer, already CSV-escaped, joined cheaply per row
# --------------------------------------------------------------------------------------------

LOREM = (
    "a ab accusamus accusantium ad adipisci alias aliquam aliquid amet animi aperiam architecto "
    "asperiores aspernatur assumenda at atque aut autem beatae blanditiis commodi consectetur "
    "consequatur consequuntur corporis corrupti culpa cum cumque cupiditate debitis delectus deleniti "
    "deserunt dicta dignissimos distinctio dolor dolore dolorem doloremque dolores doloribus dolorum "
    "ducimus ea eaque earum eius eligendi enim eos error esse est et eum eveniet ex excepturi "
    "exercitationem expedita explicabo facere facilis fuga fugiat fugit harum hic id illo illum impedit "
    "in incidunt inventore ipsa ipsam ipsum iste itaque iure iusto labore laboriosam laborum laudantium "
    "libero magnam magni maiores maxime minima minus modi molestiae molestias mollitia nam natus "
    "necessitatibus nemo neque nesciunt nihil nisi nobis non nostrum nulla numquam obcaecati occaecati "
    "odio odit officia officiis omnis optio pariatur perferendis perspiciatis placeat porro possimus "
    "praesentium provident quae quaerat quam quas quasi qui quia quibusdam quidem quis quisquam quo "
    "quod quos ratione recusandae reiciendis rem repellat repellendus reprehenderit repudiandae rerum "
    "saepe sapiente sed sequi similique sint sit soluta sunt suscipit tempora tempore temporibus "
    "tenetur totam ullam unde ut vel velit veniam veritatis vero vitae voluptas voluptate voluptatem "
    "voluptates voluptatibus voluptatum"
).split()

FIRST_NAMES = (
    "Aaliyah Abel Ada Adrian Aiden Alana Albert Alexa Alfonso Alice Alma Amara America Amos Anika Ansel "
    "Antonetta Ari Arlo Astrid Aubrey Axel Beatrice Benny Bianca Blair Bo Brady Brenda Bruno Cade Callie "
    "Camila Carmen Cecil Celeste Chase Chloe Clara Cleo Colby Cora Curtis Dahlia Dane Daphne Darius "
    "Delia Desmond Dolly Dora Eddie Elian Elise Ella Elmo Emery Enzo Esme Ezra Faye Felix Fern Finn "
    "Flora Freddie Gemma Gideon Gina Hana Harvey Hazel Hugo Ida Imani Iris Ivan Jada Jasper Jett Joy "
    "Jude Juno Kai Kaleigh Kip Kit Lana Lars Leila Lena Leon Lola Lou Luca Mabel Makenna Malik Mara "
    "Milo Mina Nadia Nell Nico Nora Odin Olive Omar Orie Otto Paz Pearl Pia Quinn Raya Remy Rhea Rio "
    "Rosa Rufus Sage Sami Selah Silas Stella Steve Tamsin Tate Thea Theo Uma Vera Wade Wren Yara Zane Zoe"
).split()
LAST_NAMES = (
    "Abbott Adams Altenwerth Bahringer Barton Bauch Bechtelar Berge Bernier Blick Boyle Brekke Carroll "
    "Cassin Conn Cormier Cronin Daniel Dare Dibbert Dooley Ebert Effertz Emard Feeney Fisher Frami "
    "Gerhold Gibson Goodwin Greenfelder Grimes Hackett Hagenes Hahn Hansen Harber Hayes Heller Hills "
    "Hintz Howe Jacobs Jaskolski Jenkins Johns Kautzer Keebler Kemmer Kiehn Kling Koss Kuhn Kunze Lakin "
    "Lang Larkin Ledner Lehner Lind Lowe Lueilwitz Mante Marks Mayer McClure Medhurst Mertz Miller "
    "Mohr Morar Muller Nader Nienow Nolan Okuneva Olson Ondricka Pagac Parker Pfeffer Pollich Prosacco "
    "Quigley Rath Reichel Renner Ritchie Rogahn Rohan Rolfson Runolfsdottir Sauer Schiller Schuppe "
    "Shields Spinka Stark Stehr Streich Swift Terry Thiel Toy Tremblay Turner Upton Veum Volkman "
    "Walker Walsh Watsica Weber Wehner White Witting Wolf Yost Zboncak Zemlak Ziemann"
).split()
HANDLE_STARTS = ("fun", "big", "tiny", "happy", "cool", "sunny", "shop", "style", "fashion", "night",
                 "early", "lazy", "busy", "super", "mega", "retro", "urban", "cozy", "wild", "quiet",
                 "silly", "main", "thin", "short", "tall", "bball", "ski", "yankee", "mets", "l33t")
HANDLE_ENDS = ("time", "addict", "lover", "person", "guy", "girl", "fan", "shopper", "bird", "runner",
               "dreamer", "walker", "cat", "dog", "reader", "gamer", "chef", "rider", "queen", "king",
               "foot", "sweet", "mother", "brother", "kid", "pro", "buyer", "critic")
EMAIL_DOMAINS = ("gmail.com", "gmail.com", "gmail.com", "yahoo.com", "hotmail.com", "outlook.com")

REVIEW_SUMMARIES = (
    "This product was great!", "This product was ok!", "Exactly what I was looking for", "Runs a little small",
    "Not worth the price", "Would buy again", "Love it, wear it every day", "Pretty good, but not perfect",
    "Fell apart after a month", "Great value", "Comfortable and stylish", "It's fine.", "My new favourite",
    "Returned it", "Better than expected", "Colour is a bit off", "Five stars, no notes", "Meh",
    "They look good on me", "I'm not a fan!", "Great shoes!", "These pants are fine", "Best fit ever",
    "Cheap material, nice design", "Got so many compliments", "Do not buy", "Perfect gift", "Solid buy",
    "Worth every penny", "Too big", "Too small", "Just right", "Nice, but \"waterproof\" it is not",
    "I was not expecting much, but this turned out to be the best purchase I have made all year long",
    "Bought two, one for me and one for my brother, and we both wear them all the time, no complaints",
)
REVIEW_SENTENCES = (
    "I really did like this product, although it took a while to arrive.",
    "The fabric is soft, breathable and holds its shape after washing.",
    "My sister called it \"the comfiest thing I own\" and she is right.",
    "Sizing runs small, so order one size up.", "They're fine but I wouldn't buy again.",
    "I so stylish and just my aesthetic.", "Comfortable and practical.", "I don't like them",
    "A little tight on the waist.", "Now I can get to stomping!", "I like them but they run wide.",
    "I mortgaged my house to pay for these", "They are very dark.  But that's good because I'm in very sunny spots",
    "The colour in the photos is a lot brighter than in real life.",
    "Stitching came loose after three washes, which is disappointing at this price.",
    "Wore it on a 10-mile hike, no blisters, no complaints.",
    "Pros: light, warm, packs small.\nCons: the zipper sticks.",
    "Customer service replaced the first pair, which had a defect, within a week.",
    "It looks \"vintage\" in the photos; in person it just looks old.",
    "Great for the gym, great for the couch, great for everything in between.",
    "I've had it for a year now and it still looks new.", "Ordered a medium, it fits like a large.",
    "Honestly, better than the brand-name one I had before.", "Not what I expected, but I kept it anyway.",
    "The pockets are deep enough for a phone, finally.", "Smells weird out of the box, airs out after a day.",
    "Arrived on time, well packaged, exactly as described.", "The soles are grippy, even on wet pavement.",
    "It's cute, it's cozy, it's overpriced.", "Would be perfect if the sleeves were an inch longer.",
    "My kids fight over who gets to wear it.", "Five stars for style, three for durability.",
    "Fits true to size, and the length is spot on.", "Not great, not terrible.",
    "Café-ready and office-ready — a rare combination.", "The seller's note said \"handle with care\"; fair enough.",
)
SELLER_RESPONSES = (
    "Glad you're enjoying the product!", "Sorry to hear. Is there anything in particular you don't like?",
    "Thanks for the feedback, we've passed it on to our design team.",
    "We're sorry about the sizing. Please reach out to support, we'd love to make it right.",
    "Thank you! Reviews like yours keep us going.", "Please contact us for a replacement, at no cost.",
)
QUESTIONS = (
    "What fabric is the top made of?", "Does this product run big or small?", "How long does it last?",
    "Can I wash it?", "Is it noise cancelling?", "Where is this product made?", "Is this product sustainable?",
    "I'm allergic to dye #17, does this product contain any?", "Is this true to size?",
    "Is it waterproof, or just water resistant?", "Does the \"one size\" really fit everyone?",
    "How does it fit compared to the older model?", "Can I wear this in the rain?",
    "Is the colour the same as in the pictures?", "Will this shrink in the dryer?",
    "Does it come with a warranty?", "Is it good for running, or just for walking?",
    "What is the return policy, if it doesn't fit?", "How heavy is it?",
    "Is there a matching jacket?\nI can't find it anywhere.", "Are these vegan?",
)
ANSWERS = (
    "Supposedly suede, but I think its synthetic", "Something pretty soft but I can't be sure", "Yes", "No",
    "Canada", "Its the best! Seriously magic fabric", "I wouldn't machine wash it", "Only if you want to ruin it!",
    "Suede", "Runs a bit small, I'd size up", "Mine has lasted two years so far, still going strong",
    "Cotton, mostly", "Made in Portugal, according to the label", "It says \"dry clean only\" on the tag",
    "True to size for me", "Yes, 30 days, no questions asked", "Not really, it's more of a walking shoe",
    "It shrank a little, maybe half a size", "I've had mine for months and still holding up great!",
    "Same colour as the photos, maybe a shade darker", "Light enough to forget you're wearing it",
)
SLOGANS = (
    "Blend in to your crowd", "You've got to wear shades", "Make yourself a morning person",
    "Comfortable for everything, nothing", "Stay cool, literally", "Made for the long way home",
    "Dress up, dress down, dress anyhow", "Because your feet deserve it", "The last one you'll ever need",
)
FEATURES = (
    ("Fabric", ("Canvas", "100% Cotton", "Denim", "Wool Blend", "Fleece", "Linen", "Silk", "Polyester")),
    ("Buttons", ("Brass", "Wood", "Plastic", "Mother of Pearl")),
    ("Lenses", ("Ultrasheen", "Polarized", "Mirrored", "Gradient")),
    ("UV Protection", (None, "100%", "UV400")),
    ("Frame", ("LightCompose", "Titanium", "Acetate")),
    ("Non-GMO", (None,)),
    ("Sole", ("Rubber", "Leather", "Crepe", "EVA")),
    ("Material", ("FullControlSkin", "Mesh", "Leather", "Suede, \"vegan\"", "Recycled Plastic")),
    ("Mid-Sole", ("ControlSupport Arch Bridge", "Foam", "Gel")),
    ("Stitching", ("Double Stitch", "Triple Stitch, reinforced", "Hidden")),
    ("Cut", ("Skinny", "Loose", "Straight", "Relaxed, tapered")),
    ("Green Leaf Certified", (None,)),
    ("Satisfaction Guaranteed", (None,)),
    ("Lifetime Guarantee", (None, "Limited")),
    ("5 Year Warranty", (None,)),
    ("Closure", ("Zipper", "Laces", "Velcro", "Buckle")),
    ("Waterproof", (None, "Yes", "Splash proof")),
)
COLOURS = (
    "Forest Green", "Black", "Desert Brown", "Tan", "Ocean Blue", "Grey", "Digital Red", "Sky Blue", "White",
    "Dark Grey", "Olive", "Salmon", "Turquoise", "Maroon", "Navy", "Plum", "Ivory", "Teal", "Lavender",
    "Mint Green", "Orchid", "Azure", "Cyan", "Gold", "Silver", "Lime", "Magenta", "Indigo", "Orange",
    "Purple", "Violet", "Yellow", "Pink", "Crimson", "Khaki", "Fuchsia", "Cream", "Charcoal", "Burgundy",
)
PRODUCT_NAME_WORDS = ("Camo", "Bright Future", "Morning", "Slacker's", "Heir Force", "Pumped Up", "Summer",
                      "Infinity", "YEasy", "Blues Suede", "Midnight", "Trail", "Urban", "Classic", "Retro")
PHOTO_WIDTHS = (668, 975, 1650, 1567, 2775, 662, 1652, 3028, 1651, 634, 2850, 1350, 1500, 800)


def csv_text(value: str) -> str:
    """Escape for a double-quoted CSV field; pieces escaped this way can be concatenated."""
    return value.replace('"', '""')


def quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@dataclass(frozen=True)
class TextPools:
    """Pre-escaped text (no surrounding quotes) picked with `pool[getrandbits(12)]`."""

    summaries: tuple[str, ...]
    body_parts: tuple[str, ...]
    short_bodies: tuple[str, ...]
    body_separators: tuple[str, ...]
    responses: tuple[str, ...]
    user_names: tuple[str, ...]
    emails: tuple[str, ...]
    questions: tuple[str, ...]
    answers: tuple[str, ...]
    photos: tuple[tuple[str, str], ...]
    photo_urls: tuple[str, ...]
    style_names: tuple[str, ...]
    slogans: tuple[str, ...]
    descriptions: tuple[str, ...]
    first_names: tuple[str, ...]


POOL_BITS = 12
POOL_SIZE = 1 << POOL_BITS


def lorem_sentence(rng: random.Random, low: int, high: int, end: str = ".") -> str:
    words = [rng.choice(LOREM) for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + end


@functools.cache  # once per process: every writer in it shares the pools
def build_text_pools(seed: int) -> TextPools:
    rng = stream(seed, "text-pools", 0)

    def pool(make) -> tuple:
        return tuple(make() for _ in range(POOL_SIZE))

    def summary() -> str:
        roll = rng.random()
        if roll < 0.45:
            return rng.choice(REVIEW_SUMMARIES)
        if roll < 0.9:
            return lorem_sentence(rng, 3, 7)
        return lorem_sentence(rng, 9, 14)  # longer than 60 characters, as in the original

    def body_part() -> str:
        sentences = []
        for _ in range(rng.randint(1, 3)):
            sentences.append(rng.choice(REVIEW_SENTENCES) if rng.random() < 0.35 else lorem_sentence(rng, 5, 16))
        return " ".join(sentences)

    def short_body() -> str:
        return rng.choice(("Love it.", "Meh", "Not for me.", "Great!", "Runs small.", "Perfect fit, thanks",
                           "Good.", "Too tight", "10/10", "Ok, I guess", lorem_sentence(rng, 2, 4)))

    def user_name() -> str:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        return rng.choice((f"{first}.{last}{rng.randint(0, 99)}", f"{first}_{last}", f"{first}{rng.randint(1, 999)}",
                           f"{rng.choice(HANDLE_STARTS)}{rng.choice(HANDLE_ENDS)}",
                           f"{rng.choice(HANDLE_STARTS)}{rng.choice(HANDLE_ENDS)}{rng.randint(1, 99)}"))

    def email() -> str:
        if rng.random() < 0.2:
            return "first.last@gmail.com"
        first, last, domain = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), rng.choice(EMAIL_DOMAINS)
        return rng.choice((f"{first}{rng.randint(1, 99)}@{domain}", f"{first}.{last}{rng.randint(1, 99)}@{domain}",
                           f"{first}_{last}@{domain}", f"{first.lower()}.{last.lower()}@{domain}"))

    def question() -> str:
        if rng.random() < 0.4:
            return rng.choice(QUESTIONS)
        text = lorem_sentence(rng, 4, 14, "?")
        return text + "\n" + lorem_sentence(rng, 3, 8) if rng.random() < 0.03 else text

    def answer() -> str:
        if rng.random() < 0.4:
            return rng.choice(ANSWERS)
        parts = [lorem_sentence(rng, 3, 12) for _ in range(rng.randint(1, 3))]
        return ("\n" if rng.random() < 0.03 else " ").join(parts)

    def photo() -> tuple[str, str]:
        photo_id = f"photo-{rng.randint(1_420_000_000_000, 1_600_000_000_000)}-{rng.getrandbits(48):012x}"
        ixid = "&ixid=eyJhcHBfaWQiOjEyMDd9" if rng.random() < 0.7 else ""
        base = f"https://images.unsplash.com/{photo_id}?ixlib=rb-1.2.1{ixid}&auto=format&fit=crop"
        return f"{base}&w={rng.choice(PHOTO_WIDTHS)}&q=80", f"{base}&w=300&q=80"

    def style_name() -> str:
        first = rng.choice(COLOURS)
        return first if rng.random() < 0.35 else f"{first} & {rng.choice(COLOURS)}"

    def slogan() -> str:
        return rng.choice(SLOGANS) if rng.random() < 0.1 else lorem_sentence(rng, 4, 10)

    def description() -> str:
        if rng.random() < 0.15:
            return (f"Where you're going you might not need roads, but you definitely need these. "
                    f"{lorem_sentence(rng, 6, 12)}")
        return " ".join(lorem_sentence(rng, 3, 9) for _ in range(rng.randint(2, 5)))

    photos = pool(photo)
    escaped = functools.partial(map, csv_text)
    return TextPools(
        summaries=tuple(escaped(pool(summary))),
        body_parts=tuple(escaped(pool(body_part))),
        short_bodies=tuple(escaped(pool(short_body))),
        body_separators=weighted_table({" ": 80, "  ": 10, "\n": 6, "\n\n": 4}, 6),
        responses=tuple(escaped(SELLER_RESPONSES)),
        user_names=tuple(escaped(pool(user_name))),
        emails=tuple(escaped(pool(email))),
        questions=tuple(escaped(pool(question))),
        answers=tuple(escaped(pool(answer))),
        photos=photos,
        photo_urls=tuple(url for url, _ in photos),
        style_names=tuple(escaped(pool(style_name))),
        slogans=tuple(escaped(pool(slogan))),
        descriptions=tuple(escaped(pool(description))),
        first_names=tuple(escaped(tuple(FIRST_NAMES) + PRODUCT_NAME_WORDS)),
    )


# --------------------------------------------------------------------------------------------
# Row builders: one per file, each turning a chunk's plan into CSV records (without newlines
# between them); extras (orphans, bad rows) come last, after the chunk's regular rows.
# --------------------------------------------------------------------------------------------


@dataclass
class ChunkRows:
    records: list[str]
    protected: frozenset[int] = frozenset()  # indexes that must stay where they are


@dataclass(frozen=True)
class Writer:
    """What a file writer needs: the shared layout and its text pools."""

    layout: Layout
    text: TextPools

    @property
    def seed(self) -> int:
        return self.layout.seed

    @property
    def products(self) -> int:
        return self.layout.scale.products

    def missing_id(self, table: str, rng: random.Random) -> int:
        """An id no row of `table` has: what an orphan's foreign key points at."""
        return (self.products if table == "product" else self.layout.total(table)) + 1 + int(rng.random() * 5000)


def pick(rng: random.Random, pool: tuple):
    return pool[int(rng.random() * len(pool))]


def product_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    products, text = plan.products, writer.text
    bits = rng.getrandbits
    names, slogans, descriptions = text.first_names, text.slogans, text.descriptions
    records = []
    for index, (category, price) in enumerate(zip(products.category, products.price)):
        name = f"{pick(rng, names)} {category}"
        records.append(f'{products.first_id + index},"{name}","{slogans[bits(12)]}",'
                       f'"{descriptions[bits(12)]}","{category}",{price}')
    return ChunkRows(records)


def feature_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    """Features drawn per product, rarely the same one twice (the original repeats some)."""
    products = plan.products
    next_id = writer.layout.first_id("features", plan.chunk)
    repeat_pending = plan.chunk == 0  # make sure every data set has a repeated feature
    records = []
    for index, count in enumerate(products.n_features):
        product_id = products.first_id + index
        chosen: list[int] = []
        for _ in range(count):
            choice = int(rng.random() * len(FEATURES))
            if choice in chosen:  # a second draw keeps repeats rare without forbidding them
                choice = int(rng.random() * len(FEATURES))
            if repeat_pending and len(chosen) == 1:
                choice, repeat_pending = chosen[0], False
            chosen.append(choice)
            records.append(feature_record(next_id, product_id, choice, rng))
            next_id += 1
    for _ in plan.extras["features"]:
        records.append(feature_record(next_id, writer.missing_id("product", rng), 0, rng))
        next_id += 1
    return ChunkRows(records)


def feature_record(row_id: int, product_id: int, choice: int, rng: random.Random) -> str:
    feature, values = FEATURES[choice]
    value = values[int(rng.random() * len(values))]
    return f'{row_id},{product_id},"{feature}",{"null" if value is None else quoted(value)}'


def style_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    products, styles, names = plan.products, plan.styles, writer.text.style_names
    bits, rnd = rng.getrandbits, rng.random
    next_id = writer.layout.first_id("styles", plan.chunk)
    records = []
    previous = -1
    for product_index in styles.product_index:
        price = products.price[product_index]
        sale = f"{max(1, int(price * (0.5 + 0.45 * rnd())))}" if rnd() < 0.3 else "null"
        first_of_product = product_index != previous
        default = 1 if first_of_product and rnd() < 0.95 else 0
        previous = product_index
        records.append(f'{next_id},{products.first_id + product_index},"{names[bits(12)]}",{sale},{price},{default}')
        next_id += 1
    for kind in plan.extras["styles"]:
        product_id = writer.missing_id("product", rng) if kind == "orphan" else products.first_id
        price = "NaN" if kind == "bad" else "99"
        records.append(f'{next_id},{product_id},"{names[bits(12)]}",null,{price},0')
        next_id += 1
    return ChunkRows(records)


def photo_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    styles, photos = plan.styles, writer.text.photos
    bits = rng.getrandbits
    style_id = writer.layout.first_id("styles", plan.chunk)
    next_id = writer.layout.first_id("photos", plan.chunk)
    total = sum(styles.n_photos)
    broken, protected = broken_photo_rows(total, plan.chunk, writer.layout.scale, rng)
    records = []
    for count in styles.n_photos:
        for _ in range(count):
            url, thumbnail = photos[bits(12)]
            if len(records) in broken:  # the original's fault: thumbnail_url lacks its closing quote
                records.append(f'{next_id},{style_id},"{url}","{thumbnail}')
            else:
                records.append(f'{next_id},{style_id},"{url}","{thumbnail}"')
            next_id += 1
        style_id += 1
    for _ in plan.extras["photos"]:
        url, thumbnail = photos[bits(12)]
        records.append(f'{next_id},{writer.missing_id("styles", rng)},"{url}","{thumbnail}"')
        next_id += 1
    return ChunkRows(records, protected)


def broken_photo_rows(rows: int, chunk: int, scale: Scale, rng: random.Random) -> tuple[set[int], frozenset[int]]:
    """Positions of the broken rows: pairs a few rows apart, the first at record 48.

    They come in pairs because that is how the original loses only a few rows under a plain
    PostgreSQL COPY: the unterminated quote of the first row runs on to the second one. The pair
    never ends a file, so the last line always parses.
    """
    wanted = int(rows / scale.photo_break_every + rng.random())
    starts = [47] if chunk == 0 and rows > 60 else []
    starts += [int(rng.random() * (rows - 5)) for _ in range(wanted)] if rows > 10 else []
    broken: set[int] = set()
    protected: set[int] = set()
    for start in starts:
        gap = BROKEN_PAIR_GAPS[rng.getrandbits(6)]
        span = range(start - 1, start + gap + 2)
        if any(index in protected for index in span) or start + gap >= rows - 1:
            continue
        broken.update((start, start + gap))
        protected.update(span)
    return broken, frozenset(protected)


def sku_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    styles = plan.styles
    bits = rng.getrandbits
    style_id = writer.layout.first_id("styles", plan.chunk)
    next_id = writer.layout.first_id("skus", plan.chunk)
    records = []
    for sizes in styles.sizes:
        for size in sizes:
            records.append(f'{next_id},{style_id},"{size}",{SKU_QUANTITIES[bits(10)]}')
            next_id += 1
        style_id += 1
    for kind in plan.extras["skus"]:
        if kind == "orphan":
            records.append(f'{next_id},{writer.missing_id("styles", rng)},"M",{SKU_QUANTITIES[bits(10)]}')
        else:  # an unparseable quantity
            quantity = pick(rng, ("1O", "NaN", "seven", "4.5.1"))
            records.append(f'{next_id},{writer.layout.first_id("styles", plan.chunk)},"L",{quantity}')
        next_id += 1
    return ChunkRows(records)


def related_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    products = plan.products
    rnd = rng.random
    last = writer.products
    next_id = writer.layout.first_id("related", plan.chunk)
    records = []
    forced_zero = plan.chunk == 0
    for index, count in enumerate(products.n_related):
        product_id = products.first_id + index
        related = 0
        for _ in range(count):
            roll = rnd()
            if related and roll < 0.01:
                pass  # the same related product listed twice
            elif roll < 0.013:
                related = product_id  # a self-reference
            elif roll < 0.7:
                offset = int(rnd() * 200) - 100
                related = min(last, max(1, product_id + (offset if offset < 0 else offset + 1)))
            else:
                related = int(rnd() * last) + 1
            if rnd() < RELATED_ZERO_RATE or (forced_zero and index >= 5):
                related, forced_zero = 0, False
            records.append(f"{next_id},{product_id},{related}")
            next_id += 1
    for _ in plan.extras["related"]:
        records.append(f"{next_id},{writer.missing_id('product', rng)},{int(rnd() * last) + 1}")
        next_id += 1
    return ChunkRows(records)


def cart_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    """Historic carts are not per product: all of them are written with the first chunk."""
    if plan.chunk != 0:
        return ChunkRows([])
    rnd = rng.random
    last = writer.products
    records = []
    session = 1000 + int(rnd() * 9000)
    for row_id in range(1, writer.layout.scale.cart_rows + 1):
        if rnd() < 0.4:
            session = 1000 + int(rnd() * 9000)
        active = 1 if rnd() < 0.3 else 0
        records.append(f"{row_id},{session},{int(rnd() * last) + 1},{active}")
    row_id = writer.layout.scale.cart_rows + 1
    records.append(f"{row_id},{session},{writer.missing_id('product', rng)},0")  # an orphan
    return ChunkRows(records)


def review_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    products, reviews, text = plan.products, plan.reviews, writer.text
    bits, rnd = rng.getrandbits, rng.random
    summaries, parts, shorts, separators = text.summaries, text.body_parts, text.short_bodies, text.body_separators
    names, emails, responses = text.user_names, text.emails, text.responses
    helpfulness = helpfulness_counts()
    span = DATE_LAST_MS - DATE_FIRST_MS
    first_product = products.first_id
    next_id = writer.layout.first_id("reviews", plan.chunk)
    records = []
    for product_index, rating in zip(reviews.product_index, reviews.rating):
        product_id = first_product + product_index
        roll = rnd()
        if roll < 0.04:
            body = shorts[bits(12)]  # shorter than the 50 characters new posts need
        elif roll < 0.55:
            body = parts[bits(12)]
        else:
            body = parts[bits(12)] + separators[bits(6)] + parts[bits(12)]
        recommend = "true" if rnd() < RECOMMEND_BY_RATING[rating] else "false"
        reported = "true" if rnd() < 0.03 and product_id not in SHOWCASE_PRODUCTS else "false"
        response = f'"{pick(rng, responses)}"' if rnd() < 0.1 else "null"
        records.append(f'{next_id},{product_id},{rating},{DATE_FIRST_MS + int(rnd() * span)},"{summaries[bits(12)]}",'
                       f'"{body}",{recommend},{reported},"{names[bits(12)]}","{emails[bits(12)]}",{response},'
                       f'{helpfulness[bits(12)]}')
        next_id += 1
    for kind in plan.extras["reviews"]:
        product_id = writer.missing_id("product", rng) if kind == "orphan" else first_product
        rating = pick(rng, (0, 6, 7, -1)) if kind == "bad" else 5
        records.append(f'{next_id},{product_id},{rating},{DATE_FIRST_MS + int(rnd() * span)},"{summaries[bits(12)]}",'
                       f'"{parts[bits(12)]}",true,false,"{names[bits(12)]}","{emails[bits(12)]}",null,0')
        next_id += 1
    return ChunkRows(records)


def content_photo_rows(parent: str, table: str):
    """Rows of reviews_photos or answers_photos: both files are `id,<parent>_id,"url"` with the same quirks."""

    def rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
        urls = writer.text.photo_urls
        bits = rng.getrandbits
        parent_id = writer.layout.first_id(parent, plan.chunk)
        next_id = writer.layout.first_id(table, plan.chunk)
        records = []
        for count in getattr(plan, parent).n_photos:
            for _ in range(count):
                records.append(f'{next_id},{parent_id},"{urls[bits(12)]}"')
                next_id += 1
            parent_id += 1
        for _ in plan.extras[table]:
            records.append(f'{next_id},{writer.missing_id(parent, rng)},"{urls[bits(12)]}"')
            next_id += 1
        return ChunkRows(records)

    return rows


def characteristic_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    products = plan.products
    next_id = writer.layout.first_id("characteristics", plan.chunk)
    records = []
    for index, names in enumerate(products.characteristics):
        for name in names:
            records.append(f'{next_id},{products.first_id + index},"{name}"')
            next_id += 1
    for _ in plan.extras["characteristics"]:
        records.append(f'{next_id},{writer.missing_id("product", rng)},"{pick(rng, ("Fit", "Quality"))}"')
        next_id += 1
    return ChunkRows(records)


def characteristic_review_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    """One row per (review, characteristic of the review's product), scored near the rating."""
    products, ratings = plan.products, plan.reviews.rating
    bits = rng.getrandbits
    characteristic_id = writer.layout.first_id("characteristics", plan.chunk)
    review_id = writer.layout.first_id("reviews", plan.chunk)
    next_id = writer.layout.first_id("characteristic_reviews", plan.chunk)
    records = []
    append = records.append
    last_pair = None
    review_index = 0
    for count, names in zip(products.n_reviews, products.characteristics):
        width = len(names)
        for _ in range(count):
            values = CHARACTERISTIC_VALUES[ratings[review_index]]
            review_index += 1
            for offset in range(width):
                append(f"{next_id},{characteristic_id + offset},{review_id},{values[bits(6)]}")
                next_id += 1
            if width:
                last_pair = (characteristic_id, review_id)
            review_id += 1
        characteristic_id += width
    for kind in plan.extras["characteristic_reviews"]:
        if kind == "bad" and last_pair:  # a real pair scored outside 1-5
            append(f"{next_id},{last_pair[0]},{last_pair[1]},{pick(rng, (0, 6, 9))}")
        elif rng.random() < 0.5:
            append(f"{next_id},{writer.layout.first_id('characteristics', plan.chunk)},"
                   f"{writer.missing_id('reviews', rng)},{1 + bits(2)}")
        else:
            append(f"{next_id},{writer.missing_id('characteristics', rng)},"
                   f"{writer.layout.first_id('reviews', plan.chunk)},{1 + bits(2)}")
        next_id += 1
    return ChunkRows(records)


def question_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    products, questions, text = plan.products, plan.questions, writer.text
    bits, rnd = rng.getrandbits, rng.random
    bodies, names, emails = text.questions, text.user_names, text.emails
    helpful = helpfulness_counts()
    next_id = writer.layout.first_id("questions", plan.chunk)
    records = []
    for product_index, date in zip(questions.product_index, questions.date):
        product_id = products.first_id + product_index
        reported = 1 if rnd() < 0.01 and product_id not in SHOWCASE_PRODUCTS else 0
        records.append(f'{next_id},{product_id},"{bodies[bits(12)]}",{date},"{names[bits(12)]}",'
                       f'"{emails[bits(12)]}",{reported},{helpful[bits(12)]}')
        next_id += 1
    for kind in plan.extras["questions"]:
        product_id = writer.missing_id("product", rng) if kind == "orphan" else products.first_id
        helpful_text = pick(rng, ("3a", "NaN", "1.5")) if kind == "bad" else "0"
        records.append(f'{next_id},{product_id},"{bodies[bits(12)]}",{DATE_FIRST_MS},"{names[bits(12)]}",'
                       f'"{emails[bits(12)]}",0,{helpful_text}')
        next_id += 1
    return ChunkRows(records)


def answer_rows(writer: Writer, plan: ChunkPlan, rng: random.Random) -> ChunkRows:
    questions, answers, text = plan.questions, plan.answers, writer.text
    bits, rnd = rng.getrandbits, rng.random
    bodies, names, emails = text.answers, text.user_names, text.emails
    helpful = helpfulness_counts()
    first_question = writer.layout.first_id("questions", plan.chunk)
    next_id = writer.layout.first_id("answers", plan.chunk)
    records = []
    for question_index in answers.question_index:
        date = min(DATE_LAST_MS, questions.date[question_index] + int(rnd() * 5_184_000_000))  # within 60 days
        if rnd() < 0.06:
            name, email = "Seller", "null" if rnd() < 0.6 else f'"{emails[bits(12)]}"'
        else:
            name, email = names[bits(12)], f'"{emails[bits(12)]}"'
        reported = 1 if rnd() < 0.01 else 0
        records.append(f'{next_id},{first_question + question_index},"{bodies[bits(12)]}",{date},"{name}",{email},'
                       f'{reported},{helpful[bits(12)]}')
        next_id += 1
    for kind in plan.extras["answers"]:
        question_id = writer.missing_id("questions", rng) if kind == "orphan" else first_question
        helpful_text = pick(rng, ("two", "NaN", "-")) if kind == "bad" else "0"
        records.append(f'{next_id},{question_id},"{bodies[bits(12)]}",{DATE_LAST_MS},"{names[bits(12)]}",'
                       f'"{emails[bits(12)]}",0,{helpful_text}')
        next_id += 1
    return ChunkRows(records)


ROW_BUILDERS = {
    "product": product_rows,
    "features": feature_rows,
    "styles": style_rows,
    "photos": photo_rows,
    "skus": sku_rows,
    "related": related_rows,
    "cart": cart_rows,
    "reviews": review_rows,
    "reviews_photos": content_photo_rows("reviews", "reviews_photos"),
    "characteristics": characteristic_rows,
    "characteristic_reviews": characteristic_review_rows,
    "questions": question_rows,
    "answers": answer_rows,
    "answers_photos": content_photo_rows("answers", "answers_photos"),
}
# Relative CPU cost of a row, to hand the slowest files out first.
ROW_COST = {"product": 4, "features": 1.2, "styles": 1.2, "photos": 1, "skus": 0.7, "related": 0.8, "cart": 1,
            "reviews": 4, "reviews_photos": 0.8, "characteristics": 0.7, "characteristic_reviews": 0.7,
            "questions": 2, "answers": 2.5, "answers_photos": 0.8}


def swap_some_neighbours(records: list[str], protected: frozenset[int], rng: random.Random, force: bool) -> None:
    """Put the odd row before its predecessor (id 8 before 7), as the original does."""
    count = int(len(records) * SWAP_RATE + rng.random())
    positions = [int(rng.random() * (len(records) - 1)) for _ in range(count)] if len(records) > 1 else []
    if force and len(records) > 8:
        positions.append(6)
    for position in positions:
        if position in protected or position + 1 in protected:
            continue
        records[position], records[position + 1] = records[position + 1], records[position]


# --------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileResult:
    name: str
    rows: int
    bytes: int
    seconds: float


def write_file(name: str, layout: Layout, out_dir: str, progress: bool) -> FileResult:
    """Write one CSV file chunk by chunk; the last record gets no trailing newline."""
    started = time.monotonic()
    writer = Writer(layout, build_text_pools(layout.seed))
    build = ROW_BUILDERS[name]
    path = pathlib.Path(out_dir) / f"{name}.csv"
    partial = path.with_suffix(".csv.partial")
    rows, last_report = 0, started
    chunks = 1 if name == "cart" else chunk_count(layout.scale)
    with open(partial, "w", encoding="utf-8", newline="", buffering=1 << 22) as out:
        out.write(HEADERS[name])
        for chunk in range(chunks):
            plan = ChunkPlan(layout.seed, layout.scale, chunk)
            rng = stream(layout.seed, name, chunk)
            chunk_rows = build(writer, plan, rng)
            swap_some_neighbours(chunk_rows.records, chunk_rows.protected, rng, force=chunk == 0)
            if chunk_rows.records:
                out.write("\n")
                out.write("\n".join(chunk_rows.records))
                rows += len(chunk_rows.records)
            if progress and time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                report_progress(name, rows, last_report - started, chunk + 1, chunks)
    os.replace(partial, path)
    seconds = time.monotonic() - started
    if progress:
        report_progress(name, rows, seconds, chunks, chunks)
    return FileResult(name, rows, path.stat().st_size, seconds)


def report_progress(name: str, rows: int, seconds: float, chunks_done: int, chunks: int) -> None:
    state = "done" if chunks_done == chunks else f"{100 * chunks_done // chunks:3d}%"
    rate = rows / seconds if seconds > 0 else 0.0
    print(f"generate {name:<23} {state:>4} {rows:>12,} rows {rate:>10,.0f} rows/s", file=sys.stderr, flush=True)


def plan_layout(seed: int, scale: Scale, pool) -> Layout:
    """The planning pass: every chunk's row counts, summed into first ids per chunk."""
    chunks = chunk_count(scale)
    step = max(1, chunks // 32)
    ranges = [(seed, scale.name, first, min(chunks, first + step)) for first in range(0, chunks, step)]
    if pool is None:
        parts = [chunk_rows_for_range(*arguments) for arguments in ranges]
    else:
        parts = pool.starmap(chunk_rows_for_range, ranges)
    return layout_from_chunk_rows(seed, scale, [rows for part in parts for rows in part])


def estimated_cost(name: str, layout: Layout) -> float:
    rows = layout.scale.cart_rows if name == "cart" else layout.total(name)
    return rows * ROW_COST[name]


def generate(out_dir: pathlib.Path, scale: str = "tiny", seed: int = 1, progress: bool = False) -> dict[str, int]:
    """Write the 14 CSV files into out_dir; return {file name without .csv: data rows written}.

    Same seed, same scale: byte-identical files, whatever the number of processes.
    """
    results = generate_files(pathlib.Path(out_dir), SCALES[scale], seed, progress)
    return {name: results[name].rows for name in FILES}


def generate_files(out_dir: pathlib.Path, scale: Scale, seed: int, progress: bool,
                   processes: int | None = None) -> dict[str, FileResult]:
    out_dir.mkdir(parents=True, exist_ok=True)
    if processes is None:
        processes = 1 if scale.products <= 5_000 else min(os.cpu_count() or 1, len(FILES))
    if processes <= 1:
        layout = plan_layout(seed, scale, None)
        results = [write_file(name, layout, str(out_dir), progress) for name in FILES]
    else:
        # spawn, not fork: callers may have threads (event loops, test runners) running.
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            started = time.monotonic()
            layout = plan_layout(seed, scale, pool)
            if progress:
                planned = time.monotonic() - started
                print(f"generate planned {scale.name} in {planned:.1f}s", file=sys.stderr, flush=True)
            order = sorted(FILES, key=lambda name: estimated_cost(name, layout), reverse=True)
            jobs = [(name, layout, str(out_dir), progress) for name in order]
            results = pool.starmap(write_file, jobs, chunksize=1)
    return {result.name: result for result in results}


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scales = "; ".join(f"{scale.name}: {scale.about}" for scale in SCALES.values())
    parser.add_argument("--scale", choices=tuple(SCALES), default="tiny",
                        help=f"size of the data set, default %(default)s ({scales})")
    parser.add_argument("--out", type=pathlib.Path, required=True,
                        help="folder to write the 14 CSV files into (created if missing, files overwritten)")
    parser.add_argument("--seed", type=int, default=1,
                        help="random seed; the same seed and scale give byte-identical files (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no per-file progress on stderr")
    parser.epilog = ("The files follow the original Atelier CSV formats, quirks included: quoted text with commas, "
                     "quotes and newlines, the word null, broken photos.csv rows (the first at record 48), "
                     "orphans, out-of-range values, unsorted ids, no final newline.")


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    scale = SCALES[args.scale]
    results = generate_files(pathlib.Path(args.out), scale, args.seed, progress=not getattr(args, "quiet", False))
    print(f"{'file':<24} {'rows':>12} {'bytes':>15}")
    for name in FILES:
        print(f"{name + '.csv':<24} {results[name].rows:>12,} {results[name].bytes:>15,}")
    total_rows = sum(result.rows for result in results.values())
    total_bytes = sum(result.bytes for result in results.values())
    print(f"{'total':<24} {total_rows:>12,} {total_bytes:>15,}")
    print(f"{scale.name} data set (seed {args.seed}) written to {args.out} in {time.monotonic() - started:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    # Run through the package module, not __main__, so pool workers can import what they run.
    from schema import generate as module

    parser = argparse.ArgumentParser(prog="python -m schema.generate", description=module.__doc__.splitlines()[0])
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""Every read model: its number, its table, its key and the one SQL query that builds it.

Each query is written once and rendered two ways: for a set of keys (`= ANY($1)`, used by the
reader on a miss, by the worker's refresh and by the drift check) and for the whole data set (no
filter, used by the bulk build after a load). Both renderings share every expression that makes
the bytes, so a bulk-built body and a per-id body cannot differ.

Bodies are compact JSON assembled with `||` and `to_json(text)` instead of json_build_object:
PostgreSQL's json functions put spaces after colons and commas, and the reader re-encodes sliced
lists with orjson, which writes none — one spelling everywhere keeps responses byte-stable.
(`to_json(text)` escapes exactly like orjson: \\" \\\\ \\b \\f \\n \\r \\t, other controls as \\u00xx.)
Key order follows the contract's listing order.
"""

from __future__ import annotations

import enum
from typing import Callable


class Kind(enum.IntEnum):
    PRODUCT = 1  # GET /products/:id body
    STYLES = 2  # GET /products/:id/styles body
    RELATED = 3  # GET /products/:id/related body
    REVIEWS = 4  # non-reported reviews of a product, "relevant" order (a JSON array)
    META = 5  # GET /reviews/meta body
    QUESTIONS = 6  # non-reported questions with nested answers, served order (a JSON array)
    ANSWERS = 7  # non-reported answers of one question, served order (a JSON array)


PRODUCT_KINDS = (Kind.PRODUCT, Kind.STYLES, Kind.RELATED, Kind.REVIEWS, Kind.META, Kind.QUESTIONS)
QUESTION_KINDS = (Kind.ANSWERS,)

TABLES = {
    Kind.PRODUCT: "rm_product",
    Kind.STYLES: "rm_styles",
    Kind.RELATED: "rm_related",
    Kind.REVIEWS: "rm_reviews",
    Kind.META: "rm_meta",
    Kind.QUESTIONS: "rm_questions",
    Kind.ANSWERS: "rm_answers",
}

KEYS = "$1::int[]"

# Filter rendering: `only(cond)` is "AND cond" when building chosen keys, "" for the whole data set.
Only = Callable[[str], str]


def _keyed(cond: str) -> str:
    return f"AND {cond}"


def _everything(cond: str) -> str:
    return ""


def _day(column: str) -> str:
    return f"""('"' || to_char({column}, 'YYYY-MM-DD') || 'T00:00:00.000Z"')"""


def _stamp(column: str) -> str:
    return f"""('"' || to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS') || 'Z"')"""


def _nullable(expr: str) -> str:
    return f"coalesce(to_json({expr})::text, 'null')"


def _list_per(parent: str, link: str, inner: str, only: Only) -> str:
    """Every row of `parent` with its list (`[]` when empty): a key that exists always has a body."""
    return f"""
SELECT t.id AS key, coalesce(l.items, 0) AS items, coalesce(l.body, '[]') AS body
FROM {parent} t
LEFT JOIN ({inner}
) l ON l.{link} = t.id
WHERE true {only(f"t.id = ANY({KEYS})")}"""


# The product fields every product body starts with, open-ended so the detail can add features.
_PRODUCT_FIELDS = f"""
  '{{"id":' || p.id || ',"campus":"hr-rfp","name":' || to_json(p.name) || ',"slogan":' || to_json(p.slogan)
  || ',"description":' || to_json(p.description) || ',"category":' || to_json(p.category)
  || ',"default_price":"' || p.default_price || '","created_at":' || {_stamp('p.created_at')}
  || ',"updated_at":' || {_stamp('p.updated_at')}"""

# GET /products: one page of the catalogue, without features (products are read-only, so this is
# no stored model: the reader caches each page it served).
PRODUCT_LIST = f"""
SELECT convert_to('[' || coalesce(string_agg({_PRODUCT_FIELDS} || '}}', ',' ORDER BY p.id), '') || ']', 'UTF8')
FROM (SELECT * FROM products ORDER BY id LIMIT $1 OFFSET $2) p"""


def _product(only: Only) -> str:
    return f"""
SELECT p.id AS key, 0 AS items,{_PRODUCT_FIELDS}
  || ',"features":' || coalesce(f.body, '[]') || '}}' AS body
FROM products p
LEFT JOIN (
  SELECT product_id, '[' || string_agg('{{"feature":' || to_json(feature) || ',"value":' || {_nullable('value')} || '}}',
                                      ',' ORDER BY id) || ']' AS body
  FROM features WHERE true {only(f"product_id = ANY({KEYS})")}
  GROUP BY product_id
) f ON f.product_id = p.id
WHERE true {only(f"p.id = ANY({KEYS})")}"""


def _styles(only: Only) -> str:
    style_of_keys = f"style_id IN (SELECT id FROM styles WHERE product_id = ANY({KEYS}))"
    return f"""
SELECT p.id AS key, 0 AS items,
  '{{"product_id":"' || p.id || '","results":' || coalesce(s.body, '[]') || '}}' AS body
FROM products p
LEFT JOIN (
  SELECT st.product_id, '[' || string_agg(
      '{{"style_id":' || st.id || ',"name":' || to_json(st.name) || ',"original_price":"' || st.original_price
      || '","sale_price":' || coalesce('"' || st.sale_price || '"', 'null') || ',"default?":' || st.default_style
      || ',"photos":' || coalesce(ph.body, '[{{"thumbnail_url":null,"url":null}}]')
      || ',"skus":' || coalesce(sk.body, '{{"null":{{"quantity":null,"size":null}}}}') || '}}',
      ',' ORDER BY st.id) || ']' AS body
  FROM styles st
  LEFT JOIN (
    SELECT style_id, '[' || string_agg('{{"thumbnail_url":' || {_nullable('thumbnail_url')} || ',"url":'
                                      || {_nullable('url')} || '}}', ',' ORDER BY id) || ']' AS body
    FROM photos WHERE true {only(style_of_keys)}
    GROUP BY style_id
  ) ph ON ph.style_id = st.id
  LEFT JOIN (
    SELECT style_id, '{{' || string_agg('"' || id || '":{{"quantity":' || quantity || ',"size":' || to_json(size) || '}}',
                                       ',' ORDER BY id) || '}}' AS body
    FROM skus WHERE true {only(style_of_keys)}
    GROUP BY style_id
  ) sk ON sk.style_id = st.id
  WHERE true {only(f"st.product_id = ANY({KEYS})")}
  GROUP BY st.product_id
) s ON s.product_id = p.id
WHERE true {only(f"p.id = ANY({KEYS})")}"""


def _related(only: Only) -> str:
    return _list_per("products", "current_product_id", f"""
  SELECT current_product_id, count(*) AS items,
         '[' || string_agg(related_product_id::text, ',' ORDER BY id) || ']' AS body
  FROM related WHERE true {only(f"current_product_id = ANY({KEYS})")}
  GROUP BY current_product_id""", only)


def _reviews(only: Only) -> str:
    review_of_keys = f"review_id IN (SELECT id FROM reviews WHERE product_id = ANY({KEYS}))"
    return _list_per("products", "product_id", f"""
  SELECT rv.product_id, count(*) AS items, '[' || string_agg(
      '{{"review_id":' || rv.id || ',"rating":' || rv.rating || ',"summary":' || to_json(rv.summary)
      || ',"recommend":' || rv.recommend || ',"response":' || {_nullable('rv.response')}
      || ',"body":' || to_json(rv.body) || ',"date":' || {_day('rv.date')}
      || ',"reviewer_name":' || to_json(rv.reviewer_name) || ',"helpfulness":' || rv.helpfulness
      || ',"photos":' || coalesce(ph.body, '[]') || '}}',
      ',' ORDER BY rv.helpfulness DESC, rv.date DESC, rv.id DESC) || ']' AS body
  FROM reviews rv
  LEFT JOIN (
    SELECT review_id, '[' || string_agg('{{"id":' || id || ',"url":' || to_json(url) || '}}', ',' ORDER BY id) || ']' AS body
    FROM reviews_photos WHERE true {only(review_of_keys)}
    GROUP BY review_id
  ) ph ON ph.review_id = rv.id
  WHERE NOT rv.reported {only(f"rv.product_id = ANY({KEYS})")}
  GROUP BY rv.product_id""", only)


def _meta(only: Only) -> str:
    return f"""
WITH buckets AS (
  SELECT product_id, rating, recommend, count(*) AS n
  FROM reviews WHERE NOT reported {only(f"product_id = ANY({KEYS})")}
  GROUP BY product_id, rating, recommend
)
SELECT p.id AS key, 0 AS items,
  '{{"product_id":"' || p.id || '","ratings":' || coalesce(rt.body, '{{}}') || ',"recommended":' || coalesce(rc.body, '{{}}')
  || ',"characteristics":' || coalesce(ch.body, '{{}}') || '}}' AS body
FROM products p
LEFT JOIN (
  SELECT product_id, '{{' || string_agg('"' || rating || '":"' || n || '"', ',' ORDER BY rating) || '}}' AS body
  FROM (SELECT product_id, rating, sum(n) AS n FROM buckets GROUP BY product_id, rating) b
  GROUP BY product_id
) rt ON rt.product_id = p.id
LEFT JOIN (
  SELECT product_id, '{{' || string_agg('"' || recommend || '":"' || n || '"', ',' ORDER BY recommend) || '}}' AS body
  FROM (SELECT product_id, recommend, sum(n) AS n FROM buckets GROUP BY product_id, recommend) b
  GROUP BY product_id
) rc ON rc.product_id = p.id
LEFT JOIN (
  SELECT c.product_id, '{{' || string_agg(
      to_json(c.name) || ':{{"id":' || c.id || ',"value":' || coalesce('"' || round(a.mean, 16) || '"', 'null') || '}}',
      ',' ORDER BY c.id) || '}}' AS body
  FROM characteristics c
  LEFT JOIN (
    SELECT cr.characteristic_id, avg(cr.value) AS mean
    FROM characteristic_reviews cr JOIN reviews rv ON rv.id = cr.review_id
    WHERE NOT rv.reported {only(f"rv.product_id = ANY({KEYS})")}
    GROUP BY cr.characteristic_id
  ) a ON a.characteristic_id = c.id
  WHERE true {only(f"c.product_id = ANY({KEYS})")}
  GROUP BY c.product_id
) ch ON ch.product_id = p.id
WHERE true {only(f"p.id = ANY({KEYS})")}"""


def _answer_photos(only: Only, question_filter: str) -> str:
    """Photos of non-reported answers, both as URL strings (nested in questions) and as objects."""
    return f"""
    SELECT answer_id,
           '[' || string_agg(to_json(url)::text, ',' ORDER BY id) || ']' AS urls,
           '[' || string_agg('{{"id":' || id || ',"url":' || to_json(url) || '}}', ',' ORDER BY id) || ']' AS objects
    FROM answers_photos WHERE true {only(f"answer_id IN (SELECT id FROM answers WHERE {question_filter})")}
    GROUP BY answer_id"""


def _questions(only: Only) -> str:
    questions_of_keys = f"question_id IN (SELECT id FROM questions WHERE product_id = ANY({KEYS}))"
    return _list_per("products", "product_id", f"""
  SELECT qs.product_id, count(*) AS items, '[' || string_agg(
      '{{"question_id":' || qs.id || ',"question_body":' || to_json(qs.body) || ',"question_date":' || {_day('qs.date_written')}
      || ',"asker_name":' || to_json(qs.asker_name) || ',"question_helpfulness":' || qs.helpful
      || ',"reported":false,"answers":' || coalesce(a.body, '{{}}') || '}}',
      ',' ORDER BY qs.helpful DESC, qs.id) || ']' AS body
  FROM questions qs
  LEFT JOIN (
    SELECT an.question_id, '{{' || string_agg(
        '"' || an.id || '":{{"id":' || an.id || ',"body":' || to_json(an.body) || ',"date":' || {_day('an.date_written')}
        || ',"answerer_name":' || to_json(an.answerer_name) || ',"helpfulness":' || an.helpful
        || ',"photos":' || coalesce(ap.urls, '[]') || '}}',
        ',' ORDER BY an.helpful DESC, an.id) || '}}' AS body
    FROM answers an
    LEFT JOIN ({_answer_photos(only, questions_of_keys)}) ap ON ap.answer_id = an.id
    WHERE NOT an.reported {only(questions_of_keys)}
    GROUP BY an.question_id
  ) a ON a.question_id = qs.id
  WHERE NOT qs.reported {only(f"qs.product_id = ANY({KEYS})")}
  GROUP BY qs.product_id""", only)


def _answers(only: Only) -> str:
    return _list_per("questions", "question_id", f"""
  SELECT an.question_id, count(*) AS items, '[' || string_agg(
      '{{"answer_id":' || an.id || ',"body":' || to_json(an.body) || ',"date":' || {_day('an.date_written')}
      || ',"answerer_name":' || to_json(an.answerer_name) || ',"helpfulness":' || an.helpful
      || ',"photos":' || coalesce(ap.objects, '[]') || '}}',
      ',' ORDER BY an.helpful DESC, an.id) || ']' AS body
  FROM answers an
  LEFT JOIN ({_answer_photos(only, f"question_id = ANY({KEYS})")}) ap ON ap.answer_id = an.id
  WHERE NOT an.reported {only(f"an.question_id = ANY({KEYS})")}
  GROUP BY an.question_id""", only)


_BUILDERS = {
    Kind.PRODUCT: _product,
    Kind.STYLES: _styles,
    Kind.RELATED: _related,
    Kind.REVIEWS: _reviews,
    Kind.META: _meta,
    Kind.QUESTIONS: _questions,
    Kind.ANSWERS: _answers,
}


def select_for_keys(kind: Kind) -> str:
    """SELECT key, items, body(text) for the keys in $1 (int[]); keys that do not exist yield no row."""
    return _BUILDERS[kind](_keyed)


def select_everything(kind: Kind) -> str:
    """SELECT key, items, body(text) for every key of the data set."""
    return _BUILDERS[kind](_everything)

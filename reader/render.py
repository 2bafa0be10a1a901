"""Response bodies from stored models, by byte concatenation wherever the request allows.

List models hold their items in the served order ("relevant" for reviews), with their count.
A request for the first page with a count that covers the whole list — what the storefront asks
for — is the stored body inside the envelope, never decoded; other pages and sorts decode once,
slice, and re-encode with orjson (which spells JSON exactly as the SQL builders do).

Each function answers (prefix, middle, suffix); a middle of None stands for the stored body.
"""

from __future__ import annotations

import operator

import orjson

from reader.local_cache import Entry

# Review orders other than the stored "relevant" one, applied with reverse=True (all descending).
REVIEW_SORTS = {
    "relevant": None,
    "newest": operator.itemgetter("date", "review_id"),
    "helpful": operator.itemgetter("helpfulness", "review_id"),
}


Parts = tuple[bytes, bytes | None, bytes]


def page_of(entry: Entry, offset: int, count: int, order=None) -> bytes | None:
    """Items [offset, offset+count) of a list model as a JSON array; None when that is the whole stored list."""
    items = entry.model.items
    if offset >= items:
        return b"[]"
    if order is None and offset == 0 and count >= items:
        return None
    items = orjson.loads(entry.plain)
    if order is not None:
        items.sort(key=order, reverse=True)
    return orjson.dumps(items[offset:offset + count])


def reviews(entry: Entry, product_id: int, sort: str, page: int, count: int) -> Parts:
    offset = (page - 1) * count
    return (
        b'{"product":"%d","page":%d,"count":%d,"results":' % (product_id, offset, count),
        page_of(entry, offset, count, REVIEW_SORTS[sort]),
        b"}",
    )


def questions(entry: Entry, product_id: int, page: int, count: int) -> Parts:
    return b'{"product_id":"%d","results":' % product_id, page_of(entry, (page - 1) * count, count), b"}"


def answers(entry: Entry, question_id: int, page: int, count: int) -> Parts:
    return (
        b'{"question":"%d","page":%d,"count":%d,"results":' % (question_id, page, count),
        page_of(entry, (page - 1) * count, count),
        b"}",
    )


def cart(rows) -> bytes:
    return orjson.dumps([{"sku_id": r["sku_id"], "count": r["count"]} for r in rows])

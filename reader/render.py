"""Response bodies from stored models, by byte concatenation wherever the request allows.

List models hold their items in the served order ("relevant" for reviews), with their count.
A request for the first page with a count that covers the whole list — what the storefront asks
for — wraps the stored bytes in the envelope without decoding them; other pages and sorts decode
once, slice, and re-encode with orjson (which spells JSON exactly as the SQL builders do).
"""

from __future__ import annotations

import operator

import orjson

from projections.store import Row

# Review orders other than the stored "relevant" one, applied with reverse=True (all descending).
REVIEW_SORTS = {
    "relevant": None,
    "newest": operator.itemgetter("date", "review_id"),
    "helpful": operator.itemgetter("helpfulness", "review_id"),
}


def page_of(row: Row, offset: int, count: int, order=None) -> bytes:
    """Items [offset, offset+count) of a list model, as a JSON array."""
    if offset >= row.items:
        return b"[]"
    if order is None and offset == 0 and count >= row.items:
        return row.body
    items = orjson.loads(row.body)
    if order is not None:
        items.sort(key=order, reverse=True)
    return orjson.dumps(items[offset:offset + count])


def reviews(row: Row, product_id: int, sort: str, page: int, count: int) -> bytes:
    offset = (page - 1) * count
    return (
        b'{"product":"%d","page":%d,"count":%d,"results":' % (product_id, offset, count)
        + page_of(row, offset, count, REVIEW_SORTS[sort])
        + b"}"
    )


def questions(row: Row, product_id: int, page: int, count: int) -> bytes:
    return b'{"product_id":"%d","results":' % product_id + page_of(row, (page - 1) * count, count) + b"}"


def answers(row: Row, question_id: int, page: int, count: int) -> bytes:
    return (
        b'{"question":"%d","page":%d,"count":%d,"results":' % (question_id, page, count)
        + page_of(row, (page - 1) * count, count)
        + b"}"
    )


def cart(rows) -> bytes:
    return orjson.dumps([{"sku_id": r["sku_id"], "count": r["count"]} for r in rows])

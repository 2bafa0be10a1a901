"""Turning request bodies into commands, or into a clear 4xx.

Everything here is checkable from the request alone; existence of the ids a command names is
checked afterwards against the id state in Redis, atomically with the enqueue (see `queue.py`).

Where the storefront may send a value in more than one harmless form we accept it:
- integers (`product_id`, `rating`, `sku_id`, characteristic scores) as JSON integers or as strings
  of decimal digits (`"5"`), because form-driven front ends often post strings; never booleans,
  fractions or floats;
- `recommend` as a JSON boolean or the strings `"true"` / `"false"`;
- `summary` and `photos` missing or null (defaults `""` and `[]`);
- unknown keys, which are ignored.
Text must not contain NUL characters (PostgreSQL cannot store them). Lengths count characters.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import orjson

from worker.protocol import AddToCart, PostAnswer, PostQuestion, PostReview

MAX_ID = 2**31 - 1
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DIGITS = re.compile(r"^[0-9]{1,10}$")


class Invalid(Exception):
    """A request the API refuses: HTTP status, message and the offending field (or None)."""

    def __init__(self, status: int, error: str, field: str | None = None):
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field


def parse_object(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Invalid(400, "request body must be JSON") from None
    if not isinstance(body, dict):
        raise Invalid(400, "request body must be a JSON object")
    return body


def path_id(raw: str, what: str) -> int:
    """An id from the URL; anything that cannot be one of ours is simply not found."""
    if not _DIGITS.match(raw) or not 0 < int(raw) <= MAX_ID:
        raise Invalid(404, f"{what} not found", f"{what}_id")
    return int(raw)


def _integer(value, field: str) -> int:
    if isinstance(value, bool):
        raise Invalid(422, "must be an integer", field)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.match(value):
        return int(value)
    raise Invalid(422, "must be an integer", field)


def _present(body: dict, field: str):
    value = body.get(field)
    if value is None:
        raise Invalid(422, "is required", field)
    return value


def _id(body: dict, field: str) -> int:
    value = _integer(_present(body, field), field)
    if not 0 < value <= MAX_ID:
        raise Invalid(404, f"{field.removesuffix('_id')} not found", field)
    return value


def _score(value, field: str) -> int:
    value = _integer(value, field)
    if not 1 <= value <= 5:
        raise Invalid(422, "must be between 1 and 5", field)
    return value


def _text(body: dict, field: str, low: int, high: int, default: str | None = None) -> str:
    value = body.get(field)
    if value is None:
        if default is not None:
            return default
        raise Invalid(422, "is required", field)
    if not isinstance(value, str):
        raise Invalid(422, "must be a string", field)
    if "\x00" in value:
        raise Invalid(422, "must not contain NUL characters", field)
    if low and not value.strip():
        raise Invalid(422, "must not be blank", field)
    if not low <= len(value) <= high:
        raise Invalid(422, f"must be {low} to {high} characters long", field)
    return value


def _email(body: dict) -> str:
    value = _text(body, "email", 1, 60)
    if not _EMAIL.match(value):
        raise Invalid(422, "must be a valid email address", "email")
    return value


def _photos(body: dict) -> list[str]:
    photos = body.get("photos")
    if photos is None:
        return []
    if not isinstance(photos, list):
        raise Invalid(422, "must be a list of URLs", "photos")
    if len(photos) > 5:
        raise Invalid(422, "at most 5 photos", "photos")
    for url in photos:
        if not isinstance(url, str) or "\x00" in url:
            raise Invalid(422, "must be a list of http(s) URLs", "photos")
        try:
            parts = urlsplit(url)
        except ValueError:
            raise Invalid(422, "must be a list of http(s) URLs", "photos") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise Invalid(422, "must be a list of http(s) URLs", "photos")
    return photos


def _recommend(body: dict) -> bool:
    value = _present(body, "recommend")
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise Invalid(422, "must be a boolean", "recommend")


def _characteristics(body: dict) -> dict[int, int]:
    value = _present(body, "characteristics")
    if not isinstance(value, dict):
        raise Invalid(422, 'must be an object {"<characteristic_id>": 1-5}', "characteristics")
    scores = {}
    for key, score in value.items():
        if not _DIGITS.match(key) or not 0 < int(key) <= MAX_ID:
            raise Invalid(422, f"unknown characteristic {key!r} for this product", "characteristics")
        scores[int(key)] = _score(score, "characteristics")
    return scores


def review(body: dict) -> PostReview:
    return PostReview(
        product_id=_id(body, "product_id"),
        rating=_score(_present(body, "rating"), "rating"),
        summary=_text(body, "summary", 0, 60, default=""),
        body=_text(body, "body", 50, 1000),
        recommend=_recommend(body),
        name=_text(body, "name", 1, 60),
        email=_email(body),
        photos=_photos(body),
        characteristics=_characteristics(body),
    )


def question(body: dict) -> PostQuestion:
    return PostQuestion(
        body=_text(body, "body", 1, 1000),
        name=_text(body, "name", 1, 60),
        email=_email(body),
        product_id=_id(body, "product_id"),
    )


def answer(question_id: int, body: dict) -> PostAnswer:
    return PostAnswer(
        question_id=question_id,
        body=_text(body, "body", 1, 1000),
        name=_text(body, "name", 1, 60),
        email=_email(body),
        photos=_photos(body),
    )


def cart(cart_key: str, body: dict) -> AddToCart:
    return AddToCart(cart_key=cart_key, sku_id=_id(body, "sku_id"))

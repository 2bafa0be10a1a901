"""The queue's message format: what the writer puts in Redis and the worker takes out.

A write is one arq job whose id is the write id. The job key holds arq's own job format
(`arq.jobs.serialize_job`, with orjson as the serializer) calling `apply_write(mutation)`, where
`mutation` is one of the commands below as a plain JSON object. Next to the job, the writer keeps
a receipt hash (`atelier:write:<id>`, status queued → applied | rejected) that `GET /writes/<id>`
reads and the worker settles, and the worker announces settled ids on a Pub/Sub channel so a
request sent with `Prefer: wait=N` can answer as soon as its write is visible. With each job the
writer also leaves a wake-up token (`WAKE`) for a worker waiting for work.

This module imports nothing heavier than arq and orjson: the writer imports it without the worker.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import orjson
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import serialize_job

QUEUE = default_queue_name
JOB_PREFIX = job_key_prefix
# A list holding at most one token: the writer pushes it with a job when it is absent, and an idle
# worker blocks on it (BLPOP) instead of sleeping between polls, so a new write is claimed at once.
# No TTL: it must never be evicted (it is one tiny key).
WAKE = "atelier:queue:wake"
APPLY_FUNCTION = "apply_write"
RECEIPT_PREFIX = "atelier:write:"
SETTLED_CHANNEL = "atelier:writes:settled"
# Receipts and idempotency records live this long after they are settled / first answered.
RECEIPT_TTL_MS = 24 * 3600 * 1000
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000

job_serializer = orjson.dumps
job_deserializer = orjson.loads


def receipt_key(write_id: str) -> str:
    return RECEIPT_PREFIX + write_id


@dataclasses.dataclass(frozen=True)
class PostReview:
    kind: ClassVar[str] = "review"
    product_id: int
    rating: int
    summary: str
    body: str
    recommend: bool
    name: str
    email: str
    photos: list[str]
    characteristics: dict[int, int]


@dataclasses.dataclass(frozen=True)
class PostQuestion:
    kind: ClassVar[str] = "question"
    product_id: int
    body: str
    name: str
    email: str


@dataclasses.dataclass(frozen=True)
class PostAnswer:
    kind: ClassVar[str] = "answer"
    question_id: int
    body: str
    name: str
    email: str
    photos: list[str]


@dataclasses.dataclass(frozen=True)
class Vote:
    """A helpful vote or a report on a review, question or answer."""

    kind: ClassVar[str] = "vote"
    target: str  # "review" | "question" | "answer"
    target_id: int
    action: str  # "helpful" | "report"


@dataclasses.dataclass(frozen=True)
class AddToCart:
    kind: ClassVar[str] = "cart"
    cart_key: str
    sku_id: int


Mutation = PostReview | PostQuestion | PostAnswer | Vote | AddToCart
_BY_KIND = {cls.kind: cls for cls in (PostReview, PostQuestion, PostAnswer, Vote, AddToCart)}


def to_wire(mutation: Mutation) -> dict:
    # The fields are plain values (ints, strings, lists of strings): no deep copy needed.
    wire = {"kind": mutation.kind, **vars(mutation)}
    if isinstance(mutation, PostReview):
        wire["characteristics"] = {str(k): v for k, v in mutation.characteristics.items()}
    return wire


def from_wire(wire: dict) -> Mutation:
    fields = dict(wire)
    cls = _BY_KIND[fields.pop("kind")]
    if cls is PostReview:
        fields["characteristics"] = {int(k): v for k, v in fields["characteristics"].items()}
    return cls(**fields)


def job_bytes(mutation: Mutation, enqueue_ms: int, context: dict[str, str] | None = None) -> bytes:
    """The value of `arq:job:<write id>`, exactly as `ArqRedis.enqueue_job` would write it; `context`
    (the request id) rides along as keyword arguments so the worker's log lines join the request's."""
    return serialize_job(APPLY_FUNCTION, (to_wire(mutation),), context or {}, None, enqueue_ms,
                         serializer=job_serializer)

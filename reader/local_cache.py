"""The reader's in-process cache: read models by (kind, key), each with its rendered responses.

A model entry holds the model as Redis holds it (version, items, a small body plain or a large
one deflated) and, per normalized request (sort, page, count), the response already rendered:
its ETag, and its plain and gzip bytes as each is first asked for. A response that is the stored
body, bare or inside its list envelope, is never decoded as JSON and never compressed here: its
gzip is assembled from the deflated body (`projections.packed`).

Staleness guards:
- an invalidation for (kind, key, version) drops older copies and leaves a *floor* behind, so a
  fill that raced it (read from Redis or PostgreSQL just before the new version was published)
  is not stored; floors are bounded like the entries;
- while the invalidation channel is not subscribed (start-up, Redis restart) the cache is not
  trusted: nothing is served from it or stored in it, and it is emptied on (re)subscription.
"""

from __future__ import annotations

import collections
import zlib

from projections.cache import Cached
from projections.kinds import Kind
from projections.packed import LEVEL, PACK_MIN_BYTES, gzip_member

MAX_VARIANTS = 16
MAX_PAGES = 1024
# Responses this large are sent gzip-encoded to clients that accept it.
GZIP_MIN_BYTES = PACK_MIN_BYTES


class Entry:
    __slots__ = ("model", "variants", "_plain")

    def __init__(self, model: Cached):
        self.model = model
        self.variants: dict = {}
        self._plain = model.plain

    @property
    def plain(self) -> bytes:
        """The body as JSON bytes, inflated once if Redis held it deflated."""
        if self._plain is None:
            self._plain = self.model.body
        return self._plain

    def remember(self, variant, rendered: Rendered) -> Rendered:
        if len(self.variants) >= MAX_VARIANTS:
            self.variants.clear()
        self.variants[variant] = rendered
        return rendered


class Rendered:
    """One response: its strong ETag, its size, and its plain and gzip bytes, each made when first asked for.

    Either a body rendered in full, or `wrapped`: a stored model's body between a prefix and a
    suffix (an empty pair for a model served as it is stored). It holds the model, not the entry
    that holds it, so an evicted entry is freed by reference counting, without waiting for the
    cycle collector.
    """

    __slots__ = ("etag", "size", "_body", "_gzip", "_wrapped")

    def __init__(self, etag: str, body: bytes | None = None, wrapped: tuple[bytes, Cached, bytes] | None = None):
        self.etag = etag
        self._body = body
        self._gzip: bytes | None = None
        self._wrapped = wrapped
        if wrapped is not None:
            prefix, model, suffix = wrapped
            self.size = len(prefix) + model.size + len(suffix)
        else:
            self.size = len(body)

    @property
    def body(self) -> bytes:
        if self._body is None:
            prefix, model, suffix = self._wrapped
            self._body = prefix + model.body + suffix if prefix or suffix else model.body
        return self._body

    @property
    def gzip(self) -> bytes:
        if self._gzip is None:
            wrapped = self._wrapped
            if wrapped is not None and wrapped[1].packed is not None:
                self._gzip = gzip_member(wrapped[0], wrapped[1].packed, wrapped[2])
            else:
                compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, 31)
                self._gzip = compressor.compress(self.body) + compressor.flush()
        return self._gzip


class LocalCache:
    def __init__(self, capacity: int):
        self.capacity = max(capacity, 0)
        self.entries: collections.OrderedDict[tuple[Kind, int], Entry] = collections.OrderedDict()
        self.floors: collections.OrderedDict[tuple[Kind, int], int] = collections.OrderedDict()
        self.trusted = False
        # Catalogue pages (GET /products): read-only data, kept whether or not invalidations flow.
        self.pages: collections.OrderedDict[tuple[int, int], Rendered] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, kind: Kind, key: int) -> Entry | None:
        if not self.trusted:
            return None
        entry = self.entries.get((kind, key))
        if entry is not None:
            self.entries.move_to_end((kind, key))
        return entry

    def put(self, model: Cached) -> Entry:
        """Store a model unless a newer one is known; return the entry to answer from either way."""
        ident = (model.kind, model.key)
        current = self.entries.get(ident)
        if current is not None and current.model.version >= model.version:
            return current
        entry = Entry(model)
        if not self.trusted or self.capacity == 0 or self.floors.get(ident, 0) > model.version:
            return entry
        self.entries[ident] = entry
        self.entries.move_to_end(ident)
        if len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
        return entry

    def invalidate(self, kind: Kind, key: int, version: int) -> None:
        ident = (kind, key)
        entry = self.entries.get(ident)
        if entry is not None and entry.model.version < version:
            del self.entries[ident]
        if self.floors.get(ident, 0) < version:
            self.floors[ident] = version
            self.floors.move_to_end(ident)
            if len(self.floors) > max(self.capacity, 1024):
                self.floors.popitem(last=False)

    def remember_page(self, page: tuple[int, int], rendered: Rendered) -> None:
        self.pages[page] = rendered
        if len(self.pages) > MAX_PAGES:
            self.pages.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()
        self.floors.clear()
        self.pages.clear()

"""The reader's in-process cache: read models by (kind, key), each with its rendered responses.

A model entry holds the row (version, items, body) and, per normalized request (sort, page,
count), the response bytes already rendered, their ETag and, once asked for, their gzip — so
the storefront's repeated requests are answered without touching JSON at all.

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

from projections.kinds import Kind
from projections.store import Row

MAX_VARIANTS = 16
MAX_PAGES = 1024
GZIP_MIN_BYTES = 4096
# Level 1: a third of level 6's CPU for a few percent more bytes; misses compress on the request path.
GZIP_LEVEL = 1


class Rendered:
    """One response body, its strong ETag and (lazily) its gzip encoding."""

    __slots__ = ("body", "etag", "_gzip")

    def __init__(self, body: bytes, etag: str):
        self.body = body
        self.etag = etag
        self._gzip: bytes | None = None

    @property
    def gzip(self) -> bytes:
        if self._gzip is None:
            compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
            self._gzip = compressor.compress(self.body) + compressor.flush()
        return self._gzip


class Entry:
    __slots__ = ("row", "variants")

    def __init__(self, row: Row):
        self.row = row
        self.variants: dict = {}

    def remember(self, variant, rendered: Rendered) -> Rendered:
        if len(self.variants) >= MAX_VARIANTS:
            self.variants.clear()
        self.variants[variant] = rendered
        return rendered


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

    def put(self, row: Row) -> Entry:
        """Store a row unless a newer one is known; return the entry to answer from either way."""
        ident = (row.kind, row.key)
        current = self.entries.get(ident)
        if current is not None and current.row.version >= row.version:
            return current
        entry = Entry(row)
        if not self.trusted or self.capacity == 0 or self.floors.get(ident, 0) > row.version:
            return entry
        self.entries[ident] = entry
        self.entries.move_to_end(ident)
        if len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
        return entry

    def invalidate(self, kind: Kind, key: int, version: int) -> None:
        ident = (kind, key)
        entry = self.entries.get(ident)
        if entry is not None and entry.row.version < version:
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

"""The read models: what each GET serves, built from the source tables, stored in PostgreSQL and
cached in Redis. Reader and worker import this package; it imports neither.

    projections.refresh(conn, affected) -> list[Row]     # worker, inside its batch transaction
    await projections.cache.publish(redis, rows)         # worker, after commit
    await projections.build_one(conn, kind, key)         # drift check: a fresh body, nothing stored
    await projections.bulk.build_all(conn)               # loader, after a load
"""

from projections import bulk, cache
from projections.affected import Affected
from projections.kinds import Kind
from projections.store import Row, build_one, refresh

__all__ = ["Affected", "Kind", "Row", "build_one", "bulk", "cache", "refresh"]

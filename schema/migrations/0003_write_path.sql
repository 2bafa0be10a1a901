-- The write path: which acknowledged writes the worker has applied, and the carts shoppers fill.

-- One row per applied (or rejected) write, written in the same transaction as the rows it changed.
-- A job that runs again (its worker died after COMMIT, before the queue heard about it) finds its
-- row here and changes nothing twice; `resource` / `error` let that re-run report the first outcome.
-- The worker deletes rows older than a week: far beyond any job's re-run window.
CREATE TABLE applied_writes (
    write_id    uuid PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    status      text NOT NULL CHECK (status IN ('applied', 'rejected')),
    resource    jsonb,
    error       text
);
CREATE INDEX applied_writes_applied_at ON applied_writes (applied_at);

-- Carts of the storefront's callers: `cart_key` is the caller's Authorization header value, or the
-- `cart` cookie the first POST /cart set. `GET /cart` lists a key's rows ordered by sku_id.
CREATE TABLE cart_items (
    cart_key  text NOT NULL,
    sku_id    integer NOT NULL REFERENCES skus (id),
    count     integer NOT NULL CHECK (count > 0),
    PRIMARY KEY (cart_key, sku_id)
);

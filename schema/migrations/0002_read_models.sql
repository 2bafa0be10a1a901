-- Read models: the ready JSON bytes each GET serves, one table per kind (projections/kinds.py
-- names them and holds the SQL that builds them).
--
-- One table per kind rather than one wide (kind, key) table: the bulk build after a load replaces
-- a whole kind at once (CREATE TABLE AS, which may run parallel plans and skips WAL under
-- wal_level=minimal), each primary key index stays small, and a reader's lookup is a plain
-- integer primary-key probe.
--
-- `version` comes from one sequence shared by every kind, so a later rebuild always carries a
-- larger number: caches compare versions and never let an older body replace a newer one.
-- `items` is the number of top-level elements of a list body (0 for object bodies): a reader
-- answering "the whole list" can wrap the stored bytes without decoding them.
-- Bodies are stored uncompressed (EXTERNAL): the reader's hot path should not pay for pglz.

CREATE SEQUENCE read_model_version;

CREATE TABLE rm_product (key integer PRIMARY KEY, version bigint NOT NULL, items integer NOT NULL, body bytea NOT NULL);
CREATE TABLE rm_styles (key integer PRIMARY KEY, version bigint NOT NULL, items integer NOT NULL, body bytea NOT NULL);
CREATE TABLE rm_related (key integer PRIMARY KEY, version bigint NOT NULL, items integer NOT NULL, body bytea NOT NULL);
CREATE TABLE rm_reviews (key integer PRIMARY KEY, version bigint NOT NULL, items integer NOT NULL, body bytea NOT NULL);
CREATE TABLE rm_meta (key integer PRIMARY KEY, version bigint NOT NULL, items integer NOT NULL, body bytea NOT NULL);
CREATE TABLE rm_questions (key integer PRIMARY KEY, version bigint NOT NULL, items integer NOT NULL, body bytea NOT NULL);
CREATE TABLE rm_answers (key integer PRIMARY KEY, version bigint NOT NULL, items integer NOT NULL, body bytea NOT NULL);

ALTER TABLE rm_product ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE rm_styles ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE rm_related ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE rm_reviews ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE rm_meta ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE rm_questions ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE rm_answers ALTER COLUMN body SET STORAGE EXTERNAL;

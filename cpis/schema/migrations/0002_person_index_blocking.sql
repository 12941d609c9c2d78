-- Blocking keys get a table of their own (issue 11).
--
-- The keys were a bytea[] column with a GIN index, searched with `&&`. A query
-- without a birth date sent hundreds of keys, the planner then preferred a scan
-- of the whole table (each row's array compared with every key asked), and
-- right after a bulk load the GIN index's pending list was still unmerged and
-- the table had no statistics at all: searches of 1-2.5 s, statement timeouts
-- under load. One row per (key, person) with a b-tree on the key answers
-- `block_key = ANY($1)` with one index probe per key whatever the table's size,
-- and the shared-key count that ranks candidates is a GROUP BY on that scan.
--   block_key       a keyed hash (Vault.blind, purpose "person-index-block") of
--                   one cpis.matching.blocking key; only numbers in use have any
--   subject_key     the person it files
CREATE TABLE person_index_block (
    block_key   bytea NOT NULL,
    subject_key bytea NOT NULL REFERENCES person_index (subject_key) ON DELETE CASCADE,
    PRIMARY KEY (block_key, subject_key)
);
-- Re-keying a changed row, and the cascade when a full extract removes one.
CREATE INDEX person_index_block_subject_idx ON person_index_block (subject_key);

DROP INDEX person_index_block_idx;
ALTER TABLE person_index DROP COLUMN block_keys;
-- The keys of rows loaded before cannot be computed here (they are keyed hashes
-- of sealed names): an empty fingerprint makes the next load re-file every row.
UPDATE person_index SET fingerprint = '\x'::bytea;

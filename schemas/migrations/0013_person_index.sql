-- The local person index (issue 4, CPIS_PERSON_INDEX=local): a copy of what
-- PDS holds for the people an LA's children may be, loaded from an extract by
-- `cpis person-index load FILE`.
--
-- Like every table here, a dump of it reveals no NHS number, name, birth date
-- or postcode (SPEC §6):
--   subject_key     the keyed hash of the NHS number (Vault.subject_key), the
--                   same one plans are keyed by, so the two can be joined
--   sealed          the person's details (NHS number, names, birth date, sex,
--                   postcode, superseded-by number) as one AES-GCM value
--                   (Vault.seal, purpose "person-index"): one seal per row
--                   keeps a million-row load practical
--   fingerprint     a keyed hash of the whole row (Vault.blind), so a re-load
--                   can tell a changed row from an unchanged one without
--                   opening either
--   superseded_key  the subject key of the number that replaced this one
--   block_keys      keyed hashes of the row's blocking keys
--                   (cpis.matching.blocking.record_keys, Vault.blind), so
--                   tracing finds candidates with one GIN index lookup
CREATE TABLE person_index (
    subject_key    bytea PRIMARY KEY,
    sealed         bytea NOT NULL,
    fingerprint    bytea NOT NULL,
    superseded_key bytea,
    sensitive      boolean NOT NULL,
    active         boolean NOT NULL,
    block_keys     bytea[] NOT NULL,
    loaded_at      timestamptz NOT NULL,
    -- A superseded number is never in use: its replacement is.
    CHECK (superseded_key IS NULL OR NOT active)
);
CREATE INDEX person_index_block_idx ON person_index USING gin (block_keys);
CREATE INDEX person_index_superseded_idx ON person_index (superseded_key)
    WHERE superseded_key IS NOT NULL;

-- Batch uploads (issue 4): one row per applied file, keyed by the LA's own
-- sequence number, holding the acknowledgement that was sent back, so a file
-- sent again gets the same acknowledgement and nothing is applied twice.
CREATE TABLE upload (
    la_ods          text NOT NULL REFERENCES local_authority (ods_code),
    sequence        bigint NOT NULL,
    received_at     timestamptz NOT NULL,
    file_code       text NOT NULL,
    acknowledgement jsonb NOT NULL,
    PRIMARY KEY (la_ods, sequence)
);

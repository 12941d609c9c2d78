-- What every cpis process on this database must agree on (issue 9, items 12-13),
-- kept in the database all of them share:
--   key:hash         fingerprint of the HMAC key NHS numbers are hashed with
--   key:data:KID     fingerprint of each data key that has sealed values here
--   person_index     none | local | pds: what `cpis serve` checks uploads against
-- Fingerprints are truncated SHA-256 of the key with a domain prefix: they name
-- a key, and reveal nothing of it.
CREATE TABLE service_setting (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

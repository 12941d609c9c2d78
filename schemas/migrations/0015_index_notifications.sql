-- Notifications of kind 'nhs-number-inactive' (issue 4 item 6): the person index
-- says an NHS number an LA holds plans for was superseded (merged into another
-- number) or retired, and each owning LA is told through the same outbox,
-- channels and web inbox as attendances.
--
-- Such a row has no access event, user or setting. It carries the old NHS
-- number and the new one (when the index knows it) sealed like every other
-- NHS number at rest. Its notification id is a uuid5 over the LA, the old
-- number's subject key and the new number's subject key (or 'inactive'),
-- computed by the writer; the primary key on notification_id is the unique
-- constraint that makes queueing the same change for the same LA a no-op
-- however often the index check runs. Subject keys (keyed hashes), not the
-- numbers, go into the uuid5 so that a database dump still reveals no NHS
-- number: uuid5 over a bare NHS number could be reversed by trying them all.
ALTER TABLE outbox
    ALTER COLUMN user_id DROP NOT NULL,
    ALTER COLUMN org_ods DROP NOT NULL,
    ADD COLUMN old_nhs_sealed bytea,
    ADD COLUMN new_nhs_sealed bytea;

ALTER TABLE outbox
    ADD CONSTRAINT outbox_kind_check CHECK (kind IN ('access', 'nhs-number-inactive')),
    ADD CONSTRAINT outbox_kind_fields CHECK (
        CASE kind
            WHEN 'access' THEN user_id IS NOT NULL AND org_ods IS NOT NULL
                AND old_nhs_sealed IS NULL AND new_nhs_sealed IS NULL
            ELSE access_event_id IS NULL AND user_id IS NULL AND org_ods IS NULL
                AND old_nhs_sealed IS NOT NULL
        END
    );

-- The LA inbox lists these apart from attendances; a partial index keeps that
-- listing from scanning every attendance of a busy LA (and costs attendance
-- inserts nothing but the predicate check).
CREATE INDEX outbox_nhs_number_inactive_idx ON outbox (la_ods, created_at DESC)
    WHERE kind = 'nhs-number-inactive';

-- A time-ordered UUID (version 7), for notification ids, like the access event
-- ids the service generates: see cpis/adapters/ids.py for why. Works on
-- PostgreSQL versions without a built-in uuidv7().
CREATE OR REPLACE FUNCTION cpis_uuid7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- 0002_request_bodies: a request's raw body stored once, not once per event.
--
-- A Meta POST can carry thousands of events, and each used to hold the
-- whole request body in events.payload. Now events.payload is the Event
-- without raw_body (field 40), and the body is a row of request_bodies,
-- keyed by its SHA-256: a replayed request, or a provider's retry of the
-- same webhook, inserts no second row. events.body_sha256 says which body
-- was its request's (NULL: the request had no body). The Event as the
-- ingress journaled it is payload with request_bodies.body as raw_body.
-- Rows written before this migration keep raw_body inside payload and a
-- NULL body_sha256.
--
-- Not a FOREIGN KEY, as in 0001_init.sql: sb_store writes the body in the
-- same transaction as the first event referring to it, or before it.
CREATE TABLE request_bodies (
    sha256        bytea PRIMARY KEY,          -- SHA-256 of body
    content_type  text NOT NULL DEFAULT '',   -- the request's Content-Type
    body          bytea NOT NULL,             -- the request body, verbatim
    created_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE events ADD COLUMN body_sha256 bytea;  -- request_bodies.sha256, NULL when none

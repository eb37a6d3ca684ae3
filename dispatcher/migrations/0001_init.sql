-- 0001_init: the dispatcher's tables.
--
-- Applied by sb_store_migrate inside one transaction, under an advisory
-- lock, and recorded in schema_migrations. Files must not contain
-- BEGIN/COMMIT of their own. Never edit an applied file: add 0002_....sql.
--
-- The *_id columns that point at another table's row (event_id,
-- outbox_id) are not FOREIGN KEYs on purpose: sb_store writes each row in
-- the same transaction as the row it points to and never deletes, and the
-- foreign-key triggers would cost a large part of the write path's time.

-- Delivery status ranks: a status moves an outbound message only to a
-- higher rank, so callbacks arriving out of order never move it back.
-- queued (and accepted/scheduled/sending) 1 < sent 2 < delivered 3 <
-- read (played) 4; failed, undelivered and canceled are terminal (10):
-- nothing moves a message out of them, and they override any other status.
-- Unknown statuses rank 0 and never apply.
CREATE FUNCTION sb_status_rank (status text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE lower(status)
        WHEN 'accepted' THEN 1
        WHEN 'scheduled' THEN 1
        WHEN 'queued' THEN 1
        WHEN 'sending' THEN 1
        WHEN 'sent' THEN 2
        WHEN 'delivered' THEN 3
        WHEN 'read' THEN 4
        WHEN 'played' THEN 4
        WHEN 'failed' THEN 10
        WHEN 'undelivered' THEN 10
        WHEN 'canceled' THEN 10
        ELSE 0
    END
$$;

-- Every event received, once. payload is the serialized switchboard.v1.Event.
CREATE TABLE events (
    id            bigserial PRIMARY KEY,
    ingress_id    text NOT NULL,                 -- the ingress that journaled it
    epoch         text NOT NULL DEFAULT '',      -- that ingress's journal epoch
    seq           bigint NOT NULL,               -- position in that journal
    event_uid     text NOT NULL DEFAULT '',      -- Event.id: <ingress_id>-<epoch>-<seq>
    provider      text NOT NULL,                 -- twilio, meta
    channel       text NOT NULL,                 -- sms, whatsapp, voice
    kind          text NOT NULL,                 -- message, status, call, gather
    message_type  text NOT NULL DEFAULT '',
    provider_id   text NOT NULL DEFAULT '',      -- MessageSid, wamid, CallSid ('' when none)
    status        text NOT NULL DEFAULT '',      -- delivery status, or the call's status
    dedup_detail  text NOT NULL DEFAULT '',      -- gathers: digits and speech (see below)
    error_code    text NOT NULL DEFAULT '',      -- status events: the provider's error code
    from_addr     text NOT NULL DEFAULT '',
    to_addr       text NOT NULL DEFAULT '',
    account       text NOT NULL DEFAULT '',      -- AccountSid, phone_number_id
    text          text NOT NULL DEFAULT '',
    received_at   timestamptz NOT NULL,          -- at the ingress
    payload       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- A replay, or the live stream overlapping a replay, inserts nothing. The
-- epoch is part of the key: a new journal starts again from seq 1.
CREATE UNIQUE INDEX events_journal_key ON events (ingress_id, epoch, seq);
-- A provider re-sending the same webhook inserts nothing. Events without a
-- provider id (a Meta change carrying neither message nor status) are
-- unique by their journal position only. dedup_detail is '' except for
-- gathers, where several in one call share the CallSid.
CREATE UNIQUE INDEX events_provider_key ON events (provider, kind, provider_id, status, dedup_detail)
    WHERE provider_id <> '';

-- The people who write to us, per provider and channel.
CREATE TABLE contacts (
    provider         text NOT NULL,
    channel          text NOT NULL,
    address          text NOT NULL,             -- without channel prefix
    profile_name     text NOT NULL DEFAULT '',
    last_inbound_at  timestamptz,               -- opens WhatsApp's 24-hour window
    opted_out        boolean NOT NULL DEFAULT false,
    opted_out_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, channel, address)
);

-- The outbox: replies and bot forwards, written in the same transaction as
-- the event that caused them, sent by the dispatcher's sender.
-- state: pending (due at next_attempt_at) -> sending -> sent | pending
-- (retry) | failed (final) | dead (out of attempts); not_sent when refused
-- before any attempt (reason: opted_out, outside_window, ...).
CREATE TABLE outbox (
    id                  bigserial PRIMARY KEY,
    kind                text NOT NULL CHECK (kind IN ('reply', 'forward')),
    state               text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'dead', 'not_sent')),
    provider            text NOT NULL,
    channel             text NOT NULL,
    account             text NOT NULL DEFAULT '',   -- Meta phone_number_id
    from_addr           text NOT NULL DEFAULT '',   -- our address
    to_addr             text NOT NULL DEFAULT '',   -- the contact
    body                text NOT NULL DEFAULT '',
    context_id          text NOT NULL DEFAULT '',   -- Meta: the wamid answered
    forward_url         text NOT NULL DEFAULT '',
    forward_timeout_ms  integer NOT NULL DEFAULT 0,
    event_json          text NOT NULL DEFAULT '',
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_error          text NOT NULL DEFAULT '',
    provider_id         text,                       -- SM..., wamid... once accepted
    reason              text NOT NULL DEFAULT '',   -- why not sent
    event_id            bigint,                     -- events.id of the inbound event
    rule                text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);

-- Messages in and out, with the current status of outbound ones.
CREATE TABLE messages (
    id            bigserial PRIMARY KEY,
    direction     text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    provider      text NOT NULL,
    channel       text NOT NULL,
    provider_id   text,                         -- NULL until an outbound one is accepted
    contact_addr  text NOT NULL,
    our_addr      text NOT NULL DEFAULT '',
    account       text NOT NULL DEFAULT '',
    message_type  text NOT NULL DEFAULT '',
    body          text NOT NULL DEFAULT '',
    status        text NOT NULL DEFAULT '',     -- received (inbound); queued, sent, ... (outbound)
    status_rank   integer NOT NULL DEFAULT 0,   -- sb_status_rank (status)
    error_code    text NOT NULL DEFAULT '',
    event_id      bigint,                       -- events.id (inbound: its event; outbound: the one answered)
    outbox_id     bigint,                       -- outbox.id of an outbound one
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX messages_provider_id_key ON messages (provider, provider_id)
    WHERE provider_id IS NOT NULL;
CREATE INDEX messages_outbox_id ON messages (outbox_id) WHERE outbox_id IS NOT NULL;
-- Only the indexes the dispatcher itself uses: each one more costs every
-- insert. A conversation view would add (provider, channel, contact_addr,
-- created_at) in a later migration.

-- Per ingress, the highest sequence number stored, in the same transaction
-- as the events: a restarted dispatcher asks for a replay from last_seq + 1.
CREATE TABLE consumer_cursors (
    ingress_id  text PRIMARY KEY,
    epoch       text NOT NULL DEFAULT '',
    last_seq    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

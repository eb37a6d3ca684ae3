-- 0010_dispatcher_partitions: several dispatchers on one database (issue 15).
--
-- The outbox is split by conversation into 256 partitions; each partition
-- is leased to one dispatcher at a time (dispatcher_partitions), and only
-- the holder of a partition's lease claims, records and puts back that
-- partition's rows (sb_store_lease.c, sb_store_outbox.c; docs/internals.md,
-- "Several dispatchers").
--
-- A conversation is (provider, channel, account, our address, the
-- contact's address as the store resolves it): conv is its 32-bit FNV-1a
-- hash (sb_partition_hash in C, sb_conv_hash below, the same bytes), part
-- is conv mod 256. A reply is claimed only when no earlier row of its
-- conversation is still pending (due or waiting for a retry) or sending,
-- so one contact's replies go out one at a time, in order.

-- Every dispatcher alive, by its store instance (the head of its claim
-- tokens: one per process, so a restart is a new instance). seen_at is
-- renewed with the leases; a row not seen for a lease is not counted when
-- the partitions are shared out, and one not seen for a day is removed.
CREATE TABLE dispatchers (
    instance    text PRIMARY KEY,              -- random per process
    id          text NOT NULL,                 -- SB_DISPATCHER_ID, for people
    seen_at     timestamptz NOT NULL DEFAULT now (),
    started_at  timestamptz NOT NULL DEFAULT now ()
);

-- One row per partition, always 256. instance '' or lease_until passed:
-- free. epoch grows by one at every change of holder; a holder renews its
-- leases (lease_until) well before they end, by the database's clock.
CREATE TABLE dispatcher_partitions (
    part         smallint PRIMARY KEY CHECK (part >= 0 AND part < 256),
    instance     text NOT NULL DEFAULT '',     -- dispatchers.instance of the holder, '' none
    owner        text NOT NULL DEFAULT '',     -- its SB_DISPATCHER_ID, for people
    epoch        bigint NOT NULL DEFAULT 0,    -- changes of holder so far
    lease_until  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO dispatcher_partitions (part) SELECT generate_series (0, 255);

-- FNV-1a, 32 bits, of the conversation's fields joined by NUL bytes
-- (sb_partition_hash): for the rows written before this migration and for
-- a contact's move (below). The batch write computes it in C.
CREATE FUNCTION sb_conv_hash (provider text, channel text, account text, our_addr text,
                              contact text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    b bytea := convert_to (provider, 'UTF8') || '\x00'::bytea || convert_to (channel, 'UTF8')
               || '\x00'::bytea || convert_to (account, 'UTF8') || '\x00'::bytea
               || convert_to (our_addr, 'UTF8') || '\x00'::bytea || convert_to (contact, 'UTF8');
    h bigint := 2166136261;
    i integer;
BEGIN
    FOR i IN 0 .. length (b) - 1 LOOP
        h := ((h # get_byte (b, i)) * 16777619) % 4294967296;
    END LOOP;
    RETURN h;
END $$;

ALTER TABLE outbox ADD COLUMN conv bigint NOT NULL DEFAULT 0;     -- sb_conv_hash of its conversation
ALTER TABLE outbox ADD COLUMN part smallint NOT NULL DEFAULT 0;   -- conv % 256

-- Rows still to send get their conversation (the contact's address then
-- was to_addr; a messages row, when there is one, has it as resolved).
UPDATE outbox o SET conv = sb_conv_hash (o.provider, o.channel, o.account, o.from_addr,
                                         COALESCE ((SELECT m.contact_addr FROM messages m
                                                     WHERE m.outbox_id = o.id LIMIT 1), o.to_addr))
 WHERE o.state IN ('pending', 'sending');
UPDATE outbox SET part = conv % 256 WHERE state IN ('pending', 'sending');

-- The claim's order check: an earlier open row of the same conversation.
CREATE INDEX outbox_open_conv ON outbox (conv, id) WHERE state IN ('pending', 'sending');
-- The claim's scan, in its own order (due time, then id), so that it stops
-- at the rows it takes: with outbox_due alone, the rows of a batch share
-- their due time and every one of them was read, sorted by id and checked
-- for an earlier row of its conversation (4 ms for 2,000 pending rows
-- against 1 ms with this index; bench/README.md, issue 15).
CREATE INDEX outbox_claim ON outbox (next_attempt_at, id) WHERE state = 'pending';

-- A contact moved or merged (sb_contact_moves rewrites messages.contact_addr)
-- takes its replies still pending to its new conversation, so one contact
-- never has open rows in two conversations (rows already sending finish
-- where they are; the order check sees them only in the old one).
CREATE FUNCTION sb_outbox_follow_contact () RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox o SET conv = h.conv, part = h.conv % 256
      FROM (SELECT sb_conv_hash (x.provider, x.channel, x.account, x.from_addr,
                                 NEW.contact_addr) AS conv
              FROM outbox x WHERE x.id = NEW.outbox_id) h
     WHERE o.id = NEW.outbox_id AND o.state = 'pending';
    RETURN NULL;
END $$;
CREATE TRIGGER messages_follow_contact AFTER UPDATE OF contact_addr ON messages
    FOR EACH ROW WHEN (NEW.outbox_id IS NOT NULL AND NEW.contact_addr <> OLD.contact_addr)
    EXECUTE FUNCTION sb_outbox_follow_contact ();

/*  sb_store_write_sql: the statements of the store's batch write
    (sb_store.c), prepared once per connection (sb_store_ready): their SQL,
    the types of their parameters, and the list sb_store_ready prepares.
    Parameters are binary arrays, one per column (see sb_pgarray_table_t),
    in the order of the column enums of sb_store_batch.h; each statement
    unnest()s them server-side. Which round trip sends which statement,
    and in what order, is sb_store.c's (s_write_round1, s_write_round2).
*/
#include "sb_store_batch.h"

//  events: every event of the batch; returns the new ones. Inserted in
//  journal order (ingress id, epoch, seq), not the batch's: dispatchers
//  that receive the same records from several ingresses interleave the
//  ingresses' streams differently, and two transactions inserting the same
//  rows in opposite orders wait on each other's unique-index entries until
//  PostgreSQL aborts one (deadlock detected, seen by test_fault_lb).
static const uint32_t s_events_oids[EV_COLS] = {
    SB_PGARRAY_OID_TEXT,        SB_PGARRAY_OID_TEXT,  SB_PGARRAY_OID_INT8, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT,        SB_PGARRAY_OID_TEXT,  SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT,        SB_PGARRAY_OID_TEXT,  SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT,        SB_PGARRAY_OID_TEXT,  SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TIMESTAMPTZ, SB_PGARRAY_OID_BYTEA, SB_PGARRAY_OID_BYTEA};
static const char s_events_sql[] =
    "INSERT INTO events (ingress_id, epoch, seq, event_uid, provider, channel, kind,"
    " message_type, provider_id, status, dedup_detail, error_code, from_addr, to_addr,"
    " account, text, received_at, payload, body_sha256)"
    " SELECT * FROM unnest ($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[],"
    " $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],"
    " $13::text[], $14::text[], $15::text[], $16::text[], $17::timestamptz[], $18::bytea[],"
    " $19::bytea[])"
    " ORDER BY 1, 2, 3"
    " ON CONFLICT DO NOTHING"
    " RETURNING id, ingress_id, epoch, seq";

//  request_bodies: each distinct raw body of the batch, once; a body
//  already stored (a replay, a provider's retry) inserts nothing.
static const uint32_t s_bodies_oids[BO_COLS] = {SB_PGARRAY_OID_BYTEA, SB_PGARRAY_OID_TEXT,
                                                SB_PGARRAY_OID_BYTEA};
static const char s_bodies_sql[] = "INSERT INTO request_bodies (sha256, content_type, body)"
                                   " SELECT * FROM unnest ($1::bytea[], $2::text[], $3::bytea[])"
                                   " ON CONFLICT DO NOTHING";

//  request_bodies of inbound events whose body is not in the batch (a
//  request split over two batches), for the forwards' event JSON.
static const uint32_t s_bodies_get_oids[BG_COLS] = {SB_PGARRAY_OID_BYTEA};
static const char s_bodies_get_sql[] =
    "SELECT sha256, body, content_type FROM request_bodies WHERE sha256 = ANY ($1::bytea[])";

//  contacts the batch's inbound events come from: their state before it.
static const uint32_t s_contact_key_oids[CK_COLS] = {SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                                     SB_PGARRAY_OID_TEXT};
//  Keys are identities (a sender's address, its user ids); a contact
//  without an identity row (written by older code) is found by address.
//  Returns the identity asked for and the contact's address and state.
//  The keys are resolved to their contacts' addresses first (a
//  materialized CTE), so the join with contacts is on equalities alone: a
//  prepared statement's generic plan guesses 10 keys, and with the identity
//  resolved inside the join condition it matched every key against every
//  contact of the channel (500 keys x 1,000 contacts: 20 s, past the
//  statement timeout, where this takes 3 ms).
static const char s_contacts_lock_sql[] =
    "WITH k AS MATERIALIZED (SELECT k.provider, k.channel, k.address,"
    " COALESCE (i.address, k.address) AS target"
    " FROM unnest ($1::text[], $2::text[], $3::text[]) AS k (provider, channel, address)"
    " LEFT JOIN contact_identities i"
    " ON i.provider = k.provider AND i.channel = k.channel AND i.identity = k.address)"
    " SELECT k.provider, k.channel, k.address, c.opted_out,"
    " COALESCE ((extract (epoch FROM c.last_inbound_at) * 1000)::int8, 0), c.address,"
    " c.profile_name"
    " FROM k JOIN contacts c"
    " ON c.provider = k.provider AND c.channel = k.channel AND c.address = k.target"
    " ORDER BY c.provider, c.channel, c.address"
    " FOR UPDATE OF c";

//  Contact moves and merges (sb_contact_moves, 0005), in batch order.
static const uint32_t s_moves_oids[MV_COLS] = {SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                               SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                               SB_PGARRAY_OID_BOOL};
static const char s_moves_sql[] = "SELECT sb_contact_moves ($1::text[], $2::text[], $3::text[],"
                                  " $4::text[], $5::bool[])";

//  contact_identities: each identifier of the batch's contacts, the last
//  of the batch winning, at most SB_STORE_IDENTITIES_MAX per contact.
#define SB_STORE_IDENTITIES_MAX 16
static const uint32_t s_identities_oids[ID_COLS] = {SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                                    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT};
#define S_STR2(x) #x
#define S_STR(x) S_STR2 (x)
//  An identity already naming its contact is no new one; the new ones
//  of a contact are counted in batch order against the rows it has.
static const char s_identities_sql[] =
    "WITH d AS (SELECT DISTINCT ON (u.provider, u.channel, u.identity) u.*"
    " FROM unnest ($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY"
    " AS u (provider, channel, identity, address, ord)"
    " ORDER BY u.provider, u.channel, u.identity, u.ord DESC),"
    " n AS (SELECT d.*, EXISTS (SELECT 1 FROM contact_identities x WHERE x.provider = d.provider"
    " AND x.channel = d.channel AND x.identity = d.identity AND x.address = d.address) AS known"
    " FROM d),"
    " r AS (SELECT n.*, row_number () OVER (PARTITION BY n.provider, n.channel, n.address,"
    " n.known ORDER BY n.ord) AS rank FROM n)"
    " INSERT INTO contact_identities AS t (provider, channel, identity, address)"
    " SELECT r.provider, r.channel, r.identity, r.address FROM r"
    " WHERE r.known OR r.rank + (SELECT count (*) FROM contact_identities x"
    " WHERE x.provider = r.provider AND x.channel = r.channel AND x.address = r.address) "
    "<= " S_STR (SB_STORE_IDENTITIES_MAX) " ON CONFLICT (provider, channel, identity) DO UPDATE "
                                          "SET address = EXCLUDED.address";

//  contacts: their state after the batch (computed in C from the state
//  above and the batch's new events).
static const uint32_t s_contacts_oids[CO_COLS] = {SB_PGARRAY_OID_TEXT,        SB_PGARRAY_OID_TEXT,
                                                  SB_PGARRAY_OID_TEXT,        SB_PGARRAY_OID_TEXT,
                                                  SB_PGARRAY_OID_TIMESTAMPTZ, SB_PGARRAY_OID_BOOL};
static const char s_contacts_sql[] =
    "INSERT INTO contacts AS c (provider, channel, address, profile_name, last_inbound_at,"
    " opted_out, opted_out_at)"
    " SELECT u.provider, u.channel, u.address, u.profile_name, u.last_inbound_at, u.opted_out,"
    " CASE WHEN u.opted_out THEN now () END"
    " FROM unnest ($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bool[])"
    " AS u (provider, channel, address, profile_name, last_inbound_at, opted_out)"
    " ON CONFLICT (provider, channel, address) DO UPDATE SET"
    " profile_name = CASE WHEN EXCLUDED.profile_name <> '' THEN EXCLUDED.profile_name"
    " ELSE c.profile_name END,"
    " last_inbound_at = GREATEST (c.last_inbound_at, EXCLUDED.last_inbound_at),"
    " opted_out = EXCLUDED.opted_out,"
    " opted_out_at = CASE WHEN EXCLUDED.opted_out AND NOT c.opted_out THEN now ()"
    " WHEN EXCLUDED.opted_out THEN c.opted_out_at END,"
    " updated_at = now ()";

//  messages: the inbound ones.
static const uint32_t s_messages_oids[MI_COLS] = {
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_INT8};
static const char s_messages_sql[] =
    "INSERT INTO messages (direction, provider, channel, provider_id, contact_addr, our_addr,"
    " account, message_type, body, status, event_id)"
    " SELECT 'inbound', u.provider, u.channel, u.provider_id, u.contact_addr, u.our_addr,"
    " u.account, u.message_type, u.body, 'received', u.event_id"
    " FROM unnest ($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::text[], $8::text[], $9::int8[])"
    " AS u (provider, channel, provider_id, contact_addr, our_addr, account, message_type,"
    " body, event_id)"
    " ON CONFLICT DO NOTHING";

//  outbox: the rules' decisions; pending replies also get their outbound
//  messages row (status queued) in the same statement.
static const uint32_t s_outbox_oids[OB_COLS] = {
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_INT4, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_INT8, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_INT8, SB_PGARRAY_OID_INT4};
//  A reply's messages row has its contact's address as the batch leaves it
//  (contact_addr); rows are one per event, matched by event_id. conv and
//  part: the row's conversation (sb_partition_hash) and its partition.
static const char s_outbox_sql[] =
    "WITH u AS (SELECT * FROM unnest ($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int4[],"
    " $12::text[], $13::text[], $14::int8[], $15::text[], $16::text[], $17::int8[],"
    " $18::int4[]) WITH ORDINALITY"
    " AS u (kind, state, provider, channel, account, from_addr, to_addr, body, context_id,"
    " forward_url, forward_timeout_ms, event_json, reason, event_id, rule, contact_addr, conv,"
    " part, ord)),"
    " o AS ("
    " INSERT INTO outbox (kind, state, provider, channel, account, from_addr, to_addr, body,"
    " context_id, forward_url, forward_timeout_ms, event_json, reason, event_id, rule, conv,"
    " part)"
    " SELECT kind, state, provider, channel, account, from_addr, to_addr, body, context_id,"
    " forward_url, forward_timeout_ms, event_json, reason, event_id, rule, conv, part FROM u"
    " ORDER BY ord"
    " RETURNING id, kind, state, provider, channel, account, from_addr, body, event_id)"
    " INSERT INTO messages (direction, provider, channel, contact_addr, our_addr, account,"
    " message_type, body, status, status_rank, event_id, outbox_id)"
    " SELECT 'outbound', o.provider, o.channel, u.contact_addr, o.from_addr, o.account, 'text',"
    " o.body, 'queued', sb_status_rank ('queued'), o.event_id, o.id"
    " FROM o JOIN u ON u.event_id = o.event_id WHERE o.kind = 'reply' AND o.state = 'pending'";

//  statuses: the highest-ranked status per message of the batch, applied
//  where it ranks higher than the message's.
static const uint32_t s_status_oids[ST_COLS] = {SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                                SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT};
static const char s_status_sql[] =
    "UPDATE messages m SET status = u.status, status_rank = u.rank,"
    " error_code = CASE WHEN u.error_code <> '' THEN u.error_code ELSE m.error_code END,"
    " updated_at = now ()"
    " FROM (SELECT DISTINCT ON (x.provider, x.provider_id) x.provider, x.provider_id, x.status,"
    " x.error_code, sb_status_rank (x.status) AS rank"
    " FROM unnest ($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY"
    " AS x (provider, provider_id, status, error_code, ord)"
    " ORDER BY x.provider, x.provider_id, sb_status_rank (x.status) DESC, x.ord) u"
    " WHERE m.provider = u.provider AND m.provider_id = u.provider_id"
    " AND m.direction = 'outbound' AND u.rank > m.status_rank";

//  messages: the echoes (Meta message_echoes, smb_message_echoes), outbound
//  rows with origin 'echo'; an id already held (our own send, answered
//  before its echo came) inserts nothing (0006_meta_fields.sql).
static const uint32_t s_echoes_oids[EC_COLS] = {
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_INT8};
static const char s_echoes_sql[] =
    "INSERT INTO messages (direction, provider, channel, provider_id, contact_addr, our_addr,"
    " account, message_type, body, status, status_rank, event_id, origin)"
    " SELECT 'outbound', u.provider, u.channel, u.provider_id, u.contact_addr, u.our_addr,"
    " u.account, u.message_type, u.body, 'sent', sb_status_rank ('sent'), u.event_id, 'echo'"
    " FROM unnest ($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::text[], $8::text[], $9::int8[])"
    " AS u (provider, channel, provider_id, contact_addr, our_addr, account, message_type,"
    " body, event_id)"
    " ON CONFLICT DO NOTHING";

//  contacts: the marketing preference of user_preferences events, the
//  newest by Meta's timestamp winning (a contact it creates is otherwise
//  empty: no inbound time, not opted out).
static const uint32_t s_prefs_oids[PR_COLS] = {SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                               SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                               SB_PGARRAY_OID_TIMESTAMPTZ};
static const char s_prefs_sql[] =
    "INSERT INTO contacts AS c (provider, channel, address, marketing_preference,"
    " marketing_preference_at)"
    " SELECT DISTINCT ON (u.provider, u.channel, u.address) u.provider, u.channel, u.address,"
    " u.value, u.at"
    " FROM unnest ($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])"
    " WITH ORDINALITY AS u (provider, channel, address, value, at, ord)"
    " ORDER BY u.provider, u.channel, u.address, u.at DESC, u.ord DESC"
    " ON CONFLICT (provider, channel, address) DO UPDATE SET"
    " marketing_preference = EXCLUDED.marketing_preference,"
    " marketing_preference_at = EXCLUDED.marketing_preference_at, updated_at = now ()"
    " WHERE c.marketing_preference_at IS NULL"
    " OR c.marketing_preference_at <= EXCLUDED.marketing_preference_at";

//  ingest_cursors (0013_ingest_cursors.sql): this store's claim per ingress,
//  that every event of the batch's partitions (parts, '0'/'1' per
//  partition) up to last_seq is stored. Its key (instance) is the store's
//  instance and a number new with each set of partitions (s_claim_key,
//  sb_store.c), so the row of a set given up stays. While the epoch stays,
//  the claim only moves up (a replay overlapping what was stored brings
//  lower seqs); in a new epoch it is the batch's own end.
static const uint32_t s_cursor_oids[CU_COLS] = {SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                                SB_PGARRAY_OID_INT8, SB_PGARRAY_OID_TEXT,
                                                SB_PGARRAY_OID_TEXT};
static const char s_cursor_sql[] =
    "INSERT INTO ingest_cursors AS c (ingress_id, instance, epoch, last_seq, parts, updated_at)"
    " SELECT u.ingress_id, u.instance, u.epoch, u.last_seq, u.parts::bit(256), now ()"
    " FROM unnest ($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[])"
    " AS u (ingress_id, epoch, last_seq, instance, parts)"
    " ON CONFLICT (ingress_id, instance) DO UPDATE SET"
    " last_seq = CASE WHEN c.epoch = EXCLUDED.epoch AND c.parts = EXCLUDED.parts"
    " THEN GREATEST (c.last_seq, EXCLUDED.last_seq) ELSE EXCLUDED.last_seq END,"
    " epoch = EXCLUDED.epoch, parts = EXCLUDED.parts, updated_at = now ()";

//  captures: what the batch's publish rules matched, one row per event
//  (0012_console_codes_retries.sql).
static const uint32_t s_captures_oids[CA_COLS] = {SB_PGARRAY_OID_INT8, SB_PGARRAY_OID_TEXT,
                                                  SB_PGARRAY_OID_TEXT};
static const char s_captures_sql[] = "INSERT INTO captures (event_id, rule, captured)"
                                     " SELECT * FROM unnest ($1::int8[], $2::text[], $3::text[])"
                                     " ON CONFLICT DO NOTHING";

const sb_store_statement_t sb_store_write_statements[] = {
    {"sb_events", s_events_sql},
    {"sb_contacts_lock", s_contacts_lock_sql},
    {"sb_contacts", s_contacts_sql},
    {"sb_messages", s_messages_sql},
    {"sb_outbox", s_outbox_sql},
    {"sb_status", s_status_sql},
    {"sb_cursor", s_cursor_sql},
    {"sb_bodies", s_bodies_sql},
    {"sb_bodies_get", s_bodies_get_sql},
    {"sb_echoes", s_echoes_sql},
    {"sb_prefs", s_prefs_sql},
    {"sb_moves", s_moves_sql},
    {"sb_identities", s_identities_sql},
    {"sb_captures", s_captures_sql},
    {NULL, NULL},
};

void
sb_store_batch_tables (sb_store_batch_t *b)
{
    sb_pgarray_table_init (&b->events_t, s_events_oids, EV_COLS);
    sb_pgarray_table_init (&b->keys_t, s_contact_key_oids, CK_COLS);
    sb_pgarray_table_init (&b->contacts_t, s_contacts_oids, CO_COLS);
    sb_pgarray_table_init (&b->messages_t, s_messages_oids, MI_COLS);
    sb_pgarray_table_init (&b->outbox_t, s_outbox_oids, OB_COLS);
    sb_pgarray_table_init (&b->status_t, s_status_oids, ST_COLS);
    sb_pgarray_table_init (&b->cursor_t, s_cursor_oids, CU_COLS);
    sb_pgarray_table_init (&b->bodies_t, s_bodies_oids, BO_COLS);
    sb_pgarray_table_init (&b->bodies_get_t, s_bodies_get_oids, BG_COLS);
    sb_pgarray_table_init (&b->echoes_t, s_echoes_oids, EC_COLS);
    sb_pgarray_table_init (&b->prefs_t, s_prefs_oids, PR_COLS);
    sb_pgarray_table_init (&b->moves_t, s_moves_oids, MV_COLS);
    sb_pgarray_table_init (&b->identities_t, s_identities_oids, ID_COLS);
    sb_pgarray_table_init (&b->captures_t, s_captures_oids, CA_COLS);
}

void
sb_store_outbox_table (sb_pgarray_table_t *t)
{
    sb_pgarray_table_init (t, s_outbox_oids, OB_COLS);
}

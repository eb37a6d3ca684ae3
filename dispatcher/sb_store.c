/*  sb_store: the dispatcher's PostgreSQL side, over one libpq connection
    used by one thread. This file holds the batch write of events and the
    consumer cursor; the connection, migrations and the outbox's side are
    in sb_store_conn.c, sb_store_migrate.c and sb_store_outbox.c
    (sb_store_internal.h).

    It applies the migrations (dispatcher/migrations/NNNN_name.sql), writes
    batches of events exactly once together with everything they imply
    (contacts, messages, reply decisions in the outbox, the consumer
    cursor), and moves outbox rows through their states for the sender.
    Every value travels as a query parameter: the write path sends each
    column as one binary array parameter (sb_pgarray) and unnest()s it
    server-side, the other statements use text parameters. Text is sent as
    UTF-8 with any invalid sequence replaced by U+FFFD, so bytes from a
    provider can never make a batch fail forever.

    DESIGN (the write path). One batch is one transaction and two round
    trips, whatever its size, using libpq's pipeline mode:
      1. BEGIN; INSERT INTO events ... SELECT FROM unnest(...) ON CONFLICT
         DO NOTHING RETURNING (which events are new); SELECT ... FOR UPDATE
         the contacts the batch's inbound events come from (and those
         a change of number or id moves to).
      2. In C, in batch order, for each NEW event only: the contact's
         profile name, last inbound time and opt-out state; the inbound
         messages row; the rules' decision (the reply policy applied,
         sb_policy); the status of outbound messages. Then, pipelined:
         upsert contacts; insert messages; insert outbox rows (and the
         outbound messages rows of the replies, in the same statement);
         apply statuses; upsert the cursor; COMMIT.
    Raw bodies: the only event of a request (request_events 1: most
    webhooks) keeps its body in events.payload, one row storing it once.
    For a request of several events, round trip 1 inserts each distinct
    request body of the batch into request_bodies (keyed by SHA-256, ON
    CONFLICT DO NOTHING), and events.payload is the event without
    raw_body, with body_sha256 naming its request's body: a batched Meta
    POST stores its body once, whichever event carries it (only the first
    of a request does; older journals have it on every one) and however its
    events fall into batches. A forward's event JSON gets the body back, from the
    batch or, when the request began in an earlier batch, fetched in round
    trip 1.
    A replayed event or a provider's retry of a webhook conflicts on a
    unique key, is not returned, and so decides nothing: that is the
    exactly-once guarantee. Events are unique by (ingress_id, epoch, seq)
    (a new journal epoch restarts seq at 1) and, when the provider gave an
    id, by (provider, kind, provider_id, status, dedup_detail), where
    dedup_detail is empty except for gathers (several per call share the
    CallSid; two gathers of one call with the same input are one event).
    An event without a provider id (a Meta item without "id") is unique by
    content too: its dedup_detail is a hash of what identifies it
    (s_content_key, 0003_content_key.sql), so a provider's retry of the
    webhook, journaled again under a new seq, inserts nothing.

    Decisions. Inbound events are kinds message, gather and call with a
    sender address; they upsert the contact (profile name, last inbound
    time). Messages and gathers also get an inbound messages row. What the
    rules ask for a new inbound event (none without rules) goes through the
    reply policy (sb_policy: opt-out and opt-in keywords, the opted-out
    mark, unsupported channels, the WhatsApp window), with the contact's
    state as the batch has made it so far and now_ms (the policy's now, or
    the clock): an outbox row pending, one not_sent with the policy's
    reason, or none. Status events never run rules.

    Statuses. An outbound message's status moves only to a higher rank
    (SQL function sb_status_rank, 0001_init.sql): queued 1 < sent 2 <
    delivered 3 < read 4; failed, undelivered and canceled are terminal
    (10) and win over anything else; unknown statuses (0) never apply. The
    highest status of a batch wins whatever its order. A status for a
    message we do not know yet is kept in events only; sb_store_record
    applies it when the send that produced that provider id is recorded.

    Identities (0005_contact_identities.sql). A contact is found by any
    identifier it was seen with: its phone number, its business-scoped
    user id (BSUID), its parent BSUID (contact_identities). Round trip 1
    locks the contacts the batch's senders and their user ids name
    (s_contacts_lock_sql by identity); s_identity_link then makes the
    ids of one event one contact: a sender's phone and BSUID already two
    contacts merge into the phone's, a known BSUID seen first with a phone
    moves to the phone (Meta asks businesses to send to phone numbers when
    they have them). A change-of-number or change-of-id system message
    moves the contact, with its messages, opt-out and window, to the new
    number (to a new BSUID only when it had no number) and forgets the old
    identifier and the previous BSUID it came by; one about no contact
    changes nothing. A batch gives what its events one by one would: a
    later event from a forgotten identifier is a new contact
    (s_identity_current), and messages (a reply's outbound row too) and
    marketing preferences go under the address the batch leaves their
    contact at. Round trip 2 runs the moves first (sb_contact_moves, in
    batch order), then the upserts, then the identity rows
    (s_identities_sql, at most SB_STORE_IDENTITIES_MAX per contact, counted
    within the batch too; the rest are dropped). A reply goes to the
    contact's address: a phone number or a BSUID, which the sender puts in
    "recipient" (sb_sender).
    Moves never lose an opt-out. The contacts upsert writes the opt-out
    the C side computed (it must: an opt-in keyword clears it), so the C
    side must know the state of every contact a move merges: round trip 1
    also locks and loads the contacts a change's new number and new BSUID
    name (s_batch_prepare), and the change merges them into the moving
    contact in C (s_identity_adopt: opted out if either was, the later
    window) as sb_contact_moves merges their rows; a contact its new BSUID
    named under another address is moved onto it. Later events of the
    batch by those identifiers are that contact, opted out or not as it is
    after the merge. Making the upsert OR the opt-outs instead would keep
    the flag but still decide the batch's replies on a state that lacks
    it. The marketing preference, which C does not track, is merged in
    SQL (0007_contact_moves_merge.sql: the newer by Meta's time).

    Limits. seq is stored as bigint.
*/
#include "sb_store_internal.h"
#include "sb_policy.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "sb_bsuid.h"
#include "sb_text.h"
#include "sb_time.h"

#define S_MODULE "store"

//  ---------------------------------------------------------------------
//  Small helpers

//  An indexed text element (see SB_STORE_KEY_MAX).
static void
s_array_key (sb_pgarray_t *a, const char *s)
{
    sb_pgarray_text_max (a, s, SB_STORE_KEY_MAX);
}

//  An indexed text element, NULL when s is NULL or empty.
static void
s_array_key_or_null (sb_pgarray_t *a, const char *s)
{
    if (s && *s)
        s_array_key (a, s);
    else
        sb_pgarray_null (a);
}

//  ---------------------------------------------------------------------
//  The write statements, prepared once per connection. Parameters are
//  binary arrays, one per column (see sb_pgarray_table_t).

//  events: every event of the batch; returns the new ones.
enum {
    EV_INGRESS,
    EV_EPOCH,
    EV_SEQ,
    EV_UID,
    EV_PROVIDER,
    EV_CHANNEL,
    EV_KIND,
    EV_TYPE,
    EV_PROVIDER_ID,
    EV_STATUS,
    EV_DEDUP,
    EV_ERROR_CODE,
    EV_FROM,
    EV_TO,
    EV_ACCOUNT,
    EV_TEXT,
    EV_RECEIVED,
    EV_PAYLOAD,
    EV_BODY_SHA256,
    EV_COLS
};
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
    " ON CONFLICT DO NOTHING"
    " RETURNING id, ingress_id, epoch, seq";

//  request_bodies: each distinct raw body of the batch, once; a body
//  already stored (a replay, a provider's retry) inserts nothing.
enum { BO_SHA256, BO_TYPE, BO_BODY, BO_COLS };
static const uint32_t s_bodies_oids[BO_COLS] = {SB_PGARRAY_OID_BYTEA, SB_PGARRAY_OID_TEXT,
                                                SB_PGARRAY_OID_BYTEA};
static const char s_bodies_sql[] = "INSERT INTO request_bodies (sha256, content_type, body)"
                                   " SELECT * FROM unnest ($1::bytea[], $2::text[], $3::bytea[])"
                                   " ON CONFLICT DO NOTHING";

//  request_bodies of inbound events whose body is not in the batch (a
//  request split over two batches), for the forwards' event JSON.
enum { BG_SHA256, BG_COLS };
static const uint32_t s_bodies_get_oids[BG_COLS] = {SB_PGARRAY_OID_BYTEA};
static const char s_bodies_get_sql[] =
    "SELECT sha256, body, content_type FROM request_bodies WHERE sha256 = ANY ($1::bytea[])";

//  contacts the batch's inbound events come from: their state before it.
enum { CK_PROVIDER, CK_CHANNEL, CK_ADDRESS, CK_COLS };
static const uint32_t s_contact_key_oids[CK_COLS] = {SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                                     SB_PGARRAY_OID_TEXT};
//  Keys are identities (a sender's address, its user ids); a contact
//  without an identity row (written by older code) is found by address.
//  Returns the identity asked for and the contact's address and state.
static const char s_contacts_lock_sql[] =
    "SELECT k.provider, k.channel, k.address, c.opted_out,"
    " COALESCE ((extract (epoch FROM c.last_inbound_at) * 1000)::int8, 0), c.address,"
    " c.profile_name"
    " FROM unnest ($1::text[], $2::text[], $3::text[]) AS k (provider, channel, address)"
    " LEFT JOIN contact_identities i"
    " ON i.provider = k.provider AND i.channel = k.channel AND i.identity = k.address"
    " JOIN contacts c ON c.provider = k.provider AND c.channel = k.channel"
    " AND c.address = COALESCE (i.address, k.address)"
    " ORDER BY c.provider, c.channel, c.address"
    " FOR UPDATE OF c";

//  Contact moves and merges (sb_contact_moves, 0005), in batch order.
enum { MV_PROVIDER, MV_CHANNEL, MV_OLD, MV_NEW, MV_FORGET, MV_COLS };
static const uint32_t s_moves_oids[MV_COLS] = {SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                               SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                               SB_PGARRAY_OID_BOOL};
static const char s_moves_sql[] = "SELECT sb_contact_moves ($1::text[], $2::text[], $3::text[],"
                                  " $4::text[], $5::bool[])";

//  contact_identities: each identifier of the batch's contacts, the last
//  of the batch winning, at most SB_STORE_IDENTITIES_MAX per contact.
#define SB_STORE_IDENTITIES_MAX 16
enum { ID_PROVIDER, ID_CHANNEL, ID_IDENTITY, ID_ADDRESS, ID_COLS };
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
enum { CO_PROVIDER, CO_CHANNEL, CO_ADDRESS, CO_PROFILE, CO_LAST_INBOUND, CO_OPTED_OUT, CO_COLS };
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
enum {
    MI_PROVIDER,
    MI_CHANNEL,
    MI_PROVIDER_ID,
    MI_CONTACT,
    MI_OURS,
    MI_ACCOUNT,
    MI_TYPE,
    MI_BODY,
    MI_EVENT_ID,
    MI_COLS
};
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
enum {
    OB_KIND,
    OB_STATE,
    OB_PROVIDER,
    OB_CHANNEL,
    OB_ACCOUNT,
    OB_FROM,
    OB_TO,
    OB_BODY,
    OB_CONTEXT,
    OB_URL,
    OB_TIMEOUT,
    OB_JSON,
    OB_REASON,
    OB_EVENT_ID,
    OB_RULE,
    OB_CONTACT,
    OB_COLS
};
static const uint32_t s_outbox_oids[OB_COLS] = {
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_INT4, SB_PGARRAY_OID_TEXT,
    SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_INT8, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT};
//  A reply's messages row has its contact's address as the batch leaves it
//  (contact_addr); rows are one per event, matched by event_id.
static const char s_outbox_sql[] =
    "WITH u AS (SELECT * FROM unnest ($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int4[],"
    " $12::text[], $13::text[], $14::int8[], $15::text[], $16::text[]) WITH ORDINALITY"
    " AS u (kind, state, provider, channel, account, from_addr, to_addr, body, context_id,"
    " forward_url, forward_timeout_ms, event_json, reason, event_id, rule, contact_addr, ord)),"
    " o AS ("
    " INSERT INTO outbox (kind, state, provider, channel, account, from_addr, to_addr, body,"
    " context_id, forward_url, forward_timeout_ms, event_json, reason, event_id, rule)"
    " SELECT kind, state, provider, channel, account, from_addr, to_addr, body, context_id,"
    " forward_url, forward_timeout_ms, event_json, reason, event_id, rule FROM u ORDER BY ord"
    " RETURNING id, kind, state, provider, channel, account, from_addr, body, event_id)"
    " INSERT INTO messages (direction, provider, channel, contact_addr, our_addr, account,"
    " message_type, body, status, status_rank, event_id, outbox_id)"
    " SELECT 'outbound', o.provider, o.channel, u.contact_addr, o.from_addr, o.account, 'text',"
    " o.body, 'queued', sb_status_rank ('queued'), o.event_id, o.id"
    " FROM o JOIN u ON u.event_id = o.event_id WHERE o.kind = 'reply' AND o.state = 'pending'";

//  statuses: the highest-ranked status per message of the batch, applied
//  where it ranks higher than the message's.
enum { ST_PROVIDER, ST_PROVIDER_ID, ST_STATUS, ST_ERROR_CODE, ST_COLS };
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
enum {
    EC_PROVIDER,
    EC_CHANNEL,
    EC_PROVIDER_ID,
    EC_CONTACT,
    EC_OURS,
    EC_ACCOUNT,
    EC_TYPE,
    EC_BODY,
    EC_EVENT_ID,
    EC_COLS
};
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
enum { PR_PROVIDER, PR_CHANNEL, PR_ADDRESS, PR_VALUE, PR_AT, PR_COLS };
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

//  consumer_cursors: the highest seq per ingress (reset on a new epoch).
enum { CU_INGRESS, CU_EPOCH, CU_SEQ, CU_COLS };
static const uint32_t s_cursor_oids[CU_COLS] = {SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                                SB_PGARRAY_OID_INT8};
static const char s_cursor_sql[] =
    "INSERT INTO consumer_cursors AS c (ingress_id, epoch, last_seq, updated_at)"
    " SELECT u.ingress_id, u.epoch, u.last_seq, now ()"
    " FROM unnest ($1::text[], $2::text[], $3::int8[]) AS u (ingress_id, epoch, last_seq)"
    " ON CONFLICT (ingress_id) DO UPDATE SET"
    " last_seq = CASE WHEN c.epoch = EXCLUDED.epoch"
    " THEN GREATEST (c.last_seq, EXCLUDED.last_seq) ELSE EXCLUDED.last_seq END,"
    " epoch = EXCLUDED.epoch, updated_at = now ()";

const sb_store_statement_t sb_store_write_statements[] = {
    {"sb_events", s_events_sql},         {"sb_contacts_lock", s_contacts_lock_sql},
    {"sb_contacts", s_contacts_sql},     {"sb_messages", s_messages_sql},
    {"sb_outbox", s_outbox_sql},         {"sb_status", s_status_sql},
    {"sb_cursor", s_cursor_sql},         {"sb_bodies", s_bodies_sql},
    {"sb_bodies_get", s_bodies_get_sql}, {"sb_echoes", s_echoes_sql},
    {"sb_prefs", s_prefs_sql},           {"sb_moves", s_moves_sql},
    {"sb_identities", s_identities_sql}, {NULL, NULL},
};

//  ---------------------------------------------------------------------
//  The batch

//  A contact the batch's inbound events come from.
typedef struct {
    const char *provider;      //  provider name (static)
    const char *channel;       //  channel name (static)
    const char *key;           //  the identity it was looked up by (borrowed from its item)
    const char *address;       //  the contact's address, as the batch leaves it (borrowed)
    const char *profile_name;  //  last non-empty profile name of the batch (borrowed)
    int64_t last_inbound_ms;   //  before the batch, then with the batch's events (0 = never)
    bool opted_out;            //  before the batch, then with the batch's events
    bool touched;              //  a new event of the batch changed it
    bool recorded;             //  a marketing preference of the batch makes it a contact
    size_t rep;                //  the entry that stands for its contact (itself, or merged away)
    char *stored;              //  the contact's address in contacts, when it is one (owned)
    char *stored_name;         //  its profile name there, when it is one (owned)
} s_contact_t;

//  An identifier a change of number or id took from a contact: later
//  events of the batch that name it are from a new contact (reborn), as
//  they would be in a later batch.
typedef struct {
    const char *provider;  //  provider name (static)
    const char *channel;   //  channel name (static)
    const char *key;       //  the identifier (borrowed)
    size_t at;             //  the index of the event that changed it
    size_t reborn;         //  the contact entry of its later events, or SIZE_MAX
} s_forgot_t;

//  One event of the batch.
typedef struct {
    bool fresh;        //  inserted now (not a duplicate)
    int64_t id;        //  events.id when fresh
    size_t contact;    //  index in contacts, or SIZE_MAX
    char *address;     //  inbound: the sender as stored (valid UTF-8, at most SB_STORE_KEY_MAX)
    char *user_id;     //  inbound: its BSUID when not its address, as stored (or NULL)
    size_t user;       //  index in contacts of user_id, or SIZE_MAX
    bool unknown;      //  a change of number or id for no contact: changed nothing
    bool has_body;     //  its request had a raw body: body_sha256 is its hash
    bool inline_body;  //  a request of one event: its body stays in the payload
    uint8_t body_sha256[SB_EVENT_SHA256_SIZE];  //  request_bodies key
} s_item_t;

//  A raw body fetched from request_bodies (s_bodies_get_sql).
typedef struct {
    uint8_t sha256[SB_EVENT_SHA256_SIZE];  //  its key
    ProtobufCBinaryData body;              //  PQunescapeBytea's (PQfreemem)
    char *content_type;                    //  the request's Content-Type (strdup)
} s_body_t;

//  An ingress's cursor as the batch leaves it.
typedef struct {
    const char *ingress_id;  //  borrowed
    const char *epoch;       //  borrowed
    uint64_t seq;            //  highest seq of that epoch in the batch
} s_cursor_t;

typedef struct {
    sb_event_t *const *events;        //  the caller's events
    size_t count;                     //  how many
    s_item_t *items;                  //  one per event
    s_contact_t *contacts;            //  sorted by key, unique; then the reborn ones
    size_t ncontacts;                 //  how many
    size_t nsorted;                   //  how many of them are sorted (s_contact_find)
    s_forgot_t *forgot;               //  identifiers changes took, in batch order
    size_t nforgot;                   //  how many
    s_cursor_t *cursors;              //  one per ingress
    size_t ncursors;                  //  how many
    sb_pgarray_table_t events_t;      //  events insert
    sb_pgarray_table_t keys_t;        //  contacts lock
    sb_pgarray_table_t contacts_t;    //  contacts upsert
    sb_pgarray_table_t messages_t;    //  inbound messages
    sb_pgarray_table_t outbox_t;      //  outbox rows
    size_t *outbox_contact;           //  per outbox row: its contact's entry, or SIZE_MAX
    size_t noutbox;                   //  how many rows
    sb_pgarray_table_t status_t;      //  statuses
    sb_pgarray_table_t cursor_t;      //  cursors
    sb_pgarray_table_t bodies_t;      //  request bodies insert
    sb_pgarray_table_t bodies_get_t;  //  request bodies to fetch for forwards
    sb_pgarray_table_t echoes_t;      //  Meta echoes: outbound messages
    sb_pgarray_table_t prefs_t;       //  Meta marketing preferences
    sb_pgarray_table_t moves_t;       //  contact moves and merges
    sb_pgarray_table_t identities_t;  //  contact identities
    char **owned;                     //  addresses the batch made (moves), freed with it
    size_t nowned;                    //  how many
    bool forwards;                    //  the rules may forward: fetch missing bodies
    s_body_t *fetched;                //  what that fetch found
    size_t nfetched;                  //  how many
} s_batch_t;

static void
s_batch_free (s_batch_t *b)
{
    for (size_t i = 0; b->items && i < b->count; i++) {
        free (b->items[i].address);
        free (b->items[i].user_id);
    }
    for (size_t k = 0; b->contacts && k < b->ncontacts; k++) {
        free (b->contacts[k].stored);
        free (b->contacts[k].stored_name);
    }
    for (size_t k = 0; k < b->nowned; k++)
        free (b->owned[k]);
    free (b->owned);
    free (b->items);
    free (b->contacts);
    free (b->forgot);
    free (b->cursors);
    free (b->outbox_contact);
    sb_pgarray_table_free (&b->events_t);
    sb_pgarray_table_free (&b->keys_t);
    sb_pgarray_table_free (&b->contacts_t);
    sb_pgarray_table_free (&b->messages_t);
    sb_pgarray_table_free (&b->outbox_t);
    sb_pgarray_table_free (&b->status_t);
    sb_pgarray_table_free (&b->cursor_t);
    sb_pgarray_table_free (&b->bodies_t);
    sb_pgarray_table_free (&b->bodies_get_t);
    sb_pgarray_table_free (&b->echoes_t);
    sb_pgarray_table_free (&b->prefs_t);
    sb_pgarray_table_free (&b->moves_t);
    sb_pgarray_table_free (&b->identities_t);
    for (size_t i = 0; i < b->nfetched; i++) {
        PQfreemem (b->fetched[i].body.data);
        free (b->fetched[i].content_type);
    }
    free (b->fetched);
}

static bool
s_inbound (const sb_event_t *e)
{
    return (e->kind == SB_KIND_MESSAGE || e->kind == SB_KIND_GATHER
            || (e->kind == SB_KIND_CALL && e->provider != SB_PROVIDER_META))
           && e->from && *e->from;
}

//  A marketing preference (user_preferences) of a contact.
static bool
s_preference (const sb_event_t *e)
{
    //  A preference without a value (absent, or not a string) is kept as
    //  an event only: it must not erase the one recorded.
    return e->kind == SB_KIND_PREFERENCE && e->preference && e->from && *e->from
           && e->preference->value && *e->preference->value;
}

static int
s_contact_cmp3 (const char *p, const char *c, const char *a, const s_contact_t *y)
{
    int d = strcmp (p, y->provider);
    if (!d)
        d = strcmp (c, y->channel);
    if (!d)
        d = strcmp (a, y->key);
    return d;
}

static int
s_contact_cmp (const void *a, const void *b)
{
    const s_contact_t *x = a;
    return s_contact_cmp3 (x->provider, x->channel, x->key, b);
}

static size_t
s_contact_find (const s_batch_t *b, const char *p, const char *c, const char *a)
{
    size_t lo = 0, hi = b->nsorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = s_contact_cmp3 (p, c, a, &b->contacts[mid]);
        if (d == 0)
            return mid;
        if (d < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return SIZE_MAX;
}

//  The status column of events: the delivery status, else the call's.
static const char *
s_event_status (const sb_event_t *e)
{
    if (e->status && e->status->status && *e->status->status)
        return e->status->status;
    return s_str (e->call_status);
}

//  The raw body of the request event i came from, and its content type
//  (borrowed): its own, another event's of the batch, or one fetched;
//  NULL when not known here.
static const ProtobufCBinaryData *
s_batch_body (const s_batch_t *b, size_t i, const char **content_type)
{
    const s_item_t *item = &b->items[i];
    if (item->inline_body) {
        *content_type = b->events[i]->raw_content_type;
        return &b->events[i]->raw_body;
    }
    if (!item->has_body)
        return NULL;
    for (size_t k = i + 1; k-- > 0;)
        if (b->events[k]->raw_body.len && b->items[k].has_body
            && memcmp (b->items[k].body_sha256, item->body_sha256, SB_EVENT_SHA256_SIZE) == 0) {
            *content_type = b->events[k]->raw_content_type;
            return &b->events[k]->raw_body;
        }
    for (size_t k = 0; k < b->nfetched; k++)
        if (memcmp (b->fetched[k].sha256, item->body_sha256, SB_EVENT_SHA256_SIZE) == 0) {
            *content_type = b->fetched[k].content_type;
            return &b->fetched[k].body;
        }
    return NULL;
}

//  Queue the fetch of the bodies of inbound events (those the rules may
//  forward) whose body is in no event of the batch.
static void
s_batch_bodies_to_fetch (s_batch_t *b)
{
    const uint8_t *last = NULL;
    for (size_t i = 0; i < b->count; i++) {
        const s_item_t *item = &b->items[i];
        const char *type;
        if (!s_inbound (b->events[i]) || !item->has_body || s_batch_body (b, i, &type))
            continue;
        if (last && memcmp (last, item->body_sha256, SB_EVENT_SHA256_SIZE) == 0)
            continue;
        last = item->body_sha256;
        sb_pgarray_bytes (&b->bodies_get_t.cols[BG_SHA256], last, SB_EVENT_SHA256_SIZE);
    }
}

//  Key event i to its request's raw body. The only event of a request
//  keeps its body in its payload, as one row stores it once anyway (and
//  the common webhook, one message or one status, costs no second row).
//  Otherwise an event carrying raw_body queues the body for request_bodies
//  (once: events journaled before request_index carry it on every event of
//  a request, and those copies follow each other); the others have its
//  hash from the ingress.
static void
s_batch_body_key (s_batch_t *b, size_t i, size_t *last_body)
{
    const sb_event_t *e = b->events[i];
    s_item_t *item = &b->items[i];
    if (e->raw_body.len && e->request_events == 1) {
        item->inline_body = true;
        return;
    }
    if (e->raw_body.len == 0) {
        item->has_body = e->raw_body_sha256.len == SB_EVENT_SHA256_SIZE;
        if (item->has_body)
            memcpy (item->body_sha256, e->raw_body_sha256.data, SB_EVENT_SHA256_SIZE);
        return;
    }
    item->has_body = true;
    const ProtobufCBinaryData *last = *last_body < i ? &b->events[*last_body]->raw_body : NULL;
    if (last && last->len == e->raw_body.len
        && memcmp (last->data, e->raw_body.data, last->len) == 0) {
        memcpy (item->body_sha256, b->items[*last_body].body_sha256, SB_EVENT_SHA256_SIZE);
        return;
    }
    *last_body = i;
    sb_event_sha256 (e->raw_body.data, e->raw_body.len, item->body_sha256);
    sb_pgarray_bytes (&b->bodies_t.cols[BO_SHA256], item->body_sha256, SB_EVENT_SHA256_SIZE);
    sb_pgarray_text (&b->bodies_t.cols[BO_TYPE], e->raw_content_type);
    sb_pgarray_bytes (&b->bodies_t.cols[BO_BODY], e->raw_body.data, e->raw_body.len);
}

//  dedup_detail of an event without a provider id (0003_content_key.sql):
//  "content:" and the hex SHA-256 of what makes a provider's retry a
//  retry: the same request bytes. Hashed, each length-prefixed so no two
//  lists hash alike: provider, kind, the SHA-256 of the request's raw
//  body, the event's place in its request, and its own JSON item
//  (detail_json; it tells the events of a request journaled before
//  request_index apart). Two deliveries with the same content but other
//  request bytes (a template approved again later, with its own entry
//  time) are two events; a retry of one request inserts nothing.
static void
s_content_key_put (EVP_MD_CTX *ctx, const void *data, size_t size)
{
    uint8_t n[8];
    sb_pgarray_put64 (n, (uint64_t) size);
    EVP_DigestUpdate (ctx, n, sizeof n);
    if (size)
        EVP_DigestUpdate (ctx, data, size);
}

static void
s_content_key_text (EVP_MD_CTX *ctx, const char *text)
{
    text = s_str (text);
    s_content_key_put (ctx, text, strlen (text));
}

static void
s_content_key (const sb_event_t *e, const uint8_t body_sha256[SB_EVENT_SHA256_SIZE], char *out,
               size_t size)
{
    assert (size >= 8 + 2 * 32 + 1);
    out[0] = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
    if (!ctx || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1) {
        EVP_MD_CTX_free (ctx);
        return;  //  no key: unique by journal position only, as before
    }
    uint8_t index[8];
    sb_pgarray_put64 (index, e->request_index);
    s_content_key_text (ctx, sb_event_provider_name (e->provider));
    s_content_key_text (ctx, sb_event_kind_name (e->kind));
    s_content_key_put (ctx, body_sha256, SB_EVENT_SHA256_SIZE);
    s_content_key_put (ctx, index, sizeof index);
    s_content_key_text (ctx, e->detail_json);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int md_size = 0;
    if (EVP_DigestFinal_ex (ctx, md, &md_size) == 1 && md_size == 32) {
        memcpy (out, "content:", 8);
        sb_text_hex (md, md_size, out + 8);
    }
    EVP_MD_CTX_free (ctx);
}

//  ---------------------------------------------------------------------
//  Identities: a contact's phone number and business-scoped user ids
//  (see the head of this file and 0005_contact_identities.sql).

//  An owned string the batch keeps until it is freed; NULL when out of
//  memory (the string is then freed).
static char *
s_batch_own (s_batch_t *b, char *text)
{
    if (!text)
        return NULL;
    char **owned = realloc (b->owned, (b->nowned + 1) * sizeof *owned);
    if (!owned) {
        free (text);
        return NULL;
    }
    b->owned = owned;
    return b->owned[b->nowned++] = text;
}

//  A contact entry of event e's provider and channel for identifier key
//  (borrowed: the batch keeps it).
static void
s_prepare_entry (s_batch_t *b, const sb_event_t *e, const char *key)
{
    s_contact_t *c = &b->contacts[b->ncontacts++];
    c->provider = sb_event_provider_name (e->provider);
    c->channel = sb_event_channel_name (e->channel);
    c->key = c->address = key;
}

//  An inbound event's user id (else parent user id), when it is not its
//  address, as a contact entry of its own. 0, or -1 out of memory.
static int
s_prepare_user_id (s_batch_t *b, const sb_event_t *e, s_item_t *item)
{
    const char *id = e->user_id && *e->user_id ? e->user_id : e->parent_user_id;
    if (!id || !*id || strcmp (id, e->from) == 0)
        return 0;
    if (!(item->user_id = sb_store_utf8_dup (id, SB_STORE_KEY_MAX)))
        return -1;
    if (strcmp (item->user_id, item->address) == 0) {
        free (item->user_id);
        item->user_id = NULL;
        return 0;
    }
    s_prepare_entry (b, e, item->user_id);
    return 0;
}

//  Identifier id (not NULL, not empty) of event e as a contact entry of
//  its own, to lock and load in round trip 1. 0, or -1 out of memory.
static int
s_prepare_key (s_batch_t *b, const sb_event_t *e, const char *id)
{
    char *key = s_batch_own (b, sb_store_utf8_dup (id, SB_STORE_KEY_MAX));
    if (!key)
        return -1;
    s_prepare_entry (b, e, key);
    return 0;
}

static size_t
s_identity_find (const s_batch_t *b, size_t k)
{
    while (b->contacts[k].rep != k)
        k = b->contacts[k].rep;
    return k;
}

//  After the lock query: an entry of a stored contact stands for it by
//  its stored address, and entries naming one stored contact are one.
//  0 (never fails).
static int
s_identity_group (s_batch_t *b)
{
    for (size_t k = 0; k < b->ncontacts; k++) {
        s_contact_t *c = &b->contacts[k];
        if (!c->stored)
            continue;
        c->address = c->stored;
        for (size_t j = 0; j < k; j++) {
            const s_contact_t *o = &b->contacts[j];
            if (o->stored && strcmp (o->provider, c->provider) == 0
                && strcmp (o->channel, c->channel) == 0 && strcmp (o->stored, c->stored) == 0) {
                c->rep = s_identity_find (b, j);
                break;
            }
        }
    }
    return 0;
}

//  Queue a move (or merge) of the stored contact old to new.
static void
s_identity_queue_move (s_batch_t *b, const s_contact_t *c, const char *old, const char *new,
                       bool forget)
{
    sb_pgarray_table_t *t = &b->moves_t;
    sb_pgarray_text (&t->cols[MV_PROVIDER], c->provider);
    sb_pgarray_text (&t->cols[MV_CHANNEL], c->channel);
    s_array_key (&t->cols[MV_OLD], old);
    s_array_key (&t->cols[MV_NEW], new);
    sb_pgarray_bool (&t->cols[MV_FORGET], forget);
    sb_info (S_MODULE, "contact moved provider=%s channel=%s reason=%s", c->provider, c->channel,
             forget ? "identifier_changed" : "identities_merged");
}

//  The profile name contact c has at this point of the batch: the batch's,
//  else the stored one; NULL when it has none.
static const char *
s_identity_name (const s_contact_t *c)
{
    if (c->profile_name)
        return c->profile_name;
    return c->stored_name && *c->stored_name ? c->stored_name : NULL;
}

//  Entry u's contact becomes part of entry f's: opted out if either was,
//  the later window, f's profile name, else u's (as sb_contact_moves
//  merges them).
static void
s_identity_absorb (s_batch_t *b, size_t f, size_t u)
{
    s_contact_t *cf = &b->contacts[f];
    const s_contact_t *cu = &b->contacts[u];
    cf->opted_out = cf->opted_out || cu->opted_out;
    if (cu->last_inbound_ms > cf->last_inbound_ms)
        cf->last_inbound_ms = cu->last_inbound_ms;
    cf->profile_name = s_identity_name (cf) ? s_identity_name (cf) : s_identity_name (cu);
    cf->touched = cf->touched || cu->touched;
    cf->recorded = cf->recorded || cu->recorded;
    b->contacts[u].rep = f;
}

//  The latest change at or before event `at` that took key, or NULL.
static s_forgot_t *
s_identity_forgot (s_batch_t *b, const char *provider, const char *channel, const char *key,
                   size_t at)
{
    for (size_t n = b->nforgot; n-- > 0;) {
        s_forgot_t *f = &b->forgot[n];
        if (f->at <= at && strcmp (f->key, key) == 0 && strcmp (f->provider, provider) == 0
            && strcmp (f->channel, channel) == 0)
            return f;
    }
    return NULL;
}

//  The entry key names for event i: its own (sorted) entry k, unless a
//  change earlier in the batch took key from its contact: then a new
//  contact's (made at first need).
static size_t
s_identity_current (s_batch_t *b, size_t k, size_t i)
{
    if (k == SIZE_MAX)
        return k;
    const s_contact_t *c = &b->contacts[k];
    s_forgot_t *f = s_identity_forgot (b, c->provider, c->channel, c->key, i);
    if (!f || f->at == i)
        return k;
    if (f->reborn == SIZE_MAX) {
        f->reborn = b->ncontacts++;
        b->contacts[f->reborn] = (s_contact_t){.provider = c->provider,
                                               .channel = c->channel,
                                               .key = f->key,
                                               .address = f->key,
                                               .rep = f->reborn};
    }
    return f->reborn;
}

//  The contact a new inbound event stands for, its sender and user id
//  made one: a phone number and a BSUID of the same person are one
//  contact, kept under the phone number. NULL when out of memory.
static s_contact_t *
s_identity_link (s_batch_t *b, const s_item_t *item)
{
    size_t f = s_identity_find (b, item->contact);
    s_contact_t *cf = &b->contacts[f];
    if (item->user == SIZE_MAX)
        return cf;
    size_t u = s_identity_find (b, item->user);
    if (u == f)
        return cf;
    s_contact_t *cu = &b->contacts[u];
    if (cu->stored && !cf->stored && sb_bsuid_like (cf->address)) {
        cf->rep = u;  //  a BSUID sender of a known user id: that contact
        return cu;
    }
    if (cu->stored) {
        //  The user id's contact moves to the sender (a merge when the
        //  sender is a contact too), with its opt-out and window.
        if (!cf->stored && !(cf->stored = strdup (cf->address)))
            return NULL;
        s_identity_queue_move (b, cf, cu->address, cf->address, false);
    }
    s_identity_absorb (b, f, u);
    return cf;
}

//  A system message of WhatsApp's (a changed number or user id, a changed
//  identity): a notice about the user, not a message from them.
static bool
s_identity_change (const sb_event_t *e)
{
    return e->provider == SB_PROVIDER_META && e->kind == SB_KIND_MESSAGE && e->message_type
           && strcmp (e->message_type, "system") == 0;
}

//  Contact c no longer has identifier key after event i.
static void
s_identity_take (s_batch_t *b, const s_contact_t *c, const char *key, size_t i)
{
    b->forgot[b->nforgot++] = (s_forgot_t){
        .provider = c->provider, .channel = c->channel, .key = key, .at = i, .reborn = SIZE_MAX};
}

//  After event i, a change that moved contact k (or gave it a new BSUID):
//  the contact identifier id named, locked in round trip 1 with its state,
//  is contact k from now on (as the identity row the change writes makes
//  it): merged, in C and in SQL. Merged into k's new row by the move
//  itself when it is that row (its profile name then wins, as
//  sb_contact_moves keeps it), else moved onto it. 0, or -1 out of memory.
static int
s_identity_adopt (s_batch_t *b, size_t k, const char *id, size_t i)
{
    if (!id || !*id)
        return 0;
    s_contact_t *c = &b->contacts[k];
    char *key = sb_store_utf8_dup (id, SB_STORE_KEY_MAX);
    if (!key)
        return -1;
    size_t x = s_contact_find (b, c->provider, c->channel, key);
    free (key);
    x = x == SIZE_MAX ? x : s_identity_find (b, s_identity_current (b, x, i + 1));
    if (x == SIZE_MAX || x == k)
        return 0;
    const s_contact_t *o = &b->contacts[x];
    if (o->stored && strcmp (o->address, c->address) == 0) {
        const char *name = s_identity_name (o) ? s_identity_name (o) : s_identity_name (c);
        s_identity_absorb (b, k, x);
        c->profile_name = name;
        return 0;
    }
    if (o->stored)
        s_identity_queue_move (b, o, o->address, c->address, false);
    s_identity_absorb (b, k, x);
    return 0;
}

//  Event i, a changed number or user id, moves contact c (entry k) to the
//  new identifier: the new phone number when given, else the new BSUID
//  when c is known by a BSUID (a contact known by its phone number keeps
//  it). The previous BSUID, when the event came by it, stops naming c.
//  Nothing when c is no contact yet. 0, or -1 out of memory.
static int
s_identity_move (s_batch_t *b, s_item_t *item, size_t i, size_t k)
{
    const sb_event_t *e = b->events[i];
    s_contact_t *c = &b->contacts[k];
    if (!c->stored && !c->touched && !c->recorded) {
        item->unknown = true;
        return 0;
    }
    const char *wa_id = e->system ? e->system->new_wa_id : NULL;
    const char *to = wa_id && *wa_id ? wa_id : sb_bsuid_like (c->address) ? e->new_user_id : NULL;
    const char *old = c->address;
    if (to && *to) {
        char *address = s_batch_own (b, sb_store_utf8_dup (to, SB_STORE_KEY_MAX));
        if (!address)
            return -1;
        if (strcmp (address, old) != 0) {
            s_identity_queue_move (b, c, old, address, true);
            s_identity_take (b, c, old, i);
            c->address = address;
        }
    }
    if (s_identity_adopt (b, k, to, i) != 0 || s_identity_adopt (b, k, e->new_user_id, i) != 0)
        return -1;
    const char *prev = e->previous_user_id;
    bool came_by = prev
                   && ((item->address && strcmp (prev, item->address) == 0)
                       || (item->user_id && strcmp (prev, item->user_id) == 0));
    if (came_by && strcmp (prev, old) != 0 && strcmp (prev, c->address) != 0) {
        s_identity_queue_move (b, c, prev, c->address, true);
        s_identity_take (b, c, prev, i);
    }
    return 0;
}

static void
s_identity_row (s_batch_t *b, const s_contact_t *c, const char *identity, size_t i)
{
    if (!identity || !*identity || strcmp (identity, c->address) == 0)
        return;
    const s_forgot_t *f = NULL;
    for (size_t n = 0; n < b->nforgot && !f; n++)
        if (b->forgot[n].at >= i && strcmp (b->forgot[n].key, identity) == 0
            && strcmp (b->forgot[n].provider, c->provider) == 0
            && strcmp (b->forgot[n].channel, c->channel) == 0)
            f = &b->forgot[n];
    if (f)
        return;  //  a later event of the batch took it
    sb_pgarray_table_t *t = &b->identities_t;
    sb_pgarray_text (&t->cols[ID_PROVIDER], c->provider);
    sb_pgarray_text (&t->cols[ID_CHANNEL], c->channel);
    s_array_key (&t->cols[ID_IDENTITY], identity);
    s_array_key (&t->cols[ID_ADDRESS], c->address);
}

//  The identity rows of the batch's new inbound events, naming each
//  contact by its address as the batch leaves it; an identifier a later
//  change of the batch took is not written (the move forgot it).
static void
s_identity_rows (s_batch_t *b)
{
    for (size_t i = 0; i < b->count; i++) {
        const s_item_t *item = &b->items[i];
        const sb_event_t *e = b->events[i];
        if (!item->fresh || item->contact == SIZE_MAX || item->unknown || !s_inbound (e))
            continue;
        const s_contact_t *c = &b->contacts[s_identity_find (b, item->contact)];
        if (!s_identity_change (e)) {
            //  The contact's own address: a row when it is new.
            sb_pgarray_table_t *t = &b->identities_t;
            sb_pgarray_text (&t->cols[ID_PROVIDER], c->provider);
            sb_pgarray_text (&t->cols[ID_CHANNEL], c->channel);
            s_array_key (&t->cols[ID_IDENTITY], c->address);
            s_array_key (&t->cols[ID_ADDRESS], c->address);
            s_identity_row (b, c, item->address, i);
            s_identity_row (b, c, item->user_id, i);
        }
        else
            s_identity_row (b, c, e->new_user_id, i);
    }
}

//  Build the events rows, the contact keys and the cursors.
static int
s_batch_prepare (s_batch_t *b)
{
    b->items = calloc (b->count, sizeof (*b->items));
    //  Per event: a sender and its user id, a change's new number and new
    //  BSUID, and a contact reborn for each of the (at most two)
    //  identifiers a change takes.
    b->contacts = calloc (6 * b->count, sizeof (*b->contacts));
    b->outbox_contact = calloc (b->count, sizeof (*b->outbox_contact));
    b->forgot = calloc (2 * b->count, sizeof (*b->forgot));
    b->cursors = calloc (b->count, sizeof (*b->cursors));
    if (!b->items || !b->contacts || !b->forgot || !b->cursors || !b->outbox_contact)
        return -1;
    sb_pgarray_table_t *t = &b->events_t;
    size_t last_body = SIZE_MAX;
    for (size_t i = 0; i < b->count; i++) {
        const sb_event_t *e = b->events[i];
        b->items[i].contact = SIZE_MAX;
        b->items[i].user = SIZE_MAX;
        char dedup[512] = "";
        if (e->kind == SB_KIND_GATHER)
            snprintf (dedup, sizeof dedup, "digits=%s speech=%s", s_str (e->digits),
                      s_str (e->speech_result));
        const char *error_code = e->status ? s_str (e->status->error_code) : "";
        //  A shared body goes to request_bodies and the event without it to
        //  payload; the only event of a request keeps its body (inline_body).
        s_batch_body_key (b, i, &last_body);
        if (e->kind != SB_KIND_GATHER && (!e->provider_id || !*e->provider_id)
            && (b->items[i].has_body || b->items[i].inline_body)) {
            uint8_t own[SB_EVENT_SHA256_SIZE];
            if (b->items[i].inline_body)
                sb_event_sha256 (e->raw_body.data, e->raw_body.len, own);
            s_content_key (e, b->items[i].inline_body ? own : b->items[i].body_sha256, dedup,
                           sizeof dedup);
        }
        sb_event_t bare = *e;
        if (!b->items[i].inline_body)
            bare.raw_body = (ProtobufCBinaryData){0, NULL};
        size_t size = 0;
        uint8_t *payload = sb_event_encode (&bare, &size);
        if (!payload)
            return -1;
        s_array_key (&t->cols[EV_INGRESS], e->ingress_id);
        s_array_key (&t->cols[EV_EPOCH], e->epoch);
        sb_pgarray_int8 (&t->cols[EV_SEQ], (int64_t) e->seq);
        sb_pgarray_text (&t->cols[EV_UID], e->id);
        sb_pgarray_text (&t->cols[EV_PROVIDER], sb_event_provider_name (e->provider));
        sb_pgarray_text (&t->cols[EV_CHANNEL], sb_event_channel_name (e->channel));
        sb_pgarray_text (&t->cols[EV_KIND], sb_event_kind_name (e->kind));
        sb_pgarray_text (&t->cols[EV_TYPE], e->message_type);
        s_array_key (&t->cols[EV_PROVIDER_ID], e->provider_id);
        s_array_key (&t->cols[EV_STATUS], s_event_status (e));
        s_array_key (&t->cols[EV_DEDUP], dedup);
        sb_pgarray_text (&t->cols[EV_ERROR_CODE], error_code);
        sb_pgarray_text (&t->cols[EV_FROM], e->from);
        sb_pgarray_text (&t->cols[EV_TO], e->to);
        sb_pgarray_text (&t->cols[EV_ACCOUNT], e->account);
        sb_pgarray_text (&t->cols[EV_TEXT], e->text);
        sb_pgarray_time (&t->cols[EV_RECEIVED],
                         e->received_at_ms ? e->received_at_ms : sb_time_wall_ms ());
        sb_pgarray_bytes (&t->cols[EV_PAYLOAD], payload, size);
        free (payload);
        if (b->items[i].has_body)
            sb_pgarray_bytes (&t->cols[EV_BODY_SHA256], b->items[i].body_sha256,
                              SB_EVENT_SHA256_SIZE);
        else
            sb_pgarray_null (&t->cols[EV_BODY_SHA256]);

        //  Contacts are keyed by the address as stored: two addresses that
        //  PostgreSQL would see as one must be one contact here too. A
        //  marketing preference's contact is followed through the batch's
        //  moves like a sender's.
        if (s_inbound (e) || s_preference (e)) {
            if (!(b->items[i].address = sb_store_utf8_dup (e->from, SB_STORE_KEY_MAX)))
                return -1;
            s_prepare_entry (b, e, b->items[i].address);
        }
        if (s_inbound (e) && s_prepare_user_id (b, e, &b->items[i]) != 0)
            return -1;
        //  The contacts a change moves to: the C side must know their state
        //  (opt-out, window) before it merges them.
        if (s_inbound (e) && s_identity_change (e)) {
            const char *to[2] = {e->system ? e->system->new_wa_id : NULL, e->new_user_id};
            for (size_t n = 0; n < 2; n++)
                if (to[n] && *to[n] && strcmp (to[n], e->from) != 0
                    && s_prepare_key (b, e, to[n]) != 0)
                    return -1;
        }
        //  The cursor follows the latest epoch seen for each ingress.
        const char *ingress = s_str (e->ingress_id);
        const char *epoch = s_str (e->epoch);
        size_t k;
        for (k = 0; k < b->ncursors; k++)
            if (strcmp (b->cursors[k].ingress_id, ingress) == 0)
                break;
        s_cursor_t *cur = &b->cursors[k];
        if (k == b->ncursors) {
            b->ncursors++;
            cur->ingress_id = ingress;
            cur->epoch = epoch;
            cur->seq = e->seq;
        }
        else if (strcmp (cur->epoch, epoch) != 0) {
            cur->epoch = epoch;
            cur->seq = e->seq;
        }
        else if (e->seq > cur->seq)
            cur->seq = e->seq;
    }
    //  Unique contacts in key order (also the order their rows are locked).
    if (b->ncontacts) {
        qsort (b->contacts, b->ncontacts, sizeof (*b->contacts), s_contact_cmp);
        size_t n = 1;
        for (size_t i = 1; i < b->ncontacts; i++)
            if (s_contact_cmp (&b->contacts[i], &b->contacts[n - 1]) != 0)
                b->contacts[n++] = b->contacts[i];
        b->ncontacts = n;
    }
    b->nsorted = b->ncontacts;
    for (size_t i = 0; i < b->ncontacts; i++) {
        sb_pgarray_text (&b->keys_t.cols[CK_PROVIDER], b->contacts[i].provider);
        sb_pgarray_text (&b->keys_t.cols[CK_CHANNEL], b->contacts[i].channel);
        s_array_key (&b->keys_t.cols[CK_ADDRESS], b->contacts[i].address);
    }
    for (size_t i = 0; i < b->count; i++) {
        const sb_event_t *e = b->events[i];
        if (b->items[i].address)
            b->items[i].contact =
                s_contact_find (b, sb_event_provider_name (e->provider),
                                sb_event_channel_name (e->channel), b->items[i].address);
        if (b->items[i].user_id)
            b->items[i].user =
                s_contact_find (b, sb_event_provider_name (e->provider),
                                sb_event_channel_name (e->channel), b->items[i].user_id);
    }
    for (size_t k = 0; k < b->ncontacts; k++)
        b->contacts[k].rep = k;
    for (size_t k = 0; k < b->ncursors; k++) {
        s_array_key (&b->cursor_t.cols[CU_INGRESS], b->cursors[k].ingress_id);
        s_array_key (&b->cursor_t.cols[CU_EPOCH], b->cursors[k].epoch);
        sb_pgarray_int8 (&b->cursor_t.cols[CU_SEQ], (int64_t) b->cursors[k].seq);
    }
    if (b->forwards)
        s_batch_bodies_to_fetch (b);
    return 0;
}

static bool
s_same_key (const sb_event_t *e, const char *ingress, const char *epoch, int64_t seq)
{
    return (int64_t) e->seq == seq && strcmp (s_str (e->ingress_id), ingress) == 0
           && strcmp (s_str (e->epoch), epoch) == 0;
}

//  Mark the events the INSERT returned (id, ingress_id, epoch, seq) as
//  fresh. Rows come back in insertion order in practice; a row that does
//  not is looked up from the start, and one whose ingress id or epoch we
//  had to re-encode is matched by seq alone.
static int
s_batch_mark_fresh (s_batch_t *b, const PGresult *r, size_t *stored)
{
    size_t next = 0;
    int rows = PQntuples (r);
    for (int row = 0; row < rows; row++) {
        int64_t id, seq;
        const char *ingress = PQgetvalue (r, row, 1);
        const char *epoch = PQgetvalue (r, row, 2);
        if (!sb_store_parse_int64 (PQgetvalue (r, row, 0), &id)
            || !sb_store_parse_int64 (PQgetvalue (r, row, 3), &seq)) {
            sb_error (S_MODULE, "unexpected events row from PostgreSQL");
            return -1;
        }
        size_t i = next;
        while (i < b->count
               && (b->items[i].fresh || !s_same_key (b->events[i], ingress, epoch, seq)))
            i++;
        if (i == b->count) {
            for (i = 0; i < b->count; i++)
                if (!b->items[i].fresh && s_same_key (b->events[i], ingress, epoch, seq))
                    break;
            if (i == b->count)
                for (i = 0; i < b->count; i++)
                    if (!b->items[i].fresh && (int64_t) b->events[i]->seq == seq)
                        break;
            if (i == b->count) {
                sb_error (S_MODULE, "PostgreSQL returned an event not in the batch seq=%" PRId64,
                          seq);
                return -1;
            }
        }
        else
            next = i + 1;
        b->items[i].fresh = true;
        b->items[i].id = id;
        (*stored)++;
    }
    return 0;
}

//  Load the contacts' state before the batch from the lock query's rows.
static int
s_batch_load_contacts (s_batch_t *b, const PGresult *r)
{
    int rows = PQntuples (r);
    for (int row = 0; row < rows; row++) {
        size_t k = s_contact_find (b, PQgetvalue (r, row, 0), PQgetvalue (r, row, 1),
                                   PQgetvalue (r, row, 2));
        if (k == SIZE_MAX)
            continue;  //  an address we had to re-encode: treated as new
        int64_t last = 0;
        if (!sb_store_parse_int64 (PQgetvalue (r, row, 4), &last))
            return -1;
        b->contacts[k].opted_out = strcmp (PQgetvalue (r, row, 3), "t") == 0;
        b->contacts[k].last_inbound_ms = last;
        free (b->contacts[k].stored);
        free (b->contacts[k].stored_name);
        b->contacts[k].stored_name = NULL;
        if (!(b->contacts[k].stored = strdup (PQgetvalue (r, row, 5)))
            || !(b->contacts[k].stored_name = strdup (PQgetvalue (r, row, 6))))
            return -1;
    }
    return s_identity_group (b);
}

//  The event as a forward's JSON, with its request's raw body as each
//  event carried it before requests shared one (a bot may re-read it).
//  Caller owns the return value; NULL on failure.
static char *
s_forward_json (const s_batch_t *b, size_t i)
{
    const sb_event_t *e = b->events[i];
    const char *type = NULL;
    const ProtobufCBinaryData *body = e->raw_body.len ? NULL : s_batch_body (b, i, &type);
    if (!body)
        return sb_event_to_json (e);
    sb_event_t with = *e;
    with.raw_body = *body;
    if (type && *type)
        with.raw_content_type = (char *) type;
    return sb_event_to_json (&with);
}

//  Keep the bodies the fetch found (sha256, body: bytea as text;
//  content_type).
static int
s_batch_load_bodies (s_batch_t *b, const PGresult *r)
{
    int rows = PQntuples (r);
    if (rows > 0 && !(b->fetched = calloc ((size_t) rows, sizeof (*b->fetched))))
        return -1;
    for (int row = 0; row < rows; row++) {
        size_t len = 0;
        unsigned char *sha = PQunescapeBytea ((const unsigned char *) PQgetvalue (r, row, 0), &len);
        if (!sha)
            return -1;
        bool keyed = len == SB_EVENT_SHA256_SIZE;
        if (keyed)
            memcpy (b->fetched[b->nfetched].sha256, sha, len);
        PQfreemem (sha);
        unsigned char *body =
            keyed ? PQunescapeBytea ((const unsigned char *) PQgetvalue (r, row, 1), &len) : NULL;
        if (keyed && !body)
            return -1;
        if (!body)
            continue;
        s_body_t *got = &b->fetched[b->nfetched++];
        got->body = (ProtobufCBinaryData){len, body};
        if (!(got->content_type = strdup (PQgetvalue (r, row, 2))))
            return -1;
    }
    //  A body the first event of its request never brought (retention
    //  removed it past the hard cap, or an empty body): those events are
    //  stored and forwarded without it. Said, since a bot may miss it.
    uint32_t asked = b->bodies_get_t.cols[BG_SHA256].count;
    if (b->nfetched < asked)
        sb_warn (S_MODULE,
                 "request bodies not found: events forwarded without raw_body"
                 " asked=%u found=%zu",
                 asked, b->nfetched);
    return 0;
}

//  What an inbound message's text is by the rules' keyword lists (no
//  rules: none).
static sb_policy_keyword_t
s_keyword (const sb_rules_t *rules, const sb_event_t *e)
{
    if (e->kind != SB_KIND_MESSAGE || !rules)
        return SB_POLICY_KEYWORD_NONE;
    if (sb_rules_is_opt_out (rules, e->text))
        return SB_POLICY_KEYWORD_OPT_OUT;
    if (sb_rules_is_opt_in (rules, e->text))
        return SB_POLICY_KEYWORD_OPT_IN;
    return SB_POLICY_KEYWORD_NONE;
}

//  Decide on a new inbound event from contact c: ask the rules (not about
//  an opt-out keyword: the policy consumes it), apply the reply policy,
//  keep the contact's opt-out mark as it leaves it, and queue what it
//  decides.
static int
s_batch_decide (s_batch_t *b, const sb_event_t *e, const s_item_t *item, s_contact_t *c,
                const sb_store_policy_t *policy, int64_t now_ms, int64_t window_ms,
                sb_store_stats_t *stats)
{
    const sb_rules_t *rules = policy ? policy->rules : NULL;
    sb_policy_input_t in = {.channel = e->channel,
                            .keyword = s_keyword (rules, e),
                            .opted_out = c->opted_out,
                            .last_inbound_ms = c->last_inbound_ms,
                            .now_ms = now_ms,
                            .window_ms = window_ms};
    sb_rule_decision_t d = {.action = SB_RULE_NONE};
    if (rules && in.keyword != SB_POLICY_KEYWORD_OPT_OUT) {
        if (sb_rules_decide (rules, e, &d) != 0)
            return -1;
        if (d.publish && policy->publish)
            policy->publish[item - b->items] = true;
        in.ask = d.action == SB_RULE_REPLY     ? SB_POLICY_ASK_REPLY
                 : d.action == SB_RULE_FORWARD ? SB_POLICY_ASK_FORWARD
                                               : SB_POLICY_ASK_NONE;
        in.text = d.text;
    }
    sb_policy_t p = sb_policy_decide (&in);
    if (p.opted_out && !c->opted_out)
        sb_info (S_MODULE, "contact opted out provider=%s channel=%s", c->provider, c->channel);
    else if (!p.opted_out && c->opted_out)
        sb_info (S_MODULE, "contact opted in provider=%s channel=%s", c->provider, c->channel);
    c->opted_out = p.opted_out;
    if (p.decision == SB_POLICY_NONE) {
        sb_rule_decision_clear (&d);
        return 0;
    }
    const char *reason = p.reason;
    bool not_sent = p.decision == SB_POLICY_NOT_SENT;
    char *json = NULL;
    if (d.action == SB_RULE_FORWARD && !(json = s_forward_json (b, (size_t) (item - b->items)))) {
        sb_rule_decision_clear (&d);
        return -1;
    }
    bool meta = e->provider == SB_PROVIDER_META;
    sb_pgarray_table_t *t = &b->outbox_t;
    sb_pgarray_text (&t->cols[OB_KIND], d.action == SB_RULE_REPLY ? "reply" : "forward");
    sb_pgarray_text (&t->cols[OB_STATE], not_sent ? "not_sent" : "pending");
    sb_pgarray_text (&t->cols[OB_PROVIDER], c->provider);
    sb_pgarray_text (&t->cols[OB_CHANNEL], c->channel);
    sb_pgarray_text (&t->cols[OB_ACCOUNT], meta ? e->account : "");
    sb_pgarray_text (&t->cols[OB_FROM], e->to);
    sb_pgarray_text (&t->cols[OB_TO], c->address);
    sb_pgarray_text (&t->cols[OB_BODY], d.action == SB_RULE_REPLY ? d.text : "");
    sb_pgarray_text (&t->cols[OB_CONTEXT],
                     meta && e->kind == SB_KIND_MESSAGE ? e->provider_id : "");
    sb_pgarray_text (&t->cols[OB_URL], d.action == SB_RULE_FORWARD ? d.url : "");
    sb_pgarray_int4 (&t->cols[OB_TIMEOUT], d.action == SB_RULE_FORWARD ? d.timeout_ms : 0);
    sb_pgarray_text (&t->cols[OB_JSON], json);
    sb_pgarray_text (&t->cols[OB_REASON], reason);
    sb_pgarray_int8 (&t->cols[OB_EVENT_ID], item->id);
    sb_pgarray_text (&t->cols[OB_RULE], d.rule);
    b->outbox_contact[b->noutbox++] = (size_t) (c - b->contacts);
    free (json);
    if (not_sent) {
        stats->not_sent++;
        sb_debug (S_MODULE, "reply not sent rule=%s reason=%s", s_str (d.rule), reason);
    }
    else
        stats->replies++;
    sb_rule_decision_clear (&d);
    return 0;
}

//  Meta's other webhook fields (0006_meta_fields.sql): the kinds that are
//  no inbound message of a contact.
static bool
s_meta_field (int kind, int provider)
{
    return kind == SB_KIND_ECHO || kind == SB_KIND_PREFERENCE || kind == SB_KIND_TEMPLATE
           || kind == SB_KIND_ACCOUNT || kind == SB_KIND_OTHER
           || (kind == SB_KIND_CALL && provider == SB_PROVIDER_META);
}

//  The effect of a new event of Meta's other fields: an echo is an
//  outbound message (never asked about: it is ours); a preference is
//  recorded on its contact; then the rules may forward (a notification)
//  or publish, never reply: these events have no one to answer.
static int
s_batch_meta_field (s_batch_t *b, const sb_event_t *e, s_item_t *item,
                    const sb_store_policy_t *policy, sb_store_stats_t *stats)
{
    const char *provider = sb_event_provider_name (e->provider);
    const char *channel = sb_event_channel_name (e->channel);
    if (e->kind == SB_KIND_ECHO) {
        sb_pgarray_table_t *t = &b->echoes_t;
        sb_pgarray_text (&t->cols[EC_PROVIDER], provider);
        sb_pgarray_text (&t->cols[EC_CHANNEL], channel);
        s_array_key_or_null (&t->cols[EC_PROVIDER_ID], e->provider_id);
        sb_pgarray_text (&t->cols[EC_CONTACT], e->to);
        sb_pgarray_text (&t->cols[EC_OURS], e->from);
        sb_pgarray_text (&t->cols[EC_ACCOUNT], e->account);
        sb_pgarray_text (&t->cols[EC_TYPE], e->message_type);
        sb_pgarray_text (&t->cols[EC_BODY], e->text);
        sb_pgarray_int8 (&t->cols[EC_EVENT_ID], item->id);
        return 0;
    }
    if (s_preference (e) && item->contact != SIZE_MAX) {
        //  Its row is written with the batch's end (s_batch_prefs); its
        //  contact exists from now on, for a change later in the batch.
        item->contact = s_identity_current (b, item->contact, (size_t) (item - b->items));
        b->contacts[s_identity_find (b, item->contact)].recorded = true;
    }
    const sb_rules_t *rules = policy ? policy->rules : NULL;
    if (!rules)
        return 0;
    sb_rule_decision_t d = {.action = SB_RULE_NONE};
    if (sb_rules_decide (rules, e, &d) != 0)
        return -1;
    if (d.publish && policy->publish)
        policy->publish[item - b->items] = true;
    if (d.action == SB_RULE_REPLY)
        sb_debug (S_MODULE, "reply not queued: nobody to answer rule=%s kind=%s", s_str (d.rule),
                  sb_event_kind_name (e->kind));
    if (d.action == SB_RULE_FORWARD) {
        char *json = s_forward_json (b, (size_t) (item - b->items));
        if (!json) {
            sb_rule_decision_clear (&d);
            return -1;
        }
        sb_pgarray_table_t *t = &b->outbox_t;
        sb_pgarray_text (&t->cols[OB_KIND], "forward");
        sb_pgarray_text (&t->cols[OB_STATE], "pending");
        sb_pgarray_text (&t->cols[OB_PROVIDER], provider);
        sb_pgarray_text (&t->cols[OB_CHANNEL], channel);
        sb_pgarray_text (&t->cols[OB_ACCOUNT], e->account);
        sb_pgarray_text (&t->cols[OB_FROM], e->to);
        sb_pgarray_text (&t->cols[OB_TO], "");
        sb_pgarray_text (&t->cols[OB_BODY], "");
        sb_pgarray_text (&t->cols[OB_CONTEXT], "");
        sb_pgarray_text (&t->cols[OB_URL], d.url);
        sb_pgarray_int4 (&t->cols[OB_TIMEOUT], d.timeout_ms);
        sb_pgarray_text (&t->cols[OB_JSON], json);
        sb_pgarray_text (&t->cols[OB_REASON], "");
        sb_pgarray_int8 (&t->cols[OB_EVENT_ID], item->id);
        sb_pgarray_text (&t->cols[OB_RULE], d.rule);
        b->outbox_contact[b->noutbox++] = SIZE_MAX;
        free (json);
        stats->replies++;
    }
    sb_rule_decision_clear (&d);
    return 0;
}

//  The marketing preferences of the batch, each under its contact's
//  address as the batch leaves it (a change later in the batch takes the
//  preference with it, as it would written one by one).
static void
s_batch_prefs (s_batch_t *b)
{
    for (size_t i = 0; i < b->count; i++) {
        const sb_event_t *e = b->events[i];
        const s_item_t *item = &b->items[i];
        if (!item->fresh || !s_preference (e) || item->contact == SIZE_MAX)
            continue;
        const s_contact_t *c = &b->contacts[s_identity_find (b, item->contact)];
        sb_pgarray_table_t *t = &b->prefs_t;
        int64_t at = e->provider_timestamp > 0
                         ? e->provider_timestamp * 1000
                         : (e->received_at_ms ? e->received_at_ms : sb_time_wall_ms ());
        sb_pgarray_text (&t->cols[PR_PROVIDER], c->provider);
        sb_pgarray_text (&t->cols[PR_CHANNEL], c->channel);
        s_array_key (&t->cols[PR_ADDRESS], c->address);
        sb_pgarray_text (&t->cols[PR_VALUE], e->preference->value);
        sb_pgarray_time (&t->cols[PR_AT], at);
    }
}

//  The effects of the batch's new events, in batch order.
static int
s_batch_effects (s_batch_t *b, const sb_store_policy_t *policy, int64_t now_ms, int64_t window_ms,
                 sb_store_stats_t *stats)
{
    for (size_t i = 0; i < b->count; i++) {
        const sb_event_t *e = b->events[i];
        s_item_t *item = &b->items[i];
        if (!item->fresh)
            continue;
        if (e->kind == SB_KIND_STATUS) {
            if (e->provider_id && *e->provider_id && e->status && e->status->status
                && *e->status->status) {
                sb_pgarray_table_t *t = &b->status_t;
                sb_pgarray_text (&t->cols[ST_PROVIDER], sb_event_provider_name (e->provider));
                s_array_key (&t->cols[ST_PROVIDER_ID], e->provider_id);
                s_array_key (&t->cols[ST_STATUS], e->status->status);
                sb_pgarray_text (&t->cols[ST_ERROR_CODE], e->status->error_code);
            }
            continue;
        }
        if (s_meta_field (e->kind, e->provider)) {
            if (s_batch_meta_field (b, e, item, policy, stats) != 0)
                return -1;
            continue;
        }
        if (item->contact == SIZE_MAX)
            continue;
        item->contact = s_identity_current (b, item->contact, i);
        item->user = s_identity_current (b, item->user, i);
        s_contact_t *c = s_identity_link (b, item);
        if (!c)
            return -1;
        if (s_identity_change (e)) {
            if (s_identity_move (b, item, i, (size_t) (c - b->contacts)) != 0)
                return -1;
            continue;  //  a notice from WhatsApp, not from the user: no window, no reply
        }
        c->touched = true;
        int64_t received = e->received_at_ms ? e->received_at_ms : now_ms;
        if (received > c->last_inbound_ms)
            c->last_inbound_ms = received;
        if (e->profile_name && *e->profile_name)
            c->profile_name = e->profile_name;
        if (s_batch_decide (b, e, item, c, policy, now_ms, window_ms, stats) != 0)
            return -1;
    }
    //  Inbound messages, under their contact's address as the batch leaves
    //  it (a change later in the batch moves them too).
    for (size_t i = 0; i < b->count; i++) {
        const sb_event_t *e = b->events[i];
        const s_item_t *item = &b->items[i];
        if (!item->fresh || item->contact == SIZE_MAX || s_identity_change (e)
            || (e->kind != SB_KIND_MESSAGE && e->kind != SB_KIND_GATHER))
            continue;
        const s_contact_t *c = &b->contacts[s_identity_find (b, item->contact)];
        const char *body = e->text;
        if (e->kind == SB_KIND_GATHER)
            body = e->digits && *e->digits ? e->digits : e->speech_result;
        sb_pgarray_table_t *t = &b->messages_t;
        sb_pgarray_text (&t->cols[MI_PROVIDER], c->provider);
        sb_pgarray_text (&t->cols[MI_CHANNEL], c->channel);
        //  Gathers share their call's CallSid: it stays on the event.
        s_array_key_or_null (&t->cols[MI_PROVIDER_ID],
                             e->kind == SB_KIND_MESSAGE ? e->provider_id : NULL);
        sb_pgarray_text (&t->cols[MI_CONTACT], c->address);
        sb_pgarray_text (&t->cols[MI_OURS], e->to);
        sb_pgarray_text (&t->cols[MI_ACCOUNT], e->account);
        sb_pgarray_text (&t->cols[MI_TYPE], e->kind == SB_KIND_GATHER ? "gather" : e->message_type);
        sb_pgarray_text (&t->cols[MI_BODY], body);
        sb_pgarray_int8 (&t->cols[MI_EVENT_ID], item->id);
    }
    for (size_t k = 0; k < b->ncontacts; k++) {
        const s_contact_t *c = &b->contacts[k];
        if (!c->touched || c->rep != k)
            continue;
        sb_pgarray_table_t *t = &b->contacts_t;
        sb_pgarray_text (&t->cols[CO_PROVIDER], c->provider);
        sb_pgarray_text (&t->cols[CO_CHANNEL], c->channel);
        s_array_key (&t->cols[CO_ADDRESS], c->address);
        sb_pgarray_text (&t->cols[CO_PROFILE], c->profile_name);
        sb_pgarray_time (&t->cols[CO_LAST_INBOUND], c->last_inbound_ms);
        sb_pgarray_bool (&t->cols[CO_OPTED_OUT], c->opted_out);
    }
    //  A reply's outbound messages row goes under its contact's address as
    //  the batch leaves it, as its inbound message does.
    for (size_t n = 0; n < b->noutbox; n++) {
        size_t k = b->outbox_contact[n];
        s_array_key (&b->outbox_t.cols[OB_CONTACT],
                     k == SIZE_MAX ? "" : b->contacts[s_identity_find (b, k)].address);
    }
    s_identity_rows (b);
    s_batch_prefs (b);
    return 0;
}

//  Take the result of a pipelined statement that returns no rows.
static int
s_take_ok (sb_store_t *self, const char *what, int64_t *rows)
{
    PGresult *r = sb_store_take (self, PGRES_COMMAND_OK, what);
    if (!r)
        return -1;
    if (rows && !sb_store_parse_int64 (PQcmdTuples (r), rows))
        *rows = 0;
    PQclear (r);
    return 0;
}

//  Round trip 1: BEGIN, insert the events (which are new?), lock and read
//  the contacts (their state before the batch).
static int
s_write_round1 (sb_store_t *self, s_batch_t *b, sb_store_stats_t *stats)
{
    bool lock = b->ncontacts > 0;
    bool bodies = sb_pgarray_table_rows (&b->bodies_t) > 0;
    bool fetch = sb_pgarray_table_rows (&b->bodies_get_t) > 0;
    if (sb_store_send_sql (self, "BEGIN")
        || (bodies && sb_store_send_table (self, "sb_bodies", &b->bodies_t))
        || sb_store_send_table (self, "sb_events", &b->events_t)
        || (lock && sb_store_send_table (self, "sb_contacts_lock", &b->keys_t))
        || (fetch && sb_store_send_table (self, "sb_bodies_get", &b->bodies_get_t)))
        return -1;
    if (!PQsendFlushRequest (self->conn)) {
        sb_store_log_result (self, NULL, "flush request");
        return -1;
    }
    if (sb_store_flush (self) || s_take_ok (self, "BEGIN", NULL)
        || (bodies && s_take_ok (self, "insert request bodies", NULL)))
        return -1;
    PGresult *r = sb_store_take (self, PGRES_TUPLES_OK, "insert events");
    if (!r)
        return -1;
    int rc = s_batch_mark_fresh (b, r, &stats->stored);
    PQclear (r);
    if (rc == 0 && lock) {
        if (!(r = sb_store_take (self, PGRES_TUPLES_OK, "lock contacts")))
            return -1;
        rc = s_batch_load_contacts (b, r);
        PQclear (r);
    }
    if (rc == 0 && fetch) {
        if (!(r = sb_store_take (self, PGRES_TUPLES_OK, "fetch request bodies")))
            return -1;
        rc = s_batch_load_bodies (b, r);
        PQclear (r);
    }
    stats->duplicates = b->count - stats->stored;
    return rc;
}

//  Round trip 2: the statements the new events imply (those with rows),
//  the cursor, COMMIT, and the pipeline's end. *synced once the end is sent.
static int
s_write_round2 (sb_store_t *self, s_batch_t *b, sb_store_stats_t *stats, bool *synced)
{
    //  Moves first (the contacts' rows as the batch left them), echoes
    //  before statuses, so a status of the batch reaches its echo.
    sb_pgarray_table_t *tables[] = {&b->moves_t,    &b->contacts_t, &b->identities_t,
                                    &b->messages_t, &b->echoes_t,   &b->outbox_t,
                                    &b->status_t,   &b->cursor_t,   &b->prefs_t};
    static const char *const names[] = {"sb_moves",    "sb_contacts", "sb_identities",
                                        "sb_messages", "sb_echoes",   "sb_outbox",
                                        "sb_status",   "sb_cursor",   "sb_prefs"};
    static const char *const what[] = {
        "move contacts",   "upsert contacts", "upsert identities",
        "insert messages", "insert echoes",   "insert outbox",
        "apply statuses",  "upsert cursor",   "record marketing preferences"};
    enum { N = sizeof tables / sizeof tables[0], MOVES = 0, STATUS = 6 };
    bool sent[N];
    for (size_t i = 0; i < N; i++) {
        sent[i] = sb_pgarray_table_rows (tables[i]) > 0;
        if (sent[i] && sb_store_send_table (self, names[i], tables[i]))
            return -1;
    }
    if (sb_store_send_commit (self))
        return -1;
    *synced = true;
    if (sb_store_flush (self))
        return -1;
    for (size_t i = 0; i < N; i++) {
        int64_t rows = 0;
        if (sent[i] && i == MOVES) {
            PGresult *r = sb_store_take (self, PGRES_TUPLES_OK, what[i]);
            if (!r)
                return -1;
            PQclear (r);
            continue;
        }
        if (sent[i] && s_take_ok (self, what[i], &rows))
            return -1;
        if (i == STATUS)
            stats->statuses = (size_t) rows;
    }
    bool sync;
    bool committed = sb_store_take_commit (self, &sync);
    if (!committed || !sync) {
        sb_error (S_MODULE, "batch not committed count=%zu", b->count);
        return -1;
    }
    if (!PQexitPipelineMode (self->conn)) {
        sb_store_log_result (self, NULL, "exit pipeline mode");
        return -1;
    }
    return 0;
}

int
sb_store_write (sb_store_t *self, sb_event_t *const *events, size_t count,
                const sb_store_policy_t *policy, sb_store_stats_t *stats)
{
    sb_store_stats_t local;
    if (!stats)
        stats = &local;
    memset (stats, 0, sizeof (*stats));
    if (count == 0)
        return 0;
    int64_t window_ms = policy && policy->window_ms > 0 ? policy->window_ms : SB_POLICY_WINDOW_MS;
    int64_t now_ms = policy && policy->now_ms ? policy->now_ms : sb_time_wall_ms ();
    self->window_ms = window_ms;
    if (sb_store_ready (self) != 0)
        return -1;

    s_batch_t b = {.events = events, .count = count, .forwards = policy && policy->rules};
    sb_pgarray_table_init (&b.events_t, s_events_oids, EV_COLS);
    sb_pgarray_table_init (&b.keys_t, s_contact_key_oids, CK_COLS);
    sb_pgarray_table_init (&b.contacts_t, s_contacts_oids, CO_COLS);
    sb_pgarray_table_init (&b.messages_t, s_messages_oids, MI_COLS);
    sb_pgarray_table_init (&b.outbox_t, s_outbox_oids, OB_COLS);
    sb_pgarray_table_init (&b.status_t, s_status_oids, ST_COLS);
    sb_pgarray_table_init (&b.cursor_t, s_cursor_oids, CU_COLS);
    sb_pgarray_table_init (&b.bodies_t, s_bodies_oids, BO_COLS);
    sb_pgarray_table_init (&b.bodies_get_t, s_bodies_get_oids, BG_COLS);
    sb_pgarray_table_init (&b.echoes_t, s_echoes_oids, EC_COLS);
    sb_pgarray_table_init (&b.prefs_t, s_prefs_oids, PR_COLS);
    sb_pgarray_table_init (&b.moves_t, s_moves_oids, MV_COLS);
    sb_pgarray_table_init (&b.identities_t, s_identities_oids, ID_COLS);
    int rc = -1;
    if (s_batch_prepare (&b) != 0)
        sb_error (S_MODULE, "out of memory preparing a batch count=%zu", count);
    else if (!PQenterPipelineMode (self->conn))
        sb_store_log_result (self, NULL, "enter pipeline mode");
    else {
        bool synced = false;
        if (s_write_round1 (self, &b, stats) == 0) {
            if (s_batch_effects (&b, policy, now_ms, window_ms, stats) != 0)
                sb_error (S_MODULE, "cannot decide replies (out of memory) count=%zu", count);
            else
                rc = s_write_round2 (self, &b, stats, &synced);
        }
        if (rc != 0) {
            sb_store_pipeline_abort (self, synced);
            memset (stats, 0, sizeof (*stats));
        }
    }
    if (policy && policy->fresh)
        for (size_t i = 0; i < count; i++)
            policy->fresh[i] = rc == 0 && b.items && b.items[i].fresh;
    if (rc != 0 && policy && policy->publish)
        memset (policy->publish, 0, count * sizeof *policy->publish);
    if (rc == 0)
        sb_debug (S_MODULE,
                  "batch stored count=%zu stored=%zu duplicates=%zu replies=%zu"
                  " not_sent=%zu statuses=%zu",
                  count, stats->stored, stats->duplicates, stats->replies, stats->not_sent,
                  stats->statuses);
    s_batch_free (&b);
    return rc;
}

//  ---------------------------------------------------------------------
//  Cursor

int
sb_store_cursor (sb_store_t *self, const char *ingress_id, uint64_t *seq, char *epoch,
                 size_t epoch_size)
{
    *seq = 0;
    if (epoch && epoch_size)
        epoch[0] = 0;
    if (sb_store_ensure (self) != 0)
        return -1;
    char *id = sb_store_utf8_dup (ingress_id, SB_STORE_KEY_MAX);
    if (!id)
        return -1;
    const char *params[] = {id};
    PGresult *r =
        sb_store_exec (self, "SELECT last_seq, epoch FROM consumer_cursors WHERE ingress_id = $1",
                       1, params, PGRES_TUPLES_OK, "read cursor");
    free (id);
    if (!r)
        return -1;
    int rc = 0;
    if (PQntuples (r) == 1) {
        int64_t v;
        if (sb_store_parse_int64 (PQgetvalue (r, 0, 0), &v) && v >= 0) {
            *seq = (uint64_t) v;
            if (epoch && epoch_size)
                snprintf (epoch, epoch_size, "%s", PQgetvalue (r, 0, 1));
        }
        else
            rc = -1;
    }
    PQclear (r);
    return rc;
}

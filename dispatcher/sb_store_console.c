/*  sb_store_console: the store's side of switchboard console (console/,
    issue 14): the reads behind its pages and its only two writes.

    Reads. Conversations are one per contact, (provider, channel,
    contact_addr) of messages, newest first by their newest message id;
    a conversation's messages newest first; the dead letters (outbox rows
    failed, dead or not_sent). Every list is paged by id (keyset: before
    the smallest id shown) with a bounded page, over the indexes of
    0008_console.sql. An inbound message's media, location and digits
    live in its event's payload (the serialized Event), which the caller's
    details function turns into JSON: the store does not interpret events
    for people. What a publish rule captured from an inbound event is
    in captures (0012), written by the batch that decided it.

    Writes. A Retry puts a failed or dead row back to pending, due now,
    with its attempts reset, and its outbound message back to queued (a
    failed message ranks terminal, so no later status could move it); the
    retry is recorded on the row as the dispatcher records its outcomes,
    in last_error ("retried from the console; was: ..."), and, kept after
    the next attempt rewrites last_error, in retries and retried_at
    (0012_console_codes_retries.sql), which the pages show. A reply is
    decided by the rules' own policy (sb_policy: opt-out, channel, the
    WhatsApp window against the database's clock) on the contact locked
    FOR UPDATE, and queued by the rules' own outbox statement (sb_outbox,
    prepared on every connection), refused ones recorded not_sent with the
    reason as the rules record theirs. It answers the conversation's
    newest inbound message (from our address, on its account). The
    dispatcher claims the pending row within its periodic claim; nothing
    wakes it.

    Limits: a reply's text is capped (SB_STORE_CONSOLE_TEXT_MAX); one
    connection, one thread, like the rest of the store.
*/
#include "sb_store_batch.h"
#include "sb_partition.h"
#include "sb_policy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MODULE "store"

//  The page size when the caller asks for none or too many.
#define S_PAGE_MAX 200

static int
s_page (int limit)
{
    return limit <= 0 || limit > S_PAGE_MAX ? S_PAGE_MAX : limit;
}

//  Conversations, newest first, a page costing a window of messages and
//  not the table: the newest messages below `before` (at most `window`,
//  by messages_pkey), each kept when no newer message of its conversation
//  exists (one probe of messages_conversation, 0008), at most a page of
//  them: the scan stops at the page's last (bench/console_list.sh: 1.4 ms
//  at 200,000 messages, where grouping every message took 77 ms). The row whose provider is NULL is the window's own: how many
//  messages it held and its lowest id, from which the next page goes on
//  when this one is not full. $1: before (0: newest), $2: page size,
//  $3: window.
static const char s_conversations_sql[] =
    "WITH last AS (SELECT s.provider, s.channel, s.contact_addr, s.id AS last_id"
    " FROM (SELECT id, provider, channel, contact_addr FROM messages"
    " WHERE $1::int8 = 0 OR id < $1::int8 ORDER BY id DESC LIMIT $3::int4) s"
    " WHERE NOT EXISTS (SELECT 1 FROM messages n WHERE n.provider = s.provider"
    " AND n.channel = s.channel AND n.contact_addr = s.contact_addr AND n.id > s.id)"
    " ORDER BY s.id DESC LIMIT $2::int4),"
    " win AS (SELECT count (*) AS n, COALESCE (min (id), 0) AS lowest FROM (SELECT id"
    " FROM messages WHERE $1::int8 = 0 OR id < $1::int8 ORDER BY id DESC LIMIT $3::int4) w)"
    " SELECT l.provider, l.channel, l.contact_addr, l.last_id, m.direction, m.body, m.status,"
    " (extract (epoch FROM m.created_at) * 1000)::int8, COALESCE (c.profile_name, ''),"
    " COALESCE (c.opted_out, false)"
    " FROM last l JOIN messages m ON m.id = l.last_id"
    " LEFT JOIN contacts c ON c.provider = l.provider AND c.channel = l.channel"
    " AND c.address = l.contact_addr"
    " UNION ALL SELECT NULL, NULL, NULL, n, NULL, NULL, NULL, lowest, NULL, NULL FROM win"
    " ORDER BY 4 DESC";

//  One conversation's messages, newest first; an inbound one with its
//  event's payload and what a publish rule captured from it (0012), an
//  outbound one with its outbox row's state and its retries from here.
static const char s_messages_sql[] =
    "SELECT m.id, m.direction, m.message_type, m.body, m.status, m.error_code,"
    " COALESCE (m.provider_id, ''), (extract (epoch FROM m.created_at) * 1000)::int8,"
    " e.payload, COALESCE (o.state, ''), COALESCE (o.reason, ''), COALESCE (o.last_error, ''),"
    " COALESCE (e.event_uid, ''), COALESCE (k.captured, ''), COALESCE (k.rule, ''),"
    " COALESCE (o.retries, 0), COALESCE ((extract (epoch FROM o.retried_at) * 1000)::int8, 0)"
    " FROM messages m"
    " LEFT JOIN events e ON e.id = m.event_id AND m.direction = 'inbound'"
    " LEFT JOIN captures k ON k.event_id = m.event_id AND m.direction = 'inbound'"
    " LEFT JOIN outbox o ON o.id = m.outbox_id"
    " WHERE m.provider = $1 AND m.channel = $2 AND m.contact_addr = $3"
    " AND ($4::int8 = 0 OR m.id < $4::int8)"
    " ORDER BY m.id DESC LIMIT $5::int4";

//  Dead letters, newest first (outbox_trouble).
static const char s_trouble_sql[] =
    "SELECT id, kind, state, provider, channel, to_addr, body, attempts, last_error, reason,"
    " (extract (epoch FROM updated_at) * 1000)::int8, retries,"
    " COALESCE ((extract (epoch FROM retried_at) * 1000)::int8, 0)"
    " FROM outbox WHERE state IN ('failed', 'dead', 'not_sent')"
    " AND ($1::int8 = 0 OR id < $1::int8)"
    " ORDER BY id DESC LIMIT $2::int4";

//  Retry: a failed or dead row back to pending, and its message to queued;
//  the retry counted and timed on the row (0012), where no attempt writes.
static const char s_retry_sql[] =
    "WITH o AS ("
    " UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = now (),"
    " claim_token = NULL, retries = retries + 1, retried_at = now (),"
    " last_error = left ('retried from the console; was ' || state || ': ' || last_error, 2000),"
    " updated_at = now ()"
    " WHERE id = $1::int8 AND state IN ('failed', 'dead') RETURNING id),"
    " m AS ("
    " UPDATE messages SET status = 'queued', status_rank = sb_status_rank ('queued'),"
    " error_code = '', updated_at = now ()"
    " WHERE outbox_id IN (SELECT id FROM o) AND direction = 'outbound' RETURNING id)"
    " SELECT count(*) FROM o";

//  What a reply's policy and row need, the contact locked: its opt-out
//  mark and last inbound time (Unix ms, 0: none), the database's clock,
//  and the conversation's newest inbound message (its event, our address,
//  the account, its provider id).
static const char s_reply_state_sql[] =
    "WITH c AS (SELECT opted_out, last_inbound_at FROM contacts"
    " WHERE provider = $1 AND channel = $2 AND address = $3 FOR UPDATE),"
    " m AS (SELECT event_id, our_addr, account, COALESCE (provider_id, '') AS provider_id"
    " FROM messages WHERE provider = $1 AND channel = $2 AND contact_addr = $3"
    " AND direction = 'inbound' AND event_id IS NOT NULL ORDER BY id DESC LIMIT 1)"
    " SELECT COALESCE ((SELECT opted_out FROM c), false),"
    " COALESCE ((SELECT (extract (epoch FROM last_inbound_at) * 1000)::int8 FROM c), 0),"
    " (extract (epoch FROM now ()) * 1000)::int8, m.event_id, m.our_addr, m.account,"
    " m.provider_id"
    " FROM m";

//  Run a page's query: the fixed parameters, then before and the page
//  size. Its rows (caller PQclears), or NULL (logged).
static PGresult *
s_page_query (sb_store_t *self, const char *sql, const char *const *fixed, int nfixed,
              int64_t before, int limit, const char *what)
{
    if (sb_store_ensure (self) != 0 || nfixed > 3)
        return NULL;
    char b[24], l[16];
    snprintf (b, sizeof b, "%" PRId64, before);
    snprintf (l, sizeof l, "%d", s_page (limit));
    const char *values[5];
    for (int i = 0; i < nfixed; i++)
        values[i] = fixed[i];
    values[nfixed] = b;
    values[nfixed + 1] = l;
    return sb_store_exec (self, sql, nfixed + 2, values, PGRES_TUPLES_OK, what);
}

static json_int_t
s_int (const PGresult *r, int row, int col)
{
    int64_t v = 0;
    sb_store_parse_int64 (PQgetvalue (r, row, col), &v);
    return (json_int_t) v;
}

//  A text column as a JSON string (invalid UTF-8 replaced, never refused).
static json_t *
s_text (const PGresult *r, int row, int col)
{
    const char *v = PQgetvalue (r, row, col);
    json_t *s = json_string (v);
    if (!s) {
        char *clean = sb_store_utf8_dup (v, strlen (v));
        s = json_string (clean ? clean : "");
        free (clean);
    }
    return s ? s : json_string ("");
}

//  The first ncols columns of r as JSON objects (rows whose first column
//  is NULL left out), column c under names[c] (none when names[c] is NULL):
//  an integer where bit c of ints is set, a boolean where bit c of bools
//  is, else a string. The array, or NULL when out of memory (r is the
//  caller's).
static json_t *
s_rows (const PGresult *r, const char *const *names, int ncols, unsigned ints, unsigned bools)
{
    json_t *rows = json_array ();
    for (int i = 0; rows && i < PQntuples (r); i++) {
        if (PQgetisnull (r, i, 0))
            continue;
        json_t *o = json_object ();
        if (!o || json_array_append_new (rows, o)) {
            json_decref (rows);
            return NULL;
        }
        for (int c = 0; c < ncols; c++)
            if (names[c])
                json_object_set_new (o, names[c],
                                     ints & (1u << c) ? json_integer (s_int (r, i, c))
                                     : bools & (1u << c)
                                         ? json_boolean (*PQgetvalue (r, i, c) == 't')
                                         : s_text (r, i, c));
    }
    return rows;
}

json_t *
sb_store_console_conversations (sb_store_t *self, int64_t before, int limit, int window,
                                int64_t *next)
{
    *next = 0;
    if (sb_store_ensure (self) != 0)
        return NULL;
    limit = s_page (limit);
    window = window < limit ? limit : window;
    char b[24], l[16], w[16];
    snprintf (b, sizeof b, "%" PRId64, before);
    snprintf (l, sizeof l, "%d", limit);
    snprintf (w, sizeof w, "%d", window);
    const char *values[3] = {b, l, w};
    PGresult *r =
        sb_store_exec (self, s_conversations_sql, 3, values, PGRES_TUPLES_OK, "conversations");
    if (!r)
        return NULL;
    static const char *const names[] = {"provider",     "channel",  "address", "last_id",
                                        "direction",    "body",     "status",  "at_ms",
                                        "profile_name", "opted_out"};
    json_t *rows = s_rows (r, names, 10, 1u << 3 | 1u << 7, 1u << 9);
    //  The next page: below this one's last when it is full, else below
    //  the window when the window was full (older conversations may lie
    //  past it), else none.
    size_t n = rows ? json_array_size (rows) : 0;
    for (int i = 0; rows && i < PQntuples (r); i++)
        if (PQgetisnull (r, i, 0)) {
            if (n == (size_t) limit)
                *next =
                    json_integer_value (json_object_get (json_array_get (rows, n - 1), "last_id"));
            else if (s_int (r, i, 3) == window)
                *next = s_int (r, i, 7);
        }
    PQclear (r);
    return rows;
}

json_t *
sb_store_console_messages (sb_store_t *self, const char *provider, const char *channel,
                           const char *address, int64_t before, int limit,
                           sb_store_details_fn *details)
{
    const char *fixed[] = {provider, channel, address};
    PGresult *r = s_page_query (self, s_messages_sql, fixed, 3, before, limit, "messages");
    if (!r)
        return NULL;
    //  Column 8 (the payload) is not shown as it is: details () reads it.
    static const char *const names[] = {
        "id",          "direction", "type",        "body",         "status",       "error_code",
        "provider_id", "at_ms",     NULL,          "outbox_state", "reason",       "last_error",
        "event_uid",   "captured",  "captured_by", "retries",      "retried_at_ms"};
    json_t *rows = s_rows (r, names, 17, 1u << 0 | 1u << 7 | 1u << 15 | 1u << 16, 0);
    for (int i = 0; rows && i < PQntuples (r); i++) {
        json_t *o = json_array_get (rows, (size_t) i);
        if (details && !PQgetisnull (r, i, 8)) {
            size_t size = 0;
            unsigned char *payload =
                PQunescapeBytea ((const unsigned char *) PQgetvalue (r, i, 8), &size);
            json_t *d = payload ? details (payload, size) : NULL;
            PQfreemem (payload);
            if (d)
                json_object_set_new (o, "details", d);
        }
    }
    PQclear (r);
    return rows;
}

json_t *
sb_store_console_trouble (sb_store_t *self, int64_t before, int limit)
{
    PGresult *r = s_page_query (self, s_trouble_sql, NULL, 0, before, limit, "dead letters");
    if (!r)
        return NULL;
    static const char *const names[] = {"id",    "kind",    "state",        "provider",   "channel",
                                        "to",    "body",    "attempts",     "last_error", "reason",
                                        "at_ms", "retries", "retried_at_ms"};
    json_t *rows = s_rows (r, names, 13, 1u << 0 | 1u << 7 | 1u << 10 | 1u << 11 | 1u << 12, 0);
    PQclear (r);
    return rows;
}

int
sb_store_console_retry (sb_store_t *self, int64_t id)
{
    if (sb_store_ensure (self) != 0)
        return -1;
    char v[24];
    snprintf (v, sizeof v, "%" PRId64, id);
    const char *values[] = {v};
    PGresult *r = sb_store_exec (self, s_retry_sql, 1, values, PGRES_TUPLES_OK, "retry");
    if (!r)
        return -1;
    int64_t n = 0;
    sb_store_parse_int64 (PQgetvalue (r, 0, 0), &n);
    PQclear (r);
    if (n)
        sb_info (S_MODULE, "outbox row retried from the console outbox_id=%" PRId64, id);
    return n ? 1 : 0;
}

//  The channel's enum value from its name (sb_event_channel_name), or -1.
static int
s_channel (const char *name)
{
    for (int c = 0; c < 16; c++)
        if (!strcmp (sb_event_channel_name (c), name))
            return c;
    return -1;
}

static void
s_rollback (sb_store_t *self)
{
    if (sb_store_exec_ok (self, "ROLLBACK", "rollback") != 0)
        sb_debug (S_MODULE, "rollback failed; the next use reconnects");
}

//  Queue the reply row (pending or not_sent) with the rules' statement.
static int
s_reply_insert (sb_store_t *self, const PGresult *state, const char *provider, const char *channel,
                const char *address, const char *text, const sb_policy_t *p)
{
    bool meta = !strcmp (provider, "meta");
    sb_pgarray_table_t t;
    sb_store_outbox_table (&t);
    sb_pgarray_text (&t.cols[OB_KIND], "reply");
    sb_pgarray_text (&t.cols[OB_STATE], p->decision == SB_POLICY_SEND ? "pending" : "not_sent");
    sb_pgarray_text (&t.cols[OB_PROVIDER], provider);
    sb_pgarray_text (&t.cols[OB_CHANNEL], channel);
    sb_pgarray_text (&t.cols[OB_ACCOUNT], meta ? PQgetvalue (state, 0, 5) : "");
    sb_pgarray_text (&t.cols[OB_FROM], PQgetvalue (state, 0, 4));
    sb_pgarray_text (&t.cols[OB_TO], address);
    sb_pgarray_text (&t.cols[OB_BODY], text);
    sb_pgarray_text (&t.cols[OB_CONTEXT], "");
    sb_pgarray_text (&t.cols[OB_URL], "");
    sb_pgarray_int4 (&t.cols[OB_TIMEOUT], 0);
    sb_pgarray_text (&t.cols[OB_JSON], "");
    sb_pgarray_text (&t.cols[OB_REASON], p->reason);
    int64_t event_id = 0;
    sb_store_parse_int64 (PQgetvalue (state, 0, 3), &event_id);
    sb_pgarray_int8 (&t.cols[OB_EVENT_ID], event_id);
    sb_pgarray_text (&t.cols[OB_RULE], "console");
    sb_pgarray_text (&t.cols[OB_CONTACT], address);
    //  Its conversation, as the batch keys a rule's reply (sb_partition):
    //  the dispatcher holding that partition sends it, after the replies
    //  queued before it.
    uint32_t conv = sb_partition_hash (provider, channel, meta ? PQgetvalue (state, 0, 5) : "",
                                       PQgetvalue (state, 0, 4), address);
    sb_pgarray_int8 (&t.cols[OB_CONV], (int64_t) conv);
    sb_pgarray_int4 (&t.cols[OB_PART], sb_partition_of (conv));
    int rc = -1;
    if (sb_store_send_table (self, "sb_outbox", &t) == 0 && sb_store_flush (self) == 0) {
        PGresult *r = sb_store_take (self, PGRES_COMMAND_OK, "console reply");
        rc = r ? 0 : -1;
        PQclear (r);
    }
    sb_pgarray_table_free (&t);
    return rc;
}

int
sb_store_console_reply (sb_store_t *self, const char *provider, const char *channel,
                        const char *address, const char *text, int64_t window_ms,
                        sb_store_reply_t *out)
{
    memset (out, 0, sizeof *out);
    out->reason = "";
    int channel_value = s_channel (channel);
    if (channel_value < 0 || !text || !*text || strlen (text) > SB_STORE_CONSOLE_TEXT_MAX) {
        out->reason = channel_value < 0 ? "unknown_channel" : "bad_text";
        return 1;
    }
    if (sb_store_ready (self) != 0 || sb_store_exec_ok (self, "BEGIN", "begin") != 0)
        return -1;
    const char *values[] = {provider, channel, address};
    PGresult *state =
        sb_store_exec (self, s_reply_state_sql, 3, values, PGRES_TUPLES_OK, "reply state");
    if (!state) {
        s_rollback (self);
        return -1;
    }
    if (PQntuples (state) != 1) {
        PQclear (state);
        s_rollback (self);
        out->reason = "no_conversation";
        return 1;
    }
    int64_t last_inbound_ms = 0, now_ms = 0;
    sb_store_parse_int64 (PQgetvalue (state, 0, 1), &last_inbound_ms);
    sb_store_parse_int64 (PQgetvalue (state, 0, 2), &now_ms);
    sb_policy_input_t in = {.channel = channel_value,
                            .keyword = SB_POLICY_KEYWORD_NONE,
                            .ask = SB_POLICY_ASK_REPLY,
                            .text = text,
                            .opted_out = *PQgetvalue (state, 0, 0) == 't',
                            .last_inbound_ms = last_inbound_ms,
                            .now_ms = now_ms,
                            .window_ms = window_ms};
    sb_policy_t p = sb_policy_decide (&in);
    int rc = s_reply_insert (self, state, provider, channel, address, text, &p);
    PQclear (state);
    if (rc != 0 || sb_store_exec_ok (self, "COMMIT", "commit") != 0) {
        s_rollback (self);
        return -1;
    }
    out->queued = p.decision == SB_POLICY_SEND;
    out->reason = p.reason;
    sb_info (S_MODULE, "console reply %s provider=%s channel=%s reason=%s",
             out->queued ? "queued" : "not sent", provider, channel, out->reason);
    return 0;
}

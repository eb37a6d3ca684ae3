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
    Where it lives: this file builds the batch's rows, runs the two round
    trips and decides; the statements (their SQL and parameter types) are
    in sb_store_write_sql.c; contact identities (links, merges, moves,
    identity rows) in sb_store_identity.c; the effects of Meta's other
    fields (echoes, marketing preferences) in sb_store_meta.c; the batch
    and what these files share in sb_store_batch.h.
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
    reason, or none. Status events never run rules. A match of a rule with
    publish: true is also recorded in captures (what it captured: the part
    a regex found, else the text it matched), a statement sent only when
    the batch has one (0012_console_codes_retries.sql).

    Statuses. An outbound message's status moves only to a higher rank
    (SQL function sb_status_rank, 0001_init.sql): queued 1 < sent 2 <
    delivered 3 < read 4; failed, undelivered and canceled are terminal
    (10) and win over anything else; unknown statuses (0) never apply. The
    highest status of a batch wins whatever its order. A status for a
    message we do not know yet is kept in events only; sb_store_record
    applies it when the send that produced that provider id is recorded.

    Identities. A contact is found by any identifier it was seen with
    (its phone number, its BSUIDs: 0005_contact_identities.sql); a change
    of number or id moves it, and a move never loses an opt-out, a window
    or a marketing preference: see sb_store_identity.c.

    Limits. seq is stored as bigint.
*/
#include "sb_store_batch.h"
#include "sb_policy.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "sb_text.h"
#include "sb_time.h"

#define S_MODULE "store"

static void
s_batch_free (sb_store_batch_t *b)
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
    free (b->outbox_event);
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
    sb_pgarray_table_free (&b->captures_t);
    for (size_t i = 0; i < b->nfetched; i++) {
        PQfreemem (b->fetched[i].body.data);
        free (b->fetched[i].content_type);
    }
    free (b->fetched);
}


static int
s_contact_cmp3 (const char *p, const char *c, const char *a, const sb_store_contact_t *y)
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
    const sb_store_contact_t *x = a;
    return s_contact_cmp3 (x->provider, x->channel, x->key, b);
}

size_t
sb_store_contact_find (const sb_store_batch_t *b, const char *p, const char *c, const char *a)
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
s_batch_body (const sb_store_batch_t *b, size_t i, const char **content_type)
{
    const sb_store_item_t *item = &b->items[i];
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
s_batch_bodies_to_fetch (sb_store_batch_t *b)
{
    const uint8_t *last = NULL;
    for (size_t i = 0; i < b->count; i++) {
        const sb_store_item_t *item = &b->items[i];
        const char *type;
        if ((b->skip && b->skip[i]) || !s_inbound (b->events[i]) || !item->has_body
            || s_batch_body (b, i, &type))
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
s_batch_body_key (sb_store_batch_t *b, size_t i, size_t *last_body)
{
    const sb_event_t *e = b->events[i];
    sb_store_item_t *item = &b->items[i];
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

//  Build the events rows, the contact keys and the cursors.
//  The cursor follows the latest epoch seen for each ingress: its highest
//  seq there, whether the event is stored or skipped.
static void
s_batch_cursor (sb_store_batch_t *b, const sb_event_t *e)
{
    const char *ingress = s_str (e->ingress_id);
    const char *epoch = s_str (e->epoch);
    size_t k;
    for (k = 0; k < b->ncursors; k++)
        if (strcmp (b->cursors[k].ingress_id, ingress) == 0)
            break;
    sb_store_batch_cursor_t *cur = &b->cursors[k];
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

static int
s_batch_prepare (sb_store_batch_t *b)
{
    b->items = calloc (b->count, sizeof (*b->items));
    //  Per event: a sender and its user id, a change's new number and new
    //  BSUID, and a contact reborn for each of the (at most two)
    //  identifiers a change takes.
    b->contacts = calloc (6 * b->count, sizeof (*b->contacts));
    b->outbox_contact = calloc (b->count, sizeof (*b->outbox_contact));
    b->outbox_event = calloc (b->count, sizeof (*b->outbox_event));
    b->forgot = calloc (2 * b->count, sizeof (*b->forgot));
    b->cursors = calloc (b->count, sizeof (*b->cursors));
    if (!b->items || !b->contacts || !b->forgot || !b->cursors || !b->outbox_contact
        || !b->outbox_event)
        return -1;
    sb_pgarray_table_t *t = &b->events_t;
    size_t last_body = SIZE_MAX;
    for (size_t i = 0; i < b->count; i++) {
        const sb_event_t *e = b->events[i];
        b->items[i].contact = SIZE_MAX;
        b->items[i].user = SIZE_MAX;
        s_batch_cursor (b, e);
        if (b->skip && b->skip[i]) {
            //  Another dispatcher's partition: not stored here, but a body
            //  its request shares with events that may be is kept.
            b->skipped++;
            if (e->raw_body.len && e->request_events != 1)
                s_batch_body_key (b, i, &last_body);
            continue;
        }
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
            sb_store_identity_entry (b, e, b->items[i].address);
        }
        if (s_inbound (e) && sb_store_identity_user_id (b, e, &b->items[i]) != 0)
            return -1;
        //  The contacts a change moves to: the C side must know their state
        //  (opt-out, window) before it merges them.
        if (s_inbound (e) && sb_store_identity_change (e)) {
            const char *to[2] = {e->system ? e->system->new_wa_id : NULL, e->new_user_id};
            for (size_t n = 0; n < 2; n++)
                if (to[n] && *to[n] && strcmp (to[n], e->from) != 0
                    && sb_store_identity_key (b, e, to[n]) != 0)
                    return -1;
        }
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
                sb_store_contact_find (b, sb_event_provider_name (e->provider),
                                       sb_event_channel_name (e->channel), b->items[i].address);
        if (b->items[i].user_id)
            b->items[i].user =
                sb_store_contact_find (b, sb_event_provider_name (e->provider),
                                       sb_event_channel_name (e->channel), b->items[i].user_id);
    }
    for (size_t k = 0; k < b->ncontacts; k++)
        b->contacts[k].rep = k;
    for (size_t k = 0; k < b->ncursors; k++) {
        s_array_key (&b->cursor_t.cols[CU_INGRESS], b->cursors[k].ingress_id);
        s_array_key (&b->cursor_t.cols[CU_EPOCH], b->cursors[k].epoch);
        sb_pgarray_int8 (&b->cursor_t.cols[CU_SEQ], (int64_t) b->cursors[k].seq);
        sb_pgarray_text (&b->cursor_t.cols[CU_INSTANCE], b->instance);
        sb_pgarray_text (&b->cursor_t.cols[CU_PARTS], b->parts);
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
//  fresh. Rows come back in insertion order in practice, which is journal
//  order (sb_store_write_sql.c), the batch's own when it holds one
//  ingress's events; a row out of batch order is looked up from the start,
//  and one whose ingress id or epoch we had to re-encode is matched by seq
//  alone.
static int
s_batch_mark_fresh (sb_store_batch_t *b, const PGresult *r, size_t *stored)
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
s_batch_load_contacts (sb_store_batch_t *b, const PGresult *r)
{
    int rows = PQntuples (r);
    for (int row = 0; row < rows; row++) {
        size_t k = sb_store_contact_find (b, PQgetvalue (r, row, 0), PQgetvalue (r, row, 1),
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
    return sb_store_identity_group (b);
}

//  The event as a forward's JSON, with its request's raw body as each
//  event carried it before requests shared one (a bot may re-read it).
//  Caller owns the return value; NULL on failure.
char *
sb_store_forward_json (const sb_store_batch_t *b, size_t i)
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
s_batch_load_bodies (sb_store_batch_t *b, const PGresult *r)
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
        sb_store_body_t *got = &b->fetched[b->nfetched++];
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

void
sb_store_capture (sb_store_batch_t *b, const sb_store_item_t *item, const sb_store_policy_t *policy,
                  sb_rule_decision_t *d)
{
    size_t i = (size_t) (item - b->items);
    sb_pgarray_table_t *t = &b->captures_t;
    sb_pgarray_int8 (&t->cols[CA_EVENT_ID], item->id);
    sb_pgarray_text (&t->cols[CA_RULE], d->rule);
    sb_pgarray_text (&t->cols[CA_CAPTURED], d->captured);
    if (policy->publish)
        policy->publish[i] = true;
    if (policy->captured) {
        free (policy->captured[i]);
        policy->captured[i] = d->captured;
        d->captured = NULL;
    }
}

//  Decide on a new inbound event from contact c: ask the rules (not about
//  an opt-out keyword: the policy consumes it), apply the reply policy,
//  keep the contact's opt-out mark as it leaves it, and queue what it
//  decides.
static int
s_batch_decide (sb_store_batch_t *b, const sb_event_t *e, const sb_store_item_t *item,
                sb_store_contact_t *c, const sb_store_policy_t *policy, int64_t now_ms,
                int64_t window_ms, sb_store_stats_t *stats)
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
        if (d.publish)
            sb_store_capture (b, item, policy, &d);
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
    if (d.action == SB_RULE_FORWARD
        && !(json = sb_store_forward_json (b, (size_t) (item - b->items)))) {
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
    b->outbox_event[b->noutbox] = (size_t) (item - b->items);
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

//  The effects of the batch's new events, in batch order.
static int
s_batch_effects (sb_store_batch_t *b, const sb_store_policy_t *policy, int64_t now_ms,
                 int64_t window_ms, sb_store_stats_t *stats)
{
    for (size_t i = 0; i < b->count; i++) {
        const sb_event_t *e = b->events[i];
        sb_store_item_t *item = &b->items[i];
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
        if (sb_store_meta_field (e->kind, e->provider)) {
            if (sb_store_meta_effect (b, e, item, policy, stats) != 0)
                return -1;
            continue;
        }
        if (item->contact == SIZE_MAX)
            continue;
        item->contact = sb_store_identity_current (b, item->contact, i);
        item->user = sb_store_identity_current (b, item->user, i);
        sb_store_contact_t *c = sb_store_identity_link (b, item);
        if (!c)
            return -1;
        if (sb_store_identity_change (e)) {
            if (sb_store_identity_move (b, item, i, (size_t) (c - b->contacts)) != 0)
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
        const sb_store_item_t *item = &b->items[i];
        if (!item->fresh || item->contact == SIZE_MAX || sb_store_identity_change (e)
            || (e->kind != SB_KIND_MESSAGE && e->kind != SB_KIND_GATHER))
            continue;
        const sb_store_contact_t *c = &b->contacts[sb_store_identity_find (b, item->contact)];
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
        const sb_store_contact_t *c = &b->contacts[k];
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
    //  the batch leaves it, as its inbound message does; the row's
    //  conversation (sb_partition) is that address with the business side.
    for (size_t n = 0; n < b->noutbox; n++) {
        size_t k = b->outbox_contact[n];
        const char *contact =
            k == SIZE_MAX ? "" : b->contacts[sb_store_identity_find (b, k)].address;
        s_array_key (&b->outbox_t.cols[OB_CONTACT], contact);
        const sb_event_t *e = b->events[b->outbox_event[n]];
        bool meta = e->provider == SB_PROVIDER_META;
        uint32_t conv = sb_partition_hash (sb_event_provider_name (e->provider),
                                           sb_event_channel_name (e->channel),
                                           meta ? e->account : "", e->to, contact);
        sb_pgarray_int8 (&b->outbox_t.cols[OB_CONV], (int64_t) conv);
        sb_pgarray_int4 (&b->outbox_t.cols[OB_PART], sb_partition_of (conv));
    }
    sb_store_identity_rows (b);
    sb_store_meta_prefs (b);
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
s_write_round1 (sb_store_t *self, sb_store_batch_t *b, sb_store_stats_t *stats)
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
    stats->skipped = b->skipped;
    stats->duplicates = b->count - b->skipped - stats->stored;
    return rc;
}

//  Round trip 2: the statements the new events imply (those with rows),
//  the cursor, COMMIT, and the pipeline's end. *synced once the end is sent.
static int
s_write_round2 (sb_store_t *self, sb_store_batch_t *b, sb_store_stats_t *stats, bool *synced)
{
    //  Moves first (the contacts' rows as the batch left them), echoes
    //  before statuses, so a status of the batch reaches its echo.
    sb_pgarray_table_t *tables[] = {&b->moves_t,  &b->contacts_t, &b->identities_t, &b->messages_t,
                                    &b->echoes_t, &b->outbox_t,   &b->status_t,     &b->cursor_t,
                                    &b->prefs_t,  &b->captures_t};
    static const char *const names[] = {"sb_moves",  "sb_contacts", "sb_identities", "sb_messages",
                                        "sb_echoes", "sb_outbox",   "sb_status",     "sb_cursor",
                                        "sb_prefs",  "sb_captures"};
    static const char *const what[] = {
        "move contacts",   "upsert contacts", "upsert identities",
        "insert messages", "insert echoes",   "insert outbox",
        "apply statuses",  "upsert cursor",   "record marketing preferences",
        "record captures"};
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

//  The key of the cursor claim row this store writes now: instance.N
//  (claim_gen) into key (S_CLAIM_KEY_SIZE); key.
#define S_CLAIM_KEY_SIZE (SB_STORE_INSTANCE_SIZE + 12)

static const char *
s_claim_key (const sb_store_t *self, char *key)
{
    snprintf (key, S_CLAIM_KEY_SIZE, "%s.%u", self->instance, self->claim_gen);
    return key;
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

    char key[S_CLAIM_KEY_SIZE];
    sb_store_batch_t b = {.events = events,
                          .count = count,
                          .forwards = policy && policy->rules,
                          .skip = policy ? policy->skip : NULL,
                          .instance = key};
    for (size_t p = 0; p < SB_PARTITIONS; p++)
        b.parts[p] = !policy || !policy->parts || policy->parts[p] ? '1' : '0';
    if (strcmp (b.parts, self->claim_parts) != 0) {
        //  Another set of partitions: a claim row of its own; the last
        //  one's stays true for the partitions given up.
        if (self->claim_parts[0])
            self->claim_gen++;
        memcpy (self->claim_parts, b.parts, sizeof self->claim_parts);
    }
    s_claim_key (self, key);
    sb_store_batch_tables (&b);
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
    for (size_t i = 0; rc != 0 && policy && policy->captured && i < count; i++) {
        free (policy->captured[i]);
        policy->captured[i] = NULL;
    }
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

//  The cover of parts ($3: '0'/'1' per partition) in ingress_id's journal
//  ($1), in epoch $2 ("" the newest a cursor names): for each partition
//  the highest last_seq of the claims that name it (0: none), and the
//  least of those.
static const char s_cover_sql[] =
    "WITH ep AS (SELECT COALESCE (NULLIF ($2, ''), (SELECT epoch FROM ingest_cursors"
    " WHERE ingress_id = $1 ORDER BY updated_at DESC, last_seq DESC LIMIT 1), '') AS epoch)"
    " SELECT ep.epoch, COALESCE (min (c.seq), 0) FROM ep LEFT JOIN LATERAL ("
    " SELECT COALESCE ((SELECT max (r.last_seq) FROM ingest_cursors r"
    " WHERE r.ingress_id = $1 AND r.epoch = ep.epoch AND get_bit (r.parts, p) = 1), 0) AS seq"
    " FROM generate_series (0, 255) p WHERE substr ($3, p + 1, 1) = '1') c ON true"
    " GROUP BY ep.epoch";

int
sb_store_cover (sb_store_t *self, const char *ingress_id, const char *epoch, const bool *parts,
                uint64_t *seq, char *epoch_out, size_t epoch_size)
{
    *seq = 0;
    if (epoch_out && epoch_size)
        epoch_out[0] = 0;
    if (sb_store_ensure (self) != 0)
        return -1;
    char *id = sb_store_utf8_dup (ingress_id, SB_STORE_KEY_MAX);
    char *ep = sb_store_utf8_dup (epoch ? epoch : "", SB_STORE_KEY_MAX);
    char mask[SB_PARTITIONS + 1];
    for (size_t p = 0; p < SB_PARTITIONS; p++)
        mask[p] = !parts || parts[p] ? '1' : '0';
    mask[SB_PARTITIONS] = 0;
    if (!id || !ep) {
        free (id);
        free (ep);
        return -1;
    }
    const char *params[] = {id, ep, mask};
    PGresult *r = sb_store_exec (self, s_cover_sql, 3, params, PGRES_TUPLES_OK, "read cursor");
    free (id);
    free (ep);
    if (!r)
        return -1;
    int rc = -1;
    int64_t v;
    if (PQntuples (r) == 1 && sb_store_parse_int64 (PQgetvalue (r, 0, 1), &v) && v >= 0) {
        *seq = (uint64_t) v;
        if (epoch_out && epoch_size)
            snprintf (epoch_out, epoch_size, "%s", PQgetvalue (r, 0, 0));
        rc = 0;
    }
    PQclear (r);
    return rc;
}

//  The claims of ingress_id ($1) that say nothing another does not, not
//  written for an hour and not this store's current one ($2; its rows of
//  sets of partitions it held before may go): of the newest epoch,
//  every partition they name is named by another claim of that epoch
//  higher in (last_seq, instance) order, so the highest claim naming a
//  partition always stays and no cover changes, even when several go at
//  once; of an older epoch, a week old.
static const char s_prune_sql[] =
    "WITH newest AS (SELECT epoch FROM ingest_cursors WHERE ingress_id = $1"
    " ORDER BY updated_at DESC, last_seq DESC LIMIT 1)"
    " DELETE FROM ingest_cursors c WHERE c.ingress_id = $1 AND c.instance <> $2"
    " AND c.updated_at < now () - interval '1 hour' AND ("
    " (c.epoch <> (SELECT epoch FROM newest) AND c.updated_at < now () - interval '7 days')"
    " OR (c.epoch = (SELECT epoch FROM newest) AND NOT EXISTS ("
    " SELECT 1 FROM generate_series (0, 255) p WHERE get_bit (c.parts, p) = 1 AND NOT EXISTS ("
    " SELECT 1 FROM ingest_cursors o WHERE o.ingress_id = c.ingress_id"
    " AND o.instance <> c.instance AND o.epoch = c.epoch AND get_bit (o.parts, p) = 1"
    " AND (o.last_seq, o.instance) > (c.last_seq, c.instance)))))";

int
sb_store_cursors_prune (sb_store_t *self, const char *ingress_id)
{
    if (sb_store_ensure (self) != 0)
        return -1;
    char *id = sb_store_utf8_dup (ingress_id, SB_STORE_KEY_MAX);
    if (!id)
        return -1;
    char key[S_CLAIM_KEY_SIZE];
    const char *params[] = {id, s_claim_key (self, key)};
    PGresult *r =
        sb_store_exec (self, s_prune_sql, 2, params, PGRES_COMMAND_OK, "prune ingest cursors");
    free (id);
    if (!r)
        return -1;
    int64_t n = 0;
    if (!sb_store_parse_int64 (PQcmdTuples (r), &n))
        n = 0;
    PQclear (r);
    return (int) n;
}

int
sb_store_cursor (sb_store_t *self, const char *ingress_id, uint64_t *seq, char *epoch,
                 size_t epoch_size)
{
    return sb_store_cover (self, ingress_id, NULL, NULL, seq, epoch, epoch_size);
}

//  As sb_store_write keys a reply's conversation (sb_partition_hash), from
//  what the event itself says: our number and the contact's address as
//  the event names it (statuses and echoes are ours to them).
int
sb_store_event_partition (const sb_event_t *e)
{
    bool ours = e->kind == SB_KIND_STATUS || e->kind == SB_KIND_ECHO;
    uint32_t conv =
        sb_partition_hash (sb_event_provider_name (e->provider), sb_event_channel_name (e->channel),
                           e->provider == SB_PROVIDER_META ? e->account : "",
                           ours ? e->from : e->to, ours ? e->to : e->from);
    return sb_partition_of (conv);
}

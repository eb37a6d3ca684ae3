/*  sb_store_outbox: the store's side of the outbox (see sb_store.h):
    claiming due rows for the sender, recording the sends' results, and
    putting back rows a crash or a lost answer left "sending".

    Send results. sb_store_settle records a turn's results and claims due
    rows in one transaction and one round trip. A result applies only to a
    row still "sending" (recording the same results twice is harmless).
    One result never costs another its record: a provider id another
    message already holds stays on the outbox row only, noted in
    last_error (the row is sent; that id's statuses go to the first
    message); an id that is over-long, not UTF-8 or holds control
    characters is not kept (said in last_error) rather than cut or mangled
    into someone else's; an unknown outcome is recorded as FINAL. Any other
    record the database refuses for its data (SQLSTATE classes 22, 23, 54:
    s_data_error) is taken out of the transaction, which is tried again
    without it; the refused one runs alone and, refused again, is recorded
    on its outbox row alone with the database's reason
    (s_record_refused_sql). Any other failure (a deadlock, a lock or
    statement timeout, a lost connection) is not the record's: the whole
    turn fails, and the caller tries it again, intact, after its backoff.
    Repeated lines go through sb_log_every.

    Bots' answers. A forward's SENT result carries the bot's text, which
    becomes a reply due now on the same row, unless the reply policy
    (sb_policy, the one the batch write applies to the rules' replies)
    says not_sent: its contact opted out meanwhile, the WhatsApp window
    closed, a voice channel, an empty answer. The policy runs in C on the
    row's contact state, read in one round trip just before the settle's
    (s_bot_state_sql), with the database's clock as now.

    DESIGN (claim tokens). A store has a random instance id; each
    connection a token, the instance id and a random part new on every
    connect (sb_store_conn.c). A claim marks its rows with the token of the
    connection it ran on (outbox.claim_token, 0004) and hands it to the
    sender with each item, which copies it into the result. A result
    applies only while its row is still "sending" with that token, so one
    that runs late (after the row was recorded again on another connection
    and claimed once more) touches nothing. A dropped connection's token is
    kept (SB_STORE_DROPPED_MAX, oldest forgotten) and sb_store_reclaim puts
    back only rows of those tokens that the caller does not hold: never the
    live connection's rows, never another process's, and a reclaim that
    runs late only touches rows nobody holds. Rows another instance left
    "sending" (a dead or stopped dispatcher, or this one's predecessor)
    are put back only by the holder of their partition, in the lease tick
    that finds it holds them (sb_store_lease.c): never a live holder's.
    A row claimed by a late statement of a connection dropped before a
    store's last reclaim stays "sending" until the next reclaim (after the
    next failed settle), or until another instance takes its partition.

    DESIGN (several dispatchers). Every row has its conversation's hash
    and partition (conv, part: sb_partition, 0010). A claim takes only
    rows of partitions this instance holds with a running lease, and only
    a conversation's first open row; every result is fenced by its
    partition's holder (S_FENCE). See sb_store_lease.c.
*/
#include "sb_store_internal.h"
#include "sb_policy.h"
#include "sb_utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MODULE "store"

//  Longest text kept in outbox.last_error.
#define S_ERROR_MAX 1000

//  ---------------------------------------------------------------------
//  The outbox statements (text parameters), prepared once per connection.

//  Run before the claim, in its transaction: the claim wants the due rows
//  in outbox_claim's order, and only the first $1 of them. The planner
//  may walk that index to the LIMIT or sort every due row first; it
//  chooses by its statistics of outbox, which lag most when it matters: a
//  backlog piling up within the minute autovacuum takes to look again.
//  On the statistics of an empty outbox, 50,000 due rows took 3.9 s a
//  claim sorted, 1.2 ms walked (and a backlog only grew). Without sorts
//  the walk is the plan, whatever the statistics say.
#define S_CLAIM_PLAN "SET LOCAL enable_sort = off"

//  Claim due rows ($1 at most): pending and due, oldest due first, marked
//  sending with this connection's claim token ($2). Only rows of
//  partitions whose lease names this store instance (the token's head)
//  and still runs, and those partition rows are locked (FOR SHARE) so a
//  take-over waits for the claim (sb_store_lease.c); only the first open
//  row of its conversation (none earlier pending, retrying or sending),
//  so a contact's replies go out one at a time, in order. SKIP LOCKED:
//  rows another transaction holds are left to it. The instance is a
//  sub-select, so the planner does not take it for rare: a new instance
//  is in no statistics yet, and as a constant (the connection plans with
//  plan_cache_mode=force_custom_plan) it made dispatcher_partitions look
//  empty for it.
static const char s_claim_sql[] =
    "UPDATE outbox o SET state = 'sending', claim_token = $2, updated_at = now ()"
    " FROM (SELECT x.id FROM outbox x JOIN dispatcher_partitions p ON p.part = x.part"
    " WHERE x.state = 'pending' AND x.next_attempt_at <= now ()"
    " AND p.instance = (SELECT split_part ($2, '.', 1)) AND p.lease_until > now ()"
    " AND NOT EXISTS (SELECT 1 FROM outbox y WHERE y.conv = x.conv AND y.id < x.id"
    " AND y.state IN ('pending', 'sending'))"
    " ORDER BY x.next_attempt_at, x.id LIMIT $1 FOR UPDATE OF x SKIP LOCKED"
    " FOR SHARE OF p SKIP LOCKED) d"
    " WHERE o.id = d.id"
    " RETURNING o.id, o.kind, o.provider, o.channel, o.account, o.from_addr, o.to_addr,"
    " o.body, o.context_id, o.forward_url, o.forward_timeout_ms, o.event_json, o.attempts,"
    " o.claim_token";

//  A send result's fence, inside each statement below: the row's partition
//  still names the instance that claimed it (the head of its token), so a
//  holder that lost the partition records nothing there (its row was put
//  back by the new holder, or is about to be).
#define S_FENCE                                                                                    \
    " AND EXISTS (SELECT 1 FROM dispatcher_partitions p WHERE p.part = outbox.part"                \
    " AND p.instance = split_part (outbox.claim_token, '.', 1))"

//  The send results below apply only to a row still "sending" under the
//  claim that produced the result: its claim token ($4, $4, $8, $5, $6;
//  "" for a row claimed before 0004_claim_token.sql), so a result that
//  runs late never touches a row claimed again since.

//  SENT for a reply: the provider's id on the outbox row and on the
//  outbound message, with the best status already received for that id;
//  $3 is the result's note for last_error. An id another message already
//  holds (a provider, or a mock, that repeats ids) stays on the outbox row
//  only, noted in last_error: the message is sent all the same, and that
//  id's statuses keep going to the message that had it first. The echo of
//  this very send, stored before its answer, is no such duplicate: the
//  0006 trigger makes that row ours (nothing noted, nothing returned).
static const char s_record_sent_sql[] =
    "WITH dup AS ("
    " SELECT m.id, m.origin = 'echo' AND m.outbox_id IS NULL AS echo"
    " FROM messages m JOIN outbox x ON m.provider = x.provider"
    " WHERE x.id = $1 AND m.provider_id = $2 AND m.outbox_id IS DISTINCT FROM x.id LIMIT 1),"
    " o AS ("
    " UPDATE outbox SET state = 'sent', provider_id = NULLIF ($2, ''), attempts = attempts + 1,"
    " last_error = CASE WHEN dup.id IS NULL OR dup.echo THEN $3 ELSE ltrim ($3 || ' duplicate "
    "provider id:"
    " message ' || dup.id || ' has it') END,"
    " updated_at = now ()"
    " FROM (SELECT 1) one LEFT JOIN dup ON true"
    " WHERE outbox.id = $1 AND outbox.state = 'sending'"
    " AND outbox.claim_token IS NOT DISTINCT FROM NULLIF ($4::text, '')" S_FENCE
    " RETURNING outbox.id, outbox.provider, dup.id AS dup_id, dup.echo),"
    " best AS ("
    " SELECT e.status, e.error_code, sb_status_rank (e.status) AS rank"
    " FROM events e JOIN o ON e.provider = o.provider"
    " WHERE e.kind = 'status' AND e.provider_id = $2 AND e.provider_id <> ''"
    " AND o.dup_id IS NULL"
    " ORDER BY 3 DESC, e.id LIMIT 1),"
    " msg AS ("
    " UPDATE messages m SET provider_id = CASE WHEN o.dup_id IS NULL THEN NULLIF ($2, '') END,"
    " status = CASE WHEN best.rank > m.status_rank THEN best.status ELSE m.status END,"
    " status_rank = GREATEST (m.status_rank, COALESCE (best.rank, 0)),"
    " error_code = CASE WHEN best.rank > m.status_rank AND best.error_code <> ''"
    " THEN best.error_code ELSE m.error_code END,"
    " updated_at = now ()"
    " FROM o LEFT JOIN best ON true WHERE m.outbox_id = o.id RETURNING m.id)"
    " SELECT id, CASE WHEN echo THEN NULL ELSE dup_id END FROM o";

//  SENT for many replies at once: s_record_sent_sql for each row of the
//  arrays ($1 ids, $2 provider ids, $3 notes, $4 claim tokens), in one
//  statement, so a turn is planned once, not once a reply (each plan cost
//  0.5 ms, half the settle connection's time at 1,000 replies/s:
//  bench/dispatcher with BENCH_PGSS=1). Every look-up is a LATERAL
//  subquery keyed by one row's values, as in the statement for one row:
//  joined instead, a new database's statistics (no ANALYZE yet) made the
//  planner scan every message of the provider for each row (140 ms a
//  turn). Two rows with one provider id (a mock repeating ids) would
//  break messages' unique key here: the later ones go one statement each
//  (s_sent_mark). Should the database refuse it all the same (a data
//  error), the turn records its rows one statement each, which finds the
//  row at fault.
static const char s_record_sent_many_sql[] =
    "WITH r AS MATERIALIZED ("
    " SELECT r.id, r.pid, r.note, r.token, dup.id AS dup_id, dup.echo"
    " FROM unnest ($1::int8[], $2::text[], $3::text[], $4::text[]) AS r (id, pid, note, token)"
    " LEFT JOIN LATERAL ("
    " SELECT m.id, m.origin = 'echo' AND m.outbox_id IS NULL AS echo"
    " FROM outbox x JOIN messages m ON m.provider = x.provider"
    " WHERE x.id = r.id AND m.provider_id = r.pid AND m.outbox_id IS DISTINCT FROM x.id"
    " LIMIT 1) dup ON true),"
    " o AS ("
    " UPDATE outbox SET state = 'sent', provider_id = NULLIF (r.pid, ''), attempts = attempts + 1,"
    " last_error = CASE WHEN r.dup_id IS NULL OR r.echo THEN r.note ELSE ltrim (r.note || "
    "' duplicate provider id: message ' || r.dup_id || ' has it') END,"
    " updated_at = now ()"
    " FROM r WHERE outbox.id = r.id AND outbox.state = 'sending'"
    " AND outbox.claim_token IS NOT DISTINCT FROM NULLIF (r.token, '')" S_FENCE
    " RETURNING outbox.id, outbox.provider, r.pid, r.dup_id, r.echo),"
    " msg AS ("
    " UPDATE messages m SET provider_id = CASE WHEN o.dup_id IS NULL THEN NULLIF (o.pid, '') END,"
    " status = CASE WHEN best.rank > m.status_rank THEN best.status ELSE m.status END,"
    " status_rank = GREATEST (m.status_rank, COALESCE (best.rank, 0)),"
    " error_code = CASE WHEN best.rank > m.status_rank AND best.error_code <> ''"
    " THEN best.error_code ELSE m.error_code END,"
    " updated_at = now ()"
    " FROM o LEFT JOIN LATERAL ("
    " SELECT e.status, e.error_code, sb_status_rank (e.status) AS rank FROM events e"
    " WHERE e.provider = o.provider AND e.kind = 'status' AND e.provider_id = o.pid"
    " AND e.provider_id <> '' AND o.dup_id IS NULL"
    " ORDER BY 3 DESC, e.id LIMIT 1) best ON true"
    " WHERE m.outbox_id = o.id RETURNING m.id)"
    " SELECT id, CASE WHEN echo THEN NULL ELSE dup_id END FROM o";

//  SENT for a forward: the bot's text becomes a reply due now, or is
//  recorded not_sent with the policy's reason ($3: sb_policy, decided in C
//  from s_bot_state_sql's answer).
static const char s_record_bot_sql[] =
    "WITH o AS ("
    " UPDATE outbox SET kind = CASE WHEN $2 = '' THEN kind ELSE 'reply' END, body = $2,"
    " state = CASE WHEN $3::text = '' THEN 'pending' ELSE 'not_sent' END, reason = $3,"
    " attempts = 0, next_attempt_at = now (), last_error = '', updated_at = now ()"
    " WHERE id = $1 AND state = 'sending'"
    " AND claim_token IS NOT DISTINCT FROM NULLIF ($4::text, '')" S_FENCE
    " RETURNING id, state, reason, provider, channel, account, from_addr, to_addr, body,"
    " event_id),"
    " msg AS ("
    " INSERT INTO messages (direction, provider, channel, contact_addr, our_addr, account,"
    " message_type, body, status, status_rank, event_id, outbox_id)"
    " SELECT 'outbound', provider, channel, to_addr, from_addr, account, 'text', body, 'queued',"
    " sb_status_rank ('queued'), event_id, id FROM o WHERE state = 'pending' RETURNING id)"
    " SELECT id, state, reason FROM o";

//  What the policy needs to decide on bots' answers ($1: their outbox
//  ids): each row's channel, its contact's opt-out mark and last inbound
//  time (Unix ms, 0: none), and the database's clock (Unix ms).
static const char s_bot_state_sql[] =
    "SELECT o.id, o.channel, COALESCE (c.opted_out, false),"
    " COALESCE ((extract (epoch FROM c.last_inbound_at) * 1000)::int8, 0),"
    " (extract (epoch FROM now ()) * 1000)::int8"
    " FROM outbox o LEFT JOIN contacts c"
    " ON c.provider = o.provider AND c.channel = o.channel AND c.address = o.to_addr"
    " WHERE o.id = ANY ($1::int8[])";

//  RETRY: back off ($3 base, $4 max, jitter in (0.5, 1]; at least $5
//  Retry-After ms), or dead after $2 attempts.
static const char s_record_retry_sql[] =
    "WITH o AS ("
    " UPDATE outbox SET attempts = attempts + 1,"
    " state = CASE WHEN attempts + 1 >= $2::int THEN 'dead' ELSE 'pending' END,"
    " next_attempt_at = now () + GREATEST ("
    " LEAST ($4::float8, $3::float8 * power (2::float8, LEAST (attempts, 60)))"
    " * (1.0 - random () * 0.5), $5::float8) * interval '1 millisecond',"
    " last_error = $6, updated_at = now ()"
    " WHERE id = $1 AND state = 'sending'"
    " AND claim_token IS NOT DISTINCT FROM NULLIF ($8::text, '')" S_FENCE
    " RETURNING id, state, next_attempt_at),"
    " msg AS ("
    " UPDATE messages m SET status = 'failed', status_rank = sb_status_rank ('failed'),"
    " error_code = $7, updated_at = now ()"
    " FROM o WHERE m.outbox_id = o.id AND o.state = 'dead'"
    " AND m.status_rank < sb_status_rank ('failed') RETURNING m.id)"
    " SELECT id, state, (extract (epoch FROM next_attempt_at - now ()) * 1000)::int8 FROM o";

//  FINAL: failed; the contact opted out when the provider says so ($4).
static const char s_record_final_sql[] =
    "WITH o AS ("
    " UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $2,"
    " updated_at = now ()"
    " WHERE id = $1 AND state = 'sending'"
    " AND claim_token IS NOT DISTINCT FROM NULLIF ($5::text, '')" S_FENCE
    " RETURNING id, provider, channel, to_addr),"
    " msg AS ("
    " UPDATE messages m SET status = 'failed', status_rank = sb_status_rank ('failed'),"
    " error_code = $3, updated_at = now ()"
    " FROM o WHERE m.outbox_id = o.id AND m.status_rank < sb_status_rank ('failed')"
    " RETURNING m.id),"
    " opt AS ("
    " INSERT INTO contacts AS c (provider, channel, address, opted_out, opted_out_at)"
    " SELECT provider, channel, to_addr, true, now () FROM o WHERE $4::bool AND to_addr <> ''"
    " ON CONFLICT (provider, channel, address) DO UPDATE SET opted_out = true,"
    " opted_out_at = CASE WHEN c.opted_out THEN c.opted_out_at ELSE now () END,"
    " updated_at = now () RETURNING 1)"
    " SELECT id FROM o";

//  A result the database refused to record (run alone, not prepared): the
//  outbox row alone takes the outcome ($2: sent, failed, or retry, which
//  is pending again after $3 ms or dead after $4 attempts) and the reason
//  ($5). It touches no other table and no unique key, so it cannot fail
//  on the result's data.
static const char s_record_refused_sql[] =
    "UPDATE outbox SET attempts = attempts + 1,"
    " state = CASE WHEN $2 <> 'retry' THEN $2"
    " WHEN attempts + 1 >= $4::int THEN 'dead' ELSE 'pending' END,"
    " next_attempt_at = now () + $3::int8 * interval '1 millisecond',"
    " last_error = $5, updated_at = now ()"
    " WHERE id = $1 AND state = 'sending'"
    " AND claim_token IS NOT DISTINCT FROM NULLIF ($6::text, '')" S_FENCE " RETURNING id, state";


const sb_store_statement_t sb_store_outbox_statements[] = {
    {"sb_claim", s_claim_sql},
    {"sb_record_sent", s_record_sent_sql},
    {"sb_record_sent_many", s_record_sent_many_sql},
    {"sb_record_bot", s_record_bot_sql},
    {"sb_record_retry", s_record_retry_sql},
    {"sb_record_final", s_record_final_sql},
    {NULL, NULL},
};

//  ---------------------------------------------------------------------
//  Claims

static int
s_provider_from_name (const char *name)
{
    if (strcmp (name, sb_event_provider_name (SB_PROVIDER_TWILIO)) == 0)
        return SB_PROVIDER_TWILIO;
    if (strcmp (name, sb_event_provider_name (SB_PROVIDER_META)) == 0)
        return SB_PROVIDER_META;
    return 0;
}

static int
s_channel_from_name (const char *name)
{
    static const int channels[] = {SB_CHANNEL_SMS, SB_CHANNEL_WHATSAPP, SB_CHANNEL_VOICE,
                                   SB_CHANNEL_RCS};
    for (size_t i = 0; i < sizeof channels / sizeof channels[0]; i++)
        if (strcmp (name, sb_event_channel_name (channels[i])) == 0)
            return channels[i];
    return 0;
}

static int
s_item_cmp (const void *a, const void *b)
{
    int64_t x = ((const sb_outbox_item_t *) a)->id;
    int64_t y = ((const sb_outbox_item_t *) b)->id;
    return (x > y) - (x < y);
}

//  The rows a claim returned as items, sorted by id; *items NULL when none.
//  Count, or -1 when out of memory (the rows stay "sending" until another
//  instance takes their partition, once this one stopped: sb_store_lease.c).
static int
s_claimed_items (const PGresult *r, sb_outbox_item_t **items)
{
    *items = NULL;
    int rows = PQntuples (r);
    if (rows == 0)
        return 0;
    sb_outbox_item_t *list = calloc ((size_t) rows, sizeof (*list));
    if (!list) {
        sb_error (S_MODULE, "out of memory claiming outbox rows");
        return -1;
    }
    bool oom = false;
    for (int row = 0; row < rows && !oom; row++) {
        sb_outbox_item_t *it = &list[row];
        int64_t id = 0, timeout = 0, attempts = 0;
        sb_store_parse_int64 (PQgetvalue (r, row, 0), &id);
        sb_store_parse_int64 (PQgetvalue (r, row, 10), &timeout);
        sb_store_parse_int64 (PQgetvalue (r, row, 12), &attempts);
        it->id = id;
        it->kind =
            strcmp (PQgetvalue (r, row, 1), "forward") == 0 ? SB_OUTBOX_FORWARD : SB_OUTBOX_REPLY;
        it->provider = s_provider_from_name (PQgetvalue (r, row, 2));
        it->channel = s_channel_from_name (PQgetvalue (r, row, 3));
        it->forward_timeout_ms = (int) timeout;
        it->attempts = (int) attempts;
        snprintf (it->claim_token, sizeof it->claim_token, "%s", PQgetvalue (r, row, 13));
        char **strings[] = {&it->account,    &it->from,        &it->to,        &it->body,
                            &it->context_id, &it->forward_url, &it->event_json};
        static const int columns[] = {4, 5, 6, 7, 8, 9, 11};
        for (size_t k = 0; k < sizeof columns / sizeof columns[0]; k++)
            if (!(*strings[k] = strdup (PQgetvalue (r, row, columns[k]))))
                oom = true;
    }
    if (oom) {
        sb_error (S_MODULE, "out of memory claiming outbox rows");
        for (int i = 0; i < rows; i++)
            sb_outbox_item_free (&list[i]);
        free (list);
        return -1;
    }
    qsort (list, (size_t) rows, sizeof (*list), s_item_cmp);
    *items = list;
    return rows;
}

int
sb_store_claim (sb_store_t *self, size_t max, sb_outbox_item_t **items)
{
    return sb_store_settle (self, NULL, 0, NULL, NULL, max, items);
}

//  ---------------------------------------------------------------------
//  Send results

//  ids as a text array literal, "{1,2,3}". Caller frees; NULL when out
//  of memory.
static char *
s_id_array (const int64_t *ids, size_t count)
{
    size_t size = 3 + count * 21;
    char *list = malloc (size);
    if (!list)
        return NULL;
    size_t used = (size_t) snprintf (list, size, "{");
    for (size_t i = 0; i < count; i++)
        used += (size_t) snprintf (list + used, size - used, "%s%" PRId64, i ? "," : "", ids[i]);
    snprintf (list + used, size - used, "}");
    return list;
}

//  A bot's answer: a SENT forward, whose bot text becomes a reply.
static bool
s_bot_answer (const sb_send_result_t *result)
{
    return result->outcome == SB_SEND_SENT && result->kind == SB_OUTBOX_FORWARD;
}

//  The reply policy's reason for each bot answer among results into
//  reasons [i] ("" to send; the others untouched): sb_policy decides on
//  the outbox row's channel, its contact as the database has it now and
//  the database's clock (as the window was always measured). One round
//  trip before the settle's, none without bot answers. 0, or -1 (logged).
static int
s_bot_reasons (sb_store_t *self, const sb_send_result_t *results, size_t count,
               const char **reasons)
{
    int64_t *ids = calloc (count ? count : 1, sizeof (*ids));
    if (!ids) {
        sb_error (S_MODULE, "out of memory recording sends count=%zu", count);
        return -1;
    }
    size_t asked = 0;
    for (size_t i = 0; i < count; i++)
        if (s_bot_answer (&results[i]))
            ids[asked++] = results[i].id;
    char *list = asked ? s_id_array (ids, asked) : NULL;
    free (ids);
    if (!asked)
        return 0;
    if (!list) {
        sb_error (S_MODULE, "out of memory recording sends count=%zu", count);
        return -1;
    }
    const char *params[] = {list};
    PGresult *r = sb_store_exec (self, s_bot_state_sql, 1, params, PGRES_TUPLES_OK,
                                 "read the contacts of bot answers");
    free (list);
    if (!r)
        return -1;
    for (int row = 0; row < PQntuples (r); row++) {
        int64_t id = 0, last = 0, now = 0;
        sb_store_parse_int64 (PQgetvalue (r, row, 0), &id);
        sb_store_parse_int64 (PQgetvalue (r, row, 3), &last);
        sb_store_parse_int64 (PQgetvalue (r, row, 4), &now);
        sb_policy_input_t in = {.channel = s_channel_from_name (PQgetvalue (r, row, 1)),
                                .ask = SB_POLICY_ASK_BOT_REPLY,
                                .opted_out = strcmp (PQgetvalue (r, row, 2), "t") == 0,
                                .last_inbound_ms = last,
                                .now_ms = now,
                                .window_ms = self->window_ms};
        for (size_t i = 0; i < count; i++)
            if (s_bot_answer (&results[i]) && results[i].id == id) {
                in.text = results[i].bot_text;
                reasons[i] = sb_policy_decide (&in).reason;
            }
    }
    PQclear (r);
    return 0;
}

//  One send result as a prepared statement with its text parameters.
typedef struct {
    const char *name;                  //  prepared statement
    const char *sql;                   //  its text, to run it alone
    const char *what;                  //  what it does, for logs
    const char *refused;               //  state if the database refuses it: sent, failed, retry
    int nparams;                       //  parameters used
    const char *values[8];             //  the parameters (into the buffers below, or static)
    char id[24];                       //  outbox id as text
    char token[SB_OUTBOX_TOKEN_SIZE];  //  the result's claim token
    char numbers[4][24];               //  retry: attempts, backoff base, cap, Retry-After
    char *error;                       //  outbox.last_error, owned
    char *code;                        //  the provider's error code, owned
    char *text;                        //  provider id or bot text, owned
    bool many;                         //  this turn, recorded by sb_record_sent_many
} s_record_t;

static void
s_record_free (s_record_t *rec)
{
    free (rec->error);
    free (rec->code);
    free (rec->text);
}

//  Why a provider id cannot be stored as it is (NULL when it can): the
//  sender checks ids too, but the store keeps nothing it cannot trust to be
//  a whole, valid key.
static const char *
s_id_problem (const char *id)
{
    size_t n = strlen (s_str (id));
    if (n > SB_STORE_KEY_MAX)
        return "provider id not kept: longer than 512 bytes";
    const unsigned char *p = (const unsigned char *) s_str (id);
    for (size_t i = 0; i < n;) {
        size_t len = sb_utf8_seq (p + i, n - i);
        if (len == 0)
            return "provider id not kept: not valid UTF-8";
        if (len == 1 && (p[i] < 0x20 || p[i] == 0x7f))
            return "provider id not kept: holds a control character";
        i += len;
    }
    return NULL;
}

//  Build rec for result (bot_reason: the policy's reason for a bot's
//  answer, static). 0, or -1 (out of memory; logged). An outcome we do
//  not know is recorded as FINAL, saying so.
static int
s_record_build (const sb_send_result_t *result, const sb_store_retry_t *retry,
                const char *bot_reason, s_record_t *rec)
{
    memset (rec, 0, sizeof (*rec));
    snprintf (rec->id, sizeof rec->id, "%" PRId64, result->id);
    snprintf (rec->token, sizeof rec->token, "%s", result->claim_token);
    sb_send_outcome_t outcome = result->outcome;
    char unknown[48] = "";
    if (outcome != SB_SEND_SENT && outcome != SB_SEND_RETRY && outcome != SB_SEND_FINAL) {
        snprintf (unknown, sizeof unknown, "unknown send outcome %d; ", (int) outcome);
        outcome = SB_SEND_FINAL;
    }
    bool reply_sent = outcome == SB_SEND_SENT && result->kind != SB_OUTBOX_FORWARD;
    const char *id_problem = reply_sent ? s_id_problem (result->provider_id) : NULL;
    //  outbox.last_error: "http=429 code=20429 what happened"; for a SENT,
    //  only what the sender or the store noted ("" when nothing).
    const char *error = s_str (result->error);
    const char *code = s_str (result->error_code);
    char head[64] = "";
    if (result->http_status && (outcome != SB_SEND_SENT || *error || id_problem))
        snprintf (head, sizeof head, "http=%d ", result->http_status);
    size_t len = strlen (head) + strlen (unknown) + strlen (code) + strlen (error)
                 + strlen (s_str (id_problem)) + 16;
    char *joined = malloc (len);
    if (!joined)
        goto oom;
    snprintf (joined, len, "%s%s%s%s%s%s%s", head, *code ? "code=" : "", code, *code ? " " : "",
              unknown, error, id_problem ? (*error ? "; " : "") : "");
    if (id_problem)
        snprintf (joined + strlen (joined), len - strlen (joined), "%s", id_problem);
    rec->error = sb_store_utf8_dup (joined, S_ERROR_MAX);
    free (joined);
    rec->code = sb_store_utf8_dup (code, 64);
    if (!rec->error || !rec->code)
        goto oom;
    rec->values[0] = rec->id;
    //  What the refused fallback needs: the retry's attempts and cap.
    int max_attempts = retry && retry->max_attempts > 0 ? retry->max_attempts : 1;
    int64_t base = retry && retry->backoff_base_ms > 0 ? retry->backoff_base_ms : 1;
    int64_t cap = retry && retry->backoff_max_ms > base ? retry->backoff_max_ms : base;
    snprintf (rec->numbers[0], sizeof rec->numbers[0], "%d", max_attempts);
    snprintf (rec->numbers[1], sizeof rec->numbers[1], "%" PRId64, base);
    snprintf (rec->numbers[2], sizeof rec->numbers[2], "%" PRId64, cap);

    if (outcome == SB_SEND_SENT && result->kind == SB_OUTBOX_FORWARD) {
        if (!(rec->text = sb_store_utf8_dup (result->bot_text, 4096)))
            goto oom;
        rec->name = "sb_record_bot";
        rec->sql = s_record_bot_sql;
        rec->what = "record bot answer";
        rec->refused = "failed";
        rec->nparams = 3;
        rec->values[1] = rec->text;
        rec->values[2] = bot_reason;
    }
    else if (outcome == SB_SEND_SENT) {
        if (!(rec->text =
                  sb_store_utf8_dup (id_problem ? "" : result->provider_id, SB_STORE_KEY_MAX)))
            goto oom;
        rec->name = "sb_record_sent";
        rec->sql = s_record_sent_sql;
        rec->what = "record sent";
        rec->refused = "sent";
        rec->nparams = 3;
        rec->values[1] = rec->text;
        rec->values[2] = rec->error;
    }
    else if (outcome == SB_SEND_RETRY) {
        int64_t after = result->retry_after_ms;
        if (after < 0)
            after = 0;
        if (after > 24LL * 3600 * 1000)
            after = 24LL * 3600 * 1000;
        snprintf (rec->numbers[3], sizeof rec->numbers[3], "%" PRId64, after);
        rec->name = "sb_record_retry";
        rec->sql = s_record_retry_sql;
        rec->what = "record retry";
        rec->refused = "retry";
        rec->nparams = 7;
        for (int k = 0; k < 4; k++)
            rec->values[1 + k] = rec->numbers[k];
        rec->values[5] = rec->error;
        rec->values[6] = rec->code;
    }
    else {
        rec->name = "sb_record_final";
        rec->sql = s_record_final_sql;
        rec->what = "record final";
        rec->refused = "failed";
        rec->nparams = 4;
        rec->values[1] = rec->error;
        rec->values[2] = rec->code;
        rec->values[3] = result->opt_out ? "true" : "false";
    }
    rec->values[rec->nparams++] = rec->token;
    return 0;
oom:
    sb_error (S_MODULE, "out of memory recording a send id=%" PRId64, result->id);
    s_record_free (rec);
    return -1;
}

//  The limiter of a repeated line about send results: one a second.
static sb_log_every_t *
s_every (sb_log_every_t *limit)
{
    if (limit->interval_us == 0)
        *limit = (sb_log_every_t) SB_LOG_EVERY (1000);
    return limit;
}

//  What a record statement answered: true when a retry made the row dead.
static bool
s_record_done (sb_store_t *self, const s_record_t *rec, const PGresult *r)
{
    if (PQntuples (r) == 0) {
        self->fenced++;
        sb_log_every (s_every (&self->gone_log), SB_LOG_WARN, S_MODULE,
                      "send result for an outbox row not sending id=%s", rec->id);
        return false;
    }
    if (strcmp (rec->name, "sb_record_sent") == 0 && !PQgetisnull (r, 0, 1))
        sb_log_every (s_every (&self->duplicate_log), SB_LOG_WARN, S_MODULE,
                      "provider id already known, kept on the outbox row only id=%s message=%s",
                      rec->id, PQgetvalue (r, 0, 1));
    if (strcmp (rec->name, "sb_record_bot") == 0)
        sb_debug (S_MODULE, "bot answered id=%s state=%s reason=%s", rec->id, PQgetvalue (r, 0, 1),
                  PQgetvalue (r, 0, 2));
    if (strcmp (rec->name, "sb_record_retry") != 0)
        return false;
    bool dead = strcmp (PQgetvalue (r, 0, 1), "dead") == 0;
    if (dead)
        sb_warn (S_MODULE, "outbox row dead id=%s max_attempts=%s error=\"%s\"", rec->id,
                 rec->values[1], rec->error);
    else
        sb_debug (S_MODULE, "outbox retry id=%s in_ms=%s", rec->id, PQgetvalue (r, 0, 2));
    return dead;
}

//  Whether rec records a reply SENT: what sb_record_sent_many takes.
static bool
s_is_sent (const s_record_t *rec)
{
    return strcmp (rec->name, "sb_record_sent") == 0;
}

//  Mark the SENT records of order [0..n) that sb_record_sent_many takes
//  (when many): all but one whose provider id an earlier one of the turn
//  has (a provider, or a mock, that repeats ids). Those go one statement
//  each after it, as before it existed: the first keeps the id on its
//  message, the later ones note it. Together they would break messages'
//  unique key.
static void
s_sent_mark (s_record_t *recs, const size_t *order, size_t n, bool many)
{
    for (size_t k = 0; k < n; k++) {
        s_record_t *rec = &recs[order[k]];
        rec->many = many && s_is_sent (rec);
        for (size_t j = 0; rec->many && *rec->values[1] && j < k; j++) {
            const s_record_t *earlier = &recs[order[j]];
            if (s_is_sent (earlier) && strcmp (earlier->values[1], rec->values[1]) == 0)
                rec->many = false;
        }
    }
}

//  Queue the SENT records of order [0..n) marked many as one
//  sb_record_sent_many. How many it holds (0: none, nothing queued), or -1.
static long
s_sent_send (sb_store_t *self, const s_record_t *recs, const size_t *order, size_t n)
{
    static const uint32_t oids[] = {SB_PGARRAY_OID_INT8, SB_PGARRAY_OID_TEXT, SB_PGARRAY_OID_TEXT,
                                    SB_PGARRAY_OID_TEXT};
    sb_pgarray_table_t t;
    sb_pgarray_table_init (&t, oids, 4);
    long count = 0;
    for (size_t k = 0; k < n; k++) {
        const s_record_t *rec = &recs[order[k]];
        int64_t id;
        if (!rec->many || !sb_store_parse_int64 (rec->id, &id))
            continue;
        sb_pgarray_int8 (&t.cols[0], id);
        sb_pgarray_text (&t.cols[1], rec->values[1]);
        sb_pgarray_text (&t.cols[2], rec->values[2]);
        sb_pgarray_text (&t.cols[3], rec->token);
        count++;
    }
    int rc = count ? sb_store_send_table (self, "sb_record_sent_many", &t) : 0;
    sb_pgarray_table_free (&t);
    return rc ? -1 : count;
}

//  What sb_record_sent_many answered, for each SENT record of order
//  [0..n): as s_record_done does for one.
static void
s_sent_done (sb_store_t *self, const s_record_t *recs, const size_t *order, size_t n,
             const PGresult *r)
{
    int rows = PQntuples (r);
    for (size_t k = 0; k < n; k++) {
        const s_record_t *rec = &recs[order[k]];
        if (!rec->many)
            continue;
        int row = 0;
        while (row < rows && strcmp (PQgetvalue (r, row, 0), rec->id) != 0)
            row++;
        if (row == rows) {
            self->fenced++;
            sb_log_every (s_every (&self->gone_log), SB_LOG_WARN, S_MODULE,
                          "send result for an outbox row not sending id=%s", rec->id);
        }
        else if (!PQgetisnull (r, row, 1))
            sb_log_every (s_every (&self->duplicate_log), SB_LOG_WARN, S_MODULE,
                          "provider id already known, kept on the outbox row only id=%s"
                          " message=%s",
                          rec->id, PQgetvalue (r, row, 1));
    }
}

//  Queue BEGIN, the records order [0..n) (with many, the SENT ones as one
//  statement first; *nsent: how many it holds), the claim and COMMIT, and
//  end the pipeline.
static int
s_settle_send (sb_store_t *self, s_record_t *recs, const size_t *order, size_t n, size_t claim_max,
               bool many, long *nsent)
{
    *nsent = 0;
    s_sent_mark (recs, order, n, many);
    if (sb_store_send_sql (self, "BEGIN"))
        return -1;
    if (many && (*nsent = s_sent_send (self, recs, order, n)) < 0)
        return -1;
    for (size_t k = 0; k < n; k++) {
        const s_record_t *rec = &recs[order[k]];
        if (rec->many)
            continue;
        if (!PQsendQueryPrepared (self->conn, rec->name, rec->nparams, rec->values, NULL, NULL,
                                  0)) {
            sb_store_log_result (self, NULL, rec->what);
            return -1;
        }
    }
    if (claim_max) {
        char limit[24];
        snprintf (limit, sizeof limit, "%zu", claim_max);
        const char *params[] = {limit, self->token};
        if (sb_store_send_sql (self, S_CLAIM_PLAN))
            return -1;
        if (!PQsendQueryPrepared (self->conn, "sb_claim", 2, params, NULL, NULL, 0)) {
            sb_store_log_result (self, NULL, "claim outbox");
            return -1;
        }
    }
    return sb_store_send_commit (self);
}

//  One transaction, one round trip: record order [0..n) and claim up to
//  claim_max rows. 0 when committed (*claimed is the claim's result or
//  NULL; dead filled for those rows). -1 when rolled back: *failed is then
//  the position in order of the record the database refused,
//  S_FAILED_MANY when it refused the SENT records' one statement (many),
//  or -1 when anything else failed (connection, BEGIN, claim, COMMIT).
//  The last statement failed for its data: a data exception (class 22),
//  a constraint it breaks (23) or a limit it passes (54, e.g. an index row
//  too large). Only such a failure is the record's own; any other (a
//  deadlock, a statement or lock timeout, a lost connection) says nothing
//  about the record, and the whole turn is tried again later, intact.
#define S_FAILED_MANY (-2)

static bool
s_data_error (const sb_store_t *self)
{
    return strncmp (self->sqlstate, "22", 2) == 0 || strncmp (self->sqlstate, "23", 2) == 0
           || strncmp (self->sqlstate, "54", 2) == 0;
}

static int
s_settle_try (sb_store_t *self, s_record_t *recs, const size_t *order, size_t n, bool *dead,
              size_t claim_max, bool many, PGresult **claimed, long *failed)
{
    *claimed = NULL;
    *failed = -1;
    bool synced = false;
    long nsent = 0;
    if (!PQenterPipelineMode (self->conn)) {
        sb_store_log_result (self, NULL, "enter pipeline mode");
        return -1;
    }
    if (s_settle_send (self, recs, order, n, claim_max, many, &nsent))
        goto abort;
    synced = true;
    if (sb_store_flush (self))
        goto abort;
    PGresult *r = sb_store_take (self, PGRES_COMMAND_OK, "begin");
    if (!r)
        goto abort;
    PQclear (r);
    if (nsent > 0) {
        if (!(r = sb_store_take (self, PGRES_TUPLES_OK, "record sent"))) {
            if (s_data_error (self))
                *failed = S_FAILED_MANY;
            goto abort;
        }
        s_sent_done (self, recs, order, n, r);
        PQclear (r);
    }
    for (size_t k = 0; k < n; k++) {
        const s_record_t *rec = &recs[order[k]];
        if (rec->many)
            continue;
        if (!(r = sb_store_take (self, PGRES_TUPLES_OK, rec->what))) {
            if (s_data_error (self))
                *failed = (long) k;
            goto abort;
        }
        bool was_dead = s_record_done (self, rec, r);
        if (dead)
            dead[order[k]] = was_dead;
        PQclear (r);
    }
    if (claim_max) {
        if (!(r = sb_store_take (self, PGRES_COMMAND_OK, S_CLAIM_PLAN)))
            goto abort;
        PQclear (r);
        if (!(*claimed = sb_store_take (self, PGRES_TUPLES_OK, "claim outbox")))
            goto abort;
    }
    bool sync;
    if (!sb_store_take_commit (self, &sync)) {
        sb_log_every (s_every (&self->settle_log), SB_LOG_ERROR, S_MODULE,
                      "send results not committed count=%zu", n);
        goto abort;
    }
    //  Committed: the claimed rows are ours, whatever happens to the
    //  connection now.
    if (!sync || !PQexitPipelineMode (self->conn)) {
        sb_store_log_result (self, NULL, "end of pipeline");
        sb_store_connect (self);
    }
    return 0;
abort:
    PQclear (*claimed);
    *claimed = NULL;
    sb_store_pipeline_abort (self, synced);
    for (size_t k = 0; dead && k < n; k++)
        dead[order[k]] = false;
    if (PQstatus (self->conn) != CONNECTION_OK)
        *failed = -1;
    return -1;
}

//  A record the database refused inside a settle, run again alone, in a
//  transaction of its own. When it is refused again (the result itself is
//  the problem: a key it breaks, a check it fails) the outbox row alone
//  takes the outcome, with the database's reason in last_error
//  (s_record_refused_sql). 0 when the row is recorded either way, -1 when
//  the database could not be used (nothing done).
static int
s_record_alone (sb_store_t *self, const s_record_t *rec, bool *dead)
{
    PGresult *r =
        sb_store_exec (self, rec->sql, rec->nparams, rec->values, PGRES_TUPLES_OK, rec->what);
    if (r) {
        bool was_dead = s_record_done (self, rec, r);
        if (dead)
            *dead = was_dead;
        PQclear (r);
        return 0;
    }
    if (PQstatus (self->conn) != CONNECTION_OK || !s_data_error (self))
        return -1;
    char line[400];
    const char *why = sb_store_line (PQerrorMessage (self->conn), line, sizeof line);
    if (strncmp (why, "ERROR:", 6) == 0)
        for (why += 6; *why == ' ';)
            why++;
    size_t len = strlen (rec->error) + strlen (why) + 32;
    char *joined = malloc (len);
    char *note = NULL;
    if (joined) {
        snprintf (joined, len, "%s%snot recorded: %s", rec->error, *rec->error ? "; " : "",
                  *why ? why : "refused by the database");
        note = sb_store_utf8_dup (joined, S_ERROR_MAX);
        free (joined);
    }
    if (!note) {
        sb_error (S_MODULE, "out of memory recording a send id=%s", rec->id);
        return -1;
    }
    //  A retry comes back after the longest backoff.
    const char *values[] = {rec->id,         rec->refused, rec->numbers[2],
                            rec->numbers[0], note,         rec->token};
    r = sb_store_exec (self, s_record_refused_sql, 6, values, PGRES_TUPLES_OK,
                       "record refused result");
    if (r) {
        const char *state = PQntuples (r) > 0 ? PQgetvalue (r, 0, 1) : "gone";
        if (dead)
            *dead = strcmp (state, "dead") == 0;
        sb_log_every (s_every (&self->refused_log), SB_LOG_WARN, S_MODULE,
                      "send result refused by the database, its outbox row alone recorded"
                      " id=%s state=%s reason=\"%s\"",
                      rec->id, state, note);
        PQclear (r);
    }
    free (note);
    return r ? 0 : -1;
}

int
sb_store_settle (sb_store_t *self, const sb_send_result_t *results, size_t count,
                 const sb_store_retry_t *retry, bool *dead, size_t claim_max,
                 sb_outbox_item_t **items)
{
    if (items)
        *items = NULL;
    else
        claim_max = 0;
    if (claim_max > 10000)
        claim_max = 10000;
    for (size_t i = 0; dead && i < count; i++)
        dead[i] = false;
    if (count == 0 && claim_max == 0)
        return 0;
    if (sb_store_ready (self) != 0)
        return -1;
    s_record_t *recs = calloc (count ? count : 1, sizeof (*recs));
    size_t *order = calloc (count ? count : 1, sizeof (*order));
    const char **reasons = calloc (count ? count : 1, sizeof (*reasons));
    if (!recs || !order || !reasons) {
        sb_error (S_MODULE, "out of memory recording sends count=%zu", count);
        free (recs);
        free (order);
        free (reasons);
        return -1;
    }
    int rc = -1;
    PGresult *claimed = NULL;
    size_t built = 0;
    for (size_t i = 0; i < count; i++)
        reasons[i] = "";
    if (s_bot_reasons (self, results, count, reasons) != 0)
        goto done;
    for (; built < count; built++) {
        if (s_record_build (&results[built], retry, reasons[built], &recs[built]) != 0)
            goto done;
        order[built] = built;
    }
    //  All in one transaction; when the database refuses one record, that
    //  one goes alone (and is recorded as refused if it must) and the rest
    //  try again together: a poison result costs its own row, never the
    //  others'. Each turn takes one record out, so this ends.
    //  The SENT records go as one statement (many) until the database
    //  refuses it; then one statement each, so the refused one is known.
    size_t n = count;
    bool many = true;
    for (;;) {
        long failed;
        if (s_settle_try (self, recs, order, n, dead, claim_max, many, &claimed, &failed) == 0)
            break;
        if (failed == S_FAILED_MANY) {
            self->many_refused++;
            many = false;
            continue;
        }
        if (failed < 0)
            goto done;
        size_t bad = order[failed];
        memmove (order + failed, order + failed + 1, (n - (size_t) failed - 1) * sizeof *order);
        n--;
        if (s_record_alone (self, &recs[bad], dead ? &dead[bad] : NULL) != 0)
            goto done;
        if (n == 0 && claim_max == 0)
            break;
    }
    rc = claimed ? s_claimed_items (claimed, items) : 0;
done:
    PQclear (claimed);
    for (size_t i = 0; i < built; i++)
        s_record_free (&recs[i]);
    free (recs);
    free (order);
    free (reasons);
    return rc;
}

int64_t
sb_store_sent_many_refused (const sb_store_t *self)
{
    return self->many_refused;
}

int
sb_store_record (sb_store_t *self, const sb_send_result_t *result, int max_attempts,
                 int64_t backoff_base_ms, int64_t backoff_max_ms)
{
    sb_store_retry_t retry = {max_attempts, backoff_base_ms, backoff_max_ms};
    bool dead = false;
    if (sb_store_settle (self, result, 1, &retry, &dead, 0, NULL) != 0)
        return -1;
    return dead ? 1 : 0;
}

int
sb_store_outbox_depth (sb_store_t *self, int64_t *pending, int64_t *sending)
{
    *pending = *sending = 0;
    if (sb_store_ensure (self) != 0)
        return -1;
    //  Only the rows still to send: an index range of outbox_due, however
    //  many sent rows the table has kept.
    PGresult *r = sb_store_exec (self,
                                 "SELECT state, count (*) FROM outbox"
                                 " WHERE state IN ('pending', 'sending') GROUP BY state",
                                 0, NULL, PGRES_TUPLES_OK, "outbox depth");
    if (!r)
        return -1;
    for (int row = 0; row < PQntuples (r); row++) {
        int64_t n = 0;
        sb_store_parse_int64 (PQgetvalue (r, row, 1), &n);
        if (strcmp (PQgetvalue (r, row, 0), "pending") == 0)
            *pending = n;
        else
            *sending = n;
    }
    PQclear (r);
    return 0;
}

int
sb_store_reclaim (sb_store_t *self, const int64_t *held, size_t count)
{
    if (sb_store_ensure (self) != 0)
        return -1;
    char *list = s_id_array (held, count);
    if (!list) {
        sb_error (S_MODULE, "out of memory reclaiming outbox rows count=%zu", count);
        return -1;
    }
    //  The tokens of the connections dropped so far, "{t1,t2}" (hex and
    //  dots: nothing to quote). Never the live connection's, never another
    //  process's.
    size_t tsize = 3 + self->dropped_count * SB_OUTBOX_TOKEN_SIZE;
    char *tokens = malloc (tsize);
    if (!tokens) {
        sb_error (S_MODULE, "out of memory reclaiming outbox rows count=%zu", count);
        free (list);
        return -1;
    }
    size_t used = (size_t) snprintf (tokens, tsize, "{");
    for (size_t i = 0; i < self->dropped_count; i++)
        used +=
            (size_t) snprintf (tokens + used, tsize - used, "%s%s", i ? "," : "", self->dropped[i]);
    snprintf (tokens + used, tsize - used, "}");
    const char *params[] = {list, tokens};
    PGresult *r =
        sb_store_exec (self,
                       "UPDATE outbox SET state = 'pending', claim_token = NULL,"
                       " updated_at = now () WHERE state = 'sending'"
                       " AND claim_token = ANY ($2::text[]) AND NOT (id = ANY ($1::int8[]))",
                       2, params, PGRES_COMMAND_OK, "reclaim outbox");
    free (list);
    free (tokens);
    if (!r)
        return -1;
    int64_t n = 0;
    sb_store_parse_int64 (PQcmdTuples (r), &n);
    PQclear (r);
    if (n > 0)
        sb_info (S_MODULE, "outbox rows back to pending count=%" PRId64 " held=%zu", n, count);
    return (int) n;
}

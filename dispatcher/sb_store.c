/*  sb_store: the dispatcher's PostgreSQL side, over one libpq connection
    used by one thread.

    It applies the migrations (dispatcher/migrations/NNNN_name.sql), writes
    batches of events exactly once together with everything they imply
    (contacts, messages, reply decisions in the outbox, the consumer
    cursor), and moves outbox rows through their states for the sender.
    Every value travels as a query parameter: the write path sends each
    column as one binary array parameter and unnest()s it server-side, the
    other statements use text parameters. Text is sent as UTF-8 with any
    invalid sequence replaced by U+FFFD, so bytes from a provider can never
    make a batch fail forever.

    DESIGN (the write path). One batch is one transaction and two round
    trips, whatever its size, using libpq's pipeline mode:
      1. BEGIN; INSERT INTO events ... SELECT FROM unnest(...) ON CONFLICT
         DO NOTHING RETURNING (which events are new); SELECT ... FOR UPDATE
         the contacts the batch's inbound events come from.
      2. In C, in batch order, for each NEW event only: the contact's
         profile name, last inbound time and opt-out state; the inbound
         messages row; the rules' decision (opt-out and the WhatsApp 24-hour
         window applied); the status of outbound messages. Then, pipelined:
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
    sender address; they upsert the contact. Messages and gathers also get
    an inbound messages row. The opt-out and opt-in keywords (from the rules
    file; none without rules) apply to messages: a STOP marks the contact
    opted out and is not shown to the rules at all (no reply, no outbox
    row); a START clears it and then goes to the rules like any message, so
    it may be answered. Any other event from an opted-out contact still
    goes to the rules, and a reply or forward they ask for is recorded as
    not_sent, reason opted_out. A WhatsApp reply whose contact's last
    inbound time is older than window_ms before now is recorded as not_sent,
    reason outside_window; a reply on the voice channel as
    unsupported_channel. Status events never run rules.

    Statuses. An outbound message's status moves only to a higher rank
    (SQL function sb_status_rank, 0001_init.sql): queued 1 < sent 2 <
    delivered 3 < read 4; failed, undelivered and canceled are terminal
    (10) and win over anything else; unknown statuses (0) never apply. The
    highest status of a batch wins whatever its order. A status for a
    message we do not know yet is kept in events only; sb_store_record
    applies it when the send that produced that provider id is recorded.

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
    turn fails, and the caller tries it again, intact, after its backoff. Repeated lines go through sb_log_every.

    DESIGN (deadlines). Every round trip has a deadline, SB_PG_TIMEOUT_MS
    (timeout_ms): the connection is non-blocking, a connect is
    PQconnectStartParams then PQconnectPoll, and every send and every wait
    for a result is a poll() on PQsocket until the deadline, PQflush and
    PQconsumeInput/PQisBusy in between (libpq's own waits have none). The
    server is asked to give up first, so that a slow statement or a held
    lock costs an error and not the connection: statement_timeout is 4/5
    and lock_timeout 1/2 of the deadline; TCP keepalives and
    tcp_user_timeout (the deadline) let the kernel drop a peer that went
    away. Each is set only where DATABASE_URL (or PGOPTIONS) does not set
    it. When the deadline passes the connection is dropped (closed, never
    waited on again) and the call fails; the caller retries the same work
    later on a new connection (sb_store_ensure), with its own backoff. A
    dropped write may still commit on a server that wakes up later: that
    is safe, the retry inserts nothing (unique keys) and decides nothing.
    The outbox is not keyed that way (id and state 'sending'), so its
    statements carry claim tokens. DESIGN (claim tokens). A store has a
    random instance id; each connection a token, the instance id and a
    random part new on every connect. A claim marks its rows with the
    token of the connection it ran on (outbox.claim_token, 0004) and hands
    it to the sender with each item, which copies it into the result. A
    result applies only while its row is still "sending" with that token,
    so one that runs late (after the row was recorded again on another
    connection and claimed once more) touches nothing. A dropped
    connection's token is kept (S_DROPPED_MAX, oldest forgotten) and
    sb_store_reclaim puts back only rows of those tokens that the caller
    does not hold: never the live connection's rows, never another
    process's, and a reclaim that runs late only touches rows nobody holds.
    sb_store_recover (at start) puts back every "sending" row not claimed
    by this store instance: a new process cannot know its dead
    predecessor's tokens, so this still assumes one dispatcher per
    database (DESIGN.md's scale-out would need an instance registry with
    leases for it); a recover that runs late never undoes this instance's
    claims. A row claimed by a late statement of a connection dropped
    before a store's last reclaim stays "sending" until the next reclaim
    (after the next failed settle) or restart.
    sb_store_last_ok_us says when the last round trip succeeded, for
    readiness; migrations get a longer deadline (S_MIGRATE_TIMEOUT_MS).

    Limits. seq is stored as bigint. The host name lookup of a connect is
    libpq's and blocking (not bounded by the deadline): use an address or
    a local resolver.
*/
#include "sb_store.h"
#include "sb_utf8.h"

#include <arpa/inet.h>
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sb_log.h"
#include "sb_time.h"

#define S_MODULE "store"

//  Session advisory lock held while migrating ("sbmigrat").
#define S_MIGRATE_LOCK "8314328161553899892"
//  Largest migration file we read.
#define S_MIGRATION_MAX (4 * 1024 * 1024)
//  Default WhatsApp customer-service window.
#define S_WINDOW_MS (24LL * 3600 * 1000)
//  Deadline of a migration's round trips (a migration may rewrite a table).
#define S_MIGRATE_TIMEOUT_MS 600000
//  PostgreSQL counts as answering this long past the deadline after the
//  last successful round trip (callers ping every S_PING_MS when idle).
#define S_ALIVE_SLACK_MS 1000
//  Repeated connection and round trip errors: one line per this many ms.
#define S_LOG_EVERY_MS 1000
//  Longest text kept in outbox.last_error.
#define S_ERROR_MAX 1000
//  Most parameters any statement here takes.
#define S_MAX_PARAMS 20
//  Longest value kept in an indexed text column (provider ids, addresses,
//  statuses, ...): far above any real one, and small enough that a key
//  always fits in a btree entry, so no value from outside can make a batch
//  fail for ever.
#define S_KEY_MAX 512

//  Claim tokens: a store's instance id is 16 hex digits; a connection's
//  token is the instance id, ".", and 16 more (SB_OUTBOX_TOKEN_SIZE).
#define S_INSTANCE_SIZE 17
//  Tokens of dropped connections kept for sb_store_reclaim; past this
//  many the oldest is forgotten (its rows wait for sb_store_recover).
#define S_DROPPED_MAX 256

//  PostgreSQL type OIDs of the array elements we send (pg_type.dat).
#define S_OID_BOOL 16
#define S_OID_BYTEA 17
#define S_OID_INT8 20
#define S_OID_INT4 23
#define S_OID_TEXT 25
#define S_OID_TIMESTAMPTZ 1184

//  Unix ms of PostgreSQL's epoch, 2000-01-01 00:00:00 UTC.
#define S_PG_EPOCH_MS 946684800000LL

struct sb_store_t {
    PGconn *conn;        //  the connection; NULL once dropped (a deadline passed)
    char *conninfo;      //  copy of the conninfo, for reconnecting
    char *options;       //  "options" we connect with (theirs + our timeouts)
    bool prepared;       //  the write statements are prepared on conn
    bool healthy;        //  last state logged, so each change logs once
    int64_t window_ms;   //  WhatsApp window of the last write, for bot replies
    sb_log_every_t settle_log;     //  send results not committed
    sb_log_every_t refused_log;    //  send results the database refused
    sb_log_every_t duplicate_log;  //  provider ids already known
    sb_log_every_t gone_log;       //  results for rows no longer sending
    int timeout_ms;      //  deadline of each round trip (SB_PG_TIMEOUT_MS)
    int64_t deadline_us; //  monotonic end of the round trip under way
    int64_t last_ok_us;  //  monotonic time of the last successful round trip (0: none)
    sb_log_every_t log_result;   //  failed statements
    sb_log_every_t log_timeout;  //  round trips past their deadline
    sb_log_every_t log_connect;  //  connects failing again
    char sqlstate [6];   //  SQLSTATE of the last failed statement ("": none, or no answer)
    char instance [S_INSTANCE_SIZE];  //  random per store: the head of its claim tokens
    char token [SB_OUTBOX_TOKEN_SIZE];  //  claim token of conn (instance.random; "": none)
    char dropped [S_DROPPED_MAX][SB_OUTBOX_TOKEN_SIZE];  //  tokens of dropped connections
    size_t dropped_count;               //  used entries of dropped, oldest first
    sb_log_every_t dropped_log;         //  dropped tokens forgotten (the list was full)
};

//  ---------------------------------------------------------------------
//  Small helpers

static const char *
s_str (const char *s)
{
    return s ? s : "";
}

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  The first line of a libpq message, for one-line logs.
static const char *
s_line (const char *message, char *buf, size_t size)
{
    snprintf (buf, size, "%s", s_str (message));
    buf [strcspn (buf, "\r\n")] = 0;
    return buf;
}

//  Log a failed result: what we were doing, the server's message and
//  SQLSTATE (a failure repeated each retry: once a second, with a count).
static void
s_log_result (sb_store_t *self, const PGresult *result, const char *what)
{
    char line [512];
    const char *message = result ? PQresultErrorMessage (result) : "";
    if (!message || !*message)
        message = self->conn ? PQerrorMessage (self->conn) : "connection dropped";
    const char *state = result ? PQresultErrorField (result, PG_DIAG_SQLSTATE) : NULL;
    snprintf (self->sqlstate, sizeof self->sqlstate, "%s", state ? state : "");
    sb_log_every (&self->log_result, SB_LOG_ERROR, S_MODULE, "%s failed error=\"%s\" sqlstate=%s",
                  what, s_line (message, line, sizeof line), state ? state : "-");
}

static bool
s_parse_int64 (const char *text, int64_t *value)
{
    if (!text || !*text)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll (text, &end, 10);
    if (errno || *end)
        return false;
    *value = v;
    return true;
}

//  A copy of at most max bytes of s as valid UTF-8 (invalid sequences
//  become U+FFFD; cut on a character boundary). Caller frees; NULL when
//  out of memory.
static char *
s_utf8_dup (const char *s, size_t max)
{
    s = s_str (s);
    size_t n = strlen (s);
    char *copy = malloc (n * 3 + 1);
    if (!copy)
        return NULL;
    size_t out = 0;
    const unsigned char *p = (const unsigned char *) s;
    for (size_t i = 0; i < n;) {
        size_t len = sb_utf8_seq (p + i, n - i);
        size_t add = len ? len : 3;
        if (out + add > max)
            break;
        if (len)
            memcpy (copy + out, p + i, len);
        else
            memcpy (copy + out, "\xEF\xBF\xBD", 3);
        out += add;
        i += len ? len : 1;
    }
    copy [out] = 0;
    return copy;
}

//  ---------------------------------------------------------------------
//  Binary array parameters (the format of PostgreSQL's array_recv): a
//  header (ndim, has-null flag, element type, then size and lower bound of
//  the one dimension), then each element as a 4-byte length (-1 for NULL)
//  and its bytes in the type's binary format, all integers big-endian.

#define S_ARRAY_HEADER 20

typedef struct {
    uint8_t *data;    //  header then elements
    size_t size;      //  bytes used
    size_t cap;       //  bytes allocated
    uint32_t oid;     //  element type
    uint32_t count;   //  elements added
    bool has_null;    //  some element is NULL
    bool oom;         //  an allocation failed: the array is unusable
} s_array_t;

static void
s_array_init (s_array_t *a, uint32_t oid)
{
    memset (a, 0, sizeof (*a));
    a->oid = oid;
    a->size = S_ARRAY_HEADER;
}

static void
s_array_free (s_array_t *a)
{
    free (a->data);
    a->data = NULL;
}

static uint8_t *
s_array_room (s_array_t *a, size_t more)
{
    if (a->oom)
        return NULL;
    if (a->size + more > a->cap) {
        size_t cap = a->cap ? a->cap : 256;
        while (cap < a->size + more)
            cap *= 2;
        uint8_t *data = realloc (a->data, cap);
        if (!data) {
            a->oom = true;
            return NULL;
        }
        a->data = data;
        a->cap = cap;
    }
    return a->data + a->size;
}

static void
s_put32 (uint8_t *p, uint32_t v)
{
    v = htonl (v);
    memcpy (p, &v, 4);
}

static void
s_put64 (uint8_t *p, uint64_t v)
{
    s_put32 (p, (uint32_t) (v >> 32));
    s_put32 (p + 4, (uint32_t) v);
}

static void
s_array_bytes (s_array_t *a, const void *data, size_t size)
{
    uint8_t *p = s_array_room (a, 4 + size);
    if (!p)
        return;
    s_put32 (p, (uint32_t) size);
    if (size)
        memcpy (p + 4, data, size);
    a->size += 4 + size;
    a->count++;
}

static void
s_array_null (s_array_t *a)
{
    uint8_t *p = s_array_room (a, 4);
    if (!p)
        return;
    s_put32 (p, 0xFFFFFFFFu);
    a->size += 4;
    a->count++;
    a->has_null = true;
}

//  A text element: s as valid UTF-8 (NULL is ""), at most max bytes (cut
//  on a character boundary).
static void
s_array_text_max (s_array_t *a, const char *s, size_t max)
{
    s = s_str (s);
    size_t n = strlen (s);
    uint8_t *p = s_array_room (a, 4 + n * 3);
    if (!p)
        return;
    const unsigned char *in = (const unsigned char *) s;
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        size_t len = sb_utf8_seq (in + i, n - i);
        if (len) {
            //  copy the whole valid run at once
            size_t run = len;
            while (i + run < n && (len = sb_utf8_seq (in + i + run, n - i - run)))
                run += len;
            if (out + run > max) {
                //  the longest prefix of the run that fits
                size_t fit = 0;
                while (fit < run && (len = sb_utf8_seq (in + i + fit, run - fit))
                       && out + fit + len <= max)
                    fit += len;
                memcpy (p + 4 + out, in + i, fit);
                out += fit;
                break;
            }
            memcpy (p + 4 + out, in + i, run);
            out += run;
            i += run;
        }
        else {
            if (out + 3 > max)
                break;
            memcpy (p + 4 + out, "\xEF\xBF\xBD", 3);
            out += 3;
            i++;
        }
    }
    s_put32 (p, (uint32_t) out);
    a->size += 4 + out;
    a->count++;
}

static void
s_array_text (s_array_t *a, const char *s)
{
    s_array_text_max (a, s, SIZE_MAX);
}

//  An indexed text element (see S_KEY_MAX).
static void
s_array_key (s_array_t *a, const char *s)
{
    s_array_text_max (a, s, S_KEY_MAX);
}

//  An indexed text element, NULL when s is NULL or empty.
static void
s_array_key_or_null (s_array_t *a, const char *s)
{
    if (s && *s)
        s_array_key (a, s);
    else
        s_array_null (a);
}

static void
s_array_int8 (s_array_t *a, int64_t v)
{
    uint8_t b [8];
    s_put64 (b, (uint64_t) v);
    s_array_bytes (a, b, 8);
}

static void
s_array_int4 (s_array_t *a, int32_t v)
{
    uint8_t b [4];
    s_put32 (b, (uint32_t) v);
    s_array_bytes (a, b, 4);
}

static void
s_array_bool (s_array_t *a, bool v)
{
    uint8_t b = v ? 1 : 0;
    s_array_bytes (a, &b, 1);
}

//  A timestamptz from Unix ms: microseconds since 2000-01-01 UTC.
static void
s_array_time (s_array_t *a, int64_t unix_ms)
{
    s_array_int8 (a, (unix_ms - S_PG_EPOCH_MS) * 1000);
}

//  Write the header. 0, or -1 when an allocation failed.
static int
s_array_finish (s_array_t *a)
{
    if (!s_array_room (a, 0))
        return -1;
    uint8_t *p = a->data;
    s_put32 (p, a->count ? 1 : 0);
    s_put32 (p + 4, a->has_null ? 1 : 0);
    s_put32 (p + 8, a->oid);
    if (a->count) {
        s_put32 (p + 12, a->count);
        s_put32 (p + 16, 1);
    }
    else
        a->size = 12;
    return 0;
}

//  A statement's rows, one array per column.
typedef struct {
    s_array_t cols [S_MAX_PARAMS];  //  one binary array per column
    int ncols;                      //  columns in use
} s_table_t;

static void
s_table_init (s_table_t *t, const uint32_t *oids, int ncols)
{
    t->ncols = ncols;
    for (int i = 0; i < ncols; i++)
        s_array_init (&t->cols [i], oids [i]);
}

static void
s_table_free (s_table_t *t)
{
    for (int i = 0; i < t->ncols; i++)
        s_array_free (&t->cols [i]);
}

static size_t
s_table_rows (const s_table_t *t)
{
    return t->ncols ? t->cols [0].count : 0;
}

//  ---------------------------------------------------------------------
//  The write statements, prepared once per connection. Parameters are
//  binary arrays, one per column (see s_table_t).

//  events: every event of the batch; returns the new ones.
enum {
    EV_INGRESS, EV_EPOCH, EV_SEQ, EV_UID, EV_PROVIDER, EV_CHANNEL, EV_KIND, EV_TYPE,
    EV_PROVIDER_ID, EV_STATUS, EV_DEDUP, EV_ERROR_CODE, EV_FROM, EV_TO, EV_ACCOUNT, EV_TEXT,
    EV_RECEIVED, EV_PAYLOAD, EV_BODY_SHA256, EV_COLS
};
static const uint32_t s_events_oids [EV_COLS] = {
    S_OID_TEXT, S_OID_TEXT, S_OID_INT8, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT,
    S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT,
    S_OID_TEXT, S_OID_TEXT, S_OID_TIMESTAMPTZ, S_OID_BYTEA, S_OID_BYTEA};
static const char s_events_sql [] =
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
static const uint32_t s_bodies_oids [BO_COLS] = {S_OID_BYTEA, S_OID_TEXT, S_OID_BYTEA};
static const char s_bodies_sql [] =
    "INSERT INTO request_bodies (sha256, content_type, body)"
    " SELECT * FROM unnest ($1::bytea[], $2::text[], $3::bytea[])"
    " ON CONFLICT DO NOTHING";

//  request_bodies of inbound events whose body is not in the batch (a
//  request split over two batches), for the forwards' event JSON.
enum { BG_SHA256, BG_COLS };
static const uint32_t s_bodies_get_oids [BG_COLS] = {S_OID_BYTEA};
static const char s_bodies_get_sql [] =
    "SELECT sha256, body, content_type FROM request_bodies WHERE sha256 = ANY ($1::bytea[])";

//  contacts the batch's inbound events come from: their state before it.
enum { CK_PROVIDER, CK_CHANNEL, CK_ADDRESS, CK_COLS };
static const uint32_t s_contact_key_oids [CK_COLS] = {S_OID_TEXT, S_OID_TEXT, S_OID_TEXT};
static const char s_contacts_lock_sql [] =
    "SELECT c.provider, c.channel, c.address, c.opted_out,"
    " COALESCE ((extract (epoch FROM c.last_inbound_at) * 1000)::int8, 0)"
    " FROM contacts c"
    " JOIN unnest ($1::text[], $2::text[], $3::text[]) AS k (provider, channel, address)"
    " ON c.provider = k.provider AND c.channel = k.channel AND c.address = k.address"
    " ORDER BY c.provider, c.channel, c.address"
    " FOR UPDATE OF c";

//  contacts: their state after the batch (computed in C from the state
//  above and the batch's new events).
enum { CO_PROVIDER, CO_CHANNEL, CO_ADDRESS, CO_PROFILE, CO_LAST_INBOUND, CO_OPTED_OUT, CO_COLS };
static const uint32_t s_contacts_oids [CO_COLS] = {
    S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TIMESTAMPTZ, S_OID_BOOL};
static const char s_contacts_sql [] =
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
    MI_PROVIDER, MI_CHANNEL, MI_PROVIDER_ID, MI_CONTACT, MI_OURS, MI_ACCOUNT, MI_TYPE, MI_BODY,
    MI_EVENT_ID, MI_COLS
};
static const uint32_t s_messages_oids [MI_COLS] = {
    S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT,
    S_OID_TEXT, S_OID_INT8};
static const char s_messages_sql [] =
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
    OB_KIND, OB_STATE, OB_PROVIDER, OB_CHANNEL, OB_ACCOUNT, OB_FROM, OB_TO, OB_BODY, OB_CONTEXT,
    OB_URL, OB_TIMEOUT, OB_JSON, OB_REASON, OB_EVENT_ID, OB_RULE, OB_COLS
};
static const uint32_t s_outbox_oids [OB_COLS] = {
    S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT,
    S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_INT4, S_OID_TEXT, S_OID_TEXT, S_OID_INT8,
    S_OID_TEXT};
static const char s_outbox_sql [] =
    "WITH o AS ("
    " INSERT INTO outbox (kind, state, provider, channel, account, from_addr, to_addr, body,"
    " context_id, forward_url, forward_timeout_ms, event_json, reason, event_id, rule)"
    " SELECT * FROM unnest ($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int4[], $12::text[],"
    " $13::text[], $14::int8[], $15::text[])"
    " RETURNING id, kind, state, provider, channel, account, from_addr, to_addr, body, event_id)"
    " INSERT INTO messages (direction, provider, channel, contact_addr, our_addr, account,"
    " message_type, body, status, status_rank, event_id, outbox_id)"
    " SELECT 'outbound', provider, channel, to_addr, from_addr, account, 'text', body,"
    " 'queued', sb_status_rank ('queued'), event_id, id"
    " FROM o WHERE kind = 'reply' AND state = 'pending'";

//  statuses: the highest-ranked status per message of the batch, applied
//  where it ranks higher than the message's.
enum { ST_PROVIDER, ST_PROVIDER_ID, ST_STATUS, ST_ERROR_CODE, ST_COLS };
static const uint32_t s_status_oids [ST_COLS] = {S_OID_TEXT, S_OID_TEXT, S_OID_TEXT, S_OID_TEXT};
static const char s_status_sql [] =
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

//  consumer_cursors: the highest seq per ingress (reset on a new epoch).
enum { CU_INGRESS, CU_EPOCH, CU_SEQ, CU_COLS };
static const uint32_t s_cursor_oids [CU_COLS] = {S_OID_TEXT, S_OID_TEXT, S_OID_INT8};
static const char s_cursor_sql [] =
    "INSERT INTO consumer_cursors AS c (ingress_id, epoch, last_seq, updated_at)"
    " SELECT u.ingress_id, u.epoch, u.last_seq, now ()"
    " FROM unnest ($1::text[], $2::text[], $3::int8[]) AS u (ingress_id, epoch, last_seq)"
    " ON CONFLICT (ingress_id) DO UPDATE SET"
    " last_seq = CASE WHEN c.epoch = EXCLUDED.epoch"
    " THEN GREATEST (c.last_seq, EXCLUDED.last_seq) ELSE EXCLUDED.last_seq END,"
    " epoch = EXCLUDED.epoch, updated_at = now ()";

//  The outbox statements (text parameters).

//  Claim due rows ($1 at most): pending and due, oldest due first, marked
//  sending with this connection's claim token ($2). SKIP LOCKED: rows
//  another transaction holds are left to it.
static const char s_claim_sql [] =
    "UPDATE outbox o SET state = 'sending', claim_token = $2, updated_at = now ()"
    " FROM (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= now ()"
    " ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) d"
    " WHERE o.id = d.id"
    " RETURNING o.id, o.kind, o.provider, o.channel, o.account, o.from_addr, o.to_addr,"
    " o.body, o.context_id, o.forward_url, o.forward_timeout_ms, o.event_json, o.attempts,"
    " o.claim_token";

//  The send results below apply only to a row still "sending" under the
//  claim that produced the result: its claim token ($4, $4, $8, $5, $6;
//  "" for a row claimed before 0004_claim_token.sql), so a result that
//  runs late never touches a row claimed again since.

//  SENT for a reply: the provider's id on the outbox row and on the
//  outbound message, with the best status already received for that id;
//  $3 is the result's note for last_error. An id another message already
//  holds (a provider, or a mock, that repeats ids) stays on the outbox row
//  only, noted in last_error: the message is sent all the same, and that
//  id's statuses keep going to the message that had it first.
static const char s_record_sent_sql [] =
    "WITH dup AS ("
    " SELECT m.id FROM messages m JOIN outbox x ON m.provider = x.provider"
    " WHERE x.id = $1 AND m.provider_id = $2 AND m.outbox_id IS DISTINCT FROM x.id LIMIT 1),"
    " o AS ("
    " UPDATE outbox SET state = 'sent', provider_id = NULLIF ($2, ''), attempts = attempts + 1,"
    " last_error = CASE WHEN dup.id IS NULL THEN $3 ELSE ltrim ($3 || ' duplicate provider id:"
    " message ' || dup.id || ' has it') END,"
    " updated_at = now ()"
    " FROM (SELECT 1) one LEFT JOIN dup ON true"
    " WHERE outbox.id = $1 AND outbox.state = 'sending'"
    " AND outbox.claim_token IS NOT DISTINCT FROM NULLIF ($4::text, '')"
    " RETURNING outbox.id, outbox.provider, dup.id AS dup_id),"
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
    " SELECT id, dup_id FROM o";

//  SENT for a forward: the bot's text becomes a reply due now, unless the
//  contact opted out meanwhile or the WhatsApp window closed ($3 ms).
static const char s_record_bot_sql [] =
    "WITH cur AS ("
    " SELECT o.id, o.channel, COALESCE (c.opted_out, false) AS opted_out, c.last_inbound_at"
    " FROM outbox o LEFT JOIN contacts c"
    " ON c.provider = o.provider AND c.channel = o.channel AND c.address = o.to_addr"
    " WHERE o.id = $1 AND o.state = 'sending'"
    " AND o.claim_token IS NOT DISTINCT FROM NULLIF ($4::text, '')),"
    " d AS ("
    " SELECT id, CASE WHEN $2 = '' THEN 'bot_no_reply'"
    " WHEN opted_out THEN 'opted_out'"
    " WHEN channel = 'voice' THEN 'unsupported_channel'"
    " WHEN channel = 'whatsapp' AND (last_inbound_at IS NULL"
    " OR last_inbound_at < now () - $3::int8 * interval '1 millisecond') THEN 'outside_window'"
    " ELSE '' END AS reason FROM cur),"
    " o AS ("
    " UPDATE outbox SET kind = CASE WHEN $2 = '' THEN kind ELSE 'reply' END, body = $2,"
    " state = CASE WHEN d.reason = '' THEN 'pending' ELSE 'not_sent' END, reason = d.reason,"
    " attempts = 0, next_attempt_at = now (), last_error = '', updated_at = now ()"
    " FROM d WHERE outbox.id = d.id AND outbox.state = 'sending'"
    " AND outbox.claim_token IS NOT DISTINCT FROM NULLIF ($4::text, '')"
    " RETURNING outbox.id, outbox.state, outbox.reason, outbox.provider, outbox.channel,"
    " outbox.account, outbox.from_addr, outbox.to_addr, outbox.body, outbox.event_id),"
    " msg AS ("
    " INSERT INTO messages (direction, provider, channel, contact_addr, our_addr, account,"
    " message_type, body, status, status_rank, event_id, outbox_id)"
    " SELECT 'outbound', provider, channel, to_addr, from_addr, account, 'text', body, 'queued',"
    " sb_status_rank ('queued'), event_id, id FROM o WHERE state = 'pending' RETURNING id)"
    " SELECT id, state, reason FROM o";

//  RETRY: back off ($3 base, $4 max, jitter in (0.5, 1]; at least $5
//  Retry-After ms), or dead after $2 attempts.
static const char s_record_retry_sql [] =
    "WITH o AS ("
    " UPDATE outbox SET attempts = attempts + 1,"
    " state = CASE WHEN attempts + 1 >= $2::int THEN 'dead' ELSE 'pending' END,"
    " next_attempt_at = now () + GREATEST ("
    " LEAST ($4::float8, $3::float8 * power (2::float8, LEAST (attempts, 60)))"
    " * (1.0 - random () * 0.5), $5::float8) * interval '1 millisecond',"
    " last_error = $6, updated_at = now ()"
    " WHERE id = $1 AND state = 'sending'"
    " AND claim_token IS NOT DISTINCT FROM NULLIF ($8::text, '')"
    " RETURNING id, state, next_attempt_at),"
    " msg AS ("
    " UPDATE messages m SET status = 'failed', status_rank = sb_status_rank ('failed'),"
    " error_code = $7, updated_at = now ()"
    " FROM o WHERE m.outbox_id = o.id AND o.state = 'dead'"
    " AND m.status_rank < sb_status_rank ('failed') RETURNING m.id)"
    " SELECT id, state, (extract (epoch FROM next_attempt_at - now ()) * 1000)::int8 FROM o";

//  FINAL: failed; the contact opted out when the provider says so ($4).
static const char s_record_final_sql [] =
    "WITH o AS ("
    " UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $2,"
    " updated_at = now ()"
    " WHERE id = $1 AND state = 'sending'"
    " AND claim_token IS NOT DISTINCT FROM NULLIF ($5::text, '')"
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
static const char s_record_refused_sql [] =
    "UPDATE outbox SET attempts = attempts + 1,"
    " state = CASE WHEN $2 <> 'retry' THEN $2"
    " WHEN attempts + 1 >= $4::int THEN 'dead' ELSE 'pending' END,"
    " next_attempt_at = now () + $3::int8 * interval '1 millisecond',"
    " last_error = $5, updated_at = now ()"
    " WHERE id = $1 AND state = 'sending'"
    " AND claim_token IS NOT DISTINCT FROM NULLIF ($6::text, '')"
    " RETURNING id, state";

typedef struct {
    const char *name;   //  prepared statement name
    const char *sql;    //  its text
} s_statement_t;

static const s_statement_t s_statements [] = {
    {"sb_events", s_events_sql},     {"sb_contacts_lock", s_contacts_lock_sql},
    {"sb_contacts", s_contacts_sql}, {"sb_messages", s_messages_sql},
    {"sb_outbox", s_outbox_sql},     {"sb_status", s_status_sql},
    {"sb_cursor", s_cursor_sql},     {"sb_bodies", s_bodies_sql},
    {"sb_bodies_get", s_bodies_get_sql},
    {"sb_claim", s_claim_sql},       {"sb_record_sent", s_record_sent_sql},
    {"sb_record_bot", s_record_bot_sql}, {"sb_record_retry", s_record_retry_sql},
    {"sb_record_final", s_record_final_sql},
};

//  ---------------------------------------------------------------------
//  Connection

//  Server notices ("relation ... already exists, skipping") go to the
//  debug log rather than libpq's default, stderr.
static void
s_notice (void *arg, const char *message)
{
    (void) arg;
    char line [512];
    sb_debug (S_MODULE, "notice from PostgreSQL message=\"%s\"",
              s_line (message, line, sizeof line));
}

//  The value of keyword in conninfo ("" parsed as the PG* variables
//  would be: libpq's defaults), or NULL when unset. Caller frees.
static char *
s_conninfo_value (const char *conninfo, const char *keyword)
{
    PQconninfoOption *opts = *conninfo ? PQconninfoParse (conninfo, NULL) : PQconndefaults ();
    char *value = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp (o->keyword, keyword) == 0 && o->val && *o->val)
            value = strdup (o->val);
    PQconninfoFree (opts);
    //  A conninfo without it (or a plain database name) still gets the
    //  environment's (PGOPTIONS, ...).
    if (!value && *conninfo)
        return s_conninfo_value ("", keyword);
    return value;
}

//  The "options" to connect with: the user's, plus our statement_timeout
//  and lock_timeout where they do not set them. NULL when out of memory.
static char *
s_options (const char *conninfo, int timeout_ms)
{
    char *theirs = s_conninfo_value (conninfo, "options");
    const char *base = theirs ? theirs : "";
    char ours [128] = "";
    if (!strstr (base, "statement_timeout"))
        snprintf (ours, sizeof ours, " -c statement_timeout=%d", timeout_ms - timeout_ms / 5);
    if (!strstr (base, "lock_timeout")) {
        size_t used = strlen (ours);
        snprintf (ours + used, sizeof ours - used, " -c lock_timeout=%d", timeout_ms / 2);
    }
    size_t size = strlen (base) + strlen (ours) + 1;
    char *options = malloc (size);
    if (options)
        snprintf (options, size, "%s%s", base, ours);
    free (theirs);
    return options;
}

//  Drop the connection without waiting for anything: a server past its
//  deadline is never waited on again. sb_store_ensure reconnects.
//  Its claim token goes to the dropped ones: a statement it sent may still
//  run late, and sb_store_reclaim may need to put back what it claimed.
static void
s_drop (sb_store_t *self)
{
    if (self->conn)
        PQfinish (self->conn);
    self->conn = NULL;
    self->prepared = false;
    if (!self->token [0])
        return;
    if (self->dropped_count == S_DROPPED_MAX) {
        sb_log_every (&self->dropped_log, SB_LOG_WARN, S_MODULE,
                      "claim token of a dropped connection forgotten, its rows wait for a"
                      " restart token=%s kept=%d", self->dropped [0], S_DROPPED_MAX);
        memmove (self->dropped [0], self->dropped [1],
                 (S_DROPPED_MAX - 1) * sizeof self->dropped [0]);
        self->dropped_count--;
    }
    memcpy (self->dropped [self->dropped_count++], self->token, sizeof self->token);
    self->token [0] = 0;
}

//  n random bytes as 2n hex digits into out (2n + 1 bytes). 0, or -1.
static int
s_random_hex (char *out, size_t n)
{
    unsigned char bytes [16];
    assert (n <= sizeof bytes);
    if (RAND_bytes (bytes, (int) n) != 1) {
        sb_error (S_MODULE, "no random bytes for a claim token");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        snprintf (out + 2 * i, 3, "%02x", bytes [i]);
    return 0;
}

//  A round trip passed its deadline: log (once a second, with a count)
//  and drop the connection.
static void
s_timeout (sb_store_t *self, const char *what)
{
    sb_log_every (&self->log_timeout, SB_LOG_ERROR, S_MODULE,
                  "PostgreSQL did not answer in time, dropping the connection what=%s timeout_ms=%d",
                  what, self->timeout_ms);
    s_drop (self);
}

//  Wait until conn's socket is readable (read) or writable (write), up to
//  deadline_us: 1 ready, 0 past the deadline, -1 error (logged).
static int
s_poll (PGconn *conn, bool read, bool write, int64_t deadline_us)
{
    int fd = PQsocket (conn);
    if (fd < 0)
        return -1;
    for (;;) {
        int64_t left_us = deadline_us - sb_time_mono_us ();
        if (left_us <= 0)
            return 0;
        struct pollfd pfd = {.fd = fd, .events = (short) ((read ? POLLIN : 0) | (write ? POLLOUT : 0))};
        int n = poll (&pfd, 1, (int) ((left_us + 999) / 1000));
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR) {
            char buf [128];
            sb_error (S_MODULE, "poll on the PostgreSQL socket failed error=\"%s\"",
                      sb_strerror (errno, buf, sizeof buf));
            return -1;
        }
    }
}

//  Connect within the deadline (PQconnectStartParams, then PQconnectPoll
//  whenever the socket is ready as it asks). 0, or -1 (logged).
static int
s_connect (sb_store_t *self)
{
    s_drop (self);
    //  Keywords before "dbname" are defaults DATABASE_URL may override;
    //  after it, ours. The conninfo is expanded as "dbname".
    char ms [16], idle [16], interval [16];
    snprintf (ms, sizeof ms, "%d", self->timeout_ms);
    snprintf (idle, sizeof idle, "%d", self->timeout_ms / 2000 > 0 ? self->timeout_ms / 2000 : 1);
    snprintf (interval, sizeof interval, "%d",
              self->timeout_ms / 6000 > 0 ? self->timeout_ms / 6000 : 1);
    const char *keys [] = {"keepalives", "keepalives_idle", "keepalives_interval",
                           "keepalives_count", "tcp_user_timeout", "dbname",
                           "fallback_application_name", "client_encoding", "options", NULL};
    const char *values [] = {"1", idle, interval, "3", ms, self->conninfo,
                             "switchboard-dispatcher", "UTF8", self->options, NULL};
    PGconn *conn = PQconnectStartParams (keys, values, 1);
    if (!conn)
        return -1;
    int64_t deadline_us = sb_time_mono_us () + (int64_t) self->timeout_ms * 1000;
    PostgresPollingStatusType state = PQstatus (conn) == CONNECTION_BAD ? PGRES_POLLING_FAILED
                                                                       : PGRES_POLLING_WRITING;
    bool late = false;
    while (state == PGRES_POLLING_READING || state == PGRES_POLLING_WRITING) {
        //  The socket may change from one PQconnectPoll to the next.
        int ready = s_poll (conn, state == PGRES_POLLING_READING,
                            state == PGRES_POLLING_WRITING, deadline_us);
        if (ready <= 0) {
            late = ready == 0;
            state = PGRES_POLLING_FAILED;
            break;
        }
        state = PQconnectPoll (conn);
    }
    if (state != PGRES_POLLING_OK || PQsetnonblocking (conn, 1) != 0) {
        char line [512];
        s_line (late ? "no answer within the deadline" : PQerrorMessage (conn), line, sizeof line);
        if (self->healthy)
            sb_error (S_MODULE, "cannot connect to PostgreSQL error=\"%s\" timeout_ms=%d", line,
                      self->timeout_ms);
        else
            sb_log_every (&self->log_connect, SB_LOG_WARN, S_MODULE,
                          "still cannot connect to PostgreSQL error=\"%s\"", line);
        self->healthy = false;
        PQfinish (conn);
        return -1;
    }
    char random [17];
    if (s_random_hex (random, 8) != 0) {
        PQfinish (conn);
        return -1;
    }
    snprintf (self->token, sizeof self->token, "%s.%s", self->instance, random);
    self->conn = conn;
    self->last_ok_us = sb_time_mono_us ();
    PQsetNoticeProcessor (self->conn, s_notice, NULL);
    if (!self->healthy)
        sb_info (S_MODULE, "connected to PostgreSQL server_version=%d",
                 PQserverVersion (self->conn));
    self->healthy = true;
    return 0;
}

sb_store_t *
sb_store_new (const char *conninfo, int timeout_ms)
{
    sb_store_t *self = calloc (1, sizeof (*self));
    if (!self)
        return NULL;
    self->conninfo = strdup (s_str (conninfo));
    self->healthy = true;      //  so a first failure is logged
    self->window_ms = S_WINDOW_MS;
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : SB_STORE_TIMEOUT_MS;
    self->log_result = (sb_log_every_t) SB_LOG_EVERY (S_LOG_EVERY_MS);
    self->log_timeout = (sb_log_every_t) SB_LOG_EVERY (S_LOG_EVERY_MS);
    self->log_connect = (sb_log_every_t) SB_LOG_EVERY (10 * S_LOG_EVERY_MS);
    self->dropped_log = (sb_log_every_t) SB_LOG_EVERY (S_LOG_EVERY_MS);
    if (s_random_hex (self->instance, (S_INSTANCE_SIZE - 1) / 2) != 0) {
        sb_store_destroy (&self);
        return NULL;
    }
    if (self->conninfo)
        self->options = s_options (self->conninfo, self->timeout_ms);
    if (!self->conninfo || !self->options || s_connect (self) != 0) {
        sb_store_destroy (&self);
        return NULL;
    }
    return self;
}

void
sb_store_destroy (sb_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_store_t *self = *self_p;
    s_drop (self);
    free (self->conninfo);
    free (self->options);
    free (self);
    *self_p = NULL;
}

int64_t
sb_store_last_ok_us (const sb_store_t *self)
{
    return self ? self->last_ok_us : 0;
}

bool
sb_store_alive (int64_t last_ok_us, int timeout_ms)
{
    int64_t limit_us = ((int64_t) timeout_ms + S_ALIVE_SLACK_MS) * 1000;
    return last_ok_us > 0 && sb_time_mono_us () - last_ok_us < limit_us;
}

//  ---------------------------------------------------------------------
//  Round trips: each sends what is queued and waits for the answers
//  until one deadline, timeout_ms after it began (s_flush).

//  Begin a round trip: send everything queued, reading input meanwhile
//  so the server never blocks on us. 0, or -1 (logged; dropped when late).
static int
s_flush (sb_store_t *self)
{
    self->deadline_us = sb_time_mono_us () + (int64_t) self->timeout_ms * 1000;
    while (self->conn) {
        int rc = PQflush (self->conn);
        if (rc == 0)
            return 0;
        if (rc < 0)
            break;
        int ready = s_poll (self->conn, true, true, self->deadline_us);
        if (ready == 0) {
            s_timeout (self, "send");
            return -1;
        }
        if (ready < 0 || !PQconsumeInput (self->conn))
            break;
    }
    s_log_result (self, NULL, "send to PostgreSQL");
    return -1;
}

//  Wait, until the round trip's deadline, for PQgetResult to have
//  something without blocking. 0, or -1 (logged; dropped when late).
static int
s_await (sb_store_t *self, const char *what)
{
    while (self->conn && PQisBusy (self->conn)) {
        int ready = s_poll (self->conn, true, false, self->deadline_us);
        if (ready == 0) {
            s_timeout (self, what);
            return -1;
        }
        if (ready < 0 || !PQconsumeInput (self->conn)) {
            s_log_result (self, NULL, what);
            return -1;
        }
    }
    return self->conn ? 0 : -1;
}

//  Take results up to the next NULL (the end of one pipelined statement,
//  or of everything sent outside pipeline mode) within the round trip's
//  deadline: the first (first) or the last (the one that failed, if any);
//  NULL when there was none or the wait failed (logged). Caller PQclears.
static PGresult *
s_collect (sb_store_t *self, bool first, const char *what)
{
    PGresult *kept = NULL;
    for (;;) {
        if (s_await (self, what) != 0) {
            PQclear (kept);
            return NULL;
        }
        PGresult *r = PQgetResult (self->conn);
        if (!r)
            break;
        if (kept && first)
            PQclear (r);
        else {
            PQclear (kept);
            kept = r;
        }
    }
    if (!kept)
        s_log_result (self, NULL, what);
    return kept;
}

//  One round trip for what is queued (outside pipeline mode): send it and
//  take every result; the last one, or NULL (logged). Caller PQclears.
static PGresult *
s_finish (sb_store_t *self, const char *what)
{
    return s_flush (self) == 0 ? s_collect (self, false, what) : NULL;
}

//  Run sql (with text parameters, NULL value = SQL NULL; with none, the
//  simple protocol, so sql may hold several statements) in one round
//  trip. The last result (caller PQclears), or NULL (logged).
static PGresult *
s_run (sb_store_t *self, const char *sql, int nparams, const char *const *values,
       const char *what)
{
    int sent = !self->conn ? 0
               : nparams ? PQsendQueryParams (self->conn, sql, nparams, NULL, values, NULL, NULL, 0)
                         : PQsendQuery (self->conn, sql);
    if (!sent) {
        s_log_result (self, NULL, what);
        return NULL;
    }
    return s_finish (self, what);
}

//  Run one statement; the result when its status is want (a successful
//  round trip), else NULL (logged).
static PGresult *
s_exec (sb_store_t *self, const char *sql, int nparams, const char *const *values,
        ExecStatusType want, const char *what)
{
    self->sqlstate [0] = 0;
    PGresult *r = s_run (self, sql, nparams, values, what);
    if (!r)
        return NULL;
    if (PQresultStatus (r) != want) {
        s_log_result (self, r, what);
        PQclear (r);
        return NULL;
    }
    self->last_ok_us = sb_time_mono_us ();
    return r;
}

//  Run a statement that returns no rows. 0 or -1 (logged).
static int
s_exec_ok (sb_store_t *self, const char *sql, const char *what)
{
    PGresult *r = s_exec (self, sql, 0, NULL, PGRES_COMMAND_OK, what);
    PQclear (r);
    return r ? 0 : -1;
}

int
sb_store_ensure (sb_store_t *self)
{
    if (self->conn && PQstatus (self->conn) == CONNECTION_OK) {
        //  A connection left inside a transaction (a failure we could not
        //  clean up) is rolled back before use.
        PGTransactionStatusType ts = PQtransactionStatus (self->conn);
        if (ts == PQTRANS_IDLE)
            return 0;
        if ((ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
            && s_exec_ok (self, "ROLLBACK", "rollback") == 0)
            return 0;
    }
    if (self->healthy)
        sb_warn (S_MODULE, "connection to PostgreSQL lost, reconnecting");
    self->healthy = false;
    return s_connect (self);
}

int
sb_store_ping (sb_store_t *self)
{
    if (sb_store_ensure (self) != 0)
        return -1;
    PGresult *r = s_exec (self, "SELECT 1", 0, NULL, PGRES_TUPLES_OK, "ping");
    PQclear (r);
    return r ? 0 : -1;
}

//  Prepare the write statements on this connection, once.
static int
s_prepare (sb_store_t *self)
{
    if (self->prepared)
        return 0;
    for (size_t i = 0; i < sizeof s_statements / sizeof s_statements [0]; i++) {
        char what [80];
        snprintf (what, sizeof what, "prepare %s", s_statements [i].name);
        if (!PQsendPrepare (self->conn, s_statements [i].name, s_statements [i].sql, 0, NULL)) {
            s_log_result (self, NULL, what);
            return -1;
        }
        PGresult *r = s_finish (self, what);
        if (!r)
            return -1;
        bool ok = PQresultStatus (r) == PGRES_COMMAND_OK;
        if (!ok)
            s_log_result (self, r, what);
        PQclear (r);
        if (!ok)
            return -1;
    }
    self->prepared = true;
    return 0;
}

//  Connected, idle and prepared; 0 or -1.
static int
s_ready (sb_store_t *self)
{
    if (sb_store_ensure (self) != 0)
        return -1;
    return s_prepare (self);
}

//  ---------------------------------------------------------------------
//  Migrations

static int
s_name_cmp (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

//  dir/*.sql names, sorted. NULL on error (logged), with *count set.
static char **
s_migration_names (const char *dir, size_t *count)
{
    *count = 0;
    DIR *d = opendir (dir);
    if (!d) {
        char buf [128];
        sb_error (S_MODULE, "cannot open migrations dir=%s error=\"%s\"", dir,
                  sb_strerror (errno, buf, sizeof buf));
        return NULL;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    bool failed = false;
    while ((e = readdir (d))) {
        size_t len = strlen (e->d_name);
        if (e->d_name [0] == '.' || len < 5 || strcmp (e->d_name + len - 4, ".sql") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc (names, cap * sizeof (*names));
            if (!grown) {
                failed = true;
                break;
            }
            names = grown;
        }
        if (!(names [n] = strdup (e->d_name))) {
            failed = true;
            break;
        }
        n++;
    }
    closedir (d);
    if (failed) {
        for (size_t i = 0; i < n; i++)
            free (names [i]);
        free (names);
        sb_error (S_MODULE, "out of memory listing migrations");
        return NULL;
    }
    if (n)
        qsort (names, n, sizeof (*names), s_name_cmp);
    *count = n;
    return names ? names : calloc (1, sizeof (char *));
}

//  The file's content, NUL-terminated. Caller frees; NULL on error (logged).
static char *
s_read_file (const char *path)
{
    char buf [128];
    FILE *f = fopen (path, "rb");
    if (!f) {
        sb_error (S_MODULE, "cannot open migration file=%s error=\"%s\"", path,
                  sb_strerror (errno, buf, sizeof buf));
        return NULL;
    }
    char *data = malloc (S_MIGRATION_MAX + 1);
    size_t size = data ? fread (data, 1, S_MIGRATION_MAX + 1, f) : 0;
    bool bad = !data || ferror (f) || size > S_MIGRATION_MAX;
    fclose (f);
    if (bad) {
        sb_error (S_MODULE, "cannot read migration file=%s (unreadable or over %d bytes)", path,
                  S_MIGRATION_MAX);
        free (data);
        return NULL;
    }
    data [size] = 0;
    if (strlen (data) != size) {
        sb_error (S_MODULE, "migration file=%s contains a NUL byte", path);
        free (data);
        return NULL;
    }
    return data;
}

//  Apply one file in its own transaction, recording it.
static int
s_migrate_one (sb_store_t *self, const char *dir, const char *name)
{
    char version [256];
    snprintf (version, sizeof version, "%.*s", (int) (strlen (name) - 4), name);
    const char *params [] = {version};
    PGresult *r = s_exec (self, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, params,
                          PGRES_TUPLES_OK, "migration lookup");
    if (!r)
        return -1;
    bool applied = PQntuples (r) > 0;
    PQclear (r);
    if (applied)
        return 0;

    size_t plen = strlen (dir) + strlen (name) + 2;
    char *path = malloc (plen);
    if (!path)
        return -1;
    snprintf (path, plen, "%s/%s", dir, name);
    char *sql = s_read_file (path);
    free (path);
    if (!sql)
        return -1;

    int rc = -1;
    if (s_exec_ok (self, "BEGIN", "migration begin") != 0)
        goto done;
    //  The file is our own SQL, several statements: the simple protocol.
    r = s_run (self, sql, 0, NULL, "migration");
    if (!r)
        goto rollback;
    if (PQresultStatus (r) != PGRES_COMMAND_OK && PQresultStatus (r) != PGRES_TUPLES_OK) {
        char line [512];
        const char *pos = PQresultErrorField (r, PG_DIAG_STATEMENT_POSITION);
        sb_error (S_MODULE, "migration failed version=%s error=\"%s\" position=%s", version,
                  s_line (PQresultErrorMessage (r), line, sizeof line), pos ? pos : "-");
        PQclear (r);
        goto rollback;
    }
    PQclear (r);
    r = s_exec (self, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now ())", 1,
                params, PGRES_COMMAND_OK, "migration record");
    if (!r)
        goto rollback;
    PQclear (r);
    r = s_exec (self, "COMMIT", 0, NULL, PGRES_COMMAND_OK, "migration commit");
    bool ok = r && strcmp (PQcmdStatus (r), "COMMIT") == 0;
    PQclear (r);
    if (ok) {
        sb_info (S_MODULE, "migration applied version=%s", version);
        rc = 0;
    }
    goto done;
rollback:
    if (self->conn)
        s_exec_ok (self, "ROLLBACK", "migration rollback");
done:
    free (sql);
    return rc;
}

int
sb_store_migrate (sb_store_t *self, const char *dir)
{
    if (sb_store_ensure (self) != 0)
        return -1;
    size_t count;
    char **names = s_migration_names (dir, &count);
    if (!names)
        return -1;
    int rc = -1;
    //  A migration may take long (or wait for another dispatcher's): a
    //  longer deadline, on both sides, for this session's migrations.
    int timeout_ms = self->timeout_ms;
    self->timeout_ms = timeout_ms > S_MIGRATE_TIMEOUT_MS ? timeout_ms : S_MIGRATE_TIMEOUT_MS;
    char set [96];
    snprintf (set, sizeof set, "SET statement_timeout = %d; SET lock_timeout = %d",
              self->timeout_ms - self->timeout_ms / 5, self->timeout_ms / 2);
    PGresult *r = NULL;
    if (s_exec_ok (self, set, "migration timeouts") != 0)
        goto done;
    //  A session lock: held across the per-file transactions, so a second
    //  dispatcher waits here and then finds everything applied.
    r = s_exec (self, "SELECT pg_advisory_lock (" S_MIGRATE_LOCK ")", 0, NULL, PGRES_TUPLES_OK,
                "migration lock");
    if (!r)
        goto done;
    PQclear (r);
    r = s_exec (self,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now ())",
                0, NULL, PGRES_COMMAND_OK, "create schema_migrations");
    if (r) {
        PQclear (r);
        size_t i;
        for (i = 0; i < count; i++)
            if (s_migrate_one (self, dir, names [i]) != 0)
                break;
        rc = i == count ? 0 : -1;
    }
    PQclear (s_exec (self, "SELECT pg_advisory_unlock (" S_MIGRATE_LOCK ")", 0, NULL,
                     PGRES_TUPLES_OK, "migration unlock"));
    //  New tables: statements prepared before now may be stale.
    if (rc == 0 && self->prepared) {
        s_exec_ok (self, "DEALLOCATE ALL", "deallocate");
        self->prepared = false;
    }
done:
    if (self->conn)
        s_exec_ok (self, "RESET statement_timeout; RESET lock_timeout", "migration timeouts");
    self->timeout_ms = timeout_ms;
    for (size_t i = 0; i < count; i++)
        free (names [i]);
    free (names);
    return rc;
}

//  ---------------------------------------------------------------------
//  Pipeline plumbing

//  The next pipelined statement's result if its status is want (caller
//  PQclears), else NULL (logged unless it was only aborted by an earlier
//  failure). Waits within the round trip's deadline.
static PGresult *
s_take (sb_store_t *self, ExecStatusType want, const char *what)
{
    self->sqlstate [0] = 0;
    PGresult *r = s_collect (self, true, what);
    if (!r)
        return NULL;
    if (PQresultStatus (r) != want) {
        if (PQresultStatus (r) != PGRES_PIPELINE_ABORTED)
            s_log_result (self, r, what);
        PQclear (r);
        return NULL;
    }
    return r;
}

//  Leave pipeline mode after a failure: end the pipeline, drop its
//  results, roll back, within one round trip's deadline. A connection that
//  does not come back clean is dropped (sb_store_ensure reconnects).
static void
s_pipeline_abort (sb_store_t *self, bool synced)
{
    if (self->conn && PQpipelineStatus (self->conn) != PQ_PIPELINE_OFF) {
        if (!synced && PQstatus (self->conn) == CONNECTION_OK)
            PQpipelineSync (self->conn);
        int nulls = s_flush (self) == 0 ? 0 : 2;
        while (self->conn && PQstatus (self->conn) == CONNECTION_OK && nulls < 2) {
            if (s_await (self, "end of pipeline") != 0)
                break;
            PGresult *r = PQgetResult (self->conn);
            if (!r) {
                nulls++;
                continue;
            }
            nulls = 0;
            bool sync = PQresultStatus (r) == PGRES_PIPELINE_SYNC;
            PQclear (r);
            if (sync)
                break;
        }
        if (!self->conn)
            return;
        if (!PQexitPipelineMode (self->conn)) {
            sb_warn (S_MODULE, "cannot leave pipeline mode, dropping the connection");
            s_drop (self);
            return;
        }
    }
    if (self->conn && PQstatus (self->conn) == CONNECTION_OK
        && PQtransactionStatus (self->conn) != PQTRANS_IDLE)
        s_exec_ok (self, "ROLLBACK", "rollback");
}

//  Queue a prepared write statement with a table's arrays as parameters.
static int
s_send_table (sb_store_t *self, const char *name, s_table_t *t)
{
    const char *values [S_MAX_PARAMS];
    int lengths [S_MAX_PARAMS];
    int formats [S_MAX_PARAMS];
    for (int i = 0; i < t->ncols; i++) {
        if (s_array_finish (&t->cols [i]) != 0) {
            sb_error (S_MODULE, "out of memory building statement=%s", name);
            return -1;
        }
        values [i] = (const char *) t->cols [i].data;
        lengths [i] = (int) t->cols [i].size;
        formats [i] = 1;
        if (t->cols [i].size > INT32_MAX) {
            sb_error (S_MODULE, "batch too large statement=%s", name);
            return -1;
        }
    }
    if (!PQsendQueryPrepared (self->conn, name, t->ncols, values, lengths, formats, 0)) {
        s_log_result (self, NULL, name);
        return -1;
    }
    return 0;
}

static int
s_send_sql (sb_store_t *self, const char *sql)
{
    if (!PQsendQueryParams (self->conn, sql, 0, NULL, NULL, NULL, NULL, 0)) {
        s_log_result (self, NULL, sql);
        return -1;
    }
    return 0;
}

//  Queue COMMIT and end the pipeline.
static int
s_send_commit (sb_store_t *self)
{
    if (s_send_sql (self, "COMMIT"))
        return -1;
    if (!PQpipelineSync (self->conn)) {
        s_log_result (self, NULL, "pipeline sync");
        return -1;
    }
    return 0;
}

//  Take COMMIT's answer and the pipeline's end: true when committed
//  (COMMIT of a transaction that failed answers ROLLBACK); *synced when
//  the end of the pipeline came as expected.
static bool
s_take_commit (sb_store_t *self, bool *synced)
{
    *synced = false;
    PGresult *r = s_take (self, PGRES_COMMAND_OK, "commit");
    if (!r)
        return false;
    bool committed = strcmp (PQcmdStatus (r), "COMMIT") == 0;
    PQclear (r);
    r = s_await (self, "end of pipeline") == 0 ? PQgetResult (self->conn) : NULL;
    *synced = r && PQresultStatus (r) == PGRES_PIPELINE_SYNC;
    PQclear (r);
    if (committed)
        self->last_ok_us = sb_time_mono_us ();
    return committed;
}

//  ---------------------------------------------------------------------
//  The batch

//  A contact the batch's inbound events come from.
typedef struct {
    const char *provider;      //  provider name (static)
    const char *channel;       //  channel name (static)
    const char *address;       //  as stored (see S_KEY_MAX), borrowed from its item
    const char *profile_name;  //  last non-empty profile name of the batch (borrowed)
    int64_t last_inbound_ms;   //  before the batch, then with the batch's events (0 = never)
    bool opted_out;            //  before the batch, then with the batch's events
    bool touched;              //  a new event of the batch changed it
} s_contact_t;

//  One event of the batch.
typedef struct {
    bool fresh;        //  inserted now (not a duplicate)
    int64_t id;        //  events.id when fresh
    size_t contact;    //  index in contacts, or SIZE_MAX
    char *address;     //  inbound: the sender as stored (valid UTF-8, at most S_KEY_MAX)
    bool has_body;     //  its request had a raw body: body_sha256 is its hash
    bool inline_body;  //  a request of one event: its body stays in the payload
    uint8_t body_sha256 [SB_EVENT_SHA256_SIZE];  //  request_bodies key
} s_item_t;

//  A raw body fetched from request_bodies (s_bodies_get_sql).
typedef struct {
    uint8_t sha256 [SB_EVENT_SHA256_SIZE];  //  its key
    ProtobufCBinaryData body;               //  PQunescapeBytea's (PQfreemem)
    char *content_type;                     //  the request's Content-Type (strdup)
} s_body_t;

//  An ingress's cursor as the batch leaves it.
typedef struct {
    const char *ingress_id;  //  borrowed
    const char *epoch;       //  borrowed
    uint64_t seq;            //  highest seq of that epoch in the batch
} s_cursor_t;

typedef struct {
    sb_event_t *const *events;  //  the caller's events
    size_t count;               //  how many
    s_item_t *items;            //  one per event
    s_contact_t *contacts;      //  sorted by key, unique
    size_t ncontacts;           //  how many
    s_cursor_t *cursors;        //  one per ingress
    size_t ncursors;            //  how many
    s_table_t events_t;         //  events insert
    s_table_t keys_t;           //  contacts lock
    s_table_t contacts_t;       //  contacts upsert
    s_table_t messages_t;       //  inbound messages
    s_table_t outbox_t;         //  outbox rows
    s_table_t status_t;         //  statuses
    s_table_t cursor_t;         //  cursors
    s_table_t bodies_t;         //  request bodies insert
    s_table_t bodies_get_t;     //  request bodies to fetch for forwards
    bool forwards;              //  the rules may forward: fetch missing bodies
    s_body_t *fetched;          //  what that fetch found
    size_t nfetched;            //  how many
} s_batch_t;

static void
s_batch_free (s_batch_t *b)
{
    for (size_t i = 0; b->items && i < b->count; i++)
        free (b->items [i].address);
    free (b->items);
    free (b->contacts);
    free (b->cursors);
    s_table_free (&b->events_t);
    s_table_free (&b->keys_t);
    s_table_free (&b->contacts_t);
    s_table_free (&b->messages_t);
    s_table_free (&b->outbox_t);
    s_table_free (&b->status_t);
    s_table_free (&b->cursor_t);
    s_table_free (&b->bodies_t);
    s_table_free (&b->bodies_get_t);
    for (size_t i = 0; i < b->nfetched; i++) {
        PQfreemem (b->fetched [i].body.data);
        free (b->fetched [i].content_type);
    }
    free (b->fetched);
}

static bool
s_inbound (const sb_event_t *e)
{
    return (e->kind == SB_KIND_MESSAGE || e->kind == SB_KIND_GATHER || e->kind == SB_KIND_CALL)
        && e->from && *e->from;
}

static int
s_contact_cmp3 (const char *p, const char *c, const char *a, const s_contact_t *y)
{
    int d = strcmp (p, y->provider);
    if (!d)
        d = strcmp (c, y->channel);
    if (!d)
        d = strcmp (a, y->address);
    return d;
}

static int
s_contact_cmp (const void *a, const void *b)
{
    const s_contact_t *x = a;
    return s_contact_cmp3 (x->provider, x->channel, x->address, b);
}

static size_t
s_contact_find (const s_batch_t *b, const char *p, const char *c, const char *a)
{
    size_t lo = 0, hi = b->ncontacts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = s_contact_cmp3 (p, c, a, &b->contacts [mid]);
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
    const s_item_t *item = &b->items [i];
    if (item->inline_body) {
        *content_type = b->events [i]->raw_content_type;
        return &b->events [i]->raw_body;
    }
    if (!item->has_body)
        return NULL;
    for (size_t k = i + 1; k-- > 0;)
        if (b->events [k]->raw_body.len && b->items [k].has_body
            && memcmp (b->items [k].body_sha256, item->body_sha256, SB_EVENT_SHA256_SIZE) == 0) {
            *content_type = b->events [k]->raw_content_type;
            return &b->events [k]->raw_body;
        }
    for (size_t k = 0; k < b->nfetched; k++)
        if (memcmp (b->fetched [k].sha256, item->body_sha256, SB_EVENT_SHA256_SIZE) == 0) {
            *content_type = b->fetched [k].content_type;
            return &b->fetched [k].body;
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
        const s_item_t *item = &b->items [i];
        const char *type;
        if (!s_inbound (b->events [i]) || !item->has_body || s_batch_body (b, i, &type))
            continue;
        if (last && memcmp (last, item->body_sha256, SB_EVENT_SHA256_SIZE) == 0)
            continue;
        last = item->body_sha256;
        s_array_bytes (&b->bodies_get_t.cols [BG_SHA256], last, SB_EVENT_SHA256_SIZE);
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
    const sb_event_t *e = b->events [i];
    s_item_t *item = &b->items [i];
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
    const ProtobufCBinaryData *last = *last_body < i ? &b->events [*last_body]->raw_body : NULL;
    if (last && last->len == e->raw_body.len
        && memcmp (last->data, e->raw_body.data, last->len) == 0) {
        memcpy (item->body_sha256, b->items [*last_body].body_sha256, SB_EVENT_SHA256_SIZE);
        return;
    }
    *last_body = i;
    sb_event_sha256 (e->raw_body.data, e->raw_body.len, item->body_sha256);
    s_array_bytes (&b->bodies_t.cols [BO_SHA256], item->body_sha256, SB_EVENT_SHA256_SIZE);
    s_array_text (&b->bodies_t.cols [BO_TYPE], e->raw_content_type);
    s_array_bytes (&b->bodies_t.cols [BO_BODY], e->raw_body.data, e->raw_body.len);
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
    uint8_t n [8];
    s_put64 (n, (uint64_t) size);
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
s_content_key (const sb_event_t *e, const uint8_t body_sha256 [SB_EVENT_SHA256_SIZE], char *out,
               size_t size)
{
    assert (size >= 8 + 2 * 32 + 1);
    out [0] = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
    if (!ctx || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1) {
        EVP_MD_CTX_free (ctx);
        return;  //  no key: unique by journal position only, as before
    }
    uint8_t index [8];
    s_put64 (index, e->request_index);
    s_content_key_text (ctx, sb_event_provider_name (e->provider));
    s_content_key_text (ctx, sb_event_kind_name (e->kind));
    s_content_key_put (ctx, body_sha256, SB_EVENT_SHA256_SIZE);
    s_content_key_put (ctx, index, sizeof index);
    s_content_key_text (ctx, e->detail_json);
    uint8_t md [EVP_MAX_MD_SIZE];
    unsigned int md_size = 0;
    if (EVP_DigestFinal_ex (ctx, md, &md_size) == 1 && md_size == 32) {
        static const char hex [] = "0123456789abcdef";
        memcpy (out, "content:", 8);
        for (unsigned int k = 0; k < md_size; k++) {
            out [8 + 2 * k] = hex [md [k] >> 4];
            out [8 + 2 * k + 1] = hex [md [k] & 15];
        }
        out [8 + 2 * md_size] = 0;
    }
    EVP_MD_CTX_free (ctx);
}

//  Build the events rows, the contact keys and the cursors.
static int
s_batch_prepare (s_batch_t *b)
{
    b->items = calloc (b->count, sizeof (*b->items));
    b->contacts = calloc (b->count, sizeof (*b->contacts));
    b->cursors = calloc (b->count, sizeof (*b->cursors));
    if (!b->items || !b->contacts || !b->cursors)
        return -1;
    s_table_t *t = &b->events_t;
    size_t last_body = SIZE_MAX;
    for (size_t i = 0; i < b->count; i++) {
        const sb_event_t *e = b->events [i];
        b->items [i].contact = SIZE_MAX;
        char dedup [512] = "";
        if (e->kind == SB_KIND_GATHER)
            snprintf (dedup, sizeof dedup, "digits=%s speech=%s", s_str (e->digits),
                      s_str (e->speech_result));
        const char *error_code = e->status ? s_str (e->status->error_code) : "";
        //  A shared body goes to request_bodies and the event without it to
        //  payload; the only event of a request keeps its body (inline_body).
        s_batch_body_key (b, i, &last_body);
        if (e->kind != SB_KIND_GATHER && (!e->provider_id || !*e->provider_id)
            && (b->items [i].has_body || b->items [i].inline_body)) {
            uint8_t own [SB_EVENT_SHA256_SIZE];
            if (b->items [i].inline_body)
                sb_event_sha256 (e->raw_body.data, e->raw_body.len, own);
            s_content_key (e, b->items [i].inline_body ? own : b->items [i].body_sha256, dedup,
                           sizeof dedup);
        }
        sb_event_t bare = *e;
        if (!b->items [i].inline_body)
            bare.raw_body = (ProtobufCBinaryData) {0, NULL};
        size_t size = 0;
        uint8_t *payload = sb_event_encode (&bare, &size);
        if (!payload)
            return -1;
        s_array_key (&t->cols [EV_INGRESS], e->ingress_id);
        s_array_key (&t->cols [EV_EPOCH], e->epoch);
        s_array_int8 (&t->cols [EV_SEQ], (int64_t) e->seq);
        s_array_text (&t->cols [EV_UID], e->id);
        s_array_text (&t->cols [EV_PROVIDER], sb_event_provider_name (e->provider));
        s_array_text (&t->cols [EV_CHANNEL], sb_event_channel_name (e->channel));
        s_array_text (&t->cols [EV_KIND], sb_event_kind_name (e->kind));
        s_array_text (&t->cols [EV_TYPE], e->message_type);
        s_array_key (&t->cols [EV_PROVIDER_ID], e->provider_id);
        s_array_key (&t->cols [EV_STATUS], s_event_status (e));
        s_array_key (&t->cols [EV_DEDUP], dedup);
        s_array_text (&t->cols [EV_ERROR_CODE], error_code);
        s_array_text (&t->cols [EV_FROM], e->from);
        s_array_text (&t->cols [EV_TO], e->to);
        s_array_text (&t->cols [EV_ACCOUNT], e->account);
        s_array_text (&t->cols [EV_TEXT], e->text);
        s_array_time (&t->cols [EV_RECEIVED], e->received_at_ms ? e->received_at_ms : s_now_ms ());
        s_array_bytes (&t->cols [EV_PAYLOAD], payload, size);
        free (payload);
        if (b->items [i].has_body)
            s_array_bytes (&t->cols [EV_BODY_SHA256], b->items [i].body_sha256,
                           SB_EVENT_SHA256_SIZE);
        else
            s_array_null (&t->cols [EV_BODY_SHA256]);

        //  Contacts are keyed by the address as stored: two addresses that
        //  PostgreSQL would see as one must be one contact here too.
        if (s_inbound (e)) {
            if (!(b->items [i].address = s_utf8_dup (e->from, S_KEY_MAX)))
                return -1;
            s_contact_t *c = &b->contacts [b->ncontacts++];
            c->provider = sb_event_provider_name (e->provider);
            c->channel = sb_event_channel_name (e->channel);
            c->address = b->items [i].address;
        }
        //  The cursor follows the latest epoch seen for each ingress.
        const char *ingress = s_str (e->ingress_id);
        const char *epoch = s_str (e->epoch);
        size_t k;
        for (k = 0; k < b->ncursors; k++)
            if (strcmp (b->cursors [k].ingress_id, ingress) == 0)
                break;
        s_cursor_t *cur = &b->cursors [k];
        if (k == b->ncursors) {
            b->ncursors++;
            cur->ingress_id = ingress;
            cur->epoch = epoch;
            cur->seq = e->seq;
        }
        else
        if (strcmp (cur->epoch, epoch) != 0) {
            cur->epoch = epoch;
            cur->seq = e->seq;
        }
        else
        if (e->seq > cur->seq)
            cur->seq = e->seq;
    }
    //  Unique contacts in key order (also the order their rows are locked).
    if (b->ncontacts) {
        qsort (b->contacts, b->ncontacts, sizeof (*b->contacts), s_contact_cmp);
        size_t n = 1;
        for (size_t i = 1; i < b->ncontacts; i++)
            if (s_contact_cmp (&b->contacts [i], &b->contacts [n - 1]) != 0)
                b->contacts [n++] = b->contacts [i];
        b->ncontacts = n;
    }
    for (size_t i = 0; i < b->ncontacts; i++) {
        s_array_text (&b->keys_t.cols [CK_PROVIDER], b->contacts [i].provider);
        s_array_text (&b->keys_t.cols [CK_CHANNEL], b->contacts [i].channel);
        s_array_key (&b->keys_t.cols [CK_ADDRESS], b->contacts [i].address);
    }
    for (size_t i = 0; i < b->count; i++) {
        const sb_event_t *e = b->events [i];
        if (b->items [i].address)
            b->items [i].contact = s_contact_find (b, sb_event_provider_name (e->provider),
                                                   sb_event_channel_name (e->channel),
                                                   b->items [i].address);
    }
    for (size_t k = 0; k < b->ncursors; k++) {
        s_array_key (&b->cursor_t.cols [CU_INGRESS], b->cursors [k].ingress_id);
        s_array_key (&b->cursor_t.cols [CU_EPOCH], b->cursors [k].epoch);
        s_array_int8 (&b->cursor_t.cols [CU_SEQ], (int64_t) b->cursors [k].seq);
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
        if (!s_parse_int64 (PQgetvalue (r, row, 0), &id)
        ||  !s_parse_int64 (PQgetvalue (r, row, 3), &seq)) {
            sb_error (S_MODULE, "unexpected events row from PostgreSQL");
            return -1;
        }
        size_t i = next;
        while (i < b->count
               && (b->items [i].fresh || !s_same_key (b->events [i], ingress, epoch, seq)))
            i++;
        if (i == b->count) {
            for (i = 0; i < b->count; i++)
                if (!b->items [i].fresh && s_same_key (b->events [i], ingress, epoch, seq))
                    break;
            if (i == b->count)
                for (i = 0; i < b->count; i++)
                    if (!b->items [i].fresh && (int64_t) b->events [i]->seq == seq)
                        break;
            if (i == b->count) {
                sb_error (S_MODULE, "PostgreSQL returned an event not in the batch seq=%" PRId64,
                          seq);
                return -1;
            }
        }
        else
            next = i + 1;
        b->items [i].fresh = true;
        b->items [i].id = id;
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
            continue;      //  an address we had to re-encode: treated as new
        int64_t last = 0;
        if (!s_parse_int64 (PQgetvalue (r, row, 4), &last))
            return -1;
        b->contacts [k].opted_out = strcmp (PQgetvalue (r, row, 3), "t") == 0;
        b->contacts [k].last_inbound_ms = last;
    }
    return 0;
}

//  The event as a forward's JSON, with its request's raw body as each
//  event carried it before requests shared one (a bot may re-read it).
//  Caller owns the return value; NULL on failure.
static char *
s_forward_json (const s_batch_t *b, size_t i)
{
    const sb_event_t *e = b->events [i];
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
            memcpy (b->fetched [b->nfetched].sha256, sha, len);
        PQfreemem (sha);
        unsigned char *body = keyed ? PQunescapeBytea (
                                          (const unsigned char *) PQgetvalue (r, row, 1), &len)
                                    : NULL;
        if (keyed && !body)
            return -1;
        if (!body)
            continue;
        s_body_t *got = &b->fetched [b->nfetched++];
        got->body = (ProtobufCBinaryData) {len, body};
        if (!(got->content_type = strdup (PQgetvalue (r, row, 2))))
            return -1;
    }
    //  A body the first event of its request never brought (retention
    //  removed it past the hard cap, or an empty body): those events are
    //  stored and forwarded without it. Said, since a bot may miss it.
    uint32_t asked = b->bodies_get_t.cols [BG_SHA256].count;
    if (b->nfetched < asked)
        sb_warn (S_MODULE, "request bodies not found: events forwarded without raw_body"
                           " asked=%u found=%zu", asked, b->nfetched);
    return 0;
}

//  Ask the rules about an inbound event and queue what they decide.
static int
s_batch_decide (s_batch_t *b, const sb_event_t *e, const s_item_t *item, const s_contact_t *c,
                const sb_store_policy_t *policy, int64_t now_ms, int64_t window_ms,
                sb_store_stats_t *stats)
{
    sb_rule_decision_t d;
    if (sb_rules_decide (policy->rules, e, &d) != 0)
        return -1;
    if (d.publish && policy->publish)
        policy->publish[item - b->items] = true;
    if (d.action == SB_RULE_REPLY && (!d.text || !*d.text))
        d.action = SB_RULE_NONE;
    if (d.action != SB_RULE_REPLY && d.action != SB_RULE_FORWARD) {
        sb_rule_decision_clear (&d);
        return 0;
    }
    const char *reason = "";
    if (c->opted_out)
        reason = "opted_out";
    else
    if (d.action == SB_RULE_REPLY && e->channel == SB_CHANNEL_VOICE)
        reason = "unsupported_channel";
    else
    if (d.action == SB_RULE_REPLY && e->channel == SB_CHANNEL_WHATSAPP
        && (c->last_inbound_ms == 0 || now_ms - c->last_inbound_ms > window_ms))
        reason = "outside_window";

    char *json = NULL;
    if (d.action == SB_RULE_FORWARD && !(json = s_forward_json (b, (size_t) (item - b->items)))) {
        sb_rule_decision_clear (&d);
        return -1;
    }
    bool meta = e->provider == SB_PROVIDER_META;
    s_table_t *t = &b->outbox_t;
    s_array_text (&t->cols [OB_KIND], d.action == SB_RULE_REPLY ? "reply" : "forward");
    s_array_text (&t->cols [OB_STATE], *reason ? "not_sent" : "pending");
    s_array_text (&t->cols [OB_PROVIDER], c->provider);
    s_array_text (&t->cols [OB_CHANNEL], c->channel);
    s_array_text (&t->cols [OB_ACCOUNT], meta ? e->account : "");
    s_array_text (&t->cols [OB_FROM], e->to);
    s_array_text (&t->cols [OB_TO], c->address);
    s_array_text (&t->cols [OB_BODY], d.action == SB_RULE_REPLY ? d.text : "");
    s_array_text (&t->cols [OB_CONTEXT], meta && e->kind == SB_KIND_MESSAGE ? e->provider_id : "");
    s_array_text (&t->cols [OB_URL], d.action == SB_RULE_FORWARD ? d.url : "");
    s_array_int4 (&t->cols [OB_TIMEOUT], d.action == SB_RULE_FORWARD ? d.timeout_ms : 0);
    s_array_text (&t->cols [OB_JSON], json);
    s_array_text (&t->cols [OB_REASON], reason);
    s_array_int8 (&t->cols [OB_EVENT_ID], item->id);
    s_array_text (&t->cols [OB_RULE], d.rule);
    free (json);
    if (*reason) {
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
s_batch_effects (s_batch_t *b, const sb_store_policy_t *policy, int64_t now_ms,
                 int64_t window_ms, sb_store_stats_t *stats)
{
    const sb_rules_t *rules = policy ? policy->rules : NULL;
    for (size_t i = 0; i < b->count; i++) {
        const sb_event_t *e = b->events [i];
        const s_item_t *item = &b->items [i];
        if (!item->fresh)
            continue;
        if (e->kind == SB_KIND_STATUS) {
            if (e->provider_id && *e->provider_id && e->status && e->status->status
                && *e->status->status) {
                s_table_t *t = &b->status_t;
                s_array_text (&t->cols [ST_PROVIDER], sb_event_provider_name (e->provider));
                s_array_key (&t->cols [ST_PROVIDER_ID], e->provider_id);
                s_array_key (&t->cols [ST_STATUS], e->status->status);
                s_array_text (&t->cols [ST_ERROR_CODE], e->status->error_code);
            }
            continue;
        }
        if (item->contact == SIZE_MAX)
            continue;
        s_contact_t *c = &b->contacts [item->contact];
        c->touched = true;
        int64_t received = e->received_at_ms ? e->received_at_ms : now_ms;
        if (received > c->last_inbound_ms)
            c->last_inbound_ms = received;
        if (e->profile_name && *e->profile_name)
            c->profile_name = e->profile_name;
        bool opt_out = false;
        if (e->kind == SB_KIND_MESSAGE && rules) {
            if (sb_rules_is_opt_out (rules, e->text)) {
                opt_out = true;
                if (!c->opted_out)
                    sb_info (S_MODULE, "contact opted out provider=%s channel=%s", c->provider,
                             c->channel);
                c->opted_out = true;
            }
            else
            if (sb_rules_is_opt_in (rules, e->text)) {
                if (c->opted_out)
                    sb_info (S_MODULE, "contact opted in provider=%s channel=%s", c->provider,
                             c->channel);
                c->opted_out = false;
            }
        }
        if (e->kind == SB_KIND_MESSAGE || e->kind == SB_KIND_GATHER) {
            const char *body = e->text;
            if (e->kind == SB_KIND_GATHER)
                body = e->digits && *e->digits ? e->digits : e->speech_result;
            s_table_t *t = &b->messages_t;
            s_array_text (&t->cols [MI_PROVIDER], c->provider);
            s_array_text (&t->cols [MI_CHANNEL], c->channel);
            //  Gathers share their call's CallSid: it stays on the event.
            s_array_key_or_null (&t->cols [MI_PROVIDER_ID],
                                 e->kind == SB_KIND_MESSAGE ? e->provider_id : NULL);
            s_array_text (&t->cols [MI_CONTACT], e->from);
            s_array_text (&t->cols [MI_OURS], e->to);
            s_array_text (&t->cols [MI_ACCOUNT], e->account);
            s_array_text (&t->cols [MI_TYPE],
                          e->kind == SB_KIND_GATHER ? "gather" : e->message_type);
            s_array_text (&t->cols [MI_BODY], body);
            s_array_int8 (&t->cols [MI_EVENT_ID], item->id);
        }
        //  An opt-out keyword is consumed here: the rules never see it.
        if (rules && !opt_out
            && s_batch_decide (b, e, item, c, policy, now_ms, window_ms, stats) != 0)
            return -1;
    }
    for (size_t k = 0; k < b->ncontacts; k++) {
        const s_contact_t *c = &b->contacts [k];
        if (!c->touched)
            continue;
        s_table_t *t = &b->contacts_t;
        s_array_text (&t->cols [CO_PROVIDER], c->provider);
        s_array_text (&t->cols [CO_CHANNEL], c->channel);
        s_array_key (&t->cols [CO_ADDRESS], c->address);
        s_array_text (&t->cols [CO_PROFILE], c->profile_name);
        s_array_time (&t->cols [CO_LAST_INBOUND], c->last_inbound_ms);
        s_array_bool (&t->cols [CO_OPTED_OUT], c->opted_out);
    }
    return 0;
}

//  Take the result of a pipelined statement that returns no rows.
static int
s_take_ok (sb_store_t *self, const char *what, int64_t *rows)
{
    PGresult *r = s_take (self, PGRES_COMMAND_OK, what);
    if (!r)
        return -1;
    if (rows && !s_parse_int64 (PQcmdTuples (r), rows))
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
    bool bodies = s_table_rows (&b->bodies_t) > 0;
    bool fetch = s_table_rows (&b->bodies_get_t) > 0;
    if (s_send_sql (self, "BEGIN")
    ||  (bodies && s_send_table (self, "sb_bodies", &b->bodies_t))
    ||  s_send_table (self, "sb_events", &b->events_t)
    ||  (lock && s_send_table (self, "sb_contacts_lock", &b->keys_t))
    ||  (fetch && s_send_table (self, "sb_bodies_get", &b->bodies_get_t)))
        return -1;
    if (!PQsendFlushRequest (self->conn)) {
        s_log_result (self, NULL, "flush request");
        return -1;
    }
    if (s_flush (self) || s_take_ok (self, "BEGIN", NULL)
        || (bodies && s_take_ok (self, "insert request bodies", NULL)))
        return -1;
    PGresult *r = s_take (self, PGRES_TUPLES_OK, "insert events");
    if (!r)
        return -1;
    int rc = s_batch_mark_fresh (b, r, &stats->stored);
    PQclear (r);
    if (rc == 0 && lock) {
        if (!(r = s_take (self, PGRES_TUPLES_OK, "lock contacts")))
            return -1;
        rc = s_batch_load_contacts (b, r);
        PQclear (r);
    }
    if (rc == 0 && fetch) {
        if (!(r = s_take (self, PGRES_TUPLES_OK, "fetch request bodies")))
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
    s_table_t *tables [] = {&b->contacts_t, &b->messages_t, &b->outbox_t, &b->status_t,
                            &b->cursor_t};
    static const char *const names [] = {"sb_contacts", "sb_messages", "sb_outbox", "sb_status",
                                         "sb_cursor"};
    static const char *const what [] = {"upsert contacts", "insert messages", "insert outbox",
                                        "apply statuses", "upsert cursor"};
    enum { N = sizeof tables / sizeof tables [0], STATUS = 3 };
    bool sent [N];
    for (size_t i = 0; i < N; i++) {
        sent [i] = s_table_rows (tables [i]) > 0;
        if (sent [i] && s_send_table (self, names [i], tables [i]))
            return -1;
    }
    if (s_send_commit (self))
        return -1;
    *synced = true;
    if (s_flush (self))
        return -1;
    for (size_t i = 0; i < N; i++) {
        int64_t rows = 0;
        if (sent [i] && s_take_ok (self, what [i], &rows))
            return -1;
        if (i == STATUS)
            stats->statuses = (size_t) rows;
    }
    bool sync;
    bool committed = s_take_commit (self, &sync);
    if (!committed || !sync) {
        sb_error (S_MODULE, "batch not committed count=%zu", b->count);
        return -1;
    }
    if (!PQexitPipelineMode (self->conn)) {
        s_log_result (self, NULL, "exit pipeline mode");
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
    int64_t window_ms = policy && policy->window_ms > 0 ? policy->window_ms : S_WINDOW_MS;
    int64_t now_ms = policy && policy->now_ms ? policy->now_ms : s_now_ms ();
    self->window_ms = window_ms;
    if (s_ready (self) != 0)
        return -1;

    s_batch_t b = {.events = events, .count = count, .forwards = policy && policy->rules};
    s_table_init (&b.events_t, s_events_oids, EV_COLS);
    s_table_init (&b.keys_t, s_contact_key_oids, CK_COLS);
    s_table_init (&b.contacts_t, s_contacts_oids, CO_COLS);
    s_table_init (&b.messages_t, s_messages_oids, MI_COLS);
    s_table_init (&b.outbox_t, s_outbox_oids, OB_COLS);
    s_table_init (&b.status_t, s_status_oids, ST_COLS);
    s_table_init (&b.cursor_t, s_cursor_oids, CU_COLS);
    s_table_init (&b.bodies_t, s_bodies_oids, BO_COLS);
    s_table_init (&b.bodies_get_t, s_bodies_get_oids, BG_COLS);
    int rc = -1;
    if (s_batch_prepare (&b) != 0)
        sb_error (S_MODULE, "out of memory preparing a batch count=%zu", count);
    else
    if (!PQenterPipelineMode (self->conn))
        s_log_result (self, NULL, "enter pipeline mode");
    else {
        bool synced = false;
        if (s_write_round1 (self, &b, stats) == 0) {
            if (s_batch_effects (&b, policy, now_ms, window_ms, stats) != 0)
                sb_error (S_MODULE, "cannot decide replies (out of memory) count=%zu", count);
            else
                rc = s_write_round2 (self, &b, stats, &synced);
        }
        if (rc != 0) {
            s_pipeline_abort (self, synced);
            memset (stats, 0, sizeof (*stats));
        }
    }
    if (policy && policy->fresh)
        for (size_t i = 0; i < count; i++)
            policy->fresh[i] = rc == 0 && b.items && b.items[i].fresh;
    if (rc != 0 && policy && policy->publish)
        memset (policy->publish, 0, count * sizeof *policy->publish);
    if (rc == 0)
        sb_debug (S_MODULE, "batch stored count=%zu stored=%zu duplicates=%zu replies=%zu"
                  " not_sent=%zu statuses=%zu", count, stats->stored, stats->duplicates,
                  stats->replies, stats->not_sent, stats->statuses);
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
        epoch [0] = 0;
    if (sb_store_ensure (self) != 0)
        return -1;
    char *id = s_utf8_dup (ingress_id, S_KEY_MAX);
    if (!id)
        return -1;
    const char *params [] = {id};
    PGresult *r = s_exec (self,
                          "SELECT last_seq, epoch FROM consumer_cursors WHERE ingress_id = $1", 1,
                          params, PGRES_TUPLES_OK, "read cursor");
    free (id);
    if (!r)
        return -1;
    int rc = 0;
    if (PQntuples (r) == 1) {
        int64_t v;
        if (s_parse_int64 (PQgetvalue (r, 0, 0), &v) && v >= 0) {
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

//  ---------------------------------------------------------------------
//  Outbox

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
    static const int channels [] = {SB_CHANNEL_SMS, SB_CHANNEL_WHATSAPP, SB_CHANNEL_VOICE};
    for (size_t i = 0; i < sizeof channels / sizeof channels [0]; i++)
        if (strcmp (name, sb_event_channel_name (channels [i])) == 0)
            return channels [i];
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
//  Count, or -1 when out of memory (the rows stay "sending" until
//  sb_store_recover).
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
        sb_outbox_item_t *it = &list [row];
        int64_t id = 0, timeout = 0, attempts = 0;
        s_parse_int64 (PQgetvalue (r, row, 0), &id);
        s_parse_int64 (PQgetvalue (r, row, 10), &timeout);
        s_parse_int64 (PQgetvalue (r, row, 12), &attempts);
        it->id = id;
        it->kind = strcmp (PQgetvalue (r, row, 1), "forward") == 0 ? SB_OUTBOX_FORWARD
                                                                   : SB_OUTBOX_REPLY;
        it->provider = s_provider_from_name (PQgetvalue (r, row, 2));
        it->channel = s_channel_from_name (PQgetvalue (r, row, 3));
        it->forward_timeout_ms = (int) timeout;
        it->attempts = (int) attempts;
        snprintf (it->claim_token, sizeof it->claim_token, "%s", PQgetvalue (r, row, 13));
        char **strings [] = {&it->account, &it->from, &it->to, &it->body, &it->context_id,
                             &it->forward_url, &it->event_json};
        static const int columns [] = {4, 5, 6, 7, 8, 9, 11};
        for (size_t k = 0; k < sizeof columns / sizeof columns [0]; k++)
            if (!(*strings [k] = strdup (PQgetvalue (r, row, columns [k]))))
                oom = true;
    }
    if (oom) {
        sb_error (S_MODULE, "out of memory claiming outbox rows");
        for (int i = 0; i < rows; i++)
            sb_outbox_item_free (&list [i]);
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

int
sb_store_recover (sb_store_t *self)
{
    if (sb_store_ensure (self) != 0)
        return -1;
    //  Every row not claimed by this store (by its instance id): a recover
    //  that runs late can never put back what this store claimed since.
    const char *params [] = {self->instance};
    PGresult *r = s_exec (self,
                          "UPDATE outbox SET state = 'pending', claim_token = NULL,"
                          " updated_at = now () WHERE state = 'sending'"
                          " AND (claim_token IS NULL OR split_part (claim_token, '.', 1) <> $1)",
                          1, params, PGRES_COMMAND_OK, "recover outbox");
    if (!r)
        return -1;
    int64_t n = 0;
    s_parse_int64 (PQcmdTuples (r), &n);
    PQclear (r);
    return (int) n;
}

//  One send result as a prepared statement with its text parameters.
typedef struct {
    const char *name;             //  prepared statement
    const char *sql;              //  its text, to run it alone
    const char *what;             //  what it does, for logs
    const char *refused;          //  state if the database refuses it: sent, failed, retry
    int nparams;                  //  parameters used
    const char *values [8];       //  the parameters (into the buffers below, or static)
    char id [24];                 //  outbox id as text
    char token [SB_OUTBOX_TOKEN_SIZE];  //  the result's claim token
    char numbers [4][24];         //  retry: attempts, backoff base, cap, Retry-After
    char window [24];             //  bot answer: the WhatsApp window, ms
    char *error;                  //  outbox.last_error, owned
    char *code;                   //  the provider's error code, owned
    char *text;                   //  provider id or bot text, owned
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
    if (n > S_KEY_MAX)
        return "provider id not kept: longer than 512 bytes";
    const unsigned char *p = (const unsigned char *) s_str (id);
    for (size_t i = 0; i < n;) {
        size_t len = sb_utf8_seq (p + i, n - i);
        if (len == 0)
            return "provider id not kept: not valid UTF-8";
        if (len == 1 && (p [i] < 0x20 || p [i] == 0x7f))
            return "provider id not kept: holds a control character";
        i += len;
    }
    return NULL;
}

//  Build rec for result. 0, or -1 (out of memory; logged). An outcome we
//  do not know is recorded as FINAL, saying so.
static int
s_record_build (const sb_store_t *self, const sb_send_result_t *result,
                const sb_store_retry_t *retry, s_record_t *rec)
{
    memset (rec, 0, sizeof (*rec));
    snprintf (rec->id, sizeof rec->id, "%" PRId64, result->id);
    snprintf (rec->token, sizeof rec->token, "%s", result->claim_token);
    sb_send_outcome_t outcome = result->outcome;
    char unknown [48] = "";
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
    char head [64] = "";
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
    rec->error = s_utf8_dup (joined, S_ERROR_MAX);
    free (joined);
    rec->code = s_utf8_dup (code, 64);
    if (!rec->error || !rec->code)
        goto oom;
    rec->values [0] = rec->id;
    //  What the refused fallback needs: the retry's attempts and cap.
    int max_attempts = retry && retry->max_attempts > 0 ? retry->max_attempts : 1;
    int64_t base = retry && retry->backoff_base_ms > 0 ? retry->backoff_base_ms : 1;
    int64_t cap = retry && retry->backoff_max_ms > base ? retry->backoff_max_ms : base;
    snprintf (rec->numbers [0], sizeof rec->numbers [0], "%d", max_attempts);
    snprintf (rec->numbers [1], sizeof rec->numbers [1], "%" PRId64, base);
    snprintf (rec->numbers [2], sizeof rec->numbers [2], "%" PRId64, cap);

    if (outcome == SB_SEND_SENT && result->kind == SB_OUTBOX_FORWARD) {
        if (!(rec->text = s_utf8_dup (result->bot_text, 4096)))
            goto oom;
        snprintf (rec->window, sizeof rec->window, "%" PRId64, self->window_ms);
        rec->name = "sb_record_bot";
        rec->sql = s_record_bot_sql;
        rec->what = "record bot answer";
        rec->refused = "failed";
        rec->nparams = 3;
        rec->values [1] = rec->text;
        rec->values [2] = rec->window;
    }
    else
    if (outcome == SB_SEND_SENT) {
        if (!(rec->text = s_utf8_dup (id_problem ? "" : result->provider_id, S_KEY_MAX)))
            goto oom;
        rec->name = "sb_record_sent";
        rec->sql = s_record_sent_sql;
        rec->what = "record sent";
        rec->refused = "sent";
        rec->nparams = 3;
        rec->values [1] = rec->text;
        rec->values [2] = rec->error;
    }
    else
    if (outcome == SB_SEND_RETRY) {
        int64_t after = result->retry_after_ms;
        if (after < 0)
            after = 0;
        if (after > 24LL * 3600 * 1000)
            after = 24LL * 3600 * 1000;
        snprintf (rec->numbers [3], sizeof rec->numbers [3], "%" PRId64, after);
        rec->name = "sb_record_retry";
        rec->sql = s_record_retry_sql;
        rec->what = "record retry";
        rec->refused = "retry";
        rec->nparams = 7;
        for (int k = 0; k < 4; k++)
            rec->values [1 + k] = rec->numbers [k];
        rec->values [5] = rec->error;
        rec->values [6] = rec->code;
    }
    else {
        rec->name = "sb_record_final";
        rec->sql = s_record_final_sql;
        rec->what = "record final";
        rec->refused = "failed";
        rec->nparams = 4;
        rec->values [1] = rec->error;
        rec->values [2] = rec->code;
        rec->values [3] = result->opt_out ? "true" : "false";
    }
    rec->values [rec->nparams++] = rec->token;
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
                 rec->values [1], rec->error);
    else
        sb_debug (S_MODULE, "outbox retry id=%s in_ms=%s", rec->id, PQgetvalue (r, 0, 2));
    return dead;
}

//  Queue BEGIN, the records order [0..n), the claim and COMMIT, and end
//  the pipeline.
static int
s_settle_send (sb_store_t *self, const s_record_t *recs, const size_t *order, size_t n,
               size_t claim_max)
{
    if (s_send_sql (self, "BEGIN"))
        return -1;
    for (size_t k = 0; k < n; k++) {
        const s_record_t *rec = &recs [order [k]];
        if (!PQsendQueryPrepared (self->conn, rec->name, rec->nparams, rec->values, NULL, NULL,
                                  0)) {
            s_log_result (self, NULL, rec->what);
            return -1;
        }
    }
    if (claim_max) {
        char limit [24];
        snprintf (limit, sizeof limit, "%zu", claim_max);
        const char *params [] = {limit, self->token};
        if (!PQsendQueryPrepared (self->conn, "sb_claim", 2, params, NULL, NULL, 0)) {
            s_log_result (self, NULL, "claim outbox");
            return -1;
        }
    }
    return s_send_commit (self);
}

//  One transaction, one round trip: record order [0..n) and claim up to
//  claim_max rows. 0 when committed (*claimed is the claim's result or
//  NULL; dead filled for those rows). -1 when rolled back: *failed is then
//  the position in order of the record the database refused, or -1 when
//  anything else failed (connection, BEGIN, claim, COMMIT).
//  The last statement failed for its data: a data exception (class 22),
//  a constraint it breaks (23) or a limit it passes (54, e.g. an index row
//  too large). Only such a failure is the record's own; any other (a
//  deadlock, a statement or lock timeout, a lost connection) says nothing
//  about the record, and the whole turn is tried again later, intact.
static bool
s_data_error (const sb_store_t *self)
{
    return strncmp (self->sqlstate, "22", 2) == 0 || strncmp (self->sqlstate, "23", 2) == 0
           || strncmp (self->sqlstate, "54", 2) == 0;
}

static int
s_settle_try (sb_store_t *self, const s_record_t *recs, const size_t *order, size_t n,
              bool *dead, size_t claim_max, PGresult **claimed, long *failed)
{
    *claimed = NULL;
    *failed = -1;
    bool synced = false;
    if (!PQenterPipelineMode (self->conn)) {
        s_log_result (self, NULL, "enter pipeline mode");
        return -1;
    }
    if (s_settle_send (self, recs, order, n, claim_max))
        goto abort;
    synced = true;
    if (s_flush (self))
        goto abort;
    PGresult *r = s_take (self, PGRES_COMMAND_OK, "begin");
    if (!r)
        goto abort;
    PQclear (r);
    for (size_t k = 0; k < n; k++) {
        const s_record_t *rec = &recs [order [k]];
        if (!(r = s_take (self, PGRES_TUPLES_OK, rec->what))) {
            if (s_data_error (self))
                *failed = (long) k;
            goto abort;
        }
        bool was_dead = s_record_done (self, rec, r);
        if (dead)
            dead [order [k]] = was_dead;
        PQclear (r);
    }
    if (claim_max && !(*claimed = s_take (self, PGRES_TUPLES_OK, "claim outbox")))
        goto abort;
    bool sync;
    if (!s_take_commit (self, &sync)) {
        sb_log_every (s_every (&self->settle_log), SB_LOG_ERROR, S_MODULE,
                      "send results not committed count=%zu", n);
        goto abort;
    }
    //  Committed: the claimed rows are ours, whatever happens to the
    //  connection now.
    if (!sync || !PQexitPipelineMode (self->conn)) {
        s_log_result (self, NULL, "end of pipeline");
        s_connect (self);
    }
    return 0;
abort:
    PQclear (*claimed);
    *claimed = NULL;
    s_pipeline_abort (self, synced);
    for (size_t k = 0; dead && k < n; k++)
        dead [order [k]] = false;
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
    PGresult *r = s_exec (self, rec->sql, rec->nparams, rec->values, PGRES_TUPLES_OK, rec->what);
    if (r) {
        bool was_dead = s_record_done (self, rec, r);
        if (dead)
            *dead = was_dead;
        PQclear (r);
        return 0;
    }
    if (PQstatus (self->conn) != CONNECTION_OK || !s_data_error (self))
        return -1;
    char line [400];
    const char *why = s_line (PQerrorMessage (self->conn), line, sizeof line);
    if (strncmp (why, "ERROR:", 6) == 0)
        for (why += 6; *why == ' ';)
            why++;
    size_t len = strlen (rec->error) + strlen (why) + 32;
    char *joined = malloc (len);
    char *note = NULL;
    if (joined) {
        snprintf (joined, len, "%s%snot recorded: %s", rec->error, *rec->error ? "; " : "",
                  *why ? why : "refused by the database");
        note = s_utf8_dup (joined, S_ERROR_MAX);
        free (joined);
    }
    if (!note) {
        sb_error (S_MODULE, "out of memory recording a send id=%s", rec->id);
        return -1;
    }
    //  A retry comes back after the longest backoff.
    const char *values [] = {rec->id, rec->refused, rec->numbers [2], rec->numbers [0], note,
                             rec->token};
    r = s_exec (self, s_record_refused_sql, 6, values, PGRES_TUPLES_OK, "record refused result");
    if (r) {
        const char *state = PQntuples (r) > 0 ? PQgetvalue (r, 0, 1) : "gone";
        if (dead)
            *dead = strcmp (state, "dead") == 0;
        sb_log_every (s_every (&self->refused_log), SB_LOG_WARN, S_MODULE,
                      "send result refused by the database, its outbox row alone recorded"
                      " id=%s state=%s reason=\"%s\"", rec->id, state, note);
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
        dead [i] = false;
    if (count == 0 && claim_max == 0)
        return 0;
    if (s_ready (self) != 0)
        return -1;
    s_record_t *recs = calloc (count ? count : 1, sizeof (*recs));
    size_t *order = calloc (count ? count : 1, sizeof (*order));
    if (!recs || !order) {
        sb_error (S_MODULE, "out of memory recording sends count=%zu", count);
        free (recs);
        free (order);
        return -1;
    }
    int rc = -1;
    PGresult *claimed = NULL;
    size_t built = 0;
    for (; built < count; built++) {
        if (s_record_build (self, &results [built], retry, &recs [built]) != 0)
            goto done;
        order [built] = built;
    }
    //  All in one transaction; when the database refuses one record, that
    //  one goes alone (and is recorded as refused if it must) and the rest
    //  try again together: a poison result costs its own row, never the
    //  others'. Each turn takes one record out, so this ends.
    size_t n = count;
    for (;;) {
        long failed;
        if (s_settle_try (self, recs, order, n, dead, claim_max, &claimed, &failed) == 0)
            break;
        if (failed < 0)
            goto done;
        size_t bad = order [failed];
        memmove (order + failed, order + failed + 1, (n - (size_t) failed - 1) * sizeof *order);
        n--;
        if (s_record_alone (self, &recs [bad], dead ? &dead [bad] : NULL) != 0)
            goto done;
        if (n == 0 && claim_max == 0)
            break;
    }
    rc = claimed ? s_claimed_items (claimed, items) : 0;
done:
    PQclear (claimed);
    for (size_t i = 0; i < built; i++)
        s_record_free (&recs [i]);
    free (recs);
    free (order);
    return rc;
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
    PGresult *r = s_exec (self,
                          "SELECT state, count (*) FROM outbox"
                          " WHERE state IN ('pending', 'sending') GROUP BY state",
                          0, NULL, PGRES_TUPLES_OK, "outbox depth");
    if (!r)
        return -1;
    for (int row = 0; row < PQntuples (r); row++) {
        int64_t n = 0;
        s_parse_int64 (PQgetvalue (r, row, 1), &n);
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
    //  The held ids as a text array literal, "{1,2,3}".
    size_t size = 3 + count * 21;
    char *list = malloc (size);
    if (!list) {
        sb_error (S_MODULE, "out of memory reclaiming outbox rows count=%zu", count);
        return -1;
    }
    size_t used = (size_t) snprintf (list, size, "{");
    for (size_t i = 0; i < count; i++)
        used += (size_t) snprintf (list + used, size - used, "%s%" PRId64, i ? "," : "", held [i]);
    snprintf (list + used, size - used, "}");
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
    used = (size_t) snprintf (tokens, tsize, "{");
    for (size_t i = 0; i < self->dropped_count; i++)
        used += (size_t) snprintf (tokens + used, tsize - used, "%s%s", i ? "," : "",
                                   self->dropped [i]);
    snprintf (tokens + used, tsize - used, "}");
    const char *params [] = {list, tokens};
    PGresult *r = s_exec (self,
                          "UPDATE outbox SET state = 'pending', claim_token = NULL,"
                          " updated_at = now () WHERE state = 'sending'"
                          " AND claim_token = ANY ($2::text[]) AND NOT (id = ANY ($1::int8[]))",
                          2, params, PGRES_COMMAND_OK, "reclaim outbox");
    free (list);
    free (tokens);
    if (!r)
        return -1;
    int64_t n = 0;
    s_parse_int64 (PQcmdTuples (r), &n);
    PQclear (r);
    if (n > 0)
        sb_info (S_MODULE, "outbox rows back to pending count=%" PRId64 " held=%zu", n, count);
    return (int) n;
}

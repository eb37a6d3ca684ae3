/*  sb-bench-pqbase: the baseline of the dispatcher benchmark
    (bench/dispatcher/README.md). The minimal libpq program that stores
    what switchboard-dispatcher stores for an inbound SMS answered by the
    echo rule, in batches of a given size, as fast as it can; it prints
    events per second.

    For each batch, one transaction of plain multi-row INSERTs with text
    parameters (the payload binary), one statement and one round trip each,
    the rows of dispatcher/sb_store.c (--no-reply: without the outbox and
    outbound messages rows, as the dispatcher stores without rules):
      BEGIN
      INSERT INTO events (18 columns) VALUES (...), ... ON CONFLICT DO
        NOTHING RETURNING id, seq
      INSERT INTO contacts ... ON CONFLICT (provider, channel, address) DO
        UPDATE (last inbound time)          -- the batch's distinct senders
      INSERT INTO messages (the inbound ones) VALUES ... ON CONFLICT DO NOTHING
      INSERT INTO outbox (the replies, pending) VALUES ... RETURNING id, ...
      INSERT INTO messages (the outbound ones, queued) VALUES ...
      INSERT INTO consumer_cursors ... ON CONFLICT (ingress_id) DO UPDATE
      COMMIT
    The events are the benchmark's inbound SMS (sb_bench_sms, the webhooks
    sb-bench-load posts), their payload the serialized Event with the raw
    form body, as the ingress builds it; the reply text is the echo rule's.
    What the dispatcher does besides, and this program does not: read and
    lock the senders' contacts rows (SELECT ... FOR UPDATE), run the rules,
    decode events from ZeroMQ, and, on its other connection, send the
    replies and record their outcome.

    The schema must exist (switchboard-dispatcher --migrate-only). The
    clock runs from the first BEGIN to the last COMMIT.

    Limits: a benchmark tool; stops at the first failed statement.
*/
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "sb_bench_sms.h"
#include "sb_event.h"
#include "sb_form.h"
#include "sb_time.h"

#define S_NAME "sb-bench-pqbase"
#define S_REPLY_PREFIX "Thanks for your message! We received: "  //  the echo rule
#define S_ACCOUNT "AC0123456789abcdef0123456789abcdef"
#define S_PARAMS_MAX 65535  //  PostgreSQL's limit per statement

//  One statement's parameters, copied.
typedef struct {
    char **values;  //  each value (owned)
    int *lengths;   //  its length (binary ones)
    int *formats;   //  0 text, 1 binary
    int count;      //  parameters in use
    int cap;        //  allocated
} s_params_t;

//  The SQL text being built.
typedef struct {
    char *data;   //  NUL-terminated
    size_t size;  //  length
    size_t cap;   //  allocated
} s_sql_t;

//  Where the time goes: seconds spent waiting for each statement.
#define S_TIMED_MAX 10
typedef struct {
    const char *what[S_TIMED_MAX];  //  statement labels (static strings)
    double seconds[S_TIMED_MAX];    //  total time of each
    int count;                      //  labels in use
} s_timing_t;

//  What the command line says.
typedef struct {
    const char *conninfo;  //  the database
    long events;           //  most events to store
    double duration;       //  most seconds to run (0: no limit)
    long batch;            //  events per transaction
    long contacts;         //  distinct senders
    const char *tag;       //  8 hex digits in every MessageSid
    const char *ingress;   //  ingress id of the events
    bool no_reply;         //  store no replies (the dispatcher without rules)
} s_opts_t;

static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
s_oom (void)
{
    fprintf (stderr, S_NAME ": out of memory\n");
    exit (1);
}

//  ---------------------------------------------------------------------
//  Parameters and SQL text

static void
s_params_add (s_params_t *p, const void *data, size_t size, int format)
{
    if (p->count == p->cap) {
        int cap = p->cap ? p->cap * 2 : 256;
        p->values = realloc (p->values, (size_t) cap * sizeof *p->values);
        p->lengths = realloc (p->lengths, (size_t) cap * sizeof *p->lengths);
        p->formats = realloc (p->formats, (size_t) cap * sizeof *p->formats);
        if (!p->values || !p->lengths || !p->formats)
            s_oom ();
        p->cap = cap;
    }
    char *copy = malloc (size + 1);
    if (!copy)
        s_oom ();
    memcpy (copy, data, size);
    copy[size] = 0;
    p->values[p->count] = copy;
    p->lengths[p->count] = (int) size;
    p->formats[p->count] = format;
    p->count++;
}

static void
s_text (s_params_t *p, const char *s)
{
    s_params_add (p, s, strlen (s), 0);
}

static void
s_int (s_params_t *p, int64_t v)
{
    char buf[24];
    snprintf (buf, sizeof buf, "%" PRId64, v);
    s_text (p, buf);
}

static void
s_params_clear (s_params_t *p)
{
    for (int i = 0; i < p->count; i++)
        free (p->values[i]);
    p->count = 0;
}

static void
s_params_free (s_params_t *p)
{
    s_params_clear (p);
    free (p->values);
    free (p->lengths);
    free (p->formats);
}

static void s_sql_add (s_sql_t *q, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_sql_add (s_sql_t *q, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start (ap, fmt);
        int n =
            vsnprintf (q->data ? q->data + q->size : NULL, q->data ? q->cap - q->size : 0, fmt, ap);
        va_end (ap);
        if (n < 0)
            s_oom ();
        if (q->data && q->size + (size_t) n < q->cap) {
            q->size += (size_t) n;
            return;
        }
        size_t cap = q->cap ? q->cap * 2 : 4096;
        while (cap < q->size + (size_t) n + 1)
            cap *= 2;
        if (!(q->data = realloc (q->data, cap)))
            s_oom ();
        q->cap = cap;
    }
}

//  " VALUES ($a::t1, ...), (...)" for rows of the given column casts,
//  numbering parameters from 1.
static void
s_sql_values (s_sql_t *q, const char *const *casts, int ncols, long rows)
{
    s_sql_add (q, " VALUES ");
    int k = 1;
    for (long r = 0; r < rows; r++) {
        s_sql_add (q, r ? ", (" : "(");
        for (int c = 0; c < ncols; c++)
            s_sql_add (q, "%s$%d%s%s", c ? ", " : "", k++, casts[c][0] ? "::" : "", casts[c]);
        s_sql_add (q, ")");
    }
}

//  Run one statement; the result when its status is want, else exit.
static void
s_timing_add (s_timing_t *tm, const char *what, double seconds)
{
    int i;
    for (i = 0; i < tm->count; i++)
        if (strcmp (tm->what[i], what) == 0)
            break;
    if (i == tm->count) {
        if (tm->count == S_TIMED_MAX)
            return;
        tm->what[tm->count++] = what;
    }
    tm->seconds[i] += seconds;
}

static PGresult *
s_run (PGconn *conn, s_timing_t *tm, const char *what, const s_sql_t *q, const s_params_t *p,
       ExecStatusType want)
{
    double started = s_now ();
    PGresult *r = PQexecParams (conn, q->data, p ? p->count : 0, NULL,
                                p ? (const char *const *) p->values : NULL, p ? p->lengths : NULL,
                                p ? p->formats : NULL, 0);
    s_timing_add (tm, what, s_now () - started);
    if (PQresultStatus (r) != want) {
        fprintf (stderr, S_NAME ": %s failed: %s", what, PQresultErrorMessage (r));
        PQclear (r);
        exit (1);
    }
    return r;
}

static void
s_exec (PGconn *conn, s_timing_t *tm, const char *sql)
{
    double started = s_now ();
    PGresult *r = PQexec (conn, sql);
    s_timing_add (tm, sql, s_now () - started);
    if (PQresultStatus (r) != PGRES_COMMAND_OK) {
        fprintf (stderr, S_NAME ": %s failed: %s", sql, PQresultErrorMessage (r));
        PQclear (r);
        exit (1);
    }
    PQclear (r);
}

//  Unix ms as a timestamptz literal, UTC.
static void
s_timestamp (int64_t ms, char *out, size_t size)
{
    time_t secs = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r (&secs, &tm);
    snprintf (out, size, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", tm.tm_year + 1900, tm.tm_mon + 1,
              tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ms % 1000));
}

//  ---------------------------------------------------------------------
//  One batch

//  The serialized Event of an inbound SMS, as the ingress builds it.
//  Caller frees; exits when out of memory.
static uint8_t *
s_payload (const sb_bench_sms_t *sms, const char *ingress, uint64_t seq, int64_t now_ms,
           size_t *size)
{
    sb_form_t *form = sb_bench_sms_form (sms, S_ACCOUNT);
    char *body = form ? sb_form_encode (form) : NULL;
    sb_event_t *e = sb_event_new ();
    char id[128];
    snprintf (id, sizeof id, "%s-bench-%" PRIu64, ingress, seq);
    if (!body || !e || sb_event_set (&e->id, id) || sb_event_set (&e->ingress_id, ingress)
        || sb_event_set (&e->epoch, "bench") || sb_event_set (&e->message_type, "text")
        || sb_event_set (&e->provider_id, sms->sid) || sb_event_set (&e->account, S_ACCOUNT)
        || sb_event_set (&e->from, sms->from) || sb_event_set (&e->to, SB_BENCH_SMS_TO)
        || sb_event_set (&e->text, sms->text) || sb_event_set_raw (e, body, strlen (body))
        || sb_event_set (&e->raw_content_type, "application/x-www-form-urlencoded")
        || sb_event_set (&e->request_path, "/twilio/messages")
        || sb_event_set (&e->request_id, "0123456789abcdef"))
        s_oom ();
    e->seq = seq;
    e->received_at_ms = now_ms;
    e->provider = SB_PROVIDER_TWILIO;
    e->channel = SB_CHANNEL_SMS;
    e->kind = SB_KIND_MESSAGE;
    uint8_t *payload = sb_event_encode (e, size);
    if (!payload)
        s_oom ();
    sb_event_destroy (&e);
    sb_form_destroy (&form);
    free (body);
    return payload;
}

//  The echo rule's replies of a batch: outbox rows, and their outbound
//  messages rows.
static void
s_batch_replies (PGconn *conn, s_timing_t *tm, const sb_bench_sms_t *sms, const int64_t *event_ids,
                 long count, s_params_t *p, s_sql_t *q)
{
    //  outbox: the echo rule's replies
    static const char *const ob_casts[] = {"", "", "",     "", "", "",     "", "",
                                           "", "", "int4", "", "", "int8", ""};
    q->size = 0;
    s_params_clear (p);
    s_sql_add (q, "INSERT INTO outbox (kind, state, provider, channel, account, from_addr,"
                  " to_addr, body, context_id, forward_url, forward_timeout_ms, event_json,"
                  " reason, event_id, rule)");
    s_sql_values (q, ob_casts, 15, count);
    s_sql_add (q, " RETURNING id, to_addr, from_addr, body, event_id");
    for (long i = 0; i < count; i++) {
        char reply[128];
        snprintf (reply, sizeof reply, S_REPLY_PREFIX "%s", sms[i].text);
        s_text (p, "reply");
        s_text (p, "pending");
        s_text (p, "twilio");
        s_text (p, "sms");
        s_text (p, "");
        s_text (p, SB_BENCH_SMS_TO);
        s_text (p, sms[i].from);
        s_text (p, reply);
        s_text (p, "");
        s_text (p, "");
        s_text (p, "0");
        s_text (p, "");
        s_text (p, "");
        s_int (p, event_ids[i]);
        s_text (p, "echo");
    }
    PGresult *r = s_run (conn, tm, "insert outbox", q, p, PGRES_TUPLES_OK);

    //  outbound messages, one per reply
    static const char *const mo_casts[] = {"", "", "", "",     "",     "",
                                           "", "", "", "int4", "int8", "int8"};
    q->size = 0;
    s_params_clear (p);
    s_sql_add (q, "INSERT INTO messages (direction, provider, channel, contact_addr, our_addr,"
                  " account, message_type, body, status, status_rank, event_id, outbox_id)");
    s_sql_values (q, mo_casts, 12, PQntuples (r));
    for (int row = 0; row < PQntuples (r); row++) {
        s_text (p, "outbound");
        s_text (p, "twilio");
        s_text (p, "sms");
        s_text (p, PQgetvalue (r, row, 1));
        s_text (p, PQgetvalue (r, row, 2));
        s_text (p, "");
        s_text (p, "text");
        s_text (p, PQgetvalue (r, row, 3));
        s_text (p, "queued");
        s_text (p, "1");
        s_text (p, PQgetvalue (r, row, 4));
        s_text (p, PQgetvalue (r, row, 0));
    }
    PQclear (r);
    PQclear (s_run (conn, tm, "insert outbound messages", q, p, PGRES_COMMAND_OK));
}

//  Store events first .. first + count - 1 (seq = n + 1) in one transaction.
static void
s_batch (PGconn *conn, s_timing_t *tm, const s_opts_t *o, uint64_t first, long count, s_params_t *p,
         s_sql_t *q, size_t *payload_bytes)
{
    sb_bench_sms_t *sms = calloc ((size_t) count, sizeof *sms);
    int64_t *event_ids = calloc ((size_t) count, sizeof *event_ids);  //  0: not new
    if (!sms || !event_ids)
        s_oom ();
    for (long i = 0; i < count; i++)
        sb_bench_sms_make (&sms[i], first + (uint64_t) i, o->tag, o->contacts);
    int64_t now_ms = sb_time_wall_ms ();
    char received[48];
    s_timestamp (now_ms, received, sizeof received);

    s_exec (conn, tm, "BEGIN");

    //  events
    static const char *const ev_casts[] = {
        "", "", "int8", "", "", "", "", "", "", "", "", "", "", "", "", "", "timestamptz", "bytea"};
    q->size = 0;
    s_params_clear (p);
    s_sql_add (q, "INSERT INTO events (ingress_id, epoch, seq, event_uid, provider, channel, kind,"
                  " message_type, provider_id, status, dedup_detail, error_code, from_addr,"
                  " to_addr, account, text, received_at, payload)");
    s_sql_values (q, ev_casts, 18, count);
    s_sql_add (q, " ON CONFLICT DO NOTHING RETURNING id, seq");
    for (long i = 0; i < count; i++) {
        uint64_t seq = first + (uint64_t) i + 1;
        char uid[128];
        snprintf (uid, sizeof uid, "%s-bench-%" PRIu64, o->ingress, seq);
        size_t size = 0;
        uint8_t *payload = s_payload (&sms[i], o->ingress, seq, now_ms, &size);
        *payload_bytes += size;
        s_text (p, o->ingress);
        s_text (p, "bench");
        s_int (p, (int64_t) seq);
        s_text (p, uid);
        s_text (p, "twilio");
        s_text (p, "sms");
        s_text (p, "message");
        s_text (p, "text");
        s_text (p, sms[i].sid);
        s_text (p, "");
        s_text (p, "");
        s_text (p, "");
        s_text (p, sms[i].from);
        s_text (p, SB_BENCH_SMS_TO);
        s_text (p, S_ACCOUNT);
        s_text (p, sms[i].text);
        s_text (p, received);
        s_params_add (p, payload, size, 1);
        free (payload);
    }
    PGresult *r = s_run (conn, tm, "insert events", q, p, PGRES_TUPLES_OK);
    for (int row = 0; row < PQntuples (r); row++) {
        long long id = strtoll (PQgetvalue (r, row, 0), NULL, 10);
        long long seq = strtoll (PQgetvalue (r, row, 1), NULL, 10);
        long i = (long) (seq - 1 - (long long) first);
        if (i >= 0 && i < count)
            event_ids[i] = id;
    }
    PQclear (r);

    //  Only new events imply rows, as in the dispatcher (on a fresh
    //  database, every one).
    long fresh = 0;
    for (long i = 0; i < count; i++)
        fresh += event_ids[i] != 0;
    if (fresh < count) {
        fprintf (stderr,
                 S_NAME ": %ld of %ld events were already stored: use a fresh database"
                        " or another --tag\n",
                 count - fresh, count);
        exit (1);
    }

    //  contacts: the batch's distinct senders
    static const char *const co_casts[] = {"", "", "", "", "timestamptz"};
    long ncontacts = count < o->contacts ? count : o->contacts;
    q->size = 0;
    s_params_clear (p);
    s_sql_add (q, "INSERT INTO contacts AS c (provider, channel, address, profile_name,"
                  " last_inbound_at)");
    s_sql_values (q, co_casts, 5, ncontacts);
    s_sql_add (q, " ON CONFLICT (provider, channel, address) DO UPDATE SET"
                  " last_inbound_at = GREATEST (c.last_inbound_at, EXCLUDED.last_inbound_at),"
                  " updated_at = now ()");
    for (long i = 0; i < ncontacts; i++) {
        s_text (p, "twilio");
        s_text (p, "sms");
        s_text (p, sms[i].from);
        s_text (p, "");
        s_text (p, received);
    }
    PQclear (s_run (conn, tm, "upsert contacts", q, p, PGRES_COMMAND_OK));

    //  inbound messages
    static const char *const mi_casts[] = {"", "", "", "", "", "", "", "", "", "", "int8"};
    q->size = 0;
    s_params_clear (p);
    s_sql_add (q, "INSERT INTO messages (direction, provider, channel, provider_id, contact_addr,"
                  " our_addr, account, message_type, body, status, event_id)");
    s_sql_values (q, mi_casts, 11, count);
    s_sql_add (q, " ON CONFLICT DO NOTHING");
    for (long i = 0; i < count; i++) {
        s_text (p, "inbound");
        s_text (p, "twilio");
        s_text (p, "sms");
        s_text (p, sms[i].sid);
        s_text (p, sms[i].from);
        s_text (p, SB_BENCH_SMS_TO);
        s_text (p, S_ACCOUNT);
        s_text (p, "text");
        s_text (p, sms[i].text);
        s_text (p, "received");
        s_int (p, event_ids[i]);
    }
    PQclear (s_run (conn, tm, "insert messages", q, p, PGRES_COMMAND_OK));

    if (!o->no_reply)
        s_batch_replies (conn, tm, sms, event_ids, count, p, q);

    //  the cursor
    static const char *const cu_casts[] = {"", "", "int8"};
    q->size = 0;
    s_params_clear (p);
    s_sql_add (q, "INSERT INTO consumer_cursors AS c (ingress_id, epoch, last_seq)");
    s_sql_values (q, cu_casts, 3, 1);
    s_sql_add (q, " ON CONFLICT (ingress_id) DO UPDATE SET"
                  " last_seq = GREATEST (c.last_seq, EXCLUDED.last_seq),"
                  " epoch = EXCLUDED.epoch, updated_at = now ()");
    s_text (p, o->ingress);
    s_text (p, "bench");
    s_int (p, (int64_t) (first + (uint64_t) count));
    PQclear (s_run (conn, tm, "upsert cursor", q, p, PGRES_COMMAND_OK));

    s_exec (conn, tm, "COMMIT");
    free (sms);
    free (event_ids);
}

//  ---------------------------------------------------------------------

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "Usage: " S_NAME " [--db CONNINFO] [--events N] [--duration S] [--batch B]\n"
        "                       [--contacts K] [--tag HEX8] [--ingress ID] [--no-reply]\n\n"
        "Stores inbound SMS with their reply as switchboard-dispatcher does, in\n"
        "transactions of B events (default 500) of plain multi-row INSERTs, as fast as it\n"
        "can: N events (default 100000) or S seconds, whichever ends first.\n"
        "--no-reply stores no outbox row and no outbound message (a dispatcher without rules).\n"
        "The database (--db, else DATABASE_URL) must have the dispatcher's schema.\n");
}

static long
s_long (const char *name, const char *text, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol (text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        fprintf (stderr, S_NAME ": %s %s: expected a whole number from %ld to %ld\n", name, text,
                 min, max);
        exit (2);
    }
    return v;
}

int
main (int argc, char **argv)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'b'},       {"events", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'}, {"batch", required_argument, NULL, 'B'},
        {"contacts", required_argument, NULL, 'k'}, {"tag", required_argument, NULL, 't'},
        {"ingress", required_argument, NULL, 'i'},  {"no-reply", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    s_opts_t o = {.conninfo = getenv ("DATABASE_URL"),
                  .events = 100000,
                  .batch = 500,
                  .contacts = 1000,
                  .tag = "0b0b0b0b",
                  .ingress = NULL};
    int c;
    while ((c = getopt_long (argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
            case 'b': o.conninfo = optarg; break;
            case 'n': o.events = s_long ("--events", optarg, 1, 100000000); break;
            case 'd': o.duration = (double) s_long ("--duration", optarg, 0, 86400); break;
            case 'B': o.batch = s_long ("--batch", optarg, 1, 10000); break;
            case 'k': o.contacts = s_long ("--contacts", optarg, 1, 10000000); break;
            case 't': o.tag = optarg; break;
            case 'i': o.ingress = optarg; break;
            case 'R': o.no_reply = true; break;
            case 'h': s_usage (stdout); return 0;
            default: s_usage (stderr); return 2;
        }
    }
    if (optind != argc) {
        s_usage (stderr);
        return 2;
    }
    if (strlen (o.tag) != 8 || strspn (o.tag, "0123456789abcdef") != 8) {
        fprintf (stderr, S_NAME ": --tag %s: expected 8 lower-case hex digits\n", o.tag);
        return 2;
    }
    char ingress[32];
    if (!o.ingress) {
        snprintf (ingress, sizeof ingress, "bench-%s", o.tag);
        o.ingress = ingress;
    }
    //  The largest statement must stay within PostgreSQL's parameter limit.
    if (o.batch * 18 > S_PARAMS_MAX) {
        fprintf (stderr, S_NAME ": --batch %ld: at most %d\n", o.batch, S_PARAMS_MAX / 18);
        return 2;
    }
    PGconn *conn = PQconnectdb (o.conninfo ? o.conninfo : "");
    if (PQstatus (conn) != CONNECTION_OK) {
        fprintf (stderr, S_NAME ": cannot connect: %s", PQerrorMessage (conn));
        PQfinish (conn);
        return 1;
    }
    s_params_t p = {0};
    s_sql_t q = {0};
    s_timing_t tm = {0};
    size_t payload_bytes = 0;
    long stored = 0, batches = 0;
    double start = s_now ();
    while (stored < o.events && (o.duration <= 0 || s_now () - start < o.duration)) {
        long count = o.events - stored < o.batch ? o.events - stored : o.batch;
        s_batch (conn, &tm, &o, (uint64_t) stored, count, &p, &q, &payload_bytes);
        stored += count;
        batches++;
    }
    double seconds = s_now () - start;
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    double cpu_s = (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6
                   + (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
    printf ("SBPQBASE events=%ld batch=%ld replies=%s batches=%ld seconds=%.3f events_per_s=%.1f"
            " cpu_s=%.2f payload_avg_bytes=%.0f\n",
            stored, o.batch, o.no_reply ? "no" : "yes", batches, seconds,
            seconds > 0 ? (double) stored / seconds : 0, cpu_s,
            stored ? (double) payload_bytes / (double) stored : 0);
    //  Where the time went: each statement's share, the rest is building.
    printf ("SBPQTIME");
    double in_statements = 0;
    for (int i = 0; i < tm.count; i++) {
        char key[64];
        snprintf (key, sizeof key, "%s", tm.what[i]);
        for (char *k = key; *k; k++)
            if (*k == ' ')
                *k = '_';
        printf (" %s=%.3f", key, tm.seconds[i]);
        in_statements += tm.seconds[i];
    }
    printf (" other=%.3f\n", seconds - in_statements);
    s_params_free (&p);
    free (q.data);
    PQfinish (conn);
    return 0;
}

/*  test_sb_store: the dispatcher's PostgreSQL store against a real server.

    Needs SB_TEST_DATABASE_URL (ctest's "pg" fixture starts a private
    cluster with scripts/pg.sh and sets it); without it the test is skipped
    (exit 77). Each run creates a database of its own with a random name
    and drops it at the end.

    Silent on success; prints file:line and what differed on failure.
*/
#include "sb_store.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "sb_log.h"
#include "sb_time.h"

#include "sb_check.h"

//  The test's own connection to its database, for looking at the rows.
static PGconn *s_db = NULL;

//  Run sql with text parameters (NULL-terminated list). Returns the result
//  or exits on an error: the test cannot go on without its queries.
static PGresult *
s_query_v (const char *sql, va_list ap)
{
    const char *params[16];
    int n = 0;
    const char *p;
    while (n < 16 && (p = va_arg (ap, const char *)))
        params[n++] = p;
    PGresult *r = PQexecParams (s_db, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus (r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fprintf (stderr, "query failed: %s\n%s", sql, PQresultErrorMessage (r));
        exit (1);
    }
    return r;
}

static void
s_exec (const char *sql, ...)
{
    va_list ap;
    va_start (ap, sql);
    PQclear (s_query_v (sql, ap));
    va_end (ap);
}

//  The first column of the first row as a number (-1 when no row or NULL).
static int64_t
s_int (const char *sql, ...)
{
    va_list ap;
    va_start (ap, sql);
    PGresult *r = s_query_v (sql, ap);
    va_end (ap);
    int64_t v = -1;
    if (PQntuples (r) > 0 && !PQgetisnull (r, 0, 0))
        v = strtoll (PQgetvalue (r, 0, 0), NULL, 10);
    PQclear (r);
    return v;
}

//  The first column of the first row as text, into a static buffer ("(none)"
//  when no row, "(null)" when NULL).
static const char *
s_text (const char *sql, ...)
{
    static char buf[8192];
    va_list ap;
    va_start (ap, sql);
    PGresult *r = s_query_v (sql, ap);
    va_end (ap);
    if (PQntuples (r) == 0)
        snprintf (buf, sizeof buf, "(none)");
    else if (PQgetisnull (r, 0, 0))
        snprintf (buf, sizeof buf, "(null)");
    else
        snprintf (buf, sizeof buf, "%s", PQgetvalue (r, 0, 0));
    PQclear (r);
    return buf;
}

//  A conninfo string for database dbname on the server admin talks to.
static char *
s_conninfo_for (PGconn *admin, const char *dbname)
{
    PQconninfoOption *options = PQconninfo (admin);
    size_t cap = 4096, len = 0;
    char *out = calloc (1, cap);
    for (PQconninfoOption *o = options; o && o->keyword; o++) {
        const char *val = strcmp (o->keyword, "dbname") == 0 ? dbname : o->val;
        if (!val || !*val)
            continue;
        len += (size_t) snprintf (out + len, cap - len, "%s='", o->keyword);
        for (const char *c = val; *c && len + 4 < cap; c++) {
            if (*c == '\'' || *c == '\\')
                out[len++] = '\\';
            out[len++] = *c;
        }
        len += (size_t) snprintf (out + len, cap - len, "' ");
    }
    PQconninfoFree (options);
    return out;
}

//  ---------------------------------------------------------------------
//  Events

static const char *s_ingress = "ingress-test";
static const char *s_epoch = "0123456789abcdef0123456789abcdef";
static uint64_t s_seq = 0;

//  An event as the ingress would journal it, with the next seq.
static sb_event_t *
s_event (int provider, int channel, int kind, const char *provider_id, const char *from,
         const char *to, const char *text)
{
    sb_event_t *e = sb_event_new ();
    e->seq = ++s_seq;
    char id[128];
    snprintf (id, sizeof id, "%s-%s-%" PRIu64, s_ingress, s_epoch, e->seq);
    sb_event_set (&e->id, id);
    sb_event_set (&e->ingress_id, s_ingress);
    sb_event_set (&e->epoch, s_epoch);
    e->received_at_ms = sb_time_wall_ms ();
    e->provider = provider;
    e->channel = channel;
    e->kind = kind;
    sb_event_set (&e->provider_id, provider_id);
    sb_event_set (&e->from, from);
    sb_event_set (&e->to, to);
    sb_event_set (&e->text, text);
    if (kind == SB_KIND_MESSAGE)
        sb_event_set (&e->message_type, "text");
    if (provider == SB_PROVIDER_META)
        sb_event_set (&e->account, "106540352242922");
    else
        sb_event_set (&e->account, "AC0123456789abcdef0123456789abcdef");
    const char *raw = "Body=raw";
    sb_event_set_raw (e, raw, strlen (raw));
    return e;
}

static sb_event_t *
s_sms (const char *sid, const char *from, const char *text)
{
    return s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_SMS, SB_KIND_MESSAGE, sid, from, "+15558675310",
                    text);
}

static sb_event_t *
s_meta (const char *wamid, const char *from, const char *text)
{
    sb_event_t *e = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, wamid, from,
                             "15550783881", text);
    sb_event_set (&e->profile_name, "Sheena Nelson");
    return e;
}

static sb_event_t *
s_status (int provider, const char *provider_id, const char *status, const char *error_code)
{
    int channel = provider == SB_PROVIDER_META ? SB_CHANNEL_WHATSAPP : SB_CHANNEL_SMS;
    sb_event_t *e = s_event (provider, channel, SB_KIND_STATUS, provider_id, "+15558675310",
                             "+14155550100", NULL);
    Switchboard__V1__Status *st = sb_event_status (e);
    sb_event_set (&st->status, status);
    sb_event_set (&st->error_code, error_code);
    return e;
}

//  A copy of e with another seq, as a replay would bring it.
static sb_event_t *
s_copy (const sb_event_t *e, uint64_t seq)
{
    size_t size;
    uint8_t *data = sb_event_encode (e, &size);
    sb_event_t *copy = sb_event_decode (data, size);
    free (data);
    copy->seq = seq;
    return copy;
}

static void
s_free_all (sb_event_t **events, size_t count)
{
    for (size_t i = 0; i < count; i++)
        sb_event_destroy (&events[i]);
}

//  Write events with a policy; returns the stats, checks success.
static sb_store_stats_t
s_write (sb_store_t *store, sb_event_t **events, size_t count, const sb_store_policy_t *policy)
{
    sb_store_stats_t stats;
    int rc = sb_store_write (store, events, count, policy, &stats);
    if (rc != 0) {
        fprintf (stderr, "sb_store_write failed\n");
        s_failures++;
    }
    return stats;
}

//  A send result with its strings on the heap, as the sender makes them.
static sb_send_result_t
s_result (int64_t id, sb_outbox_kind_t kind, sb_send_outcome_t outcome, const char *provider_id,
          const char *bot_text, const char *error_code)
{
    sb_send_result_t r = {.id = id, .kind = kind, .outcome = outcome, .retry_after_ms = -1};
    r.provider_id = strdup (provider_id ? provider_id : "");
    r.bot_text = strdup (bot_text ? bot_text : "");
    r.error_code = strdup (error_code ? error_code : "");
    r.error = strdup (outcome == SB_SEND_SENT ? "" : "provider said no");
    //  The claim token the sender copies from the item: the row's now.
    char sid[24];
    snprintf (sid, sizeof sid, "%" PRId64, id);
    snprintf (r.claim_token, sizeof r.claim_token, "%s",
              s_text ("SELECT COALESCE (claim_token, '') FROM outbox WHERE id = $1", sid, NULL));
    if (strcmp (r.claim_token, "(none)") == 0)
        r.claim_token[0] = 0;
    return r;
}

//  Record a result; want is what sb_store_record must return (1: dead).
static void
s_record_want (sb_store_t *store, sb_send_result_t *r, int max_attempts, int want)
{
    CHECK_INT (sb_store_record (store, r, max_attempts, 1000, 60000), want);
    sb_outbox_result_free (r);
}

static void
s_record (sb_store_t *store, sb_send_result_t *r, int max_attempts)
{
    s_record_want (store, r, max_attempts, 0);
}

//  store alone holds every partition of the outbox (0010): the others'
//  leases are cleared, then its tick takes them all (a long lease).
static void
s_hold_all (sb_store_t *store)
{
    s_exec ("DELETE FROM dispatchers", NULL);
    s_exec ("UPDATE dispatcher_partitions SET instance = '', owner = '',"
            " lease_until = '-infinity'",
            NULL);
    sb_store_lease_t lease;
    CHECK_INT (sb_store_lease_tick (store, "test", 600000, &lease), 0);
    CHECK_INT (lease.owned, SB_PARTITIONS);
}

//  Claim everything due; returns the count, frees the items.
static int
s_claim_count (sb_store_t *store)
{
    sb_outbox_item_t *items = NULL;
    int n = sb_store_claim (store, 1000, &items);
    for (int i = 0; i < n; i++)
        sb_outbox_item_free (&items[i]);
    free (items);
    return n;
}

//  ---------------------------------------------------------------------
//  Migrations

//  The migration files there are: each is applied once.
static int
s_migration_files (void)
{
    int n = 0;
    DIR *dir = opendir (SB_MIGRATIONS_DIR);
    struct dirent *entry;
    while (dir && (entry = readdir (dir)))
        if (strlen (entry->d_name) > 4
            && strcmp (entry->d_name + strlen (entry->d_name) - 4, ".sql") == 0)
            n++;
    if (dir)
        closedir (dir);
    return n;
}

static void
test_migrate (sb_store_t *store)
{
    CHECK_INT (sb_store_migrate (store, SB_MIGRATIONS_DIR), 0);
    CHECK_INT (s_int ("SELECT count(*) FROM schema_migrations", NULL), s_migration_files ());
    CHECK_STR (s_text ("SELECT min(version) FROM schema_migrations", NULL), "0001_init");
    //  Again: nothing to do.
    CHECK_INT (sb_store_migrate (store, SB_MIGRATIONS_DIR), 0);
    CHECK_INT (s_int ("SELECT count(*) FROM schema_migrations", NULL), s_migration_files ());
    CHECK_INT (s_int ("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename"
                      " IN ('events', 'contacts', 'messages', 'outbox', 'ingest_cursors')",
                      NULL),
               5);
    //  A missing folder is an error (logged: silenced here).
    sb_log_init ("test_sb_store", SB_LOG_OFF);
    CHECK_INT (sb_store_migrate (store, "/nonexistent/migrations"), -1);
    sb_log_init ("test_sb_store", SB_LOG_ERROR);
}

//  Two dispatchers starting together on an empty database.
//  Every round trip has a deadline. A server that accepts the connection
//  and never answers: the connect gives up after timeout_ms. A table
//  locked by another session: the read fails (lock_timeout) within the
//  deadline, the connection stays usable, and the read works once the
//  lock is gone. The time of the last success moves only on success.
static void
test_deadlines (const char *conninfo)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    CHECK (fd >= 0 && bind (fd, (struct sockaddr *) &addr, sizeof addr) == 0 && listen (fd, 8) == 0
           && getsockname (fd, (struct sockaddr *) &addr, &len) == 0);
    char silent[96];
    snprintf (silent, sizeof silent, "host=127.0.0.1 port=%d user=x dbname=x",
              ntohs (addr.sin_port));
    int64_t started = sb_time_mono_ms ();
    sb_log_init ("test_sb_store", SB_LOG_OFF);
    CHECK (sb_store_new (silent, 500) == NULL);
    sb_log_init ("test_sb_store", SB_LOG_ERROR);
    int64_t took = sb_time_mono_ms () - started;
    CHECK (took >= 450 && took < 3000);
    close (fd);

    sb_store_t *store = sb_store_new (conninfo, 1000);
    CHECK (store != NULL);
    if (!store)
        return;
    uint64_t seq;
    char epoch[64];
    CHECK_INT (sb_store_cursor (store, "deadline-test", &seq, epoch, sizeof epoch), 0);
    int64_t ok_us = sb_store_last_ok_us (store);
    CHECK (ok_us > 0 && sb_store_alive (ok_us, 1000));
    CHECK (!sb_store_alive (0, 1000));
    CHECK (!sb_store_alive (ok_us - 3000000, 1000));

    s_exec ("BEGIN", NULL);
    s_exec ("LOCK TABLE ingest_cursors IN ACCESS EXCLUSIVE MODE", NULL);
    started = sb_time_mono_ms ();
    sb_log_init ("test_sb_store", SB_LOG_OFF);
    CHECK_INT (sb_store_cursor (store, "deadline-test", &seq, epoch, sizeof epoch), -1);
    sb_log_init ("test_sb_store", SB_LOG_ERROR);
    took = sb_time_mono_ms () - started;
    CHECK (took >= 400 && took < 1500);
    CHECK (sb_store_last_ok_us (store) == ok_us);
    s_exec ("COMMIT", NULL);
    CHECK_INT (sb_store_cursor (store, "deadline-test", &seq, epoch, sizeof epoch), 0);
    CHECK (sb_store_last_ok_us (store) > ok_us);
    CHECK_INT (sb_store_ping (store), 0);
    sb_store_destroy (&store);
}

static void
test_migrate_concurrently (const char *conninfo)
{
    fflush (NULL);
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = fork ();
        if (pids[i] == 0) {
            sb_store_t *store = sb_store_new (conninfo, 0);
            int rc = store ? sb_store_migrate (store, SB_MIGRATIONS_DIR) : -1;
            sb_store_destroy (&store);
            _exit (rc == 0 ? 0 : 1);
        }
        CHECK (pids[i] > 0);
    }
    for (int i = 0; i < 2; i++) {
        int status = -1;
        CHECK (waitpid (pids[i], &status, 0) == pids[i]);
        CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    }
}

//  ---------------------------------------------------------------------
//  Events, contacts, messages (no rules)

static void
test_inbound_kinds (sb_store_t *store)
{
    sb_event_t *events[7];
    events[0] = s_sms ("SMin0001", "+14155550001", "hello sms");
    events[1] = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, "SMin0002",
                         "+14155550002", "+14155238886", "hello twilio whatsapp");
    sb_event_set (&events[1]->profile_name, "Ana");
    events[2] = s_meta ("wamid.in0003", "16505550003", "hello meta");
    events[3] = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_CALL, "CAin0004",
                         "+14155550004", "+15558675310", NULL);
    sb_event_set (&events[3]->call_status, "ringing");
    events[4] = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, "CAin0004",
                         "+14155550004", "+15558675310", NULL);
    sb_event_set (&events[4]->digits, "1234");
    events[5] = s_status (SB_PROVIDER_META, "wamid.unknown0005", "delivered", NULL);
    //  A Meta change with neither message nor status: no id, no sender.
    events[6] =
        s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, NULL, NULL, NULL, NULL);
    sb_event_set (&events[6]->message_type, "unknown");
    int64_t before = s_int ("SELECT count(*) FROM events", NULL);

    sb_store_stats_t st = s_write (store, events, 7, NULL);
    CHECK_INT (st.stored, 7);
    CHECK_INT (st.duplicates, 0);
    CHECK_INT (st.replies, 0);
    CHECK_INT (s_int ("SELECT count(*) FROM events", NULL) - before, 7);

    //  events: columns and the payload round trip.
    CHECK_STR (s_text ("SELECT provider || '/' || channel || '/' || kind || '/' || message_type"
                       " FROM events WHERE provider_id = 'wamid.in0003'",
                       NULL),
               "meta/whatsapp/message/text");
    CHECK_STR (s_text ("SELECT status FROM events WHERE provider_id = 'wamid.unknown0005'", NULL),
               "delivered");
    CHECK_STR (
        s_text ("SELECT status FROM events WHERE kind = 'call' AND provider_id = 'CAin0004'", NULL),
        "ringing");
    CHECK_STR (s_text ("SELECT text FROM events WHERE provider_id = 'SMin0001'", NULL),
               "hello sms");
    CHECK_INT (s_int ("SELECT (extract(epoch FROM received_at) * 1000)::int8 FROM events"
                      " WHERE provider_id = 'SMin0001'",
                      NULL),
               events[0]->received_at_ms);
    PGresult *r = PQexecParams (s_db, "SELECT payload FROM events WHERE provider_id = $1", 1, NULL,
                                (const char *[]){"SMin0002"}, NULL, NULL, 1);
    CHECK (PQresultStatus (r) == PGRES_TUPLES_OK && PQntuples (r) == 1);
    if (PQntuples (r) == 1) {
        sb_event_t *back = sb_event_decode (PQgetvalue (r, 0, 0), (size_t) PQgetlength (r, 0, 0));
        CHECK (back != NULL);
        if (back) {
            CHECK_STR (back->text, "hello twilio whatsapp");
            CHECK_STR (back->profile_name, "Ana");
            CHECK_INT (back->seq, events[1]->seq);
        }
        sb_event_destroy (&back);
    }
    PQclear (r);

    //  contacts: one per sender (the call and the gather share theirs).
    CHECK_INT (s_int ("SELECT count(*) FROM contacts WHERE address IN ('+14155550001',"
                      " '+14155550002', '16505550003', '+14155550004')",
                      NULL),
               4);
    CHECK_STR (s_text ("SELECT provider || '/' || channel || '/' || profile_name FROM contacts"
                       " WHERE address = '16505550003'",
                       NULL),
               "meta/whatsapp/Sheena Nelson");
    CHECK_STR (s_text ("SELECT profile_name FROM contacts WHERE address = '+14155550002'", NULL),
               "Ana");
    CHECK_STR (s_text ("SELECT channel FROM contacts WHERE address = '+14155550004'", NULL),
               "voice");
    CHECK_INT (s_int ("SELECT (extract(epoch FROM last_inbound_at) * 1000)::int8 FROM contacts"
                      " WHERE address = '16505550003'",
                      NULL),
               events[2]->received_at_ms);
    CHECK_STR (s_text ("SELECT opted_out::text FROM contacts WHERE address = '+14155550001'", NULL),
               "false");

    //  messages: inbound rows for the messages and the gather, not the call.
    CHECK_INT (
        s_int ("SELECT count(*) FROM messages WHERE direction = 'inbound' AND contact_addr IN"
               " ('+14155550001', '+14155550002', '16505550003', '+14155550004')",
               NULL),
        4);
    CHECK_STR (s_text ("SELECT body || '|' || our_addr || '|' || status FROM messages"
                       " WHERE provider_id = 'SMin0001'",
                       NULL),
               "hello sms|+15558675310|received");
    CHECK_STR (s_text ("SELECT body || '|' || message_type || '|' || coalesce(provider_id, 'null')"
                       " FROM messages WHERE contact_addr = '+14155550004'",
                       NULL),
               "1234|gather|null");
    CHECK_INT (s_int ("SELECT count(*) FROM messages m JOIN events e ON e.id = m.event_id"
                      " WHERE e.provider_id = 'wamid.in0003'",
                      NULL),
               1);

    //  The cursor.
    uint64_t seq = 0;
    char epoch[64];
    CHECK_INT (sb_store_cursor (store, s_ingress, &seq, epoch, sizeof epoch), 0);
    CHECK_INT (seq, events[6]->seq);
    CHECK_STR (epoch, s_epoch);
    CHECK_INT (sb_store_cursor (store, "no-such-ingress", &seq, epoch, sizeof epoch), 0);
    CHECK_INT (seq, 0);
    CHECK_STR (epoch, "");

    //  The same batch again (a replay): all duplicates, nothing new.
    int64_t contacts = s_int ("SELECT count(*) FROM contacts", NULL);
    int64_t messages = s_int ("SELECT count(*) FROM messages", NULL);
    st = s_write (store, events, 7, NULL);
    CHECK_INT (st.stored, 0);
    CHECK_INT (st.duplicates, 7);
    CHECK_INT (s_int ("SELECT count(*) FROM events", NULL) - before, 7);
    CHECK_INT (s_int ("SELECT count(*) FROM contacts", NULL), contacts);
    CHECK_INT (s_int ("SELECT count(*) FROM messages", NULL), messages);
    s_free_all (events, 7);
}

//  Duplicates inside one batch, retries under new seqs, id-less events,
//  gathers sharing a CallSid, and a new journal epoch.
static void
test_dedup (sb_store_t *store)
{
    sb_event_t *events[10];
    events[0] = s_sms ("SMdup0001", "+14155550011", "one");
    events[1] = s_copy (events[0], events[0]->seq);  //  same seq twice
    events[2] = s_copy (events[0], ++s_seq);         //  provider retry
    //  Id-less events are unique by request bytes (0003_content_key.sql):
    //  the provider's retry of one, journaled again under a new seq, is a
    //  duplicate; another item is kept, and so is the same item delivered
    //  again in another request (other bytes: Meta's entry time).
    events[3] =
        s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, NULL, NULL, NULL, NULL);
    sb_event_set (&events[3]->detail_json, "{\"from\":\"1650\",\"text\":{\"body\":\"a\"}}");
    events[4] = s_copy (events[3], ++s_seq);
    events[8] = s_copy (events[3], ++s_seq);
    sb_event_set (&events[8]->detail_json, "{\"from\":\"1650\",\"text\":{\"body\":\"b\"}}");
    events[9] = s_copy (events[3], ++s_seq);
    sb_event_set_raw (events[9], "{\"time\":2}", 10);
    //  Two gathers in one call, and a retry of the first.
    events[5] = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, "CAdup0001",
                         "+14155550012", "+15558675310", NULL);
    sb_event_set (&events[5]->digits, "1");
    events[6] = s_copy (events[5], ++s_seq);
    sb_event_set (&events[6]->digits, "123456");
    events[7] = s_copy (events[5], ++s_seq);
    sb_store_stats_t st = s_write (store, events, 10, NULL);
    CHECK_INT (st.stored, 6);
    CHECK_INT (st.duplicates, 4);
    char lo[24], hi[24];
    snprintf (lo, sizeof lo, "%" PRIu64, events[3]->seq);
    snprintf (hi, sizeof hi, "%" PRIu64, events[9]->seq);
    CHECK_INT (s_int ("SELECT count(*) FROM events WHERE provider_id = '' AND seq BETWEEN $1 AND $2"
                      " AND dedup_detail LIKE 'content:%'",
                      lo, hi, NULL),
               3);
    CHECK_INT (s_int ("SELECT count(*) FROM events WHERE provider_id = 'SMdup0001'", NULL), 1);
    CHECK_INT (s_int ("SELECT count(*) FROM messages WHERE provider_id = 'SMdup0001'", NULL), 1);
    CHECK_INT (s_int ("SELECT count(*) FROM events WHERE provider_id = 'CAdup0001'", NULL), 2);
    CHECK_INT (s_int ("SELECT count(*) FROM messages WHERE contact_addr = '+14155550012'", NULL),
               2);

    //  A new epoch starts again at seq 1: stored, and the cursor follows it.
    sb_event_t *fresh = s_sms ("SMdup0002", "+14155550011", "two");
    sb_event_set (&fresh->epoch, "ffffffffffffffffffffffffffffffff");
    fresh->seq = 1;
    st = s_write (store, &fresh, 1, NULL);
    CHECK_INT (st.stored, 1);
    uint64_t seq = 0;
    char epoch[64];
    CHECK_INT (sb_store_cursor (store, s_ingress, &seq, epoch, sizeof epoch), 0);
    CHECK_INT (seq, 1);
    CHECK_STR (epoch, "ffffffffffffffffffffffffffffffff");
    //  Back on the old epoch (the tests go on with it).
    sb_event_t *old = s_sms ("SMdup0003", "+14155550011", "three");
    st = s_write (store, &old, 1, NULL);
    CHECK_INT (sb_store_cursor (store, s_ingress, &seq, epoch, sizeof epoch), 0);
    CHECK_INT (seq, old->seq);
    CHECK_STR (epoch, s_epoch);
    //  Invalid UTF-8 from a provider is stored (replaced), never refused.
    sb_event_t *bad = s_sms ("SMdup0004", "+14155550011", NULL);
    bad->text = strdup ("caf\xC3 \xFF ok");
    st = s_write (store, &bad, 1, NULL);
    CHECK_INT (st.stored, 1);
    CHECK_STR (s_text ("SELECT text FROM events WHERE provider_id = 'SMdup0004'", NULL),
               "caf\xEF\xBF\xBD \xEF\xBF\xBD ok");
    sb_event_destroy (&bad);
    //  Oversized values from outside never make a batch fail: a 5000-byte
    //  provider id and sender are cut for the indexes (and still dedupe),
    //  a 100 kB text is kept whole.
    char *huge = malloc (100001);
    memset (huge, 'x', 100000);
    huge[100000] = 0;
    char *long_id = strndup (huge, 5000);
    sb_event_t *big[2] = {s_sms (long_id, long_id, huge), NULL};
    big[1] = s_copy (big[0], ++s_seq);
    st = s_write (store, big, 2, NULL);
    CHECK_INT (st.stored, 1);
    CHECK_INT (st.duplicates, 1);
    CHECK_INT (s_int ("SELECT length(provider_id) FROM events WHERE provider_id LIKE 'xxx%'", NULL),
               512);
    CHECK_INT (s_int ("SELECT length(text) FROM events WHERE provider_id LIKE 'xxx%'", NULL),
               100000);
    CHECK_INT (s_int ("SELECT length(address) FROM contacts WHERE address LIKE 'xxx%'", NULL), 512);
    s_free_all (big, 2);
    //  Senders that differ only past the cut, or only in invalid bytes, are
    //  one contact for PostgreSQL, so for the store too.
    char *long_a = strndup (huge, 600), *long_b = strndup (huge, 700);
    long_b[650] = 'y';
    sb_event_t *same[4] = {s_sms ("SMsame01", long_a, "a"), s_sms ("SMsame02", long_b, "b"),
                           s_sms ("SMsame03", "x", "c"), s_sms ("SMsame04", "x", "d")};
    //  Raw bytes, as a decoder of the wire would leave them.
    free (same[2]->from);
    same[2]->from = strdup ("+1415\xFF");
    free (same[3]->from);
    same[3]->from = strdup ("+1415\xFE");
    st = s_write (store, same, 4, NULL);
    CHECK_INT (st.stored, 4);
    CHECK_INT (s_int ("SELECT count(*) FROM contacts WHERE address LIKE 'xxx%'", NULL), 1);
    CHECK_INT (s_int ("SELECT count(*) FROM contacts WHERE address = '+1415\xEF\xBF\xBD'", NULL),
               1);
    s_free_all (same, 4);
    free (long_a);
    free (long_b);
    free (long_id);
    free (huge);
    sb_event_destroy (&old);
    sb_event_destroy (&fresh);
    s_free_all (events, 10);
}

//  ---------------------------------------------------------------------
//  Outbox and statuses without rules: rows made by hand

//  An outbound reply waiting in the outbox, with its messages row.
static int64_t
s_make_reply (const char *to)
{
    int64_t id = s_int ("INSERT INTO outbox (kind, provider, channel, from_addr, to_addr, body,"
                        " conv, part) SELECT 'reply', 'twilio', 'sms', '+15558675310', $1, 'hi',"
                        " h, h % 256 FROM sb_conv_hash ('twilio', 'sms', '', '+15558675310', $1) h"
                        " RETURNING id",
                        to, NULL);
    char sid[24];
    snprintf (sid, sizeof sid, "%" PRId64, id);
    s_exec ("INSERT INTO messages (direction, provider, channel, contact_addr, our_addr, body,"
            " status, status_rank, outbox_id)"
            " VALUES ('outbound', 'twilio', 'sms', $1, '+15558675310', 'hi', 'queued', 1, $2)",
            to, sid, NULL);
    return id;
}

static const char *
s_message_status (int64_t outbox_id)
{
    char sid[24];
    snprintf (sid, sizeof sid, "%" PRId64, outbox_id);
    return s_text ("SELECT status || '/' || status_rank || '/' || error_code FROM messages"
                   " WHERE outbox_id = $1",
                   sid, NULL);
}

static const char *
s_outbox (int64_t id, const char *column)
{
    char sid[24], sql[128];
    snprintf (sid, sizeof sid, "%" PRId64, id);
    snprintf (sql, sizeof sql, "SELECT %s::text FROM outbox WHERE id = $1", column);
    return s_text (sql, sid, NULL);
}

static void
s_write_status (sb_store_t *store, const char *sid, const char *status, const char *error_code)
{
    sb_event_t *e = s_status (SB_PROVIDER_TWILIO, sid, status, error_code);
    s_write (store, &e, 1, NULL);
    sb_event_destroy (&e);
}

static void
test_statuses (sb_store_t *store)
{
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state = 'pending'", NULL);
    int64_t a = s_make_reply ("+14155550021");
    int64_t b = s_make_reply ("+14155550022");
    int64_t c = s_make_reply ("+14155550023");
    int64_t d = s_make_reply ("+14155550024");
    CHECK_INT (s_claim_count (store), 4);
    sb_send_result_t res = s_result (a, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMst000a", NULL, NULL);
    s_record (store, &res, 5);
    res = s_result (b, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMst000b", NULL, NULL);
    s_record (store, &res, 5);
    CHECK_STR (s_outbox (a, "state"), "sent");
    CHECK_STR (s_outbox (a, "provider_id"), "SMst000a");
    CHECK_STR (s_message_status (a), "queued/1/");

    //  Out of order, one batch each: read, then sent, then delivered.
    s_write_status (store, "SMst000a", "read", NULL);
    s_write_status (store, "SMst000a", "sent", NULL);
    s_write_status (store, "SMst000a", "delivered", NULL);
    CHECK_STR (s_message_status (a), "read/4/");

    //  All in one batch, out of order: the highest wins; the stats count it once.
    sb_event_t *batch[3] = {s_status (SB_PROVIDER_TWILIO, "SMst000b", "delivered", NULL),
                            s_status (SB_PROVIDER_TWILIO, "SMst000b", "sent", NULL),
                            s_status (SB_PROVIDER_TWILIO, "SMst000b", "queued", NULL)};
    sb_store_stats_t st = s_write (store, batch, 3, NULL);
    CHECK_INT (st.statuses, 1);
    CHECK_STR (s_message_status (b), "delivered/3/");
    s_free_all (batch, 3);

    //  failed is terminal: read and delivered after it change nothing.
    s_write_status (store, "SMst000b", "failed", "30008");
    s_write_status (store, "SMst000b", "read", NULL);
    s_write_status (store, "SMst000b", "delivered", NULL);
    CHECK_STR (s_message_status (b), "failed/10/30008");
    //  An unknown status never applies; a status for an unknown message is kept as an event.
    s_write_status (store, "SMst000a", "deleted", NULL);
    CHECK_STR (s_message_status (a), "read/4/");
    s_write_status (store, "SMnobody", "delivered", NULL);
    CHECK_INT (s_int ("SELECT count(*) FROM events WHERE provider_id = 'SMnobody'", NULL), 1);

    //  Statuses that arrive before the send is recorded apply when it is.
    s_write_status (store, "SMst000c", "sent", NULL);
    s_write_status (store, "SMst000c", "delivered", NULL);
    res = s_result (c, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMst000c", NULL, NULL);
    s_record (store, &res, 5);
    CHECK_STR (s_message_status (c), "delivered/3/");
    s_write_status (store, "SMst000d", "undelivered", "30003");
    res = s_result (d, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMst000d", NULL, NULL);
    s_record (store, &res, 5);
    CHECK_STR (s_message_status (d), "undelivered/10/30003");
    s_write_status (store, "SMst000d", "delivered", NULL);
    CHECK_STR (s_message_status (d), "undelivered/10/30003");
}

static void
test_outbox (sb_store_t *store, const char *conninfo)
{
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    CHECK_INT (s_claim_count (store), 0);
    int64_t a = s_make_reply ("+14155550031");
    int64_t b = s_make_reply ("+14155550032");
    int64_t c = s_make_reply ("+14155550033");

    //  claim marks them sending and hands them over in id order.
    sb_outbox_item_t *items = NULL;
    int n = sb_store_claim (store, 2, &items);
    CHECK_INT (n, 2);
    if (n == 2) {
        CHECK_INT (items[0].id, a);
        CHECK_INT (items[1].id, b);
        CHECK_INT (items[0].kind, SB_OUTBOX_REPLY);
        CHECK_INT (items[0].provider, SB_PROVIDER_TWILIO);
        CHECK_INT (items[0].channel, SB_CHANNEL_SMS);
        CHECK_STR (items[0].to, "+14155550031");
        CHECK_STR (items[0].from, "+15558675310");
        CHECK_STR (items[0].body, "hi");
        CHECK_STR (items[0].context_id, "");
        CHECK_INT (items[0].attempts, 0);
    }
    for (int i = 0; i < n; i++)
        sb_outbox_item_free (&items[i]);
    free (items);
    CHECK_STR (s_outbox (a, "state"), "sending");
    CHECK_STR (s_outbox (c, "state"), "pending");

    //  A lease tick never puts back what its own store claimed (a late
    //  one cannot undo newer claims); after a crash, the restarted
    //  dispatcher's new store takes the partitions and puts the sending
    //  rows back, once. A row another transaction locks (its old holder
    //  stopped inside a settle that records it) is left to a later tick,
    //  not waited on: the tick that takes the partitions still commits.
    sb_store_lease_t lease;
    CHECK_INT (sb_store_lease_tick (store, "test", 600000, &lease), 0);
    CHECK_INT (lease.recovered, 0);
    CHECK_STR (s_outbox (a, "state"), "sending");
    char aid[24];
    snprintf (aid, sizeof aid, "%" PRId64, a);
    const char *locked[] = {aid};
    PGconn *holder = PQconnectdb (conninfo);
    PQclear (PQexec (holder, "BEGIN"));
    PGresult *r = PQexecParams (holder, "SELECT id FROM outbox WHERE id = $1 FOR UPDATE", 1, NULL,
                                locked, NULL, NULL, 0);
    CHECK_INT (PQntuples (r), 1);
    PQclear (r);
    sb_store_t *restarted = sb_store_new (conninfo, 0);
    CHECK (restarted != NULL);
    s_hold_all (restarted);
    CHECK_STR (s_outbox (a, "state"), "sending");
    CHECK_STR (s_outbox (b, "state"), "pending");
    PQclear (PQexec (holder, "COMMIT"));
    PQfinish (holder);
    CHECK_INT (sb_store_lease_tick (restarted, "test", 600000, &lease), 0);
    CHECK_INT (lease.recovered, 1);
    CHECK_STR (s_outbox (a, "state"), "pending");
    CHECK_STR (s_outbox (a, "claim_token"), "(null)");
    CHECK_INT (sb_store_lease_tick (restarted, "test", 600000, &lease), 0);
    CHECK_INT (lease.recovered, 0);
    sb_store_destroy (&restarted);
    s_hold_all (store);
    CHECK_INT (s_claim_count (store), 3);

    //  RETRY: pending again, one attempt more, due later (base 1000 ms:
    //  the first delay is in (500, 1000] ms).
    sb_send_result_t res = s_result (a, SB_OUTBOX_REPLY, SB_SEND_RETRY, NULL, NULL, NULL);
    res.http_status = 503;
    s_record (store, &res, 3);
    CHECK_STR (s_outbox (a, "state"), "pending");
    CHECK_STR (s_outbox (a, "attempts"), "1");
    CHECK_STR (s_outbox (a, "last_error"), "http=503 provider said no");
    char sid[24];
    snprintf (sid, sizeof sid, "%" PRId64, a);
    int64_t delay = s_int ("SELECT (extract(epoch FROM next_attempt_at - now()) * 1000)::int8"
                           " FROM outbox WHERE id = $1",
                           sid, NULL);
    CHECK (delay > 100 && delay <= 1000);  //  minus the time since
    CHECK_INT (s_claim_count (store), 0);  //  not due yet
    //  Retry-After wins when longer.
    s_exec ("UPDATE outbox SET next_attempt_at = now() WHERE id = $1", sid, NULL);
    CHECK_INT (s_claim_count (store), 1);
    res = s_result (a, SB_OUTBOX_REPLY, SB_SEND_RETRY, NULL, NULL, "20429");
    res.http_status = 429;
    res.retry_after_ms = 120000;
    s_record (store, &res, 3);
    delay = s_int ("SELECT (extract(epoch FROM next_attempt_at - now()) * 1000)::int8"
                   " FROM outbox WHERE id = $1",
                   sid, NULL);
    CHECK (delay > 110000 && delay <= 120000);
    CHECK_STR (s_outbox (a, "attempts"), "2");
    CHECK_STR (s_outbox (a, "last_error"), "http=429 code=20429 provider said no");
    //  Third attempt of three: dead, and its message failed.
    s_exec ("UPDATE outbox SET next_attempt_at = now() WHERE id = $1", sid, NULL);
    CHECK_INT (s_claim_count (store), 1);
    res = s_result (a, SB_OUTBOX_REPLY, SB_SEND_RETRY, NULL, NULL, NULL);
    s_record_want (store, &res, 3, 1);
    CHECK_STR (s_outbox (a, "state"), "dead");
    CHECK_STR (s_outbox (a, "attempts"), "3");
    CHECK_STR (s_message_status (a), "failed/10/");

    //  Backoff grows and is capped: attempts 10 with base 1000, max 4000.
    snprintf (sid, sizeof sid, "%" PRId64, c);
    s_exec ("UPDATE outbox SET attempts = 10, state = 'sending' WHERE id = $1", sid, NULL);
    res = s_result (c, SB_OUTBOX_REPLY, SB_SEND_RETRY, NULL, NULL, NULL);
    CHECK_INT (sb_store_record (store, &res, 20, 1000, 4000), 0);
    sb_outbox_result_free (&res);
    delay = s_int ("SELECT (extract(epoch FROM next_attempt_at - now()) * 1000)::int8"
                   " FROM outbox WHERE id = $1",
                   sid, NULL);
    CHECK (delay > 1000 && delay <= 4000);

    //  FINAL with opt_out: failed, and the contact opted out.
    res = s_result (b, SB_OUTBOX_REPLY, SB_SEND_FINAL, NULL, NULL, "21610");
    res.http_status = 400;
    res.opt_out = true;
    s_record (store, &res, 3);
    CHECK_STR (s_outbox (b, "state"), "failed");
    CHECK_STR (s_message_status (b), "failed/10/21610");
    CHECK_STR (s_text ("SELECT opted_out::text FROM contacts WHERE provider = 'twilio'"
                       " AND channel = 'sms' AND address = '+14155550032'",
                       NULL),
               "true");
    //  A result for a row that does not exist is not an error.
    res = s_result (999999999, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMx", NULL, NULL);
    s_record (store, &res, 3);

    int64_t pending = -1, sending = -1;
    s_make_reply ("+14155550779");
    s_exec ("UPDATE outbox SET state = 'sending' WHERE id = $1", sid, NULL);
    CHECK_INT (sb_store_outbox_depth (store, &pending, &sending), 0);
    CHECK_INT (pending, s_int ("SELECT count(*) FROM outbox WHERE state = 'pending'", NULL));
    CHECK (pending >= 1);
    CHECK_INT (sending, 1);
    s_exec ("UPDATE outbox SET state = 'pending' WHERE id = $1", sid, NULL);
}

//  Results recorded and rows claimed in one transaction and one round trip.
static void
test_settle (sb_store_t *store)
{
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    int64_t a = s_make_reply ("+14155550771");
    int64_t b = s_make_reply ("+14155550772");
    CHECK_INT (s_claim_count (store), 2);
    int64_t c = s_make_reply ("+14155550773");
    int64_t d = s_make_reply ("+14155550774");
    sb_store_retry_t retry = {1, 1000, 60000};

    //  a (sent) and b (retry past its only attempt: dead) recorded, and c
    //  claimed, in one call.
    sb_send_result_t results[2];
    bool dead[2] = {true, true};
    sb_outbox_item_t *items = NULL;
    results[0] = s_result (a, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMsettleA", NULL, NULL);
    results[1] = s_result (b, SB_OUTBOX_REPLY, SB_SEND_RETRY, NULL, NULL, NULL);
    int n = sb_store_settle (store, results, 2, &retry, dead, 1, &items);
    CHECK_INT (n, 1);
    if (n == 1)
        CHECK_INT (items[0].id, c);
    for (int i = 0; i < n; i++)
        sb_outbox_item_free (&items[i]);
    free (items);
    CHECK (!dead[0]);
    CHECK (dead[1]);
    CHECK_STR (s_outbox (a, "state"), "sent");
    CHECK_STR (s_outbox (a, "provider_id"), "SMsettleA");
    CHECK_STR (s_outbox (a, "last_error"), "");
    CHECK_STR (s_outbox (b, "state"), "dead");
    CHECK_STR (s_outbox (c, "state"), "sending");
    CHECK_STR (s_outbox (d, "state"), "pending");
    //  The same results again (a caller retrying after a failure): rows no
    //  longer sending are left as they are.
    CHECK_INT (sb_store_settle (store, results, 2, &retry, dead, 0, NULL), 0);
    CHECK_STR (s_outbox (a, "attempts"), "1");
    CHECK_STR (s_outbox (b, "state"), "dead");
    for (int i = 0; i < 2; i++)
        sb_outbox_result_free (&results[i]);
    //  Claim only, and nothing at all.
    CHECK_INT (sb_store_settle (store, NULL, 0, &retry, NULL, 10, &items), 1);
    if (items)
        sb_outbox_item_free (&items[0]);
    free (items);
    CHECK_INT (sb_store_settle (store, NULL, 0, &retry, NULL, 10, &items), 0);
    CHECK (items == NULL);
}

static const char *
s_message_provider_id (int64_t outbox_id)
{
    char sid[24];
    snprintf (sid, sizeof sid, "%" PRId64, outbox_id);
    return s_text ("SELECT provider_id FROM messages WHERE outbox_id = $1", sid, NULL);
}

//  n replies to prefix and 0, 1, ..., claimed, once every open row is
//  marked sent (so the claim takes these alone).
static void
s_claimed_replies (sb_store_t *store, const char *prefix, int64_t *ids, int n)
{
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    for (int i = 0; i < n; i++) {
        char to[24];
        snprintf (to, sizeof to, "%s%d", prefix, i);
        ids[i] = s_make_reply (to);
    }
    CHECK_INT (s_claim_count (store), n);
}

//  One settle of four results, the second one poison (outcome, provider id
//  and error as given): its neighbours, a SENT, a RETRY and a FINAL, are
//  recorded and a due row is claimed whatever the poison does. Returns the
//  poison's outbox id.
static int64_t
s_settle_poison (sb_store_t *store, int outcome, const char *provider_id, const char *error)
{
    int64_t ids[4];
    s_claimed_replies (store, "+1415555090", ids, 4);
    int64_t due = s_make_reply ("+14155550909");
    char ok_id[40];
    snprintf (ok_id, sizeof ok_id, "SMpoisonok%" PRId64, ids[0]);
    sb_send_result_t results[4];
    results[0] = s_result (ids[0], SB_OUTBOX_REPLY, SB_SEND_SENT, ok_id, NULL, NULL);
    results[1] = s_result (ids[1], SB_OUTBOX_REPLY, SB_SEND_SENT, provider_id, NULL, NULL);
    results[1].outcome = (sb_send_outcome_t) outcome;
    results[1].http_status = 201;
    free (results[1].error);
    results[1].error = strdup (error);
    results[2] = s_result (ids[2], SB_OUTBOX_REPLY, SB_SEND_RETRY, NULL, NULL, NULL);
    results[3] = s_result (ids[3], SB_OUTBOX_REPLY, SB_SEND_FINAL, NULL, NULL, "21211");
    sb_store_retry_t retry = {5, 1000, 60000};
    bool dead[4];
    sb_outbox_item_t *items = NULL;
    int n = sb_store_settle (store, results, 4, &retry, dead, 10, &items);
    CHECK_INT (n, 1);
    if (n == 1)
        CHECK_INT (items[0].id, due);
    for (int i = 0; i < n; i++)
        sb_outbox_item_free (&items[i]);
    free (items);
    for (int i = 0; i < 4; i++)
        sb_outbox_result_free (&results[i]);
    CHECK_STR (s_outbox (ids[0], "state"), "sent");
    CHECK_STR (s_outbox (ids[0], "provider_id"), ok_id);
    CHECK_STR (s_message_provider_id (ids[0]), ok_id);
    CHECK_STR (s_outbox (ids[2], "state"), "pending");
    CHECK_STR (s_outbox (ids[2], "attempts"), "1");
    CHECK_STR (s_outbox (ids[3], "state"), "failed");
    CHECK_STR (s_message_status (ids[3]), "failed/10/21211");
    CHECK_STR (s_outbox (due, "state"), "sending");
    return ids[1];
}

//  last_error of an outbox row holds want.
static void
s_check_error (int64_t id, const char *want)
{
    const char *got = s_outbox (id, "last_error");
    if (!strstr (got, want)) {
        fprintf (stderr, "outbox %" PRId64 " last_error \"%s\" lacks \"%s\"\n", id, got, want);
        s_failures++;
    }
}

//  Storing split among dispatchers (0013_ingest_cursors.sql): a batch
//  stores only the events its policy does not skip, its cursor claims its
//  partitions up to its highest seq, and the cover of some partitions is,
//  for each, the highest claim naming it, the least of those. Two stores
//  (two dispatchers' instances) on one ingress's journal of six SMS from
//  six contacts in six partitions: A holds those of seqs 1, 3, 5, B the
//  rest; B runs behind, then A dies and B takes everything.
static uint64_t
s_cover (sb_store_t *store, const char *ingress, const bool *parts)
{
    uint64_t seq = 99;
    char epoch[64];
    CHECK_INT (sb_store_cover (store, ingress, NULL, parts, &seq, epoch, sizeof epoch), 0);
    return seq;
}

static void
test_cursor_split (sb_store_t *a, const char *conninfo)
{
    const char *ing = "split-ingress";
    sb_store_t *b = sb_store_new (conninfo, 0);
    CHECK (b != NULL);
    if (!b)
        return;
    sb_event_t *ev[6];
    bool seen[SB_PARTITIONS] = {false};
    bool pa[SB_PARTITIONS] = {false}, pb[SB_PARTITIONS] = {false};
    int n = 0;
    for (int c = 0; n < 6 && c < 1000; c++) {
        char from[24], sid[24];
        snprintf (from, sizeof from, "+1415556%04d", c);
        snprintf (sid, sizeof sid, "SMsplit%04d", c);
        sb_event_t *e = s_sms (sid, from, "split");
        int p = sb_store_event_partition (e);
        if (seen[p]) {
            sb_event_destroy (&e);
            continue;
        }
        seen[p] = true;
        sb_event_set (&e->ingress_id, ing);
        e->seq = (uint64_t) n + 1;
        char id[64];
        snprintf (id, sizeof id, "%s-%d", ing, n + 1);
        sb_event_set (&e->id, id);
        ev[n++] = e;
    }
    CHECK_INT (n, 6);
    if (n != 6) {
        s_free_all (ev, (size_t) n);
        sb_store_destroy (&b);
        return;
    }
    for (int p = 0; p < SB_PARTITIONS; p++)
        pa[p] = true;
    for (int i = 1; i < 6; i += 2) {
        pa[sb_store_event_partition (ev[i])] = false;
        pb[sb_store_event_partition (ev[i])] = true;
    }
    bool skip_a[6], skip_b[6];
    for (int i = 0; i < 6; i++) {
        skip_a[i] = !pa[sb_store_event_partition (ev[i])];
        skip_b[i] = !pb[sb_store_event_partition (ev[i])];
    }
    //  Nothing claimed: every cover is 0.
    CHECK_INT (s_cover (a, ing, NULL), 0);

    //  A stores seqs 1, 3, 5 of the six, and claims its partitions to 6.
    sb_store_policy_t policy_a = {.skip = skip_a, .parts = pa};
    sb_store_stats_t st = s_write (a, ev, 6, &policy_a);
    CHECK_INT (st.stored, 3);
    CHECK_INT (st.skipped, 3);
    CHECK_INT (st.duplicates, 0);
    CHECK_INT (s_int ("SELECT count(*) FROM events WHERE ingress_id = $1", ing, NULL), 3);
    CHECK_INT (s_cover (a, ing, pa), 6);
    CHECK_INT (s_cover (a, ing, pb), 0);
    CHECK_INT (s_cover (a, ing, NULL), 0);

    //  B, behind, stores seqs 2 and 4 of the first four.
    sb_store_policy_t policy_b = {.skip = skip_b, .parts = pb};
    st = s_write (b, ev, 4, &policy_b);
    CHECK_INT (st.stored, 2);
    CHECK_INT (st.skipped, 2);
    CHECK_INT (s_cover (b, ing, pb), 4);
    CHECK_INT (s_cover (b, ing, NULL), 4);
    //  Only the partitions asked count: one of A's alone is covered to 6.
    bool one[SB_PARTITIONS] = {false};
    one[sb_store_event_partition (ev[0])] = true;
    CHECK_INT (s_cover (b, ing, one), 6);

    //  A dies; B takes every partition. The cover of A's is 6 (nothing to
    //  replay there), B's own stream goes on at 5: seq 6 is new, 5 was A's.
    CHECK_INT (s_cover (b, ing, pa), 6);
    st = s_write (b, ev + 4, 2, NULL);
    CHECK_INT (st.stored, 1);
    CHECK_INT (st.duplicates, 1);
    CHECK_INT (s_cover (b, ing, NULL), 6);
    CHECK_INT (s_int ("SELECT count(*) FROM events WHERE ingress_id = $1", ing, NULL), 6);
    //  A's claim, and B's of each set of partitions it stored for.
    CHECK_INT (s_int ("SELECT count(*) FROM ingest_cursors WHERE ingress_id = $1", ing, NULL), 3);

    //  A claim moves up while its partitions stay (a replay's overlap does
    //  not move it down) ...
    st = s_write (b, ev, 2, NULL);
    CHECK_INT (st.duplicates, 2);
    CHECK_INT (s_cover (b, ing, NULL), 6);
    //  ... and B giving A's partitions up again (to a third dispatcher
    //  not there yet) leaves its claim on them: their next holder starts
    //  at 6, not at the journal's start, even with A's own claim gone.
    char pa_bits[SB_PARTITIONS + 1], pb_bits[SB_PARTITIONS + 1];
    for (int p = 0; p < SB_PARTITIONS; p++) {
        pa_bits[p] = pa[p] ? '1' : '0';
        pb_bits[p] = pb[p] ? '1' : '0';
    }
    pa_bits[SB_PARTITIONS] = pb_bits[SB_PARTITIONS] = 0;
    s_exec ("DELETE FROM ingest_cursors WHERE ingress_id = $1 AND parts = $2::bit(256)", ing,
            pa_bits, NULL);
    CHECK_INT (s_int ("SELECT count(*) FROM ingest_cursors WHERE ingress_id = $1", ing, NULL), 2);
    st = s_write (b, ev, 2, &policy_b);
    CHECK_INT (s_cover (b, ing, pa), 6);
    CHECK_INT (s_cover (b, ing, pb), 6);

    //  Pruning: the claims no cover needs, an hour old, go; the others and
    //  every cover stay. Rows as dispatchers gone before would have left.
    static const char add[] =
        "INSERT INTO ingest_cursors (ingress_id, instance, epoch, last_seq, parts, updated_at)"
        " VALUES ($1, $2, $3, $4::int8, $5::bit(256), now () - $6::interval)";
    s_exec (add, ing, "gone-dominated", s_epoch, "3", pa_bits, "2 hours", NULL);
    s_exec (add, ing, "gone-needed", s_epoch, "5", pb_bits, "2 hours", NULL);
    s_exec (add, ing, "gone-old-epoch", "an-older-epoch", "9", pa_bits, "8 days", NULL);
    s_exec (add, ing, "recent-dominated", s_epoch, "3", pa_bits, "1 minute", NULL);
    //  two gone alike, the highest for B's partitions: one of them stays
    s_exec (add, ing, "gone-twin-1", s_epoch, "7", pb_bits, "3 hours", NULL);
    s_exec (add, ing, "gone-twin-2", s_epoch, "7", pb_bits, "3 hours", NULL);
    CHECK_INT (s_cover (a, ing, pb), 7);
    //  gone-dominated, gone-old-epoch, gone-needed (below the twins), a twin
    CHECK_INT (sb_store_cursors_prune (a, ing), 4);
    CHECK_INT (s_int ("SELECT count(*) FROM ingest_cursors WHERE ingress_id = $1"
                      " AND instance IN ('gone-twin-2', 'recent-dominated')",
                      ing, NULL),
               2);
    CHECK_INT (s_int ("SELECT count(*) FROM ingest_cursors WHERE ingress_id = $1", ing, NULL), 5);
    CHECK_INT (s_cover (a, ing, pb), 7);
    CHECK_INT (s_cover (a, ing, pa), 6);
    CHECK_INT (sb_store_cursors_prune (a, ing), 0);
    //  A store's own rows of sets it held before go as well, its current
    //  row never: B's of pb at 4 (the first) goes, at 2 (its last) stays.
    s_exec ("UPDATE ingest_cursors SET updated_at = now () - interval '2 hours'"
            " WHERE ingress_id = $1 AND last_seq IN (2, 4)",
            ing, NULL);
    CHECK_INT (sb_store_cursors_prune (b, ing), 1);
    CHECK_INT (s_int ("SELECT count(*) FROM ingest_cursors WHERE ingress_id = $1 AND last_seq = 2",
                      ing, NULL),
               1);
    CHECK_INT (s_cover (a, ing, pb), 7);
    CHECK_INT (s_cover (a, ing, pa), 6);

    //  A skipped event that carries its request's body for the others
    //  (request_events 2): the body is kept for the one that is stored.
    sb_event_t *req[2];
    req[0] = s_sms ("SMsplitreq0", "+14155569990", "first");
    req[1] = s_sms ("SMsplitreq1", "+14155569991", "second");
    static const char body[] = "From=two&Body=shared-split-body";
    uint8_t sha[SB_EVENT_SHA256_SIZE];
    for (int i = 0; i < 2; i++)
        sb_event_set_raw (req[i], NULL, 0);
    sb_event_share_raw (req, 2, body, strlen (body), sha);
    bool skip_req[2] = {true, false};
    bool but_first[SB_PARTITIONS];
    for (int p = 0; p < SB_PARTITIONS; p++)
        but_first[p] = p != sb_store_event_partition (req[0]);
    sb_store_policy_t policy_req = {.skip = skip_req, .parts = but_first};
    st = s_write (a, req, 2, &policy_req);
    CHECK_INT (st.stored, 1);
    CHECK_INT (st.skipped, 1);
    CHECK_INT (s_int ("SELECT count(*) FROM request_bodies WHERE body = convert_to ($1, 'UTF8')",
                      body, NULL),
               1);
    CHECK_INT (s_int ("SELECT count(*) FROM events WHERE provider_id = 'SMsplitreq0'", NULL), 0);
    sb_event_unshare_raw (req, 2);
    s_free_all (req, 2);
    s_free_all (ev, 6);
    sb_store_destroy (&b);
}

//  The replies SENT in one settle are recorded by one statement; of two
//  with one provider id (a mock repeating ids), which would break
//  messages' unique key there, the second goes one statement after it: the
//  first keeps the id, the second notes it, and every row is sent.
static void
test_sent_many (sb_store_t *store)
{
    int64_t ids[4];
    s_claimed_replies (store, "+1415555095", ids, 4);
    s_write_status (store, "SMmanyA", "delivered", NULL);
    const char *pids[] = {"SMmanyA", "SMmanyB", "SMmanySame", "SMmanySame"};
    sb_send_result_t results[4];
    for (int i = 0; i < 4; i++)
        results[i] = s_result (ids[i], SB_OUTBOX_REPLY, SB_SEND_SENT, pids[i], NULL, NULL);
    sb_store_retry_t retry = {5, 1000, 60000};
    bool dead[4];
    int64_t refused = sb_store_sent_many_refused (store);
    CHECK_INT (sb_store_settle (store, results, 4, &retry, dead, 0, NULL), 0);
    CHECK_INT (sb_store_sent_many_refused (store), refused);  //  no refused statement
    for (int i = 0; i < 4; i++) {
        sb_outbox_result_free (&results[i]);
        CHECK_STR (s_outbox (ids[i], "state"), "sent");
        CHECK_STR (s_outbox (ids[i], "provider_id"), pids[i]);
    }
    CHECK_STR (s_message_provider_id (ids[0]), "SMmanyA");
    CHECK_STR (s_message_status (ids[0]), "delivered/3/");
    CHECK_STR (s_message_provider_id (ids[1]), "SMmanyB");
    CHECK_STR (s_message_status (ids[1]), "queued/1/");
    CHECK_STR (s_message_provider_id (ids[2]), "SMmanySame");
    CHECK_STR (s_message_provider_id (ids[3]), "(null)");
    s_check_error (ids[3], "duplicate provider id");
    CHECK_STR (s_outbox (ids[2], "last_error"), "");
}

//  Poison results hurt only their own row.
static void
test_poison (sb_store_t *store)
{
    //  A provider id already known (a provider, or a mock of its API,
    //  answering the same id twice): the row is sent, keeps the id on the
    //  outbox row and notes it; the message that had the id first keeps it
    //  and its statuses.
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    int64_t first = s_make_reply ("+14155550910");
    CHECK_INT (s_claim_count (store), 1);
    sb_send_result_t res =
        s_result (first, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMpoisondup1", NULL, NULL);
    s_record (store, &res, 5);
    int64_t p = s_settle_poison (store, SB_SEND_SENT, "SMpoisondup1", "");
    CHECK_STR (s_outbox (p, "state"), "sent");
    CHECK_STR (s_outbox (p, "provider_id"), "SMpoisondup1");
    s_check_error (p, "duplicate provider id");
    CHECK_STR (s_message_provider_id (p), "(null)");
    CHECK_STR (s_message_provider_id (first), "SMpoisondup1");
    s_write_status (store, "SMpoisondup1", "delivered", NULL);
    CHECK_STR (s_message_status (first), "delivered/3/");
    CHECK_STR (s_message_status (p), "queued/1/");

    //  An id longer than any key may be: not kept, and said so.
    char *long_id = malloc (5001);
    memset (long_id, 'S', 5000);
    long_id[5000] = 0;
    p = s_settle_poison (store, SB_SEND_SENT, long_id, "");
    free (long_id);
    CHECK_STR (s_outbox (p, "state"), "sent");
    CHECK_STR (s_outbox (p, "provider_id"), "(null)");
    s_check_error (p, "provider id not kept: longer than 512 bytes");
    CHECK_STR (s_message_provider_id (p), "(null)");

    //  An id that is not UTF-8: not kept (not mangled into another id).
    p = s_settle_poison (store, SB_SEND_SENT, "SM\xc3\x28\xff", "");
    CHECK_STR (s_outbox (p, "state"), "sent");
    CHECK_STR (s_outbox (p, "provider_id"), "(null)");
    s_check_error (p, "provider id not kept: not valid UTF-8");

    //  A 2xx whose body is not what the API documents (the sender says so,
    //  with no id): sent, the reason kept.
    p = s_settle_poison (store, SB_SEND_SENT, "",
                         "twilio answered 201 with a body that is not what the API documents");
    CHECK_STR (s_outbox (p, "state"), "sent");
    CHECK_STR (s_outbox (p, "provider_id"), "(null)");
    CHECK_STR (s_outbox (p, "last_error"),
               "http=201 twilio answered 201 with a body that is not what the API documents");
    //  An outcome nobody knows: failed, saying so.
    p = s_settle_poison (store, 99, "SMunknown01", "");
    CHECK_STR (s_outbox (p, "state"), "failed");
    s_check_error (p, "unknown send outcome 99");

    //  Anything else the database refuses (here a check constraint added
    //  for the test): the row alone is recorded, with the database's reason.
    s_exec ("ALTER TABLE outbox ADD CONSTRAINT test_poison_no_bad"
            " CHECK (provider_id IS DISTINCT FROM 'SMbad')",
            NULL);
    sb_log_init ("test_sb_store", SB_LOG_OFF);
    int64_t refused = sb_store_sent_many_refused (store);
    p = s_settle_poison (store, SB_SEND_SENT, "SMbad", "");
    CHECK_INT (sb_store_sent_many_refused (store), refused + 1);
    sb_log_init ("test_sb_store", SB_LOG_ERROR);
    s_exec ("ALTER TABLE outbox DROP CONSTRAINT test_poison_no_bad", NULL);
    CHECK_STR (s_outbox (p, "state"), "sent");
    CHECK_STR (s_outbox (p, "provider_id"), "(null)");
    s_check_error (p, "not recorded: new row for relation \"outbox\" violates check constraint");
}

//  A failure that is not the record's own (here its messages row locked
//  by another session past lock_timeout) is not a poison: the settle
//  fails whole, nothing is recorded as refused, and once the lock goes the
//  same results are recorded in full (the message gets its provider id).
static void
test_settle_transient (const char *conninfo)
{
    sb_store_t *store = sb_store_new (conninfo, 1000);  //  lock_timeout 500 ms
    CHECK (store != NULL);
    if (!store)
        return;
    s_hold_all (store);
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    int64_t a = s_make_reply ("+14155550920");
    int64_t b = s_make_reply ("+14155550921");
    CHECK_INT (s_claim_count (store), 2);
    sb_send_result_t results[2] = {
        s_result (a, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMtransient0a", NULL, NULL),
        s_result (b, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMtransient0b", NULL, NULL)};
    sb_store_retry_t retry = {5, 1000, 60000};
    bool dead[2];
    char sid[24];
    snprintf (sid, sizeof sid, "%" PRId64, b);
    s_exec ("BEGIN", NULL);
    s_exec ("SELECT 1 FROM messages WHERE outbox_id = $1 FOR UPDATE", sid, NULL);
    sb_log_init ("test_sb_store", SB_LOG_OFF);
    int rc = sb_store_settle (store, results, 2, &retry, dead, 0, NULL);
    sb_log_init ("test_sb_store", SB_LOG_ERROR);
    s_exec ("COMMIT", NULL);
    CHECK_INT (rc, -1);
    CHECK_STR (s_outbox (a, "state"), "sending");
    CHECK_STR (s_outbox (b, "state"), "sending");
    CHECK_STR (s_outbox (b, "last_error"), "");
    CHECK_INT (sb_store_settle (store, results, 2, &retry, dead, 0, NULL), 0);
    CHECK_STR (s_outbox (a, "state"), "sent");
    CHECK_STR (s_outbox (b, "state"), "sent");
    CHECK_STR (s_message_provider_id (b), "SMtransient0b");
    for (int i = 0; i < 2; i++)
        sb_outbox_result_free (&results[i]);
    sb_store_destroy (&store);
}

//  ---------------------------------------------------------------------
//  Rules

static const char *s_rules_yaml =
    "opt_out: [STOP, UNSUBSCRIBE]\n"
    "opt_in: [START]\n"
    "rules:\n"
    "  - name: template-rejected\n"
    "    match:\n"
    "      kind: template\n"
    "      text: { keyword: rejected }\n"
    "    forward: { url: \"http://127.0.0.1:9/notify\" }\n"
    "  - name: template-reply\n"
    "    match:\n"
    "      kind: template\n"
    "      text: { keyword: approved }\n"
    "    reply: \"never sent\"\n"
    "  - name: bot\n"
    "    match:\n"
    "      text: { prefix: \"bot \" }\n"
    "    forward: { url: \"http://127.0.0.1:9/bot\", timeout_ms: 2000 }\n"
    "  - name: quiet\n"
    "    match:\n"
    "      text: { keyword: quiet }\n"
    "    none: true\n"
    "  - name: echo\n"
    "    match:\n"
    "      kind: message\n"
    "      text: { any: true }\n"
    "    reply: \"Echo: {text}\"\n";

//  ---- Meta's other webhook fields (0006_meta_fields.sql)

//  A Meta reply to `to`, queued, claimed: its outbox id.
static int64_t
s_meta_reply_claimed (sb_store_t *store, const char *to)
{
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    int64_t id = s_int ("INSERT INTO outbox (kind, provider, channel, account, from_addr, to_addr,"
                        " body, conv, part) SELECT 'reply', 'meta', 'whatsapp', '106540352242922',"
                        " '15550783881', $1, 'hi', h, h % 256"
                        " FROM sb_conv_hash ('meta', 'whatsapp', '106540352242922', '15550783881',"
                        " $1) h RETURNING id",
                        to, NULL);
    char sid[24];
    snprintf (sid, sizeof sid, "%" PRId64, id);
    s_exec ("INSERT INTO messages (direction, provider, channel, contact_addr, our_addr, body,"
            " status, status_rank, outbox_id, event_id)"
            " VALUES ('outbound', 'meta', 'whatsapp', $1, '15550783881', 'hi', 'queued', 1, $2,"
            " 4242)",
            to, sid, NULL);
    CHECK_INT (s_claim_count (store), 1);
    return id;
}

static sb_event_t *
s_echo (const char *wamid, const char *to, const char *text)
{
    sb_event_t *e = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_ECHO, wamid,
                             "15550783881", to, text);
    sb_event_set (&e->message_type, "text");
    return e;
}

static int64_t
s_outbound_rows (const char *to)
{
    return s_int ("SELECT count(*) FROM messages WHERE contact_addr = $1"
                  " AND direction = 'outbound'",
                  to, NULL);
}

static void
test_meta_fields (sb_store_t *store, const sb_rules_t *rules)
{
    sb_store_policy_t policy = {.rules = rules};
    //  An echo of a message sent from the app: one outbound message,
    //  never inbound, never answered (the rules reply to every message),
    //  and the contact's window stays shut.
    sb_event_t *e = s_echo ("wamid.ECHOAPP", "16505550001", "from the app");
    sb_store_stats_t st = s_write (store, &e, 1, &policy);
    CHECK_INT (st.replies, 0);
    CHECK_INT (s_outbound_rows ("16505550001"), 1);
    CHECK_STR (s_text ("SELECT origin || '/' || status || '/' || body FROM messages"
                       " WHERE provider_id = 'wamid.ECHOAPP'",
                       NULL),
               "echo/sent/from the app");
    CHECK_INT (s_int ("SELECT count(*) FROM messages WHERE contact_addr = '16505550001'"
                      " AND direction = 'inbound'",
                      NULL),
               0);
    CHECK_INT (s_int ("SELECT count(*) FROM outbox WHERE to_addr = '16505550001'", NULL), 0);
    CHECK_INT (s_int ("SELECT count(*) FROM contacts WHERE address = '16505550001'", NULL), 0);
    //  The same echo again (Meta's retry, or a replay): still one.
    sb_event_t *again = s_copy (e, ++s_seq);
    sb_event_set (&again->provider_id, "wamid.ECHOAPP");
    s_write (store, &again, 1, &policy);
    CHECK_INT (s_outbound_rows ("16505550001"), 1);
    sb_event_destroy (&again);
    sb_event_destroy (&e);

    //  Our own send, its answer first, then its echo: one outbound message.
    int64_t a = s_meta_reply_claimed (store, "16505550002");
    sb_send_result_t r = s_result (a, SB_OUTBOX_REPLY, SB_SEND_SENT, "wamid.SENT1", NULL, NULL);
    s_record (store, &r, 5);
    e = s_echo ("wamid.SENT1", "16505550002", "hi");
    s_write (store, &e, 1, &policy);
    sb_event_destroy (&e);
    CHECK_INT (s_outbound_rows ("16505550002"), 1);
    char sid[24];
    snprintf (sid, sizeof sid, "%" PRId64, a);
    CHECK_STR (s_text ("SELECT provider_id || '/' || origin FROM messages WHERE outbox_id = $1",
                       sid, NULL),
               "wamid.SENT1/");

    //  Its echo first, then the answer: still one, the echo's row now ours
    //  (its outbox row and the event it answered), with its status.
    int64_t b = s_meta_reply_claimed (store, "16505550003");
    e = s_echo ("wamid.SENT2", "16505550003", "hi");
    s_write (store, &e, 1, &policy);
    sb_event_destroy (&e);
    CHECK_INT (s_outbound_rows ("16505550003"), 2);  //  the echo, our queued one
    sb_event_t *delivered = s_status (SB_PROVIDER_META, "wamid.SENT2", "delivered", "");
    s_write (store, &delivered, 1, NULL);
    sb_event_destroy (&delivered);
    r = s_result (b, SB_OUTBOX_REPLY, SB_SEND_SENT, "wamid.SENT2", NULL, NULL);
    s_record (store, &r, 5);
    CHECK_INT (s_outbound_rows ("16505550003"), 1);
    snprintf (sid, sizeof sid, "%" PRId64, b);
    CHECK_STR (s_text ("SELECT provider_id || '/' || origin || '/' || status || '/' || event_id"
                       " FROM messages WHERE outbox_id = $1",
                       sid, NULL),
               "wamid.SENT2/echo/delivered/4242");
    CHECK_STR (s_outbox (b, "state"), "sent");

    //  Marketing preferences: recorded on the contact, the newest by Meta's
    //  time winning whatever the order they arrive in.
    sb_event_t *p[2];
    for (int i = 0; i < 2; i++) {
        p[i] = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_PREFERENCE, "",
                        "16505550004", "15550783881", NULL);
        sb_event_set (&sb_event_preference (p[i])->value, i ? "resume" : "stop");
        p[i]->provider_timestamp = i ? 1731705721 : 1739321024;  //  the resume is older
        //  As the ingress writes it: the item whole (an event without a
        //  provider id is unique by it, 0003_content_key.sql).
        sb_event_set (&p[i]->detail_json, i ? "{\"value\":\"resume\",\"timestamp\":1731705721}"
                                            : "{\"value\":\"stop\",\"timestamp\":1739321024}");
    }
    s_write (store, &p[0], 1, &policy);
    s_write (store, &p[1], 1, &policy);
    CHECK_STR (s_text ("SELECT marketing_preference || '/' || extract (epoch FROM"
                       " marketing_preference_at)::bigint || '/' || opted_out || '/' ||"
                       " (last_inbound_at IS NULL) FROM contacts WHERE address = '16505550004'",
                       NULL),
               "stop/1739321024/false/true");
    p[1]->provider_timestamp = 1739321999;  //  now newer: it wins
    sb_event_set (&p[1]->detail_json, "{\"value\":\"resume\",\"timestamp\":1739321999}");
    sb_event_t *newer = s_copy (p[1], ++s_seq);
    s_write (store, &newer, 1, &policy);
    CHECK_STR (
        s_text ("SELECT marketing_preference FROM contacts WHERE address = '16505550004'", NULL),
        "resume");
    sb_event_destroy (&newer);
    s_free_all (p, 2);

    //  A template rejection: the rule forwards it (a notification); an
    //  approval matches no rule; a reply rule for a template queues
    //  nothing (nobody to answer).
    const char *names[] = {"REJECTED", "APPROVED"};
    for (int i = 0; i < 2; i++) {
        e = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_TEMPLATE, "", "", "", NULL);
        sb_event_set (&sb_event_meta_template (e)->event, names[i]);
        sb_event_set (&sb_event_meta_template (e)->name, "order_confirmation");
        sb_event_set (&e->detail_json, i ? "{\"event\":\"APPROVED\"}" : "{\"event\":\"REJECTED\"}");
        st = s_write (store, &e, 1, &policy);
        CHECK_INT (st.replies, i ? 0 : 1);
        sb_event_destroy (&e);
    }
    CHECK_INT (s_int ("SELECT count(*) FROM outbox WHERE rule = 'template-rejected'"
                      " AND kind = 'forward' AND state = 'pending' AND to_addr = ''"
                      " AND event_json LIKE '%REJECTED%'",
                      NULL),
               1);
    CHECK_INT (s_int ("SELECT count(*) FROM events WHERE kind = 'template'", NULL), 2);
    //  A Meta call is no inbound message: no contact, no reply.
    e = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_CALL, "wacid.X1", "16505550005",
                 "15550783881", NULL);
    sb_event_set (&e->call_status, "connect");
    st = s_write (store, &e, 1, &policy);
    CHECK_INT (st.replies, 0);
    CHECK_INT (s_int ("SELECT count(*) FROM contacts WHERE address = '16505550005'", NULL), 0);
    CHECK_STR (s_text ("SELECT status FROM events WHERE provider_id = 'wacid.X1'", NULL),
               "connect");
    sb_event_destroy (&e);
}

static int64_t
s_outbox_count (const char *to, const char *state)
{
    return s_int ("SELECT count(*) FROM outbox WHERE to_addr = $1 AND state = $2", to, state, NULL);
}

//  The backend serving the store whose connections carry application_name
//  app (the newest one): the test stops it to make it run late.
static int
s_backend_of (const char *app)
{
    return (int) s_int ("SELECT pid FROM pg_stat_activity WHERE application_name = $1"
                        " ORDER BY backend_start DESC LIMIT 1",
                        app, NULL);
}

//  Wait (10 s at most) until backend pid has gone: whatever it had in its
//  socket buffer has run by then. True when gone.
static bool
s_backend_gone (int pid)
{
    char spid[16];
    snprintf (spid, sizeof spid, "%d", pid);
    int64_t until = sb_time_mono_ms () + 10000;
    while (sb_time_mono_ms () < until) {
        if (s_int ("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", spid, NULL) == 0)
            return true;
        usleep (20000);
    }
    return false;
}

//  ABA of a statement that runs late (issue 10, M2). A backend that was
//  stopped (SIGSTOP) while our statement sat in its socket buffer runs it
//  when it wakes, long after the store dropped that connection and went
//  on with a new one. A late reclaim must not put back a row the new
//  connection claimed (it would be sent twice), and a late send result
//  must not apply to a row claimed again since.
static void
test_claim_aba (const char *conninfo)
{
    char info[4200];
    snprintf (info, sizeof info, "%s application_name='sb_claim_aba'", conninfo);
    sb_store_t *store = sb_store_new (info, 1000);
    CHECK (store != NULL);
    if (!store)
        return;
    s_hold_all (store);
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    int64_t x = s_make_reply ("+14155550970");
    sb_outbox_item_t *items = NULL;
    CHECK_INT (sb_store_claim (store, 10, &items), 1);  //  x, in flight
    sb_outbox_item_t x_item = items ? items[0] : (sb_outbox_item_t){0};
    free (items);
    int64_t y = s_make_reply ("+14155550971");

    //  1. A reclaim whose backend is stopped: the store gives up on it
    //  after its deadline and drops the connection; the bytes stay queued.
    int old = s_backend_of ("sb_claim_aba");
    CHECK (old > 0 && kill (old, SIGSTOP) == 0);
    sb_log_init ("test_sb_store", SB_LOG_OFF);
    CHECK_INT (sb_store_reclaim (store, &x_item.id, 1), -1);
    sb_log_init ("test_sb_store", SB_LOG_ERROR);
    //  The newer claim, on a new connection: y is handed to the sender.
    CHECK_INT (sb_store_claim (store, 10, &items), 1);
    sb_outbox_item_t y_item = items ? items[0] : (sb_outbox_item_t){0};
    free (items);
    CHECK_INT (y_item.id, y);
    //  The old backend wakes and runs the reclaim it was sent.
    CHECK (kill (old, SIGCONT) == 0);
    CHECK (s_backend_gone (old));
    char y_after_reclaim[16];
    snprintf (y_after_reclaim, sizeof y_after_reclaim, "%s", s_outbox (y, "state"));
    CHECK_STR (y_after_reclaim, "sending");
    CHECK_STR (s_outbox (x, "state"), "sending");
    CHECK_INT (s_claim_count (store), 0);  //  nothing to send twice

    //  2. A RETRY for y whose backend is stopped: dropped, then recorded
    //  again on a new connection (as sb_delivery does), y due at once and
    //  claimed again.
    old = s_backend_of ("sb_claim_aba");
    CHECK (old > 0 && kill (old, SIGSTOP) == 0);
    sb_send_result_t res = s_result (y, SB_OUTBOX_REPLY, SB_SEND_RETRY, NULL, NULL, NULL);
    snprintf (res.claim_token, sizeof res.claim_token, "%s", y_item.claim_token);
    sb_store_retry_t retry = {5, 1, 1};
    bool dead = false;
    sb_log_init ("test_sb_store", SB_LOG_OFF);
    CHECK_INT (sb_store_settle (store, &res, 1, &retry, &dead, 0, NULL), -1);
    sb_log_init ("test_sb_store", SB_LOG_ERROR);
    CHECK_INT (sb_store_settle (store, &res, 1, &retry, &dead, 0, NULL), 0);
    sb_outbox_result_free (&res);
    CHECK_STR (s_outbox (y, "state"), "pending");
    usleep (20000);
    CHECK_INT (sb_store_claim (store, 10, &items), 1);  //  y again
    sb_outbox_item_t y_again = items ? items[0] : (sb_outbox_item_t){0};
    free (items);
    CHECK_INT (y_again.id, y);
    CHECK (kill (old, SIGCONT) == 0);
    CHECK (s_backend_gone (old));
    char y_after_retry[16];
    snprintf (y_after_retry, sizeof y_after_retry, "%s", s_outbox (y, "state"));
    int64_t y_attempts = strtoll (s_outbox (y, "attempts"), NULL, 10);
    CHECK_STR (y_after_retry, "sending");
    CHECK_INT (y_attempts, 1);
    //  Each claim has its own token, the row keeps the newest claim's.
    CHECK (*x_item.claim_token && *y_item.claim_token && *y_again.claim_token);
    CHECK (strcmp (y_item.claim_token, y_again.claim_token) != 0);
    CHECK (strcmp (x_item.claim_token, y_item.claim_token) != 0);
    CHECK_STR (s_outbox (y, "claim_token"), y_again.claim_token);
    CHECK_STR (s_outbox (x, "claim_token"), x_item.claim_token);
    //  A result carrying an older claim's token does not apply.
    res = s_result (y, SB_OUTBOX_REPLY, SB_SEND_FINAL, NULL, NULL, NULL);
    snprintf (res.claim_token, sizeof res.claim_token, "%s", y_item.claim_token);
    sb_log_init ("test_sb_store", SB_LOG_OFF);
    s_record (store, &res, 5);
    sb_log_init ("test_sb_store", SB_LOG_ERROR);
    CHECK_STR (s_outbox (y, "state"), "sending");

    //  Both results arrive and are recorded once each.
    res = s_result (x, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMaba00x", NULL, NULL);
    snprintf (res.claim_token, sizeof res.claim_token, "%s", x_item.claim_token);
    s_record (store, &res, 5);
    res = s_result (y, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMaba00y", NULL, NULL);
    snprintf (res.claim_token, sizeof res.claim_token, "%s", y_again.claim_token);
    s_record (store, &res, 5);
    CHECK_STR (s_outbox (x, "state"), "sent");
    CHECK_STR (s_outbox (x, "attempts"), "1");
    CHECK_STR (s_outbox (y, "state"), "sent");
    CHECK_STR (s_outbox (y, "attempts"), "2");
    printf ("ABA late statements: reclaim_left_new_claim=%s late_retry_left_new_claim=%s"
            " attempts_y=%" PRId64 " (want sending, sending, 1)\n",
            y_after_reclaim, y_after_retry, y_attempts);
    sb_outbox_item_free (&x_item);
    sb_outbox_item_free (&y_item);
    sb_outbox_item_free (&y_again);
    sb_store_destroy (&store);
}

static void
test_rules (sb_store_t *store, const sb_rules_t *rules)
{
    sb_store_policy_t policy = {.rules = rules, .window_ms = 24LL * 3600 * 1000};
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);

    //  A reply: outbox row pending, outbound message queued.
    sb_event_t *e = s_sms ("SMru0001", "+14155550041", "hello");
    sb_store_stats_t st = s_write (store, &e, 1, &policy);
    CHECK_INT (st.replies, 1);
    CHECK_INT (s_outbox_count ("+14155550041", "pending"), 1);
    CHECK_STR (s_text ("SELECT kind || '|' || body || '|' || from_addr || '|' || rule FROM outbox"
                       " WHERE to_addr = '+14155550041'",
                       NULL),
               "reply|Echo: hello|+15558675310|echo");
    CHECK_STR (s_text ("SELECT status || '|' || body FROM messages WHERE direction = 'outbound'"
                       " AND contact_addr = '+14155550041'",
                       NULL),
               "queued|Echo: hello");
    //  The provider retries the webhook (new seq): one event, one reply.
    sb_event_t *retry = s_copy (e, ++s_seq);
    st = s_write (store, &retry, 1, &policy);
    CHECK_INT (st.stored, 0);
    CHECK_INT (st.replies, 0);
    CHECK_INT (s_int ("SELECT count(*) FROM outbox WHERE to_addr = '+14155550041'", NULL), 1);
    CHECK_INT (s_int ("SELECT count(*) FROM events WHERE provider_id = 'SMru0001'", NULL), 1);
    sb_event_destroy (&retry);
    sb_event_destroy (&e);
    //  A rule that does nothing: no row.
    e = s_sms ("SMru0002", "+14155550041", "quiet");
    st = s_write (store, &e, 1, &policy);
    CHECK_INT (st.replies + st.not_sent, 0);
    sb_event_destroy (&e);

    //  Opt-out: STOP gets nothing; later messages are refused (recorded);
    //  START is answered and replies resume.
    const char *who = "+14155550042";
    e = s_sms ("SMru0003", who, " stop ");
    st = s_write (store, &e, 1, &policy);
    CHECK_INT (st.replies + st.not_sent, 0);
    CHECK_INT (s_int ("SELECT count(*) FROM outbox WHERE to_addr = $1", who, NULL), 0);
    CHECK_STR (s_text ("SELECT opted_out::text || '|' || (opted_out_at IS NOT NULL)::text"
                       " FROM contacts WHERE address = $1",
                       who, NULL),
               "true|true");
    sb_event_destroy (&e);
    e = s_sms ("SMru0004", who, "are you there?");
    st = s_write (store, &e, 1, &policy);
    CHECK_INT (st.replies, 0);
    CHECK_INT (st.not_sent, 1);
    CHECK_STR (s_text ("SELECT state || '|' || reason FROM outbox WHERE to_addr = $1", who, NULL),
               "not_sent|opted_out");
    CHECK_INT (s_int ("SELECT count(*) FROM messages WHERE direction = 'outbound'"
                      " AND contact_addr = $1",
                      who, NULL),
               0);
    sb_event_destroy (&e);
    e = s_sms ("SMru0005", who, "START");
    st = s_write (store, &e, 1, &policy);
    CHECK_INT (st.replies, 1);
    CHECK_STR (s_text ("SELECT opted_out::text FROM contacts WHERE address = $1", who, NULL),
               "false");
    CHECK_STR (
        s_text ("SELECT body FROM outbox WHERE to_addr = $1 AND state = 'pending'", who, NULL),
        "Echo: START");
    sb_event_destroy (&e);
    e = s_sms ("SMru0006", who, "back again");
    st = s_write (store, &e, 1, &policy);
    CHECK_INT (st.replies, 1);
    CHECK_INT (s_outbox_count (who, "pending"), 2);
    sb_event_destroy (&e);
    //  In one batch, order decides: hello (answered), STOP, hello (refused),
    //  START (answered), hello (answered).
    const char *who2 = "+14155550043";
    sb_event_t *batch[5] = {s_sms ("SMru0007", who2, "a"), s_sms ("SMru0008", who2, "UNSUBSCRIBE"),
                            s_sms ("SMru0009", who2, "b"), s_sms ("SMru0010", who2, "start"),
                            s_sms ("SMru0011", who2, "c")};
    st = s_write (store, batch, 5, &policy);
    CHECK_INT (st.stored, 5);
    CHECK_INT (st.replies, 3);
    CHECK_INT (st.not_sent, 1);
    CHECK_STR (s_text ("SELECT string_agg(body || ':' || state, ',' ORDER BY id) FROM outbox"
                       " WHERE to_addr = $1",
                       who2, NULL),
               "Echo: a:pending,Echo: b:not_sent,Echo: start:pending,Echo: c:pending");
    CHECK_STR (s_text ("SELECT opted_out::text FROM contacts WHERE address = $1", who2, NULL),
               "false");
    s_free_all (batch, 5);

    //  The WhatsApp window: a reply 25 hours after the message is refused;
    //  SMS has no window.
    sb_store_policy_t later = policy;
    later.now_ms = sb_time_wall_ms () + 25LL * 3600 * 1000;
    e = s_meta ("wamid.ru0012", "16505550044", "late");
    st = s_write (store, &e, 1, &later);
    CHECK_INT (st.not_sent, 1);
    CHECK_STR (
        s_text ("SELECT state || '|' || reason FROM outbox WHERE to_addr = '16505550044'", NULL),
        "not_sent|outside_window");
    sb_event_destroy (&e);
    e = s_sms ("SMru0013", "+14155550044", "late sms");
    st = s_write (store, &e, 1, &later);
    CHECK_INT (st.replies, 1);
    sb_event_destroy (&e);
    //  Inside the window: answered in context, from the number it came to.
    e = s_meta ("wamid.ru0014", "16505550045", "hola");
    st = s_write (store, &e, 1, &policy);
    CHECK_INT (st.replies, 1);
    sb_event_destroy (&e);
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state = 'pending'"
            " AND to_addr <> '16505550045'",
            NULL);
    sb_outbox_item_t *items = NULL;
    int n = sb_store_claim (store, 10, &items);
    CHECK_INT (n, 1);
    int64_t meta_id = 0;
    if (n == 1) {
        meta_id = items[0].id;
        CHECK_INT (items[0].provider, SB_PROVIDER_META);
        CHECK_INT (items[0].channel, SB_CHANNEL_WHATSAPP);
        CHECK_STR (items[0].account, "106540352242922");
        CHECK_STR (items[0].from, "15550783881");
        CHECK_STR (items[0].to, "16505550045");
        CHECK_STR (items[0].context_id, "wamid.ru0014");
        CHECK_STR (items[0].body, "Echo: hola");
    }
    for (int i = 0; i < n; i++)
        sb_outbox_item_free (&items[i]);
    free (items);
    //  Meta's "sent" arrives before we record the send.
    sb_event_t *early = s_status (SB_PROVIDER_META, "wamid.out0014", "sent", NULL);
    s_write (store, &early, 1, &policy);
    sb_event_destroy (&early);
    sb_send_result_t res =
        s_result (meta_id, SB_OUTBOX_REPLY, SB_SEND_SENT, "wamid.out0014", NULL, NULL);
    s_record (store, &res, 5);
    CHECK_STR (s_message_status (meta_id), "sent/2/");

    //  A forward: the event as JSON goes to the bot; its answer becomes a
    //  reply due now; an empty answer sends nothing.
    e = s_sms ("SMru0015", "+14155550046", "bot what time is it");
    st = s_write (store, &e, 1, &policy);
    CHECK_INT (st.replies, 1);
    sb_event_destroy (&e);
    n = sb_store_claim (store, 10, &items);
    CHECK_INT (n, 1);
    int64_t fwd = 0;
    if (n == 1) {
        fwd = items[0].id;
        CHECK_INT (items[0].kind, SB_OUTBOX_FORWARD);
        CHECK_STR (items[0].forward_url, "http://127.0.0.1:9/bot");
        CHECK_INT (items[0].forward_timeout_ms, 2000);
        CHECK (strstr (items[0].event_json, "\"SMru0015\"") != NULL);
        CHECK (strstr (items[0].event_json, "bot what time is it") != NULL);
    }
    for (int i = 0; i < n; i++)
        sb_outbox_item_free (&items[i]);
    free (items);
    res = s_result (fwd, SB_OUTBOX_FORWARD, SB_SEND_SENT, NULL, "It is noon.", NULL);
    s_record (store, &res, 5);
    CHECK_STR (s_outbox (fwd, "kind || '|' || state || '|' || body || '|' || attempts"),
               "reply|pending|It is noon.|0");
    CHECK_STR (s_message_status (fwd), "queued/1/");
    n = sb_store_claim (store, 10, &items);
    CHECK_INT (n, 1);
    if (n == 1) {
        CHECK_INT (items[0].kind, SB_OUTBOX_REPLY);
        CHECK_STR (items[0].body, "It is noon.");
        CHECK_STR (items[0].to, "+14155550046");
        //  Sent: the contact's next row may go (one at a time, in order).
        res = s_result (items[0].id, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMnoon01", NULL, NULL);
        s_record (store, &res, 5);
    }
    for (int i = 0; i < n; i++)
        sb_outbox_item_free (&items[i]);
    free (items);
    e = s_sms ("SMru0016", "+14155550046", "bot say nothing");
    s_write (store, &e, 1, &policy);
    sb_event_destroy (&e);
    n = sb_store_claim (store, 10, &items);
    CHECK_INT (n, 1);
    if (n == 1) {
        res = s_result (items[0].id, SB_OUTBOX_FORWARD, SB_SEND_SENT, NULL, "", NULL);
        s_record (store, &res, 5);
        CHECK_STR (s_outbox (items[0].id, "state || '|' || reason"), "not_sent|bot_no_reply");
    }
    for (int i = 0; i < n; i++)
        sb_outbox_item_free (&items[i]);
    free (items);
}

//  A statement failing in either round trip rolls the whole batch back and
//  leaves the store usable; the same batch succeeds once the cause is gone.
//  One request, one body: a batched request's body is stored once
//  (request_bodies), every event refers to it, the payload holds none, and
//  a forward still gets it, also when the request spans two batches.
static void
test_request_bodies (sb_store_t *store, const sb_rules_t *rules)
{
    sb_store_policy_t policy = {.rules = rules, .window_ms = 24LL * 3600 * 1000};
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    static const char body[] = "{\"entry\":\"the shared body of three\"}";
    enum { N = 3 };
    sb_event_t *made[N], *events[N];
    for (int i = 0; i < N; i++) {
        char wamid[32];
        snprintf (wamid, sizeof wamid, "wamid.RB%d", i);
        made[i] = s_meta (wamid, "16505550170", "bot shared");
        sb_event_set_raw (made[i], NULL, 0);
    }
    uint8_t sha[SB_EVENT_SHA256_SIZE];
    sb_event_share_raw (made, N, body, strlen (body), sha);
    for (int i = 0; i < N; i++)
        events[i] = s_copy (made[i], made[0]->seq + (uint64_t) i);  //  consecutive, as journaled
    s_seq = events[N - 1]->seq;
    sb_event_unshare_raw (made, N);
    s_free_all (made, N);
    //  The request split over two batches: the body comes first. (The
    //  payload check looks for "three", which only the body holds.)
    sb_store_stats_t st = s_write (store, events, 2, &policy);
    CHECK_INT (st.stored, 2);
    st = s_write (store, events + 2, 1, &policy);
    CHECK_INT (st.stored, 1);
    const char *key = "sha256 (convert_to ('{\"entry\":\"the shared body of three\"}', 'UTF8'))";
    char sql[512];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM request_bodies WHERE sha256 = %s"
              " AND body = convert_to ($1, 'UTF8')",
              key);
    CHECK_INT (s_int (sql, body, NULL), 1);
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM events WHERE provider_id LIKE 'wamid.RB%%'"
              " AND body_sha256 = %s AND position ('\\x7468726565'::bytea in payload) = 0",
              key);
    CHECK_INT (s_int (sql, NULL), N);
    //  Each forward's event JSON has the body, as before bodies were shared.
    //  (One contact's: claimed one at a time, each once the one before is
    //  done.)
    for (int k = 0; k < N; k++) {
        sb_outbox_item_t *items = NULL;
        int n = sb_store_claim (store, 10, &items);
        CHECK_INT (n, 1);
        for (int i = 0; i < n; i++) {
            CHECK (items[i].kind == SB_OUTBOX_FORWARD);
            CHECK (strstr (items[i].event_json, "the shared body of three") != NULL);
            sb_send_result_t res =
                s_result (items[i].id, SB_OUTBOX_FORWARD, SB_SEND_SENT, NULL, "", NULL);
            s_record (store, &res, 5);
            sb_outbox_item_free (&items[i]);
        }
        free (items);
    }
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    //  A replay of the request stores nothing, not even the body again.
    st = s_write (store, events, N, &policy);
    CHECK_INT (st.stored, 0);
    CHECK_INT (s_int ("SELECT count(*) FROM request_bodies WHERE body = convert_to ($1, 'UTF8')",
                      body, NULL),
               1);
    s_free_all (events, N);

    //  Events journaled before bodies were shared (each carries it): one
    //  body row for all of them.
    sb_event_t *old[2] = {s_status (SB_PROVIDER_META, "wamid.RBold0", "sent", NULL),
                          s_status (SB_PROVIDER_META, "wamid.RBold1", "sent", NULL)};
    for (int i = 0; i < 2; i++)
        sb_event_set_raw (old[i], "{\"old\":\"style\"}", 15);
    st = s_write (store, old, 2, NULL);
    CHECK_INT (st.stored, 2);
    CHECK_INT (s_int ("SELECT count(*) FROM request_bodies WHERE body = convert_to ($1, 'UTF8')",
                      "{\"old\":\"style\"}", NULL),
               1);
    CHECK_INT (s_int ("SELECT count(*) FROM events e JOIN request_bodies b"
                      " ON b.sha256 = e.body_sha256 WHERE e.provider_id LIKE 'wamid.RBold%'",
                      NULL),
               2);
    s_free_all (old, 2);

    //  The only event of a request keeps its body in its payload: no
    //  request_bodies row, and its forward gets the body all the same.
    sb_event_t *one = s_meta ("wamid.RBone", "16505550171", "bot alone");
    sb_event_set_raw (one, NULL, 0);
    static const char alone[] = "{\"entry\":\"a body of its own\"}";
    sb_event_share_raw (&one, 1, alone, strlen (alone), sha);
    sb_event_t *copy = s_copy (one, one->seq);
    sb_event_unshare_raw (&one, 1);
    sb_event_destroy (&one);
    CHECK_INT (copy->request_events, 1);
    st = s_write (store, &copy, 1, &policy);
    CHECK_INT (st.stored, 1);
    CHECK_INT (s_int ("SELECT count(*) FROM request_bodies WHERE body = convert_to ($1, 'UTF8')",
                      alone, NULL),
               0);
    CHECK_INT (
        s_int ("SELECT count(*) FROM events WHERE provider_id = 'wamid.RBone'"
               " AND body_sha256 IS NULL AND position (convert_to ($1, 'UTF8') in payload) > 0",
               alone, NULL),
        1);
    sb_outbox_item_t *items = NULL;
    int n = sb_store_claim (store, 10, &items);
    CHECK_INT (n, 1);
    for (int i = 0; i < n; i++) {
        CHECK (strstr (items[i].event_json, "a body of its own") != NULL);
        sb_outbox_item_free (&items[i]);
    }
    free (items);
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    sb_event_destroy (&copy);
}

static void
test_failures (sb_store_t *store, const sb_rules_t *rules)
{
    sb_store_policy_t policy = {.rules = rules};
    s_exec ("CREATE FUNCTION sb_test_fail () RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF NEW.to_addr = '+19990000001' OR NEW.from_addr = '+19990000002' THEN"
            " RAISE EXCEPTION 'test failure'; END IF; RETURN NEW; END $$",
            NULL);
    s_exec ("CREATE TRIGGER sb_test_fail BEFORE INSERT ON outbox"
            " FOR EACH ROW EXECUTE FUNCTION sb_test_fail ()",
            NULL);
    s_exec ("CREATE TRIGGER sb_test_fail BEFORE INSERT ON events"
            " FOR EACH ROW EXECUTE FUNCTION sb_test_fail ()",
            NULL);
    uint64_t seq_before = 0, seq = 0;
    char epoch[64];
    CHECK_INT (sb_store_cursor (store, s_ingress, &seq_before, epoch, sizeof epoch), 0);
    int64_t events_before = s_int ("SELECT count(*) FROM events", NULL);

    //  Round trip 2 fails (the reply's outbox row).
    sb_event_t *batch[2] = {s_sms ("SMfail01", "+14155550051", "fine"),
                            s_sms ("SMfail02", "+19990000001", "doomed reply")};
    sb_store_stats_t st;
    sb_log_init ("test_sb_store", SB_LOG_OFF);
    CHECK_INT (sb_store_write (store, batch, 2, &policy, &st), -1);
    CHECK_INT (st.stored, 0);
    //  Round trip 1 fails (the event itself).
    sb_event_t *bad = s_sms ("SMfail03", "+19990000002", "doomed event");
    CHECK_INT (sb_store_write (store, &bad, 1, &policy, &st), -1);
    sb_log_init ("test_sb_store", SB_LOG_ERROR);
    CHECK_INT (s_int ("SELECT count(*) FROM events", NULL), events_before);
    CHECK_INT (s_int ("SELECT count(*) FROM contacts WHERE address = '+14155550051'", NULL), 0);
    CHECK_INT (sb_store_cursor (store, s_ingress, &seq, epoch, sizeof epoch), 0);
    CHECK_INT (seq, seq_before);

    //  The store goes on; once the cause is gone the same batch is stored.
    sb_event_t *ok = s_sms ("SMfail04", "+14155550052", "still here");
    CHECK_INT (sb_store_write (store, &ok, 1, &policy, &st), 0);
    CHECK_INT (st.stored, 1);
    s_exec ("DROP TRIGGER sb_test_fail ON outbox", NULL);
    s_exec ("DROP TRIGGER sb_test_fail ON events", NULL);
    s_exec ("DROP FUNCTION sb_test_fail ()", NULL);
    CHECK_INT (sb_store_write (store, batch, 2, &policy, &st), 0);
    CHECK_INT (st.stored, 2);
    CHECK_INT (st.replies, 2);
    CHECK_INT (s_int ("SELECT count(*) FROM outbox WHERE to_addr = '+19990000001'", NULL), 1);
    sb_event_destroy (&ok);
    sb_event_destroy (&bad);
    s_free_all (batch, 2);
}

//  ---------------------------------------------------------------------
//  The console's captured codes and retries (0012_console_codes_retries)

static const char *s_capture_yaml = "rules:\n"
                                    "  - name: sms-code\n"
                                    "    match:\n"
                                    "      kind: message\n"
                                    "      text: { regex: \"[0-9]{6}\" }\n"
                                    "    none: true\n"
                                    "    publish: true\n"
                                    "  - name: voice-code\n"
                                    "    match:\n"
                                    "      channel: voice\n"
                                    "      kind: gather\n"
                                    "      text: { regex: \"^[0-9]{4}$\" }\n"
                                    "    none: true\n"
                                    "    publish: true\n"
                                    "  - name: echo\n"
                                    "    match:\n"
                                    "      text: { any: true }\n"
                                    "    reply: \"Echo: {text}\"\n";

//  The captures of the events from `from`: "rule=captured" joined by ' '.
static const char *
s_captures_of (const char *from)
{
    return s_text ("SELECT COALESCE (string_agg (k.rule || '=' || k.captured, ' '"
                   " ORDER BY k.event_id), '') FROM captures k JOIN events e ON e.id = k.event_id"
                   " WHERE e.from_addr = $1",
                   from, NULL);
}

//  A publish rule's match is recorded in the batch (what the regex found;
//  a gather's digits) and handed to the caller; other rules' are not; a
//  duplicate records nothing more; the console's messages serve it.
static void
test_console_captures (sb_store_t *store)
{
    char err[256] = "";
    sb_rules_t *rules = sb_rules_load_string (s_capture_yaml, "capture-rules", err, sizeof err);
    CHECK (rules != NULL);
    if (!rules) {
        fprintf (stderr, "rules: %s\n", err);
        return;
    }
    const char *who = "+14155550071";
    enum { N = 3 };
    sb_event_t *events[N];
    events[0] = s_sms ("SMcap0001", who, "Your code is 493817, valid 10 minutes");
    events[1] = s_sms ("SMcap0002", who, "hello");
    events[2] = s_event (SB_PROVIDER_TWILIO, SB_CHANNEL_VOICE, SB_KIND_GATHER, "CAcap0003", who,
                         "+15558675310", NULL);
    sb_event_set (&events[2]->digits, "4321");
    bool publish[N] = {false};
    char *captured[N] = {NULL};
    sb_store_policy_t policy = {.rules = rules, .publish = publish, .captured = captured};
    sb_store_stats_t st = s_write (store, events, N, &policy);
    CHECK_INT (st.stored, N);
    CHECK_INT (st.replies, 1);  //  "hello" echoed
    CHECK (publish[0] && !publish[1] && publish[2]);
    CHECK_STR (captured[0] ? captured[0] : "(null)", "493817");
    CHECK (captured[1] == NULL);
    CHECK_STR (captured[2] ? captured[2] : "(null)", "4321");
    CHECK_STR (s_captures_of (who), "sms-code=493817 voice-code=4321");
    for (int i = 0; i < N; i++) {
        free (captured[i]);
        captured[i] = NULL;
        publish[i] = false;
    }
    //  The provider retries the webhook (a new seq): nothing decided, no
    //  second row, nothing to publish.
    sb_event_t *retry = s_copy (events[0], ++s_seq);
    st = s_write (store, &retry, 1, &policy);
    CHECK_INT (st.duplicates, 1);
    CHECK (!publish[0] && captured[0] == NULL);
    CHECK_STR (s_captures_of (who), "sms-code=493817 voice-code=4321");
    sb_event_destroy (&retry);

    //  The console's messages: the inbound message with its capture, the
    //  others without.
    json_t *rows = sb_store_console_messages (store, "twilio", "sms", who, 0, 50, NULL);
    CHECK (rows != NULL);
    int with_code = 0, inbound = 0;
    size_t i;
    json_t *row;
    json_array_foreach (rows, i, row) {
        if (strcmp (json_string_value (json_object_get (row, "direction")), "inbound"))
            continue;
        inbound++;
        const char *code = json_string_value (json_object_get (row, "captured"));
        const char *body = json_string_value (json_object_get (row, "body"));
        if (code && *code) {
            with_code++;
            CHECK_STR (code, "493817");
            CHECK_STR (json_string_value (json_object_get (row, "captured_by")), "sms-code");
            CHECK (strstr (body, "493817") != NULL);
        }
    }
    CHECK_INT (inbound, 2);
    CHECK_INT (with_code, 1);
    json_decref (rows);
    rows = sb_store_console_messages (store, "twilio", "voice", who, 0, 50, NULL);
    CHECK_STR (json_string_value (json_object_get (json_array_get (rows, 0), "captured")), "4321");
    json_decref (rows);
    s_free_all (events, N);
    sb_rules_destroy (&rules);
}

//  The row id's field of the console's dead letters, or -1.
static int64_t
s_trouble_int (sb_store_t *store, int64_t id, const char *field)
{
    json_t *rows = sb_store_console_trouble (store, 0, 200);
    int64_t v = -1;
    size_t i;
    json_t *row;
    json_array_foreach (rows, i, row)
        if (json_integer_value (json_object_get (row, "id")) == id)
            v = json_integer_value (json_object_get (row, field));
    json_decref (rows);
    return v;
}

//  A Retry from the console is kept on the row (retries, retried_at)
//  through the next attempt's result, and both pages show it.
static void
test_console_retry (sb_store_t *store)
{
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    const char *who = "+14155550072";
    int64_t id = s_make_reply (who);
    CHECK_INT (s_claim_count (store), 1);
    sb_send_result_t res = s_result (id, SB_OUTBOX_REPLY, SB_SEND_FINAL, NULL, NULL, "21610");
    s_record (store, &res, 3);
    CHECK_STR (s_outbox (id, "state"), "failed");
    CHECK_INT (s_trouble_int (store, id, "retries"), 0);
    CHECK_INT (s_trouble_int (store, id, "retried_at_ms"), 0);
    //  Not failed or dead: nothing to retry, nothing recorded.
    CHECK_INT (sb_store_console_retry (store, id + 1000000), 0);

    int64_t t0 = sb_time_wall_ms ();
    CHECK_INT (sb_store_console_retry (store, id), 1);
    CHECK_STR (s_outbox (id, "state"), "pending");
    CHECK_STR (s_outbox (id, "retries"), "1");
    //  The next attempt fails again: last_error is the provider's now, the
    //  retry is still on the row.
    CHECK_INT (s_claim_count (store), 1);
    res = s_result (id, SB_OUTBOX_REPLY, SB_SEND_FINAL, NULL, NULL, "21610");
    s_record (store, &res, 3);
    CHECK_STR (s_outbox (id, "state"), "failed");
    CHECK (strstr (s_outbox (id, "last_error"), "retried") == NULL);
    CHECK_STR (s_outbox (id, "retries"), "1");
    int64_t at = s_trouble_int (store, id, "retried_at_ms");
    CHECK (at >= t0 - 5000 && at <= sb_time_wall_ms () + 5000);
    CHECK_INT (s_trouble_int (store, id, "retries"), 1);
    //  Retried again: counted twice.
    CHECK_INT (sb_store_console_retry (store, id), 1);
    CHECK_INT (s_trouble_int (store, id, "retries"), -1);  //  pending: not a dead letter
    CHECK_STR (s_outbox (id, "retries"), "2");
    json_t *rows = sb_store_console_messages (store, "twilio", "sms", who, 0, 50, NULL);
    json_t *m = json_array_get (rows, 0);
    CHECK_STR (json_string_value (json_object_get (m, "direction")), "outbound");
    CHECK_INT (json_integer_value (json_object_get (m, "retries")), 2);
    CHECK (json_integer_value (json_object_get (m, "retried_at_ms")) >= at);
    json_decref (rows);
    s_exec ("UPDATE outbox SET state = 'sent' WHERE id = $1", s_outbox (id, "id"), NULL);
}

//  ---------------------------------------------------------------------
//  A large batch

static void
test_large_batch (sb_store_t *store, const sb_rules_t *rules, const char *prefix)
{
    enum { N = 500 };
    sb_store_policy_t policy = {.rules = rules};
    sb_event_t *events[N];
    int64_t before = s_int ("SELECT count(*) FROM events", NULL);
    int64_t outbox = s_int ("SELECT count(*) FROM outbox", NULL);
    for (int i = 0; i < N; i++) {
        char sid[32], from[32], text[32];
        snprintf (sid, sizeof sid, "%s%05d", prefix, i);
        snprintf (from, sizeof from, "+1415777%04d", i % 50);
        snprintf (text, sizeof text, "message %d", i);
        events[i] = s_sms (sid, from, text);
    }
    int64_t t0 = sb_time_mono_ms ();
    sb_store_stats_t st = s_write (store, events, N, &policy);
    int64_t took = sb_time_mono_ms () - t0;
    CHECK_INT (st.stored, N);
    CHECK_INT (st.replies, rules ? N : 0);
    CHECK_INT (s_int ("SELECT count(*) FROM events", NULL) - before, N);
    CHECK_INT (s_int ("SELECT count(*) FROM contacts WHERE address LIKE '+1415777%'", NULL), 50);
    char like[32];
    snprintf (like, sizeof like, "%s%%", prefix);
    CHECK_INT (s_int ("SELECT count(*) FROM messages WHERE direction = 'inbound'"
                      " AND provider_id LIKE $1",
                      like, NULL),
               N);
    CHECK_INT (s_int ("SELECT count(*) FROM outbox", NULL) - outbox, rules ? N : 0);
    CHECK (took < 10000);
    //  SB_TEST_TIMINGS=1 prints the write's time (to compare a change).
    if (getenv ("SB_TEST_TIMINGS"))
        fprintf (stderr, "large batch prefix=%s events=%d ms=%" PRId64 "\n", prefix, N, took);
    //  Again: all duplicates.
    st = s_write (store, events, N, &policy);
    CHECK_INT (st.duplicates, N);
    CHECK_INT (s_int ("SELECT count(*) FROM outbox", NULL) - outbox, rules ? N : 0);
    s_free_all (events, N);
}

//  Write `batches` batches of 500 events that make (b, i, who) builds,
//  `who` cycling through `people`, on a fresh store with a 2 s deadline.
//  Says how many batches failed (or stored fewer than 500) and the slowest.
enum { S_MANY_N = 500 };
typedef sb_event_t *(s_many_make_fn) (int batch, int i, int who);

static int
s_many_batches (const char *conninfo, const char *name, int batches, int people,
                s_many_make_fn *make)
{
    sb_store_t *store = sb_store_new (conninfo, 2000);
    CHECK (store != NULL);
    if (!store)
        return batches;
    int failed = 0;
    int64_t worst = 0;
    for (int b = 0; b < batches; b++) {
        sb_event_t *events[S_MANY_N];
        for (int i = 0; i < S_MANY_N; i++)
            events[i] = make (b, i, (b * S_MANY_N + i) % people);
        sb_store_stats_t st;
        int64_t t0 = sb_time_mono_ms ();
        int rc = sb_store_write (store, events, S_MANY_N, NULL, &st);
        int64_t took = sb_time_mono_ms () - t0;
        worst = took > worst ? took : worst;
        if (rc != 0 || st.stored != S_MANY_N) {
            failed++;
            printf ("%s: batch %d: rc %d, stored %zu\n", name, b, rc, st.stored);
        }
        s_free_all (events, S_MANY_N);
    }
    printf ("%s: %d batches of %d from %d people, %d failed, slowest %lld ms\n", name, batches,
            S_MANY_N, people, failed, (long long) worst);
    sb_store_destroy (&store);
    return failed;
}

static sb_event_t *
s_many_sms (int b, int i, int who)
{
    char sid[40], from[32];
    snprintf (sid, sizeof sid, "SMmany%02d%05d", b, i);
    snprintf (from, sizeof from, "+1416555%04d", who);
    return s_sms (sid, from, "hello");
}

//  Batches of 500 from 1,000 contacts on a fresh connection, past the
//  five executions after which PostgreSQL may switch a prepared statement
//  to its generic plan (which guesses 10 rows for each unnest): every
//  write must finish within the store's 2 s deadline. The contacts' lock
//  once joined on an expression there, matching every key against every
//  contact: 20 s a batch, every write cancelled.
static void
test_many_contacts (const char *conninfo)
{
    CHECK_INT (s_many_batches (conninfo, "test_many_contacts", 8, 1000, s_many_sms), 0);
    CHECK_INT (s_int ("SELECT count(*) FROM contacts WHERE address LIKE '+1416555%'", NULL), 1000);
}

//  ---------------------------------------------------------------------
//  The console's conversation list: pages bounded by a window of messages

//  The conversation (address) of each item of a page, joined by spaces.
static void
s_page_addresses (json_t *rows, char *out, size_t size)
{
    out[0] = 0;
    size_t i;
    json_t *row;
    json_array_foreach (rows, i, row) {
        size_t used = strlen (out);
        snprintf (out + used, size - used, "%s%s", used ? " " : "",
                  json_string_value (json_object_get (row, "address")));
    }
}

static int64_t
s_conv_message (const char *address)
{
    return s_int ("INSERT INTO messages (direction, provider, channel, contact_addr, body)"
                  " VALUES ('inbound', 'twilio', 'sms', $1, 'hi') RETURNING id",
                  address, NULL);
}

//  Messages A1 B1 A2 C1 C2 C3 D1 A3, the newest of all: conversations A, D,
//  C, B newest first. With a window of 3 messages and pages of 2, the
//  pages are "A D" (full: next below D1), "C" (short, the window full:
//  next below C1) and "B" (next below A1, where older tests' messages
//  follow). Each conversation once, in order, none read twice.
static void
test_console_conversations (sb_store_t *store)
{
    const char *order[] = {"convA", "convB", "convA", "convC", "convC", "convC", "convD", "convA"};
    int64_t id[8];
    for (int i = 0; i < 8; i++)
        id[i] = s_conv_message (order[i]);
    const char *want[] = {"convA convD", "convC", "convB"};
    int64_t want_next[] = {id[6], id[3], id[0]};
    int64_t before = 0;
    for (int page = 0; page < 3; page++) {
        int64_t next = -1;
        json_t *rows = sb_store_console_conversations (store, before, 2, 3, &next);
        CHECK (rows != NULL);
        char got[256];
        s_page_addresses (rows, got, sizeof got);
        CHECK_STR (got, want[page]);
        CHECK_INT (next, want_next[page]);
        json_decref (rows);
        before = next;
    }
    //  A window of 5,000 finds the four at once, a full page of 4: the next
    //  goes on below its last, B1.
    int64_t next = -1;
    json_t *rows = sb_store_console_conversations (store, 0, 4, 5000, &next);
    char got[256];
    s_page_addresses (rows, got, sizeof got);
    CHECK_STR (got, "convA convD convC convB");
    CHECK_INT (next, id[1]);
    json_decref (rows);
}

//  ---------------------------------------------------------------------
//  Identities: phone numbers and business-scoped user ids (0005)

//  A Meta message from `from` carrying the BSUID user_id (NULL: none).
static sb_event_t *
s_meta_user (const char *wamid, const char *from, const char *user_id, const char *text)
{
    sb_event_t *e = s_meta (wamid, from, text);
    sb_event_set (&e->user_id, user_id);
    return e;
}

//  A system message about `from` (a phone number or a BSUID): its new
//  number (wa_id), new BSUID and previous BSUID, each NULL when absent.
static sb_event_t *
s_meta_system (const char *wamid, const char *from, const char *user_id, const char *wa_id,
               const char *new_user_id, const char *previous_user_id)
{
    sb_event_t *e = s_meta_user (wamid, from, user_id, NULL);
    sb_event_set (&e->message_type, "system");
    Switchboard__V1__System *system = sb_event_system (e);
    sb_event_set (&system->type, wa_id ? "user_changed_number" : "user_changed_user_id");
    sb_event_set (&system->new_wa_id, wa_id);
    sb_event_set (&e->new_user_id, new_user_id);
    sb_event_set (&e->previous_user_id, previous_user_id);
    return e;
}

//  Write one event, free it.
static void
s_write_one (sb_store_t *store, sb_event_t *e)
{
    s_write (store, &e, 1, NULL);
    sb_event_destroy (&e);
}

static int64_t
s_contacts_at (const char *address)
{
    return s_int ("SELECT count(*) FROM contacts WHERE address = $1", address, NULL);
}

static int64_t
s_messages_of (const char *address)
{
    return s_int ("SELECT count(*) FROM messages WHERE contact_addr = $1", address, NULL);
}

//  The contact at old is gone; the one at moved exists and is opted out
//  (the tests opt the moving contact out first).
static void
s_check_moved (const char *old, const char *moved)
{
    CHECK_INT (s_contacts_at (old), 0);
    CHECK_INT (s_contacts_at (moved), 1);
    CHECK_STR (s_text ("SELECT opted_out::text FROM contacts WHERE address = $1", moved, NULL),
               "true");
}

static const char *
s_identity_of (const char *identity)
{
    return s_text ("SELECT address FROM contact_identities WHERE identity = $1", identity, NULL);
}

//  The same as test_many_contacts with every other statement that joins
//  unnest parameters: Meta messages carrying a phone number and a BSUID
//  (the identities' upsert), echoes (outbound rows), statuses and changes
//  of number (the moves), 500 a batch from 10,000 people. Every write must
//  finish within the 2 s deadline. Under generic plans (PGOPTIONS="-c
//  plan_cache_mode=auto" brings them back) the contacts' lock grew with
//  the table, from 50 ms a batch to 1.6 s by the 20th, which was cancelled;
//  the store's connection now plans each execution for its own arrays.
static sb_event_t *
s_many_meta (int b, int i, int who)
{
    char wamid[48], phone[32], user[48], moved[32];
    snprintf (wamid, sizeof wamid, "wamid.manyid%02d%05d", b, i);
    snprintf (phone, sizeof phone, "1650777%04d", who);
    snprintf (user, sizeof user, "US.7%019d", who);
    if (i % 50 == 49) {
        snprintf (moved, sizeof moved, "1650888%02d%03d", b, i);
        return s_meta_system (wamid, phone, user, moved, NULL, NULL);
    }
    if (i % 10 == 9)
        return s_echo (wamid, phone, "echoed");
    if (i % 10 == 8) {
        char sent[48];  //  the message before it
        snprintf (sent, sizeof sent, "wamid.manyid%02d%05d", b, i - 1);
        return s_status (SB_PROVIDER_META, sent, "delivered", NULL);
    }
    return s_meta_user (wamid, phone, user, "hello");
}

static void
test_many_identities (const char *conninfo)
{
    CHECK_INT (s_many_batches (conninfo, "test_many_identities", 24, 10000, s_many_meta), 0);
    CHECK (s_int ("SELECT count(*) FROM contact_identities WHERE identity LIKE 'US.7%'", NULL) > 0);
}

//  A phone number and a BSUID of one person, first two contacts, become
//  one under the phone number: history, opt-out and window with it.
static void
test_identity_merge (sb_store_t *store)
{
    s_write_one (store, s_meta_user ("wamid.idm1", "US.50000000000000000001",
                                     "US.50000000000000000001", "bsuid only"));
    s_write_one (store, s_meta_user ("wamid.idm2", "16505550101", NULL, "phone only"));
    s_exec ("UPDATE contacts SET opted_out = true, opted_out_at = now (),"
            " last_inbound_at = now () + interval '1 hour'"
            " WHERE address = 'US.50000000000000000001'",
            NULL);
    CHECK_INT (s_contacts_at ("US.50000000000000000001"), 1);
    CHECK_INT (s_contacts_at ("16505550101"), 1);

    s_write_one (store,
                 s_meta_user ("wamid.idm3", "16505550101", "US.50000000000000000001", "both"));
    s_check_moved ("US.50000000000000000001", "16505550101");
    CHECK_INT (s_int ("SELECT count(*) FROM contacts WHERE address = '16505550101'"
                      " AND last_inbound_at > now () + interval '30 minutes'",
                      NULL),
               1);
    CHECK_INT (s_messages_of ("16505550101"), 3);
    CHECK_INT (s_messages_of ("US.50000000000000000001"), 0);
    CHECK_STR (s_identity_of ("US.50000000000000000001"), "16505550101");

    //  The BSUID alone is that contact now.
    s_write_one (store, s_meta_user ("wamid.idm4", "US.50000000000000000001",
                                     "US.50000000000000000001", "bsuid again"));
    CHECK_INT (s_contacts_at ("US.50000000000000000001"), 0);
    CHECK_INT (s_messages_of ("16505550101"), 4);

    //  Phone and BSUID new together, in one batch with the BSUID alone:
    //  one contact, under the phone number.
    sb_event_t *events[2] = {
        s_meta_user ("wamid.idm5", "16505550102", "US.50000000000000000002", "both"),
        s_meta_user ("wamid.idm6", "US.50000000000000000002", "US.50000000000000000002", "id"),
    };
    s_write (store, events, 2, NULL);
    s_free_all (events, 2);
    CHECK_INT (s_contacts_at ("16505550102"), 1);
    CHECK_INT (s_contacts_at ("US.50000000000000000002"), 0);
    CHECK_INT (s_messages_of ("16505550102"), 2);
    CHECK_STR (s_identity_of ("US.50000000000000000002"), "16505550102");
}

//  A change of number moves the contact with its opt-out, window and
//  history; the old number and the old BSUID stop naming it.
static void
test_identity_change_of_number (sb_store_t *store)
{
    s_write_one (store,
                 s_meta_user ("wamid.idc1", "16505550201", "US.50000000000000000011", "one"));
    s_write_one (store,
                 s_meta_user ("wamid.idc2", "16505550201", "US.50000000000000000011", "two"));
    s_exec ("UPDATE contacts SET opted_out = true, opted_out_at = now (),"
            " last_inbound_at = now () - interval '1 hour' WHERE address = '16505550201'",
            NULL);
    int64_t window = s_int ("SELECT (extract (epoch FROM last_inbound_at) * 1000)::int8"
                            " FROM contacts WHERE address = '16505550201'",
                            NULL);

    s_write_one (store, s_meta_system ("wamid.idc3", "16505550201", "US.50000000000000000011",
                                       "16505550202", "US.50000000000000000012",
                                       "US.50000000000000000011"));
    s_check_moved ("16505550201", "16505550202");
    //  The system message is WhatsApp's notice: the window stays the user's.
    CHECK_INT (s_int ("SELECT (extract (epoch FROM last_inbound_at) * 1000)::int8"
                      " FROM contacts WHERE address = '16505550202'",
                      NULL),
               window);
    CHECK_INT (s_messages_of ("16505550202"), 2);
    CHECK_INT (s_messages_of ("16505550201"), 0);
    CHECK_STR (s_identity_of ("16505550201"), "(none)");
    CHECK_STR (s_identity_of ("US.50000000000000000011"), "(none)");
    CHECK_STR (s_identity_of ("US.50000000000000000012"), "16505550202");

    //  The old number, later, is someone new.
    s_write_one (store, s_meta_user ("wamid.idc4", "16505550201", NULL, "new owner"));
    CHECK_STR (s_text ("SELECT opted_out::text FROM contacts WHERE address = '16505550201'", NULL),
               "false");
    CHECK_INT (s_messages_of ("16505550202"), 2);

    //  A changed BSUID of a contact known by its number keeps the number.
    s_write_one (store,
                 s_meta_system ("wamid.idc5", "US.50000000000000000012", "US.50000000000000000012",
                                NULL, "US.50000000000000000013", "US.50000000000000000012"));
    CHECK_INT (s_contacts_at ("16505550202"), 1);
    CHECK_INT (s_contacts_at ("US.50000000000000000013"), 0);
    CHECK_STR (s_identity_of ("US.50000000000000000012"), "(none)");
    CHECK_STR (s_identity_of ("US.50000000000000000013"), "16505550202");
    //  A contact known only by a BSUID moves to the new one.
    s_write_one (store, s_meta_user ("wamid.idc6", "US.50000000000000000021",
                                     "US.50000000000000000021", "hidden number"));
    s_write_one (store,
                 s_meta_system ("wamid.idc7", "US.50000000000000000021", "US.50000000000000000021",
                                NULL, "US.50000000000000000022", "US.50000000000000000021"));
    CHECK_INT (s_contacts_at ("US.50000000000000000021"), 0);
    CHECK_INT (s_contacts_at ("US.50000000000000000022"), 1);
    CHECK_INT (s_messages_of ("US.50000000000000000022"), 1);
}

//  One batch: a message, the change of number, a message from the old
//  number and one from the new: as if written one by one.
static void
test_identity_change_in_batch (sb_store_t *store)
{
    sb_event_t *events[4] = {
        s_meta_user ("wamid.idb1", "16505550301", "US.50000000000000000031", "before"),
        s_meta_system ("wamid.idb2", "16505550301", "US.50000000000000000031", "16505550302",
                       "US.50000000000000000032", "US.50000000000000000031"),
        s_meta_user ("wamid.idb3", "16505550301", NULL, "old number, after"),
        s_meta_user ("wamid.idb4", "16505550302", "US.50000000000000000032", "new number"),
    };
    s_write (store, events, 4, NULL);
    s_free_all (events, 4);
    CHECK_INT (s_contacts_at ("16505550301"), 1);
    CHECK_INT (s_contacts_at ("16505550302"), 1);
    CHECK_INT (s_messages_of ("16505550302"), 2);
    CHECK_INT (s_messages_of ("16505550301"), 1);
    CHECK_STR (s_text ("SELECT body FROM messages WHERE contact_addr = '16505550301'", NULL),
               "old number, after");
    CHECK_STR (s_identity_of ("16505550301"), "16505550301");
    CHECK_STR (s_identity_of ("US.50000000000000000031"), "(none)");
    CHECK_STR (s_identity_of ("US.50000000000000000032"), "16505550302");
}

//  A change of number or id for a contact nobody knows creates nothing.
static void
test_identity_unknown (sb_store_t *store)
{
    int64_t contacts = s_int ("SELECT count(*) FROM contacts", NULL);
    int64_t identities = s_int ("SELECT count(*) FROM contact_identities", NULL);
    int64_t messages = s_int ("SELECT count(*) FROM messages", NULL);
    s_write_one (store,
                 s_meta_system ("wamid.idu1", "US.50000000000000000041", "US.50000000000000000041",
                                NULL, "US.50000000000000000042", "US.50000000000000000041"));
    s_write_one (store, s_meta_system ("wamid.idu2", "16505550401", NULL, "16505550402",
                                       "US.50000000000000000043", NULL));
    CHECK_INT (s_int ("SELECT count(*) FROM events WHERE provider_id LIKE 'wamid.idu%'", NULL), 2);
    CHECK_INT (s_int ("SELECT count(*) FROM contacts", NULL), contacts);
    CHECK_INT (s_int ("SELECT count(*) FROM contact_identities", NULL), identities);
    CHECK_INT (s_int ("SELECT count(*) FROM messages", NULL), messages);
}

//  At most SB_STORE_IDENTITIES_MAX (16) identities per contact, whether
//  they come one batch at a time or in one batch.
static void
test_identity_cap (sb_store_t *store)
{
    enum { N = 20 };
    char wamid[32], user_id[40];
    for (int i = 0; i < N; i++) {
        snprintf (wamid, sizeof wamid, "wamid.idk%02d", i);
        snprintf (user_id, sizeof user_id, "US.600000000000000000%02d", i);
        s_write_one (store, s_meta_user (wamid, "16505550501", user_id, "again"));
    }
    CHECK_INT (
        s_int ("SELECT count(*) FROM contact_identities WHERE address = '16505550501'", NULL), 16);
    CHECK_INT (s_contacts_at ("16505550501"), 1);
    //  Known identities still are: the first BSUID names the contact.
    CHECK_STR (s_identity_of ("US.60000000000000000000"), "16505550501");
    sb_event_t *events[N];
    for (int i = 0; i < N; i++) {
        snprintf (wamid, sizeof wamid, "wamid.idl%02d", i);
        snprintf (user_id, sizeof user_id, "US.700000000000000000%02d", i);
        events[i] = s_meta_user (wamid, "16505550502", user_id, "one batch");
    }
    s_write (store, events, N, NULL);
    s_free_all (events, N);
    CHECK_INT (
        s_int ("SELECT count(*) FROM contact_identities WHERE address = '16505550502'", NULL), 16);
    CHECK_INT (s_messages_of ("16505550502"), N);
}

//  A contact (n1, BSUID u1, marketing "stop") changes its number to n2,
//  already a contact outside the batch: opted out, a later window. The
//  user writes before the change (from n1) and after it (by its new BSUID
//  u2 alone, then from n2 with u2). One batch, or one event per batch
//  (one_by_one), leave the same: n2 still opted out with its window and
//  the preference, no reply to what came after the change (not_sent),
//  the reply to what came before it as one by one queues it, n2's
//  profile name kept (the messages after the change carry none).
static void
s_moved_onto_opted_out (sb_store_t *store, const sb_rules_t *rules, const char *n1, const char *n2,
                        const char *u1, const char *u2, bool one_by_one)
{
    sb_store_policy_t policy = {.rules = rules, .window_ms = 24LL * 3600 * 1000};
    char wamid[48];
    snprintf (wamid, sizeof wamid, "wamid.oo%s0", n1);
    s_write_one (store, s_meta_user (wamid, n1, u1, "n1 known"));
    snprintf (wamid, sizeof wamid, "wamid.oo%s1", n1);
    s_write_one (store, s_meta_user (wamid, n2, NULL, "n2 known"));
    s_exec ("UPDATE contacts SET marketing_preference = 'stop',"
            " marketing_preference_at = '2026-02-01T00:00:00Z' WHERE address = $1",
            n1, NULL);
    s_exec ("UPDATE contacts SET opted_out = true, opted_out_at = now (), profile_name = 'N2',"
            " last_inbound_at = now () + interval '1 hour' WHERE address = $1",
            n2, NULL);

    enum { N = 4 };
    sb_event_t *events[N];
    snprintf (wamid, sizeof wamid, "wamid.oo%s2", n1);
    events[0] = s_meta_user (wamid, n1, u1, "before the change");
    snprintf (wamid, sizeof wamid, "wamid.oo%s3", n1);
    events[1] = s_meta_system (wamid, n1, u1, n2, u2, u1);
    snprintf (wamid, sizeof wamid, "wamid.oo%s4", n1);
    events[2] = s_meta_user (wamid, u2, u2, "after, by the new BSUID");
    snprintf (wamid, sizeof wamid, "wamid.oo%s5", n1);
    events[3] = s_meta_user (wamid, n2, u2, "after, from the new number");
    for (size_t i = 2; i < N; i++)
        sb_event_set (&events[i]->profile_name, NULL);
    for (size_t i = 0; i < (one_by_one ? N : 1); i++)
        s_write (store, events + i, one_by_one ? 1 : N, &policy);
    s_free_all (events, N);

    CHECK_INT (s_contacts_at (n1), 0);
    CHECK_INT (s_contacts_at (u2), 0);
    CHECK_STR (s_text ("SELECT opted_out || '/' || (opted_out_at IS NOT NULL) || '/'"
                       " || (last_inbound_at > now () + interval '30 minutes') || '/'"
                       " || profile_name FROM contacts WHERE address = $1",
                       n2, NULL),
               "true/true/true/N2");
    CHECK_STR (s_text ("SELECT marketing_preference || '/' || COALESCE (extract (epoch FROM"
                       " marketing_preference_at)::bigint::text, 'none')"
                       " FROM contacts WHERE address = $1",
                       n2, NULL),
               "stop/1769904000");
    //  Its own, n1's two, the two after, and the reply to n1's second,
    //  queued before the change moved the conversation.
    CHECK_INT (s_messages_of (n2), 6);
    CHECK_INT (s_outbox_count (n1, "pending"), 1);
    CHECK_INT (s_outbox_count (n2, "pending"), 0);
    CHECK_INT (s_outbox_count (u2, "pending"), 0);
    CHECK_INT (s_outbox_count (n2, "not_sent"), 2);
    CHECK_STR (s_identity_of (u2), n2);
    CHECK_STR (s_identity_of (u1), "(none)");
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
}

//  The change alone after the user's marketing preference and message, n2
//  no sender of the batch: n2's opt-out and window stay, the preference
//  moves with the contact (the message before the change, from n1, is
//  answered, as one by one).
static void
s_written_then_moved (sb_store_t *store, const sb_rules_t *rules, const char *n1, const char *n2,
                      bool one_by_one)
{
    sb_store_policy_t policy = {.rules = rules, .window_ms = 24LL * 3600 * 1000};
    char wamid[48];
    snprintf (wamid, sizeof wamid, "wamid.ow%s0", n1);
    s_write_one (store, s_meta_user (wamid, n2, NULL, "n2 known"));
    s_exec ("UPDATE contacts SET opted_out = true, opted_out_at = now (),"
            " last_inbound_at = now () + interval '1 hour' WHERE address = $1",
            n2, NULL);
    enum { N = 3 };
    sb_event_t *events[N];
    events[0] = s_event (SB_PROVIDER_META, SB_CHANNEL_WHATSAPP, SB_KIND_PREFERENCE, "", n1,
                         "15550783881", NULL);
    sb_event_set (&sb_event_preference (events[0])->value, "stop");
    events[0]->provider_timestamp = 1769904000;
    char detail[96];
    snprintf (detail, sizeof detail, "{\"wa_id\":\"%s\",\"value\":\"stop\"}", n1);
    sb_event_set (&events[0]->detail_json, detail);
    snprintf (wamid, sizeof wamid, "wamid.ow%s1", n1);
    events[1] = s_meta_user (wamid, n1, NULL, "before the change");
    snprintf (wamid, sizeof wamid, "wamid.ow%s2", n1);
    events[2] = s_meta_system (wamid, n1, NULL, n2, NULL, NULL);
    for (size_t i = 0; i < (one_by_one ? N : 1); i++)
        s_write (store, events + i, one_by_one ? 1 : N, &policy);
    s_free_all (events, N);
    CHECK_INT (s_contacts_at (n1), 0);
    CHECK_STR (s_text ("SELECT marketing_preference FROM contacts WHERE address = $1", n2, NULL),
               "stop");
    CHECK_STR (s_text ("SELECT opted_out || '/' || (opted_out_at IS NOT NULL) || '/'"
                       " || (last_inbound_at > now () + interval '30 minutes')"
                       " FROM contacts WHERE address = $1",
                       n2, NULL),
               "true/true/true");
    CHECK_INT (s_outbox_count (n1, "pending"), 1);
    CHECK_INT (s_messages_of (n2), 3);
    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
}

//  A change of number onto an opted-out contact never clears its opt-out,
//  window or preference, nor lets a reply through, batched or not.
static void
test_identity_moved_onto_opted_out (sb_store_t *store, const sb_rules_t *rules)
{
    s_moved_onto_opted_out (store, rules, "16505550601", "16505550602", "US.50000000000000000061",
                            "US.50000000000000000062", false);
    s_moved_onto_opted_out (store, rules, "16505550611", "16505550612", "US.50000000000000000071",
                            "US.50000000000000000072", true);
    s_written_then_moved (store, rules, "16505550621", "16505550622", false);
    s_written_then_moved (store, rules, "16505550631", "16505550632", true);
}

//  ---------------------------------------------------------------------

//  ---- Several dispatchers (0010_dispatcher_partitions.sql, sb_store_lease.c)

//  A lease tick of store as id, lease_ms long; *lease its figures.
static void
s_tick (sb_store_t *store, const char *id, int64_t lease_ms, sb_store_lease_t *lease)
{
    CHECK_INT (sb_store_lease_tick (store, id, lease_ms, lease), 0);
}

//  Partitions whose lease names id (the owner column).
static int64_t
s_held_by (const char *id)
{
    return s_int ("SELECT count(*) FROM dispatcher_partitions WHERE owner = $1", id, NULL);
}

//  A reply row in partition part, conversation conv: its id.
static int64_t
s_reply_in (int64_t part, int64_t conv)
{
    char p[24], c[24];
    snprintf (p, sizeof p, "%" PRId64, part);
    snprintf (c, sizeof c, "%" PRId64, conv);
    return s_int ("INSERT INTO outbox (kind, provider, channel, from_addr, to_addr, body, conv,"
                  " part) VALUES ('reply', 'twilio', 'sms', '+15558675310', '+14155550500', 'hi',"
                  " $1, $2) RETURNING id",
                  c, p, NULL);
}

//  The ids of a claim by store, in order, into ids (at most 8); count.
static int
s_claim_ids (sb_store_t *store, int64_t *ids)
{
    sb_outbox_item_t *items = NULL;
    int n = sb_store_claim (store, 8, &items);
    for (int i = 0; i < n; i++) {
        ids[i] = items[i].id;
        sb_outbox_item_free (&items[i]);
    }
    free (items);
    return n;
}

//  The conversation hash is the same in C and in SQL (the database
//  re-keys a moved contact's rows with its own); three dispatchers share
//  the partitions evenly, a new one takes its share only as the others
//  give up their surplus, and a dead one's partitions move once its
//  leases pass; a holder that lost its partitions claims and records
//  nothing there (fenced), and the new holder resends only its in-flight
//  rows; a conversation's rows are claimed one at a time, in order.
static void
test_leases (const char *conninfo)
{
    static const char *convs[][5] = {
        {"twilio", "sms", "", "+15558675310", "+14155550100"},
        {"meta", "whatsapp", "106540352242922", "15550783881", "US.13491208655302741918"},
        {"", "", "", "", ""},
        {"twilio", "whatsapp", "", "+1", "\xc3\xa9t\xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        char want[24];
        snprintf (want, sizeof want, "%u",
                  (unsigned) sb_partition_hash (convs[i][0], convs[i][1], convs[i][2], convs[i][3],
                                                convs[i][4]));
        CHECK_STR (s_text ("SELECT sb_conv_hash ($1, $2, $3, $4, $5)::text", convs[i][0],
                           convs[i][1], convs[i][2], convs[i][3], convs[i][4], NULL),
                   want);
    }

    s_exec ("UPDATE outbox SET state = 'sent' WHERE state IN ('pending', 'sending')", NULL);
    s_exec ("DELETE FROM dispatchers", NULL);
    s_exec ("UPDATE dispatcher_partitions SET instance = '', owner = '',"
            " lease_until = '-infinity'",
            NULL);
    sb_store_t *a = sb_store_new (conninfo, 0);
    sb_store_t *b = sb_store_new (conninfo, 0);
    sb_store_t *c = sb_store_new (conninfo, 0);
    CHECK (a && b && c);
    if (!a || !b || !c)
        goto done;
    const int64_t lease_ms = 1500;
    sb_store_lease_t la, lb, lc;
    s_tick (a, "a", lease_ms, &la);  //  alone: everything
    CHECK_INT (la.owned, 256);
    CHECK_INT ((int) la.live, 1);
    s_tick (b, "b", lease_ms, &lb);  //  its share is held yet
    CHECK_INT (lb.owned, 0);
    CHECK_INT (lb.target, 128);
    s_tick (a, "a", lease_ms, &la);  //  a gives up its surplus
    CHECK_INT (la.owned, 128);
    CHECK_INT (la.given, 128);
    s_tick (b, "b", lease_ms, &lb);
    CHECK_INT (lb.owned, 128);
    CHECK_INT (lb.taken, 128);
    s_tick (c, "c", lease_ms, &lc);  //  a third: 86, 85, 85
    s_tick (a, "a", lease_ms, &la);
    s_tick (b, "b", lease_ms, &lb);
    s_tick (c, "c", lease_ms, &lc);
    CHECK_INT (la.owned, 86);
    CHECK_INT (lb.owned, 85);
    CHECK_INT (lc.owned, 85);
    CHECK_INT (s_held_by ("a") + s_held_by ("b") + s_held_by ("c"), 256);
    int64_t epoch = s_int ("SELECT max(epoch) FROM dispatcher_partitions WHERE owner = 'c'", NULL);
    CHECK (epoch >= 1);

    //  Rows in a partition of c's: two of one conversation, one of another.
    int64_t part = s_int ("SELECT min(part) FROM dispatcher_partitions WHERE owner = 'c'", NULL);
    int64_t r1 = s_reply_in (part, part), r2 = s_reply_in (part, part);
    int64_t r3 = s_reply_in (part, part + 256);
    int64_t ids[8];
    CHECK_INT (s_claim_ids (a, ids), 0);  //  not a's partition
    CHECK_INT (s_claim_ids (c, ids), 2);  //  r1 and r3; r2 waits for r1
    CHECK_INT (ids[0], r1);
    CHECK_INT (ids[1], r3);
    sb_send_result_t r1_late =
        s_result (r1, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMlease01", NULL, NULL);

    //  c stops ticking (killed, or stopped) past its lease: a and b take
    //  its partitions and put r1 and r3 back, and nothing else.
    int recovered = 0;
    for (int64_t waited = 0; waited < lease_ms + 500; waited += 250) {
        usleep (250 * 1000);
        s_tick (a, "a", lease_ms, &la);
        s_tick (b, "b", lease_ms, &lb);
        recovered += la.recovered + lb.recovered;
    }
    CHECK_INT ((int) la.live, 2);
    CHECK_INT (la.owned, 128);
    CHECK_INT (lb.owned, 128);
    CHECK_INT (recovered, 2);
    CHECK_INT (s_held_by ("c"), 0);
    CHECK (s_int ("SELECT min(epoch) FROM dispatcher_partitions", NULL) >= 1);
    CHECK_STR (s_outbox (r1, "state"), "pending");

    //  c comes back: its result for r1 is fenced, it claims nothing.
    CHECK_INT (sb_store_fenced (c), 0);
    s_record (c, &r1_late, 5);
    CHECK_INT (sb_store_fenced (c), 1);
    CHECK_STR (s_outbox (r1, "state"), "pending");
    CHECK_STR (s_outbox (r1, "attempts"), "0");
    CHECK_INT (s_claim_ids (c, ids), 0);
    s_tick (c, "c", lease_ms, &lc);  //  alive again, nothing free: holds nothing yet
    CHECK_INT (lc.owned, 0);
    CHECK_INT ((int) lc.live, 3);

    //  The new holder sends r1 and r3, then r2 once r1 is done: a retry
    //  of r1 still holds r2 back.
    char spart[24];
    snprintf (spart, sizeof spart, "%" PRId64, part);
    bool a_holds =
        strcmp (s_text ("SELECT owner FROM dispatcher_partitions WHERE part = $1", spart, NULL),
                "a")
        == 0;
    sb_store_t *x = a_holds ? a : b;
    CHECK_INT (s_claim_ids (x, ids), 2);
    CHECK_INT (ids[0], r1);
    CHECK_INT (ids[1], r3);
    sb_send_result_t res = s_result (r1, SB_OUTBOX_REPLY, SB_SEND_RETRY, NULL, NULL, NULL);
    s_record (x, &res, 5);
    CHECK_INT (s_claim_ids (x, ids), 0);  //  r1 is due later: r2 waits
    res = s_result (r3, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMlease03", NULL, NULL);
    s_record (x, &res, 5);
    s_exec ("UPDATE outbox SET next_attempt_at = now () WHERE state = 'pending'", NULL);
    CHECK_INT (s_claim_ids (x, ids), 1);
    CHECK_INT (ids[0], r1);
    res = s_result (r1, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMlease01", NULL, NULL);
    s_record (x, &res, 5);
    CHECK_INT (s_claim_ids (x, ids), 1);
    CHECK_INT (ids[0], r2);
    res = s_result (r2, SB_OUTBOX_REPLY, SB_SEND_SENT, "SMlease02", NULL, NULL);
    s_record (x, &res, 5);

    //  A contact that moves (sb_contact_moves rewrites its messages' address)
    //  takes its pending replies to its new conversation, as the C hash
    //  names it.
    int64_t moved = s_make_reply ("US.13491208655302741918");
    char smoved[24], want[24];
    snprintf (smoved, sizeof smoved, "%" PRId64, moved);
    s_exec ("UPDATE messages SET contact_addr = '+14155550777' WHERE outbox_id = $1", smoved, NULL);
    uint32_t h = sb_partition_hash ("twilio", "sms", "", "+15558675310", "+14155550777");
    snprintf (want, sizeof want, "%u/%d", (unsigned) h, sb_partition_of (h));
    CHECK_STR (s_outbox (moved, "conv || '/' || part"), want);
    s_exec ("UPDATE outbox SET state = 'sent' WHERE id = $1", smoved, NULL);

    //  A clean stop gives the partitions up at once (no row sending).
    CHECK_INT (sb_store_lease_release (a), la.owned);
    CHECK_INT (s_held_by ("a"), 0);
    s_tick (b, "b", lease_ms, &lb);
    CHECK_INT ((int) lb.live, 2);
done:
    sb_store_destroy (&a);
    sb_store_destroy (&b);
    sb_store_destroy (&c);
}

//  ---------------------------------------------------------------------
//  Retention (SB_RETAIN_DAYS, sb_store_retain.c)

//  Steps until the pass ends (at most max); the rows each kind removed.
static int
s_retain_pass (sb_store_t *store, int days, int batch, sb_store_retain_t *sum, int max)
{
    memset (sum, 0, sizeof *sum);
    int steps = 0;
    while (steps < max) {
        sb_store_retain_t out;
        CHECK_INT (sb_store_retain_step (store, days, batch, 1000, &out), 0);
        steps++;
        sum->events += out.events;
        sum->bodies += out.bodies;
        sum->messages += out.messages;
        sum->outbox += out.outbox;
        sum->busy = out.busy;
        if (out.done)
            break;
    }
    sum->done = steps < max;
    return steps;
}

static void
test_retain (sb_store_t *store)
{
    //  Five inbound SMS, stored now; then three of them made 100 days old,
    //  one 89 days (inside a 90-day retention), one left new. Each has its
    //  own request body.
    sb_event_t *events[5];
    char ids[5][24];
    for (int i = 0; i < 5; i++) {
        char sid[24], from[24];
        snprintf (sid, sizeof sid, "SMretain%02d", i);
        snprintf (from, sizeof from, "+1415555%04d", 7000 + i);
        events[i] = s_sms (sid, from, "old news");
        char raw[32];
        snprintf (raw, sizeof raw, "Body=retain%d", i);
        sb_event_set_raw (events[i], raw, strlen (raw));
    }
    sb_store_policy_t policy = {.window_ms = 24LL * 3600 * 1000};
    sb_store_stats_t st = s_write (store, events, 5, &policy);
    CHECK_EQ (st.stored, 5);
    for (int i = 0; i < 5; i++)
        snprintf (
            ids[i], sizeof ids[i], "%s",
            s_text ("SELECT id FROM events WHERE provider_id = $1", events[i]->provider_id, NULL));
    const char *age[5] = {"100", "100", "100", "89", "0"};
    for (int i = 0; i < 5; i++) {
        s_exec ("UPDATE events SET created_at = now () - $2::int4 * interval '1 day'"
                " WHERE id = $1::int8",
                ids[i], age[i], NULL);
        s_exec ("UPDATE messages SET created_at = now () - $2::int4 * interval '1 day',"
                " updated_at = now () - $2::int4 * interval '1 day' WHERE event_id = $1::int8",
                ids[i], age[i], NULL);
        s_exec ("UPDATE request_bodies b SET created_at = now () - $2::int4 * interval '1 day'"
                " FROM events e WHERE e.id = $1::int8 AND b.sha256 = e.body_sha256",
                ids[i], age[i], NULL);
    }
    //  Outbox rows 100 days old: sent (answering event 0), pending
    //  (answering event 1, with its outbound message), dead; and one sent
    //  10 days ago.
    const char *ins = "INSERT INTO outbox (kind, state, provider, channel, to_addr, event_id,"
                      " created_at, updated_at) VALUES ('reply', $1, 'twilio', 'sms', '+1',"
                      " $2::int8, now () - $3::int4 * interval '1 day',"
                      " now () - $3::int4 * interval '1 day') RETURNING id";
    char pending[24];
    s_exec (ins, "sent", ids[0], "100", NULL);
    snprintf (pending, sizeof pending, "%s", s_text (ins, "pending", ids[1], "100", NULL));
    s_exec (ins, "dead", ids[2], "100", NULL);
    s_exec (ins, "sent", ids[3], "10", NULL);
    s_exec ("INSERT INTO messages (direction, provider, channel, contact_addr, outbox_id,"
            " event_id, created_at, updated_at) VALUES ('outbound', 'twilio', 'sms', '+1',"
            " $1::int8, $2::int8, now () - interval '100 days', now () - interval '100 days')",
            pending, ids[1], NULL);
    //  2,500 more events 100 days old: three batches of 1,000.
    s_exec ("INSERT INTO events (ingress_id, seq, provider, channel, kind, received_at, payload,"
            " created_at) SELECT 'retain-bulk', g, 'twilio', 'sms', 'message',"
            " now () - interval '100 days', '\\x'::bytea, now () - interval '100 days'"
            " FROM generate_series (1, 2500) g",
            NULL);
    int64_t events0 = s_int ("SELECT count (*) FROM events", NULL);
    int64_t messages0 = s_int ("SELECT count (*) FROM messages", NULL);
    int64_t outbox0 = s_int ("SELECT count (*) FROM outbox", NULL);
    int64_t bodies0 = s_int ("SELECT count (*) FROM request_bodies", NULL);
    int64_t contacts0 = s_int ("SELECT count (*) FROM contacts", NULL);

    //  0 keeps everything.
    sb_store_retain_t sum;
    CHECK_INT (s_retain_pass (store, 0, 1000, &sum, 10), 1);
    CHECK_INT (s_int ("SELECT count (*) FROM events", NULL), events0);

    //  Another store's pass holds the lock: this one is busy and removes
    //  nothing.
    s_exec ("SELECT pg_advisory_lock (8314333642149161326)", NULL);
    s_retain_pass (store, 90, 1000, &sum, 10);
    CHECK (sum.busy);
    CHECK_INT (sum.events, 0);
    CHECK_INT (s_int ("SELECT count (*) FROM events", NULL), events0);
    s_exec ("SELECT pg_advisory_unlock (8314333642149161326)", NULL);

    //  90 days: the old rows go, in batches of 1,000, exactly.
    int steps = s_retain_pass (store, 90, 1000, &sum, 100);
    CHECK (sum.done);
    CHECK (!sum.busy);
    CHECK_INT (steps, 8);          //  events 4 (3 batches, 1 empty), messages 2, outbox 2
    CHECK_INT (sum.events, 2502);  //  events 0 and 2, and the bulk
    CHECK_INT (sum.bodies, 2);     //  their bodies; event 1's stays with it
    CHECK_INT (sum.messages, 3);   //  the inbound messages of events 0 to 2
    CHECK_INT (sum.outbox, 2);     //  the old sent and dead rows
    CHECK_INT (s_int ("SELECT count (*) FROM events", NULL), events0 - 2502);
    CHECK_INT (s_int ("SELECT count (*) FROM messages", NULL), messages0 - 3);
    CHECK_INT (s_int ("SELECT count (*) FROM outbox", NULL), outbox0 - 2);
    CHECK_INT (s_int ("SELECT count (*) FROM request_bodies", NULL), bodies0 - 2);
    CHECK_INT (s_int ("SELECT count (*) FROM contacts", NULL), contacts0);
    //  The pending row keeps its event, its body and its outbound message.
    CHECK_INT (s_int ("SELECT count (*) FROM events WHERE id = $1::int8", ids[1], NULL), 1);
    CHECK_INT (s_int ("SELECT count (*) FROM events e JOIN request_bodies b"
                      " ON b.sha256 = e.body_sha256 WHERE e.id = $1::int8",
                      ids[1], NULL),
               1);
    CHECK_INT (s_int ("SELECT count (*) FROM messages WHERE outbox_id = $1::int8", pending, NULL),
               1);
    CHECK_INT (s_int ("SELECT count (*) FROM outbox WHERE id = $1::int8", pending, NULL), 1);
    CHECK_INT (s_int ("SELECT count (*) FROM events WHERE id IN ($1::int8, $2::int8)", ids[0],
                      ids[2], NULL),
               0);

    //  A provider's retry of the 89-day-old webhook (a new journal
    //  position, the same MessageSid) is still a duplicate.
    sb_event_t *retry = s_copy (events[3], ++s_seq);
    st = s_write (store, &retry, 1, &policy);
    CHECK_EQ (st.stored, 0);
    CHECK_EQ (st.duplicates, 1);
    sb_event_destroy (&retry);

    //  A second pass has nothing left to remove: it reads what was kept
    //  and ends.
    s_retain_pass (store, 90, 1000, &sum, 100);
    CHECK (sum.done);
    CHECK_INT (sum.events + sum.messages + sum.outbox, 0);
    CHECK_INT (s_int ("SELECT count (*) FROM events", NULL), events0 - 2502);
    s_free_all (events, 5);
}

int
main (void)
{
    sb_log_init ("test_sb_store", SB_LOG_ERROR);
    const char *url = getenv ("SB_TEST_DATABASE_URL");
    if (!url || !*url) {
        fprintf (stderr, "test_sb_store: SB_TEST_DATABASE_URL not set, skipped\n");
        return 77;
    }
    PGconn *admin = PQconnectdb (url);
    if (PQstatus (admin) != CONNECTION_OK) {
        fprintf (stderr, "test_sb_store: cannot connect to %s: %s", url, PQerrorMessage (admin));
        PQfinish (admin);
        return 1;
    }
    //  Fresh databases with random names.
    srand ((unsigned) time (NULL) ^ (unsigned) getpid ());
    char names[2][64];
    char *conninfo[2];
    for (int i = 0; i < 2; i++) {
        snprintf (names[i], sizeof names[i], "sbtest_%d_%d_%08x", (int) getpid (), i,
                  (unsigned) rand ());
        char *quoted = PQescapeIdentifier (admin, names[i], strlen (names[i]));
        char sql[160];
        snprintf (sql, sizeof sql, "CREATE DATABASE %s", quoted);
        PQfreemem (quoted);
        PGresult *r = PQexec (admin, sql);
        if (PQresultStatus (r) != PGRES_COMMAND_OK) {
            fprintf (stderr, "test_sb_store: %s", PQresultErrorMessage (r));
            return 1;
        }
        PQclear (r);
        conninfo[i] = s_conninfo_for (admin, names[i]);
    }

    test_migrate_concurrently (conninfo[1]);

    sb_store_t *store = sb_store_new (conninfo[0], 0);
    s_db = PQconnectdb (conninfo[0]);
    CHECK (store != NULL);
    CHECK (PQstatus (s_db) == CONNECTION_OK);
    sb_log_init ("test_sb_store", SB_LOG_OFF);
    CHECK (sb_store_new ("host=127.0.0.1 port=1", 2000) == NULL);
    sb_log_init ("test_sb_store", SB_LOG_ERROR);
    if (store && PQstatus (s_db) == CONNECTION_OK) {
        test_migrate (store);
        s_hold_all (store);
        test_deadlines (conninfo[0]);
        test_inbound_kinds (store);
        test_dedup (store);
        test_statuses (store);
        test_outbox (store, conninfo[0]);
        test_settle (store);
        test_poison (store);
        test_sent_many (store);
        test_cursor_split (store, conninfo[0]);
        test_settle_transient (conninfo[0]);
        test_claim_aba (conninfo[0]);
        s_hold_all (store);
        test_leases (conninfo[0]);
        s_hold_all (store);
        test_identity_merge (store);
        test_identity_change_of_number (store);
        test_identity_change_in_batch (store);
        test_identity_unknown (store);
        test_identity_cap (store);
        test_large_batch (store, NULL, "SMbig");
        test_many_contacts (conninfo[0]);
        test_many_identities (conninfo[0]);
        test_console_conversations (store);
        test_console_captures (store);
        s_hold_all (store);
        test_console_retry (store);
        char err[256] = "";
        sb_rules_t *rules = sb_rules_load_string (s_rules_yaml, "test-rules", err, sizeof err);
        if (!rules)
            fprintf (stderr, "rules: %s\n", err);
        CHECK (rules != NULL);
        if (rules) {
            test_rules (store, rules);
            test_meta_fields (store, rules);
            test_identity_moved_onto_opted_out (store, rules);
            test_request_bodies (store, rules);
            test_failures (store, rules);
            test_large_batch (store, rules, "SMbigrules");
        }
        sb_rules_destroy (&rules);
        //  The store still works after its connection is killed: the
        //  first write fails (logged: silenced here), the retry reconnects.
        sb_log_init ("test_sb_store", SB_LOG_OFF);
        s_exec ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()",
                NULL);
        sb_event_t *e = s_sms ("SMafter01", "+14155550099", "after a reconnect");
        sb_store_stats_t st;
        if (sb_store_write (store, &e, 1, NULL, &st) != 0)
            CHECK_INT (sb_store_write (store, &e, 1, NULL, &st), 0);
        sb_log_init ("test_sb_store", SB_LOG_ERROR);
        CHECK_INT (s_int ("SELECT count(*) FROM events WHERE provider_id = 'SMafter01'", NULL), 1);
        sb_event_destroy (&e);
    }
    sb_store_destroy (&store);
    CHECK (store == NULL);
    sb_store_destroy (&store);
    PQfinish (s_db);

    //  Retention on the concurrent migrators' database, where ids follow
    //  time as they do in production (every table starts empty there).
    s_db = PQconnectdb (conninfo[1]);
    store = sb_store_new (conninfo[1], 0);
    CHECK (store != NULL);
    if (store && PQstatus (s_db) == CONNECTION_OK)
        test_retain (store);
    sb_store_destroy (&store);
    PQfinish (s_db);

    for (int i = 0; i < 2; i++) {
        //  Checked here: the concurrent migrators' database.
        if (i == 1) {
            PGconn *c = PQconnectdb (conninfo[1]);
            PGresult *r = PQexec (c, "SELECT count(*) FROM schema_migrations");
            CHECK (PQresultStatus (r) == PGRES_TUPLES_OK && PQntuples (r) == 1
                   && atoi (PQgetvalue (r, 0, 0)) == s_migration_files ());
            PQclear (r);
            PQfinish (c);
        }
        char *quoted = PQescapeIdentifier (admin, names[i], strlen (names[i]));
        char sql[160];
        snprintf (sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", quoted);
        PQfreemem (quoted);
        PQclear (PQexec (admin, sql));
        free (conninfo[i]);
    }
    PQfinish (admin);
    return s_failures ? 1 : 0;
}

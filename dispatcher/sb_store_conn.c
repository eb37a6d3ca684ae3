/*  sb_store_conn: the store's one libpq connection (see sb_store.h and
    sb_store_internal.h): connecting, round trips with a deadline, pipeline
    plumbing, and the small helpers the store's files share.

    DESIGN (deadlines). Every round trip has a deadline, SB_PG_TIMEOUT_MS
    (timeout_ms): the connection is non-blocking, a connect is
    PQconnectStartParams then PQconnectPoll, and every send and every wait
    for a result is a poll() on PQsocket until the deadline, PQflush and
    PQconsumeInput/PQisBusy in between (libpq's own waits have none). The
    server is asked to give up first, so that a slow statement or a held
    lock costs an error and not the connection: statement_timeout is 4/5
    and lock_timeout 1/2 of the deadline; idle_in_transaction_session_timeout
    is the deadline (the delivery actor's connection: less than its lease,
    sb_store_new_idle), so a dispatcher stopped inside a transaction
    (SIGSTOP, a host gone with its session open) holds its locks, and the
    other dispatchers inserting the same events (docs/internals.md,
    "Several dispatchers"), at most that long; TCP keepalives and
    tcp_user_timeout (the deadline) let the kernel drop a peer that went
    away. Each is set only where DATABASE_URL (or PGOPTIONS) does not set
    it, but for a limit given to sb_store_new_idle, which wins. When the
    deadline passes the connection is dropped (closed, never waited on
    again) and the call fails; the caller retries the same work
    later on a new connection (sb_store_ensure), with its own backoff. A
    dropped write may still commit on a server that wakes up later: that
    is safe, the retry inserts nothing (unique keys) and decides nothing.
    The outbox is not keyed that way (id and state 'sending'), so its
    statements carry claim tokens (sb_store_outbox.c): each connection has
    one, the store's random instance id and a random part new on every
    connect, and a dropped connection's token is kept (up to
    SB_STORE_DROPPED_MAX, oldest forgotten) for sb_store_reclaim.
    sb_store_last_ok_us says when the last round trip succeeded, for
    readiness.

    Limits. The host name lookup of a connect is libpq's and blocking (not
    bounded by the deadline): use an address or a local resolver.
*/
#include "sb_store_internal.h"
#include "sb_policy.h"
#include "sb_utf8.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "sb_text.h"
#include "sb_time.h"

#define S_MODULE "store"

//  PostgreSQL counts as answering this long past the deadline after the
//  last successful round trip (callers ping every S_PING_MS when idle).
#define S_ALIVE_SLACK_MS 1000
//  Repeated connection and round trip errors: one line per this many ms.
#define S_LOG_EVERY_MS 1000

//  ---------------------------------------------------------------------
//  Small helpers, shared by the store's files

//  The first line of a libpq message, for one-line logs.
const char *
sb_store_line (const char *message, char *buf, size_t size)
{
    snprintf (buf, size, "%s", s_str (message));
    buf[strcspn (buf, "\r\n")] = 0;
    return buf;
}

//  Log a failed result: what we were doing, the server's message and
//  SQLSTATE (a failure repeated each retry: once a second, with a count).
void
sb_store_log_result (sb_store_t *self, const PGresult *result, const char *what)
{
    char line[512];
    const char *message = result ? PQresultErrorMessage (result) : "";
    if (!message || !*message)
        message = self->conn ? PQerrorMessage (self->conn) : "connection dropped";
    const char *state = result ? PQresultErrorField (result, PG_DIAG_SQLSTATE) : NULL;
    snprintf (self->sqlstate, sizeof self->sqlstate, "%s", state ? state : "");
    //  A deadlock or serialization failure is PostgreSQL ending one of two
    //  transactions that crossed (several dispatchers storing one webhook
    //  that two ingresses journaled: docs/internals.md, "Several
    //  ingresses"); its callers try the work again (a batch, a settle, a
    //  lease tick), so it is a warning, not an error.
    bool transient = state && (!strcmp (state, "40P01") || !strcmp (state, "40001"));
    sb_log_every (&self->log_result, transient ? SB_LOG_WARN : SB_LOG_ERROR, S_MODULE,
                  "%s failed error=\"%s\" sqlstate=%s%s", what,
                  sb_store_line (message, line, sizeof line), state ? state : "-",
                  transient ? " (crossed another transaction: PostgreSQL ended this one)" : "");
}

bool
sb_store_parse_int64 (const char *text, int64_t *value)
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
char *
sb_store_utf8_dup (const char *s, size_t max)
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
    copy[out] = 0;
    return copy;
}

//  ---------------------------------------------------------------------
//  Connection

//  Server notices ("relation ... already exists, skipping") go to the
//  debug log rather than libpq's default, stderr.
static void
s_notice (void *arg, const char *message)
{
    (void) arg;
    char line[512];
    sb_debug (S_MODULE, "notice from PostgreSQL message=\"%s\"",
              sb_store_line (message, line, sizeof line));
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

//  The "options" to connect with: the user's, plus our statement_timeout,
//  lock_timeout, idle_in_transaction_session_timeout (idle_ms whatever
//  they set; 0: timeout_ms) and plan_cache_mode where they do not set
//  them. NULL when
//  out of memory. Every batch statement takes arrays whose length the
//  planner cannot see in a generic plan (it guesses 10 rows per unnest):
//  after five executions PostgreSQL may switch to that plan, which joined
//  500 keys against every contact (test_many_identities), so each
//  execution is planned for its own arrays (force_custom_plan); the
//  planning costs far less than the round trip.
static char *
s_options (const char *conninfo, int timeout_ms, int idle_ms)
{
    char *theirs = s_conninfo_value (conninfo, "options");
    const char *base = theirs ? theirs : "";
    char ours[192] = "";
    if (!strstr (base, "statement_timeout"))
        snprintf (ours, sizeof ours, " -c statement_timeout=%d", timeout_ms - timeout_ms / 5);
    if (!strstr (base, "lock_timeout")) {
        size_t used = strlen (ours);
        snprintf (ours + used, sizeof ours - used, " -c lock_timeout=%d", timeout_ms / 2);
    }
    //  A limit of the store's own (sb_store_new_idle) comes after the
    //  user's options, so it is the one the server keeps.
    if (idle_ms > 0 || !strstr (base, "idle_in_transaction_session_timeout")) {
        size_t used = strlen (ours);
        snprintf (ours + used, sizeof ours - used, " -c idle_in_transaction_session_timeout=%d",
                  idle_ms > 0 ? idle_ms : timeout_ms);
    }
    if (!strstr (base, "plan_cache_mode")) {
        size_t used = strlen (ours);
        snprintf (ours + used, sizeof ours - used, " -c plan_cache_mode=force_custom_plan");
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
    if (!self->token[0])
        return;
    if (self->dropped_count == SB_STORE_DROPPED_MAX) {
        sb_log_every (&self->dropped_log, SB_LOG_WARN, S_MODULE,
                      "claim token of a dropped connection forgotten, its rows wait for a"
                      " restart token=%s kept=%d",
                      self->dropped[0], SB_STORE_DROPPED_MAX);
        memmove (self->dropped[0], self->dropped[1],
                 (SB_STORE_DROPPED_MAX - 1) * sizeof self->dropped[0]);
        self->dropped_count--;
    }
    memcpy (self->dropped[self->dropped_count++], self->token, sizeof self->token);
    self->token[0] = 0;
}

//  n random bytes as 2n hex digits into out (2n + 1 bytes). 0, or -1.
static int
s_random_hex (char *out, size_t n)
{
    unsigned char bytes[16];
    assert (n <= sizeof bytes);
    if (RAND_bytes (bytes, (int) n) != 1) {
        sb_error (S_MODULE, "no random bytes for a claim token");
        return -1;
    }
    sb_text_hex (bytes, n, out);
    return 0;
}

//  A round trip passed its deadline: log (once a second, with a count)
//  and drop the connection.
static void
s_timeout (sb_store_t *self, const char *what)
{
    sb_log_every (
        &self->log_timeout, SB_LOG_ERROR, S_MODULE,
        "PostgreSQL did not answer in time, dropping the connection what=%s timeout_ms=%d", what,
        self->timeout_ms);
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
        struct pollfd pfd = {.fd = fd,
                             .events = (short) ((read ? POLLIN : 0) | (write ? POLLOUT : 0))};
        int n = poll (&pfd, 1, (int) ((left_us + 999) / 1000));
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR) {
            char buf[128];
            sb_error (S_MODULE, "poll on the PostgreSQL socket failed error=\"%s\"",
                      sb_strerror (errno, buf, sizeof buf));
            return -1;
        }
    }
}

//  Connect within the deadline (PQconnectStartParams, then PQconnectPoll
//  whenever the socket is ready as it asks). 0, or -1 (logged).
int
sb_store_connect (sb_store_t *self)
{
    s_drop (self);
    //  Keywords before "dbname" are defaults DATABASE_URL may override;
    //  after it, ours. The conninfo is expanded as "dbname".
    char ms[16], idle[16], interval[16];
    snprintf (ms, sizeof ms, "%d", self->timeout_ms);
    snprintf (idle, sizeof idle, "%d", self->timeout_ms / 2000 > 0 ? self->timeout_ms / 2000 : 1);
    snprintf (interval, sizeof interval, "%d",
              self->timeout_ms / 6000 > 0 ? self->timeout_ms / 6000 : 1);
    const char *keys[] = {"keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "dbname",
                          "fallback_application_name",
                          "client_encoding",
                          "options",
                          NULL};
    const char *values[] = {
        "1",    idle,          interval, "3", ms, self->conninfo, "switchboard-dispatcher",
        "UTF8", self->options, NULL};
    PGconn *conn = PQconnectStartParams (keys, values, 1);
    if (!conn)
        return -1;
    int64_t deadline_us = sb_time_mono_us () + (int64_t) self->timeout_ms * 1000;
    PostgresPollingStatusType state =
        PQstatus (conn) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PGRES_POLLING_WRITING;
    bool late = false;
    while (state == PGRES_POLLING_READING || state == PGRES_POLLING_WRITING) {
        //  The socket may change from one PQconnectPoll to the next.
        int ready = s_poll (conn, state == PGRES_POLLING_READING, state == PGRES_POLLING_WRITING,
                            deadline_us);
        if (ready <= 0) {
            late = ready == 0;
            state = PGRES_POLLING_FAILED;
            break;
        }
        state = PQconnectPoll (conn);
    }
    if (state != PGRES_POLLING_OK || PQsetnonblocking (conn, 1) != 0) {
        char line[512];
        sb_store_line (late ? "no answer within the deadline" : PQerrorMessage (conn), line,
                       sizeof line);
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
    char random[17];
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
    return sb_store_new_idle (conninfo, timeout_ms, 0);
}

sb_store_t *
sb_store_new_idle (const char *conninfo, int timeout_ms, int idle_ms)
{
    sb_store_t *self = calloc (1, sizeof (*self));
    if (!self)
        return NULL;
    self->conninfo = strdup (s_str (conninfo));
    self->healthy = true;  //  so a first failure is logged
    self->window_ms = SB_POLICY_WINDOW_MS;
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : SB_STORE_TIMEOUT_MS;
    self->log_result = (sb_log_every_t) SB_LOG_EVERY (S_LOG_EVERY_MS);
    self->log_timeout = (sb_log_every_t) SB_LOG_EVERY (S_LOG_EVERY_MS);
    self->log_connect = (sb_log_every_t) SB_LOG_EVERY (10 * S_LOG_EVERY_MS);
    self->dropped_log = (sb_log_every_t) SB_LOG_EVERY (S_LOG_EVERY_MS);
    if (s_random_hex (self->instance, (SB_STORE_INSTANCE_SIZE - 1) / 2) != 0) {
        sb_store_destroy (&self);
        return NULL;
    }
    if (self->conninfo)
        self->options = s_options (self->conninfo, self->timeout_ms, idle_ms);
    if (!self->conninfo || !self->options || sb_store_connect (self) != 0) {
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
//  until one deadline, timeout_ms after it began (sb_store_flush).

//  Begin a round trip: send everything queued, reading input meanwhile
//  so the server never blocks on us. 0, or -1 (logged; dropped when late).
int
sb_store_flush (sb_store_t *self)
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
    sb_store_log_result (self, NULL, "send to PostgreSQL");
    return -1;
}

//  Wait, until the round trip's deadline, for PQgetResult to have
//  something without blocking. 0, or -1 (logged; dropped when late).
int
sb_store_await (sb_store_t *self, const char *what)
{
    while (self->conn && PQisBusy (self->conn)) {
        int ready = s_poll (self->conn, true, false, self->deadline_us);
        if (ready == 0) {
            s_timeout (self, what);
            return -1;
        }
        if (ready < 0 || !PQconsumeInput (self->conn)) {
            sb_store_log_result (self, NULL, what);
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
        if (sb_store_await (self, what) != 0) {
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
        sb_store_log_result (self, NULL, what);
    return kept;
}

//  One round trip for what is queued (outside pipeline mode): send it and
//  take every result; the last one, or NULL (logged). Caller PQclears.
static PGresult *
s_finish (sb_store_t *self, const char *what)
{
    return sb_store_flush (self) == 0 ? s_collect (self, false, what) : NULL;
}

//  Run sql (with text parameters, NULL value = SQL NULL; with none, the
//  simple protocol, so sql may hold several statements) in one round
//  trip. The last result (caller PQclears), or NULL (logged).
PGresult *
sb_store_run (sb_store_t *self, const char *sql, int nparams, const char *const *values,
              const char *what)
{
    int sent = !self->conn ? 0
               : nparams ? PQsendQueryParams (self->conn, sql, nparams, NULL, values, NULL, NULL, 0)
                         : PQsendQuery (self->conn, sql);
    if (!sent) {
        sb_store_log_result (self, NULL, what);
        return NULL;
    }
    return s_finish (self, what);
}

//  Run one statement; the result when its status is want (a successful
//  round trip), else NULL (logged).
PGresult *
sb_store_exec (sb_store_t *self, const char *sql, int nparams, const char *const *values,
               ExecStatusType want, const char *what)
{
    self->sqlstate[0] = 0;
    PGresult *r = sb_store_run (self, sql, nparams, values, what);
    if (!r)
        return NULL;
    if (PQresultStatus (r) != want) {
        sb_store_log_result (self, r, what);
        PQclear (r);
        return NULL;
    }
    self->last_ok_us = sb_time_mono_us ();
    return r;
}

//  Run a statement that returns no rows. 0 or -1 (logged).
int
sb_store_exec_ok (sb_store_t *self, const char *sql, const char *what)
{
    PGresult *r = sb_store_exec (self, sql, 0, NULL, PGRES_COMMAND_OK, what);
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
            && sb_store_exec_ok (self, "ROLLBACK", "rollback") == 0)
            return 0;
    }
    if (self->healthy)
        sb_warn (S_MODULE, "connection to PostgreSQL lost, reconnecting");
    self->healthy = false;
    return sb_store_connect (self);
}

int
sb_store_ping (sb_store_t *self)
{
    if (sb_store_ensure (self) != 0)
        return -1;
    PGresult *r = sb_store_exec (self, "SELECT 1", 0, NULL, PGRES_TUPLES_OK, "ping");
    PQclear (r);
    return r ? 0 : -1;
}

//  Prepare the statements on this connection, once.
static int
s_prepare (sb_store_t *self)
{
    if (self->prepared)
        return 0;
    const sb_store_statement_t *lists[] = {sb_store_write_statements, sb_store_outbox_statements};
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++)
        for (const sb_store_statement_t *s = lists[l]; s->name; s++) {
            char what[80];
            snprintf (what, sizeof what, "prepare %s", s->name);
            if (!PQsendPrepare (self->conn, s->name, s->sql, 0, NULL)) {
                sb_store_log_result (self, NULL, what);
                return -1;
            }
            PGresult *r = s_finish (self, what);
            if (!r)
                return -1;
            bool ok = PQresultStatus (r) == PGRES_COMMAND_OK;
            if (!ok)
                sb_store_log_result (self, r, what);
            PQclear (r);
            if (!ok)
                return -1;
        }
    self->prepared = true;
    return 0;
}

//  Connected, idle and prepared; 0 or -1.
int
sb_store_ready (sb_store_t *self)
{
    if (sb_store_ensure (self) != 0)
        return -1;
    return s_prepare (self);
}

//  ---------------------------------------------------------------------
//  Pipeline plumbing

//  The next pipelined statement's result if its status is want (caller
//  PQclears), else NULL (logged unless it was only aborted by an earlier
//  failure). Waits within the round trip's deadline.
PGresult *
sb_store_take (sb_store_t *self, ExecStatusType want, const char *what)
{
    self->sqlstate[0] = 0;
    PGresult *r = s_collect (self, true, what);
    if (!r)
        return NULL;
    if (PQresultStatus (r) != want) {
        if (PQresultStatus (r) != PGRES_PIPELINE_ABORTED)
            sb_store_log_result (self, r, what);
        PQclear (r);
        return NULL;
    }
    return r;
}

//  Leave pipeline mode after a failure: end the pipeline, drop its
//  results, roll back, within one round trip's deadline. A connection that
//  does not come back clean is dropped (sb_store_ensure reconnects).
void
sb_store_pipeline_abort (sb_store_t *self, bool synced)
{
    if (self->conn && PQpipelineStatus (self->conn) != PQ_PIPELINE_OFF) {
        if (!synced && PQstatus (self->conn) == CONNECTION_OK)
            PQpipelineSync (self->conn);
        int nulls = sb_store_flush (self) == 0 ? 0 : 2;
        while (self->conn && PQstatus (self->conn) == CONNECTION_OK && nulls < 2) {
            if (sb_store_await (self, "end of pipeline") != 0)
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
        sb_store_exec_ok (self, "ROLLBACK", "rollback");
}

//  Queue a prepared write statement with a table's arrays as parameters.
int
sb_store_send_table (sb_store_t *self, const char *name, sb_pgarray_table_t *t)
{
    const char *values[SB_PGARRAY_TABLE_MAX];
    int lengths[SB_PGARRAY_TABLE_MAX];
    int formats[SB_PGARRAY_TABLE_MAX];
    for (int i = 0; i < t->ncols; i++) {
        if (sb_pgarray_finish (&t->cols[i]) != 0) {
            sb_error (S_MODULE, "out of memory building statement=%s", name);
            return -1;
        }
        values[i] = (const char *) t->cols[i].data;
        lengths[i] = (int) t->cols[i].size;
        formats[i] = 1;
        if (t->cols[i].size > INT32_MAX) {
            sb_error (S_MODULE, "batch too large statement=%s", name);
            return -1;
        }
    }
    if (!PQsendQueryPrepared (self->conn, name, t->ncols, values, lengths, formats, 0)) {
        sb_store_log_result (self, NULL, name);
        return -1;
    }
    return 0;
}

int
sb_store_send_sql (sb_store_t *self, const char *sql)
{
    if (!PQsendQueryParams (self->conn, sql, 0, NULL, NULL, NULL, NULL, 0)) {
        sb_store_log_result (self, NULL, sql);
        return -1;
    }
    return 0;
}

//  Queue COMMIT and end the pipeline.
int
sb_store_send_commit (sb_store_t *self)
{
    if (sb_store_send_sql (self, "COMMIT"))
        return -1;
    if (!PQpipelineSync (self->conn)) {
        sb_store_log_result (self, NULL, "pipeline sync");
        return -1;
    }
    return 0;
}

//  Take COMMIT's answer and the pipeline's end: true when committed
//  (COMMIT of a transaction that failed answers ROLLBACK); *synced when
//  the end of the pipeline came as expected.
bool
sb_store_take_commit (sb_store_t *self, bool *synced)
{
    *synced = false;
    PGresult *r = sb_store_take (self, PGRES_COMMAND_OK, "commit");
    if (!r)
        return false;
    bool committed = strcmp (PQcmdStatus (r), "COMMIT") == 0;
    PQclear (r);
    r = sb_store_await (self, "end of pipeline") == 0 ? PQgetResult (self->conn) : NULL;
    *synced = r && PQresultStatus (r) == PGRES_PIPELINE_SYNC;
    PQclear (r);
    if (committed)
        self->last_ok_us = sb_time_mono_us ();
    return committed;
}

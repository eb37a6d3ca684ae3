/*  sb_store_retain: the data lifecycle of the store (SB_RETAIN_DAYS; see
    sb_store.h, sb_store_retain_step): rows older than the retention are
    removed in small batches, so PostgreSQL stops growing without a pause
    in the writes and without forgetting what dedupe and the reply policy
    still need.

    DESIGN. A pass walks three tables in turn, events, then messages, then
    the outbox, each in id order from its start: a step reads the next
    `batch` rows by the primary key (WHERE id > last ORDER BY id LIMIT
    batch) and deletes, among them, those created before the cutoff that
    nothing still needs. Ids grow with time (bigserial, created_at is the
    inserting transaction's), so the old rows are the first ones; a table
    is done once a step reads no row older than the cutoff (a few young
    rows among old ones, from transactions that overlapped, do not end
    it), or none at all. No
    index is added for it (each one costs every insert): the walk uses the
    primary key, and when nothing is old a pass costs one statement per
    table reading `batch` index entries. Each step is one statement in a
    transaction of its own, with statement_timeout set for it alone, so a
    step never holds locks or the connection for long; the caller pauses
    between steps. Deleted rows are old: no write of the write path waits
    on their locks, and the write path never waits on a step beyond the
    step's own round trip when they share a connection.

    What stays: every row younger than the cutoff, so the unique keys of
    events still see a provider's retry (Meta retries for days; the
    setting's least value is 7); an event a pending or sending outbox row
    points at (and its request body); a message whose outbox row is
    pending or sending; outbox rows pending or sending. Contacts and their
    identities stay: the WhatsApp window (last_inbound_at) and the opt-out
    are theirs, and cursors and leases are not history. A request body goes
    with its events (events.body_sha256), unless an event kept for an open
    outbox row shares it.

    One pass at a time over all dispatchers: the first step takes a
    session advisory lock ("sbretain") with pg_try_advisory_lock, and the
    last step gives it up. A dispatcher that finds it taken skips its pass
    (busy). A lost connection loses the lock with its session; the next
    step sees another backend (PQbackendPID) and takes the lock again.

    Limits: a row kept because an open outbox row needs it is looked at
    again by every pass until it may go. A delete of rows that another
    transaction locks waits for lock_timeout (the store's deadline): old
    rows are not written by anyone, so it does not happen in practice.
*/
#include "sb_store_internal.h"

#include <stdio.h>
#include <string.h>

//  Session advisory lock held through a pass ("sbretain").
#define S_RETAIN_LOCK "8314333642149161326"

//  Each statement: $1 the last id seen, $2 the batch, $3 the days. Its
//  one row: the highest id read (NULL: none), how many rows read were
//  older than the cutoff, rows deleted, request bodies deleted.
#define S_CUTOFF "now () - $3::int4 * interval '1 day'"
#define S_TAIL                                                                                     \
    " SELECT (SELECT max (id) FROM scan), (SELECT count (*) FROM scan WHERE old),"                 \
    " (SELECT count (*) FROM gone),"

static const char *const s_retain_sql[] = {
    //  1. events no pending or sending outbox row points at, and their
    //  request bodies unless such an event shares them.
    "WITH scan AS (SELECT id, created_at < " S_CUTOFF " AS old FROM events"
    " WHERE id > $1::int8 ORDER BY id LIMIT $2::int4),"
    " busy AS (SELECT event_id FROM outbox WHERE state IN ('pending', 'sending')"
    " AND event_id IS NOT NULL),"
    " gone AS (DELETE FROM events e USING scan s WHERE e.id = s.id AND s.old"
    " AND e.id NOT IN (SELECT event_id FROM busy) RETURNING e.body_sha256),"
    " bodies AS (DELETE FROM request_bodies b"
    " WHERE b.sha256 IN (SELECT body_sha256 FROM gone WHERE body_sha256 IS NOT NULL)"
    " AND b.created_at < " S_CUTOFF " AND NOT EXISTS (SELECT 1 FROM events k"
    " WHERE k.id IN (SELECT event_id FROM busy) AND k.body_sha256 = b.sha256) RETURNING 1)" S_TAIL
    " (SELECT count (*) FROM bodies)",
    //  2. messages, unless their outbox row is pending or sending.
    "WITH scan AS (SELECT id, created_at < " S_CUTOFF " AS old FROM messages"
    " WHERE id > $1::int8 ORDER BY id LIMIT $2::int4),"
    " gone AS (DELETE FROM messages m USING scan s WHERE m.id = s.id AND s.old"
    " AND m.updated_at < " S_CUTOFF " AND NOT EXISTS (SELECT 1 FROM outbox o"
    " WHERE o.id = m.outbox_id AND o.state IN ('pending', 'sending')) RETURNING 1)" S_TAIL " 0",
    //  3. outbox rows finished: sent, failed, dead or never sent.
    "WITH scan AS (SELECT id, created_at < " S_CUTOFF " AS old FROM outbox"
    " WHERE id > $1::int8 ORDER BY id LIMIT $2::int4),"
    " gone AS (DELETE FROM outbox o USING scan s WHERE o.id = s.id AND s.old"
    " AND o.updated_at < " S_CUTOFF " AND o.state IN ('sent', 'failed', 'dead', 'not_sent')"
    " RETURNING 1)" S_TAIL " 0",
};
#define S_TABLES ((int) (sizeof s_retain_sql / sizeof s_retain_sql[0]))

//  End the pass: give up the lock while the session that took it lives.
static void
s_pass_end (sb_store_t *self)
{
    if (self->retain_pid != 0 && self->conn && PQstatus (self->conn) == CONNECTION_OK
        && PQbackendPID (self->conn) == self->retain_pid)
        PQclear (sb_store_exec (self, "SELECT pg_advisory_unlock (" S_RETAIN_LOCK ")", 0, NULL,
                                PGRES_TUPLES_OK, "retention unlock"));
    self->retain_pid = 0;
    self->retain_table = 0;
    self->retain_after = 0;
}

int
sb_store_retain_step (sb_store_t *self, int days, int batch, int deadline_ms,
                      sb_store_retain_t *out)
{
    memset (out, 0, sizeof *out);
    if (days <= 0) {
        out->done = true;
        return 0;
    }
    if (sb_store_ensure (self) != 0)
        return -1;
    if (self->retain_table == 0) {
        self->retain_table = 1;
        self->retain_after = 0;
    }
    char after[24], size[16], ndays[16], timeout[16];
    snprintf (after, sizeof after, "%lld", (long long) self->retain_after);
    snprintf (size, sizeof size, "%d", batch > 0 ? batch : 1);
    snprintf (ndays, sizeof ndays, "%d", days);
    snprintf (timeout, sizeof timeout, "%d", deadline_ms > 0 ? deadline_ms : 1000);
    PGresult *r = NULL;
    int rc = -1;
    if (sb_store_exec_ok (self, "BEGIN", "begin retention") != 0)
        goto done;
    if (self->retain_pid != PQbackendPID (self->conn)) {
        self->retain_pid = 0;
        if (!(r = sb_store_exec (self, "SELECT pg_try_advisory_lock (" S_RETAIN_LOCK ")", 0, NULL,
                                 PGRES_TUPLES_OK, "retention lock")))
            goto done;
        bool got = PQntuples (r) == 1 && strcmp (PQgetvalue (r, 0, 0), "t") == 0;
        PQclear (r);
        if (!got) {
            //  Another dispatcher runs a pass: ours waits for the next.
            if (sb_store_exec_ok (self, "COMMIT", "commit retention") != 0)
                goto done;
            self->retain_table = 0;
            out->busy = out->done = true;
            return 0;
        }
        self->retain_pid = PQbackendPID (self->conn);
    }
    const char *limit[] = {timeout};
    if (!(r = sb_store_exec (self, "SELECT set_config ('statement_timeout', $1, true)", 1, limit,
                             PGRES_TUPLES_OK, "retention deadline")))
        goto done;
    PQclear (r);
    const char *params[] = {after, size, ndays};
    int table = self->retain_table;
    if (!(r = sb_store_exec (self, s_retain_sql[table - 1], 3, params, PGRES_TUPLES_OK,
                             "retention delete")))
        goto done;
    int64_t last = -1, old = 0, gone = 0, bodies = 0;
    if (PQntuples (r) == 1) {
        if (!PQgetisnull (r, 0, 0))
            sb_store_parse_int64 (PQgetvalue (r, 0, 0), &last);
        sb_store_parse_int64 (PQgetvalue (r, 0, 1), &old);
        sb_store_parse_int64 (PQgetvalue (r, 0, 2), &gone);
        sb_store_parse_int64 (PQgetvalue (r, 0, 3), &bodies);
    }
    PQclear (r);
    if (sb_store_exec_ok (self, "COMMIT", "commit retention") != 0)
        goto done;
    rc = 0;
    if (table == 1) {
        out->events = gone;
        out->bodies = bodies;
    }
    else if (table == 2)
        out->messages = gone;
    else
        out->outbox = gone;
    if (last < 0 || old == 0) {
        //  This table is done: the next one from its start.
        self->retain_table++;
        self->retain_after = 0;
    }
    else
        self->retain_after = last;
    if (self->retain_table > S_TABLES) {
        s_pass_end (self);
        out->done = true;
    }
done:
    if (rc != 0) {
        if (self->conn && PQstatus (self->conn) == CONNECTION_OK
            && PQtransactionStatus (self->conn) != PQTRANS_IDLE)
            sb_store_exec_ok (self, "ROLLBACK", "roll back retention");
        s_pass_end (self);
    }
    return rc;
}

/*  sb_store_internal: what the files of the store share, and nothing else
    may use. The store (sb_store.h) is one module in these files:
      sb_store.c            the batch write of events and the cursor
      sb_store_write_sql.c  the batch write's statements
      sb_store_identity.c   the batch write's contact identities
      sb_store_meta.c       the batch write's Meta fields (echoes, preferences)
      sb_store_conn.c       the connection, round trips with deadlines,
                            pipeline plumbing, and the small helpers below
      sb_store_migrate.c    migrations
      sb_store_outbox.c     claims, send results (settle) and reclaim
      sb_store_lease.c      the partitions' leases of several dispatchers
      sb_store_retain.c     the data lifecycle: old rows removed in batches
    They share the store's struct and the helpers declared here; the files
    of the batch write also share sb_store_batch.h. The reply policy is a
    module of its own (sb_policy), as is the binary array encoder of the
    write path (sb_pgarray).
*/
#ifndef SB_STORE_INTERNAL_H_INCLUDED
#define SB_STORE_INTERNAL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "sb_log.h"
#include "sb_pgarray.h"
#include "sb_store.h"

//  Longest value kept in an indexed text column (provider ids, addresses,
//  statuses, ...): far above any real one, and small enough that a key
//  always fits in a btree entry, so no value from outside can make a batch
//  fail for ever.
#define SB_STORE_KEY_MAX 512

//  Claim tokens: a store's instance id is 16 hex digits; a connection's
//  token is the instance id, ".", and 16 more (SB_OUTBOX_TOKEN_SIZE).
#define SB_STORE_INSTANCE_SIZE 17
//  Tokens of dropped connections kept for sb_store_reclaim; past this
//  many the oldest is forgotten (its rows wait for a take-over's recover, sb_store_lease_tick).
#define SB_STORE_DROPPED_MAX 256

struct sb_store_t {
    PGconn *conn;                  //  the connection; NULL once dropped (a deadline passed)
    char *conninfo;                //  copy of the conninfo, for reconnecting
    char *options;                 //  "options" we connect with (theirs + our timeouts)
    bool prepared;                 //  the statements are prepared on conn
    bool healthy;                  //  last state logged, so each change logs once
    int64_t window_ms;             //  WhatsApp window of the last write, for bot replies
    sb_log_every_t settle_log;     //  send results not committed
    sb_log_every_t refused_log;    //  send results the database refused
    sb_log_every_t duplicate_log;  //  provider ids already known
    sb_log_every_t gone_log;       //  results for rows no longer sending
    int timeout_ms;                //  deadline of each round trip (SB_PG_TIMEOUT_MS)
    int64_t deadline_us;           //  monotonic end of the round trip under way
    int64_t last_ok_us;            //  monotonic time of the last successful round trip (0: none)
    sb_log_every_t log_result;     //  failed statements
    sb_log_every_t log_timeout;    //  round trips past their deadline
    sb_log_every_t log_connect;    //  connects failing again
    char sqlstate[6];  //  SQLSTATE of the last failed statement ("": none, or no answer)
    char instance[SB_STORE_INSTANCE_SIZE];  //  random per store: the head of its claim tokens
    char token[SB_OUTBOX_TOKEN_SIZE];       //  claim token of conn (instance.random; "": none)
    char dropped[SB_STORE_DROPPED_MAX][SB_OUTBOX_TOKEN_SIZE];  //  tokens of dropped connections
    size_t dropped_count;        //  used entries of dropped, oldest first
    sb_log_every_t dropped_log;  //  dropped tokens forgotten (the list was full)
    int64_t fenced;              //  send results refused: their row is no longer their claim's
    int64_t many_refused;        //  settle turns whose one SENT statement was refused
    int retain_table;            //  retention: table of the pass under way (0: none)
    int64_t retain_after;        //  retention: the pass's last id seen in that table
    int retain_pid;              //  retention: backend holding the lock (0: none)
    //  The cursor claim this store writes (0013_ingest_cursors.sql): a
    //  row per set of partitions, keyed instance.N (s_claim_key), N new
    //  whenever the set changes, so the claim on partitions given up stays
    //  for their next holder.
    char claim_parts[SB_PARTITIONS + 1];  //  the set of the row written last ("": none yet)
    unsigned claim_gen;                   //  N of that row
};

//  A statement prepared on every connection.
typedef struct {
    const char *name;  //  prepared statement name
    const char *sql;   //  its text
} sb_store_statement_t;

//  The statements sb_store_ready prepares: the write path's
//  (sb_store_write_sql.c) and the outbox's (sb_store_outbox.c), each list
//  ending with {NULL}.
extern const sb_store_statement_t sb_store_write_statements[];
extern const sb_store_statement_t sb_store_outbox_statements[];

//  s, or "" for NULL.
static inline const char *
s_str (const char *s)
{
    return s ? s : "";
}

//  Helpers (sb_store_conn.c).

//  The first line of a libpq message into buf, for one-line logs; buf.
const char *sb_store_line (const char *message, char *buf, size_t size);

//  Log a failed result (NULL: the connection's error) with what we were
//  doing; keeps its SQLSTATE in self->sqlstate.
void sb_store_log_result (sb_store_t *self, const PGresult *result, const char *what);

//  A whole decimal int64 (PQgetvalue, PQcmdTuples): true and *value, or false.
bool sb_store_parse_int64 (const char *text, int64_t *value);

//  A copy of at most max bytes of s as valid UTF-8 (invalid sequences
//  become U+FFFD; cut on a character boundary). Caller frees; NULL when
//  out of memory.
char *sb_store_utf8_dup (const char *s, size_t max);

//  Round trips (sb_store_conn.c): each one has the deadline timeout_ms;
//  past it the connection is dropped and the call fails (logged).

//  (Re)connect within the deadline. 0, or -1 (logged).
int sb_store_connect (sb_store_t *self);

//  Connected, idle and with the statements prepared. 0 or -1.
int sb_store_ready (sb_store_t *self);

//  Begin a round trip: send what is queued. 0, or -1.
int sb_store_flush (sb_store_t *self);

//  Wait, within the round trip's deadline, until PQgetResult would not
//  block. 0, or -1.
int sb_store_await (sb_store_t *self, const char *what);

//  Run sql with text parameters (NULL value: SQL NULL; none: the simple
//  protocol, several statements allowed) in one round trip: its last
//  result, whatever its status (caller PQclears), or NULL.
PGresult *sb_store_run (sb_store_t *self, const char *sql, int nparams, const char *const *values,
                        const char *what);

//  As sb_store_run, the result only when its status is want (a success:
//  counts for sb_store_last_ok_us), else NULL (logged).
PGresult *sb_store_exec (sb_store_t *self, const char *sql, int nparams, const char *const *values,
                         ExecStatusType want, const char *what);

//  Run a statement that returns no rows. 0 or -1.
int sb_store_exec_ok (sb_store_t *self, const char *sql, const char *what);

//  Pipeline mode (sb_store_conn.c): queue statements, end with
//  sb_store_send_commit, sb_store_flush, then take each result in order.

//  Queue a prepared statement with a table's arrays as its parameters.
int sb_store_send_table (sb_store_t *self, const char *name, sb_pgarray_table_t *t);

//  Queue sql, without parameters.
int sb_store_send_sql (sb_store_t *self, const char *sql);

//  Queue COMMIT and the end of the pipeline.
int sb_store_send_commit (sb_store_t *self);

//  The next statement's result when its status is want (caller PQclears),
//  else NULL (logged unless only aborted by an earlier failure).
PGresult *sb_store_take (sb_store_t *self, ExecStatusType want, const char *what);

//  COMMIT's answer and the pipeline's end: true when committed; *synced
//  when the end came as expected.
bool sb_store_take_commit (sb_store_t *self, bool *synced);

//  Leave pipeline mode after a failure and roll back (synced: the end of
//  the pipeline was already queued); a connection not left clean is
//  dropped.
void sb_store_pipeline_abort (sb_store_t *self, bool synced);

#endif

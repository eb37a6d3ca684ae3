/*  sb_store: the dispatcher's PostgreSQL side (libpq). Migrations, the
    batched exactly-once write of events, the contact and message rows they
    imply, the reply decisions written to the outbox in the same
    transaction, the consumer cursor, and the outbox's state changes.

    Exactly once: events are unique by (ingress_id, epoch, seq), by
    (provider, kind, provider_id, status, dedup_detail) when the provider
    gave an id, and by (provider, kind, dedup_detail), a hash of their
    content, when it did not; a replayed or re-sent webhook inserts nothing
    and so decides nothing. All SQL is parameterized.
    One connection, used by one thread. Every round trip (connects too) has
    a deadline, timeout_ms: past it the connection is dropped, the call
    fails, and the next call reconnects.
*/
#ifndef SB_STORE_H_INCLUDED
#define SB_STORE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sb_event.h"
#include "sb_outbox.h"
#include "sb_partition.h"
#include "sb_rules.h"

typedef struct sb_store_t sb_store_t;

//  Default deadline of a round trip (SB_PG_TIMEOUT_MS).
#define SB_STORE_TIMEOUT_MS 5000

//  Connect with a libpq URI or conninfo ("" uses the PG* variables) within
//  timeout_ms (<= 0: SB_STORE_TIMEOUT_MS), the deadline of every round trip
//  after it too. The server is asked for statement_timeout, lock_timeout,
//  TCP keepalives and tcp_user_timeout to match, where conninfo does not
//  set them. NULL when the connection fails (logged). Caller owns the
//  return value.
sb_store_t *sb_store_new (const char *conninfo, int timeout_ms);
void sb_store_destroy (sb_store_t **self_p);

//  sb_store_new, and idle_ms the longest its sessions may stay idle
//  inside a transaction (idle_in_transaction_session_timeout), over
//  DATABASE_URL's own setting (idle_ms 0: as sb_store_new, timeout_ms
//  where DATABASE_URL sets none): a process stopped inside
//  one of its transactions (SIGSTOP, a stalled host) holds that
//  transaction's locks no longer. The delivery actor keeps it under its
//  lease, so a holder stopped inside a lease tick (its partition rows
//  locked) never keeps its partitions from the others past the failover
//  time.
sb_store_t *sb_store_new_idle (const char *conninfo, int timeout_ms, int idle_ms);

//  Reconnect if the connection is bad or was dropped. 0 when usable, -1
//  otherwise (the caller backs off before trying again).
int sb_store_ensure (sb_store_t *self);

//  One round trip (SELECT 1), reconnecting if needed: for readiness when
//  there is nothing else to do. 0 or -1.
int sb_store_ping (sb_store_t *self);

//  Monotonic time (sb_time_mono_us) of the last successful round trip: a
//  connect, a statement, a committed transaction. 0 when none.
int64_t sb_store_last_ok_us (const sb_store_t *self);

//  Whether a last success at last_ok_us (from sb_store_last_ok_us, copied
//  to wherever another thread reads it) is recent enough for PostgreSQL to
//  count as answering: within timeout_ms and one second. A caller with
//  nothing to do pings (sb_store_ping) once its last success is half a
//  second old.
//  Readiness is this age, not a flag: a thread blocked on PostgreSQL cannot
//  clear a flag, but its last success grows old.
bool sb_store_alive (int64_t last_ok_us, int timeout_ms);

//  Apply dir/*.sql not yet in schema_migrations, in name order, each in a
//  transaction, all under a session advisory lock so two dispatchers
//  starting together do not race. 0, or -1 (logged with file and error).
int sb_store_migrate (sb_store_t *self, const char *dir);

//  Where the migrations are when SB_MIGRATIONS_DIR is unset (README,
//  "Configuration"), for a binary built in build_bin_dir: run from there,
//  the source tree's; installed, those beside it (bin/../share/switchboard/
//  migrations, found from its own path, so any install prefix works);
//  without /proc, those under the configured prefix. Writes dir.
void sb_store_migrations_default (char *dir, size_t size, const char *build_bin_dir);

//  The migrations dir holds: the names of its *.sql files without ".sql"
//  (the versions schema_migrations records), sorted. NULL on error
//  (logged). Free with sb_store_migrations_free.
char **sb_store_migrations_list (const char *dir, size_t *count);
void sb_store_migrations_free (char ***names_p, size_t count);

//  What sb_store_write decides with (the reply policy itself: sb_policy).
typedef struct {
    const sb_rules_t *rules;  //  may be NULL: no replies
    int64_t window_ms;        //  WhatsApp free-text window, 24 h
    int64_t now_ms;           //  clock for the window (tests pass their own; 0 = now)
    bool *fresh;              //  optional, one per event: set when it was stored now
                              //  (false: a duplicate), valid when the write succeeds
    bool *publish;            //  optional, one per event: set when its rule asks to
                              //  publish the match (e.g. a verification code)
    char **captured;          //  optional, one per event, NULL before the write: where
                              //  publish is set, what the rule captured (caller frees;
                              //  none left set when the write fails)
    const bool *skip;         //  optional, one per event: its partition is another
                              //  dispatcher's (sb_store_event_partition): not stored
                              //  here, but counted in the cursor, and a request body
                              //  it carries is kept for its request's other events
    const bool *parts;        //  optional, SB_PARTITIONS: the partitions whose events
                              //  the batch stores (none skipped there), which the
                              //  cursor claims (NULL: every partition)
} sb_store_policy_t;

//  What one sb_store_write did, for metrics and the outcome PUB.
typedef struct {
    size_t stored;      //  events inserted
    size_t duplicates;  //  events already there
    size_t replies;     //  outbox rows queued
    size_t not_sent;    //  replies refused (opted out, outside window), recorded
    size_t statuses;    //  outbound messages whose status moved forward
    size_t skipped;     //  events of other dispatchers' partitions (policy->skip)
} sb_store_stats_t;

//  Store count events in ONE transaction, in a few round trips whatever the
//  count (multi-row statements): events, contacts (profile name, last
//  inbound time, opt-out on STOP-like keywords and back on START-like
//  ones), messages (inbound; outbound status moved only forward: queued <
//  sent < delivered < read; failed and undelivered terminal), the rules'
//  replies as outbox rows, and each ingress's cursor (highest seq).
//  0, or -1 when the transaction failed (rolled back: retry the same batch).
int sb_store_write (sb_store_t *self, sb_event_t *const *events, size_t count,
                    const sb_store_policy_t *policy, sb_store_stats_t *stats);

//  Cursors (0013_ingest_cursors.sql). Each batch records its store's
//  claim: every event of its partitions (policy->parts) up to the batch's
//  highest seq per ingress is stored. The cover of a set of partitions
//  (parts, SB_PARTITIONS; NULL: all) in ingress_id's journal is, of all
//  stores' claims, the highest seq known stored for each of them, and the
//  least of those: replaying from *seq + 1 misses nothing of them. In
//  epoch ("" or NULL: the newest a claim names, copied into epoch_out).
//  0 (*seq 0 when none), or -1.
int sb_store_cover (sb_store_t *self, const char *ingress_id, const char *epoch, const bool *parts,
                    uint64_t *seq, char *epoch_out, size_t epoch_size);

//  Remove ingress_id's claims that no cover needs (each dispatcher
//  instance leaves one per set of partitions it stored for, and a restart
//  makes a new instance): those not written for an hour, other than the
//  one this store writes now, whose every partition another claim of the
//  newest epoch covers higher, and those of an older epoch a week old.
//  How many went, or -1.
int sb_store_cursors_prune (sb_store_t *self, const char *ingress_id);

//  The cover of every partition in the newest epoch (sb_store_cover): with
//  one dispatcher, the highest seq stored for ingress_id (0 if none) and
//  its epoch (copied into epoch, "" if none).
int sb_store_cursor (sb_store_t *self, const char *ingress_id, uint64_t *seq, char *epoch,
                     size_t epoch_size);

//  The partition of e's conversation as e itself names it (provider,
//  channel, Meta's account, our number, the contact's address:
//  sb_partition_hash), the key that splits storing among dispatchers.
//  It is the outbox's partition for the replies e causes whenever the
//  store keeps the contact under the address e names (always, but for a
//  Meta user named by a BSUID whose phone number the store knows).
int sb_store_event_partition (const sb_event_t *e);

//  Several dispatchers (docs/internals.md, "Several dispatchers"): the
//  outbox is split into SB_PARTITIONS partitions by conversation, each
//  leased to one store instance at a time; a store claims and records
//  only in the partitions it holds.
typedef struct {
    bool held[SB_PARTITIONS];  //  partitions this store holds after the tick
    int owned;                 //  how many
    int target;                //  its share of the live dispatchers
    int taken;                 //  partitions it took in this tick
    int given;                 //  partitions it gave up in this tick
    int recovered;             //  rows another's claim left "sending", pending again
    size_t live;               //  live dispatchers, this one included
    int64_t epoch_max;         //  highest epoch among the partitions held
} sb_store_lease_t;

//  One tick of the leases, in one transaction: say this store instance
//  (known to people as id) is alive, renew the leases it holds for
//  lease_ms (by the database's clock), take free partitions up to its
//  share or give up its surplus (never one with a row "sending": what the
//  caller holds in memory or in flight), and put back to pending every row
//  "sending" in its partitions that another instance claimed. Call it at
//  least every third of lease_ms. 0 and *lease, or -1 (rolled back; the
//  store holds what it held before, until the leases end).
int sb_store_lease_tick (sb_store_t *self, const char *id, int64_t lease_ms,
                         sb_store_lease_t *lease);

//  On a clean stop: give up every partition holding no row "sending", and
//  leave the registry of live dispatchers. Count given up, or -1.
int sb_store_lease_release (sb_store_t *self);

//  Send results this store could not apply because their row was no
//  longer its claim's (put back or claimed since, or its partition taken
//  over): what fencing stopped. Counted since sb_store_new.
int64_t sb_store_fenced (const sb_store_t *self);

//  Settle turns whose replies SENT the database refused as one statement
//  (a data error), recorded one statement each instead (which finds the
//  row at fault). Counted since sb_store_new.
int64_t sb_store_sent_many_refused (const sb_store_t *self);

//  Data lifecycle (SB_RETAIN_DAYS; sb_store_retain.c): a retention pass
//  walks events, messages and the outbox in id order, batch rows per
//  statement, each statement in a transaction of its own with a deadline
//  of deadline_ms, and removes the rows older than days: events (and
//  their request bodies) no pending or sending outbox row points at,
//  messages whose outbox row is not pending or sending, outbox rows sent,
//  failed, dead or not sent. Contacts stay (the window and the opt-out
//  are theirs). One store at a time runs a pass (a session advisory
//  lock); the others find it busy.
typedef struct {
    int64_t events;    //  rows removed by this step
    int64_t bodies;    //  request bodies removed with their events
    int64_t messages;  //  messages removed
    int64_t outbox;    //  outbox rows removed
    bool done;         //  the pass ended: call again after a long pause
    bool busy;         //  another store runs a pass (done is set too)
} sb_store_retain_t;

//  One statement of the pass under way (a new pass when none is). 0 and
//  *out, or -1 (the pass ends: rolled back, lock given up).
int sb_store_retain_step (sb_store_t *self, int days, int batch, int deadline_ms,
                          sb_store_retain_t *out);

//  How a RETRY is scheduled.
typedef struct {
    int max_attempts;         //  after this many attempts the row is dead
    int64_t backoff_base_ms;  //  first backoff; doubled per attempt, jitter in (0.5, 1]
    int64_t backoff_max_ms;   //  backoff cap (a Retry-After may exceed it)
} sb_store_retry_t;

//  Record sends' outcomes and claim more rows, in one transaction and one
//  round trip. Each result: SENT stores the provider id on the outbox row
//  and the outbound messages row (status queued/sent, or better when its
//  status arrived first); RETRY schedules the next attempt with
//  exponential backoff and jitter (or Retry-After), or marks the row dead
//  after max_attempts (dead[i] true, when dead is not NULL); FINAL marks it
//  failed (and the contact opted out when result->opt_out). A FORWARD with
//  bot text becomes a REPLY row due now. Then up to claim_max due rows are
//  claimed as sb_store_claim does (none when items is NULL). Only rows
//  still sending take a result. A result that cannot be recorded as it is
//  (a provider id already known, an id over-long or not UTF-8, a record
//  the database refuses) is recorded for its row alone, the reason in
//  last_error, and never rolls back the others. Returns the number
//  claimed, or -1 when the database could not be used: nothing more is
//  claimed; record the same results again later (after a backoff).
int sb_store_settle (sb_store_t *self, const sb_send_result_t *results, size_t count,
                     const sb_store_retry_t *retry, bool *dead, size_t claim_max,
                     sb_outbox_item_t **items);

//  Rows left "sending" by a claim whose answer was lost (its round trip
//  passed the deadline, and the server committed it later) go back to
//  pending, except the held ones (in flight or with a result in memory).
//  Only rows claimed on connections this store dropped (their claim
//  tokens): never the live connection's, never another process's, so a
//  reclaim that runs late cannot undo a newer claim. Count or -1.
int sb_store_reclaim (sb_store_t *self, const int64_t *held, size_t count);

//  The outbox's depth: rows pending (due now or later) and sending, for
//  /metrics. 0 or -1.
int sb_store_outbox_depth (sb_store_t *self, int64_t *pending, int64_t *sending);

//  ---- For switchboard console (console/; sb_store_console.c): the reads
//  behind its pages and its two writes. Lists are JSON arrays of objects,
//  newest first, at most limit (1 to 200; else 200) rows with an id below
//  before (0: from the newest). NULL on failure (logged). Caller owns the
//  return value.

//  Longest text of a console reply, in bytes.
#define SB_STORE_CONSOLE_TEXT_MAX 4096

//  An inbound message's event payload (the serialized Event) as the JSON
//  of what a person sees beside its text (media, location, digits), or
//  NULL for nothing. Caller owns the return value.
typedef json_t *sb_store_details_fn (const uint8_t *payload, size_t size);

//  Conversations, one per contact (provider, channel, address), by their
//  newest message, among the newest `window` messages below before (a
//  page costs the window, whatever the table holds). *next is the before
//  of the next page, 0 when no older conversation is left; a page may be
//  short (even empty) with a next when the window held fewer.
json_t *sb_store_console_conversations (sb_store_t *self, int64_t before, int limit, int window,
                                        int64_t *next);

//  One conversation's messages in and out, outbound ones with their status
//  and outbox state, inbound ones with details of their event.
json_t *sb_store_console_messages (sb_store_t *self, const char *provider, const char *channel,
                                   const char *address, int64_t before, int limit,
                                   sb_store_details_fn *details);

//  Outbox rows failed, dead or not sent, with their reason and last error.
json_t *sb_store_console_trouble (sb_store_t *self, int64_t before, int limit);

//  Put failed or dead outbox row id back to pending, due now, attempts
//  reset, its message back to queued; recorded in its last_error. 1 done,
//  0 when no such row is failed or dead, -1 on failure (logged).
int sb_store_console_retry (sb_store_t *self, int64_t id);

//  What a console reply became.
typedef struct {
    bool queued;         //  pending in the outbox
    const char *reason;  //  not queued: why (static; a policy reason, or
                         //  unknown_channel, bad_text, no_conversation)
} sb_store_reply_t;

//  Queue text as a reply in conversation (provider, channel, address), by
//  the rules' policy (sb_policy; window_ms as sb_store_policy_t's). 0 when
//  recorded (queued, or not_sent with the policy's reason, as the rules
//  record theirs), 1 when refused before anything was written (out says
//  why), -1 on failure (logged; nothing written).
int sb_store_console_reply (sb_store_t *self, const char *provider, const char *channel,
                            const char *address, const char *text, int64_t window_ms,
                            sb_store_reply_t *out);

//  ---- For tests: public so the unit tests reach them; no other module
//  calls them. The delivery actor claims and records through
//  sb_store_settle only; the tests take each step alone.

//  Claim up to max due outbox rows (pending, next_attempt <= now, in a
//  partition this store holds, the first open row of its conversation): marks
//  them sending with this connection's claim token (item->claim_token; a
//  result applies only while its row has the token it carries). *items is a new array (free each with sb_outbox_item_free,
//  then the array). Returns the number claimed, or -1.
int sb_store_claim (sb_store_t *self, size_t max, sb_outbox_item_t **items);

//  sb_store_settle of one result, claiming nothing: 0, 1 when a RETRY made
//  the row dead, or -1.
int sb_store_record (sb_store_t *self, const sb_send_result_t *result, int max_attempts,
                     int64_t backoff_base_ms, int64_t backoff_max_ms);

#endif

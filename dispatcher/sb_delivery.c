/*  sb_delivery: the outbox worker of the dispatcher, a czmq actor.

    DESIGN
    One actor thread owns a PostgreSQL connection of its own and the
    sb_sender (libcurl multi). It waits in one poll (zmq_poll) on its pipe,
    the WAKE socket and the sockets libcurl waits on, until libcurl's timer,
    the next periodic claim or, while results wait for PostgreSQL, its next
    try, whichever comes first; the sender then acts on the sockets found
    ready (curl_multi_socket_action). Each turn it records the results of
    the finished transfers (sent, retry later with
    backoff, failed, dead) and claims due outbox rows (pending and
    next_attempt_at <= now, marked sending), as many as the sender has room
    for, in one transaction and one round trip (sb_store_settle); the
    claimed rows go to the sender once that commits. It claims when the
    ingest actor says new rows exist (a WAKE on an inproc PULL), when a
    transfer ends, and every 100 ms for retries that came due. Results that
    cannot be recorded (PostgreSQL down, or refusing them) are kept in
    memory and recorded when it is back, the tries backing off from 100 ms
    to 5 s (one error line a second at most): a row stays "sending" until
    then, and a dispatcher
    that dies meanwhile has it resent by whoever takes its partition
    (sb_store_lease_tick) — the at-most-the-sends-in-flight double send the
    providers' APIs make unavoidable, as they take no idempotency key.

    Several dispatchers (docs/internals.md, "Several dispatchers"). The
    actor holds this dispatcher's share of the outbox's 256 partitions:
    every eighth of SB_DISPATCHER_FAILOVER_MS it runs a lease tick
    (sb_store_lease_tick) on its own connection, renewing its leases for
    three quarters of it, taking or giving up partitions to keep an even
    share among the live dispatchers, and putting back the rows a dead
    holder left "sending" in partitions it takes. A dead dispatcher's
    partitions are free once its leases pass (at most 3/4 of the failover
    time after its last tick) and taken within the next tick of another
    (1/8): within the failover time. Claims take rows of held partitions
    only, and only while the lease runs by PostgreSQL's clock, so a
    dispatcher that stalled past its lease (SIGSTOP, a lost host) claims
    nothing more there; its results are fenced (sb_store_fenced). On a
    clean stop, once its sends are recorded, it gives its partitions up
    at once (sb_store_lease_release).

    Send rates (sb_ratelimit). Rows are claimed as the sender has room,
    but a reply goes out only when its sender's token bucket has a token
    (SB_META_SEND_RATE per Meta phone number id, SB_TWILIO_SEND_RATE per
    Twilio From number) and its (sender, recipient) pair is not backing
    off after Meta's 131056. Until then the claimed row waits in `held`,
    in claim order, still "sending" in PostgreSQL: so it stays the next
    row of its conversation (the claim takes no later row of it while one
    is sending) and a limit never reorders a conversation. Held rows count
    against SB_SEND_CONCURRENCY (a claim asks for the room left after
    them), which bounds them; a sender at its limit may fill that room
    while others wait (their rows claimed as slots free). A 131056 backs
    off the pair alone (6 s doubling to 60 s, sb_ratelimit) and its row's
    retry is scheduled for when the backoff ends; other recipients of the
    same number, and the number's bucket, are untouched. On a clean stop
    held rows are recorded as a retry due at once (an attempt counted),
    so their partitions can be given up. Forwards to bots are not
    limited.

    PostgreSQL: every round trip has a deadline (SB_PG_TIMEOUT_MS); after a
    failure the actor tries again after a backoff (100 ms doubling to 5 s),
    sending meanwhile. Readiness is the age of the last successful round
    trip (sb_store_alive; the claims and the depth refresh are the
    heartbeat), copied to an atomic after each: a hung server fails it
    even while the actor is blocked. A settle given up at its deadline may
    still commit when the server wakes, claiming rows whose answer we never
    saw: after such a failure, once PostgreSQL answers again, rows left
    "sending" that the actor does not hold go back to pending
    (sb_store_reclaim), every second for 2 x SB_PG_TIMEOUT_MS. Only rows
    claimed on connections the store dropped are touched (claim tokens, see
    sb_store), and results carry their claim's token, so a statement that
    runs late never undoes a newer claim.
*/
#include "sb_delivery.h"

#include <assert.h>
#include <czmq.h>
#include <jansson.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sb_event.h"
#include "sb_actor.h"
#include "sb_log.h"
#include "sb_outcome.h"
#include "sb_partition.h"
#include "sb_ratelimit.h"
#include "sb_sender.h"
#include "sb_store.h"

#define S_POLL_MS 100
#define S_PENDING_MAX 4096
#define S_RECORD_BATCH 256         //  send results recorded per transaction
#define S_DB_BACKOFF_MIN_MS 100    //  first wait after a PostgreSQL failure
#define S_DB_BACKOFF_MAX_MS 5000   //  longest
#define S_SOCKETS_MIN 16           //  libcurl sockets the poll has room for at first
#define S_LIMIT_SENDERS 4096       //  token buckets kept (sb_ratelimit)
#define S_LIMIT_PAIRS 16384        //  pair backoffs kept
#define S_META_PAIR_CODE "131056"  //  Meta: (business, consumer) pair rate limit hit

typedef struct {
    sb_delivery_t *shared;      //  the atomics
    const sb_config_t *config;  //  borrowed, immutable
    char *conninfo;             //  DATABASE_URL
    int timeout_ms;             //  SB_PG_TIMEOUT_MS
    char *outcomes;             //  inproc endpoint of the outcome PULL
    char *wake;                 //  inproc endpoint this actor binds for WAKE
    sb_store_retry_t retry;     //  SB_SEND_MAX_ATTEMPTS, SB_SEND_BACKOFF_BASE_MS and _MAX_MS
    sb_metrics_t *metrics;      //  borrowed
    char *dispatcher_id;        //  SB_DISPATCHER_ID: the name its leases and outcomes carry
    int64_t lease_ms;           //  3/4 of SB_DISPATCHER_FAILOVER_MS
    int idle_ms;                //  its connection's idle_in_transaction_session_timeout
    int64_t tick_ms;            //  1/8 of it: how often the leases are renewed
    int64_t meta_rate;          //  SB_META_SEND_RATE (0: none)
    int64_t twilio_rate;        //  SB_TWILIO_SEND_RATE (0: none)
    size_t concurrency;         //  SB_SEND_CONCURRENCY: bound of held plus in flight
} s_args_t;

struct sb_delivery_t {
    zactor_t *actor;             //  the actor thread
    atomic_bool ready;           //  the last PostgreSQL call succeeded
    _Atomic int64_t last_ok_us;  //  monotonic time of the last successful round trip
    sb_partition_set_t held;     //  the partitions held after the last lease tick
    s_args_t *args;              //  what the actor reads
};

//  A reply in flight, by outbox id: what its result's limits need.
typedef struct {
    int64_t id;       //  outbox id
    char *sender;     //  bucket key ("meta:" phone number id, "twilio:" From)
    char *recipient;  //  the contact's address
} s_sent_t;

typedef struct {
    s_args_t *args;
    zsock_t *pipe;               //  to the owner
    zsock_t *wake;               //  WAKE from the ingest actor
    zsock_t *push;               //  outcomes
    zmq_pollitem_t *items;       //  the one poll: pipe, wake, then libcurl's sockets
    struct pollfd *fds;          //  libcurl's sockets as polled, for sb_sender_drive
    size_t items_cap;            //  entries allocated in items and fds
    sb_store_t *store;           //  PostgreSQL
    sb_sender_t *sender;         //  libcurl multi
    sb_send_result_t *pending;   //  results not yet recorded
    size_t pending_count;        //  how many
    bool terminated;             //  $TERM received
    bool db_failing;             //  the last PostgreSQL call failed
    int64_t db_retry_at;         //  monotonic ms before which PostgreSQL is not tried again
    int db_backoff_ms;           //  the next wait after a failure
    bool reclaim;                //  a settle failed: rows may be claimed unseen
    int64_t reclaim_until;       //  monotonic ms when reclaiming stops (0: not begun)
    int64_t next_reclaim;        //  monotonic ms of the next reclaim
    int64_t next_claim;          //  monotonic ms of the next periodic claim
    sb_log_every_t settle_log;   //  failed settles, one line a second
    sb_metric_t *m_sends[4][3];  //  sends by outcome (sent, retry, final) and target
    sb_metric_t *m_dead;         //  rows out of attempts
    sb_metric_t *m_depth[2];     //  outbox rows pending, sending
    sb_metric_t *m_inflight;     //  transfers in flight
    sb_store_lease_t lease;      //  the partitions held, as of the last tick
    int64_t next_tick;           //  monotonic ms of the next lease tick
    int64_t fenced;              //  sb_store_fenced at the last look
    sb_metric_t *m_owned;        //  partitions held
    sb_metric_t *m_target;       //  this dispatcher's share
    sb_metric_t *m_live;         //  live dispatchers
    sb_metric_t *m_epoch;        //  highest epoch among the partitions held
    sb_metric_t *m_ticks[2];     //  lease ticks (renewals) done, failed
    sb_metric_t *m_moves[2];     //  partitions taken, given up
    sb_metric_t *m_recovered;    //  rows another left sending, put back
    sb_metric_t *m_fenced;       //  send results fenced off
    sb_ratelimit_t *limits;      //  buckets per sender, pair backoffs
    sb_outbox_item_t *held;      //  claimed rows waiting for their sender's rate, claim order
    size_t held_count;           //  how many
    bool *held_waited;           //  per held row: its wait was counted in m_waits
    int64_t held_next;    //  monotonic ms when a held row may go (INT64_MAX: none waits on time)
    s_sent_t *sent;       //  replies in flight: their sender and recipient
    size_t sent_count;    //  how many
    sb_metric_t *m_held;  //  rows held back by a limit now
    sb_metric_t *m_waits[2];   //  rows held back: by the sender's rate, by a pair backoff
    sb_metric_t *m_pair_hits;  //  131056 answers (pair backoffs begun)
} self_t;

static const char *s_states[2] = {"pending", "sending"};

static void
s_self_destroy (self_t **self_p)
{
    if (!*self_p)
        return;
    self_t *self = *self_p;
    for (size_t i = 0; i < self->pending_count; i++)
        sb_outbox_result_free (&self->pending[i]);
    free (self->pending);
    for (size_t i = 0; i < self->held_count; i++)
        sb_outbox_item_free (&self->held[i]);
    free (self->held);
    free (self->held_waited);
    for (size_t i = 0; i < self->sent_count; i++) {
        free (self->sent[i].sender);
        free (self->sent[i].recipient);
    }
    free (self->sent);
    sb_ratelimit_destroy (&self->limits);
    sb_sender_destroy (&self->sender);
    sb_store_destroy (&self->store);
    free (self->items);
    free (self->fds);
    zsock_destroy (&self->wake);
    zsock_destroy (&self->push);
    free (self);
    *self_p = NULL;
}

static self_t *
s_self_new (zsock_t *pipe, s_args_t *args)
{
    self_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->args = args;
    self->pipe = pipe;
    self->db_backoff_ms = S_DB_BACKOFF_MIN_MS;
    self->pending = calloc (S_PENDING_MAX, sizeof *self->pending);
    self->held = calloc (args->concurrency, sizeof *self->held);
    self->held_waited = calloc (args->concurrency, sizeof *self->held_waited);
    self->sent = calloc (args->concurrency, sizeof *self->sent);
    self->held_next = INT64_MAX;
    self->limits = sb_ratelimit_new (S_LIMIT_SENDERS, S_LIMIT_PAIRS);
    self->items_cap = 2 + S_SOCKETS_MIN;
    self->items = calloc (self->items_cap, sizeof *self->items);
    self->fds = calloc (self->items_cap, sizeof *self->fds);
    self->settle_log = (sb_log_every_t) SB_LOG_EVERY (1000);
    self->wake = zsock_new (ZMQ_PULL);
    self->push = zsock_new (ZMQ_PUSH);
    if (!self->pending || !self->items || !self->fds || !self->wake || !self->push || !self->held
        || !self->held_waited || !self->sent || !self->limits)
        goto fail;
    if (zsock_bind (self->wake, "%s", args->wake) < 0
        || zsock_connect (self->push, "%s", args->outcomes) < 0)
        goto fail;
    zsock_set_sndhwm (self->push, 100000);
    self->sender = sb_sender_new (args->config);
    if (!self->sender)
        goto fail;
    sb_metrics_t *m = args->metrics;
    static const char *outcomes[4] = {"", "sent", "retry", "final"};
    //  Sends by provider (twilio, meta; "bot" for forwards) and outcome.
    static const char *targets[3] = {"twilio", "meta", "bot"};
    for (int o = 1; o < 4; o++)
        for (int k = 0; k < 3; k++) {
            char labels[64];
            snprintf (labels, sizeof labels, "provider=\"%s\",outcome=\"%s\"", targets[k],
                      outcomes[o]);
            self->m_sends[o][k] = sb_metrics_counter (
                m, "sb_sends_total", "Send attempts by provider (bot: forwards) and outcome",
                labels);
        }
    self->m_dead =
        sb_metrics_counter (m, "sb_sends_dead_total", "Outbox rows that ran out of attempts", NULL);
    for (int s = 0; s < 2; s++) {
        char labels[48];
        snprintf (labels, sizeof labels, "state=\"%s\"", s_states[s]);
        self->m_depth[s] =
            sb_metrics_gauge (m, "sb_outbox_rows", "Outbox rows still to send, by state", labels);
    }
    self->m_inflight = sb_metrics_gauge (m, "sb_sends_in_flight", "HTTP sends in flight", NULL);
    self->m_owned = sb_metrics_gauge (m, "sb_dispatcher_partitions",
                                      "Outbox partitions this dispatcher holds (of 256)", NULL);
    self->m_target = sb_metrics_gauge (m, "sb_dispatcher_partitions_target",
                                       "Its even share of the partitions", NULL);
    self->m_live = sb_metrics_gauge (m, "sb_dispatchers_live",
                                     "Dispatchers alive on this database, this one included", NULL);
    self->m_epoch = sb_metrics_gauge (m, "sb_dispatcher_lease_epoch",
                                      "Highest epoch among the partitions held", NULL);
    static const char *tick_labels[2] = {"result=\"ok\"", "result=\"failed\""};
    static const char *move_labels[2] = {"move=\"taken\"", "move=\"given\""};
    for (int k = 0; k < 2; k++) {
        self->m_ticks[k] = sb_metrics_counter (m, "sb_dispatcher_lease_renewals_total",
                                               "Lease ticks (renewals)", tick_labels[k]);
        self->m_moves[k] = sb_metrics_counter (m, "sb_dispatcher_partition_moves_total",
                                               "Partitions taken and given up", move_labels[k]);
    }
    self->m_recovered =
        sb_metrics_counter (m, "sb_dispatcher_rows_recovered_total",
                            "Rows another dispatcher left sending, put back to pending", NULL);
    self->m_held = sb_metrics_gauge (
        m, "sb_sends_held", "Claimed replies waiting for their sender's send rate or pair backoff",
        NULL);
    self->m_waits[0] =
        sb_metrics_counter (m, "sb_sends_rate_waits_total", "Replies held back a while by a limit",
                            "limit=\"sender_rate\"");
    self->m_waits[1] = sb_metrics_counter (
        m, "sb_sends_rate_waits_total", "Replies held back a while by a limit", "limit=\"pair\"");
    self->m_pair_hits =
        sb_metrics_counter (m, "sb_sends_pair_backoffs_total",
                            "Meta 131056 answers: a (number, recipient) pair backed off", NULL);
    self->m_fenced = sb_metrics_counter (
        m, "sb_send_results_fenced_total",
        "Send results not recorded: their row was no longer this dispatcher's claim", NULL);
    return self;
fail:
    s_self_destroy (&self);
    return NULL;
}

//  Note how the last PostgreSQL call went: readiness, the state change
//  (logged once each way), and the backoff before the next try.
static void
s_self_db_result (self_t *self, bool ok)
{
    if (!ok && !self->db_failing)
        sb_error ("delivery", "PostgreSQL unavailable: sends wait until it is back");
    else if (ok && self->db_failing)
        sb_info ("delivery", "PostgreSQL available again");
    self->db_failing = !ok;
    if (ok)
        self->db_backoff_ms = S_DB_BACKOFF_MIN_MS;
    else {
        self->db_retry_at = zclock_mono () + self->db_backoff_ms;
        self->db_backoff_ms = self->db_backoff_ms * 2 > S_DB_BACKOFF_MAX_MS
                                  ? S_DB_BACKOFF_MAX_MS
                                  : self->db_backoff_ms * 2;
    }
    if (self->store)
        atomic_store (&self->args->shared->last_ok_us, sb_store_last_ok_us (self->store));
    atomic_store (&self->args->shared->ready, ok);
}

//  A usable connection, unless the last failure is too recent. Only a
//  round trip's result (or a failed connect) changes the state.
static bool
s_self_db (self_t *self)
{
    if (self->db_failing && zclock_mono () < self->db_retry_at)
        return false;
    if (!self->store)
        self->store =
            sb_store_new_idle (self->args->conninfo, self->args->timeout_ms, self->args->idle_ms);
    bool ok = self->store && sb_store_ensure (self->store) == 0;
    if (!ok)
        s_self_db_result (self, false);
    return ok;
}

static void
s_self_publish (self_t *self, const sb_send_result_t *r, bool dead)
{
    const char *kind = r->outcome == SB_SEND_SENT    ? "sent"
                       : r->outcome == SB_SEND_FINAL ? "failed"
                       : dead                        ? "dead"
                                                     : "retrying";
    json_t *o = json_pack ("{s:I, s:s, s:i, s:s, s:s, s:s}", "outbox_id", (json_int_t) r->id,
                           "kind", r->kind == SB_OUTBOX_FORWARD ? "forward" : "reply",
                           "http_status", r->http_status, "provider_id",
                           r->provider_id ? r->provider_id : "", "error_code",
                           r->error_code ? r->error_code : "", "error", r->error ? r->error : "");
    sb_outcome_send (self->push, self->args->dispatcher_id, kind, o);
}

//  A reply's bucket key and rate: its Meta phone number id, or its Twilio
//  From number. 0 (no limit) for forwards and for a sender without a rate.
static int64_t
s_self_sender (self_t *self, const sb_outbox_item_t *item, char *key, size_t size)
{
    *key = 0;
    if (item->kind != SB_OUTBOX_REPLY)
        return 0;
    bool meta = item->provider == SB_PROVIDER_META;
    snprintf (key, size, "%s:%s", meta ? "meta" : "twilio",
              meta ? (item->account ? item->account : "") : (item->from ? item->from : ""));
    return meta ? self->args->meta_rate : self->args->twilio_rate;
}

//  A result's limits: a Meta 131056 backs off its pair and puts its retry
//  at the backoff's end; a reply that went through ends its pair's backoff.
static void
s_self_limits_result (self_t *self, sb_send_result_t *result)
{
    size_t i = 0;
    while (i < self->sent_count && self->sent[i].id != result->id)
        i++;
    if (i == self->sent_count)
        return;
    s_sent_t sent = self->sent[i];
    self->sent[i] = self->sent[--self->sent_count];
    if (result->outcome == SB_SEND_SENT)
        sb_ratelimit_pair_ok (self->limits, sent.sender, sent.recipient);
    else if (result->outcome == SB_SEND_RETRY && result->provider == SB_PROVIDER_META
             && result->error_code && strcmp (result->error_code, S_META_PAIR_CODE) == 0) {
        int64_t wait = sb_ratelimit_pair_hit (self->limits, sent.sender, sent.recipient,
                                              result->retry_after_ms, zclock_mono ());
        result->retry_after_ms = wait;
        sb_metric_add (self->m_pair_hits, 1);
        sb_info ("delivery", "pair backs off sender=%s wait_ms=%lld id=%lld", sent.sender,
                 (long long) wait, (long long) result->id);
    }
    free (sent.sender);
    free (sent.recipient);
}

//  Send the held rows whose sender has a token and whose pair is not
//  backing off, in claim order, as the sender has room; note when the
//  first of the others may go.
static void
s_self_release (self_t *self)
{
    int64_t now = zclock_mono ();
    int64_t next = INT64_MAX;
    size_t kept = 0;
    for (size_t i = 0; i < self->held_count; i++) {
        sb_outbox_item_t *item = &self->held[i];
        char key[160];
        int64_t rate = s_self_sender (self, item, key, sizeof key);
        int64_t wait = 0;
        if (sb_sender_room (self->sender) == 0)
            wait = -1;  //  no slot: the next result frees one
        else if (*key && item->provider == SB_PROVIDER_META && item->to) {
            wait = sb_ratelimit_pair_wait (self->limits, key, item->to, now);
            if (wait > 0 && !self->held_waited[i])
                sb_metric_add (self->m_waits[1], 1), self->held_waited[i] = true;
        }
        if (wait == 0 && rate > 0) {
            wait = sb_ratelimit_take (self->limits, key, rate, now);
            if (wait > 0 && !self->held_waited[i])
                sb_metric_add (self->m_waits[0], 1), self->held_waited[i] = true;
        }
        if (wait != 0) {
            if (wait > 0 && now + wait < next)
                next = now + wait;
            self->held_waited[kept] = self->held_waited[i];
            self->held[kept++] = *item;
            continue;
        }
        if (*key && self->sent_count < self->args->concurrency) {
            self->sent[self->sent_count] =
                (s_sent_t){.id = item->id,
                           .sender = strdup (key),
                           .recipient = strdup (item->to ? item->to : "")};
            if (self->sent[self->sent_count].sender && self->sent[self->sent_count].recipient)
                self->sent_count++;
            else {
                free (self->sent[self->sent_count].sender);
                free (self->sent[self->sent_count].recipient);
            }
        }
        sb_sender_submit (self->sender, item);
        sb_outbox_item_free (item);
    }
    self->held_count = kept;
    self->held_next = next;
    sb_metric_set (self->m_held, (int64_t) kept);
}

//  On a clean stop: the held rows become retries due at once, so that
//  their partitions can be given up (the attempt is counted).
static void
s_self_unhold (self_t *self)
{
    for (size_t i = 0; i < self->held_count; i++) {
        sb_outbox_item_t *item = &self->held[i];
        if (self->pending_count == S_PENDING_MAX) {
            sb_outbox_item_free (item);  //  left sending: whoever takes its partition resends it
            continue;
        }
        sb_send_result_t *r = &self->pending[self->pending_count++];
        *r = (sb_send_result_t){.id = item->id,
                                .kind = item->kind,
                                .provider = item->provider,
                                .outcome = SB_SEND_RETRY,
                                .provider_id = strdup (""),
                                .bot_text = strdup (""),
                                .error_code = strdup (""),
                                .error = strdup ("not sent: held back by a send rate when the "
                                                 "dispatcher stopped"),
                                .retry_after_ms = 0};
        snprintf (r->claim_token, sizeof r->claim_token, "%s", item->claim_token);
        sb_outbox_item_free (item);
    }
    self->held_count = 0;
}

static void
s_self_collect (self_t *self)
{
    sb_send_result_t result;
    while (self->pending_count < S_PENDING_MAX
           && sb_sender_next_result (self->sender, &result) == 1) {
        s_self_limits_result (self, &result);
        int o = result.outcome >= 1 && result.outcome <= 3 ? result.outcome : 3;
        int target = result.kind == SB_OUTBOX_FORWARD      ? 2
                     : result.provider == SB_PROVIDER_META ? 1
                                                           : 0;
        sb_metric_add (self->m_sends[o][target], 1);
        self->pending[self->pending_count++] = result;
    }
}

//  Record the results held in memory, oldest first, up to S_RECORD_BATCH
//  at a time, and (when claim) claim as many due rows as the sender has
//  room for: one transaction and one round trip for both (sb_store_settle).
//  Outcomes are published, results dropped and claimed rows handed to the
//  sender only once that commit succeeded; on failure the same results
//  are recorded again later.
static void
s_self_settle (self_t *self, bool claim)
{
    for (;;) {
        size_t n = self->pending_count < S_RECORD_BATCH ? self->pending_count : S_RECORD_BATCH;
        //  Held rows take their slots too (see the note above).
        size_t slots = sb_sender_room (self->sender);
        slots = slots > self->held_count ? slots - self->held_count : 0;
        size_t room = claim && self->pending_count - n <= S_PENDING_MAX / 2 ? slots : 0;
        if ((n == 0 && room == 0) || !s_self_db (self))
            return;
        bool dead[S_RECORD_BATCH];
        sb_outbox_item_t *items = NULL;
        int claimed =
            sb_store_settle (self->store, self->pending, n, &self->args->retry, dead, room, &items);
        s_self_db_result (self, claimed >= 0);
        if (claimed < 0) {
            //  s_self_db_result backed off (100 ms doubling to 5 s): a
            //  failure that repeats must not make a loop of it.
            sb_log_every (&self->settle_log, SB_LOG_ERROR, "delivery",
                          "send results not recorded, trying again results=%zu in_ms=%lld", n,
                          (long long) (self->db_retry_at - zclock_mono ()));
            self->reclaim = true;
            self->reclaim_until = 0;
            return;
        }
        for (size_t i = 0; i < n; i++) {
            if (dead[i])
                sb_metric_add (self->m_dead, 1);
            s_self_publish (self, &self->pending[i], dead[i]);
            sb_outbox_result_free (&self->pending[i]);
        }
        memmove (self->pending, self->pending + n,
                 (self->pending_count - n) * sizeof *self->pending);
        self->pending_count -= n;
        //  Claimed rows go out through the limits, in claim order.
        for (int i = 0; i < claimed; i++) {
            if (self->held_count < self->args->concurrency) {
                self->held_waited[self->held_count] = false;
                self->held[self->held_count++] = items[i];
            }
            else {
                sb_sender_submit (self->sender, &items[i]);  //  not reached: room bounds it
                sb_outbox_item_free (&items[i]);
            }
        }
        free (items);
        s_self_release (self);
        if (room > 0)
            claim = false;  //  claimed once: the next claim waits for a reason
        if (self->pending_count == 0)
            return;
    }
}

//  Put rows a lost settle claimed back to pending (see the note above).
static void
s_self_reclaim (self_t *self)
{
    int64_t now = zclock_mono ();
    if (!self->reclaim || self->db_failing || !self->store || now < self->next_reclaim)
        return;
    if (self->reclaim_until == 0)
        self->reclaim_until = now + 2 * (int64_t) self->args->timeout_ms;
    size_t cap = self->pending_count + self->held_count + sb_sender_held (self->sender, NULL, 0);
    int64_t *held = malloc ((cap ? cap : 1) * sizeof *held);
    if (!held)
        return;
    size_t n = 0;
    for (; n < self->pending_count; n++)
        held[n] = self->pending[n].id;
    for (size_t i = 0; i < self->held_count; i++)
        held[n++] = self->held[i].id;
    n += sb_sender_held (self->sender, held + n, cap - n);
    int rc = sb_store_reclaim (self->store, held, n);
    free (held);
    s_self_db_result (self, rc >= 0);
    self->next_reclaim = now + 1000;
    if (rc >= 0 && now >= self->reclaim_until)
        self->reclaim = false;
}

//  The lease tick, when due (see the note above); its figures to /metrics.
static void
s_self_lease (self_t *self)
{
    int64_t now = zclock_mono ();
    if (now < self->next_tick || !s_self_db (self))
        return;
    sb_store_lease_t lease;
    int rc =
        sb_store_lease_tick (self->store, self->args->dispatcher_id, self->args->lease_ms, &lease);
    //  A tick that fails is PostgreSQL failing; one that works says nothing
    //  of the sends' statements (a lock on events holds a settle, not a
    //  tick): only a claim or a settle that works declares PostgreSQL back,
    //  so the state does not flap while the sends still wait.
    if (rc != 0)
        s_self_db_result (self, false);
    sb_metric_add (self->m_ticks[rc == 0 ? 0 : 1], 1);
    //  A failed tick is tried again after the backoff, at most a tick later.
    self->next_tick = now + (rc == 0 ? self->args->tick_ms : S_DB_BACKOFF_MIN_MS);
    if (rc != 0)
        return;
    if (lease.taken || lease.given || lease.recovered || lease.owned != self->lease.owned
        || lease.live != self->lease.live)
        sb_info ("delivery",
                 "partitions held=%d share=%d live=%zu taken=%d given=%d rows_recovered=%d "
                 "epoch=%lld",
                 lease.owned, lease.target, lease.live, lease.taken, lease.given, lease.recovered,
                 (long long) lease.epoch_max);
    if (lease.recovered > 0)
        sb_warn ("delivery",
                 "rows another dispatcher left sending are pending again rows=%d (a reply may "
                 "go out twice)",
                 lease.recovered);
    self->lease = lease;
    sb_partition_set_store (&self->args->shared->held, lease.held);
    sb_metric_set (self->m_owned, lease.owned);
    sb_metric_set (self->m_target, lease.target);
    sb_metric_set (self->m_live, (int64_t) lease.live);
    sb_metric_set (self->m_epoch, lease.epoch_max);
    sb_metric_add (self->m_moves[0], lease.taken);
    sb_metric_add (self->m_moves[1], lease.given);
    sb_metric_add (self->m_recovered, lease.recovered);
}

static void
s_self_refresh_depth (self_t *self)
{
    int64_t depth[2];
    if (!self->store || self->db_failing)
        return;
    bool ok = sb_store_outbox_depth (self->store, &depth[0], &depth[1]) == 0;
    s_self_db_result (self, ok);
    for (int s = 0; ok && s < 2; s++)
        sb_metric_set (self->m_depth[s], depth[s]);
}

//  The actor's one poll: the pipe, the WAKE socket and libcurl's sockets,
//  until `until` (monotonic ms) or libcurl's timer, whichever comes first;
//  then the sender acts on what it found. True when a WAKE came.
static bool
s_self_poll (self_t *self, int64_t until)
{
    size_t count;
    const struct pollfd *sockets = sb_sender_sockets (self->sender, &count);
    if (2 + count > self->items_cap) {
        size_t cap = 2 + count + S_SOCKETS_MIN;
        zmq_pollitem_t *items = realloc (self->items, cap * sizeof *items);
        if (items)
            self->items = items;
        struct pollfd *fds = realloc (self->fds, cap * sizeof *fds);
        if (fds)
            self->fds = fds;
        if (items && fds)
            self->items_cap = cap;
        else {
            //  Poll the sockets that fit; libcurl's timer bounds the wait.
            sb_error ("delivery", "out of memory polling sockets=%zu", count);
            count = self->items_cap - 2;
        }
    }
    self->items[0] = (zmq_pollitem_t){.socket = zsock_resolve (self->pipe), .events = ZMQ_POLLIN};
    self->items[1] = (zmq_pollitem_t){.socket = zsock_resolve (self->wake), .events = ZMQ_POLLIN};
    for (size_t i = 0; i < count; i++) {
        self->fds[i] = sockets[i];
        self->items[2 + i] =
            (zmq_pollitem_t){.fd = sockets[i].fd,
                             .events = (short) ((sockets[i].events & POLLIN ? ZMQ_POLLIN : 0)
                                                | (sockets[i].events & POLLOUT ? ZMQ_POLLOUT : 0))};
    }
    int64_t timeout = until - zclock_mono ();
    int timer = sb_sender_timeout (self->sender);
    if (timer >= 0 && timer < timeout)
        timeout = timer;
    if (timeout < 0)
        timeout = 0;
    int rc = zmq_poll (self->items, (int) (2 + count), (long) timeout);
    if (rc < 0 && zmq_errno () == ETERM)
        self->terminated = true;
    for (size_t i = 0; i < count; i++) {
        short revents = rc > 0 ? self->items[2 + i].revents : 0;
        self->fds[i].revents =
            (short) ((revents & ZMQ_POLLIN ? POLLIN : 0) | (revents & ZMQ_POLLOUT ? POLLOUT : 0)
                     | (revents & ZMQ_POLLERR ? POLLERR : 0));
    }
    sb_sender_drive (self->sender, self->fds, count);
    if (rc > 0 && (self->items[0].revents & ZMQ_POLLIN))
        self->terminated = sb_actor_pipe_says_stop (self->pipe, "delivery");
    if (rc <= 0 || !(self->items[1].revents & ZMQ_POLLIN))
        return false;
    //  Take every WAKE waiting: one claim answers them all.
    do {
        char *wake = zstr_recv (self->wake);
        zstr_free (&wake);
    } while (zsock_events (self->wake) & ZMQ_POLLIN);
    return true;
}

static void
s_delivery_actor (zsock_t *pipe, void *arg)
{
    s_args_t *args = (s_args_t *) arg;
    self_t *self = s_self_new (pipe, args);
    sb_actor_started (pipe, self != NULL);
    if (!self)
        return;
    s_self_lease (self);
    int64_t next_depth = 0;
    bool claim = true;
    while (!self->terminated) {
        int64_t now = zclock_mono ();
        if (now >= self->next_claim)
            claim = true;  //  retries that came due
        size_t before = self->pending_count;
        s_self_collect (self);
        if (self->pending_count > before)
            claim = true;  //  a slot opened
        if (claim || self->pending_count > 0) {
            if (claim)
                self->next_claim = now + S_POLL_MS;
            s_self_settle (self, claim);
            claim = false;
        }
        s_self_reclaim (self);
        s_self_lease (self);
        if (self->store && sb_store_fenced (self->store) != self->fenced) {
            sb_metric_add (self->m_fenced, sb_store_fenced (self->store) - self->fenced);
            self->fenced = sb_store_fenced (self->store);
        }
        if (now >= next_depth) {
            s_self_refresh_depth (self);
            next_depth = now + 1000;
        }
        if (self->held_count > 0)
            s_self_release (self);
        sb_metric_set (self->m_inflight, (int64_t) sb_sender_in_flight (self->sender));
        //  Wait for the pipe, a WAKE or libcurl: until the next periodic
        //  claim, or while results wait for PostgreSQL, its next try.
        int64_t until = self->pending_count == 0 ? self->next_claim
                        : self->db_failing       ? self->db_retry_at
                                                 : 0;
        if (self->next_tick < until)
            until = self->next_tick;
        if (self->held_count > 0 && self->held_next < until)
            until = self->held_next;
        if (s_self_poll (self, until))
            claim = true;
    }
    //  Rows held back by a limit are not sent now; transfers in flight
    //  finish (bounded by their timeouts); all are recorded.
    s_self_unhold (self);
    int64_t deadline = zclock_mono () + 5000;
    while (sb_sender_in_flight (self->sender) > 0 && zclock_mono () < deadline) {
        sb_sender_perform (self->sender, 50);
        s_self_collect (self);
        s_self_settle (self, false);
    }
    s_self_collect (self);
    self->db_retry_at = 0;  //  one last try, backoff or not
    s_self_settle (self, false);
    if (self->pending_count || sb_sender_in_flight (self->sender))
        sb_warn ("delivery", "stopping with results=%zu unrecorded and sends=%zu in flight",
                 self->pending_count, sb_sender_in_flight (self->sender));
    //  The partitions with nothing left "sending" go to the others now,
    //  not when their leases pass.
    if (self->store && !self->db_failing) {
        int given = sb_store_lease_release (self->store);
        if (given >= 0)
            sb_info ("delivery", "partitions given up on stopping count=%d", given);
    }
    s_self_destroy (&self);
}

static void
s_args_destroy (s_args_t **args_p)
{
    s_args_t *args = *args_p;
    if (!args)
        return;
    free (args->conninfo);
    free (args->outcomes);
    free (args->wake);
    free (args->dispatcher_id);
    free (args);
    *args_p = NULL;
}

sb_delivery_t *
sb_delivery_new (const sb_config_t *config, sb_metrics_t *metrics, const char *outcomes_endpoint,
                 const char *wake_endpoint, const char *dispatcher_id)
{
    sb_delivery_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    atomic_init (&self->ready, false);
    atomic_init (&self->last_ok_us, 0);
    atomic_init (&self->held.known, false);
    s_args_t *args = self->args = calloc (1, sizeof *args);
    if (!args)
        goto fail;
    args->shared = self;
    args->config = config;
    args->conninfo = strdup (sb_config_str (config, SB_CFG_DATABASE_URL));
    args->timeout_ms = (int) sb_config_int (config, SB_CFG_SB_PG_TIMEOUT_MS);
    args->outcomes = strdup (outcomes_endpoint);
    args->wake = strdup (wake_endpoint);
    args->retry.max_attempts = (int) sb_config_int (config, SB_CFG_SB_SEND_MAX_ATTEMPTS);
    args->retry.backoff_base_ms = sb_config_int (config, SB_CFG_SB_SEND_BACKOFF_BASE_MS);
    args->retry.backoff_max_ms = sb_config_int (config, SB_CFG_SB_SEND_BACKOFF_MAX_MS);
    args->metrics = metrics;
    args->dispatcher_id = strdup (dispatcher_id);
    int64_t failover = sb_config_int (config, SB_CFG_SB_DISPATCHER_FAILOVER_MS);
    args->lease_ms = failover * 3 / 4;
    //  Stopped inside a lease tick, this dispatcher holds its partition
    //  rows locked, and the others' takes skip locked rows: its session
    //  must end before its lease does, or the failover waits for it.
    args->idle_ms =
        (int) (args->lease_ms / 2 < args->timeout_ms ? args->lease_ms / 2 : args->timeout_ms);
    args->tick_ms = failover / 8;
    args->meta_rate = sb_config_int (config, SB_CFG_SB_META_SEND_RATE);
    args->twilio_rate = sb_config_int (config, SB_CFG_SB_TWILIO_SEND_RATE);
    args->concurrency = (size_t) sb_config_int (config, SB_CFG_SB_SEND_CONCURRENCY);
    if (args->concurrency == 0)
        args->concurrency = 1;
    if (!args->conninfo || !args->outcomes || !args->wake || !args->dispatcher_id)
        goto fail;
    self->actor = sb_actor_new (s_delivery_actor, args);
    if (!self->actor)
        goto fail;
    return self;
fail:
    sb_delivery_destroy (&self);
    return NULL;
}

void
sb_delivery_destroy (sb_delivery_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    sb_delivery_t *self = *self_p;
    zactor_destroy (&self->actor);
    s_args_destroy (&self->args);
    free (self);
    *self_p = NULL;
}

bool
sb_delivery_ready (const sb_delivery_t *self)
{
    sb_delivery_t *me = (sb_delivery_t *) self;
    return atomic_load (&me->ready)
           && sb_store_alive (atomic_load (&me->last_ok_us), me->args->timeout_ms);
}

const sb_partition_set_t *
sb_delivery_partitions (const sb_delivery_t *self)
{
    return &self->held;
}

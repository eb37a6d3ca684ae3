/*  sb_ingest: subscriber, replay consumer and batched store writer of the
    dispatcher.

    DESIGN
    One actor thread owns the SUB socket, one DEALER per ingress replay
    endpoint (SB_INGRESS_REPLAY) and one PostgreSQL connection. When a
    socket is readable it takes every event already waiting, up to
    SB_BATCH_MAX: under load that is a full batch, when idle it is one
    event, and no timer ever holds an event back to fill a batch. The batch
    is stored in one transaction (sb_store_write), which also moves each
    ingress's cursor. If that fails, the batch is kept and retried with
    exponential backoff (100 ms to 5 s) while the actor stops reading every
    socket: ZeroMQ's queues hold what arrives meanwhile (SB_QUEUE_MAX on
    SUB, the credit window on each DEALER), past that the ingress's PUB
    drops for us and its journal keeps everything for a replay. Nothing
    received is thrown away. State changes are logged once each.

    Readiness is the age of the last successful PostgreSQL round trip
    (sb_store_alive), which the actor copies to an atomic after each
    store call: every round trip has a deadline (SB_PG_TIMEOUT_MS), and
    when idle the actor pings every S_PING_MS, so a hung server makes
    /readyz fail within the deadline and a second even while the actor is
    blocked on it.

    Replay (proto/README.md). Each replay endpoint is a source. At start
    the actor says HELLO; the WELCOME names the ingress id and journal
    epoch; the store's cursor for that id gives the first seq not stored
    (cursor + 1, or 1 when the cursor is of another epoch), and the actor
    asks a replay from there. From then on, per source, next_seq is the one
    seq it will accept next, from the live stream or from a replay,
    whichever brings it first:
      - seq < next_seq: a duplicate (replay overlapping live), dropped;
      - seq = next_seq: accepted into the batch;
      - a live seq > next_seq: a gap (the PUB dropped events): the event
        waits in a bounded queue of events ahead (2 credit windows, at most
        S_AHEAD_MAX_BYTES), and a replay is asked from next_seq unless one
        is running; once the replay reaches the queued events they are
        accepted in order and, if the queue did not overflow, the replay is
        cancelled: live again;
      - a replayed seq > next_seq: the journal itself lacks those records
        (damaged and skipped by the reader): counted, logged, accepted.
    So each source's events enter the batch gapless and in order, and the
    stored cursor (the highest seq stored) never passes an event not
    stored: a restart replays exactly what is missing. A live event of
    another epoch makes the actor say HELLO at once; a WELCOME or START of
    a new epoch restarts the source at seq 1 of that epoch. A HELLO every
    second is also the heartbeat: when the ingress has committed past
    next_seq and nothing arrived for a second, the tail of the live stream
    was lost and a replay fetches it. A replay silent for 10 s is asked
    again. After each stored batch, and with each heartbeat, the actor
    acknowledges the last stored seq (ACK), for the ingress's lag metrics.

    Flow control: a replay starts with a credit window of 2 x SB_BATCH_MAX
    records (64 to SB_REPLAY_CREDIT_MAX) and the actor grants the records
    it took back once half a window was taken, so at most one window per
    source is queued in memory, and none is taken while the batch is full
    or PostgreSQL is down.

    Without replay endpoints (SB_INGRESS_REPLAY unset and SB_INGRESS_PUB
    not the default), every live event is stored as it comes and gaps are
    not repaired (logged at start). Live events from an ingress id no
    replay endpoint named are dropped during the first 10 s (the replay
    will bring them once its WELCOME arrives), stored as they come after.

    Retention (SB_RETAIN_DAYS, sb_store_retain_step): the actor runs the
    data lifecycle on its own connection, one small statement at a time
    between batches (a pass every S_RETAIN_EVERY_MS, its steps
    S_RETAIN_PAUSE_MS apart), so a step delays the next batch by one
    bounded statement at most and runs under load too.

    Storing split among dispatchers (docs/internals.md, "Several
    dispatchers"). With replay endpoints the actor stores only the events
    of the partitions its dispatcher holds (the delivery actor's lease
    ticks publish them: sb_partition_set_t), skipping the others' and
    keeping the skipped ones in memory (`kept`, at most S_KEPT_MAX events
    and S_AHEAD_MAX_BYTES, the oldest dropped first); each batch's cursor
    claims the partitions it stored (sb_store_cover). A source starts once
    the first tick said which partitions are held, from their cover. A
    partition taken over is stored from its cover on: its kept events
    first, in the order they came, or, when `kept` lacks some, a replay of
    the journal from the cover.

    Limits: an event that does not decode is logged and counted, not
    stored. The consumer id is "dispatcher": several dispatchers are one
    consumer for the lag metrics.
*/
#include "sb_ingest.h"

#include <assert.h>
#include <czmq.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "sb_event.h"
#include "sb_actor.h"
#include "sb_log.h"
#include "sb_outcome.h"
#include "sb_replay.h"
#include "sb_store.h"
#include "sb_time.h"

#define S_BACKOFF_MIN_MS 100
#define S_BACKOFF_MAX_MS 5000
#define S_CONSUMER_ID "dispatcher"
#define S_HEARTBEAT_MS 1000       //  HELLO (and ACK) to each ingress
#define S_STALL_MS 10000          //  a replay silent this long is asked again
#define S_RETRY_MS 1000           //  wait after a replay that ended in error or busy
#define S_UNKNOWN_GRACE_MS 10000  //  drop events of unknown ingresses this long after start
#define S_EPOCH_HELLO_MS 200      //  least time between HELLOs caused by foreign epochs
#define S_AHEAD_MAX_BYTES (64u * 1024 * 1024)  //  live events held ahead, per ingress
#define S_KEPT_MAX 65536                       //  skipped events kept for a take-over
#define S_PING_MS 500                          //  idle: a round trip this often, for readiness
#define S_RETAIN_FIRST_MS 2000                 //  first retention pass this long after start
#define S_RETAIN_EVERY_MS 60000                //  then a pass this often
#define S_RETAIN_PAUSE_MS 50                   //  between the steps of a pass
#define S_RETAIN_BATCH 1000                    //  rows a step reads
#define S_RETAIN_DEADLINE_MS 1000  //  a step's statement_timeout (at most half SB_PG_TIMEOUT_MS)

//  What the actor needs, copied at start.
typedef struct {
    sb_ingest_t *shared;                //  the atomics
    char *conninfo;                     //  DATABASE_URL
    int timeout_ms;                     //  SB_PG_TIMEOUT_MS
    char *endpoints;                    //  SB_INGRESS_PUB
    char *replay;                       //  SB_INGRESS_REPLAY ("" for none)
    char *outcomes;                     //  inproc endpoint of the outcome PULL
    char *wake;                         //  inproc endpoint of the sender's wake PULL
    const sb_zmq_security_t *security;  //  borrowed: CURVE client keys
    size_t batch_max;                   //  SB_BATCH_MAX
    int queue_max;                      //  SB_QUEUE_MAX: SUB receive high-water mark
    const sb_rules_t *rules;            //  borrowed, immutable
    sb_metrics_t *metrics;              //  borrowed
    char *dispatcher_id;                //  SB_DISPATCHER_ID, for the outcomes
    int retain_days;                    //  SB_RETAIN_DAYS (0: keep everything)
    const sb_partition_set_t *held;     //  borrowed: the partitions the delivery actor holds
} s_args_t;

struct sb_ingest_t {
    zactor_t *actor;             //  the actor thread
    atomic_bool ready;           //  the last write (or ping) succeeded
    _Atomic int64_t last_ok_us;  //  monotonic time of the last successful round trip
    s_args_t *args;              //  what the actor reads; lives as long as it
};

//  Live events ahead of a source's next_seq, ascending (a ring).
typedef struct {
    sb_event_t **items;  //  cap slots
    size_t *sizes;       //  encoded size of each
    size_t cap;          //  capacity
    size_t head;         //  index of the oldest
    size_t count;        //  events held
    size_t bytes;        //  their encoded sizes, at most S_AHEAD_MAX_BYTES
} s_fifo_t;

typedef enum {
    S_HELLO,      //  waiting for a WELCOME
    S_REPLAYING,  //  a replay (replay_id) is running
    S_LIVE,       //  following the live stream
} s_state_t;

//  One ingress, reached on its replay endpoint.
typedef struct {
    char *endpoint;                         //  its SB_REPLAY
    zsock_t *dealer;                        //  connected to it
    s_state_t state;                        //  see above
    bool known;                             //  a WELCOME named ingress_id and epoch
    bool positioned;                        //  next_seq is valid (read from the cursor)
    char ingress_id[SB_REPLAY_ID_MAX + 1];  //  from the WELCOME
    char epoch[SB_REPLAY_EPOCH_MAX + 1];    //  the epoch next_seq belongs to
    uint64_t next_seq;                      //  the seq accepted next
    uint64_t stored_seq;                    //  last seq stored in PostgreSQL
    uint64_t acked_seq;                     //  last seq acknowledged to the ingress
    uint64_t replay_id;                     //  the running replay (S_REPLAYING)
    uint64_t consumed;                      //  records taken since credit was last granted
    bool cancelled;                         //  CANCEL sent for the running replay
    bool need_replay;                       //  a replay must be asked (after replay_after_ms)
    int64_t replay_after_ms;                //  not before this time
    int64_t heard_ms;                       //  last message from the ingress
    int64_t hello_ms;                       //  last HELLO sent
    uint64_t check_seq;   //  next_seq when the heartbeat first saw the ingress ahead
    int64_t check_ms;     //  and when
    s_fifo_t ahead;       //  live events ahead of next_seq
    bool ahead_overflow;  //  live events were dropped: the queue was full
    uint64_t kept_from;   //  every event of it skipped from this seq on is in `kept`
} s_source_t;

typedef struct {
    s_args_t *args;
    zsock_t *pipe;               //  to the owner
    zsock_t *sub;                //  events from the ingresses
    zsock_t *push;               //  outcomes
    zsock_t *wake;               //  tells the sender the outbox has new rows
    zpoller_t *poller;           //  pipe + sub + dealers
    sb_store_t *store;           //  PostgreSQL
    sb_event_t **batch;          //  events taken, not yet stored
    bool *fresh;                 //  per event of the batch: stored now (not a duplicate)
    bool *skip;                  //  per event of the batch: another dispatcher's partition
    bool mine[SB_PARTITIONS];    //  the partitions whose events this actor stores
    int nmine;                   //  how many
    bool held_known;             //  the delivery actor has told them once
    s_fifo_t kept;               //  skipped events, oldest first, for a take-over
    s_fifo_t taken;              //  kept events of partitions taken over, to store first
    bool *publish;               //  per event of the batch: its rule asks to publish it
    char **captured;             //  per event of the batch: what that rule captured (owned)
    size_t count;                //  how many
    bool terminated;             //  $TERM received
    bool failing;                //  the last write failed
    int backoff_ms;              //  current retry delay
    s_source_t *sources;         //  one per replay endpoint
    size_t nsources;             //  how many (0: no replay)
    uint32_t window;             //  credit window per replay
    uint64_t replay_ids;         //  source of replay ids
    int64_t started_ms;          //  actor start (monotonic)
    int64_t next_tick_ms;        //  next heartbeat
    int64_t next_retain_ms;      //  next retention step (SB_RETAIN_DAYS > 0)
    bool cursor_failed;          //  a cursor read failed (logged once)
    sb_metric_t *m_stored;       //  events stored
    sb_metric_t *m_duplicates;   //  events already stored
    sb_metric_t *m_replies;      //  outbox rows queued
    sb_metric_t *m_not_sent;     //  replies refused
    sb_metric_t *m_statuses;     //  outbound statuses moved forward
    sb_metric_t *m_undecodable;  //  frames that were not Events
    sb_metric_t *m_batch;        //  batch sizes
    sb_metric_t *m_latency;      //  PostgreSQL write latency
    sb_metric_t *m_failures;     //  failed writes
    sb_metric_t *m_queue;        //  events held in memory
    sb_metric_t *m_replays;      //  replays asked
    sb_metric_t *m_replayed;     //  records received by replay
    sb_metric_t *m_gaps;         //  gaps found in the live stream
    sb_metric_t *m_overlap;      //  events dropped as already taken (replay and live overlap)
    sb_metric_t *m_lost;         //  records the journal could not give
    sb_metric_t *m_waiting;      //  live events dropped while the source was not positioned
    sb_metric_t *m_retained[4];  //  rows removed by retention: events, bodies, messages, outbox
    sb_metric_t *m_skipped;      //  events of partitions other dispatchers hold
    sb_metric_t *m_mine;         //  partitions whose events are stored here
    sb_metric_t *m_rewinds;      //  replays asked for partitions taken over
    sb_metric_t *m_restored;     //  kept events stored after a take-over
} self_t;

//  ---------------------------------------------------------------------
//  Events ahead

static sb_event_t *
s_fifo_head (s_fifo_t *fifo)
{
    return fifo->count ? fifo->items[fifo->head] : NULL;
}

static sb_event_t *
s_fifo_pop (s_fifo_t *fifo)
{
    if (!fifo->count)
        return NULL;
    sb_event_t *event = fifo->items[fifo->head];
    fifo->items[fifo->head] = NULL;
    fifo->bytes -= fifo->sizes[fifo->head];
    fifo->head = (fifo->head + 1) % fifo->cap;
    fifo->count--;
    return event;
}

//  Takes the event (size bytes on the wire); false (event untouched)
//  when full.
static bool
s_fifo_push (s_fifo_t *fifo, sb_event_t *event, size_t size)
{
    if (fifo->count == fifo->cap || size > S_AHEAD_MAX_BYTES - fifo->bytes)
        return false;
    size_t slot = (fifo->head + fifo->count) % fifo->cap;
    fifo->items[slot] = event;
    fifo->sizes[slot] = size;
    fifo->bytes += size;
    fifo->count++;
    return true;
}

static void
s_fifo_clear (s_fifo_t *fifo)
{
    sb_event_t *event;
    while ((event = s_fifo_pop (fifo)))
        sb_event_destroy (&event);
    fifo->head = 0;
}

//  ---------------------------------------------------------------------
//  Actor state

static void
s_self_destroy (self_t **self_p)
{
    if (!*self_p)
        return;
    self_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        sb_event_destroy (&self->batch[i]);
    for (size_t i = 0; i < self->nsources; i++) {
        s_source_t *src = &self->sources[i];
        if (src->ahead.items)
            s_fifo_clear (&src->ahead);
        free (src->ahead.items);
        free (src->ahead.sizes);
        zsock_destroy (&src->dealer);
        free (src->endpoint);
    }
    free (self->sources);
    s_fifo_clear (&self->kept);
    s_fifo_clear (&self->taken);
    free (self->kept.items);
    free (self->kept.sizes);
    free (self->taken.items);
    free (self->taken.sizes);
    free (self->batch);
    free (self->fresh);
    free (self->skip);
    free (self->publish);
    free (self->captured);
    sb_store_destroy (&self->store);
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->sub);
    zsock_destroy (&self->push);
    zsock_destroy (&self->wake);
    free (self);
    *self_p = NULL;
}

//  One source per comma-separated replay endpoint. 0 or -1.
static int
s_self_sources (self_t *self)
{
    const char *list = self->args->replay;
    if (!*list)
        return 0;
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    self->sources = calloc (n, sizeof *self->sources);
    char *copy = strdup (list);
    if (!self->sources || !copy) {
        free (copy);
        return -1;
    }
    char *save = NULL;
    for (char *ep = strtok_r (copy, ",", &save); ep && self->nsources < n;
         ep = strtok_r (NULL, ",", &save)) {
        s_source_t *src = &self->sources[self->nsources++];
        src->state = S_HELLO;
        src->endpoint = strdup (ep);
        src->dealer = zsock_new (ZMQ_DEALER);
        src->ahead.cap = 2 * (size_t) self->window;
        src->ahead.items = calloc (src->ahead.cap, sizeof *src->ahead.items);
        src->ahead.sizes = calloc (src->ahead.cap, sizeof *src->ahead.sizes);
        if (!src->endpoint || !src->dealer || !src->ahead.items || !src->ahead.sizes) {
            free (copy);
            return -1;
        }
        //  At most a window of records queued, plus the control messages.
        zsock_set_rcvhwm (src->dealer, (int) self->window + 64);
        zsock_set_sndhwm (src->dealer, 1000);
        zsock_set_maxmsgsize (src->dealer, (int) SB_REPLAY_MAX_MESSAGE);
        zsock_set_linger (src->dealer, 0);
        //  Queue only to a connected ingress: no pile of HELLOs meanwhile.
        zsock_set_immediate (src->dealer, 1);
        if (sb_zmq_connect (self->args->security, src->dealer, "replay", "SB_INGRESS_REPLAY", ep)) {
            free (copy);
            return -1;
        }
        if (zpoller_add (self->poller, src->dealer)) {
            free (copy);
            return -1;
        }
        sb_info ("ingest", "replay source endpoint=%s", ep);
    }
    free (copy);
    return 0;
}

static self_t *
s_self_new (zsock_t *pipe, s_args_t *args)
{
    self_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->args = args;
    self->pipe = pipe;
    self->started_ms = sb_time_mono_ms ();
    self->next_retain_ms = self->started_ms + S_RETAIN_FIRST_MS;
    self->next_tick_ms = self->started_ms;
    size_t window = 2 * args->batch_max;
    if (window < 64)
        window = 64;
    if (window > SB_REPLAY_CREDIT_MAX)
        window = SB_REPLAY_CREDIT_MAX;
    self->window = (uint32_t) window;
    self->batch = calloc (args->batch_max, sizeof *self->batch);
    self->fresh = calloc (args->batch_max, sizeof *self->fresh);
    self->skip = calloc (args->batch_max, sizeof *self->skip);
    self->kept.cap = self->taken.cap = S_KEPT_MAX;
    self->kept.items = calloc (S_KEPT_MAX, sizeof *self->kept.items);
    self->kept.sizes = calloc (S_KEPT_MAX, sizeof *self->kept.sizes);
    self->taken.items = calloc (S_KEPT_MAX, sizeof *self->taken.items);
    self->taken.sizes = calloc (S_KEPT_MAX, sizeof *self->taken.sizes);
    self->publish = calloc (args->batch_max, sizeof *self->publish);
    self->captured = calloc (args->batch_max, sizeof *self->captured);
    self->sub = zsock_new (ZMQ_SUB);
    self->push = zsock_new (ZMQ_PUSH);
    self->wake = zsock_new (ZMQ_PUSH);
    if (!self->batch || !self->fresh || !self->skip || !self->kept.items || !self->kept.sizes
        || !self->taken.items || !self->taken.sizes || !self->publish || !self->captured
        || !self->sub || !self->push || !self->wake)
        goto fail;
    zsock_set_rcvhwm (self->sub, args->queue_max);
    zsock_set_subscribe (self->sub, "sb.v1.");
    char *copy = strdup (args->endpoints);
    if (!copy)
        goto fail;
    char *save = NULL;
    for (char *ep = strtok_r (copy, ",", &save); ep; ep = strtok_r (NULL, ",", &save))
        if (sb_zmq_connect (args->security, self->sub, "SUB", "SB_INGRESS_PUB", ep)) {
            free (copy);
            goto fail;
        }
        else
            sb_info ("ingest", "subscribed endpoint=%s", ep);
    free (copy);
    zsock_set_sndhwm (self->push, 100000);
    zsock_set_sndhwm (self->wake, 1);
    if (zsock_connect (self->push, "%s", args->outcomes) < 0
        || zsock_connect (self->wake, "%s", args->wake) < 0)
        goto fail;
    self->poller = zpoller_new (self->pipe, self->sub, NULL);
    if (!self->poller)
        goto fail;
    if (s_self_sources (self))
        goto fail;
    if (self->nsources == 0)
        sb_warn ("ingest",
                 "no ingress replay endpoint (SB_INGRESS_REPLAY): events the PUB "
                 "stream drops, and those sent while this dispatcher is down, are not recovered");
    sb_metrics_t *m = args->metrics;
    self->m_stored =
        sb_metrics_counter (m, "sb_events_stored_total", "Events stored in PostgreSQL", NULL);
    self->m_duplicates = sb_metrics_counter (
        m, "sb_events_duplicate_total", "Events already stored (replays, provider retries)", NULL);
    self->m_replies =
        sb_metrics_counter (m, "sb_replies_queued_total", "Replies written to the outbox", NULL);
    self->m_not_sent =
        sb_metrics_counter (m, "sb_replies_not_sent_total",
                            "Replies refused (opted out, outside the 24 h window)", NULL);
    self->m_statuses = sb_metrics_counter (m, "sb_status_changes_total",
                                           "Outbound messages whose status moved forward", NULL);
    self->m_undecodable = sb_metrics_counter (
        m, "sb_events_undecodable_total", "Frames on the event stream that were not Events", NULL);
    static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
    self->m_batch =
        sb_metrics_histogram (m, "sb_store_batch_events", "Events per transaction", NULL,
                              batch_bounds, sizeof batch_bounds / sizeof batch_bounds[0]);
    static const double latency_bounds[] = {0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
                                            0.1,   0.25,  0.5,   1,    5};
    self->m_latency = sb_metrics_histogram (
        m, "sb_store_write_seconds", "PostgreSQL transaction latency per batch", NULL,
        latency_bounds, sizeof latency_bounds / sizeof latency_bounds[0]);
    self->m_failures = sb_metrics_counter (m, "sb_store_failures_total",
                                           "Batches PostgreSQL refused (retried)", NULL);
    self->m_queue =
        sb_metrics_gauge (m, "sb_ingest_queue_events", "Events received and not yet stored", NULL);
    static const char *const retained[] = {"table=\"events\"", "table=\"request_bodies\"",
                                           "table=\"messages\"", "table=\"outbox\""};
    for (size_t i = 0; i < 4; i++)
        self->m_retained[i] =
            sb_metrics_counter (m, "sb_retain_deleted_total",
                                "Rows removed by retention (SB_RETAIN_DAYS)", retained[i]);
    self->m_replays = sb_metrics_counter (m, "sb_ingest_replays_total",
                                          "Journal replays asked of the ingresses", NULL);
    self->m_replayed = sb_metrics_counter (m, "sb_ingest_replayed_records_total",
                                           "Journal records received by replay", NULL);
    self->m_gaps = sb_metrics_counter (m, "sb_ingest_gaps_total",
                                       "Gaps found in the live stream (repaired by replay)", NULL);
    self->m_overlap =
        sb_metrics_counter (m, "sb_ingest_overlap_dropped_total",
                            "Events dropped as already taken (replay and live overlap)", NULL);
    self->m_lost =
        sb_metrics_counter (m, "sb_ingest_journal_missing_total",
                            "Journal records an ingress could not replay (damaged)", NULL);
    self->m_skipped = sb_metrics_counter (
        m, "sb_events_skipped_total",
        "Events of partitions other dispatchers hold: stored by them, not here", NULL);
    self->m_mine = sb_metrics_gauge (m, "sb_ingest_partitions",
                                     "Partitions whose events this dispatcher stores", NULL);
    self->m_rewinds =
        sb_metrics_counter (m, "sb_ingest_takeover_replays_total",
                            "Replays asked for partitions taken over from another holder", NULL);
    self->m_restored = sb_metrics_counter (
        m, "sb_ingest_takeover_kept_total",
        "Events of partitions taken over stored from those kept when skipped, not replayed", NULL);
    self->m_waiting = sb_metrics_counter (
        m, "sb_ingest_unpositioned_dropped_total",
        "Live events dropped before their ingress's replay started (replayed later)", NULL);
    return self;
fail:
    s_self_destroy (&self);
    return NULL;
}

//  ---------------------------------------------------------------------
//  Talking to the replay servers

//  Send msg; false when it could not go (the ingress is not connected:
//  the DEALER queues only to a connected peer).
static bool
s_source_send (s_source_t *src, const sb_replay_msg_t *msg)
{
    bool sent = sb_replay_send (zsock_resolve (src->dealer), msg, ZMQ_DONTWAIT) == 0;
    if (!sent)
        sb_debug ("ingest", "replay message not sent endpoint=%s type=%s error=\"%s\"",
                  src->endpoint, sb_replay_type_name ((int) msg->type),
                  zmq_strerror (zmq_errno ()));
    return sent;
}

static void
s_source_hello (s_source_t *src)
{
    sb_replay_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.type = SB_REPLAY_HELLO;
    sb_replay_set (msg.consumer_id, sizeof msg.consumer_id, S_CONSUMER_ID);
    s_source_send (src, &msg);
    src->hello_ms = sb_time_mono_ms ();
}

static void
s_source_ack (s_source_t *src)
{
    sb_replay_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.type = SB_REPLAY_ACK;
    sb_replay_set (msg.consumer_id, sizeof msg.consumer_id, S_CONSUMER_ID);
    sb_replay_set (msg.epoch, sizeof msg.epoch, src->epoch);
    msg.committed_seq = src->stored_seq;
    s_source_send (src, &msg);
    src->acked_seq = src->stored_seq;
}

//  A replay is to be asked again, not yet.
static bool
s_source_waits (const s_source_t *src)
{
    return src->need_replay && sb_time_mono_ms () < src->replay_after_ms;
}

//  Ask a replay from next_seq (replacing any running one).
static void
s_source_request (self_t *self, s_source_t *src, const char *why)
{
    sb_replay_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.type = SB_REPLAY_REQUEST;
    msg.replay_id = ++self->replay_ids;
    sb_replay_set (msg.consumer_id, sizeof msg.consumer_id, S_CONSUMER_ID);
    sb_replay_set (msg.epoch, sizeof msg.epoch, src->epoch);
    msg.from_seq = src->next_seq;
    msg.credit = self->window;
    if (!s_source_send (src, &msg)) {
        //  The ingress is away (a gap seen on the PUB while the DEALER is
        //  still reconnecting): ask again soon rather than wait for a
        //  replay that was never asked to stall.
        src->state = S_LIVE;
        src->replay_id = 0;
        src->need_replay = true;
        src->replay_after_ms = sb_time_mono_ms () + S_RETRY_MS;
        sb_debug ("ingest", "replay request not sent, asking again in %d ms ingress_id=%s why=%s",
                  S_RETRY_MS, src->ingress_id, why);
        return;
    }
    src->state = S_REPLAYING;
    src->replay_id = msg.replay_id;
    src->consumed = 0;
    src->cancelled = false;
    src->need_replay = false;
    src->check_seq = 0;
    src->heard_ms = sb_time_mono_ms ();
    sb_metric_add (self->m_replays, 1);
    sb_info ("ingest", "replay asked ingress_id=%s from_seq=%llu why=%s", src->ingress_id,
             (unsigned long long) src->next_seq, why);
}

//  The ingress has another journal now: start over at its seq 1.
static void
s_source_new_epoch (s_source_t *src, const char *epoch)
{
    sb_warn ("ingest",
             "ingress journal has a new epoch: taking it from seq 1 ingress_id=%s "
             "old_epoch=%s epoch=%s",
             src->ingress_id, src->epoch, epoch);
    sb_replay_set (src->epoch, sizeof src->epoch, epoch);
    src->next_seq = 1;
    src->kept_from = 1;
    src->stored_seq = 0;
    src->acked_seq = 0;
    s_fifo_clear (&src->ahead);
    src->ahead_overflow = false;
}

//  ---------------------------------------------------------------------
//  Taking events

//  The source an event belongs to, by ingress id (NULL: none).
static s_source_t *
s_source_of (self_t *self, const char *ingress_id)
{
    if (!ingress_id)
        return NULL;
    for (size_t i = 0; i < self->nsources; i++)
        if (self->sources[i].known && strcmp (self->sources[i].ingress_id, ingress_id) == 0)
            return &self->sources[i];
    return NULL;
}

static void
s_accept (self_t *self, sb_event_t *event)
{
    assert (self->count < self->args->batch_max);
    self->batch[self->count++] = event;
}

//  Accept the queued live events that follow next_seq, while the batch
//  has room. Cancels the running replay once they are all taken.
static void
s_drain (self_t *self, s_source_t *src)
{
    bool took = false;
    while (self->count < self->args->batch_max) {
        sb_event_t *head = s_fifo_head (&src->ahead);
        if (!head || head->seq > src->next_seq)
            break;
        head = s_fifo_pop (&src->ahead);
        if (head->seq < src->next_seq) {
            sb_metric_add (self->m_overlap, 1);
            sb_event_destroy (&head);
            continue;
        }
        s_accept (self, head);
        src->next_seq++;
        took = true;
    }
    if (took && src->ahead.count == 0 && src->state == S_REPLAYING && !src->cancelled
        && !src->ahead_overflow) {
        //  The replay reached the live stream: the rest would be duplicates.
        sb_replay_msg_t msg;
        memset (&msg, 0, sizeof msg);
        msg.type = SB_REPLAY_CANCEL;
        msg.replay_id = src->replay_id;
        s_source_send (src, &msg);
        src->cancelled = true;
        sb_debug ("ingest", "replay joined the live stream ingress_id=%s next_seq=%llu",
                  src->ingress_id, (unsigned long long) src->next_seq);
    }
}

//  Offer an event of src (taken: accepted, queued or freed), size bytes
//  on the wire. The batch has room for one.
static void
s_offer (self_t *self, s_source_t *src, sb_event_t *event, size_t size, bool replayed)
{
    if (event->seq < src->next_seq) {
        sb_metric_add (self->m_overlap, 1);
        sb_event_destroy (&event);
        return;
    }
    if (event->seq > src->next_seq) {
        if (!replayed) {
            //  The live stream skipped: keep the event for when the replay
            //  gets there.
            if (!s_fifo_push (&src->ahead, event, size)) {
                src->ahead_overflow = true;
                sb_event_destroy (&event);
            }
            if (src->state == S_LIVE && !s_source_waits (src)) {
                sb_metric_add (self->m_gaps, 1);
                uint64_t got = s_fifo_head (&src->ahead) ? s_fifo_head (&src->ahead)->seq : 0;
                sb_info ("ingest",
                         "gap in the live stream ingress_id=%s expected_seq=%llu "
                         "got_seq=%llu",
                         src->ingress_id, (unsigned long long) src->next_seq,
                         (unsigned long long) got);
                s_source_request (self, src, "gap");
            }
            return;
        }
        sb_error ("ingest",
                  "journal records missing: the ingress could not replay them "
                  "ingress_id=%s from_seq=%llu count=%llu",
                  src->ingress_id, (unsigned long long) src->next_seq,
                  (unsigned long long) (event->seq - src->next_seq));
        sb_metric_add (self->m_lost, event->seq - src->next_seq);
        src->next_seq = event->seq;
    }
    s_accept (self, event);
    src->next_seq++;
    s_drain (self, src);
}

//  A live event from the SUB socket, size bytes on the wire.
static void
s_take_live (self_t *self, sb_event_t *event, size_t size)
{
    if (self->nsources == 0) {
        s_accept (self, event);
        return;
    }
    s_source_t *src = s_source_of (self, event->ingress_id);
    if (!src) {
        //  Its replay endpoint may not have answered yet: the replay will
        //  bring this event. Later, an ingress no endpoint names is served
        //  as without replay.
        bool waiting = false;
        for (size_t i = 0; i < self->nsources; i++)
            waiting |= !self->sources[i].known;
        if (waiting && sb_time_mono_ms () - self->started_ms < S_UNKNOWN_GRACE_MS) {
            sb_metric_add (self->m_waiting, 1);
            sb_event_destroy (&event);
        }
        else
            s_accept (self, event);
        return;
    }
    if (!src->positioned) {
        sb_metric_add (self->m_waiting, 1);
        sb_event_destroy (&event);
        return;
    }
    if (strcmp (event->epoch ? event->epoch : "", src->epoch) != 0) {
        //  A new journal (or a stale event of an old one): ask at once.
        if (sb_time_mono_ms () - src->hello_ms >= S_EPOCH_HELLO_MS)
            s_source_hello (src);
        sb_metric_add (self->m_waiting, 1);
        sb_event_destroy (&event);
        return;
    }
    s_offer (self, src, event, size, false);
}

static void
s_handle_welcome (self_t *self, s_source_t *src, const sb_replay_msg_t *msg)
{
    if (!src->known || strcmp (src->ingress_id, msg->ingress_id) != 0) {
        if (src->known)
            sb_warn ("ingest",
                     "another ingress answers on a replay endpoint endpoint=%s "
                     "old_ingress_id=%s ingress_id=%s",
                     src->endpoint, src->ingress_id, msg->ingress_id);
        for (size_t i = 0; i < self->nsources; i++)
            if (&self->sources[i] != src && self->sources[i].known
                && strcmp (self->sources[i].ingress_id, msg->ingress_id) == 0)
                sb_error ("ingest",
                          "two replay endpoints serve the same ingress id: give each "
                          "ingress its own SB_INGRESS_ID ingress_id=%s endpoint=%s other=%s",
                          msg->ingress_id, src->endpoint, self->sources[i].endpoint);
        sb_info ("ingest", "ingress found endpoint=%s ingress_id=%s epoch=%s committed_seq=%llu",
                 src->endpoint, msg->ingress_id, msg->epoch,
                 (unsigned long long) msg->committed_seq);
        sb_replay_set (src->ingress_id, sizeof src->ingress_id, msg->ingress_id);
        sb_replay_set (src->epoch, sizeof src->epoch, msg->epoch);
        src->known = true;
        src->positioned = false;  //  the cursor decides where to start
        s_fifo_clear (&src->ahead);
        src->state = S_HELLO;
        return;
    }
    if (!src->positioned)
        return;  //  waiting for the cursor
    if (strcmp (src->epoch, msg->epoch) != 0) {
        s_source_new_epoch (src, msg->epoch);
        s_source_request (self, src, "new epoch");
        return;
    }
    if (src->state == S_HELLO) {
        s_source_request (self, src, "resume");
        return;
    }
    if (src->state != S_LIVE || src->ahead.count)
        return;
    //  Heartbeat: the ingress has what we have not, and nothing came for a
    //  second: the end of the live stream was lost.
    int64_t now = sb_time_mono_ms ();
    if (msg->committed_seq < src->next_seq)
        src->check_seq = 0;
    else if (src->check_seq != src->next_seq) {
        src->check_seq = src->next_seq;
        src->check_ms = now;
    }
    else if (now - src->check_ms >= S_HEARTBEAT_MS * 9 / 10) {
        sb_metric_add (self->m_gaps, 1);
        sb_info ("ingest",
                 "live stream behind the journal ingress_id=%s next_seq=%llu "
                 "committed_seq=%llu",
                 src->ingress_id, (unsigned long long) src->next_seq,
                 (unsigned long long) msg->committed_seq);
        s_source_request (self, src, "behind");
    }
}

static void
s_handle_record (self_t *self, s_source_t *src, const sb_replay_msg_t *msg)
{
    src->consumed++;
    sb_metric_add (self->m_replayed, 1);
    sb_event_t *event = sb_event_decode (msg->event, msg->event_size);
    if (!event || strcmp (event->ingress_id ? event->ingress_id : "", src->ingress_id) != 0
        || strcmp (event->epoch ? event->epoch : "", src->epoch) != 0) {
        sb_metric_add (self->m_undecodable, 1);
        sb_error ("ingest",
                  "replayed record is not an Event of this journal, skipped "
                  "ingress_id=%s seq=%llu size=%zu",
                  src->ingress_id, (unsigned long long) msg->seq, msg->event_size);
        sb_event_destroy (&event);
        if (msg->seq >= src->next_seq)
            src->next_seq = msg->seq + 1;
        return;
    }
    event->seq = msg->seq;  //  the journal's position is the truth
    s_offer (self, src, event, msg->event_size, true);
}

static void
s_handle_end (self_t *self, s_source_t *src, const sb_replay_msg_t *msg)
{
    bool ok = msg->reason == SB_REPLAY_END_CAUGHT_UP || msg->reason == SB_REPLAY_END_COUNT
              || msg->reason == SB_REPLAY_END_CANCELLED;
    sb_log (ok ? SB_LOG_DEBUG : SB_LOG_WARN, "ingest",
            "replay ended ingress_id=%s reason=%s last_seq=%llu committed_seq=%llu next_seq=%llu",
            src->ingress_id, sb_replay_reason_name (msg->reason),
            (unsigned long long) msg->last_seq, (unsigned long long) msg->committed_seq,
            (unsigned long long) src->next_seq);
    src->state = S_LIVE;
    src->replay_id = 0;
    src->consumed = 0;
    src->cancelled = false;
    src->ahead_overflow = false;
    src->check_seq = 0;
    if (!ok) {
        src->need_replay = true;
        src->replay_after_ms = sb_time_mono_ms () + S_RETRY_MS;
    }
}

//  One message from a replay server.
static void
s_take_replay (self_t *self, s_source_t *src)
{
    zframe_t *frame = zframe_recv (src->dealer);
    if (!frame)
        return;
    sb_replay_msg_t msg;
    if (sb_replay_decode (zframe_data (frame), zframe_size (frame), &msg)) {
        sb_warn ("ingest", "malformed replay message dropped endpoint=%s size=%zu", src->endpoint,
                 zframe_size (frame));
        zframe_destroy (&frame);
        return;
    }
    bool current = src->state == S_REPLAYING && msg.replay_id == src->replay_id;
    if (current && msg.type != SB_REPLAY_WELCOME)
        src->heard_ms = sb_time_mono_ms ();  //  the replay is alive (heartbeats do not count)
    switch (msg.type) {
        case SB_REPLAY_WELCOME: s_handle_welcome (self, src, &msg); break;
        case SB_REPLAY_START:
            if (current && strcmp (msg.epoch, src->epoch) != 0)
                s_source_new_epoch (src, msg.epoch);
            break;
        case SB_REPLAY_RECORD:
            if (current)
                s_handle_record (self, src, &msg);
            break;
        case SB_REPLAY_END:
            if (current)
                s_handle_end (self, src, &msg);
            break;
        default:
            sb_debug ("ingest", "unexpected replay message type=%s",
                      sb_replay_type_name ((int) msg.type));
            break;
    }
    sb_replay_msg_clear (&msg);
    zframe_destroy (&frame);
}

//  One message from the SUB socket.
static void
s_take_sub (self_t *self)
{
    zmsg_t *msg = zmsg_recv (self->sub);
    if (!msg)
        return;
    zframe_t *topic = zmsg_first (msg);
    zframe_t *payload = zmsg_next (msg);
    sb_event_t *event = payload && zmsg_size (msg) == 2
                            ? sb_event_decode (zframe_data (payload), zframe_size (payload))
                            : NULL;
    if (!event) {
        sb_metric_add (self->m_undecodable, 1);
        sb_warn ("ingest", "dropped a frame that is not an Event topic=%.*s frames=%zu",
                 topic ? (int) zframe_size (topic) : 0,
                 topic ? (const char *) zframe_data (topic) : "", zmsg_size (msg));
    }
    else
        s_take_live (self, event, zframe_size (payload));
    zmsg_destroy (&msg);
}

//  Take the events already waiting on the sockets, up to the batch cap,
//  one message per socket in turn.
static void
s_self_take (self_t *self)
{
    //  Kept events of partitions taken over go first, in the order they
    //  came: before anything newer of theirs.
    sb_event_t *kept;
    while (self->count < self->args->batch_max && (kept = s_fifo_pop (&self->taken))) {
        s_accept (self, kept);
        sb_metric_add (self->m_restored, 1);
    }
    if (self->taken.count) {
        sb_metric_set (self->m_queue, (int64_t) self->count);
        return;
    }
    for (size_t i = 0; i < self->nsources; i++)
        s_drain (self, &self->sources[i]);
    while (self->count < self->args->batch_max) {
        bool progress = false;
        for (size_t i = 0; i < self->nsources && self->count < self->args->batch_max; i++)
            if (zsock_events (self->sources[i].dealer) & ZMQ_POLLIN) {
                s_take_replay (self, &self->sources[i]);
                progress = true;
            }
        if (self->count < self->args->batch_max && (zsock_events (self->sub) & ZMQ_POLLIN)) {
            s_take_sub (self);
            progress = true;
        }
        if (!progress)
            break;
    }
    //  Give back the credit of the records taken.
    for (size_t i = 0; i < self->nsources; i++) {
        s_source_t *src = &self->sources[i];
        if (src->state == S_REPLAYING && src->consumed >= self->window / 2) {
            sb_replay_msg_t msg;
            memset (&msg, 0, sizeof msg);
            msg.type = SB_REPLAY_CREDIT;
            msg.replay_id = src->replay_id;
            msg.credit = (uint32_t) src->consumed;
            s_source_send (src, &msg);
            src->consumed = 0;
        }
    }
    sb_metric_set (self->m_queue, (int64_t) self->count);
}

//  Remove the cursor claims of ingress src that no cover needs (of
//  dispatchers gone, of sets of partitions held before) an hour old.
static void
s_source_prune (self_t *self, s_source_t *src)
{
    int pruned = sb_store_cursors_prune (self->store, src->ingress_id);
    if (pruned > 0)
        sb_info ("ingest", "old cursor claims removed ingress_id=%s count=%d", src->ingress_id,
                 pruned);
}

//  Start each source whose ingress answered: read the cover of the
//  partitions stored here (of all, while none is), with an empty batch so
//  the cursors are up to date, and ask the replay from there.
static void
s_self_position (self_t *self)
{
    if (self->count > 0 || !self->store || (self->args->held && !self->held_known))
        return;  //  the partitions stored here are known after the first lease tick
    for (size_t i = 0; i < self->nsources; i++) {
        s_source_t *src = &self->sources[i];
        if (!src->known || src->positioned)
            continue;
        uint64_t cursor = 0;
        if (sb_store_cover (self->store, src->ingress_id, src->epoch,
                            self->nmine ? self->mine : NULL, &cursor, NULL, 0)) {
            if (!self->cursor_failed)
                sb_warn ("ingest", "cannot read the cursor yet ingress_id=%s", src->ingress_id);
            self->cursor_failed = true;
            return;
        }
        self->cursor_failed = false;
        //  No claim in this epoch (a new journal): 0, from its start.
        src->next_seq = cursor + 1;
        src->kept_from = src->next_seq;
        src->stored_seq = src->next_seq - 1;
        src->acked_seq = 0;
        src->positioned = true;
        sb_info ("ingest", "cursor ingress_id=%s epoch=%s stored_seq=%llu partitions=%d",
                 src->ingress_id, src->epoch, (unsigned long long) src->stored_seq,
                 self->nmine ? self->nmine : SB_PARTITIONS);
        s_source_prune (self, src);
        s_source_request (self, src, "start");
    }
}

//  A skipped event goes out of `kept` (evicted, or too big for it): from
//  its seq on, its source's kept events are no longer complete.
static void
s_kept_gone (self_t *self, const sb_event_t *e)
{
    s_source_t *src = s_source_of (self, e->ingress_id);
    if (src && e->epoch && strcmp (e->epoch, src->epoch) == 0 && e->seq >= src->kept_from)
        src->kept_from = e->seq + 1;
}

//  Keep a skipped event (another dispatcher's partition) for a take-over;
//  the oldest go when `kept` is full.
static void
s_kept_push (self_t *self, sb_event_t *event)
{
    size_t size = protobuf_c_message_get_packed_size ((const ProtobufCMessage *) event);
    while (!s_fifo_push (&self->kept, event, size)) {
        sb_event_t *old = s_fifo_pop (&self->kept);
        if (!old) {
            s_kept_gone (self, event);
            sb_event_destroy (&event);
            return;
        }
        s_kept_gone (self, old);
        sb_event_destroy (&old);
    }
}

//  Follow the partitions the delivery actor holds (with an empty batch):
//  stop storing those it lost; before storing those it took, bring back
//  what their former holder did not store. For each ingress, their cover
//  (sb_store_cover) says from where: when that is behind the stream, the
//  events since were skipped here, and are stored first, in the order
//  they came (across ingresses too, as a dispatcher storing everything
//  would have): from `kept` when it still holds every one since, else by
//  a replay of the journal from the cover (then only that ingress's
//  order holds). Until the covers are read they stay another's, tried
//  again next time. Without replay endpoints every event is stored:
//  nothing could fetch a skipped one again.
static void
s_self_partitions (self_t *self)
{
    if (self->count > 0 || !self->store || self->nsources == 0)
        return;
    bool held[SB_PARTITIONS], gained[SB_PARTITIONS];
    if (self->args->held)
        self->held_known = sb_partition_set_load (self->args->held, held);
    else {
        self->held_known = true;
        for (size_t p = 0; p < SB_PARTITIONS; p++)
            held[p] = true;
    }
    int ngained = 0, nlost = 0;
    for (size_t p = 0; p < SB_PARTITIONS; p++) {
        gained[p] = held[p] && !self->mine[p];
        ngained += gained[p];
        if (!held[p] && self->mine[p]) {
            self->mine[p] = false;
            self->nmine--;
            nlost++;
        }
    }
    if (nlost)
        sb_info ("ingest", "partitions given up or lost count=%d storing=%d", nlost, self->nmine);
    if (!ngained) {
        sb_metric_set (self->m_mine, self->nmine);
        return;
    }
    uint64_t *cover = calloc (self->nsources, sizeof *cover);
    bool *from_kept = calloc (self->nsources, sizeof *from_kept);
    bool any_kept = false;
    if (!cover || !from_kept)
        goto done;  //  out of memory: taken next time
    for (size_t i = 0; i < self->nsources; i++) {
        s_source_t *src = &self->sources[i];
        if (!src->known || !src->positioned)
            continue;  //  positioned from the cover of mine, gained ones included
        if (sb_store_cover (self->store, src->ingress_id, src->epoch, gained, &cover[i], NULL, 0))
            goto done;
        if (cover[i] + 1 >= src->next_seq)
            continue;
        if (cover[i] + 1 >= src->kept_from) {
            from_kept[i] = any_kept = true;
            sb_info ("ingest",
                     "partitions taken over: storing the events skipped since their cursor "
                     "ingress_id=%s partitions=%d from_seq=%llu next_seq=%llu",
                     src->ingress_id, ngained, (unsigned long long) (cover[i] + 1),
                     (unsigned long long) src->next_seq);
            continue;
        }
        sb_info ("ingest",
                 "partitions taken over: replaying from their cursor ingress_id=%s "
                 "partitions=%d from_seq=%llu next_seq=%llu kept_from=%llu",
                 src->ingress_id, ngained, (unsigned long long) (cover[i] + 1),
                 (unsigned long long) src->next_seq, (unsigned long long) src->kept_from);
        sb_metric_add (self->m_rewinds, 1);
        src->next_seq = src->kept_from = cover[i] + 1;
        s_fifo_clear (&src->ahead);
        src->ahead_overflow = false;
        src->check_seq = 0;
        if (src->state != S_HELLO)  //  else its WELCOME asks from next_seq
            s_source_request (self, src, "takeover");
    }
    //  The kept events of the gained partitions past their ingress's cover,
    //  in the order they came, to `taken`; the rest stay.
    for (size_t n = any_kept ? self->kept.count : 0; n > 0; n--) {
        sb_event_t *e = s_fifo_pop (&self->kept);
        size_t i = 0;
        while (i < self->nsources
               && !(self->sources[i].known && e->ingress_id
                    && strcmp (self->sources[i].ingress_id, e->ingress_id) == 0))
            i++;
        bool take = i < self->nsources && from_kept[i] && e->epoch
                    && strcmp (e->epoch, self->sources[i].epoch) == 0 && e->seq > cover[i]
                    && gained[sb_store_event_partition (e)];
        size_t size = protobuf_c_message_get_packed_size ((const ProtobufCMessage *) e);
        if (!s_fifo_push (take ? &self->taken : &self->kept, e, size))
            sb_event_destroy (&e);  //  cannot happen: it fitted in kept
    }
    for (size_t p = 0; p < SB_PARTITIONS; p++)
        if (gained[p]) {
            self->mine[p] = true;
            self->nmine++;
        }
    sb_info ("ingest", "partitions taken count=%d storing=%d kept_to_store=%zu", ngained,
             self->nmine, self->taken.count);
    //  Each set of partitions leaves a claim row: those no longer needed go.
    for (size_t i = 0; i < self->nsources; i++)
        if (self->sources[i].known && self->sources[i].positioned)
            s_source_prune (self, &self->sources[i]);
done:
    free (cover);
    free (from_kept);
    sb_metric_set (self->m_mine, self->nmine);
}

//  Heartbeats, stalled replays, replays to ask again.
static void
s_self_tick (self_t *self)
{
    int64_t now = sb_time_mono_ms ();
    bool beat = now >= self->next_tick_ms;
    if (beat)
        self->next_tick_ms = now + S_HEARTBEAT_MS;
    for (size_t i = 0; i < self->nsources; i++) {
        s_source_t *src = &self->sources[i];
        if (src->state == S_REPLAYING && now - src->heard_ms > S_STALL_MS) {
            sb_warn ("ingest", "replay silent: asking again ingress_id=%s next_seq=%llu",
                     src->ingress_id, (unsigned long long) src->next_seq);
            src->state = S_HELLO;  //  its WELCOME resumes from next_seq
            src->replay_id = 0;
            s_source_hello (src);
        }
        if (src->state == S_LIVE && src->positioned && src->need_replay
            && now >= src->replay_after_ms)
            s_source_request (self, src, "retry");
        if (src->state == S_LIVE && src->positioned && !s_source_waits (src)
            && s_fifo_head (&src->ahead) && s_fifo_head (&src->ahead)->seq > src->next_seq)
            s_source_request (self, src, "gap");
        if (beat) {
            s_source_hello (src);
            if (src->positioned && src->stored_seq > 0)
                s_source_ack (src);
        }
    }
}

//  Milliseconds until s_self_tick has work, or the next idle ping (S_PING_MS).
static int
s_self_wait_ms (self_t *self)
{
    int64_t now = sb_time_mono_ms ();
    int64_t until = self->next_tick_ms;
    for (size_t i = 0; i < self->nsources; i++) {
        s_source_t *src = &self->sources[i];
        if (src->state == S_LIVE && src->need_replay && src->replay_after_ms < until)
            until = src->replay_after_ms;
    }
    if (self->nsources == 0)
        until = now + S_PING_MS;
    if (self->taken.count)
        until = now;
    if (self->args->retain_days > 0 && self->next_retain_ms < until)
        until = self->next_retain_ms;
    if (until > now + S_PING_MS)
        return S_PING_MS;
    return until > now ? (int) (until - now) : 0;
}

//  An event of the batch with its place, to sort by time stably.
typedef struct {
    sb_event_t *event;
    size_t at;
} s_timed_t;

//  When the event reached its ingress, in microseconds (an ingress before
//  received_at_us: its milliseconds).
static int64_t
s_received_us (const sb_event_t *e)
{
    return e->received_at_us ? e->received_at_us : e->received_at_ms * 1000;
}

static int
s_timed_cmp (const void *a, const void *b)
{
    const s_timed_t *x = a, *y = b;
    int64_t tx = s_received_us (x->event), ty = s_received_us (y->event);
    if (tx != ty)
        return tx < ty ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

//  Order the batch by the time each event reached its ingress, each
//  ingress's own order kept. The SUB socket takes one message from each
//  ingress in turn, so with both streams waiting a contact's second
//  message (through one ingress) came out before its first (queued behind
//  others in the other ingress's stream), and was answered first
//  (test_order_two_ingresses: 20 contacts of 20). Left as it is when
//  sorting would reorder an ingress's own events (its clock stepped back).
static void
s_self_by_time (self_t *self)
{
    size_t n = self->count;
    if (n < 2 || self->nsources < 2)
        return;
    s_timed_t *timed = malloc (n * sizeof *timed);
    if (!timed)
        return;
    for (size_t i = 0; i < n; i++)
        timed[i] = (s_timed_t){self->batch[i], i};
    qsort (timed, n, sizeof *timed, s_timed_cmp);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j-- > 0;) {
            const sb_event_t *a = timed[j].event, *b = timed[i].event;
            if (strcmp (a->ingress_id ? a->ingress_id : "", b->ingress_id ? b->ingress_id : ""))
                continue;
            if (a->seq > b->seq && a->epoch && b->epoch && strcmp (a->epoch, b->epoch) == 0) {
                free (timed);
                return;
            }
            break;
        }
    for (size_t i = 0; i < n; i++)
        self->batch[i] = timed[i].event;
    free (timed);
}

//  Store the batch. true when it is stored (or empty, with a connection
//  when replay sources need it for their cursors).
static bool
s_self_store (self_t *self)
{
    int64_t started = zclock_usecs ();
    if (!self->store) {
        self->store = sb_store_new (self->args->conninfo, self->args->timeout_ms);
        if (!self->store)
            return false;
    }
    if (self->count == 0) {
        //  Nothing to store: a round trip now and then, for readiness.
        int64_t age_us = sb_time_mono_us () - sb_store_last_ok_us (self->store);
        return age_us < S_PING_MS * 1000 || sb_store_ping (self->store) == 0;
    }
    if (sb_store_ensure (self->store))
        return false;
    memset (self->fresh, 0, self->count * sizeof *self->fresh);
    memset (self->publish, 0, self->count * sizeof *self->publish);
    s_self_by_time (self);
    //  The events of partitions this actor does not store: those of an
    //  ingress it replays from (whoever holds the partition stores them,
    //  or replays them when taking it). Without replay every event is
    //  stored, and so is one of an ingress no replay endpoint names.
    bool split = self->nsources > 0;
    for (size_t i = 0; i < self->count; i++) {
        const sb_event_t *e = self->batch[i];
        s_source_t *src = split ? s_source_of (self, e->ingress_id) : NULL;
        self->skip[i] = src && src->positioned && !self->mine[sb_store_event_partition (e)];
    }
    sb_store_policy_t policy = {
        .rules = self->args->rules,
        .window_ms = 24LL * 3600 * 1000,
        .now_ms = 0,
        .fresh = self->fresh,
        .publish = self->publish,
        .captured = self->captured,
        .skip = split ? self->skip : NULL,
        .parts = split ? self->mine : NULL,
    };
    sb_store_stats_t stats = {0};
    if (sb_store_write (self->store, self->batch, self->count, &policy, &stats)) {
        sb_metric_add (self->m_failures, 1);
        return false;
    }
    sb_metric_observe (self->m_latency, (double) (zclock_usecs () - started) / 1e6);
    sb_metric_observe (self->m_batch, (double) self->count);
    sb_metric_add (self->m_stored, stats.stored);
    sb_metric_add (self->m_duplicates, stats.duplicates);
    sb_metric_add (self->m_replies, stats.replies);
    sb_metric_add (self->m_not_sent, stats.not_sent);
    sb_metric_add (self->m_statuses, stats.statuses);
    sb_metric_add (self->m_skipped, stats.skipped);
    sb_debug ("ingest", "batch stored events=%zu stored=%zu duplicates=%zu skipped=%zu replies=%zu",
              self->count, stats.stored, stats.duplicates, stats.skipped, stats.replies);

    //  Outcomes: stored or duplicate for each event, the matches a rule
    //  asked to publish (e.g. a verification code), and a nudge to the
    //  sender if there is work. Each source's stored seq moves on.
    for (size_t i = 0; i < self->count; i++) {
        sb_event_t *e = self->batch[i];
        s_source_t *src = s_source_of (self, e->ingress_id);
        if (src && src->positioned && e->seq > src->stored_seq && e->epoch
            && strcmp (e->epoch, src->epoch) == 0)
            src->stored_seq = e->seq;
        if (policy.skip && self->skip[i])
            continue;  //  another dispatcher's to store and tell
        char topic[96] = "";
        sb_event_topic (e, topic, sizeof topic);
        json_t *o = json_pack ("{s:s, s:s, s:I, s:s, s:s, s:s}", "event_id", e->id, "ingress_id",
                               e->ingress_id, "seq", (json_int_t) e->seq, "topic", topic,
                               "provider_id", e->provider_id, "from", e->from);
        sb_outcome_send (self->push, self->args->dispatcher_id,
                         self->fresh[i] ? "stored" : "duplicate", o);
        if (self->publish[i]) {
            //  captured: what the console shows, live and after a reload
            //  (the captures table).
            json_t *m =
                json_pack ("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "event_id", e->id, "topic", topic,
                           "from", e->from, "to", e->to, "digits", e->digits, "text", e->text,
                           "captured", self->captured[i] ? self->captured[i] : "");
            sb_outcome_send (self->push, self->args->dispatcher_id, "rule_matched", m);
            free (self->captured[i]);
            self->captured[i] = NULL;
        }
    }
    //  Never wait on the sender: when WAKEs are already queued it will
    //  claim this batch's rows with theirs.
    if (stats.replies > 0)
        zmq_send (zsock_resolve (self->wake), "WAKE", 4, ZMQ_DONTWAIT);
    for (size_t i = 0; i < self->count; i++)
        if (policy.skip && self->skip[i]) {
            s_kept_push (self, self->batch[i]);
            self->batch[i] = NULL;
        }
        else
            sb_event_destroy (&self->batch[i]);
    self->count = 0;
    sb_metric_set (self->m_queue, 0);
    for (size_t i = 0; i < self->nsources; i++)
        if (self->sources[i].positioned && self->sources[i].stored_seq > self->sources[i].acked_seq)
            s_source_ack (&self->sources[i]);
    return true;
}

//  One retention step when one is due (SB_RETAIN_DAYS): a pass's next
//  statement, then the pause to the next step or pass.
static void
s_self_retain (self_t *self)
{
    int64_t now = sb_time_mono_ms ();
    if (self->args->retain_days <= 0 || now < self->next_retain_ms || !self->store)
        return;
    int deadline = self->args->timeout_ms / 2;
    if (deadline > S_RETAIN_DEADLINE_MS)
        deadline = S_RETAIN_DEADLINE_MS;
    sb_store_retain_t out;
    if (sb_store_retain_step (self->store, self->args->retain_days, S_RETAIN_BATCH, deadline, &out)
        != 0) {
        sb_warn ("ingest", "retention step failed; next pass in ms=%d", S_RETAIN_EVERY_MS);
        self->next_retain_ms = now + S_RETAIN_EVERY_MS;
        return;
    }
    sb_metric_add (self->m_retained[0], (uint64_t) out.events);
    sb_metric_add (self->m_retained[1], (uint64_t) out.bodies);
    sb_metric_add (self->m_retained[2], (uint64_t) out.messages);
    sb_metric_add (self->m_retained[3], (uint64_t) out.outbox);
    if (out.events + out.messages + out.outbox > 0)
        sb_debug ("ingest", "retention step events=%lld bodies=%lld messages=%lld outbox=%lld",
                  (long long) out.events, (long long) out.bodies, (long long) out.messages,
                  (long long) out.outbox);
    self->next_retain_ms = now + (out.done ? S_RETAIN_EVERY_MS : S_RETAIN_PAUSE_MS);
}

static void
s_ingest_actor (zsock_t *pipe, void *arg)
{
    s_args_t *args = (s_args_t *) arg;
    self_t *self = s_self_new (pipe, args);
    sb_actor_started (pipe, self != NULL);
    if (!self)
        return;
    //  Connect now, so /readyz tells the truth from the start.
    self->store = sb_store_new (args->conninfo, args->timeout_ms);
    atomic_store (&args->shared->last_ok_us, sb_store_last_ok_us (self->store));
    atomic_store (&args->shared->ready, self->store != NULL);
    if (!self->store) {
        self->failing = true;
        self->backoff_ms = S_BACKOFF_MIN_MS;
    }
    while (!self->terminated) {
        if (self->failing) {
            //  Not reading any socket: wait for the pipe or the retry time.
            zpoller_t *pipe_only = zpoller_new (self->pipe, NULL);
            zsock_t *which = (zsock_t *) zpoller_wait (pipe_only, self->backoff_ms);
            zpoller_destroy (&pipe_only);
            if (which == self->pipe) {
                self->terminated = sb_actor_pipe_says_stop (self->pipe, "ingest");
                continue;
            }
        }
        else {
            zsock_t *which = (zsock_t *) zpoller_wait (self->poller, s_self_wait_ms (self));
            if (which == self->pipe) {
                self->terminated = sb_actor_pipe_says_stop (self->pipe, "ingest");
                continue;
            }
            if (!which && zpoller_terminated (self->poller))
                break;
            s_self_take (self);
            s_self_tick (self);
        }
        bool stored = s_self_store (self);
        if (self->store)
            atomic_store (&args->shared->last_ok_us, sb_store_last_ok_us (self->store));
        if (stored) {
            if (self->failing) {
                sb_info ("ingest", "PostgreSQL writes work again");
                //  Silent sources were not read meanwhile: no stall.
                for (size_t i = 0; i < self->nsources; i++)
                    self->sources[i].heard_ms = sb_time_mono_ms ();
            }
            self->failing = false;
            self->backoff_ms = S_BACKOFF_MIN_MS;
            atomic_store (&args->shared->ready, true);
            s_self_partitions (self);
            s_self_position (self);
            s_self_retain (self);
        }
        else {
            if (!self->failing)
                sb_error ("ingest",
                          "PostgreSQL write failed; holding events=%zu and retrying with backoff",
                          self->count);
            self->failing = true;
            atomic_store (&args->shared->ready, false);
            self->backoff_ms =
                self->backoff_ms * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : self->backoff_ms * 2;
        }
    }
    if (self->count)
        sb_warn ("ingest", "stopping with events=%zu not stored (the ingress journal keeps them)",
                 self->count);
    s_self_destroy (&self);
}

static s_args_t *
s_args_new (sb_ingest_t *shared, const sb_config_t *config, const sb_zmq_security_t *security,
            const sb_rules_t *rules, sb_metrics_t *metrics, const char *outcomes, const char *wake,
            const char *dispatcher_id, const sb_partition_set_t *held)
{
    s_args_t *args = calloc (1, sizeof *args);
    if (!args)
        return NULL;
    args->shared = shared;
    args->security = security;
    args->conninfo = strdup (sb_config_str (config, SB_CFG_DATABASE_URL));
    args->timeout_ms = (int) sb_config_int (config, SB_CFG_SB_PG_TIMEOUT_MS);
    args->endpoints = strdup (sb_config_str (config, SB_CFG_SB_INGRESS_PUB));
    args->replay = strdup (sb_config_str (config, SB_CFG_SB_INGRESS_REPLAY));
    args->outcomes = strdup (outcomes);
    args->wake = strdup (wake);
    args->batch_max = (size_t) sb_config_int (config, SB_CFG_SB_BATCH_MAX);
    args->queue_max = (int) sb_config_int (config, SB_CFG_SB_QUEUE_MAX);
    args->rules = rules;
    args->metrics = metrics;
    args->dispatcher_id = strdup (dispatcher_id);
    args->held = held;
    args->retain_days = (int) sb_config_int (config, SB_CFG_SB_RETAIN_DAYS);
    return args;
}

static void
s_args_destroy (s_args_t **args_p)
{
    s_args_t *args = *args_p;
    if (!args)
        return;
    free (args->conninfo);
    free (args->endpoints);
    free (args->replay);
    free (args->outcomes);
    free (args->wake);
    free (args->dispatcher_id);
    free (args);
    *args_p = NULL;
}

sb_ingest_t *
sb_ingest_new (const sb_config_t *config, const sb_zmq_security_t *security,
               const sb_rules_t *rules, sb_metrics_t *metrics, const char *outcomes_endpoint,
               const char *wake_endpoint, const char *dispatcher_id, const sb_partition_set_t *held)
{
    sb_ingest_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    atomic_init (&self->ready, false);
    atomic_init (&self->last_ok_us, 0);
    self->args = s_args_new (self, config, security, rules, metrics, outcomes_endpoint,
                             wake_endpoint, dispatcher_id, held);
    if (!self->args || !self->args->conninfo || !self->args->endpoints || !self->args->replay
        || !self->args->outcomes || !self->args->wake || !self->args->dispatcher_id)
        goto fail;
    self->actor = sb_actor_new (s_ingest_actor, self->args);
    if (!self->actor)
        goto fail;
    return self;
fail:
    sb_ingest_destroy (&self);
    return NULL;
}

void
sb_ingest_destroy (sb_ingest_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    sb_ingest_t *self = *self_p;
    zactor_destroy (&self->actor);
    s_args_destroy (&self->args);
    free (self);
    *self_p = NULL;
}

bool
sb_ingest_ready (const sb_ingest_t *self)
{
    sb_ingest_t *me = (sb_ingest_t *) self;
    return atomic_load (&me->ready)
           && sb_store_alive (atomic_load (&me->last_ok_us), me->args->timeout_ms);
}

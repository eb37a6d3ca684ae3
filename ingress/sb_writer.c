/*  sb_writer: the journal writer and publisher actor of the ingress.

    DESIGN
    HTTP worker threads hand a request to the actor through a queue under
    one mutex (the boundary STYLE.md allows a lock at): each request holds
    its events encoded without their sequence numbers, and the thread waits
    on the request's own condition variable. An eventfd, polled by the actor
    beside its pipe, wakes the actor when the queue turns non-empty. The
    actor takes every request that is waiting (up to a batch cap), stamps
    each event with the next sequence number and its id (sb_event_stamp_into
    appends the fields in room the worker left: no re-encoding, no copy),
    appends it to the journal, and commits once: one fdatasync for the
    whole batch. That is the group commit: while one fdatasync runs, new
    requests queue and go into the next batch. The stored events are
    published on PUB as [topic, event] in sequence order, and then every
    request of the batch is answered. A request is all-or-nothing: its
    events are in one batch and one commit.
    If an append or the commit fails, the journal rolls back to its last
    commit, so every request of the batch is answered "not stored" (503:
    the provider retries) and no sequence number is skipped.

    The actor marks a batch answered under the lock and signals each
    thread after unlocking it, so a woken thread does not at once block on
    the lock the actor still holds (with a dozen requests a batch, that was
    a second sleep for most of them). A request taken by the actor has two
    holders, the waiting thread and the actor, and whichever lets go last
    frees it.

    A worker's whole wait is bounded from the start of its request (the
    moment civetweb handed it over, headers read), not from an earlier
    expiry. A request still queued S_QUEUED_MAX_MS after that start is
    withdrawn (never written) and answered 503: nothing was stored, and the
    provider's retry is the only copy. Once the actor took it, the worker
    waits for the commit's verdict instead, since a 503 now may be followed
    by the commit storing it, until S_ANSWER_MAX_MS after the start: just
    under the providers' own timeout (Twilio gives up after 15 s), past
    which waiting only holds the worker while the provider retries anyway.
    Then it answers 503 all the same, logged at error as "may still be
    stored": PostgreSQL keeps a retry once, by provider id or, for events
    without one, by content key (dispatcher/sb_store.c), so the cost is a
    duplicate record in the journal, not a duplicate event. A hung
    fdatasync (a dying disk) thus holds each worker at most
    S_ANSWER_MAX_MS, however many requests its batch took (up to
    S_BATCH_MAX_REQUESTS, more than the default pool). The
    events themselves are freed by the worker that encoded them, once
    answered. The queue costs a worker thread nothing until it posts: an
    earlier design gave each of the hundreds of worker threads a ZeroMQ
    socket, which cost ~60 KiB of memory per thread once used.

    Retention: every S_TRIM_MS (a poll timeout when idle, a check each
    time the queue is drained under load) the actor calls sb_journal_trim
    with the settings' age and size limits and `held_seq`, the lowest seq
    the consumers acknowledged (set by the replay server through
    sb_writer_hold; 0, holding everything, until it does). Trimming while
    the journal is unhealthy is fine, and may free the disk it needs.

    Readiness is not a flag the blocked actor would have to clear: the actor
    publishes when its journal write in progress (a commit, a probe, a
    trim) began, `busy_since_us`, and sb_writer_ready reads its age. A
    write running longer than S_STALL_MS makes /readyz answer 503 (a load
    balancer sends elsewhere) until it returns.

    Shared state: the request queue (under `lock`), and the atomics
    `ready` and `busy_since_us` (read by /readyz), `committed` (read by the
    replay server), `held_seq` (written by it) and `next_seq` (read at
    start-up); the journal and the PUB socket belong to the actor thread
    (only the journal's first seq is read from others, by
    sb_writer_first_seq, which the journal allows). `committed` (the last
    seq a STORED commit made durable) is raised after the commit and before
    the events are published, so a subscriber that sees seq N on PUB can
    always replay up to N, and a replay never reads a record a failed
    commit may roll back.
*/
#include "sb_writer.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb_actor.h"
#include "sb_log.h"
#include "sb_time.h"

#define S_BATCH_MAX_REQUESTS 512
#define S_TRIM_MS 2000  //  journal retention runs at most this often
//  Bounds on a worker's wait, from the start of its request (see DESIGN):
//  still queued at S_QUEUED_MAX_MS, it is withdrawn; taken, it waits for
//  the verdict until S_ANSWER_MAX_MS, under the providers' 15 s timeout.
//  When the request reached the writer late (a slow body), each allows at
//  least S_QUEUED_MIN_MS from the hand-off.
#define S_QUEUED_MAX_MS 10000
#define S_ANSWER_MAX_MS 14000
#define S_QUEUED_MIN_MS 1000
//  /readyz answers 503 while a journal write has been running this long.
#define S_STALL_MS 3000

typedef enum { S_QUEUED, S_TAKEN, S_DONE } s_state_t;

//  One request: the events of one webhook, stored all or none.
typedef struct s_pending_t {
    struct s_pending_t *next;  //  queue link
    size_t count;              //  events
    uint8_t **data;            //  encoded events (stamped in place by the actor)
    size_t *size;              //  their sizes
    char (*topic)[96];         //  their topics (the three arrays follow the struct)
    uint64_t first_seq;        //  seq of the first event, when stored
    bool ok;                   //  stamped (actor's working state)
    bool stored;               //  the answer
    s_state_t state;           //  under the writer's lock
    pthread_cond_t done;       //  signalled when the state becomes S_DONE
    atomic_int refs;           //  holders: the worker, and the actor once it took it
} s_pending_t;

struct sb_writer_t {
    zactor_t *actor;                    //  the actor thread
    sb_journal_t *journal;              //  owned; the actor thread's (sb_writer_first_seq aside)
    char *pub_endpoints;                //  SB_PUB, comma-separated
    const sb_zmq_security_t *security;  //  borrowed: CURVE keys, the plaintext rule
    char *ingress_id;                   //  SB_INGRESS_ID
    char *journal_dir;                  //  SB_JOURNAL_DIR
    int pub_hwm;                        //  SB_PUB_HWM: events queued per subscriber
    char epoch[40];                     //  the journal's epoch
    size_t stamp_room;                  //  bytes an event's stamp may take (sb_event_stamp_room)
    sb_metrics_t *metrics;              //  borrowed
    pthread_mutex_t lock;               //  guards the queue and every request's state
    s_pending_t *head, *tail;           //  requests waiting for the actor
    int wake_fd;                        //  eventfd: the queue turned non-empty
    atomic_bool ready;                  //  journal healthy and sockets bound
    atomic_int_fast64_t busy_since_us;  //  start of the journal write in progress (0: none)
    atomic_uint_fast64_t next_seq;      //  next sequence number to assign
    atomic_uint_fast64_t committed;     //  last durable sequence number (0: none)
    sb_journal_trim_t retention;        //  age and size limits from the settings
    atomic_uint_fast64_t held_seq;      //  consumers' lowest acked seq (sb_writer_hold)
};

struct sb_writer_client_t {
    sb_writer_t *writer;            //  borrowed
    sb_log_every_t log_withdrawn;   //  requests withdrawn from the queue at their deadline
    sb_log_every_t log_slow;        //  requests that waited past S_QUEUED_MAX_MS for a verdict
    sb_log_every_t log_no_verdict;  //  requests answered 503 at S_ANSWER_MAX_MS, maybe stored
};

//  Actor state, private to the actor thread.
typedef struct {
    sb_writer_t *writer;              //  the shared part (journal, ids, atomics)
    zsock_t *pipe;                    //  to the owner
    zsock_t *pub;                     //  event stream
    bool terminated;                  //  $TERM received
    sb_metric_t *m_events;            //  events stored
    sb_metric_t *m_requests_failed;   //  requests answered "not stored"
    sb_metric_t *m_commits;           //  commits
    sb_metric_t *m_commit_seconds;    //  commit latency
    sb_metric_t *m_batch;             //  requests per commit
    sb_metric_t *m_published;         //  events published
    sb_metric_t *m_journal_bytes;     //  journal size
    sb_metric_t *m_journal_segments;  //  journal segment files
    sb_metric_t *m_healthy;           //  1 while the journal writes
    sb_metric_t *m_trimmed;           //  segments removed by retention
    sb_metric_t *m_dropped;           //  records removed before consumers acknowledged them
    sb_metric_t *m_held;              //  bytes kept only for consumers
    int64_t next_trim_ms;             //  when retention runs next (monotonic)
} self_t;

static self_t *
s_self_new (zsock_t *pipe, sb_writer_t *writer)
{
    self_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->writer = writer;
    self->pipe = pipe;
    self->pub = zsock_new (ZMQ_PUB);
    if (!self->pub)
        goto fail;
    zsock_set_sndhwm (self->pub, writer->pub_hwm);
    zsock_set_linger (self->pub, 1000);
    //  CURVE when keys are set; a non-loopback plaintext bind is refused.
    if (sb_zmq_bind (writer->security, self->pub, "PUB", "SB_PUB", writer->pub_endpoints))
        goto fail;
    sb_metrics_t *m = writer->metrics;
    self->m_events = sb_metrics_counter (m, "sb_journal_events_total",
                                         "Events made durable in the journal", NULL);
    self->m_requests_failed =
        sb_metrics_counter (m, "sb_journal_failed_requests_total",
                            "Requests answered 503 because the journal could not store them", NULL);
    self->m_commits = sb_metrics_counter (m, "sb_journal_commits_total",
                                          "Group commits (one fdatasync each)", NULL);
    static const double commit_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01,
                                           0.025,  0.05,  0.1,   0.25,  1};
    self->m_commit_seconds = sb_metrics_histogram (
        m, "sb_journal_commit_seconds", "Time to write and fdatasync one batch", NULL,
        commit_bounds, sizeof commit_bounds / sizeof commit_bounds[0]);
    static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
    self->m_batch =
        sb_metrics_histogram (m, "sb_journal_batch_requests", "Requests per group commit", NULL,
                              batch_bounds, sizeof batch_bounds / sizeof batch_bounds[0]);
    self->m_published = sb_metrics_counter (m, "sb_published_events_total",
                                            "Events published on the PUB socket", NULL);
    self->m_journal_bytes =
        sb_metrics_gauge (m, "sb_journal_bytes", "Bytes in the journal's segment files", NULL);
    self->m_journal_segments =
        sb_metrics_gauge (m, "sb_journal_segments", "Journal segment files", NULL);
    self->m_healthy =
        sb_metrics_gauge (m, "sb_journal_healthy", "1 while the journal accepts writes", NULL);
    self->m_trimmed = sb_metrics_counter (m, "sb_journal_trimmed_segments_total",
                                          "Journal segments removed by retention", NULL);
    self->m_dropped = sb_metrics_counter (
        m, "sb_journal_dropped_unacked_events_total",
        "Journal records removed past SB_JOURNAL_HARD_MAX_BYTES before every consumer "
        "acknowledged them",
        NULL);
    self->m_held = sb_metrics_gauge (
        m, "sb_journal_retention_held_bytes",
        "Journal bytes kept past age and size limits only because a consumer has not "
        "acknowledged them",
        NULL);
    self->next_trim_ms = zclock_mono () + S_TRIM_MS;
    sb_metric_set (self->m_healthy, 1);
    sb_metric_set (self->m_journal_bytes, (int64_t) sb_journal_size (writer->journal));
    sb_metric_set (self->m_journal_segments, (int64_t) sb_journal_segments (writer->journal));
    return self;
fail:
    zsock_destroy (&self->pub);
    free (self);
    return NULL;
}

static void
s_self_destroy (self_t **self_p)
{
    if (!*self_p)
        return;
    self_t *self = *self_p;
    zsock_destroy (&self->pub);
    free (self);
    *self_p = NULL;
}

static void
s_pending_free (s_pending_t *req)
{
    for (size_t i = 0; i < req->count; i++)
        free (req->data[i]);
    pthread_cond_destroy (&req->done);
    free (req);  //  the arrays are in the same block (s_pending_new)
}

//  One holder lets go; the last frees the request.
static void
s_pending_release (s_pending_t *req)
{
    if (atomic_fetch_sub (&req->refs, 1) == 1)
        s_pending_free (req);
}

//  Stamp the events of one request with the sequence numbers from *seq on,
//  in place: the worker thread encoded each with room for its stamp, so
//  the actor allocates nothing and the worker frees its own buffers (a
//  buffer allocated here and freed there would sit in that thread's malloc
//  cache, for every one of the hundreds of threads). false when a stamp
//  does not fit (a bug): the request is then answered "not stored" and
//  appends nothing, so the sequence stays gapless.
static bool
s_stamp_request (self_t *self, s_pending_t *req, uint64_t *seq)
{
    sb_writer_t *w = self->writer;
    uint64_t next = *seq;
    req->first_seq = next;
    for (size_t i = 0; i < req->count; i++) {
        size_t stamped = sb_event_stamp_into (req->data[i], req->size[i], w->stamp_room, next,
                                              w->ingress_id, w->epoch);
        if (!stamped) {
            sb_error ("writer", "no room to stamp an event seq=%llu", (unsigned long long) next);
            return false;
        }
        req->size[i] = stamped;
        next++;
    }
    *seq = next;
    return true;
}

//  Append the stamped events of one request. false when the journal
//  refused one (it has then rolled back to its last commit).
static bool
s_append_request (self_t *self, s_pending_t *req)
{
    uint64_t expected = req->first_seq;
    for (size_t i = 0; i < req->count; i++) {
        uint64_t got = 0;
        if (sb_journal_append (self->writer->journal, req->data[i], req->size[i], &got)
            != SB_JOURNAL_STORED)
            return false;
        assert (got == expected);
        expected++;
    }
    return true;
}

static void
s_publish (self_t *self, s_pending_t *req)
{
    void *pub = zsock_resolve (self->pub);
    for (size_t i = 0; i < req->count; i++) {
        //  PUB never blocks: past the high-water mark a slow subscriber
        //  misses events and catches up from the journal.
        zmq_send (pub, req->topic[i], strlen (req->topic[i]), ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (pub, req->data[i], req->size[i], ZMQ_DONTWAIT);
        sb_metric_add (self->m_published, 1);
    }
}

//  Take up to the batch cap of waiting requests off the queue.
static size_t
s_take (sb_writer_t *w, s_pending_t **batch)
{
    size_t count = 0;
    pthread_mutex_lock (&w->lock);
    while (w->head && count < S_BATCH_MAX_REQUESTS) {
        s_pending_t *req = w->head;
        w->head = req->next;
        req->next = NULL;
        req->state = S_TAKEN;
        atomic_fetch_add (&req->refs, 1);
        batch[count++] = req;
    }
    if (!w->head)
        w->tail = NULL;
    pthread_mutex_unlock (&w->lock);
    return count;
}

static void
s_self_handle_requests (self_t *self)
{
    sb_writer_t *w = self->writer;
    uint64_t ignored;
    if (read (w->wake_fd, &ignored, sizeof ignored) < 0 && errno != EAGAIN)
        sb_debug ("writer", "eventfd read failed errno=%d", errno);
    s_pending_t *batch[S_BATCH_MAX_REQUESTS];
    size_t count;
    //  Everything already waiting is the group; requests that arrive during
    //  the commit make the next one.
    while ((count = s_take (w, batch)) > 0) {
        int64_t started = zclock_usecs ();
        atomic_store (&w->busy_since_us, sb_time_mono_us ());
        uint64_t seq = sb_journal_next_seq (w->journal);
        for (size_t i = 0; i < count; i++)
            batch[i]->ok = s_stamp_request (self, batch[i], &seq);
        bool stored = true;
        size_t events = 0;
        for (size_t i = 0; i < count && stored; i++)
            if (batch[i]->ok) {
                stored = s_append_request (self, batch[i]);
                events += batch[i]->count;
            }
        if (stored)
            stored = sb_journal_commit (w->journal) == SB_JOURNAL_STORED;
        atomic_store (&w->busy_since_us, 0);
        sb_metric_observe (self->m_commit_seconds, (double) (zclock_usecs () - started) / 1e6);
        sb_metric_add (self->m_commits, 1);
        sb_metric_observe (self->m_batch, (double) count);
        atomic_store (&w->ready, sb_journal_healthy (w->journal));
        atomic_store (&w->next_seq, sb_journal_next_seq (w->journal));
        if (stored)
            atomic_store (&w->committed, sb_journal_next_seq (w->journal) - 1);
        sb_metric_set (self->m_healthy, sb_journal_healthy (w->journal) ? 1 : 0);
        if (stored) {
            sb_metric_add (self->m_events, events);
            for (size_t i = 0; i < count; i++)
                if (batch[i]->ok)
                    s_publish (self, batch[i]);
            sb_metric_set (self->m_journal_bytes, (int64_t) sb_journal_size (w->journal));
            sb_metric_set (self->m_journal_segments, (int64_t) sb_journal_segments (w->journal));
        }
        //  Answer every request, then wake the threads (outside the lock,
        //  see above) and let go of the requests.
        size_t failed = 0;
        pthread_mutex_lock (&w->lock);
        for (size_t i = 0; i < count; i++) {
            s_pending_t *req = batch[i];
            req->stored = stored && req->ok;
            failed += !req->stored;
            req->state = S_DONE;
        }
        pthread_mutex_unlock (&w->lock);
        for (size_t i = 0; i < count; i++) {
            pthread_cond_signal (&batch[i]->done);
            s_pending_release (batch[i]);
        }
        sb_metric_add (self->m_requests_failed, failed);
    }
}

//  Journal retention, then the journal gauges.
static void
s_trim (self_t *self)
{
    sb_writer_t *w = self->writer;
    sb_journal_trim_t policy = w->retention;
    policy.acked_seq = atomic_load (&w->held_seq);
    sb_journal_trim_stats_t stats;
    //  A failure is logged by the journal; the next turn tries again.
    atomic_store (&w->busy_since_us, sb_time_mono_us ());
    sb_journal_trim (w->journal, &policy, &stats);
    atomic_store (&w->busy_since_us, 0);
    if (stats.segments > 0) {
        sb_metric_add (self->m_trimmed, stats.segments);
        sb_metric_add (self->m_dropped, stats.dropped_unacked);
        sb_metric_set (self->m_journal_bytes, (int64_t) sb_journal_size (w->journal));
        sb_metric_set (self->m_journal_segments, (int64_t) sb_journal_segments (w->journal));
    }
    sb_metric_set (self->m_held, (int64_t) stats.held_bytes);
    self->next_trim_ms = zclock_mono () + S_TRIM_MS;
}

static void
s_writer_actor (zsock_t *pipe, void *args)
{
    sb_writer_t *writer = (sb_writer_t *) args;
    self_t *self = s_self_new (pipe, writer);
    sb_actor_started (pipe, self != NULL);
    if (!self)
        return;
    atomic_store (&writer->ready, true);
    while (!self->terminated) {
        //  While the journal cannot write, probe it every second (a commit
        //  with nothing appended writes a probe file), so readiness comes
        //  back with the disk even when no request arrives meanwhile.
        bool healthy = sb_journal_healthy (writer->journal);
        int64_t wait = self->next_trim_ms - zclock_mono ();
        if (wait < 0)
            wait = 0;
        if (!healthy && wait > 1000)
            wait = 1000;
        zmq_pollitem_t items[2] = {{zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0},
                                   {NULL, writer->wake_fd, ZMQ_POLLIN, 0}};
        int rc = zmq_poll (items, 2, (long) wait);
        if (rc < 0 && zmq_errno () != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            self->terminated = sb_actor_pipe_says_stop (self->pipe, "writer");
        else if (items[1].revents & ZMQ_POLLIN)
            s_self_handle_requests (self);
        else if (rc == 0 && !healthy) {
            atomic_store (&writer->busy_since_us, sb_time_mono_us ());
            bool stored = sb_journal_commit (writer->journal) == SB_JOURNAL_STORED;
            atomic_store (&writer->busy_since_us, 0);
            if (stored) {
                atomic_store (&writer->ready, true);
                sb_metric_set (self->m_healthy, 1);
            }
        }
        //  When idle, and each time the queue is drained under load.
        if (!self->terminated && zclock_mono () >= self->next_trim_ms)
            s_trim (self);
    }
    atomic_store (&writer->ready, false);
    s_self_destroy (&self);
}

sb_writer_t *
sb_writer_new (const sb_config_t *config, const sb_zmq_security_t *security, sb_metrics_t *metrics)
{
    sb_writer_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->security = security;
    self->metrics = metrics;
    self->journal =
        sb_journal_open (sb_config_str (config, SB_CFG_SB_JOURNAL_DIR),
                         (uint64_t) sb_config_int (config, SB_CFG_SB_JOURNAL_SEGMENT_BYTES));
    if (!self->journal)
        goto fail;
    snprintf (self->epoch, sizeof self->epoch, "%s", sb_journal_epoch (self->journal));
    self->stamp_room =
        sb_event_stamp_room (sb_config_str (config, SB_CFG_SB_INGRESS_ID), self->epoch);
    atomic_init (&self->next_seq, sb_journal_next_seq (self->journal));
    //  What the journal holds at open survived the restart: committed.
    atomic_init (&self->committed, sb_journal_next_seq (self->journal) - 1);
    //  Everything is held until the replay server says what consumers acked.
    atomic_init (&self->held_seq, 0);
    self->retention.max_age_seconds =
        (uint64_t) sb_config_int (config, SB_CFG_SB_JOURNAL_RETAIN_HOURS) * 3600;
    self->retention.max_bytes = (uint64_t) sb_config_int (config, SB_CFG_SB_JOURNAL_MAX_BYTES);
    self->retention.hard_max_bytes =
        (uint64_t) sb_config_int (config, SB_CFG_SB_JOURNAL_HARD_MAX_BYTES);
    atomic_init (&self->ready, false);
    atomic_init (&self->busy_since_us, 0);
    pthread_mutex_init (&self->lock, NULL);
    self->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->ingress_id = strdup (sb_config_str (config, SB_CFG_SB_INGRESS_ID));
    self->journal_dir = strdup (sb_config_str (config, SB_CFG_SB_JOURNAL_DIR));
    self->pub_hwm = (int) sb_config_int (config, SB_CFG_SB_PUB_HWM);
    self->pub_endpoints = strdup (sb_config_str (config, SB_CFG_SB_PUB));
    if (!self->ingress_id || !self->journal_dir || !self->pub_endpoints || self->wake_fd < 0)
        goto fail;
    self->actor = sb_actor_new (s_writer_actor, self);
    if (!self->actor)
        goto fail;
    sb_info ("writer", "journal open dir=%s next_seq=%llu epoch=%s",
             sb_config_str (config, SB_CFG_SB_JOURNAL_DIR),
             (unsigned long long) atomic_load (&self->next_seq), self->epoch);
    return self;
fail:
    sb_writer_destroy (&self);
    return NULL;
}

void
sb_writer_destroy (sb_writer_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    sb_writer_t *self = *self_p;
    zactor_destroy (&self->actor);
    //  Requests still queued (none once HTTP has stopped) are answered "not stored".
    pthread_mutex_lock (&self->lock);
    for (s_pending_t *req = self->head; req; req = req->next) {
        req->stored = false;
        req->state = S_DONE;
        pthread_cond_signal (&req->done);
    }
    self->head = self->tail = NULL;
    pthread_mutex_unlock (&self->lock);
    sb_journal_destroy (&self->journal);
    if (self->wake_fd >= 0)
        close (self->wake_fd);
    pthread_mutex_destroy (&self->lock);
    free (self->pub_endpoints);
    free (self->ingress_id);
    free (self->journal_dir);
    free (self);
    *self_p = NULL;
}

bool
sb_writer_ready (const sb_writer_t *self)
{
    sb_writer_t *w = (sb_writer_t *) self;
    int64_t busy_since = atomic_load (&w->busy_since_us);
    if (busy_since != 0 && sb_time_mono_us () - busy_since >= (int64_t) S_STALL_MS * 1000)
        return false;
    return atomic_load (&w->ready);
}

uint64_t
sb_writer_next_seq (const sb_writer_t *self)
{
    return atomic_load (&((sb_writer_t *) self)->next_seq);
}

const char *
sb_writer_epoch (const sb_writer_t *self)
{
    return self->epoch;
}

uint64_t
sb_writer_committed_seq (const sb_writer_t *self)
{
    return atomic_load (&((sb_writer_t *) self)->committed);
}

const char *
sb_writer_journal_dir (const sb_writer_t *self)
{
    return self->journal_dir;
}

uint64_t
sb_writer_first_seq (const sb_writer_t *self)
{
    return sb_journal_first_seq (self->journal);
}

void
sb_writer_hold (sb_writer_t *self, uint64_t acked_seq)
{
    atomic_store (&self->held_seq, acked_seq);
}

sb_writer_client_t *
sb_writer_client_new (sb_writer_t *writer)
{
    sb_writer_client_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->writer = writer;
    self->log_withdrawn = (sb_log_every_t) SB_LOG_EVERY (1000);
    self->log_slow = (sb_log_every_t) SB_LOG_EVERY (1000);
    self->log_no_verdict = (sb_log_every_t) SB_LOG_EVERY (1000);
    return self;
}

void
sb_writer_client_destroy (sb_writer_client_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

//  A new request holding the encoded events, or NULL when out of memory.
//  One allocation holds the request and its three arrays (data, sizes,
//  topics), in that order; only the encoded events are separate.
static s_pending_t *
s_pending_new (sb_event_t *const *events, size_t count, size_t stamp_room)
{
    size_t per_event = sizeof (uint8_t *) + sizeof (size_t) + sizeof (char[96]);
    if (count > (SIZE_MAX - sizeof (s_pending_t)) / per_event)
        return NULL;
    s_pending_t *req = calloc (1, sizeof *req + count * per_event);
    if (!req)
        return NULL;
    req->data = (uint8_t **) (req + 1);
    req->size = (size_t *) (req->data + count);
    req->topic = (char (*)[96]) (req->size + count);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&req->done, &attr);
    pthread_condattr_destroy (&attr);
    req->count = count;
    atomic_init (&req->refs, 1);
    for (size_t i = 0; i < count; i++)
        if (!(req->data[i] = sb_event_encode_room (events[i], stamp_room, &req->size[i]))
            || sb_event_topic (events[i], req->topic[i], sizeof req->topic[i]) < 0)
            goto fail;
    return req;
fail:
    s_pending_free (req);
    return NULL;
}

//  A deadline ms after started_us (sb_time_mono_us), or min_ms after now if
//  that is later, on the clock the requests' conditions use (monotonic).
static struct timespec
s_deadline (int64_t started_us, int ms, int64_t now_us, int min_ms)
{
    int64_t at = started_us + (int64_t) ms * 1000;
    if (at < now_us + (int64_t) min_ms * 1000)
        at = now_us + (int64_t) min_ms * 1000;
    return (struct timespec){.tv_sec = (time_t) (at / 1000000),
                             .tv_nsec = (long) (at % 1000000) * 1000L};
}

sb_journal_result_t
sb_writer_client_store (sb_writer_client_t *self, sb_event_t *const *events, size_t count,
                        int64_t started_us, uint64_t *first_seq)
{
    sb_writer_t *w = self->writer;
    s_pending_t *req = s_pending_new (events, count, w->stamp_room);
    if (!req)
        return SB_JOURNAL_NOT_STORED;
    pthread_mutex_lock (&w->lock);
    bool was_empty = w->head == NULL;
    if (w->tail)
        w->tail->next = req;
    else
        w->head = req;
    w->tail = req;
    pthread_mutex_unlock (&w->lock);
    if (was_empty) {
        uint64_t one = 1;
        if (write (w->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
            sb_error ("writer", "cannot wake the journal writer errno=%d", errno);
    }
    //  Both bounds from the request's start (see DESIGN).
    int64_t handed_us = sb_time_mono_us ();
    struct timespec queued_until =
        s_deadline (started_us, S_QUEUED_MAX_MS, handed_us, S_QUEUED_MIN_MS);
    struct timespec answer_until =
        s_deadline (started_us, S_ANSWER_MAX_MS, handed_us, S_QUEUED_MIN_MS);
    pthread_mutex_lock (&w->lock);
    while (req->state != S_DONE) {
        bool queued = req->state == S_QUEUED;
        int rc =
            pthread_cond_timedwait (&req->done, &w->lock, queued ? &queued_until : &answer_until);
        if (rc != ETIMEDOUT || req->state == S_DONE)
            continue;
        //  Taken since: its events may be committed any moment, and a 503
        //  now would have the provider retry what is then stored. Wait for
        //  the verdict, up to the answer's bound.
        if (queued && req->state == S_TAKEN)
            continue;
        break;
    }
    s_state_t state = req->state;
    if (state == S_QUEUED) {
        //  Still in the queue: take it out, it will never be written.
        s_pending_t **link = &w->head;
        s_pending_t *prev = NULL;
        while (*link && *link != req) {
            prev = *link;
            link = &(*link)->next;
        }
        if (*link)
            *link = req->next;
        if (w->tail == req)
            w->tail = prev;
    }
    bool stored = req->stored;
    uint64_t first = req->first_seq;
    pthread_mutex_unlock (&w->lock);
    int64_t waited_ms = (sb_time_mono_us () - started_us) / 1000;
    if (state == S_QUEUED) {
        s_pending_free (req);
        sb_log_every (&self->log_withdrawn, SB_LOG_ERROR, "writer",
                      "journal writer did not take the request in time: withdrawn, never "
                      "written, answered 503 waited_ms=%" PRId64 " bound_ms=%d",
                      waited_ms, S_QUEUED_MAX_MS);
        return SB_JOURNAL_NOT_STORED;
    }
    if (state == S_TAKEN) {
        //  Being written: the actor frees it when it lets go.
        s_pending_release (req);
        sb_log_every (&self->log_no_verdict, SB_LOG_ERROR, "writer",
                      "journal commit gave no verdict in time: answered 503, but the events may "
                      "still be stored (a provider retry is deduplicated by PostgreSQL) "
                      "waited_ms=%" PRId64 " bound_ms=%d",
                      waited_ms, S_ANSWER_MAX_MS);
        return SB_JOURNAL_NOT_STORED;
    }
    if (waited_ms >= S_QUEUED_MAX_MS)
        sb_log_every (&self->log_slow, SB_LOG_WARN, "writer",
                      "journal commit slower than the queue bound, waited for its verdict "
                      "waited_ms=%" PRId64 " stored=%s",
                      waited_ms, stored ? "yes" : "no");
    //  The actor is done with the events: free them in the thread that
    //  allocated them (see s_stamp_request), whoever frees the rest.
    for (size_t i = 0; i < req->count; i++) {
        free (req->data[i]);
        req->data[i] = NULL;
    }
    s_pending_release (req);
    if (stored && first_seq)
        *first_seq = first;
    return stored ? SB_JOURNAL_STORED : SB_JOURNAL_NOT_STORED;
}

/*  sb_writer: the journal writer and publisher actor of the ingress.

    DESIGN
    HTTP worker threads each own a DEALER socket connected to the actor's
    inproc ROUTER. A request is one multipart message:
        [request id (8 bytes)] [topic] [event] [topic] [event] ...
    where each event is encoded without its sequence number. The actor takes
    every request that is waiting (up to a batch cap), stamps each event with
    the next sequence number and its id (sb_event_stamp appends the fields,
    no re-encoding), appends it to the journal, and commits once: one
    fdatasync for the whole batch. That is the group commit: while one
    fdatasync runs, new requests queue on the socket and go into the next
    batch. Then it answers every request of the batch
        [request id] ["S" stored | "N" not stored] [first seq, 8 bytes LE]
    and publishes the stored events on PUB as [topic, event], in sequence
    order. A request is all-or-nothing: its events are in one batch and one
    commit. If an append or the commit fails, the journal rolls back to its
    last commit, so every request of the batch is answered "not stored"
    (503: the provider retries) and no sequence number is skipped.

    The client stamps each request with an id so that an answer that comes
    after the client gave up (timeout) is recognized and dropped.

    Shared state: only the atomics `ready`, `next_seq` and `committed`,
    read by /readyz, /metrics and the replay server; the journal and sockets
    belong to the actor thread. `committed` (the last seq a STORED commit
    made durable) is raised after the commit and before the events are
    published, so a subscriber that sees seq N on PUB can always replay up
    to N, and a replay never reads a record a failed commit may roll back.
*/
#include "sb_writer.h"

#include <assert.h>
#include <czmq.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sb_log.h"

#define S_BATCH_MAX_REQUESTS 512
#define S_BATCH_MAX_BYTES (16u * 1024 * 1024)

struct sb_writer_t {
    zactor_t *actor;            //  the actor thread
    sb_journal_t *journal;      //  owned; used by the actor thread only
    char *endpoint;             //  inproc endpoint of the actor's ROUTER
    char *pub_endpoints;        //  SB_PUB, comma-separated
    char *ingress_id;           //  SB_INGRESS_ID
    char *journal_dir;          //  SB_JOURNAL_DIR
    int pub_hwm;                //  SB_PUB_HWM: events queued per subscriber
    char epoch[40];             //  the journal's epoch
    sb_metrics_t *metrics;      //  borrowed
    atomic_bool ready;          //  journal healthy and sockets bound
    atomic_uint_fast64_t next_seq;  //  next sequence number to assign
    atomic_uint_fast64_t committed;  //  last durable sequence number (0: none)
    atomic_uint_fast64_t request_ids;  //  source of client request ids
};

struct sb_writer_client_t {
    zsock_t *dealer;   //  connected to the actor's ROUTER
    sb_writer_t *writer;  //  borrowed
};

//  Actor state, private to the actor thread.
typedef struct {
    sb_writer_t *writer;  //  the shared part (journal, ids, atomics)
    zsock_t *pipe;        //  to the owner
    zsock_t *router;      //  requests from HTTP threads
    zsock_t *pub;         //  event stream
    zpoller_t *poller;    //  pipe + router
    bool terminated;      //  $TERM received
    sb_metric_t *m_events;        //  events stored
    sb_metric_t *m_requests_failed;  //  requests answered "not stored"
    sb_metric_t *m_commits;       //  commits
    sb_metric_t *m_commit_seconds;  //  commit latency
    sb_metric_t *m_batch;         //  requests per commit
    sb_metric_t *m_published;     //  events published
    sb_metric_t *m_journal_bytes; //  journal size
    sb_metric_t *m_journal_segments;  //  journal segment files
    sb_metric_t *m_healthy;       //  1 while the journal writes
} self_t;

static int
s_bind_all (zsock_t *sock, const char *endpoints)
{
    char *copy = strdup (endpoints);
    if (!copy)
        return -1;
    int rc = 0;
    char *save = NULL;
    for (char *ep = strtok_r (copy, ",", &save); ep; ep = strtok_r (NULL, ",", &save)) {
        if (zsock_bind (sock, "%s", ep) < 0) {
            sb_error ("writer", "cannot bind PUB endpoint=%s error=\"%s\"", ep,
                      zmq_strerror (zmq_errno ()));
            rc = -1;
            break;
        }
        sb_info ("writer", "publishing endpoint=%s", ep);
    }
    free (copy);
    return rc;
}

static self_t *
s_self_new (zsock_t *pipe, sb_writer_t *writer)
{
    self_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->writer = writer;
    self->pipe = pipe;
    self->router = zsock_new (ZMQ_ROUTER);
    self->pub = zsock_new (ZMQ_PUB);
    if (!self->router || !self->pub)
        goto fail;
    zsock_set_sndhwm (self->pub, writer->pub_hwm);
    zsock_set_linger (self->pub, 1000);
    //  Unbounded on the inproc side: HTTP threads wait for their answer,
    //  so there is at most one request per thread in flight.
    zsock_set_rcvhwm (self->router, 0);
    zsock_set_sndhwm (self->router, 0);
    if (zsock_bind (self->router, "%s", writer->endpoint) < 0)
        goto fail;
    if (s_bind_all (self->pub, writer->pub_endpoints))
        goto fail;
    self->poller = zpoller_new (self->pipe, self->router, NULL);
    if (!self->poller)
        goto fail;
    sb_metrics_t *m = writer->metrics;
    self->m_events = sb_metrics_counter (m, "sb_journal_events_total",
                                         "Events made durable in the journal", NULL);
    self->m_requests_failed = sb_metrics_counter (
        m, "sb_journal_failed_requests_total",
        "Requests answered 503 because the journal could not store them", NULL);
    self->m_commits = sb_metrics_counter (m, "sb_journal_commits_total",
                                          "Group commits (one fdatasync each)", NULL);
    static const double commit_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01,
                                           0.025, 0.05, 0.1, 0.25, 1};
    self->m_commit_seconds = sb_metrics_histogram (
        m, "sb_journal_commit_seconds", "Time to write and fdatasync one batch", NULL,
        commit_bounds, sizeof commit_bounds / sizeof commit_bounds[0]);
    static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
    self->m_batch = sb_metrics_histogram (m, "sb_journal_batch_requests",
                                          "Requests per group commit", NULL, batch_bounds,
                                          sizeof batch_bounds / sizeof batch_bounds[0]);
    self->m_published = sb_metrics_counter (m, "sb_published_events_total",
                                            "Events published on the PUB socket", NULL);
    self->m_journal_bytes = sb_metrics_gauge (m, "sb_journal_bytes",
                                              "Bytes in the journal's segment files", NULL);
    self->m_journal_segments = sb_metrics_gauge (m, "sb_journal_segments",
                                                 "Journal segment files", NULL);
    self->m_healthy = sb_metrics_gauge (m, "sb_journal_healthy",
                                        "1 while the journal accepts writes", NULL);
    sb_metric_set (self->m_healthy, 1);
    sb_metric_set (self->m_journal_bytes, (int64_t) sb_journal_size (writer->journal));
    sb_metric_set (self->m_journal_segments, (int64_t) sb_journal_segments (writer->journal));
    return self;
fail:
    zsock_destroy (&self->router);
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
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->router);
    zsock_destroy (&self->pub);
    free (self);
    *self_p = NULL;
}

static void
s_self_handle_pipe (self_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command) {
        self->terminated = true;
        return;
    }
    if (streq (command, "$TERM"))
        self->terminated = true;
    else
        sb_error ("writer", "unexpected actor command=%s", command);
    zstr_free (&command);
}

static int64_t
s_now_us (void)
{
    return zclock_usecs ();
}

//  One request of the batch being written.
typedef struct {
    zmsg_t *msg;          //  [identity, request id, topic, event, ...] (events stamped in place)
    uint64_t first_seq;   //  seq of its first event
    bool ok;              //  its events were appended
} s_request_t;

static void
s_reply (self_t *self, s_request_t *req, bool stored)
{
    zframe_t *identity = zmsg_first (req->msg);
    zframe_t *reqid = zmsg_next (req->msg);
    uint8_t seq_le[8];
    for (int i = 0; i < 8; i++)
        seq_le[i] = (uint8_t) (req->first_seq >> (8 * i));
    zmsg_t *reply = zmsg_new ();
    zmsg_addmem (reply, zframe_data (identity), zframe_size (identity));
    zmsg_addmem (reply, zframe_data (reqid), zframe_size (reqid));
    zmsg_addstr (reply, stored ? "S" : "N");
    zmsg_addmem (reply, seq_le, sizeof seq_le);
    if (zmsg_send (&reply, self->router))
        zmsg_destroy (&reply);
}

//  Stamp the events of one request with the sequence numbers from *seq on
//  (in place). false when memory runs out: the request is then answered
//  "not stored" and appends nothing, so the sequence stays gapless.
static bool
s_stamp_request (self_t *self, s_request_t *req, uint64_t *seq)
{
    sb_writer_t *w = self->writer;
    uint64_t next = *seq;
    zframe_t *frame = zmsg_first (req->msg);  //  identity
    frame = zmsg_next (req->msg);             //  request id
    req->first_seq = next;
    while ((frame = zmsg_next (req->msg))) {  //  topic
        zframe_t *event = zmsg_next (req->msg);
        size_t stamped_size = 0;
        uint8_t *stamped = sb_event_stamp (zframe_data (event), zframe_size (event), next,
                                           w->ingress_id, w->epoch, &stamped_size);
        if (!stamped) {
            sb_error ("writer", "out of memory stamping an event seq=%llu",
                      (unsigned long long) next);
            return false;
        }
        zframe_reset (event, stamped, stamped_size);
        free (stamped);
        next++;
    }
    *seq = next;
    return true;
}

//  Append the stamped events of one request. false when the journal
//  refused one (it has then rolled back to its last commit).
static bool
s_append_request (self_t *self, s_request_t *req)
{
    sb_writer_t *w = self->writer;
    zframe_t *frame = zmsg_first (req->msg);
    frame = zmsg_next (req->msg);
    uint64_t expected = req->first_seq;
    while ((frame = zmsg_next (req->msg))) {
        zframe_t *event = zmsg_next (req->msg);
        uint64_t got = 0;
        if (sb_journal_append (w->journal, zframe_data (event), zframe_size (event), &got)
            != SB_JOURNAL_STORED)
            return false;
        assert (got == expected);
        expected++;
    }
    return true;
}

static void
s_publish (self_t *self, s_request_t *req)
{
    zframe_t *frame = zmsg_first (req->msg);
    frame = zmsg_next (req->msg);
    while ((frame = zmsg_next (req->msg))) {
        zframe_t *event = zmsg_next (req->msg);
        //  PUB never blocks: past the high-water mark a slow subscriber
        //  misses events and catches up from the journal.
        zmq_send (zsock_resolve (self->pub), zframe_data (frame), zframe_size (frame),
                  ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (zsock_resolve (self->pub), zframe_data (event), zframe_size (event),
                  ZMQ_DONTWAIT);
        sb_metric_add (self->m_published, 1);
    }
}

static void
s_self_handle_requests (self_t *self)
{
    sb_writer_t *w = self->writer;
    s_request_t batch[S_BATCH_MAX_REQUESTS];
    size_t count = 0;
    size_t bytes = 0;
    //  Take every request already waiting: that is the group.
    while (count < S_BATCH_MAX_REQUESTS && bytes < S_BATCH_MAX_BYTES) {
        if (count > 0 && !(zsock_events (self->router) & ZMQ_POLLIN))
            break;
        zmsg_t *msg = zmsg_recv (self->router);
        if (!msg)
            break;
        if (zmsg_size (msg) < 2 || zmsg_size (msg) % 2 != 0) {
            sb_error ("writer", "malformed request frames=%zu", zmsg_size (msg));
            zmsg_destroy (&msg);
            continue;
        }
        bytes += zmsg_content_size (msg);
        batch[count++] = (s_request_t) {.msg = msg};
    }
    if (count == 0)
        return;

    int64_t started = s_now_us ();
    uint64_t seq = sb_journal_next_seq (w->journal);
    for (size_t i = 0; i < count; i++)
        batch[i].ok = s_stamp_request (self, &batch[i], &seq);
    bool stored = true;
    size_t events = 0;
    for (size_t i = 0; i < count && stored; i++)
        if (batch[i].ok) {
            stored = s_append_request (self, &batch[i]);
            events += (zmsg_size (batch[i].msg) - 2) / 2;
        }
    if (stored)
        stored = sb_journal_commit (w->journal) == SB_JOURNAL_STORED;
    sb_metric_observe (self->m_commit_seconds, (double) (s_now_us () - started) / 1e6);
    sb_metric_add (self->m_commits, 1);
    sb_metric_observe (self->m_batch, (double) count);
    atomic_store (&w->ready, sb_journal_healthy (w->journal));
    atomic_store (&w->next_seq, sb_journal_next_seq (w->journal));
    if (stored)
        atomic_store (&w->committed, sb_journal_next_seq (w->journal) - 1);
    sb_metric_set (self->m_healthy, sb_journal_healthy (w->journal) ? 1 : 0);

    size_t failed = 0;
    for (size_t i = 0; i < count; i++) {
        s_reply (self, &batch[i], stored && batch[i].ok);
        failed += !(stored && batch[i].ok);
    }
    sb_metric_add (self->m_requests_failed, failed);
    if (stored) {
        sb_metric_add (self->m_events, events);
        for (size_t i = 0; i < count; i++)
            if (batch[i].ok)
                s_publish (self, &batch[i]);
        sb_metric_set (self->m_journal_bytes, (int64_t) sb_journal_size (w->journal));
        sb_metric_set (self->m_journal_segments, (int64_t) sb_journal_segments (w->journal));
    }
    for (size_t i = 0; i < count; i++)
        zmsg_destroy (&batch[i].msg);
}

static void
s_writer_actor (zsock_t *pipe, void *args)
{
    sb_writer_t *writer = (sb_writer_t *) args;
    self_t *self = s_self_new (pipe, writer);
    zsock_signal (pipe, 0);
    //  zactor_new ignores the signal's status: say how the start went.
    zstr_send (pipe, self ? "OK" : "FAILED");
    if (!self)
        return;
    atomic_store (&writer->ready, true);
    while (!self->terminated) {
        //  While the journal cannot write, probe it every second (a commit
        //  with nothing appended writes a probe file), so readiness comes
        //  back with the disk even when no request arrives meanwhile.
        bool healthy = sb_journal_healthy (writer->journal);
        zsock_t *which = (zsock_t *) zpoller_wait (self->poller, healthy ? -1 : 1000);
        if (which == self->pipe)
            s_self_handle_pipe (self);
        else if (which == self->router)
            s_self_handle_requests (self);
        else if (zpoller_terminated (self->poller))
            break;
        else if (!healthy && sb_journal_commit (writer->journal) == SB_JOURNAL_STORED) {
            atomic_store (&writer->ready, true);
            sb_metric_set (self->m_healthy, 1);
        }
    }
    atomic_store (&writer->ready, false);
    s_self_destroy (&self);
}

sb_writer_t *
sb_writer_new (const sb_config_t *config, sb_metrics_t *metrics)
{
    sb_writer_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->metrics = metrics;
    self->journal = sb_journal_open (sb_config_str (config, "SB_JOURNAL_DIR"),
                                     (uint64_t) sb_config_int (config, "SB_JOURNAL_SEGMENT_BYTES"));
    if (!self->journal)
        goto fail;
    snprintf (self->epoch, sizeof self->epoch, "%s", sb_journal_epoch (self->journal));
    atomic_init (&self->next_seq, sb_journal_next_seq (self->journal));
    //  What the journal holds at open survived the restart: committed.
    atomic_init (&self->committed, sb_journal_next_seq (self->journal) - 1);
    atomic_init (&self->ready, false);
    atomic_init (&self->request_ids, 0);
    self->ingress_id = strdup (sb_config_str (config, "SB_INGRESS_ID"));
    self->journal_dir = strdup (sb_config_str (config, "SB_JOURNAL_DIR"));
    self->pub_hwm = (int) sb_config_int (config, "SB_PUB_HWM");
    self->pub_endpoints = strdup (sb_config_str (config, "SB_PUB"));
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://sb-writer-%p", (void *) self);
    self->endpoint = strdup (endpoint);
    if (!self->ingress_id || !self->journal_dir || !self->pub_endpoints || !self->endpoint)
        goto fail;
    self->actor = zactor_new (s_writer_actor, self);
    if (!self->actor)
        goto fail;
    char *status = zstr_recv (self->actor);
    bool ok = status && streq (status, "OK");
    zstr_free (&status);
    if (!ok)
        goto fail;
    sb_info ("writer", "journal open dir=%s next_seq=%llu epoch=%s",
             sb_config_str (config, "SB_JOURNAL_DIR"),
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
    sb_journal_destroy (&self->journal);
    free (self->endpoint);
    free (self->pub_endpoints);
    free (self->ingress_id);
    free (self->journal_dir);
    free (self);
    *self_p = NULL;
}

bool
sb_writer_ready (const sb_writer_t *self)
{
    return atomic_load (&((sb_writer_t *) self)->ready);
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

sb_writer_client_t *
sb_writer_client_new (sb_writer_t *writer)
{
    sb_writer_client_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->writer = writer;
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer || zsock_connect (self->dealer, "%s", writer->endpoint) < 0) {
        sb_error ("writer", "cannot connect a client to the journal writer");
        sb_writer_client_destroy (&self);
        return NULL;
    }
    zsock_set_sndhwm (self->dealer, 0);
    zsock_set_rcvhwm (self->dealer, 0);
    return self;
}

void
sb_writer_client_destroy (sb_writer_client_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    zsock_destroy (&(*self_p)->dealer);
    free (*self_p);
    *self_p = NULL;
}

sb_journal_result_t
sb_writer_client_store (sb_writer_client_t *self, sb_event_t *const *events, size_t count,
                        int timeout_ms, uint64_t *first_seq)
{
    uint64_t reqid = atomic_fetch_add (&self->writer->request_ids, 1) + 1;
    zmsg_t *msg = zmsg_new ();
    if (!msg)
        return SB_JOURNAL_NOT_STORED;
    zmsg_addmem (msg, &reqid, sizeof reqid);
    for (size_t i = 0; i < count; i++) {
        char topic[128];
        size_t size = 0;
        uint8_t *data = sb_event_encode (events[i], &size);
        if (!data || sb_event_topic (events[i], topic, sizeof topic) < 0) {
            free (data);
            zmsg_destroy (&msg);
            return SB_JOURNAL_NOT_STORED;
        }
        zmsg_addstr (msg, topic);
        zframe_t *frame = zframe_new (data, size);
        free (data);
        zmsg_append (msg, &frame);
    }
    if (zmsg_send (&msg, self->dealer)) {
        zmsg_destroy (&msg);
        return SB_JOURNAL_NOT_STORED;
    }
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0)
            break;
        zmq_pollitem_t item = {zsock_resolve (self->dealer), 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll (&item, 1, (long) left);
        if (rc < 0 && zmq_errno () != EINTR)
            break;
        if (rc <= 0)
            continue;
        zmsg_t *reply = zmsg_recv (self->dealer);
        if (!reply)
            break;
        zframe_t *id = zmsg_first (reply);
        zframe_t *status = zmsg_next (reply);
        zframe_t *seq = zmsg_next (reply);
        bool mine = id && zframe_size (id) == sizeof reqid
                    && memcmp (zframe_data (id), &reqid, sizeof reqid) == 0;
        if (!mine || !status || !seq || zframe_size (seq) != 8) {
            zmsg_destroy (&reply);  //  a late answer to a request we gave up on
            continue;
        }
        bool stored = zframe_streq (status, "S");
        uint64_t first = 0;
        for (int i = 7; i >= 0; i--)
            first = (first << 8) | zframe_data (seq)[i];
        zmsg_destroy (&reply);
        if (first_seq)
            *first_seq = first;
        return stored ? SB_JOURNAL_STORED : SB_JOURNAL_NOT_STORED;
    }
    sb_error ("writer", "journal writer did not answer within timeout_ms=%d", timeout_ms);
    return SB_JOURNAL_NOT_STORED;
}

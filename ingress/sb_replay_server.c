/*  sb_replay_server: serves the ingress journal to consumers that missed
    part of the live PUB stream (the dispatcher after a restart or a gap,
    `switchboard replay`), and keeps track of what each consumer committed.

    DESIGN
    One actor thread owns a ROUTER socket bound on SB_REPLAY. Each message
    is [routing id][ReplayMessage] (sb_replay codec, proto/README.md):
      - HELLO is answered by WELCOME: ingress id, epoch, committed seq.
      - REQUEST opens a session for that peer (replacing any it had): START,
        then RECORDs in sequence order read with sb_journal_reader, each
        costing one credit, then END saying where it stopped. A request for
        another epoch starts at seq 1 of the current one (START says so).
      - CREDIT adds credit to the peer's session, CANCEL ends it.
      - ACK records the consumer's committed seq and the time.
    A session never reads past the writer's committed watermark
    (sb_writer_committed_seq): a record above it may still be rolled back
    by a failed commit. A session ends (END CAUGHT_UP) as soon as it has
    sent everything up to the watermark; it never waits for new records,
    so a session is either sending (credit left) or idle (no credit).

    Flow control and memory: at most credit records are sent before the
    consumer grants more; at most S_CHUNK records per session per turn, so
    sessions take turns and requests keep being read. The socket is
    ROUTER_MANDATORY: a full peer queue (S_PEER_HWM messages) returns
    EAGAIN, and the message (START, a record or END) waits in the session
    (one at most) until the queue drains; a peer that went away (EHOSTUNREACH) loses its session.
    Sessions are capped (S_MAX_SESSIONS, then END BUSY), so are readers
    and their file descriptors; a session not heard from for
    S_SESSION_IDLE_MS is dropped. Consumer messages are capped at
    SB_REPLAY_MAX_REQUEST bytes by the socket itself.

    Lag. For each consumer id seen (up to S_MAX_CONSUMERS, as metric
    series are never removed) /metrics shows its acked seq, its lag in
    events (committed - acked) and in seconds: the age of its oldest
    unacknowledged record, from a ring of (committed seq, time) samples
    taken once a second when the watermark moved. It is a lower bound at
    one-second resolution, and stops growing past the ring (S_RING_SIZE
    samples, an hour of steady traffic).

    Retention. A consumer id heard from within SB_CONSUMER_TTL holds the
    journal's segments from its acked seq + 1 on (all of them before its
    first ACK of the current epoch); the lowest of these goes to the writer
    (sb_writer_hold) on every ACK and every tick, and the writer's trim
    keeps those segments up to SB_JOURNAL_HARD_MAX_BYTES. So that a
    restart of the ingress does not forget who holds what, the table is
    saved to DIR/CONSUMERS (the journal's directory: id, epoch, acked seq,
    last heard, wall clock) at most every S_SAVE_MS and at exit, and read
    back at start; an entry older than the TTL is dropped there. A crash
    loses at most the last S_SAVE_MS of acks and heartbeats, which only
    holds segments a little longer. A replay asked from a seq retention
    already removed starts at the first seq the journal holds: START's
    from_seq says so.
*/
#include "sb_replay_server.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sb_actor.h"
#include "sb_log.h"
#include "sb_replay.h"

#define S_MAX_SESSIONS 64
#define S_MAX_CONSUMERS 64
#define S_CHUNK 64                          //  records per session per turn
#define S_PEER_HWM 2000                     //  messages queued per peer
#define S_SESSION_IDLE_MS (5 * 60 * 1000)   //  drop a session not heard from
#define S_TICK_MS 1000                      //  housekeeping and gauges
#define S_RING_SIZE 3600                    //  watermark samples
#define S_READ_BATCH 1000                   //  requests read per turn
#define S_RETRY_MS 5                        //  wait before retrying a full peer queue
#define S_SAVE_MS 5000                      //  consumer table saved at most this often
#define S_CONSUMERS_FILE "CONSUMERS"        //  in the journal directory

struct sb_replay_server_t {
    zactor_t *actor;          //  the actor thread
    sb_writer_t *writer;      //  borrowed: watermark, epoch, journal dir
    sb_metrics_t *metrics;    //  borrowed
    char *endpoints;          //  SB_REPLAY, comma-separated
    const sb_zmq_security_t *security;  //  borrowed: CURVE keys, the plaintext rule
    char *ingress_id;         //  SB_INGRESS_ID
    int64_t ttl_ms;           //  SB_CONSUMER_TTL: a consumer holds segments this long
    atomic_bool ready;        //  bound and running
};

//  One replay in progress, for one peer.
typedef struct {
    zframe_t *peer;                         //  ROUTER routing id
    uint64_t replay_id;                     //  the consumer's id for this replay
    char consumer_id[SB_REPLAY_ID_MAX + 1]; //  "" for anonymous
    sb_journal_reader_t *reader;            //  positioned after last_sent
    uint64_t next_seq;                      //  next seq wanted (last_sent + 1)
    uint64_t last_sent;                     //  0 until a record is sent
    uint64_t sent;                          //  records sent
    uint64_t credit;                        //  records we may still send
    uint64_t count_left;                    //  records before END COUNT, when limited
    bool limited;                           //  the request had a count
    int64_t heard_ms;                       //  last message from the peer
    uint8_t *pending;                       //  encoded message the peer queue refused
    size_t pending_size;                    //  its size
    bool pending_end;                       //  pending is the END: then the session is over
    int64_t retry_ms;                       //  while pending: when to try the peer again
    bool failed;                            //  the journal could not be read: END ERROR
} s_session_t;

//  A consumer id we have heard from, with its lag gauges.
typedef struct {
    char id[SB_REPLAY_ID_MAX + 1];          //  consumer id
    char epoch[SB_REPLAY_EPOCH_MAX + 1];    //  epoch of its last ack
    uint64_t acked;                         //  last committed seq it reported
    bool has_ack;                           //  acked is meaningful
    int64_t seen_ms;                        //  last message from it (monotonic)
    bool holding;                           //  seen within the TTL: holds segments
    sb_metric_t *m_acked;                   //  sb_replay_consumer_acked_seq
    sb_metric_t *m_lag_events;              //  sb_replay_consumer_lag_events
    sb_metric_t *m_lag_seconds;             //  sb_replay_consumer_lag_seconds
    sb_metric_t *m_seen;                    //  sb_replay_consumer_last_seen_seconds
} s_consumer_t;

//  The watermark at a moment.
typedef struct {
    uint64_t seq;                           //  committed seq
    int64_t ms;                             //  when (monotonic)
} s_sample_t;

//  Actor state, private to the actor thread.
typedef struct {
    sb_replay_server_t *server;             //  shared part
    zsock_t *pipe;                          //  to the owner
    zsock_t *router;                        //  consumers
    zpoller_t *poller;                      //  pipe + router
    bool terminated;                        //  $TERM received
    const char *epoch;                      //  the journal's epoch (borrowed from the writer)
    s_session_t *sessions[S_MAX_SESSIONS];  //  replays in progress (NULL: free slot)
    size_t nsessions;                       //  slots in use
    s_consumer_t consumers[S_MAX_CONSUMERS];  //  consumers heard from
    size_t nconsumers;                      //  how many
    bool consumers_full_logged;             //  said once that the table is full
    s_sample_t ring[S_RING_SIZE];           //  watermark samples, oldest at ring_start
    size_t ring_start;                      //  index of the oldest sample
    size_t ring_count;                      //  samples held
    int64_t next_tick_ms;                   //  when housekeeping runs next
    char consumers_path[PATH_MAX];          //  DIR/CONSUMERS ("" when too long)
    bool consumers_dirty;                   //  the table changed since it was saved
    int64_t next_save_ms;                   //  when it may be saved next
    bool save_failed;                       //  the last save failed (said once)
    sb_metric_t *m_requests;                //  replays started
    sb_metric_t *m_records;                 //  records sent
    sb_metric_t *m_sessions;                //  replays in progress
    sb_metric_t *m_bad;                     //  messages that did not decode
    sb_metric_t *m_busy;                    //  requests refused: too many replays
} self_t;

static int64_t
s_now_ms (void)
{
    return zclock_mono ();
}

static void
s_session_destroy (s_session_t **session_p)
{
    s_session_t *session = *session_p;
    if (!session)
        return;
    zframe_destroy (&session->peer);
    sb_journal_reader_destroy (&session->reader);
    free (session->pending);
    free (session);
    *session_p = NULL;
}

static self_t *
s_self_new (zsock_t *pipe, sb_replay_server_t *server)
{
    self_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->server = server;
    self->pipe = pipe;
    self->epoch = sb_writer_epoch (server->writer);
    self->router = zsock_new (ZMQ_ROUTER);
    if (!self->router)
        goto fail;
    zsock_set_router_mandatory (self->router, 1);
    zsock_set_sndhwm (self->router, S_PEER_HWM);
    zsock_set_rcvhwm (self->router, S_PEER_HWM);
    zsock_set_maxmsgsize (self->router, SB_REPLAY_MAX_REQUEST);
    zsock_set_linger (self->router, 0);
    //  CURVE when keys are set; a non-loopback plaintext bind is refused.
    if (sb_zmq_bind (server->security, self->router, "replay", "SB_REPLAY", server->endpoints))
        goto fail;
    self->poller = zpoller_new (self->pipe, self->router, NULL);
    if (!self->poller)
        goto fail;
    sb_metrics_t *m = server->metrics;
    self->m_requests = sb_metrics_counter (m, "sb_replay_requests_total",
                                           "Journal replays started", NULL);
    self->m_records = sb_metrics_counter (m, "sb_replay_records_total",
                                          "Journal records sent by replays", NULL);
    self->m_sessions = sb_metrics_gauge (m, "sb_replay_sessions", "Journal replays in progress",
                                         NULL);
    self->m_bad = sb_metrics_counter (m, "sb_replay_bad_messages_total",
                                      "Replay messages refused (malformed or unexpected)", NULL);
    self->m_busy = sb_metrics_counter (m, "sb_replay_busy_total",
                                       "Replay requests refused: too many in progress", NULL);
    uint64_t committed = sb_writer_committed_seq (server->writer);
    self->ring[0] = (s_sample_t) {.seq = committed, .ms = s_now_ms ()};
    self->ring_count = 1;
    self->next_tick_ms = s_now_ms () + S_TICK_MS;
    return self;
fail:
    zsock_destroy (&self->router);
    free (self);
    return NULL;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < S_MAX_SESSIONS; i++)
        s_session_destroy (&self->sessions[i]);
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->router);
    free (self);
    *self_p = NULL;
}

//  Send [peer][data] without blocking: 0 sent, -1 with errno EAGAIN (the
//  peer's queue is full) or EHOSTUNREACH (the peer is gone).
static int
s_send_raw (self_t *self, zframe_t *peer, const uint8_t *data, size_t size)
{
    void *handle = zsock_resolve (self->router);
    if (zmq_send (handle, zframe_data (peer), zframe_size (peer), ZMQ_SNDMORE | ZMQ_DONTWAIT)
        < 0)
        return -1;
    if (zmq_send (handle, data, size, ZMQ_DONTWAIT) < 0)
        return -1;  //  not expected once the first frame went: the message is whole or none
    return 0;
}

//  Encode and send a control message; a failure is logged at debug: the
//  consumer's timeouts recover from a lost answer.
static void
s_send (self_t *self, zframe_t *peer, const sb_replay_msg_t *msg)
{
    size_t size = 0;
    uint8_t *data = sb_replay_encode (msg, &size);
    if (!data)
        return;
    if (s_send_raw (self, peer, data, size) < 0)
        sb_debug ("replay", "answer not sent type=%s error=\"%s\"",
                  sb_replay_type_name ((int) msg->type), zmq_strerror (zmq_errno ()));
    free (data);
}

static void
s_end_message (self_t *self, sb_replay_msg_t *end, uint64_t replay_id, int reason,
               uint64_t last_seq)
{
    memset (end, 0, sizeof *end);
    end->type = SB_REPLAY_END;
    end->replay_id = replay_id;
    end->reason = reason;
    end->last_seq = last_seq;
    end->committed_seq = sb_writer_committed_seq (self->server->writer);
    sb_replay_set (end->epoch, sizeof end->epoch, self->epoch);
}

static void
s_session_remove (self_t *self, size_t slot)
{
    s_session_destroy (&self->sessions[slot]);
    self->nsessions--;
    sb_metric_set (self->m_sessions, (int64_t) self->nsessions);
}

//  End the session in slot with reason: END is sent (or kept pending
//  while the peer's queue is full), then the session goes.
static void
s_session_end (self_t *self, size_t slot, int reason)
{
    s_session_t *s = self->sessions[slot];
    sb_replay_msg_t end;
    s_end_message (self, &end, s->replay_id, reason, s->last_sent);
    sb_info ("replay", "replay ended consumer=%s reason=%s records=%llu last_seq=%llu "
             "committed_seq=%llu",
             *s->consumer_id ? s->consumer_id : "(anonymous)", sb_replay_reason_name (reason),
             (unsigned long long) s->sent, (unsigned long long) s->last_sent,
             (unsigned long long) end.committed_seq);
    size_t size = 0;
    uint8_t *data = sb_replay_encode (&end, &size);
    if (data && s_send_raw (self, s->peer, data, size) < 0 && zmq_errno () == EAGAIN) {
        free (s->pending);
        s->pending = data;
        s->pending_size = size;
        s->pending_end = true;
        s->credit = 0;
        s->retry_ms = s_now_ms () + S_RETRY_MS;
        return;
    }
    free (data);
    s_session_remove (self, slot);
}

static s_consumer_t *
s_consumer (self_t *self, const char *id)
{
    if (!*id)
        return NULL;
    for (size_t i = 0; i < self->nconsumers; i++)
        if (strcmp (self->consumers[i].id, id) == 0)
            return &self->consumers[i];
    if (self->nconsumers == S_MAX_CONSUMERS) {
        if (!self->consumers_full_logged)
            sb_warn ("replay", "consumer table full: not tracking consumer=%s max=%d", id,
                     S_MAX_CONSUMERS);
        self->consumers_full_logged = true;
        return NULL;
    }
    s_consumer_t *c = &self->consumers[self->nconsumers++];
    memset (c, 0, sizeof *c);
    sb_replay_set (c->id, sizeof c->id, id);
    c->seen_ms = s_now_ms ();
    c->holding = true;
    self->consumers_dirty = true;
    //  Ids are [A-Za-z0-9._:@-] (checked by the codec): safe in a label.
    char labels[SB_REPLAY_ID_MAX + 16];
    snprintf (labels, sizeof labels, "consumer=\"%s\"", id);
    sb_metrics_t *m = self->server->metrics;
    c->m_acked = sb_metrics_gauge (m, "sb_replay_consumer_acked_seq",
                                   "Last journal seq the consumer reported committed", labels);
    c->m_lag_events = sb_metrics_gauge (m, "sb_replay_consumer_lag_events",
                                        "Journal records committed but not acknowledged by the consumer",
                                        labels);
    c->m_lag_seconds = sb_metrics_gauge (
        m, "sb_replay_consumer_lag_seconds",
        "Age of the consumer's oldest unacknowledged record (lower bound, 1 s resolution)", labels);
    c->m_seen = sb_metrics_gauge (m, "sb_replay_consumer_last_seen_seconds",
                                  "Seconds since the consumer last spoke to the replay server", labels);
    sb_info ("replay", "new consumer consumer=%s", id);
    return c;
}

//  Lag of one consumer now, into its gauges.
static void
s_consumer_gauges (self_t *self, s_consumer_t *c, uint64_t committed, int64_t now)
{
    uint64_t acked = c->has_ack && strcmp (c->epoch, self->epoch) == 0 ? c->acked : 0;
    uint64_t lag = committed > acked ? committed - acked : 0;
    int64_t lag_ms = 0;
    if (lag > 0) {
        //  The oldest unacknowledged record, acked + 1, was committed no
        //  later than the first sample that covers it.
        lag_ms = now - self->ring[self->ring_start].ms;
        for (size_t k = 0; k < self->ring_count; k++) {
            const s_sample_t *sample = &self->ring[(self->ring_start + k) % S_RING_SIZE];
            if (sample->seq > acked) {
                lag_ms = now - sample->ms;
                break;
            }
            lag_ms = 0;  //  newer than every sample: less than a tick old
        }
    }
    sb_metric_set (c->m_acked, (int64_t) acked);
    sb_metric_set (c->m_lag_events, (int64_t) lag);
    sb_metric_set (c->m_lag_seconds, lag_ms / 1000);
    sb_metric_set (c->m_seen, (now - c->seen_ms) / 1000);
}

static void
s_touch (self_t *self, const char *consumer_id)
{
    s_consumer_t *c = s_consumer (self, consumer_id);
    if (c) {
        c->seen_ms = s_now_ms ();
        self->consumers_dirty = true;
    }
}

//  The lowest seq acknowledged by the consumers seen within the TTL, to
//  the writer: its retention keeps every record above it.
static void
s_hold (self_t *self, int64_t now)
{
    uint64_t floor = SB_JOURNAL_NO_HOLD;
    for (size_t i = 0; i < self->nconsumers; i++) {
        s_consumer_t *c = &self->consumers[i];
        bool live = now - c->seen_ms <= self->server->ttl_ms;
        uint64_t acked = c->has_ack && strcmp (c->epoch, self->epoch) == 0 ? c->acked : 0;
        if (live != c->holding) {
            c->holding = live;
            if (live)
                sb_info ("replay", "consumer back: it holds journal segments again consumer=%s "
                         "acked_seq=%llu", c->id, (unsigned long long) acked);
            else
                sb_warn ("replay", "consumer not heard from within SB_CONSUMER_TTL: it no "
                         "longer holds journal segments consumer=%s acked_seq=%llu ttl_s=%lld",
                         c->id, (unsigned long long) acked,
                         (long long) (self->server->ttl_ms / 1000));
        }
        if (live && acked < floor)
            floor = acked;
    }
    sb_writer_hold (self->server->writer, floor);
}

//  Save the consumer table to DIR/CONSUMERS: a temporary file, synced,
//  renamed over the old one. A failure is logged once (warn): the table
//  in memory still holds the segments.
static void
s_consumers_save (self_t *self)
{
    if (!self->consumers_path[0])
        return;
    char tmp[PATH_MAX + 8];
    snprintf (tmp, sizeof tmp, "%s.tmp", self->consumers_path);
    int64_t now = s_now_ms (), wall = zclock_time ();
    FILE *file = fopen (tmp, "w");
    bool ok = file != NULL;
    if (ok)
        ok = fprintf (file, "# switchboard replay consumers: id epoch acked_seq "
                      "last_seen_unix_ms\n") > 0;
    for (size_t i = 0; ok && i < self->nconsumers; i++) {
        const s_consumer_t *c = &self->consumers[i];
        ok = fprintf (file, "%s %s %llu %lld\n", c->id, c->has_ack ? c->epoch : "-",
                      (unsigned long long) c->acked,
                      (long long) (wall - (now - c->seen_ms))) > 0;
    }
    if (file) {
        ok = ok && fflush (file) == 0 && fsync (fileno (file)) == 0;
        ok = fclose (file) == 0 && ok;
    }
    ok = ok && rename (tmp, self->consumers_path) == 0;
    self->next_save_ms = now + S_SAVE_MS;
    if (!ok) {
        int saved = errno;
        unlink (tmp);
        if (!self->save_failed) {
            char ebuf[128];
            sb_warn ("replay", "cannot save the replay consumers path=%s errno=%d error=\"%s\"",
                     self->consumers_path, saved, sb_strerror (saved, ebuf, sizeof ebuf));
        }
        self->save_failed = true;
        return;
    }
    if (self->save_failed)
        sb_info ("replay", "replay consumers saved again path=%s", self->consumers_path);
    self->save_failed = false;
    self->consumers_dirty = false;
}

//  A decimal number filling the whole of text; 0 or -1.
static int
s_parse_u64 (const char *text, unsigned long long *value)
{
    if (*text < '0' || *text > '9')
        return -1;
    errno = 0;
    char *end;
    *value = strtoull (text, &end, 10);
    return errno || *end ? -1 : 0;
}

//  Read DIR/CONSUMERS back at start: consumers heard from within the TTL
//  (by the wall clock) hold segments again. Damaged lines are skipped.
static void
s_consumers_load (self_t *self)
{
    if (!self->consumers_path[0])
        return;
    FILE *file = fopen (self->consumers_path, "r");
    if (!file) {
        if (errno != ENOENT) {
            char ebuf[128];
            sb_warn ("replay", "cannot read the replay consumers path=%s errno=%d error=\"%s\"",
                     self->consumers_path, errno, sb_strerror (errno, ebuf, sizeof ebuf));
        }
        return;
    }
    int64_t now = s_now_ms (), wall = zclock_time ();
    char line[256];
    size_t restored = 0, expired = 0, bad = 0;
    while (fgets (line, sizeof line, file)) {
        size_t len = strlen (line);
        if (len == 0 || line[len - 1] != '\n') {
            bad++;  //  too long or cut: skip the rest of it
            int ch;
            while (len > 0 && (ch = fgetc (file)) != EOF && ch != '\n')
                ;
            continue;
        }
        line[len - 1] = '\0';
        if (line[0] == '#')
            continue;
        char *fields[4], *save = NULL;
        size_t nfields = 0;
        for (char *f = strtok_r (line, " ", &save); f; f = strtok_r (NULL, " ", &save)) {
            if (nfields < 4)
                fields[nfields] = f;
            nfields++;
        }
        unsigned long long acked = 0, seen = 0;
        bool no_epoch = nfields == 4 && strcmp (fields[1], "-") == 0;
        if (nfields != 4 || !sb_replay_id_valid (fields[0])
            || !(no_epoch || sb_replay_epoch_valid (fields[1])) || s_parse_u64 (fields[2], &acked)
            || s_parse_u64 (fields[3], &seen) || seen > (unsigned long long) INT64_MAX) {
            bad++;
            continue;
        }
        int64_t age = wall - (int64_t) seen;
        if (age < 0)
            age = 0;
        if (age > self->server->ttl_ms) {
            expired++;
            continue;
        }
        s_consumer_t *c = s_consumer (self, fields[0]);
        if (!c)
            continue;
        c->seen_ms = now - age;
        c->has_ack = !no_epoch;
        c->acked = acked;
        if (!no_epoch)
            sb_replay_set (c->epoch, sizeof c->epoch, fields[1]);
        restored++;
    }
    fclose (file);
    if (bad > 0)
        sb_warn ("replay", "damaged lines skipped in the replay consumers path=%s lines=%zu",
                 self->consumers_path, bad);
    sb_info ("replay", "replay consumers restored path=%s consumers=%zu expired=%zu",
             self->consumers_path, restored, expired);
}

static size_t
s_find_session (self_t *self, zframe_t *peer)
{
    for (size_t i = 0; i < S_MAX_SESSIONS; i++)
        if (self->sessions[i] && zframe_eq (self->sessions[i]->peer, peer))
            return i;
    return S_MAX_SESSIONS;
}

static void
s_handle_hello (self_t *self, zframe_t *peer, const sb_replay_msg_t *msg)
{
    s_touch (self, msg->consumer_id);
    sb_replay_msg_t welcome;
    memset (&welcome, 0, sizeof welcome);
    welcome.type = SB_REPLAY_WELCOME;
    sb_replay_set (welcome.ingress_id, sizeof welcome.ingress_id, self->server->ingress_id);
    sb_replay_set (welcome.epoch, sizeof welcome.epoch, self->epoch);
    welcome.committed_seq = sb_writer_committed_seq (self->server->writer);
    s_send (self, peer, &welcome);
}

static void
s_handle_request (self_t *self, zframe_t **peer_p, const sb_replay_msg_t *msg)
{
    zframe_t *peer = *peer_p;
    s_touch (self, msg->consumer_id);
    //  A new request replaces the peer's replay in progress.
    size_t slot = s_find_session (self, peer);
    if (slot < S_MAX_SESSIONS)
        s_session_remove (self, slot);
    else
        for (slot = 0; slot < S_MAX_SESSIONS && self->sessions[slot]; slot++)
            ;
    sb_replay_msg_t end;
    if (slot == S_MAX_SESSIONS) {
        sb_metric_add (self->m_busy, 1);
        sb_warn ("replay", "replay refused: too many in progress consumer=%s max=%d",
                 *msg->consumer_id ? msg->consumer_id : "(anonymous)", S_MAX_SESSIONS);
        s_end_message (self, &end, msg->replay_id, SB_REPLAY_END_BUSY, 0);
        s_send (self, peer, &end);
        return;
    }
    bool other_epoch = *msg->epoch && strcmp (msg->epoch, self->epoch) != 0;
    uint64_t from = other_epoch ? 1 : msg->from_seq;
    //  Retention removed the records before the first one kept: START
    //  tells the consumer where the replay really begins.
    uint64_t first = sb_writer_first_seq (self->server->writer);
    uint64_t trimmed = from < first ? first - from : 0;
    if (trimmed)
        from = first;
    uint64_t committed = sb_writer_committed_seq (self->server->writer);
    sb_replay_msg_t start;
    memset (&start, 0, sizeof start);
    start.type = SB_REPLAY_START;
    start.replay_id = msg->replay_id;
    sb_replay_set (start.ingress_id, sizeof start.ingress_id, self->server->ingress_id);
    sb_replay_set (start.epoch, sizeof start.epoch, self->epoch);
    start.from_seq = from;
    start.committed_seq = committed;
    size_t start_size = 0;
    uint8_t *start_data = sb_replay_encode (&start, &start_size);
    s_session_t *s = start_data ? calloc (1, sizeof *s) : NULL;
    if (!s) {
        sb_error ("replay", "out of memory starting a replay");
        free (start_data);
        s_end_message (self, &end, msg->replay_id, SB_REPLAY_END_ERROR, 0);
        s_send (self, peer, &end);
        return;
    }
    sb_metric_add (self->m_requests, 1);
    sb_info ("replay", "replay started consumer=%s from_seq=%llu committed_seq=%llu credit=%u%s",
             *msg->consumer_id ? msg->consumer_id : "(anonymous)", (unsigned long long) from,
             (unsigned long long) committed, msg->credit,
             other_epoch ? " epoch_changed=1" : "");
    if (trimmed)
        sb_info ("replay", "replay asked for records retention removed: starting at the first "
                 "kept consumer=%s asked_seq=%llu from_seq=%llu removed=%llu",
                 *msg->consumer_id ? msg->consumer_id : "(anonymous)",
                 (unsigned long long) msg->from_seq, (unsigned long long) from,
                 (unsigned long long) trimmed);
    //  START goes first, or waits in the session while the peer's queue
    //  is full (it may still hold a replaced replay's records).
    if (s_send_raw (self, peer, start_data, start_size) == 0)
        free (start_data);
    else {
        s->pending = start_data;
        s->pending_size = start_size;
        s->retry_ms = s_now_ms () + S_RETRY_MS;
    }
    s->peer = peer;
    *peer_p = NULL;
    s->replay_id = msg->replay_id;
    sb_replay_set (s->consumer_id, sizeof s->consumer_id, msg->consumer_id);
    s->next_seq = from;
    s->credit = msg->credit;
    s->limited = msg->count > 0;
    s->count_left = msg->count;
    s->heard_ms = s_now_ms ();
    self->sessions[slot] = s;
    self->nsessions++;
    sb_metric_set (self->m_sessions, (int64_t) self->nsessions);
    if (from > committed)
        return;  //  s_serve ends it: caught up already
    s->reader = sb_journal_reader_new (sb_writer_journal_dir (self->server->writer), from);
    if (!s->reader)
        s->failed = true;  //  s_serve ends it: error
}

//  CREDIT (or CANCEL, when cancel) for the peer's replay.
static void
s_handle_credit_cancel (self_t *self, zframe_t *peer, const sb_replay_msg_t *msg, bool cancel)
{
    size_t slot = s_find_session (self, peer);
    s_session_t *s = slot < S_MAX_SESSIONS ? self->sessions[slot] : NULL;
    if (!s || s->replay_id != msg->replay_id || s->pending_end) {
        if (s && s->pending_end)
            return;  //  its END is on the way
        sb_replay_msg_t end;
        s_end_message (self, &end, msg->replay_id, SB_REPLAY_END_UNKNOWN, 0);
        s_send (self, peer, &end);
        return;
    }
    s->heard_ms = s_now_ms ();
    s_touch (self, s->consumer_id);
    if (cancel) {
        s_session_end (self, slot, SB_REPLAY_END_CANCELLED);
        return;
    }
    s->credit += msg->credit;
    if (s->credit > SB_REPLAY_CREDIT_MAX)
        s->credit = SB_REPLAY_CREDIT_MAX;
}

static void
s_handle_ack (self_t *self, const sb_replay_msg_t *msg)
{
    s_consumer_t *c = s_consumer (self, msg->consumer_id);
    if (!c)
        return;
    int64_t now = s_now_ms ();
    c->seen_ms = now;
    //  The latest word counts, even backwards (a consumer that lost its
    //  database starts over).
    c->acked = msg->committed_seq;
    sb_replay_set (c->epoch, sizeof c->epoch, msg->epoch);
    c->has_ack = true;
    self->consumers_dirty = true;
    s_consumer_gauges (self, c, sb_writer_committed_seq (self->server->writer), now);
    s_hold (self, now);
}

//  Read and handle the requests waiting, up to S_READ_BATCH.
static void
s_handle_router (self_t *self)
{
    for (int n = 0; n < S_READ_BATCH; n++) {
        if (n > 0 && !(zsock_events (self->router) & ZMQ_POLLIN))
            break;
        zmsg_t *zmsg = zmsg_recv (self->router);
        if (!zmsg)
            break;
        zframe_t *peer = zmsg_pop (zmsg);
        zframe_t *body = zmsg_first (zmsg);
        sb_replay_msg_t msg;
        if (!peer || zmsg_size (zmsg) != 1
            || sb_replay_decode (zframe_data (body), zframe_size (body), &msg) != 0) {
            sb_metric_add (self->m_bad, 1);
            sb_debug ("replay", "malformed message dropped frames=%zu", zmsg_size (zmsg) + 1);
            zframe_destroy (&peer);
            zmsg_destroy (&zmsg);
            continue;
        }
        switch (msg.type) {
            case SB_REPLAY_HELLO:
                s_handle_hello (self, peer, &msg);
                break;
            case SB_REPLAY_REQUEST:
                s_handle_request (self, &peer, &msg);
                break;
            case SB_REPLAY_CREDIT:
                s_handle_credit_cancel (self, peer, &msg, false);
                break;
            case SB_REPLAY_CANCEL:
                s_handle_credit_cancel (self, peer, &msg, true);
                break;
            case SB_REPLAY_ACK:
                s_handle_ack (self, &msg);
                break;
            default:
                sb_metric_add (self->m_bad, 1);
                sb_debug ("replay", "unexpected message from a consumer type=%s",
                          sb_replay_type_name ((int) msg.type));
                break;
        }
        sb_replay_msg_clear (&msg);
        zframe_destroy (&peer);
        zmsg_destroy (&zmsg);
    }
}

//  Send what the session in slot may send this turn (S_CHUNK records at
//  most). The session may end here.
static void
s_serve (self_t *self, size_t slot)
{
    s_session_t *s = self->sessions[slot];
    if (s->pending) {
        if (s->retry_ms > s_now_ms ())
            return;
        if (s_send_raw (self, s->peer, s->pending, s->pending_size) < 0) {
            if (zmq_errno () != EAGAIN) {
                sb_info ("replay", "consumer went away during a replay consumer=%s",
                         *s->consumer_id ? s->consumer_id : "(anonymous)");
                s_session_remove (self, slot);
            }
            else
                s->retry_ms = s_now_ms () + S_RETRY_MS;
            return;
        }
        free (s->pending);
        s->pending = NULL;
        if (s->pending_end) {
            s_session_remove (self, slot);
            return;
        }
    }
    if (s->failed) {
        s_session_end (self, slot, SB_REPLAY_END_ERROR);
        return;
    }
    for (int n = 0; n < S_CHUNK; n++) {
        uint64_t committed = sb_writer_committed_seq (self->server->writer);
        if (s->limited && s->count_left == 0) {
            s_session_end (self, slot, SB_REPLAY_END_COUNT);
            return;
        }
        if (s->next_seq > committed) {
            s_session_end (self, slot, SB_REPLAY_END_CAUGHT_UP);
            return;
        }
        if (s->credit == 0)
            return;
        uint64_t seq = 0;
        const uint8_t *data = NULL;
        size_t size = 0;
        int rc = sb_journal_reader_next (s->reader, &seq, &data, &size);
        if (rc < 0) {
            s_session_end (self, slot, SB_REPLAY_END_ERROR);
            return;
        }
        //  The end of what is written, or a record not yet durable (it
        //  was read, but the session ends now: it is never sent).
        if (rc == 0 || seq > committed) {
            s_session_end (self, slot, SB_REPLAY_END_CAUGHT_UP);
            return;
        }
        if (size == 0 || size > SB_JOURNAL_MAX_RECORD) {
            sb_error ("replay", "journal record of unexpected size skipped seq=%llu size=%zu",
                      (unsigned long long) seq, size);
            s->next_seq = seq + 1;
            continue;
        }
        sb_replay_msg_t record;
        memset (&record, 0, sizeof record);
        record.type = SB_REPLAY_RECORD;
        record.replay_id = s->replay_id;
        record.seq = seq;
        record.event = data;
        record.event_size = size;
        size_t encoded_size = 0;
        uint8_t *encoded = sb_replay_encode (&record, &encoded_size);
        if (!encoded) {
            s_session_end (self, slot, SB_REPLAY_END_ERROR);
            return;
        }
        s->credit--;
        s->next_seq = seq + 1;
        s->last_sent = seq;
        s->sent++;
        if (s->limited)
            s->count_left--;
        sb_metric_add (self->m_records, 1);
        if (s_send_raw (self, s->peer, encoded, encoded_size) < 0) {
            if (zmq_errno () == EAGAIN) {
                s->pending = encoded;  //  the peer's queue is full: a bit later
                s->pending_size = encoded_size;
                s->retry_ms = s_now_ms () + S_RETRY_MS;
                return;
            }
            free (encoded);
            sb_info ("replay", "consumer went away during a replay consumer=%s",
                     *s->consumer_id ? s->consumer_id : "(anonymous)");
            s_session_remove (self, slot);
            return;
        }
        free (encoded);
    }
}

//  How long the actor may wait for requests: 0 when some session can
//  send now, else until the next tick or the earliest retry of a full
//  peer queue.
static int64_t
s_wait_ms (self_t *self)
{
    int64_t now = s_now_ms ();
    int64_t until = self->next_tick_ms;
    uint64_t committed = sb_writer_committed_seq (self->server->writer);
    for (size_t i = 0; i < S_MAX_SESSIONS; i++) {
        s_session_t *s = self->sessions[i];
        if (!s)
            continue;
        if (s->pending) {
            if (s->retry_ms < until)
                until = s->retry_ms;
        }
        else if (s->credit > 0 || s->next_seq > committed || (s->limited && s->count_left == 0)
                 || s->failed)
            return 0;
    }
    return until > now ? until - now : 0;
}

//  Once a second: sample the watermark, drop idle sessions, gauges.
static void
s_tick (self_t *self)
{
    int64_t now = s_now_ms ();
    uint64_t committed = sb_writer_committed_seq (self->server->writer);
    const s_sample_t *last = &self->ring[(self->ring_start + self->ring_count - 1) % S_RING_SIZE];
    if (committed != last->seq) {
        if (self->ring_count == S_RING_SIZE) {
            self->ring_start = (self->ring_start + 1) % S_RING_SIZE;
            self->ring_count--;
        }
        self->ring[(self->ring_start + self->ring_count) % S_RING_SIZE]
            = (s_sample_t) {.seq = committed, .ms = now};
        self->ring_count++;
    }
    for (size_t i = 0; i < S_MAX_SESSIONS; i++) {
        s_session_t *s = self->sessions[i];
        if (s && now - s->heard_ms > S_SESSION_IDLE_MS) {
            sb_info ("replay", "idle replay dropped consumer=%s idle_ms=%lld",
                     *s->consumer_id ? s->consumer_id : "(anonymous)",
                     (long long) (now - s->heard_ms));
            s_session_remove (self, i);
        }
    }
    for (size_t i = 0; i < self->nconsumers; i++)
        s_consumer_gauges (self, &self->consumers[i], committed, now);
    s_hold (self, now);
    if (self->consumers_dirty && now >= self->next_save_ms)
        s_consumers_save (self);
}

static void
s_replay_actor (zsock_t *pipe, void *args)
{
    sb_replay_server_t *server = (sb_replay_server_t *) args;
    self_t *self = s_self_new (pipe, server);
    if (self) {
        //  Who held what before a restart, before the writer trims again.
        const char *dir = sb_writer_journal_dir (server->writer);
        int n = snprintf (self->consumers_path, sizeof self->consumers_path, "%s/%s", dir,
                          S_CONSUMERS_FILE);
        if (n < 0 || (size_t) n >= sizeof self->consumers_path) {
            sb_warn ("replay", "journal directory path too long to save replay consumers dir=%.200s",
                     dir);
            self->consumers_path[0] = '\0';
        }
        s_consumers_load (self);
        s_hold (self, s_now_ms ());
    }
    sb_actor_started (pipe, self != NULL);
    if (!self)
        return;
    atomic_store (&server->ready, true);
    size_t turn = 0;  //  the session served first, rotating for fairness
    while (!self->terminated) {
        int64_t wait = s_wait_ms (self);
        zsock_t *which = (zsock_t *) zpoller_wait (self->poller, (int) wait);
        if (which == self->pipe)
            self->terminated = sb_actor_pipe_says_stop (self->pipe, "replay");
        else if (which == self->router)
            s_handle_router (self);
        else if (zpoller_terminated (self->poller))
            break;
        if (self->nsessions > 0) {
            for (size_t k = 0; k < S_MAX_SESSIONS; k++) {
                size_t slot = (turn + k) % S_MAX_SESSIONS;
                if (self->sessions[slot])
                    s_serve (self, slot);
            }
            turn = (turn + 1) % S_MAX_SESSIONS;
        }
        if (s_now_ms () >= self->next_tick_ms) {
            s_tick (self);
            self->next_tick_ms = s_now_ms () + S_TICK_MS;
        }
    }
    atomic_store (&server->ready, false);
    if (self->consumers_dirty)
        s_consumers_save (self);
    s_self_destroy (&self);
}

sb_replay_server_t *
sb_replay_server_new (const sb_config_t *config, const sb_zmq_security_t *security,
                      sb_writer_t *writer, sb_metrics_t *metrics)
{
    sb_replay_server_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->security = security;
    self->writer = writer;
    self->metrics = metrics;
    atomic_init (&self->ready, false);
    self->endpoints = strdup (sb_config_str (config, "SB_REPLAY"));
    self->ingress_id = strdup (sb_config_str (config, "SB_INGRESS_ID"));
    self->ttl_ms = sb_config_int (config, "SB_CONSUMER_TTL") * 1000;
    if (!self->endpoints || !self->ingress_id)
        goto fail;
    if (!sb_replay_id_valid (self->ingress_id)) {
        sb_error ("replay", "SB_INGRESS_ID cannot be sent in replies ingress_id=%.100s",
                  self->ingress_id);
        goto fail;
    }
    self->actor = sb_actor_new (s_replay_actor, self);
    if (!self->actor)
        goto fail;
    return self;
fail:
    sb_replay_server_destroy (&self);
    return NULL;
}

void
sb_replay_server_destroy (sb_replay_server_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    sb_replay_server_t *self = *self_p;
    zactor_destroy (&self->actor);
    free (self->endpoints);
    free (self->ingress_id);
    free (self);
    *self_p = NULL;
}

bool
sb_replay_server_ready (const sb_replay_server_t *self)
{
    return atomic_load (&((sb_replay_server_t *) self)->ready);
}

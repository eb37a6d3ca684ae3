/*  sb_replay_server: serves the ingress journal to consumers that missed
    part of the live PUB stream (the dispatcher after a restart or a gap,
    `switchboard replay`), and keeps track of what each consumer committed.

    DESIGN
    One actor thread owns a ROUTER socket bound on SB_REPLAY. Each message
    is [routing id][ReplayMessage] (sb_replay codec, proto/README.md):
      - HELLO is answered by WELCOME: ingress id, epoch, committed seq.
      - REQUEST opens a session for that connection (replacing any it had): START,
        then RECORDs in sequence order read with sb_journal_reader, each
        costing one credit, then END saying where it stopped. A request for
        another epoch starts at seq 1 of the current one (START says so).
      - CREDIT adds credit to the peer's session, CANCEL ends it.
      - ACK records the consumer's committed seq and the time, when it
        comes from the id's owner and is not past the watermark.
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
    Sessions are capped (S_MAX_SESSIONS, S_MAX_SESSIONS_PER_PEER for one
    peer, then END BUSY), so are readers and their file descriptors; a
    session that could send nothing (no credit, or the peer's queue full)
    for S_STALL_MS ends with END TIMEOUT, and when every slot is taken a
    registered consumer's REQUEST ends the session stalled longest, so
    sessions that never read cannot lock the dispatcher out. A session not
    heard from for S_SESSION_IDLE_MS is dropped. Consumer messages are
    capped at SB_REPLAY_MAX_REQUEST bytes by the socket itself.

    Who may do what. A peer is a CURVE public key (the ZAP user id zauth
    puts on each message) when the socket is a CURVE server, else a
    connection (its routing id). Anyone who connects may HELLO and replay.
    A consumer id belongs to the peer that registered it (its first HELLO,
    REQUEST or ACK): only that peer's messages move its state (last heard,
    acked seq); another peer's are refused, counted
    (sb_replay_refused_total{reason="not_owner"}) and logged at most once a
    second; its REQUEST still runs, as an anonymous one. A connection's
    claim lapses when the connection is gone (a WELCOME to it is
    unroutable: checked at most every S_PROBE_MS), so a restarted consumer
    takes its id back; a key's claim lasts until the id is evicted. An ACK
    past the committed watermark is refused and counted: retention never
    trusts a seq the journal has not made durable. The table holds
    S_MAX_CONSUMERS ids, S_MAX_CONSUMERS_PER_PEER per peer; past that a
    new id is refused and counted, a live one never evicted. Without CURVE
    any local process can connect: the first to claim an id owns it.

    Lag. For each consumer id in the table /metrics shows its acked seq, its lag in
    events (committed - acked) and in seconds: the age of its oldest
    unacknowledged record, from a ring of (committed seq, time) samples
    taken once a second when the watermark moved. It is a lower bound at
    one-second resolution, and stops growing past the ring (S_RING_SIZE
    samples, an hour of steady traffic).

    Metric series are never removed, so only the first S_MAX_SERIES ids
    ever seen get them.

    Retention. A consumer id heard from (by its owner) within
    SB_CONSUMER_TTL holds the journal's segments from its acked seq + 1 on
    (all of them before its first ACK of the current epoch); the lowest of
    these goes to the writer (sb_writer_hold) on every ACK and every tick,
    and the writer's trim keeps those segments up to
    SB_JOURNAL_HARD_MAX_BYTES. An id silent for the TTL is evicted: it
    holds nothing and frees its place. So that a restart of the ingress
    does not forget who holds what, the table is saved to DIR/CONSUMERS
    (the journal's directory: id, epoch, acked seq, last heard, wall clock,
    owner key or "-") at most every S_SAVE_MS and at exit, and read back at
    start; an entry older than the TTL is dropped there, and a connection's
    claim is not kept (the first peer to claim the id after a restart owns
    it). A crash
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
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sb_actor.h"
#include "sb_log.h"
#include "sb_replay.h"
#include "sb_time.h"

#define S_MAX_SESSIONS 64
#define S_MAX_SESSIONS_PER_PEER 4  //  replays of one peer (a CURVE key) at once
#define S_MAX_CONSUMERS 64
#define S_MAX_CONSUMERS_PER_PEER 8         //  consumer ids one peer may own
#define S_MAX_SERIES 256                   //  consumer ids given /metrics series, ever
#define S_STALL_MS 10000                   //  a replay that could send nothing this long ends
#define S_PREEMPT_MS 1000                  //  a replay stalled this long gives way (see REQUEST)
#define S_PROBE_MS 1000                    //  an owner's connection is checked at most this often
#define S_LOG_MS 1000                      //  a repeated refusal is logged at most this often
#define S_PEER_ID_MAX 255                  //  a routing id or a CURVE key text
#define S_KEY_LEN 40                       //  a CURVE public key in Z85
#define S_CHUNK 64                         //  records per session per turn
#define S_PEER_HWM 2000                    //  messages queued per peer
#define S_SESSION_IDLE_MS (5 * 60 * 1000)  //  drop a session not heard from
#define S_TICK_MS 1000                     //  housekeeping and gauges
#define S_RING_SIZE 3600                   //  watermark samples
#define S_READ_BATCH 1000                  //  requests read per turn
#define S_RETRY_MS 5                       //  wait before retrying a full peer queue
#define S_SAVE_MS 5000                     //  consumer table saved at most this often
#define S_CONSUMERS_FILE "CONSUMERS"       //  in the journal directory

struct sb_replay_server_t {
    zactor_t *actor;                    //  the actor thread
    sb_writer_t *writer;                //  borrowed: watermark, epoch, journal dir
    sb_metrics_t *metrics;              //  borrowed
    char *endpoints;                    //  SB_REPLAY, comma-separated
    const sb_zmq_security_t *security;  //  borrowed: CURVE keys, the plaintext rule
    char *ingress_id;                   //  SB_INGRESS_ID
    int64_t ttl_ms;                     //  SB_CONSUMER_TTL: a consumer holds segments this long
};

//  Who sent a message: its CURVE public key (the ZAP user id) when the
//  socket is a CURVE server, else its connection (the routing id).
typedef struct {
    bool curve;                 //  id is a CURVE key (Z85 text)
    size_t size;                //  bytes in id; 0: nobody
    uint8_t id[S_PEER_ID_MAX];  //  the key text, or the routing id
} s_peer_t;

//  One replay in progress, for one peer.
typedef struct {
    zframe_t *peer;                          //  ROUTER routing id
    s_peer_t who;                            //  the peer, for its share of sessions
    int64_t progress_ms;                     //  last record sent or credit granted
    uint64_t replay_id;                      //  the consumer's id for this replay
    char consumer_id[SB_REPLAY_ID_MAX + 1];  //  "" for anonymous
    sb_journal_reader_t *reader;             //  positioned after last_sent
    uint64_t next_seq;                       //  next seq wanted (last_sent + 1)
    uint64_t last_sent;                      //  0 until a record is sent
    uint64_t sent;                           //  records sent
    uint64_t credit;                         //  records we may still send
    uint64_t count_left;                     //  records before END COUNT, when limited
    bool limited;                            //  the request had a count
    int64_t heard_ms;                        //  last message from the peer
    uint8_t *pending;                        //  encoded message the peer queue refused
    size_t pending_size;                     //  its size
    bool pending_end;                        //  pending is the END: then the session is over
    int64_t retry_ms;                        //  while pending: when to try the peer again
    bool failed;                             //  the journal could not be read: END ERROR
} s_session_t;

//  A consumer id we have heard from, with its lag gauges.
typedef struct {
    char id[SB_REPLAY_ID_MAX + 1];        //  consumer id
    char epoch[SB_REPLAY_EPOCH_MAX + 1];  //  epoch of its last ack
    uint64_t acked;                       //  last committed seq it reported
    bool has_ack;                         //  acked is meaningful
    int64_t seen_ms;                      //  last message from it (monotonic)
    s_peer_t owner;                       //  the peer that may act for it (size 0: none yet)
    int64_t probed_ms;                    //  when the owner's connection was last checked
    sb_metric_t *m_acked;                 //  sb_replay_consumer_acked_seq
    sb_metric_t *m_lag_events;            //  sb_replay_consumer_lag_events
    sb_metric_t *m_lag_seconds;           //  sb_replay_consumer_lag_seconds
    sb_metric_t *m_seen;                  //  sb_replay_consumer_last_seen_seconds
} s_consumer_t;

//  The watermark at a moment.
typedef struct {
    uint64_t seq;  //  committed seq
    int64_t ms;    //  when (monotonic)
} s_sample_t;

//  Actor state, private to the actor thread.
typedef struct {
    sb_replay_server_t *server;               //  shared part
    zsock_t *pipe;                            //  to the owner
    zsock_t *router;                          //  consumers
    zpoller_t *poller;                        //  pipe + router
    bool terminated;                          //  $TERM received
    const char *epoch;                        //  the journal's epoch (borrowed from the writer)
    s_session_t *sessions[S_MAX_SESSIONS];    //  replays in progress (NULL: free slot)
    size_t nsessions;                         //  slots in use
    s_consumer_t consumers[S_MAX_CONSUMERS];  //  consumers heard from
    size_t nconsumers;                        //  how many
    char series[S_MAX_SERIES][SB_REPLAY_ID_MAX + 1];  //  ids that have /metrics series
    size_t nseries;                                   //  how many
    s_sample_t ring[S_RING_SIZE];                     //  watermark samples, oldest at ring_start
    size_t ring_start;                                //  index of the oldest sample
    size_t ring_count;                                //  samples held
    int64_t next_tick_ms;                             //  when housekeeping runs next
    char consumers_path[PATH_MAX];                    //  DIR/CONSUMERS ("" when too long)
    bool consumers_dirty;                             //  the table changed since it was saved
    int64_t next_save_ms;                             //  when it may be saved next
    bool save_failed;                                 //  the last save failed (said once)
    sb_metric_t *m_requests;                          //  replays started
    sb_metric_t *m_records;                           //  records sent
    sb_metric_t *m_sessions;                          //  replays in progress
    sb_metric_t *m_bad;                               //  messages that did not decode
    sb_metric_t *m_busy;                              //  requests refused: too many replays
    sb_metric_t *m_consumers;                         //  consumer ids in the table
    sb_metric_t *m_evicted;                           //  consumer ids forgotten after the TTL
    sb_metric_t *m_timed_out;       //  replays ended: nothing could be sent for S_STALL_MS
    sb_metric_t *m_not_owner;       //  refused: the id belongs to another peer
    sb_metric_t *m_beyond;          //  refused: ACK past the committed seq
    sb_metric_t *m_full;            //  refused: the consumer table is full
    sb_metric_t *m_peer_consumers;  //  refused: the peer owns its share of ids
    sb_metric_t *m_peer_sessions;   //  refused: the peer runs its share of replays
    sb_log_every_t log_not_owner;   //  at most a line a second per kind of refusal
    sb_log_every_t log_beyond;
    sb_log_every_t log_full;
    sb_log_every_t log_peer;
    sb_log_every_t log_timeout;
    sb_log_every_t log_evict;
} self_t;

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
    self->m_requests =
        sb_metrics_counter (m, "sb_replay_requests_total", "Journal replays started", NULL);
    self->m_records =
        sb_metrics_counter (m, "sb_replay_records_total", "Journal records sent by replays", NULL);
    self->m_sessions =
        sb_metrics_gauge (m, "sb_replay_sessions", "Journal replays in progress", NULL);
    self->m_bad = sb_metrics_counter (m, "sb_replay_bad_messages_total",
                                      "Replay messages refused (malformed or unexpected)", NULL);
    self->m_busy = sb_metrics_counter (m, "sb_replay_busy_total",
                                       "Replay requests refused: too many in progress", NULL);
    self->m_consumers =
        sb_metrics_gauge (m, "sb_replay_consumers",
                          "Replay consumer ids known (heard from within SB_CONSUMER_TTL)", NULL);
    self->m_evicted =
        sb_metrics_counter (m, "sb_replay_consumers_evicted_total",
                            "Replay consumer ids forgotten: silent for SB_CONSUMER_TTL", NULL);
    self->m_timed_out =
        sb_metrics_counter (m, "sb_replay_sessions_timed_out_total",
                            "Replays ended because the consumer took nothing for seconds", NULL);
    const char *refused_help =
        "Replay messages refused: from a peer that does not own the consumer "
        "id, an ACK past the committed seq, or a table or per-peer bound";
    self->m_not_owner =
        sb_metrics_counter (m, "sb_replay_refused_total", refused_help, "reason=\"not_owner\"");
    self->m_beyond = sb_metrics_counter (m, "sb_replay_refused_total", refused_help,
                                         "reason=\"beyond_committed\"");
    self->m_full = sb_metrics_counter (m, "sb_replay_refused_total", refused_help,
                                       "reason=\"consumers_full\"");
    self->m_peer_consumers = sb_metrics_counter (m, "sb_replay_refused_total", refused_help,
                                                 "reason=\"peer_consumers\"");
    self->m_peer_sessions =
        sb_metrics_counter (m, "sb_replay_refused_total", refused_help, "reason=\"peer_sessions\"");
    self->log_not_owner = (sb_log_every_t) SB_LOG_EVERY (S_LOG_MS);
    self->log_beyond = (sb_log_every_t) SB_LOG_EVERY (S_LOG_MS);
    self->log_full = (sb_log_every_t) SB_LOG_EVERY (S_LOG_MS);
    self->log_peer = (sb_log_every_t) SB_LOG_EVERY (S_LOG_MS);
    self->log_timeout = (sb_log_every_t) SB_LOG_EVERY (S_LOG_MS);
    self->log_evict = (sb_log_every_t) SB_LOG_EVERY (S_LOG_MS);
    uint64_t committed = sb_writer_committed_seq (server->writer);
    self->ring[0] = (s_sample_t){.seq = committed, .ms = sb_time_mono_ms ()};
    self->ring_count = 1;
    self->next_tick_ms = sb_time_mono_ms () + S_TICK_MS;
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
s_send_to (self_t *self, const void *rid, size_t rid_size, const uint8_t *data, size_t size)
{
    void *handle = zsock_resolve (self->router);
    if (zmq_send (handle, rid, rid_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    if (zmq_send (handle, data, size, ZMQ_DONTWAIT) < 0)
        return -1;  //  not expected once the first frame went: the message is whole or none
    return 0;
}

static int
s_send_raw (self_t *self, zframe_t *peer, const uint8_t *data, size_t size)
{
    return s_send_to (self, zframe_data (peer), zframe_size (peer), data, size);
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
    sb_info ("replay",
             "replay ended consumer=%s reason=%s records=%llu last_seq=%llu "
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
        s->retry_ms = sb_time_mono_ms () + S_RETRY_MS;
        return;
    }
    free (data);
    s_session_remove (self, slot);
}

static bool
s_peer_eq (const s_peer_t *a, const s_peer_t *b)
{
    return a->curve == b->curve && a->size == b->size && memcmp (a->id, b->id, a->size) == 0;
}

//  Who sent body, which came from the connection routing: its CURVE key
//  when zauth named one (the ZAP user id), else the connection.
static void
s_peer_of (s_peer_t *who, zframe_t *routing, zframe_t *body)
{
    memset (who, 0, sizeof *who);
    const char *user = zframe_meta (body, "User-Id");
    if (user && *user) {
        who->curve = true;
        who->size = strnlen (user, S_PEER_ID_MAX);
        memcpy (who->id, user, who->size);
    }
    else {
        who->size = zframe_size (routing) < S_PEER_ID_MAX ? zframe_size (routing) : S_PEER_ID_MAX;
        memcpy (who->id, zframe_data (routing), who->size);
    }
}

//  The peer in log lines: its key, or "connection".
static const char *
s_peer_name (const s_peer_t *who, char *buf, size_t size)
{
    if (!who->curve)
        return "connection";
    snprintf (buf, size, "%.*s", (int) who->size, (const char *) who->id);
    return buf;
}

static s_consumer_t *
s_consumer_find (self_t *self, const char *id)
{
    for (size_t i = 0; i < self->nconsumers; i++)
        if (strcmp (self->consumers[i].id, id) == 0)
            return &self->consumers[i];
    return NULL;
}

//  Register id, owned by who (NULL: by nobody yet, when read back at
//  start). NULL when the table is full, or who owns its share of it:
//  counted and logged (rate-limited); live consumers are never evicted
//  to make room.
static s_consumer_t *
s_consumer_add (self_t *self, const char *id, const s_peer_t *who)
{
    size_t owned = 0;
    for (size_t i = 0; who && i < self->nconsumers; i++)
        owned += s_peer_eq (&self->consumers[i].owner, who);
    if (self->nconsumers == S_MAX_CONSUMERS || owned >= S_MAX_CONSUMERS_PER_PEER) {
        bool full = self->nconsumers == S_MAX_CONSUMERS;
        sb_metric_add (full ? self->m_full : self->m_peer_consumers, 1);
        sb_log_every (full ? &self->log_full : &self->log_peer, SB_LOG_WARN, "replay",
                      "consumer refused: %s consumer=%s max=%d",
                      full ? "the table is full" : "the peer owns as many consumer ids as it may",
                      id, full ? S_MAX_CONSUMERS : S_MAX_CONSUMERS_PER_PEER);
        return NULL;
    }
    s_consumer_t *c = &self->consumers[self->nconsumers++];
    memset (c, 0, sizeof *c);
    sb_replay_set (c->id, sizeof c->id, id);
    c->seen_ms = sb_time_mono_ms ();
    if (who)
        c->owner = *who;
    self->consumers_dirty = true;
    sb_metric_set (self->m_consumers, (int64_t) self->nconsumers);
    //  Series are never removed: only the first S_MAX_SERIES ids get them.
    bool series = false;
    for (size_t i = 0; i < self->nseries && !series; i++)
        series = strcmp (self->series[i], id) == 0;
    if (!series && self->nseries < S_MAX_SERIES) {
        sb_replay_set (self->series[self->nseries++], sizeof self->series[0], id);
        series = true;
    }
    if (series) {
        //  Ids are [A-Za-z0-9._:@-] (checked by the codec): safe in a label.
        char labels[SB_REPLAY_ID_MAX + 16];
        snprintf (labels, sizeof labels, "consumer=\"%s\"", id);
        sb_metrics_t *m = self->server->metrics;
        c->m_acked = sb_metrics_gauge (m, "sb_replay_consumer_acked_seq",
                                       "Last journal seq the consumer reported committed", labels);
        c->m_lag_events = sb_metrics_gauge (
            m, "sb_replay_consumer_lag_events",
            "Journal records committed but not acknowledged by the consumer", labels);
        c->m_lag_seconds = sb_metrics_gauge (
            m, "sb_replay_consumer_lag_seconds",
            "Age of the consumer's oldest unacknowledged record (lower bound, 1 s resolution)",
            labels);
        c->m_seen =
            sb_metrics_gauge (m, "sb_replay_consumer_last_seen_seconds",
                              "Seconds since the consumer last spoke to the replay server", labels);
    }
    char key[S_PEER_ID_MAX + 1];
    sb_info ("replay", "new consumer consumer=%s owner=%s", id,
             who ? s_peer_name (who, key, sizeof key) : "(not yet)");
    return c;
}

//  The WELCOME of this journal now.
static void
s_welcome_message (self_t *self, sb_replay_msg_t *welcome)
{
    memset (welcome, 0, sizeof *welcome);
    welcome->type = SB_REPLAY_WELCOME;
    sb_replay_set (welcome->ingress_id, sizeof welcome->ingress_id, self->server->ingress_id);
    sb_replay_set (welcome->epoch, sizeof welcome->epoch, self->epoch);
    welcome->committed_seq = sb_writer_committed_seq (self->server->writer);
}

//  True when the connection owning c is gone: a WELCOME (what a HELLO
//  gets anyway) to its routing id is refused as unroutable. Checked at
//  most every S_PROBE_MS per consumer.
static bool
s_owner_gone (self_t *self, s_consumer_t *c)
{
    int64_t now = sb_time_mono_ms ();
    if (now - c->probed_ms < S_PROBE_MS)
        return false;
    c->probed_ms = now;
    sb_replay_msg_t welcome;
    s_welcome_message (self, &welcome);
    size_t size = 0;
    uint8_t *data = sb_replay_encode (&welcome, &size);
    bool gone = data && s_send_to (self, c->owner.id, c->owner.size, data, size) < 0
                && zmq_errno () == EHOSTUNREACH;
    free (data);
    return gone;
}

//  The consumer id of a message from who that moves its state (HELLO,
//  REQUEST, ACK), registered to who when new. A consumer id belongs to
//  the peer that registered it: its CURVE key, or without CURVE its
//  connection, until that connection is gone. NULL for an anonymous
//  message, or when who may not act for id (counted, logged).
static s_consumer_t *
s_claim (self_t *self, const s_peer_t *who, const char *id, const char *what)
{
    if (!*id)
        return NULL;
    s_consumer_t *c = s_consumer_find (self, id);
    if (!c)
        return s_consumer_add (self, id, who);
    if (s_peer_eq (&c->owner, who))
        return c;
    char key[S_PEER_ID_MAX + 1];
    if (c->owner.size == 0 || (!c->owner.curve && !who->curve && s_owner_gone (self, c))) {
        sb_info ("replay", "consumer id taken by a new peer: %s consumer=%s owner=%s",
                 c->owner.size ? "the connection that owned it is gone" : "read back at start", id,
                 s_peer_name (who, key, sizeof key));
        c->owner = *who;
        self->consumers_dirty = true;
        return c;
    }
    sb_metric_add (self->m_not_owner, 1);
    sb_log_every (&self->log_not_owner, SB_LOG_WARN, "replay",
                  "message refused: the consumer id belongs to another peer type=%s consumer=%s "
                  "peer=%s",
                  what, id, s_peer_name (who, key, sizeof key));
    return NULL;
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

//  A message from the consumer's owner: it is alive.
static void
s_touch (self_t *self, s_consumer_t *c)
{
    if (c) {
        c->seen_ms = sb_time_mono_ms ();
        self->consumers_dirty = true;
    }
}

//  Forget the consumers not heard from within the TTL (they no longer hold
//  segments, and their place in the table is free), then give the lowest
//  seq the others acknowledged to the writer: its retention keeps every
//  record above it.
static void
s_hold (self_t *self, int64_t now)
{
    uint64_t floor = SB_JOURNAL_NO_HOLD;
    for (size_t i = 0; i < self->nconsumers;) {
        s_consumer_t *c = &self->consumers[i];
        uint64_t acked = c->has_ack && strcmp (c->epoch, self->epoch) == 0 ? c->acked : 0;
        if (now - c->seen_ms > self->server->ttl_ms) {
            //  One that acknowledged something was a real consumer: always
            //  said; ids that never did are often many (rate-limited).
            if (c->has_ack)
                sb_warn ("replay",
                         "consumer not heard from within SB_CONSUMER_TTL: it no "
                         "longer holds journal segments consumer=%s acked_seq=%llu ttl_s=%lld",
                         c->id, (unsigned long long) acked,
                         (long long) (self->server->ttl_ms / 1000));
            else
                sb_log_every (&self->log_evict, SB_LOG_INFO, "replay",
                              "consumer not heard from within SB_CONSUMER_TTL, never acknowledged: "
                              "forgotten consumer=%s ttl_s=%lld",
                              c->id, (long long) (self->server->ttl_ms / 1000));
            sb_metric_add (self->m_evicted, 1);
            *c = self->consumers[--self->nconsumers];
            sb_metric_set (self->m_consumers, (int64_t) self->nconsumers);
            self->consumers_dirty = true;
            continue;
        }
        if (acked < floor)
            floor = acked;
        i++;
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
    int64_t now = sb_time_mono_ms (), wall = sb_time_wall_ms ();
    FILE *file = fopen (tmp, "w");
    bool ok = file != NULL;
    if (ok)
        ok = fprintf (file, "# switchboard replay consumers: id epoch acked_seq "
                            "last_seen_unix_ms owner_curve_key\n")
             > 0;
    for (size_t i = 0; ok && i < self->nconsumers; i++) {
        //  A CURVE owner is kept; a connection does not outlive a restart.
        const s_consumer_t *c = &self->consumers[i];
        bool key = c->owner.curve && c->owner.size == S_KEY_LEN;
        ok = fprintf (file, "%s %s %llu %lld %.*s\n", c->id, c->has_ack ? c->epoch : "-",
                      (unsigned long long) c->acked, (long long) (wall - (now - c->seen_ms)),
                      key ? S_KEY_LEN : 1, key ? (const char *) c->owner.id : "-")
             > 0;
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
    int64_t now = sb_time_mono_ms (), wall = sb_time_wall_ms ();
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
        //  id epoch acked_seq last_seen [owner]: the owner (a CURVE key, or
        //  "-") is absent from files written before owners were.
        char *fields[5], *save = NULL;
        size_t nfields = 0;
        for (char *f = strtok_r (line, " ", &save); f; f = strtok_r (NULL, " ", &save)) {
            if (nfields < 5)
                fields[nfields] = f;
            nfields++;
        }
        unsigned long long acked = 0, seen = 0;
        bool no_epoch = nfields >= 4 && strcmp (fields[1], "-") == 0;
        bool no_owner = nfields == 4 || (nfields == 5 && strcmp (fields[4], "-") == 0);
        uint8_t key[32];
        if ((nfields != 4 && nfields != 5) || !sb_replay_id_valid (fields[0])
            || !(no_owner || (strlen (fields[4]) == S_KEY_LEN && zmq_z85_decode (key, fields[4])))
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
        s_consumer_t *c = s_consumer_find (self, fields[0]);
        if (!c)
            c = s_consumer_add (self, fields[0], NULL);
        if (!c)
            continue;
        if (!no_owner) {
            c->owner.curve = true;
            c->owner.size = S_KEY_LEN;
            memcpy (c->owner.id, fields[4], S_KEY_LEN);
        }
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

//  End the session in slot for want of progress: END TIMEOUT, or just
//  gone when even that cannot be queued.
static void
s_session_timeout (self_t *self, size_t slot, const char *why)
{
    s_session_t *s = self->sessions[slot];
    sb_metric_add (self->m_timed_out, 1);
    sb_log_every (&self->log_timeout, SB_LOG_INFO, "replay",
                  "replay ended: %s consumer=%s stalled_ms=%lld records=%llu", why,
                  *s->consumer_id ? s->consumer_id : "(anonymous)",
                  (long long) (sb_time_mono_ms () - s->progress_ms), (unsigned long long) s->sent);
    if (s->pending)
        s_session_remove (self, slot);
    else
        s_session_end (self, slot, SB_REPLAY_END_TIMEOUT);
}

//  A slot for a new replay when all are taken: the session stalled
//  longest (no credit, or its peer's queue full, for S_PREEMPT_MS at
//  least) is ended. S_MAX_SESSIONS when none is.
static size_t
s_preempt (self_t *self)
{
    int64_t now = sb_time_mono_ms ();
    size_t oldest = S_MAX_SESSIONS;
    for (size_t i = 0; i < S_MAX_SESSIONS; i++) {
        s_session_t *s = self->sessions[i];
        if (s && (s->pending || s->credit == 0) && now - s->progress_ms >= S_PREEMPT_MS
            && (oldest == S_MAX_SESSIONS || s->progress_ms < self->sessions[oldest]->progress_ms))
            oldest = i;
    }
    if (oldest < S_MAX_SESSIONS) {
        s_session_timeout (self, oldest, "stalled, and a registered consumer needs its place");
        if (self->sessions[oldest])
            s_session_remove (self, oldest);  //  its END is queued; the slot is needed now
    }
    return oldest;
}

static void
s_handle_hello (self_t *self, const s_peer_t *who, zframe_t *peer, const sb_replay_msg_t *msg)
{
    s_touch (self, s_claim (self, who, msg->consumer_id, "hello"));
    sb_replay_msg_t welcome;
    s_welcome_message (self, &welcome);
    s_send (self, peer, &welcome);
}

static void
s_handle_request (self_t *self, const s_peer_t *who, zframe_t **peer_p, const sb_replay_msg_t *msg)
{
    zframe_t *peer = *peer_p;
    //  A replay for an id another peer owns runs, as an anonymous one.
    s_consumer_t *c = s_claim (self, who, msg->consumer_id, "request");
    s_touch (self, c);
    //  A new request replaces the connection's replay in progress.
    size_t slot = s_find_session (self, peer);
    if (slot < S_MAX_SESSIONS)
        s_session_remove (self, slot);
    size_t mine = 0;
    for (size_t i = 0; i < S_MAX_SESSIONS; i++)
        mine += self->sessions[i] && s_peer_eq (&self->sessions[i]->who, who);
    for (slot = 0; slot < S_MAX_SESSIONS && self->sessions[slot]; slot++)
        ;
    //  A registered consumer's replay is not locked out by stalled ones.
    if (slot == S_MAX_SESSIONS && c && mine < S_MAX_SESSIONS_PER_PEER)
        slot = s_preempt (self);
    sb_replay_msg_t end;
    if (slot == S_MAX_SESSIONS || mine >= S_MAX_SESSIONS_PER_PEER) {
        bool full = slot == S_MAX_SESSIONS;
        sb_metric_add (full ? self->m_busy : self->m_peer_sessions, 1);
        sb_log_every (&self->log_peer, SB_LOG_WARN, "replay",
                      "replay refused: %s consumer=%s max=%d",
                      full ? "too many in progress" : "the peer runs as many replays as it may",
                      *msg->consumer_id ? msg->consumer_id : "(anonymous)",
                      full ? S_MAX_SESSIONS : S_MAX_SESSIONS_PER_PEER);
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
             (unsigned long long) committed, msg->credit, other_epoch ? " epoch_changed=1" : "");
    if (trimmed)
        sb_info ("replay",
                 "replay asked for records retention removed: starting at the first "
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
        s->retry_ms = sb_time_mono_ms () + S_RETRY_MS;
    }
    s->peer = peer;
    *peer_p = NULL;
    s->who = *who;
    s->progress_ms = sb_time_mono_ms ();
    s->replay_id = msg->replay_id;
    sb_replay_set (s->consumer_id, sizeof s->consumer_id, c ? c->id : "");
    s->next_seq = from;
    s->credit = msg->credit;
    s->limited = msg->count > 0;
    s->count_left = msg->count;
    s->heard_ms = sb_time_mono_ms ();
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
    s->heard_ms = sb_time_mono_ms ();
    s->progress_ms = s->heard_ms;
    //  The session's consumer id is one its peer owned when it asked.
    s_touch (self, *s->consumer_id ? s_consumer_find (self, s->consumer_id) : NULL);
    if (cancel) {
        s_session_end (self, slot, SB_REPLAY_END_CANCELLED);
        return;
    }
    s->credit += msg->credit;
    if (s->credit > SB_REPLAY_CREDIT_MAX)
        s->credit = SB_REPLAY_CREDIT_MAX;
}

//  ACK from who: taken from the consumer id's owner, up to the committed
//  seq (a consumer cannot have stored what the journal may still roll
//  back, and an ACK past it would let retention remove what no one has).
static void
s_handle_ack (self_t *self, const s_peer_t *who, const sb_replay_msg_t *msg)
{
    uint64_t committed = sb_writer_committed_seq (self->server->writer);
    if (strcmp (msg->epoch, self->epoch) == 0 && msg->committed_seq > committed) {
        char key[S_PEER_ID_MAX + 1];
        sb_metric_add (self->m_beyond, 1);
        sb_log_every (&self->log_beyond, SB_LOG_WARN, "replay",
                      "ack refused: past the committed seq consumer=%s seq=%llu committed_seq=%llu "
                      "peer=%s",
                      msg->consumer_id, (unsigned long long) msg->committed_seq,
                      (unsigned long long) committed, s_peer_name (who, key, sizeof key));
        return;
    }
    s_consumer_t *c = s_claim (self, who, msg->consumer_id, "ack");
    if (!c)
        return;
    int64_t now = sb_time_mono_ms ();
    c->seen_ms = now;
    //  The latest word counts, even backwards (a consumer that lost its
    //  database starts over).
    c->acked = msg->committed_seq;
    sb_replay_set (c->epoch, sizeof c->epoch, msg->epoch);
    c->has_ack = true;
    self->consumers_dirty = true;
    s_consumer_gauges (self, c, committed, now);
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
        s_peer_t who;
        s_peer_of (&who, peer, body);
        switch (msg.type) {
            case SB_REPLAY_HELLO: s_handle_hello (self, &who, peer, &msg); break;
            case SB_REPLAY_REQUEST: s_handle_request (self, &who, &peer, &msg); break;
            case SB_REPLAY_CREDIT: s_handle_credit_cancel (self, peer, &msg, false); break;
            case SB_REPLAY_CANCEL: s_handle_credit_cancel (self, peer, &msg, true); break;
            case SB_REPLAY_ACK: s_handle_ack (self, &who, &msg); break;
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
        if (s->retry_ms > sb_time_mono_ms ())
            return;
        if (s_send_raw (self, s->peer, s->pending, s->pending_size) < 0) {
            if (zmq_errno () != EAGAIN) {
                sb_info ("replay", "consumer went away during a replay consumer=%s",
                         *s->consumer_id ? s->consumer_id : "(anonymous)");
                s_session_remove (self, slot);
            }
            else
                s->retry_ms = sb_time_mono_ms () + S_RETRY_MS;
            return;
        }
        free (s->pending);
        s->pending = NULL;
        s->progress_ms = sb_time_mono_ms ();
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
                s->retry_ms = sb_time_mono_ms () + S_RETRY_MS;
                return;
            }
            free (encoded);
            sb_info ("replay", "consumer went away during a replay consumer=%s",
                     *s->consumer_id ? s->consumer_id : "(anonymous)");
            s_session_remove (self, slot);
            return;
        }
        free (encoded);
        s->progress_ms = sb_time_mono_ms ();
    }
}

//  How long the actor may wait for requests: 0 when some session can
//  send now, else until the next tick or the earliest retry of a full
//  peer queue.
static int64_t
s_wait_ms (self_t *self)
{
    int64_t now = sb_time_mono_ms ();
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
    int64_t now = sb_time_mono_ms ();
    uint64_t committed = sb_writer_committed_seq (self->server->writer);
    const s_sample_t *last = &self->ring[(self->ring_start + self->ring_count - 1) % S_RING_SIZE];
    if (committed != last->seq) {
        if (self->ring_count == S_RING_SIZE) {
            self->ring_start = (self->ring_start + 1) % S_RING_SIZE;
            self->ring_count--;
        }
        self->ring[(self->ring_start + self->ring_count) % S_RING_SIZE] =
            (s_sample_t){.seq = committed, .ms = now};
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
        //  No credit, or the peer's queue full, for seconds: a consumer
        //  that does not read gives its place back.
        else if (s && (s->pending || s->credit == 0) && now - s->progress_ms > S_STALL_MS) {
            if (s->pending_end)
                s_session_remove (self, i);  //  its END found no room either
            else
                s_session_timeout (self, i, "the consumer took nothing for seconds");
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
            sb_warn ("replay",
                     "journal directory path too long to save replay consumers dir=%.200s", dir);
            self->consumers_path[0] = '\0';
        }
        s_consumers_load (self);
        s_hold (self, sb_time_mono_ms ());
    }
    sb_actor_started (pipe, self != NULL);
    if (!self)
        return;
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
        if (sb_time_mono_ms () >= self->next_tick_ms) {
            s_tick (self);
            self->next_tick_ms = sb_time_mono_ms () + S_TICK_MS;
        }
    }
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
    self->endpoints = strdup (sb_config_str (config, SB_CFG_SB_REPLAY));
    self->ingress_id = strdup (sb_config_str (config, SB_CFG_SB_INGRESS_ID));
    self->ttl_ms = sb_config_int (config, SB_CFG_SB_CONSUMER_TTL) * 1000;
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

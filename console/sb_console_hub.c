/*  sb_console_hub: the console's live fan-out (see sb_console_hub.h).

    DESIGN. One czmq actor owns the SUB socket, connected to every ingress
    PUB and dispatcher PUB endpoint; it waits in one zpoller on its pipe and
    the SUB. Each message becomes one SSE frame, built on the actor thread,
    and is put in the ring under the hub's mutex; a condition variable wakes
    the HTTP threads streaming /api/events, which copy frames out under the
    same mutex and write them to their sockets after releasing it (no I/O
    under the lock). The ring is the boundary between the actor and
    civetweb's threads (STYLE.md section 7: a locked queue at that boundary
    only). Frames are at most S_FRAME_MAX bytes: an event with more (a large
    batch's text) is told without its details, then without its text.

    The ring holds SB_CONSOLE_HUB_RING frames; a slow stream that falls
    behind it, or a reconnect from before it, gets "resync" and the page
    reads PostgreSQL again. Ids are "<boot>.<seq>": boot is random per
    process, so a page that saw another process's ids resyncs too.
*/
#include "sb_console_hub.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sb_actor.h"
#include "sb_console_web.h"
#include "sb_event.h"
#include "sb_log.h"

#define S_MODULE "hub"
#define S_RCVHWM 10000                      //  messages queued before the SUB drops
#define S_MAX_PAYLOAD (256u * 1024 * 1024)  //  larger: libzmq drops the peer (as tap)
#define S_FRAME_MAX (16 * 1024)  //  longest frame kept in the ring: 16 MiB at most in all
#define S_OUTCOME_PREFIX "sb.v1.outcome."

struct sb_console_hub_t {
    pthread_mutex_t lock;               //  guards everything below it but the actor
    pthread_cond_t cond;                //  signalled on each new frame and on stop
    char *frames[SB_CONSOLE_HUB_RING];  //  frame of seq s at s % RING (owned)
    uint64_t head;                      //  seq of the newest frame (0: none yet)
    bool stopped;                       //  streams must end
    char boot[17];                      //  this process's id prefix, hex
    atomic_int streams;                 //  open /api/events streams
    zactor_t *actor;                    //  the subscriber
    const sb_config_t *config;          //  borrowed, for the actor's setup
    const sb_zmq_security_t *security;  //  borrowed, for the actor's setup
    sb_metric_t *m_received;            //  messages received from the PUBs
    sb_metric_t *m_streams;             //  open streams (gauge)
    sb_metric_t *m_refused;             //  streams refused past the bound
};

//  Put a frame of data as the next seq; wake the streams. Call under no lock.
static void
s_push (sb_console_hub_t *self, const char *data, const char *name)
{
    pthread_mutex_lock (&self->lock);
    uint64_t seq = self->head + 1;
    char id[48];
    snprintf (id, sizeof id, "%s.%" PRIu64, self->boot, seq);
    char *frame = sb_console_sse_frame (id, name, data);
    if (frame) {
        size_t slot = (size_t) (seq % SB_CONSOLE_HUB_RING);
        free (self->frames[slot]);
        self->frames[slot] = frame;
        self->head = seq;
        pthread_cond_broadcast (&self->cond);
    }
    pthread_mutex_unlock (&self->lock);
    if (!frame)
        sb_warn (S_MODULE, "frame not built name=%s", name);
}

void
sb_console_hub_post (sb_console_hub_t *self, const char *name, const char *data)
{
    s_push (self, data, name);
}

//  The JSON text of an ingress event's notice, within S_FRAME_MAX.
static char *
s_event_text (const uint8_t *data, size_t size)
{
    sb_event_t *e = sb_event_decode (data, size);
    if (!e)
        return NULL;
    json_t *notice = sb_console_event_notice (e);
    sb_event_destroy (&e);
    if (!notice)
        return NULL;
    char *text = json_dumps (notice, JSON_COMPACT);
    for (int cut = 0; text && strlen (text) > S_FRAME_MAX && cut < 2; cut++) {
        json_object_del (notice, cut == 0 ? "details" : "text");
        json_object_set_new (notice, "truncated", json_true ());
        free (text);
        text = json_dumps (notice, JSON_COMPACT);
    }
    json_decref (notice);
    return text;
}

//  The JSON text of a dispatcher outcome, with "source", within S_FRAME_MAX.
static char *
s_outcome_text (const char *data, size_t size)
{
    if (size > S_FRAME_MAX)
        return NULL;
    json_t *o = json_loadb (data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object (o)) {
        json_decref (o);
        return NULL;
    }
    json_object_set_new (o, "source", json_string ("dispatcher"));
    char *text = json_dumps (o, JSON_COMPACT);
    json_decref (o);
    return text;
}

//  One message from the SUB: [topic, body].
static void
s_receive (sb_console_hub_t *self, zsock_t *sub)
{
    zmsg_t *msg = zmsg_recv (sub);
    if (!msg)
        return;
    sb_metric_add (self->m_received, 1);
    zframe_t *topic = zmsg_first (msg);
    zframe_t *body = zmsg_next (msg);
    if (topic && body) {
        bool outcome =
            zframe_size (topic) > strlen (S_OUTCOME_PREFIX)
            && !memcmp (zframe_data (topic), S_OUTCOME_PREFIX, strlen (S_OUTCOME_PREFIX));
        char *text = outcome
                         ? s_outcome_text ((const char *) zframe_data (body), zframe_size (body))
                         : s_event_text (zframe_data (body), zframe_size (body));
        if (text)
            s_push (self, text, outcome ? "outcome" : "event");
        else
            sb_debug (S_MODULE, "message not shown (does not decode, or too large)");
        free (text);
    }
    zmsg_destroy (&msg);
}

static void
s_actor (zsock_t *pipe, void *args)
{
    sb_console_hub_t *self = (sb_console_hub_t *) args;
    zsock_t *sub = zsock_new (ZMQ_SUB);
    zpoller_t *poller = NULL;
    bool ok = sub != NULL;
    if (ok) {
        zsock_set_rcvhwm (sub, S_RCVHWM);
        zsock_set_maxmsgsize (sub, (int) S_MAX_PAYLOAD);
        zsock_set_subscribe (sub, "");
        ok = sb_zmq_connect (self->security, sub, "SUB", "SB_INGRESS_PUB",
                             sb_config_str (self->config, SB_CFG_SB_INGRESS_PUB))
                 == 0
             && sb_zmq_connect (self->security, sub, "SUB", "SB_DISPATCHER_PUB",
                                sb_config_str (self->config, SB_CFG_SB_DISPATCHER_PUB))
                    == 0;
    }
    if (ok)
        ok = (poller = zpoller_new (pipe, sub, NULL)) != NULL;
    sb_actor_started (pipe, ok);
    while (ok) {
        void *which = zpoller_wait (poller, -1);
        if (which == pipe || zpoller_terminated (poller)) {
            if (which != pipe || sb_actor_pipe_says_stop (pipe, S_MODULE))
                break;
        }
        else if (which == sub)
            s_receive (self, sub);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&sub);
}

sb_console_hub_t *
sb_console_hub_new (const sb_config_t *config, const sb_zmq_security_t *security,
                    sb_metrics_t *metrics)
{
    sb_console_hub_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->cond, &attr);
    pthread_condattr_destroy (&attr);
    pthread_mutex_init (&self->lock, NULL);
    snprintf (self->boot, sizeof self->boot, "%08x%08x", (unsigned) randof (0x7fffffff),
              (unsigned) zclock_time ());
    atomic_init (&self->streams, 0);
    self->config = config;
    self->security = security;
    self->m_received = sb_metrics_counter (metrics, "sb_console_messages_received_total",
                                           "messages received from the PUB sockets", NULL);
    self->m_streams =
        sb_metrics_gauge (metrics, "sb_console_streams", "open /api/events streams", NULL);
    self->m_refused = sb_metrics_counter (metrics, "sb_console_streams_refused_total",
                                          "event streams refused (503) past the bound", NULL);
    self->actor = sb_actor_new (s_actor, self);
    if (!self->actor) {
        sb_error (S_MODULE, "cannot start the subscriber");
        sb_console_hub_destroy (&self);
        return NULL;
    }
    return self;
}

void
sb_console_hub_stop (sb_console_hub_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->stopped = true;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
}

void
sb_console_hub_destroy (sb_console_hub_t **self_p)
{
    assert (self_p);
    sb_console_hub_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy (&self->actor);
    for (size_t i = 0; i < SB_CONSOLE_HUB_RING; i++)
        free (self->frames[i]);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

bool
sb_console_hub_enter (sb_console_hub_t *self)
{
    int n = atomic_fetch_add (&self->streams, 1);
    if (n >= SB_CONSOLE_HUB_STREAMS) {
        atomic_fetch_sub (&self->streams, 1);
        sb_metric_add (self->m_refused, 1);
        return false;
    }
    sb_metric_set (self->m_streams, n + 1);
    return true;
}

void
sb_console_hub_leave (sb_console_hub_t *self)
{
    int n = atomic_fetch_sub (&self->streams, 1);
    sb_metric_set (self->m_streams, n - 1);
}

//  Oldest seq still in the ring (under the lock).
static uint64_t
s_oldest (const sb_console_hub_t *self)
{
    return self->head >= SB_CONSOLE_HUB_RING ? self->head - SB_CONSOLE_HUB_RING + 1 : 1;
}

uint64_t
sb_console_hub_start (sb_console_hub_t *self, const char *last_event_id, bool *resync)
{
    *resync = false;
    pthread_mutex_lock (&self->lock);
    uint64_t cursor = self->head;
    if (last_event_id && *last_event_id) {
        size_t n = strlen (self->boot);
        char *end = NULL;
        unsigned long long seq = 0;
        bool ours = !strncmp (last_event_id, self->boot, n) && last_event_id[n] == '.';
        if (ours)
            seq = strtoull (last_event_id + n + 1, &end, 10);
        if (ours && end && !*end && seq <= self->head && seq + 1 >= s_oldest (self))
            cursor = seq;
        else
            *resync = true;
    }
    pthread_mutex_unlock (&self->lock);
    return cursor;
}

char *
sb_console_hub_resync (sb_console_hub_t *self)
{
    pthread_mutex_lock (&self->lock);
    char id[48];
    snprintf (id, sizeof id, "%s.%" PRIu64, self->boot, self->head);
    pthread_mutex_unlock (&self->lock);
    return sb_console_sse_frame (id, "resync", "{}");
}

char *
sb_console_hub_next (sb_console_hub_t *self, uint64_t *cursor, int timeout_ms, bool *stopped)
{
    struct timespec until;
    clock_gettime (CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    char *frame = NULL;
    bool behind = false;
    pthread_mutex_lock (&self->lock);
    while (!self->stopped && self->head <= *cursor)
        if (pthread_cond_timedwait (&self->cond, &self->lock, &until) != 0)
            break;
    *stopped = self->stopped;
    if (!self->stopped && self->head > *cursor) {
        if (*cursor + 1 < s_oldest (self)) {
            behind = true;
            *cursor = self->head;
        }
        else {
            *cursor += 1;
            const char *f = self->frames[*cursor % SB_CONSOLE_HUB_RING];
            frame = f ? strdup (f) : NULL;
        }
    }
    pthread_mutex_unlock (&self->lock);
    return behind ? sb_console_hub_resync (self) : frame;
}

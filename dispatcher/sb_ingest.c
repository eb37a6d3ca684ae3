/*  sb_ingest: subscriber and batched store writer of the dispatcher.

    DESIGN
    One actor thread owns the SUB socket and one PostgreSQL connection.
    When the SUB socket is readable it takes every event already waiting, up
    to SB_BATCH_MAX: under load that is a full batch, when idle it is one
    event, and no timer ever holds an event back to fill a batch. The batch
    is stored in one transaction (sb_store_write). If that fails, the batch
    is kept and retried with exponential backoff (100 ms to 5 s) while the
    actor stops reading the socket: ZeroMQ's receive queue (SB_QUEUE_MAX
    messages) holds what arrives meanwhile, and past that the ingress's PUB
    drops for us and its journal keeps everything for a replay. Nothing
    received is thrown away. State changes (PostgreSQL down, back up) are
    logged once each.

    Limits: an event that does not decode is logged and counted, not stored.
*/
#include "sb_ingest.h"

#include <assert.h>
#include <czmq.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sb_event.h"
#include "sb_log.h"
#include "sb_outcome.h"
#include "sb_store.h"

#define S_BACKOFF_MIN_MS 100
#define S_BACKOFF_MAX_MS 5000

//  What the actor needs, copied at start.
typedef struct {
    sb_ingest_t *shared;       //  the atomics
    char *conninfo;            //  DATABASE_URL
    char *endpoints;           //  SB_INGRESS_PUB
    char *outcomes;            //  inproc endpoint of the outcome PULL
    char *wake;                //  inproc endpoint of the sender's wake PULL
    size_t batch_max;          //  SB_BATCH_MAX
    int queue_max;             //  SB_QUEUE_MAX: SUB receive high-water mark
    const sb_rules_t *rules;   //  borrowed, immutable
    sb_metrics_t *metrics;     //  borrowed
} s_args_t;

struct sb_ingest_t {
    zactor_t *actor;           //  the actor thread
    atomic_bool ready;         //  PostgreSQL accepts writes
    s_args_t *args;            //  what the actor reads; lives as long as it
};

typedef struct {
    s_args_t *args;
    zsock_t *pipe;             //  to the owner
    zsock_t *sub;              //  events from the ingresses
    zsock_t *push;             //  outcomes
    zsock_t *wake;             //  tells the sender the outbox has new rows
    zpoller_t *poller;         //  pipe + sub
    sb_store_t *store;         //  PostgreSQL
    sb_event_t **batch;        //  events taken, not yet stored
    bool *fresh;               //  per event of the batch: stored now (not a duplicate)
    bool *publish;             //  per event of the batch: its rule asks to publish it
    size_t count;              //  how many
    bool terminated;           //  $TERM received
    bool failing;              //  the last write failed
    int backoff_ms;            //  current retry delay
    sb_metric_t *m_stored;     //  events stored
    sb_metric_t *m_duplicates; //  events already stored
    sb_metric_t *m_replies;    //  outbox rows queued
    sb_metric_t *m_not_sent;   //  replies refused
    sb_metric_t *m_statuses;   //  outbound statuses moved forward
    sb_metric_t *m_undecodable;  //  frames that were not Events
    sb_metric_t *m_batch;      //  batch sizes
    sb_metric_t *m_latency;    //  PostgreSQL write latency
    sb_metric_t *m_failures;   //  failed writes
    sb_metric_t *m_queue;      //  events held in memory
} self_t;

static void
s_self_destroy (self_t **self_p)
{
    if (!*self_p)
        return;
    self_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        sb_event_destroy (&self->batch[i]);
    free (self->batch);
    free (self->fresh);
    free (self->publish);
    sb_store_destroy (&self->store);
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->sub);
    zsock_destroy (&self->push);
    zsock_destroy (&self->wake);
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
    self->batch = calloc (args->batch_max, sizeof *self->batch);
    self->fresh = calloc (args->batch_max, sizeof *self->fresh);
    self->publish = calloc (args->batch_max, sizeof *self->publish);
    self->sub = zsock_new (ZMQ_SUB);
    self->push = zsock_new (ZMQ_PUSH);
    self->wake = zsock_new (ZMQ_PUSH);
    if (!self->batch || !self->fresh || !self->publish || !self->sub || !self->push || !self->wake)
        goto fail;
    zsock_set_rcvhwm (self->sub, args->queue_max);
    zsock_set_subscribe (self->sub, "sb.v1.");
    char *copy = strdup (args->endpoints);
    char *save = NULL;
    for (char *ep = strtok_r (copy, ",", &save); ep; ep = strtok_r (NULL, ",", &save))
        if (zsock_connect (self->sub, "%s", ep) < 0) {
            sb_error ("ingest", "cannot connect to ingress endpoint=%s", ep);
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
    sb_metrics_t *m = args->metrics;
    self->m_stored = sb_metrics_counter (m, "sb_events_stored_total", "Events stored in PostgreSQL", NULL);
    self->m_duplicates = sb_metrics_counter (m, "sb_events_duplicate_total",
                                             "Events already stored (replays, provider retries)", NULL);
    self->m_replies = sb_metrics_counter (m, "sb_replies_queued_total", "Replies written to the outbox", NULL);
    self->m_not_sent = sb_metrics_counter (m, "sb_replies_not_sent_total",
                                           "Replies refused (opted out, outside the 24 h window)", NULL);
    self->m_statuses = sb_metrics_counter (m, "sb_status_changes_total",
                                           "Outbound messages whose status moved forward", NULL);
    self->m_undecodable = sb_metrics_counter (m, "sb_events_undecodable_total",
                                              "Frames on the event stream that were not Events", NULL);
    static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
    self->m_batch = sb_metrics_histogram (m, "sb_store_batch_events", "Events per transaction", NULL,
                                          batch_bounds, sizeof batch_bounds / sizeof batch_bounds[0]);
    static const double latency_bounds[] = {0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
    self->m_latency = sb_metrics_histogram (m, "sb_store_write_seconds",
                                            "PostgreSQL transaction latency per batch", NULL,
                                            latency_bounds,
                                            sizeof latency_bounds / sizeof latency_bounds[0]);
    self->m_failures = sb_metrics_counter (m, "sb_store_failures_total",
                                           "Batches PostgreSQL refused (retried)", NULL);
    self->m_queue = sb_metrics_gauge (m, "sb_ingest_queue_events",
                                      "Events received and not yet stored", NULL);
    return self;
fail:
    s_self_destroy (&self);
    return NULL;
}

//  Take the events already waiting on the socket, up to the batch cap.
static void
s_self_take (self_t *self)
{
    while (self->count < self->args->batch_max) {
        if (!(zsock_events (self->sub) & ZMQ_POLLIN))
            break;
        zmsg_t *msg = zmsg_recv (self->sub);
        if (!msg)
            break;
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
            self->batch[self->count++] = event;
        zmsg_destroy (&msg);
    }
    sb_metric_set (self->m_queue, (int64_t) self->count);
}

//  Store the batch. true when it is stored (or empty).
static bool
s_self_store (self_t *self)
{
    if (self->count == 0)
        return true;
    int64_t started = zclock_usecs ();
    if (!self->store) {
        self->store = sb_store_new (self->args->conninfo);
        if (!self->store)
            return false;
    }
    if (sb_store_ensure (self->store))
        return false;
    memset (self->fresh, 0, self->count * sizeof *self->fresh);
    memset (self->publish, 0, self->count * sizeof *self->publish);
    sb_store_policy_t policy = {
        .rules = self->args->rules,
        .window_ms = 24LL * 3600 * 1000,
        .now_ms = 0,
        .fresh = self->fresh,
        .publish = self->publish,
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
    sb_debug ("ingest", "batch stored events=%zu stored=%zu duplicates=%zu replies=%zu",
              self->count, stats.stored, stats.duplicates, stats.replies);

    //  Outcomes: stored or duplicate for each event, the matches a rule
    //  asked to publish (e.g. a verification code), and a nudge to the
    //  sender if there is work.
    for (size_t i = 0; i < self->count; i++) {
        sb_event_t *e = self->batch[i];
        char topic[96] = "";
        sb_event_topic (e, topic, sizeof topic);
        json_t *o = json_pack ("{s:s, s:s, s:I, s:s, s:s, s:s}", "event_id", e->id, "ingress_id",
                               e->ingress_id, "seq", (json_int_t) e->seq, "topic", topic,
                               "provider_id", e->provider_id, "from", e->from);
        sb_outcome_send (self->push, self->fresh[i] ? "stored" : "duplicate", o);
        if (self->publish[i]) {
            json_t *m = json_pack ("{s:s, s:s, s:s, s:s, s:s, s:s}", "event_id", e->id, "topic",
                                   topic, "from", e->from, "to", e->to, "digits", e->digits,
                                   "text", e->text);
            sb_outcome_send (self->push, "rule_matched", m);
        }
    }
    if (stats.replies > 0)
        zsock_send (self->wake, "s", "WAKE");
    for (size_t i = 0; i < self->count; i++)
        sb_event_destroy (&self->batch[i]);
    self->count = 0;
    sb_metric_set (self->m_queue, 0);
    return true;
}

static void
s_self_handle_pipe (self_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command || streq (command, "$TERM"))
        self->terminated = true;
    zstr_free (&command);
}

static void
s_ingest_actor (zsock_t *pipe, void *arg)
{
    s_args_t *args = (s_args_t *) arg;
    self_t *self = s_self_new (pipe, args);
    zsock_signal (pipe, 0);
    zstr_send (pipe, self ? "OK" : "FAILED");
    if (!self)
        return;
    //  Connect now, so /readyz tells the truth from the start.
    self->store = sb_store_new (args->conninfo);
    atomic_store (&args->shared->ready, self->store != NULL);
    if (!self->store) {
        self->failing = true;
        self->backoff_ms = S_BACKOFF_MIN_MS;
    }
    while (!self->terminated) {
        if (self->failing) {
            //  Not reading the socket: wait for the pipe or the retry time.
            zsock_t *which = (zsock_t *) zpoller_wait (self->poller, 0);
            if (which == self->pipe) {
                s_self_handle_pipe (self);
                continue;
            }
            zpoller_t *pipe_only = zpoller_new (self->pipe, NULL);
            which = (zsock_t *) zpoller_wait (pipe_only, self->backoff_ms);
            zpoller_destroy (&pipe_only);
            if (which == self->pipe) {
                s_self_handle_pipe (self);
                continue;
            }
        }
        else {
            zsock_t *which = (zsock_t *) zpoller_wait (self->poller, -1);
            if (which == self->pipe) {
                s_self_handle_pipe (self);
                continue;
            }
            if (which != self->sub) {
                if (zpoller_terminated (self->poller))
                    break;
                continue;
            }
            s_self_take (self);
        }
        if (s_self_store (self)) {
            if (self->failing)
                sb_info ("ingest", "PostgreSQL writes work again");
            self->failing = false;
            self->backoff_ms = S_BACKOFF_MIN_MS;
            atomic_store (&args->shared->ready, true);
        }
        else {
            if (!self->failing)
                sb_error ("ingest",
                          "PostgreSQL write failed; holding events=%zu and retrying with backoff",
                          self->count);
            self->failing = true;
            atomic_store (&args->shared->ready, false);
            self->backoff_ms = self->backoff_ms * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS
                                                                       : self->backoff_ms * 2;
        }
    }
    if (self->count)
        sb_warn ("ingest", "stopping with events=%zu not stored (the ingress journal keeps them)",
                 self->count);
    s_self_destroy (&self);
}

static s_args_t *
s_args_new (sb_ingest_t *shared, const sb_config_t *config, const sb_rules_t *rules,
            sb_metrics_t *metrics, const char *outcomes, const char *wake)
{
    s_args_t *args = calloc (1, sizeof *args);
    if (!args)
        return NULL;
    args->shared = shared;
    args->conninfo = strdup (sb_config_str (config, "DATABASE_URL"));
    args->endpoints = strdup (sb_config_str (config, "SB_INGRESS_PUB"));
    args->outcomes = strdup (outcomes);
    args->wake = strdup (wake);
    args->batch_max = (size_t) sb_config_int (config, "SB_BATCH_MAX");
    args->queue_max = (int) sb_config_int (config, "SB_QUEUE_MAX");
    args->rules = rules;
    args->metrics = metrics;
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
    free (args->outcomes);
    free (args->wake);
    free (args);
    *args_p = NULL;
}

sb_ingest_t *
sb_ingest_new (const sb_config_t *config, const sb_rules_t *rules, sb_metrics_t *metrics,
               const char *outcomes_endpoint, const char *wake_endpoint)
{
    sb_ingest_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    atomic_init (&self->ready, false);
    self->args = s_args_new (self, config, rules, metrics, outcomes_endpoint, wake_endpoint);
    if (!self->args || !self->args->conninfo || !self->args->endpoints)
        goto fail;
    self->actor = zactor_new (s_ingest_actor, self->args);
    if (!self->actor)
        goto fail;
    char *status = zstr_recv (self->actor);
    bool ok = status && streq (status, "OK");
    zstr_free (&status);
    if (!ok)
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
    return atomic_load (&((sb_ingest_t *) self)->ready);
}

/*  sb_ingest: the dispatcher's subscriber, replay consumer and store
    writer, a czmq actor.

    Subscribes to every ingress PUB endpoint and, on each ingress's replay
    endpoint (SB_INGRESS_REPLAY), asks for what it has not stored yet: at
    start from the stored cursor + 1, and whenever the live stream shows a
    gap or a new journal epoch. Takes the events that are waiting (all of
    them under load, one when idle: no timer fills a batch), each ingress's
    gapless and in order, stores them with sb_store_write in one
    transaction, acknowledges the stored seq to the ingress, and reports
    outcomes on the dispatcher's outcome stream. While PostgreSQL is down it
    keeps the batch, retries with backoff, and stops reading the sockets.
    With replay, it stores only the events of the partitions its dispatcher
    holds (storing is split among dispatchers by conversation, as the
    outbox is), and replays from their cursor the partitions it takes over.
*/
#ifndef SB_INGEST_H_INCLUDED
#define SB_INGEST_H_INCLUDED

#include <stdbool.h>

#include "sb_config.h"
#include "sb_metrics.h"
#include "sb_partition.h"
#include "sb_rules.h"
#include "sb_zmq.h"

typedef struct sb_ingest_t sb_ingest_t;

//  Start the actor: connects to PostgreSQL (DATABASE_URL), subscribes to
//  SB_INGRESS_PUB, asks SB_INGRESS_REPLAY for replays, pushes outcomes to outcomes_endpoint (an inproc PULL)
//  and wakes the sender on wake_endpoint. It connects to the ingresses
//  through security (borrowed: CURVE client keys when set; it must outlive
//  the actor). rules may be NULL (no replies). Its outcomes name
//  dispatcher_id (copied). held (borrowed, outliving the actor; NULL: all)
//  is the partitions its dispatcher holds (sb_delivery_partitions): with
//  replay endpoints it stores their events only.
//  NULL on failure (logged). Caller owns the return value.
sb_ingest_t *sb_ingest_new (const sb_config_t *config, const sb_zmq_security_t *security,
                            const sb_rules_t *rules, sb_metrics_t *metrics,
                            const char *outcomes_endpoint, const char *wake_endpoint,
                            const char *dispatcher_id, const sb_partition_set_t *held);
void sb_ingest_destroy (sb_ingest_t **self_p);

//  True while PostgreSQL accepts our writes: the last write (or, idle, ping)
//  succeeded, less than SB_PG_TIMEOUT_MS and a second ago (sb_store_alive).
bool sb_ingest_ready (const sb_ingest_t *self);

#endif

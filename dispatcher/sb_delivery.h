/*  sb_delivery: the dispatcher's outbox worker, a czmq actor. Claims due
    outbox rows, sends them with sb_sender, records the results, and
    reports outcomes (sent, retrying, failed, dead).
*/
#ifndef SB_DELIVERY_H_INCLUDED
#define SB_DELIVERY_H_INCLUDED

#include <stdbool.h>

#include "sb_config.h"
#include "sb_metrics.h"
#include "sb_partition.h"

typedef struct sb_delivery_t sb_delivery_t;

//  Start the actor; it binds wake_endpoint (inproc PULL) and pushes
//  outcomes to outcomes_endpoint. It holds its share of the outbox's
//  partitions as dispatcher_id (copied; sb_store_lease_tick). config must
//  outlive it. NULL on failure. Caller owns the return value.
sb_delivery_t *sb_delivery_new (const sb_config_t *config, sb_metrics_t *metrics,
                                const char *outcomes_endpoint, const char *wake_endpoint,
                                const char *dispatcher_id);
//  Stop: transfers in flight finish (bounded by their timeouts) and are recorded.
void sb_delivery_destroy (sb_delivery_t **self_p);

//  True while PostgreSQL answers: the last call succeeded, and the last
//  successful round trip is less than SB_PG_TIMEOUT_MS and a second old.
bool sb_delivery_ready (const sb_delivery_t *self);

//  The partitions this dispatcher holds, as of the last lease tick (none
//  before the first), for the ingest actor: it stores their events only.
//  Lives as long as the delivery actor.
const sb_partition_set_t *sb_delivery_partitions (const sb_delivery_t *self);

#endif

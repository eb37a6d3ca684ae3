/*  sb_replay_server: the ingress's journal replay server, a czmq actor.

    Binds a ROUTER on SB_REPLAY and answers the replay protocol
    (proto/README.md): hello, replays of the journal from a sequence number
    with credit-based flow control and never past the writer's committed
    watermark, and consumers' acknowledgements, which feed the per-consumer
    lag gauges on /metrics.
*/
#ifndef SB_REPLAY_SERVER_H_INCLUDED
#define SB_REPLAY_SERVER_H_INCLUDED

#include "sb_config.h"
#include "sb_metrics.h"
#include "sb_writer.h"
#include "sb_zmq.h"

typedef struct sb_replay_server_t sb_replay_server_t;

//  Bind SB_REPLAY through security (CURVE when keys are set, no plaintext
//  on a non-loopback address) and start serving the journal of writer
//  (both borrowed: they must outlive the server). NULL when the socket
//  cannot be bound (logged). Caller owns the return value.
sb_replay_server_t *sb_replay_server_new (const sb_config_t *config,
                                          const sb_zmq_security_t *security, sb_writer_t *writer,
                                          sb_metrics_t *metrics);

//  Stop the actor (replays in progress are dropped; consumers ask again).
void sb_replay_server_destroy (sb_replay_server_t **self_p);

#endif

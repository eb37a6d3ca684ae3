/*  sb_console_hub: what the console's open pages are told live. A czmq
    actor subscribes to the ingresses' PUB (SB_INGRESS_PUB: events) and the
    dispatcher's (SB_DISPATCHER_PUB: outcomes) and turns each message into
    a Server-Sent Events frame in a ring of the last SB_CONSOLE_HUB_RING
    frames, each with an id "<boot>.<seq>"; the HTTP threads serving
    /api/events wait on the ring for frames after the one they sent last.

    Catching up: a browser reconnects with the id it saw last (EventSource's
    Last-Event-ID). When the ring still holds what came after it, those
    frames are sent; when it does not (too old, or another boot of the
    console), a "resync" frame tells the page to read everything again
    from PostgreSQL, where the dispatcher stored it: nothing is missed,
    because the ring is only the fast path.
*/
#ifndef SB_CONSOLE_HUB_H_INCLUDED
#define SB_CONSOLE_HUB_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#include "sb_config.h"
#include "sb_metrics.h"
#include "sb_zmq.h"

//  Frames kept for reconnecting pages.
#define SB_CONSOLE_HUB_RING 1024
//  Open event streams at once; past it /api/events answers 503.
#define SB_CONSOLE_HUB_STREAMS 32

typedef struct sb_console_hub_t sb_console_hub_t;

//  Subscribe to config's SB_INGRESS_PUB and SB_DISPATCHER_PUB (CURVE by
//  security). NULL on failure (logged). Caller owns the return value.
sb_console_hub_t *sb_console_hub_new (const sb_config_t *config, const sb_zmq_security_t *security,
                                      sb_metrics_t *metrics);

//  Stop the actor and free the ring; sb_console_hub_stop first, so no
//  stream still waits.
void sb_console_hub_destroy (sb_console_hub_t **self_p);

//  Wake every waiting stream and make them end.
void sb_console_hub_stop (sb_console_hub_t *self);

//  Add a frame of event name with data (compact JSON) to the ring, as the
//  actor does with what it receives (the HTTP side posts its retries and
//  replies). Thread-safe.
void sb_console_hub_post (sb_console_hub_t *self, const char *name, const char *data);

//  Take a stream slot: false when SB_CONSOLE_HUB_STREAMS are open.
bool sb_console_hub_enter (sb_console_hub_t *self);
void sb_console_hub_leave (sb_console_hub_t *self);

//  Where a stream starts: after the frame last_event_id names (NULL or
//  unknown: after the newest). *resync is set when that frame is gone (not
//  in the ring, another boot): the page must read PostgreSQL again.
uint64_t sb_console_hub_start (sb_console_hub_t *self, const char *last_event_id, bool *resync);

//  The next frame after *cursor, waiting up to timeout_ms; *cursor moves
//  past it. A cursor the ring has overtaken gets a "resync" frame. NULL on
//  timeout or once stopped (*stopped). Caller owns the return value.
char *sb_console_hub_next (sb_console_hub_t *self, uint64_t *cursor, int timeout_ms, bool *stopped);

//  A resync frame with the newest id. Caller owns the return value.
char *sb_console_hub_resync (sb_console_hub_t *self);

#endif

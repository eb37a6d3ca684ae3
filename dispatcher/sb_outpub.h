/*  sb_outpub: the dispatcher's outcome publisher, a czmq actor.

    The dispatcher's actors push their outcomes (sb_outcome) to an inproc
    PULL socket; this actor forwards each message, all frames, to the PUB
    socket(s) of SB_DISPATCHER_PUB, bound through sb_zmq: CURVE when the
    dispatcher has a server key pair, and no plaintext on a non-loopback
    address unless allowed. It replaces a czmq zproxy, whose sockets bind
    before CURVE options can be applied to them.
*/
#ifndef SB_OUTPUB_H_INCLUDED
#define SB_OUTPUB_H_INCLUDED

#include "sb_zmq.h"

typedef struct sb_outpub_t sb_outpub_t;

//  Bind the PULL on pull_endpoint (inproc) and the PUB on pub_endpoints
//  (the value of SB_DISPATCHER_PUB) and start forwarding. security is
//  borrowed and must outlive the publisher. NULL when a bind fails
//  (logged). Caller owns the return value.
sb_outpub_t *sb_outpub_new (const char *pull_endpoint, const char *pub_endpoints,
                            const sb_zmq_security_t *security);

//  Stop forwarding and close both sockets.
void sb_outpub_destroy (sb_outpub_t **self_p);

#endif

/*  sb_outpub: inproc PULL -> PUB forwarder for the dispatcher's outcomes.

    One actor thread owns both sockets. It waits on the pipe and the PULL,
    moves up to S_BURST messages per wake-up so a burst of outcomes does
    not starve the pipe, and sends each with its frames intact. A PUB never
    blocks: past its high-water mark a slow subscriber misses outcomes,
    which is what a monitoring stream may do (the events themselves are in
    PostgreSQL).

    The actor answers "OK" on the pipe once both sockets are bound, or
    "FAIL" (the bind logged why) and ends.
*/
#include "sb_outpub.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#include "sb_actor.h"
#include "sb_log.h"

#define S_BURST 1000  //  messages forwarded before the pipe is looked at again

//  What the actor needs; lives as long as the actor.
typedef struct {
    char *pull_endpoint;                //  inproc endpoint of the PULL
    char *pub_endpoints;                //  SB_DISPATCHER_PUB
    const sb_zmq_security_t *security;  //  borrowed
} s_args_t;

struct sb_outpub_t {
    zactor_t *actor;  //  the forwarder thread
    s_args_t args;    //  its arguments
};

//  Actor state, private to the actor thread.
typedef struct {
    zsock_t *pipe;      //  to the owner
    zsock_t *pull;      //  outcomes from the dispatcher's actors
    zsock_t *pub;       //  to subscribers
    zpoller_t *poller;  //  pipe + pull
    bool terminated;    //  $TERM received
} self_t;

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->pub);
    zsock_destroy (&self->pull);
    free (self);
    *self_p = NULL;
}

static self_t *
s_self_new (zsock_t *pipe, const s_args_t *args)
{
    self_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->pipe = pipe;
    self->pull = zsock_new (ZMQ_PULL);
    self->pub = zsock_new (ZMQ_PUB);
    if (!self->pull || !self->pub)
        goto fail;
    zsock_set_linger (self->pub, 0);
    if (zsock_bind (self->pull, "%s", args->pull_endpoint) < 0) {
        sb_error ("outpub", "cannot bind the outcome PULL endpoint=%s error=\"%s\"",
                  args->pull_endpoint, zmq_strerror (zmq_errno ()));
        goto fail;
    }
    if (sb_zmq_bind (args->security, self->pub, "outcome PUB", "SB_DISPATCHER_PUB",
                     args->pub_endpoints))
        goto fail;
    self->poller = zpoller_new (self->pipe, self->pull, NULL);
    if (!self->poller)
        goto fail;
    return self;
fail:
    s_self_destroy (&self);
    return NULL;
}

static void
s_self_forward (self_t *self)
{
    for (int i = 0; i < S_BURST; i++) {
        zmsg_t *msg = zmsg_recv_nowait (self->pull);
        if (!msg)
            return;
        //  PUB drops rather than blocks; a failed send only loses a copy.
        zmsg_send (&msg, self->pub);
        zmsg_destroy (&msg);
    }
}

static void
s_outpub_actor (zsock_t *pipe, void *arg)
{
    self_t *self = s_self_new (pipe, (const s_args_t *) arg);
    sb_actor_started (pipe, self != NULL);
    while (self && !self->terminated) {
        void *which = zpoller_wait (self->poller, -1);
        if (which == self->pipe)
            self->terminated = sb_actor_pipe_says_stop (self->pipe, "outpub");
        else if (which == self->pull)
            s_self_forward (self);
        else if (zpoller_terminated (self->poller))
            break;
    }
    s_self_destroy (&self);
}

sb_outpub_t *
sb_outpub_new (const char *pull_endpoint, const char *pub_endpoints,
               const sb_zmq_security_t *security)
{
    sb_outpub_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->args.pull_endpoint = strdup (pull_endpoint);
    self->args.pub_endpoints = strdup (pub_endpoints);
    self->args.security = security;
    if (!self->args.pull_endpoint || !self->args.pub_endpoints)
        goto fail;
    self->actor = sb_actor_new (s_outpub_actor, &self->args);
    if (!self->actor)
        goto fail;
    return self;
fail:
    sb_outpub_destroy (&self);
    return NULL;
}

void
sb_outpub_destroy (sb_outpub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_outpub_t *self = *self_p;
    zactor_destroy (&self->actor);
    free (self->args.pull_endpoint);
    free (self->args.pub_endpoints);
    free (self);
    *self_p = NULL;
}

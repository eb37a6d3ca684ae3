/*  sb_actor: see sb_actor.h. The status travels as one string frame,
    "OK" or "FAILED", right after zsock_signal. */
#include "sb_actor.h"

zactor_t *
sb_actor_new (zactor_fn *actor, void *args)
{
    zactor_t *self = zactor_new (actor, args);
    if (!self)
        return NULL;
    char *status = zstr_recv (self);
    bool ok = status && streq (status, "OK");
    zstr_free (&status);
    if (!ok)
        zactor_destroy (&self);
    return self;
}

void
sb_actor_started (zsock_t *pipe, bool ok)
{
    zsock_signal (pipe, 0);
    zstr_send (pipe, ok ? "OK" : "FAILED");
}

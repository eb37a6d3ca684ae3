/*  sb_actor: see sb_actor.h. The status travels as one string frame,
    "OK" or "FAILED", right after zsock_signal. */
#include "sb_actor.h"

#include "sb_log.h"

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

bool
sb_actor_pipe_says_stop (zsock_t *pipe, const char *module)
{
    char *command = zstr_recv (pipe);
    bool stop = !command || streq (command, "$TERM");
    if (!stop)
        sb_error (module, "unexpected actor command=%s", command);
    zstr_free (&command);
    return stop;
}

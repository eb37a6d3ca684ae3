/*  sb_actor: the start handshake of our czmq actors, and their pipe.

    zactor_new returns once the actor signals, but ignores the signal's
    status, so an actor that failed to set up would look started. Each
    actor therefore calls sb_actor_started (pipe, ok) once, and its owner
    starts it with sb_actor_new, which returns NULL when setup failed.
*/
#ifndef SB_ACTOR_H_INCLUDED
#define SB_ACTOR_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>

//  Start an actor and wait until it says how its setup went. NULL when
//  it failed (the actor has then returned). Caller owns the return value.
zactor_t *sb_actor_new (zactor_fn *actor, void *args);

//  In the actor, once: release zactor_new and report the setup.
void sb_actor_started (zsock_t *pipe, bool ok);

//  In the actor, when its pipe is readable: take the owner's command.
//  True when the actor must stop ($TERM, or the pipe is gone); any other
//  command is logged under module and ignored.
bool sb_actor_pipe_says_stop (zsock_t *pipe, const char *module);

#endif

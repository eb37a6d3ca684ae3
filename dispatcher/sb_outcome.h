/*  sb_outcome: the dispatcher's outcome stream. Each outcome is two frames
    [topic, JSON object]: topic sb.v1.outcome.<kind> with kind one of
    stored, duplicate, reply_queued, not_sent, rule_matched, sent,
    retrying, failed, dead, status_changed. `switchboard tap` prints them.
    Actors push outcomes to an inproc PULL that sb_outpub forwards to the
    dispatcher's PUB socket (SB_DISPATCHER_PUB).
*/
#ifndef SB_OUTCOME_H_INCLUDED
#define SB_OUTCOME_H_INCLUDED

#include <czmq.h>
#include <jansson.h>

//  Send one outcome; takes the reference to fields (may be NULL for {}).
//  "outcome", "at_ms" and "dispatcher" (the SB_DISPATCHER_ID of the
//  dispatcher that did it) are added. Never blocks. 0 or -1.
int sb_outcome_send (zsock_t *push, const char *dispatcher, const char *kind, json_t *fields);

#endif

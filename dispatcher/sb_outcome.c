/*  sb_outcome: build and push one outcome message (see sb_outcome.h).
    The payload is JSON rather than a protobuf message: outcomes are for
    people and monitors watching the loop, and carry no data a program must
    parse exactly; the events themselves stay protobuf.
*/
#include "sb_outcome.h"

#include <stdlib.h>
#include <string.h>

int
sb_outcome_send (zsock_t *push, const char *dispatcher, const char *kind, json_t *fields)
{
    json_t *object = fields ? fields : json_object ();
    if (!object)
        return -1;
    json_object_set_new (object, "outcome", json_string (kind));
    json_object_set_new (object, "at_ms", json_integer (zclock_time ()));
    json_object_set_new (object, "dispatcher", json_string (dispatcher ? dispatcher : ""));
    char *text = json_dumps (object, JSON_COMPACT);
    json_decref (object);
    if (!text)
        return -1;
    char topic[64];
    snprintf (topic, sizeof topic, "sb.v1.outcome.%s", kind);
    void *handle = zsock_resolve (push);
    int rc = 0;
    if (zmq_send (handle, topic, strlen (topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0
        || zmq_send (handle, text, strlen (text), ZMQ_DONTWAIT) < 0)
        rc = -1;
    free (text);
    return rc;
}

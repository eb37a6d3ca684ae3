/*  sb_meta: a validated Meta WhatsApp Cloud API webhook (JSON) into Events.

    Each entry x change x (message or status) becomes its own Event: kind
    message for value.messages[], kind status for value.statuses[]. Every
    message type maps to Event fields (text, image, audio, video, document,
    sticker, location, contacts, interactive button_reply/list_reply, button,
    reaction, order, system, unsupported, unknown); a type we do not know
    becomes message_type "unknown" with its JSON in detail_json. A change
    carrying neither messages nor statuses still becomes one event (kind
    message, message_type "unknown"), so nothing a provider sends is
    dropped. The caller sets ingress_id, received_at_ms, raw_body,
    raw_content_type, request_path and request_id on each.
*/
#ifndef SB_META_H_INCLUDED
#define SB_META_H_INCLUDED

#include <stddef.h>

#include "sb_event.h"

//  Parse body. On success returns 0 with *events an array of *count events
//  (caller owns the array and each event; free with sb_meta_events_free,
//  before ending the scratch that was open during the call, if any: see
//  sb_scratch.h).
//  Returns -1 with a short reason in err when the body is not JSON or not a
//  webhook's shape (no "entry" array, an entry without "changes", ...): 400.
int sb_meta_normalize (const char *body, size_t size, sb_event_t ***events, size_t *count,
                       char *err, size_t err_size);

void sb_meta_events_free (sb_event_t ***events, size_t count);

#endif

/*  sb_console_web: the decisions and shapes of switchboard console's HTTP
    side that need no socket, no database and no clock, so unit tests
    (tests/unit/test_sb_console_web.c) check each one: which listen address
    is loopback, whether a request carries the token, whether a state-
    changing request comes from the console's own page, what the page is
    told about an event, and how a Server-Sent Events frame is written.
*/
#ifndef SB_CONSOLE_WEB_H_INCLUDED
#define SB_CONSOLE_WEB_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb_event.h"

//  The name of the login cookie.
#define SB_CONSOLE_COOKIE "sb_console"

//  True when every address of a civetweb listening_ports value ("[host:]
//  port", comma-separated, an optional "s" or "r" after the port) is a
//  loopback one: 127.0.0.1 or [::1]. A bare port (every interface),
//  another 127.x address, a name: false.
bool sb_console_listen_is_loopback (const char *listen);

//  True when token is "" (no token configured), or when the request shows
//  it: "Authorization: Bearer <token>" (authorization may be NULL) or the
//  cookie SB_CONSOLE_COOKIE=<token> in the Cookie header (may be NULL).
//  Compared in constant time.
bool sb_console_token_ok (const char *token, const char *authorization, const char *cookie);

//  True when a state-changing request comes from the console's own page:
//  its Origin header is http://<host> or https://<host> for the request's
//  Host header; without an Origin, Sec-Fetch-Site is same-origin. Any
//  argument may be NULL (absent): then false, except as said.
bool sb_console_same_origin (const char *origin, const char *sec_fetch_site, const char *host);

//  What a person sees beside an event's text: media (url, content_type,
//  caption, filename), location (latitude, longitude, name, address,
//  url), digits, speech, the interactive reply, a reaction. NULL when
//  there is none. Caller owns the return value.
json_t *sb_console_event_details (const sb_event_t *event);

//  The same from an event's serialized form (events.payload), or NULL
//  when it does not decode or shows nothing (sb_store_details_fn).
json_t *sb_console_payload_details (const uint8_t *payload, size_t size);

//  The page's notice of a live event: source "ingress", the event's id,
//  provider, channel, kind, message type, provider id, from, to, profile
//  name, text, status and error code, and details; without the raw body.
//  Caller owns the return value; NULL when out of memory.
json_t *sb_console_event_notice (const sb_event_t *event);

//  One Server-Sent Events frame: "id: <id>\nevent: <name>\ndata: <data>\n\n"
//  (id omitted when NULL). data must hold no line break (compact JSON does
//  not). Caller owns the return value; NULL when data holds one, or out of
//  memory.
char *sb_console_sse_frame (const char *id, const char *name, const char *data);

#endif

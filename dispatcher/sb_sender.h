/*  sb_sender: the outbox's HTTP side. Sends replies through the Twilio and
    Meta REST APIs, and forwards events to bots, with libcurl's multi
    interface: non-blocking, bounded concurrency, TLS verified, connect and
    total timeouts. It classifies every answer as sent, retry (network
    error, 5xx, 429, throttling codes; Retry-After honoured) or final.
    It knows nothing of PostgreSQL: the dispatcher feeds it outbox items and
    records the results.
*/
#ifndef SB_SENDER_H_INCLUDED
#define SB_SENDER_H_INCLUDED

#include <stddef.h>

#include "sb_config.h"
#include "sb_outbox.h"

typedef struct sb_sender_t sb_sender_t;

//  A sender configured from TWILIO_API_BASE, TWILIO_ACCOUNT_SID,
//  TWILIO_AUTH_TOKEN (or TWILIO_API_KEY/TWILIO_API_SECRET), META_API_BASE,
//  META_API_VERSION, META_ACCESS_TOKEN, SB_PUBLIC_URL, SB_SEND_CONCURRENCY,
//  SB_SEND_TIMEOUT_MS. Caller owns the return value; NULL on error (logged).
sb_sender_t *sb_sender_new (const sb_config_t *config);

void sb_sender_destroy (sb_sender_t **self_p);

//  Start sending item (copied). -1 when full (see sb_sender_room) or when
//  the provider is not configured (the item then completes as FINAL).
int sb_sender_submit (sb_sender_t *self, const sb_outbox_item_t *item);

//  How many more items may be submitted now.
size_t sb_sender_room (const sb_sender_t *self);
size_t sb_sender_in_flight (const sb_sender_t *self);

//  The outbox ids the sender holds (transfers in flight, results not yet
//  taken), at most max of them into ids; returns how many it holds.
size_t sb_sender_held (const sb_sender_t *self, int64_t *ids, size_t max);

//  The sockets libcurl waits on, for the owner's poll: *count entries,
//  each an fd with the events wanted (POLLIN, POLLOUT or both).
//  Borrowed, valid until the next call into the sender.
struct pollfd;
const struct pollfd *sb_sender_sockets (const sb_sender_t *self, size_t *count);

//  Milliseconds until the sender must be driven even if no socket is
//  ready (0: now), or -1 when nothing waits on time.
int sb_sender_timeout (const sb_sender_t *self);

//  Drive transfers after the owner's poll: fds are a copy of what
//  sb_sender_sockets gave, with revents set by that poll (count 0: act on
//  the timer only). Finished transfers become results. 0 or -1.
int sb_sender_drive (sb_sender_t *self, const struct pollfd *fds, size_t count);

//  Drive transfers with a poll of the sender's own, for at most
//  timeout_ms, returning sooner once a result is ready. 0 or -1.
int sb_sender_perform (sb_sender_t *self, int timeout_ms);

//  Take one finished result: 1 and *result filled (caller frees its
//  strings with sb_outbox_result_free), or 0 when none is ready.
int sb_sender_next_result (sb_sender_t *self, sb_send_result_t *result);

//  ---- For tests: public so the unit tests reach them; no other module
//  calls them.

//  Classify a provider's answer (the tests feed it every answer shape,
//  no provider needed): provider, HTTP status (0 = network error), body,
//  Retry-After header value (or NULL).
void sb_sender_classify (int provider, int http_status, const char *body, const char *retry_after,
                         sb_send_result_t *result);

#endif

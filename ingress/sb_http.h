/*  sb_http: the ingress's HTTP side on civetweb. Routes, limits and
    deadlines, the Meta signature, and the answer once the journal has the
    events; Twilio's URL, signature and TwiML through sb_twilio_http, the
    events from sb_twilio and sb_meta. See README.md "Endpoints".
*/
#ifndef SB_HTTP_H_INCLUDED
#define SB_HTTP_H_INCLUDED

#include "sb_config.h"
#include "sb_metrics.h"
#include "sb_writer.h"

typedef struct sb_http_t sb_http_t;

//  Start serving on SB_LISTEN with the worker pool and timeouts of config.
//  NULL when the server cannot start (logged: address in use, bad TwiML
//  file, ...). Caller owns the return value.
sb_http_t *sb_http_new (const sb_config_t *config, sb_writer_t *writer, sb_metrics_t *metrics);

//  Stop accepting, let the requests in flight finish, stop.
void sb_http_destroy (sb_http_t **self_p);

#endif

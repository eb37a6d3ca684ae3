/*  sb_status_http: the dispatcher's small HTTP server for /healthz,
    /readyz and /metrics (civetweb, a few threads).
*/
#ifndef SB_STATUS_HTTP_H_INCLUDED
#define SB_STATUS_HTTP_H_INCLUDED

#include <stdbool.h>

#include "sb_metrics.h"

typedef struct sb_status_http_t sb_status_http_t;

//  Says whether the service is ready, and if not, why (a short static text).
typedef bool (sb_status_ready_fn) (void *arg, const char **why);

//  Serve on listen ([host:]port). NULL when it cannot start (logged).
sb_status_http_t *sb_status_http_new (const char *listen, sb_metrics_t *metrics,
                                      sb_status_ready_fn *ready, void *arg);
void sb_status_http_destroy (sb_status_http_t **self_p);

#endif

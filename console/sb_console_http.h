/*  sb_console_http: switchboard console's HTTP side on civetweb: the page
    (console/www, built into the binary), its JSON API over PostgreSQL, the
    live event stream (Server-Sent Events from sb_console_hub), the login,
    /healthz and /metrics.

    Routes (GET unless said):
      /, /app.js, /app.css     the page
      /login                   GET the form; POST token=...: the HttpOnly cookie
      /api/conversations       ?before=ID: conversations, newest first
      /api/messages            ?provider=&channel=&address=&before=ID
      /api/dead                ?before=ID: failed, dead and not_sent outbox rows
      /api/retry               POST id=ID: a failed or dead row back to pending
      /api/reply               POST provider=&channel=&address=&text=: queue a reply
      /api/events              the live stream (text/event-stream)
      /healthz, /metrics       like the services'
    With SB_CONSOLE_TOKEN set every route but /healthz and POST /login needs
    the token (cookie or bearer), else 401; every POST needs a same-origin
    Origin (or Sec-Fetch-Site), else 403.
*/
#ifndef SB_CONSOLE_HTTP_H_INCLUDED
#define SB_CONSOLE_HTTP_H_INCLUDED

#include "sb_config.h"
#include "sb_console_hub.h"
#include "sb_metrics.h"

typedef struct sb_console_http_t sb_console_http_t;

//  Serve on config's SB_CONSOLE_LISTEN. config, hub and metrics are
//  borrowed and must outlive it. NULL on failure (logged). Caller owns the
//  return value.
sb_console_http_t *sb_console_http_new (const sb_config_t *config, sb_console_hub_t *hub,
                                        sb_metrics_t *metrics);

//  Stop serving (stop the hub first, so streams end), close each thread's
//  PostgreSQL connection.
void sb_console_http_destroy (sb_console_http_t **self_p);

#endif

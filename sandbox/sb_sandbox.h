/*  sb_sandbox: the provider sandbox's parts, as its files see each other.

    switchboard-sandbox is one program split by concern: main.c (flags,
    start, stop), sb_sandbox.c (the civetweb handler, answers and checks the
    APIs share), sb_sandbox_twilio.c and sb_sandbox_meta.c (the two send
    APIs), sb_sandbox_callbacks.c (the status callbacks' thread) and
    sb_sandbox_admin.c (the request log, the failure plan and /_sandbox/).
    Unlike a module's, the state struct lives in this header: every part
    reads the settings and takes the one lock. What is payload-shaped (ids,
    segments, status webhooks) comes from common/sb_fakeprov, which
    `switchboard send` builds its webhooks with too.

    DESIGN
    civetweb's worker threads run the handler; everything they share (the
    request log, the failure plan, the callback queue) sits behind `lock`,
    never held across I/O. Callbacks are posted by one background thread
    (sb_sandbox_callbacks.c).
*/
#ifndef SB_SANDBOX_H_INCLUDED
#define SB_SANDBOX_H_INCLUDED

#include <civetweb.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sb_form.h"
#include "sb_sandbox_state.h"

#define SB_SANDBOX_MODULE "sandbox"  //  sb_log module of every part

//  Which API a request is for (bits: a failure plan may name both).
#define SB_SANDBOX_TWILIO 1
#define SB_SANDBOX_META 2

typedef enum {
    SB_SANDBOX_FAIL_NONE = 0,
    SB_SANDBOX_FAIL_500,         //  500 with the provider's error body
    SB_SANDBOX_FAIL_429,         //  429 with Retry-After and 20429 / 130429
    SB_SANDBOX_FAIL_SLOW,        //  the normal answer, after delay_ms
    SB_SANDBOX_FAIL_META131047,  //  Meta 400 code 131047 (re-engagement)
    SB_SANDBOX_FAIL_MIXED,       //  random: 500 or 429 (rate plans only)
    SB_SANDBOX_FAIL_META131056,  //  Meta 400 code 131056 (pair rate limit hit)
} sb_sandbox_fail_mode_t;

//  A failure plan, from POST /_sandbox/fail.
typedef struct {
    sb_sandbox_fail_mode_t mode;       //  for the next `count` requests
    long count;                        //  requests left to fail that way
    sb_sandbox_fail_mode_t rate_mode;  //  for a random share of the others
    double rate;                       //  that share, 0..1
    unsigned providers;                //  SB_SANDBOX_TWILIO | SB_SANDBOX_META
    long retry_after_s;                //  429: Retry-After seconds
    long delay_ms;                     //  slow: how long to wait
} sb_sandbox_plan_t;

//  One status callback to post (sb_sandbox_callbacks.c).
typedef struct sb_sandbox_callback_t sb_sandbox_callback_t;

typedef struct {
    //  Settings, immutable after start.
    const char *account_sid;    //  TWILIO_ACCOUNT_SID
    const char *auth_token;     //  TWILIO_AUTH_TOKEN (secret)
    const char *api_key;        //  TWILIO_API_KEY
    const char *api_secret;     //  TWILIO_API_SECRET (secret)
    const char *meta_token;     //  META_ACCESS_TOKEN (secret)
    const char *app_secret;     //  META_APP_SECRET (secret)
    const char *public_url;     //  SB_PUBLIC_URL ("" when unset)
    const char *prefix;         //  SB_PATH_PREFIX
    const char *callbacks;      //  ingress base URL for callbacks ("" = none)
    long callback_delay_ms;     //  pause before each callback
    long latency_ms;            //  --latency-ms: every provider request answered after it
    sb_sandbox_state_t *state;  //  numbers, services, subscriptions (own lock)
    atomic_int stopping;        //  set when shutting down: slow answers end
    //  Shared state, under lock.
    pthread_mutex_t lock;    //  guards everything below
    json_t *log;             //  array of request records
    uint64_t next_seq;       //  seq of the next record
    sb_sandbox_plan_t plan;  //  failures to inject
    int in_flight;           //  provider requests being answered
    //  Callback thread.
    CURLM *multi;                       //  its multi handle (curl_multi_wakeup is thread-safe)
    sb_sandbox_callback_t *queue;       //  callbacks waiting, oldest first
    sb_sandbox_callback_t *queue_tail;  //  last of them
    bool thread_started;                //  thread must be joined
    pthread_t thread;                   //  the callback poster
} sb_sandbox_t;

//  What a handler answers, and what the log records about it.
typedef struct {
    int status;             //  HTTP status
    char *body;             //  JSON text (owned)
    long retry_after_s;     //  >= 0: send a Retry-After header
    bool www_authenticate;  //  Twilio 401: add WWW-Authenticate
    char id[128];           //  SM.../wamid... when accepted
    char error_code[16];    //  provider error code ("" if none)
    const char *injected;   //  failure mode injected, or NULL
    bool close;             //  close the connection after answering
} sb_sandbox_answer_t;

//  --------------------------------------------------------------------------
//  sb_sandbox.c: the handler, answers, checks

//  civetweb's request handler for "/" (cbdata is the sb_sandbox_t).
int sb_sandbox_handler (struct mg_connection *conn, void *cbdata);

//  Set the answer's status and body (takes the reference to body; NULL
//  leaves no body).
void sb_sandbox_answer_json (sb_sandbox_answer_t *answer, int status, json_t *body);

//  Twilio's error shape {code, message, more_info, status}.
void sb_sandbox_twilio_error (sb_sandbox_answer_t *answer, int status, int code,
                              const char *message);

//  Meta's error shape {"error": {message, type, code, error_data?, fbtrace_id}};
//  details NULL leaves out error_data.
void sb_sandbox_meta_error (sb_sandbox_answer_t *answer, int status, int code, const char *message,
                            const char *details);

//  True when given (given_size bytes) equals the non-empty expected, in
//  constant time.
bool sb_sandbox_secret_equal (const char *given, size_t given_size, const char *expected);

//  Where the sandbox reaches url: under SB_PUBLIC_URL + SB_PATH_PREFIX
//  (and with --callbacks) the same path at --callbacks, else url itself.
//  Caller owns the return value; NULL when out of memory.
char *sb_sandbox_reach_url (const sb_sandbox_t *self, const char *url);

//  Characters (code points) in UTF-8 text.
size_t sb_sandbox_utf8_length (const char *text);

//  A whole decimal number within [min, max] (no sign, at most 18 digits).
//  0, or -1 when text is not one.
int sb_sandbox_parse_long (const char *text, long min, long max, long *out);

//  --------------------------------------------------------------------------
//  sb_sandbox_twilio.c and sb_sandbox_meta.c: the send APIs

//  POST /2010-04-01/Accounts/{account}/Messages.json: check, record into
//  record (params, auth_user), answer, queue the callbacks.
void sb_sandbox_twilio_handle (sb_sandbox_t *self, struct mg_connection *conn, const char *account,
                               const char *body, size_t size, json_t *record,
                               sb_sandbox_answer_t *answer);

//  Check a Twilio request's HTTP Basic auth (account SID and auth token, or
//  API key and secret) and, when account is not NULL, the AccountSid of its
//  path; records auth_user. False with the answer set (401 20003, or 404
//  20404 for a malformed AccountSid) when refused.
bool sb_sandbox_twilio_auth (const sb_sandbox_t *self, struct mg_connection *conn,
                             const char *account, json_t *record, sb_sandbox_answer_t *answer);

//  A Twilio request's form parameters (none unless the Content-Type is a
//  form), recorded into record's params. NULL with a 400 answer when the
//  body is malformed. Caller owns the return value.
sb_form_t *sb_sandbox_twilio_form (struct mg_connection *conn, const char *body, size_t size,
                                   json_t *record, sb_sandbox_answer_t *answer);

//  Check a Graph API request's Bearer token against META_ACCESS_TOKEN;
//  records auth_user. False with the answer set (401, 190) when refused.
bool sb_sandbox_meta_bearer (const sb_sandbox_t *self, struct mg_connection *conn, json_t *record,
                             sb_sandbox_answer_t *answer);

//  POST /{version}/{phone_number_id}/messages: the same for Meta.
void sb_sandbox_meta_handle (sb_sandbox_t *self, struct mg_connection *conn, const char *version,
                             const char *phone_number_id, const char *body, size_t size,
                             json_t *record, sb_sandbox_answer_t *answer);

//  --------------------------------------------------------------------------
//  sb_sandbox_manage.c: the management APIs

//  True when path is one of the management APIs' (or their /_sandbox/
//  seeding and state endpoints).
bool sb_sandbox_manage_match (const char *path);

//  Answer a request to a path sb_sandbox_manage_match took; records into
//  record (provider, auth_user, params).
void sb_sandbox_manage_handle (sb_sandbox_t *self, struct mg_connection *conn, const char *method,
                               const char *path, const char *body, size_t size, json_t *record,
                               sb_sandbox_answer_t *answer);

//  --------------------------------------------------------------------------
//  sb_sandbox_callbacks.c: the status callbacks

//  A callback posting body (taken, even on failure) to url with the given
//  Content-Type and, when sig_value is not NULL, the signature header
//  sig_name; what names it in logs. NULL when out of memory.
sb_sandbox_callback_t *sb_sandbox_callback_new (const char *url, char *body,
                                                const char *content_type, const char *sig_name,
                                                const char *sig_value, const char *what);

//  Free a callback and the chain after it; sets *callback_p to NULL.
void sb_sandbox_callback_destroy (sb_sandbox_callback_t **callback_p);

//  Append next to a chain's end: it is posted once the one before it has
//  been answered. Returns next, the chain's new end.
sb_sandbox_callback_t *sb_sandbox_callback_then (sb_sandbox_callback_t *last,
                                                 sb_sandbox_callback_t *next);

//  Queue a chain of callbacks (takes ownership; NULL does nothing); its head
//  is posted after callback_delay_ms.
void sb_sandbox_callback_queue (sb_sandbox_t *self, sb_sandbox_callback_t *callback);

//  Start the callback thread (self->multi ready). 0, or -1 logged.
int sb_sandbox_callbacks_start (sb_sandbox_t *self);

//  Join the thread (after self->stopping is set) and drop what is queued.
void sb_sandbox_callbacks_stop (sb_sandbox_t *self);

//  --------------------------------------------------------------------------
//  sb_sandbox_admin.c: request log, failure plan, /_sandbox/

//  Append a record (takes ownership), giving it the next seq.
void sb_sandbox_log_append (sb_sandbox_t *self, json_t *record);

//  The failure plan that fails nothing.
void sb_sandbox_plan_reset (sb_sandbox_plan_t *plan);

//  Take the failure for one provider request, under lock; fills the plan's
//  Retry-After and delay.
sb_sandbox_fail_mode_t sb_sandbox_take_failure (sb_sandbox_t *self, unsigned provider,
                                                long *retry_after_s, long *delay_ms);

//  The name of a failure mode, as /_sandbox/fail takes it.
const char *sb_sandbox_fail_name (sb_sandbox_fail_mode_t mode);

//  Answer an injected failure (not slow: slow answers normally, later).
void sb_sandbox_inject (unsigned provider, sb_sandbox_fail_mode_t mode, long retry_after_s,
                        sb_sandbox_answer_t *answer);

//  Answer a request under /_sandbox/.
void sb_sandbox_admin (sb_sandbox_t *self, const char *method, const char *path, const char *query,
                       sb_sandbox_answer_t *answer);

#endif

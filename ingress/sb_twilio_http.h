/*  sb_twilio_http: what a Twilio webhook needs beyond HTTP. The URL Twilio
    signed (SB_PUBLIC_URL, or the scheme and Host as received, behind a
    proxy trusted with SB_TRUST_PROXY), the signature over a form (kept
    leniently when its escapes are bad) or a JSON body, the body's
    parameters (a JSON body as form parameters), and the TwiML answer
    (SB_TWILIO_VOICE_TWIML, SB_TWILIO_GATHER_TWIML or the defaults).
    sb_http routes the request, reads it within its limits, calls this,
    then sb_twilio_normalize, and answers once the journal has the event.
*/
#ifndef SB_TWILIO_HTTP_H_INCLUDED
#define SB_TWILIO_HTTP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include "sb_config.h"
#include "sb_form.h"
#include "sb_sig.h"
#include "sb_twilio.h"

typedef struct sb_twilio_http_t sb_twilio_http_t;

//  Read TWILIO_AUTH_TOKEN, TWILIO_WEBHOOK_SHARED_KEYS,
//  SB_INSECURE_SKIP_SIGNATURES, SB_PUBLIC_URL, SB_TRUST_PROXY and the TwiML
//  files. NULL when a TwiML file cannot be read or is not a <Response> of
//  at most 64 KiB, or the shared keys are not KEY_ID=SECRET pairs (logged,
//  naming the variable), or when memory runs out. Caller owns the return
//  value.
sb_twilio_http_t *sb_twilio_http_new (const sb_config_t *config);

//  Free it; the token does not linger in freed memory.
void sb_twilio_http_destroy (sb_twilio_http_t **self_p);

//  True when webhooks can be accepted: the token or shared keys are set, or
//  signatures are not checked. False: the caller answers 503 and names
//  TWILIO_AUTH_TOKEN.
bool sb_twilio_http_configured (const sb_twilio_http_t *self);

//  The request as received, every string borrowed (NULL: absent).
typedef struct {
    const char *path;                //  path as received, raw (prefix included)
    const char *query;               //  query string as received, raw
    const char *host;                //  Host
    const char *forwarded_proto;     //  X-Forwarded-Proto
    const char *signature;           //  X-Twilio-Signature
    const char *signature_settings;  //  X-Twilio-Webhooks-Signature-Settings (shared keys)
    bool tls;                        //  received over TLS
} sb_twilio_http_request_t;

typedef enum {
    SB_TWILIO_HTTP_OK,             //  signed (or not checked); *form holds the parameters
    SB_TWILIO_HTTP_BAD_HOST,       //  no URL to check against (Host missing or bad): 400
    SB_TWILIO_HTTP_BAD_SIGNATURE,  //  *sig says why: 403
    SB_TWILIO_HTTP_BAD_FORM,       //  validly signed, yet not a form: 400
    SB_TWILIO_HTTP_MALFORMED,      //  no parameters (bad form, JSON not an object, no memory): 400
} sb_twilio_http_result_t;

//  Check the signature of a body (json: Content-Type application/json,
//  the bodySHA256 variant; else a form) and parse its parameters into
//  *form (caller owns it; set only with SB_TWILIO_HTTP_OK). *sig gets the
//  signature's verdict when it is checked. Call inside the request's
//  scratch, if any (sb_scratch.h), and destroy *form before it ends.
sb_twilio_http_result_t sb_twilio_http_read (const sb_twilio_http_t *self,
                                             const sb_twilio_http_request_t *request,
                                             const char *body, size_t size, bool json,
                                             sb_form_t **form, sb_sig_result_t *sig);

//  The answer to a stored webhook of route that came in on path (raw,
//  ending in the route's own path): an empty TwiML <Response/> for
//  messages; for voice the configured TwiML, else a 6-digit <Gather>
//  whose action is /twilio/gather under the prefix the call came in on;
//  for gather the configured TwiML, else a goodbye; empty text for status.
//  *content_type gets its type. The answer is borrowed, or, when it had to
//  be built, *owned holds it too and the caller frees *owned (else NULL).
const char *sb_twilio_http_answer (const sb_twilio_http_t *self, sb_twilio_route_t route,
                                   const char *path, const char **content_type, char **owned);

#endif

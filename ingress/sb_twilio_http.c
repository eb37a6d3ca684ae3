/*  sb_twilio_http: a Twilio webhook's signature, parameters and answer.

    Twilio signs the URL it called, as it called it: SB_PUBLIC_URL verbatim
    when set; else the scheme (https over TLS, or the first hop's
    X-Forwarded-Proto when SB_TRUST_PROXY is on) and the Host header, then
    the path and query as received: raw (sb_http reads them with
    decode_url=no), the SB_PATH_PREFIX included when the request carries it.

    A form is verified over its pairs. One with bad escapes ("%zz", "%4",
    "%00") is checked as a browser's decoder reads it, bad escapes kept
    literally, so that a wrong signature is still 403 and only a validly
    signed malformed body is 400. A JSON body (the bodySHA256 variant) is
    verified over its bytes, then read as form parameters: a flat object
    whose values are strings, numbers or booleans; nested values stay in
    raw_body only.

    The answers are fixed TwiML, or the files SB_TWILIO_VOICE_TWIML and
    SB_TWILIO_GATHER_TWIML read once at start (a <Response> of at most
    64 KiB). The default voice answer gathers six digits and posts them to
    this ingress's /twilio/gather under the prefix the call came in on,
    behind SB_PUBLIC_URL when set.

    With X-Twilio-Webhooks-Signature-Settings the request was signed with a
    shared key of TWILIO_WEBHOOK_SHARED_KEYS and the algorithm it names,
    without it with TWILIO_AUTH_TOKEN and SHA-1 (sb_sig_twilio_check).

    This module knows nothing of civetweb: sb_http hands it the request's
    path, query and headers as strings, and keeps routing, limits, deadlines
    and the hand-off to the journal writer. The normalizer (sb_twilio) maps
    the parameters to an Event.
*/
#include "sb_twilio_http.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb_json.h"
#include "sb_log.h"
#include "sb_scratch.h"
#include "sb_text.h"

#define S_TWIML_MAX (64 * 1024)
#define S_URL_MAX 16384

struct sb_twilio_http_t {
    char *token;           //  TWILIO_AUTH_TOKEN, NULL when unset
    sb_sig_keys_t *keys;   //  TWILIO_WEBHOOK_SHARED_KEYS, NULL when unset
    bool skip_signatures;  //  SB_INSECURE_SKIP_SIGNATURES
    char *public_url;      //  SB_PUBLIC_URL, NULL when unset
    bool trust_proxy;      //  SB_TRUST_PROXY
    char *voice_twiml;     //  SB_TWILIO_VOICE_TWIML contents, NULL: default
    char *gather_twiml;    //  SB_TWILIO_GATHER_TWIML contents, NULL: default
};

static char *
s_read_twiml (const char *variable, const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        char ebuf[128];
        sb_error ("http", "cannot open TwiML file variable=%s path=%s error=\"%s\"", variable, path,
                  sb_strerror (errno, ebuf, sizeof ebuf));
        return NULL;
    }
    char *buf = malloc (S_TWIML_MAX + 1);
    size_t n = buf ? fread (buf, 1, S_TWIML_MAX + 1, file) : 0;
    fclose (file);
    if (!buf || n == 0 || n > S_TWIML_MAX || !strstr (buf, "<Response")) {
        sb_error ("http",
                  "bad TwiML file variable=%s path=%s: expected a <Response> of at most %d bytes",
                  variable, path, S_TWIML_MAX);
        free (buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

sb_twilio_http_t *
sb_twilio_http_new (const sb_config_t *config)
{
    sb_twilio_http_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->token = sb_config_dup (config, SB_CFG_TWILIO_AUTH_TOKEN);
    if (sb_config_has (config, SB_CFG_TWILIO_WEBHOOK_SHARED_KEYS)) {
        const char *problem = NULL;
        self->keys =
            sb_sig_keys_new (sb_config_str (config, SB_CFG_TWILIO_WEBHOOK_SHARED_KEYS), &problem);
        if (!self->keys) {
            sb_error ("http", "bad value variable=TWILIO_WEBHOOK_SHARED_KEYS expected=\"%s\"",
                      problem);
            goto fail;
        }
    }
    self->skip_signatures = sb_config_bool (config, SB_CFG_SB_INSECURE_SKIP_SIGNATURES);
    self->public_url = sb_config_dup (config, SB_CFG_SB_PUBLIC_URL);
    self->trust_proxy = sb_config_bool (config, SB_CFG_SB_TRUST_PROXY);
    if (sb_config_has (config, SB_CFG_SB_TWILIO_VOICE_TWIML)
        && !(self->voice_twiml = s_read_twiml (
                 "SB_TWILIO_VOICE_TWIML", sb_config_str (config, SB_CFG_SB_TWILIO_VOICE_TWIML))))
        goto fail;
    if (sb_config_has (config, SB_CFG_SB_TWILIO_GATHER_TWIML)
        && !(self->gather_twiml = s_read_twiml (
                 "SB_TWILIO_GATHER_TWIML", sb_config_str (config, SB_CFG_SB_TWILIO_GATHER_TWIML))))
        goto fail;
    return self;
fail:
    sb_twilio_http_destroy (&self);
    return NULL;
}

void
sb_twilio_http_destroy (sb_twilio_http_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    sb_twilio_http_t *self = *self_p;
    //  Secrets do not linger in freed memory.
    if (self->token)
        OPENSSL_cleanse (self->token, strlen (self->token));
    free (self->token);
    sb_sig_keys_destroy (&self->keys);
    free (self->public_url);
    free (self->voice_twiml);
    free (self->gather_twiml);
    free (self);
    *self_p = NULL;
}

bool
sb_twilio_http_configured (const sb_twilio_http_t *self)
{
    return self->token || self->keys || self->skip_signatures;
}

// --------------------------------------------------------------------------
//  Signature and parameters

//  The URL Twilio signed: SB_PUBLIC_URL verbatim, else scheme + Host; then
//  the path and query as received. Caller frees it with sb_scratch_free.
static char *
s_twilio_url (const sb_twilio_http_t *self, const sb_twilio_http_request_t *request)
{
    const char *query = request->query;
    //  SB_PUBLIC_URL, or scheme "://" host
    const char *base = self->public_url, *separator = "", *host = "";
    if (!base) {
        base = request->tls ? "https" : "http";
        const char *forwarded = self->trust_proxy ? request->forwarded_proto : NULL;
        if (forwarded) {
            //  The first hop's value: "https" or "http", nothing else.
            if (strncasecmp (forwarded, "https", 5) == 0
                && (forwarded[5] == 0 || forwarded[5] == ',' || forwarded[5] == ' '))
                base = "https";
            else if (strncasecmp (forwarded, "http", 4) == 0
                     && (forwarded[4] == 0 || forwarded[4] == ',' || forwarded[4] == ' '))
                base = "http";
        }
        separator = "://";
        host = request->host;
        if (!host || !*host || strpbrk (host, "/ ?#@"))
            return NULL;
    }
    //  Measured first, so the copy takes what it needs, not S_URL_MAX.
    size_t n = strlen (base) + strlen (separator) + strlen (host) + strlen (request->path)
               + (query ? 1 + strlen (query) : 0);
    if (n >= S_URL_MAX)
        return NULL;
    char *url = sb_scratch_alloc (n + 1);
    if (url)
        snprintf (url, n + 1, "%s%s%s%s%s%s", base, separator, host, request->path,
                  query ? "?" : "", query ? query : "");
    return url;
}

//  A Twilio JSON body (bodySHA256 variant) as form parameters: a flat
//  object whose values are strings, numbers or booleans.
static sb_form_t *
s_json_as_form (const char *body, size_t size)
{
    json_error_t error;
    json_t *root = sb_json_load (body, size, SB_JSON_MAX_DEPTH, &error);
    if (!json_is_object (root)) {
        json_decref (root);
        return NULL;
    }
    sb_form_t *form = sb_form_new ();
    const char *key;
    json_t *value;
    json_object_foreach (root, key, value) {
        char number[64];
        const char *text = NULL;
        if (json_is_string (value))
            text = json_string_value (value);
        else if (json_is_integer (value)) {
            snprintf (number, sizeof number, "%" JSON_INTEGER_FORMAT, json_integer_value (value));
            text = number;
        }
        else if (json_is_real (value)) {
            snprintf (number, sizeof number, "%.17g", json_real_value (value));
            text = number;
        }
        else if (json_is_boolean (value))
            text = json_is_true (value) ? "true" : "false";
        else
            continue;  //  nested values stay in raw_body
        if (!form || sb_form_add (form, key, text)) {
            sb_form_destroy (&form);
            break;
        }
    }
    json_decref (root);
    return form;
}

//  Parse a form keeping bad escapes ("%zz", "%4", "%00") literally, as a
//  browser's decoder does: escape those '%' as "%25" and parse strictly.
static sb_form_t *
s_form_lenient (const char *body, size_t size)
{
    char *copy = sb_scratch_alloc (size * 3 + 1);
    if (!copy)
        return NULL;
    size_t used = 0;
    for (size_t i = 0; i < size; i++) {
        bool good = body[i] != '%'
                    || (i + 2 < size && sb_text_hex_value ((unsigned char) body[i + 1]) >= 0
                        && sb_text_hex_value ((unsigned char) body[i + 2]) >= 0
                        && !(body[i + 1] == '0' && body[i + 2] == '0'));
        if (body[i] == '%' && !good) {
            memcpy (copy + used, "%25", 3);
            used += 3;
        }
        else
            copy[used++] = body[i];
    }
    sb_form_t *form = sb_form_parse (copy, used);
    sb_scratch_free (copy);
    return form;
}

sb_twilio_http_result_t
sb_twilio_http_read (const sb_twilio_http_t *self, const sb_twilio_http_request_t *request,
                     const char *body, size_t size, bool json, sb_form_t **form_p,
                     sb_sig_result_t *sig_p)
{
    sb_form_t *form = json ? NULL : sb_form_parse (body, size);
    if (!self->skip_signatures) {
        //  A body with bad escapes is checked as a browser would decode it
        //  (bad escapes kept literally), so a wrong signature is still 403
        //  and only a validly signed malformed body is 400.
        sb_form_t *lenient = json || form ? NULL : s_form_lenient (body, size);
        char *url = s_twilio_url (self, request);
        if (!url) {
            sb_form_destroy (&form);
            sb_form_destroy (&lenient);
            return SB_TWILIO_HTTP_BAD_HOST;
        }
        //  A malformed form cannot be signed as Twilio signs: verify over
        //  its pairs when it parses; otherwise the signature cannot match.
        sb_sig_result_t sig;
        const char *settings = request->signature_settings;
        if (json)
            sig = sb_sig_twilio_check (self->token, self->keys, settings, url, NULL, body, size,
                                       request->signature);
        else if (form || lenient)
            sig = sb_sig_twilio_check (self->token, self->keys, settings, url,
                                       form ? form : lenient, NULL, 0, request->signature);
        else {
            //  Not even leniently a form (too many pairs): tell a missing
            //  signature from a bad body.
            const char *given = request->signature;
            sig = given && *given ? SB_SIG_OK : SB_SIG_MISSING;
        }
        sb_form_destroy (&lenient);
        sb_scratch_free (url);
        *sig_p = sig;
        if (sig != SB_SIG_OK) {
            sb_form_destroy (&form);
            return SB_TWILIO_HTTP_BAD_SIGNATURE;
        }
        if (!json && !form) {
            //  Signed by someone holding the token, yet not a form: 400.
            return SB_TWILIO_HTTP_BAD_FORM;
        }
    }
    if (json)
        form = s_json_as_form (body, size);
    if (!form)
        return SB_TWILIO_HTTP_MALFORMED;
    *form_p = form;
    return SB_TWILIO_HTTP_OK;
}

// --------------------------------------------------------------------------
//  Answers

static const char s_empty_twiml[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response/>\n";
static const char s_default_gather_twiml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<Response><Say>Thank you. Goodbye.</Say><Hangup/></Response>\n";

//  Escape text for an XML attribute into out. -1 when it does not fit.
static int
s_xml_attr (const char *text, char *out, size_t size)
{
    size_t used = 0;
    for (const char *p = text; *p; p++) {
        const char *rep = NULL;
        switch (*p) {
            case '&': rep = "&amp;"; break;
            case '<': rep = "&lt;"; break;
            case '>': rep = "&gt;"; break;
            case '"': rep = "&quot;"; break;
            case '\'': rep = "&apos;"; break;
        }
        size_t len = rep ? strlen (rep) : 1;
        if (used + len + 1 > size)
            return -1;
        memcpy (out + used, rep ? rep : p, len);
        used += len;
    }
    out[used] = 0;
    return 0;
}

//  The voice answer: the configured TwiML, or a 6-digit <Gather> whose
//  action is this ingress's /twilio/gather under the prefix the call came
//  in on. Caller owns the return value.
static char *
s_voice_twiml (const sb_twilio_http_t *self, const char *path)
{
    if (self->voice_twiml)
        return strdup (self->voice_twiml);
    //  The path up to "/twilio/voice" is the prefix as received.
    size_t prefix_len = strlen (path) - strlen ("/twilio/voice");
    char action[2048];
    snprintf (action, sizeof action, "%s%.*s/twilio/gather",
              self->public_url ? self->public_url : "", (int) prefix_len, path);
    char escaped[4096];
    if (s_xml_attr (action, escaped, sizeof escaped))
        snprintf (escaped, sizeof escaped, "gather");
    char *twiml = malloc (8192);
    if (twiml)
        snprintf (twiml, 8192,
                  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<Response><Gather numDigits=\"6\" action=\"%s\" method=\"POST\">"
                  "<Say>Please enter your six digit code.</Say></Gather>"
                  "<Say>We did not receive any digits. Goodbye.</Say></Response>\n",
                  escaped);
    return twiml;
}

const char *
sb_twilio_http_answer (const sb_twilio_http_t *self, sb_twilio_route_t route, const char *path,
                       const char **content_type, char **owned)
{
    *owned = NULL;
    *content_type = "text/xml";
    if (route == SB_TWILIO_MESSAGES)
        return s_empty_twiml;
    if (route == SB_TWILIO_VOICE) {
        *owned = s_voice_twiml (self, path);
        return *owned ? *owned : s_empty_twiml;
    }
    if (route == SB_TWILIO_GATHER)
        return self->gather_twiml ? self->gather_twiml : s_default_gather_twiml;
    *content_type = "text/plain; charset=utf-8";
    return "";
}

/*  test_sb_twilio_http: a Twilio webhook's signature, parameters and answer.

    The URL Twilio signed (SB_PUBLIC_URL, else scheme and Host, with
    X-Forwarded-Proto only behind a trusted proxy), forms with bad escapes,
    JSON bodies as forms, and the TwiML answers. Silent on success; prints
    file:line and what differed on failure.
*/
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb_log.h"
#include "sb_twilio_http.h"

#include "sb_check.h"

#define TOKEN "12345678901234567890123456789012"

//  A module over these settings (NAME=value strings, NULL-terminated).
static sb_twilio_http_t *
s_new (const char *const *env)
{
    char err[256];
    sb_config_t *config =
        sb_config_load_from (SB_SVC_INGRESS, (char *const *) env, err, sizeof err);
    if (!config) {
        fprintf (stderr, "config: %s\n", err);
        exit (1);
    }
    sb_twilio_http_t *self = sb_twilio_http_new (config);
    sb_config_destroy (&config);
    return self;
}

//  Twilio's signature of url over body (a form; json: the URL alone).
static void
s_sign (const char *url, const char *body, bool json, char out[SB_SIG_TWILIO_SIZE])
{
    sb_form_t *form = json ? NULL : sb_form_parse (body, strlen (body));
    CHECK (sb_sig_twilio_sign (TOKEN, url, form, out) == 0);
    sb_form_destroy (&form);
}

static sb_twilio_http_result_t
s_read (const sb_twilio_http_t *self, const sb_twilio_http_request_t *request, const char *body,
        bool json, sb_form_t **form, sb_sig_result_t *sig)
{
    *form = NULL;
    *sig = SB_SIG_OK;
    return sb_twilio_http_read (self, request, body, strlen (body), json, form, sig);
}

static void
s_test_public_url (void)
{
    const char *env[] = {"TWILIO_AUTH_TOKEN=" TOKEN, "SB_PUBLIC_URL=https://hooks.example.com",
                         NULL};
    sb_twilio_http_t *self = s_new (env);
    CHECK (self && sb_twilio_http_configured (self));
    const char *body = "From=%2B14155550100&Body=hi&MessageSid=SM1";
    char signature[SB_SIG_TWILIO_SIZE];
    s_sign ("https://hooks.example.com/api/twilio/messages?x=1", body, false, signature);
    //  SB_PUBLIC_URL verbatim: the Host the request carries does not count.
    sb_twilio_http_request_t request = {.path = "/api/twilio/messages",
                                        .query = "x=1",
                                        .host = "10.0.0.1:8080",
                                        .signature = signature};
    sb_form_t *form;
    sb_sig_result_t sig;
    CHECK (s_read (self, &request, body, false, &form, &sig) == SB_TWILIO_HTTP_OK);
    CHECK (form && strcmp (sb_form_get (form, "From"), "+14155550100") == 0);
    sb_form_destroy (&form);
    //  Another query: another URL.
    request.query = NULL;
    CHECK (s_read (self, &request, body, false, &form, &sig) == SB_TWILIO_HTTP_BAD_SIGNATURE);
    CHECK (sig == SB_SIG_MISMATCH && !form);
    request.signature = NULL;
    CHECK (s_read (self, &request, body, false, &form, &sig) == SB_TWILIO_HTTP_BAD_SIGNATURE);
    CHECK (sig == SB_SIG_MISSING);
    sb_twilio_http_destroy (&self);
    CHECK (self == NULL);
    sb_twilio_http_destroy (&self);
}

static void
s_test_host_and_proxy (void)
{
    const char *body = "CallSid=CA1&From=%2B1";
    char https_sig[SB_SIG_TWILIO_SIZE], http_sig[SB_SIG_TWILIO_SIZE];
    s_sign ("https://h.example/twilio/voice", body, false, https_sig);
    s_sign ("http://h.example/twilio/voice", body, false, http_sig);
    sb_form_t *form;
    sb_sig_result_t sig;
    for (int trust = 0; trust < 2; trust++) {
        const char *env[] = {"TWILIO_AUTH_TOKEN=" TOKEN,
                             trust ? "SB_TRUST_PROXY=1" : "SB_TRUST_PROXY=0", NULL};
        sb_twilio_http_t *self = s_new (env);
        CHECK (self);
        sb_twilio_http_request_t request = {.path = "/twilio/voice",
                                            .host = "h.example",
                                            .forwarded_proto = "https, http",
                                            .signature = https_sig};
        //  The first hop said https: believed only with SB_TRUST_PROXY.
        CHECK (s_read (self, &request, body, false, &form, &sig)
               == (trust ? SB_TWILIO_HTTP_OK : SB_TWILIO_HTTP_BAD_SIGNATURE));
        sb_form_destroy (&form);
        request.signature = http_sig;
        CHECK (s_read (self, &request, body, false, &form, &sig)
               == (trust ? SB_TWILIO_HTTP_BAD_SIGNATURE : SB_TWILIO_HTTP_OK));
        sb_form_destroy (&form);
        //  Over TLS without a proxy the scheme is https.
        request.forwarded_proto = NULL;
        request.tls = true;
        request.signature = https_sig;
        CHECK (s_read (self, &request, body, false, &form, &sig) == SB_TWILIO_HTTP_OK);
        sb_form_destroy (&form);
        //  A Host that cannot make a URL, also with a malformed body.
        const char *bad_hosts[] = {NULL, "", "h.example/x", "a@h.example", "h ex"};
        for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
            request.host = bad_hosts[i];
            CHECK (s_read (self, &request, body, false, &form, &sig) == SB_TWILIO_HTTP_BAD_HOST);
            CHECK (s_read (self, &request, "From=%ZZ", false, &form, &sig)
                   == SB_TWILIO_HTTP_BAD_HOST);
            CHECK (!form);
        }
        sb_twilio_http_destroy (&self);
    }
}

static void
s_test_lenient_form (void)
{
    const char *env[] = {"TWILIO_AUTH_TOKEN=" TOKEN, "SB_PUBLIC_URL=https://h.example", NULL};
    sb_twilio_http_t *self = s_new (env);
    CHECK (self);
    //  Signed as a browser decodes it: "%ZZ" kept literally.
    sb_form_t *literal = sb_form_new ();
    CHECK (literal && sb_form_add (literal, "From", "%ZZ") == 0
           && sb_form_add (literal, "Body", "x") == 0);
    char signature[SB_SIG_TWILIO_SIZE];
    CHECK (sb_sig_twilio_sign (TOKEN, "https://h.example/twilio/messages", literal, signature)
           == 0);
    sb_form_destroy (&literal);
    sb_twilio_http_request_t request = {.path = "/twilio/messages", .signature = signature};
    sb_form_t *form;
    sb_sig_result_t sig;
    CHECK (s_read (self, &request, "From=%ZZ&Body=x", false, &form, &sig)
           == SB_TWILIO_HTTP_BAD_FORM);
    CHECK (!form);
    //  Signed otherwise: 403, not 400.
    request.signature = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    CHECK (s_read (self, &request, "From=%ZZ&Body=x", false, &form, &sig)
           == SB_TWILIO_HTTP_BAD_SIGNATURE);
    CHECK (sig == SB_SIG_MISMATCH);
    sb_twilio_http_destroy (&self);

    //  Without signatures a bad form is simply malformed.
    const char *skip[] = {"SB_INSECURE_SKIP_SIGNATURES=1", NULL};
    self = s_new (skip);
    CHECK (self && sb_twilio_http_configured (self));
    request.signature = NULL;
    CHECK (s_read (self, &request, "From=%ZZ", false, &form, &sig) == SB_TWILIO_HTTP_MALFORMED);
    CHECK (s_read (self, &request, "From=%2B1", false, &form, &sig) == SB_TWILIO_HTTP_OK);
    sb_form_destroy (&form);
    sb_twilio_http_destroy (&self);

    //  Neither a token nor SB_INSECURE_SKIP_SIGNATURES: not configured.
    const char *none[] = {NULL};
    self = s_new (none);
    CHECK (self && !sb_twilio_http_configured (self));
    sb_twilio_http_destroy (&self);
}

static void
s_test_json (void)
{
    const char *env[] = {"TWILIO_AUTH_TOKEN=" TOKEN, "SB_PUBLIC_URL=https://h.example", NULL};
    sb_twilio_http_t *self = s_new (env);
    CHECK (self);
    const char *body = "{\"MessageSid\":\"SM1\",\"NumMedia\":0,\"Latitude\":1.5,"
                       "\"Flag\":true,\"Nested\":{\"a\":1},\"List\":[1]}";
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256 ((const unsigned char *) body, strlen (body), digest);
    char query[128] = "bodySHA256=";
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf (query + strlen (query), sizeof query - strlen (query), "%02x", digest[i]);
    char url[256];
    snprintf (url, sizeof url, "https://h.example/twilio/status?%s", query);
    char signature[SB_SIG_TWILIO_SIZE];
    s_sign (url, body, true, signature);
    sb_twilio_http_request_t request = {
        .path = "/twilio/status", .query = query, .signature = signature};
    sb_form_t *form;
    sb_sig_result_t sig;
    CHECK (s_read (self, &request, body, true, &form, &sig) == SB_TWILIO_HTTP_OK);
    CHECK (form && sb_form_size (form) == 4);
    if (form) {
        CHECK (strcmp (sb_form_get (form, "MessageSid"), "SM1") == 0);
        CHECK (strcmp (sb_form_get (form, "NumMedia"), "0") == 0);
        CHECK (strcmp (sb_form_get (form, "Latitude"), "1.5") == 0);
        CHECK (strcmp (sb_form_get (form, "Flag"), "true") == 0);
        CHECK (sb_form_get (form, "Nested") == NULL);
    }
    sb_form_destroy (&form);
    //  The body changed: its hash no longer matches the URL's.
    CHECK (s_read (self, &request, "{\"MessageSid\":\"SM2\"}", true, &form, &sig)
           == SB_TWILIO_HTTP_BAD_SIGNATURE);
    CHECK (sig == SB_SIG_BODY_HASH);
    sb_twilio_http_destroy (&self);

    //  Not an object: no parameters.
    const char *skip[] = {"SB_INSECURE_SKIP_SIGNATURES=1", NULL};
    self = s_new (skip);
    CHECK (s_read (self, &request, "[1,2]", true, &form, &sig) == SB_TWILIO_HTTP_MALFORMED);
    CHECK (s_read (self, &request, "{", true, &form, &sig) == SB_TWILIO_HTTP_MALFORMED);
    CHECK (!form);
    sb_twilio_http_destroy (&self);
}

static void
s_test_answers (void)
{
    const char *env[] = {"SB_PUBLIC_URL=https://h.example/a&b", "SB_INSECURE_SKIP_SIGNATURES=1",
                         NULL};
    sb_twilio_http_t *self = s_new (env);
    CHECK (self);
    const char *type;
    char *owned;
    const char *answer =
        sb_twilio_http_answer (self, SB_TWILIO_MESSAGES, "/twilio/messages", &type, &owned);
    CHECK (strstr (answer, "<Response/>") && strcmp (type, "text/xml") == 0 && !owned);
    answer = sb_twilio_http_answer (self, SB_TWILIO_STATUS, "/twilio/status", &type, &owned);
    CHECK (strcmp (answer, "") == 0 && strcmp (type, "text/plain; charset=utf-8") == 0 && !owned);
    answer = sb_twilio_http_answer (self, SB_TWILIO_GATHER, "/twilio/gather", &type, &owned);
    CHECK (strstr (answer, "<Hangup/>") && strcmp (type, "text/xml") == 0 && !owned);
    //  The gather action: the public URL, then the prefix the call came in
    //  on, escaped for an attribute.
    answer = sb_twilio_http_answer (self, SB_TWILIO_VOICE, "/p/twilio/voice", &type, &owned);
    CHECK (owned && answer == owned && strcmp (type, "text/xml") == 0);
    CHECK (strstr (answer, "<Gather numDigits=\"6\" "
                           "action=\"https://h.example/a&amp;b/p/twilio/gather\""));
    free (owned);
    sb_twilio_http_destroy (&self);

    //  Configured TwiML files.
    char voice_path[] = "/tmp/test_sb_twilio_http.XXXXXX";
    int fd = mkstemp (voice_path);
    FILE *file = fd >= 0 ? fdopen (fd, "w") : NULL;
    CHECK (file);
    if (!file)
        return;
    fputs ("<Response><Say>Hi</Say></Response>\n", file);
    fclose (file);
    char voice[128];
    snprintf (voice, sizeof voice, "SB_TWILIO_VOICE_TWIML=%s", voice_path);
    const char *files[] = {voice, "SB_INSECURE_SKIP_SIGNATURES=1", NULL};
    self = s_new (files);
    CHECK (self);
    if (self) {
        answer = sb_twilio_http_answer (self, SB_TWILIO_VOICE, "/twilio/voice", &type, &owned);
        CHECK (owned && strcmp (answer, "<Response><Say>Hi</Say></Response>\n") == 0);
        free (owned);
        sb_twilio_http_destroy (&self);
    }
    //  Not a <Response>: refused at start (logged at error).
    file = fopen (voice_path, "w");
    CHECK (file);
    if (file) {
        fputs ("<Say>Hi</Say>\n", file);
        fclose (file);
        CHECK (s_new (files) == NULL);
    }
    remove (voice_path);
}

//  TWILIO_WEBHOOK_SHARED_KEYS: read at start (a bad value exits naming the
//  variable, never printing the secret), also from _FILE; a request with
//  X-Twilio-Webhooks-Signature-Settings is checked with the key it names.
static void
s_test_shared_keys (void)
{
    const char *bad[][2] = {
        {"TWILIO_WEBHOOK_SHARED_KEYS=k1=topsecret,k1=other", "given twice"},
        {"TWILIO_WEBHOOK_SHARED_KEYS=k1=", "empty secret"},
        {"TWILIO_WEBHOOK_SHARED_KEYS=k1topsecret", "without '='"},
        {"TWILIO_WEBHOOK_SHARED_KEYS=k1=topsecret,,k2=x", "empty pair"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *env[] = {(char *) bad[i][0], NULL};
        char err[256] = "";
        sb_config_t *config = sb_config_load_from (SB_SVC_INGRESS, env, err, sizeof err);
        CHECK (config == NULL);
        CHECK (strncmp (err, "TWILIO_WEBHOOK_SHARED_KEYS", 26) == 0);
        CHECK (strstr (err, bad[i][1]) != NULL);
        CHECK (strstr (err, "topsecret") == NULL);
        sb_config_destroy (&config);
    }
    //  From a file, with Docker's trailing newline; no auth token at all.
    char path[] = "/tmp/test_sb_twilio_http.XXXXXX";
    int fd = mkstemp (path);
    CHECK (fd >= 0 && write (fd, "old=first,new=second\n", 21) == 21);
    close (fd);
    char file_var[128];
    snprintf (file_var, sizeof file_var, "TWILIO_WEBHOOK_SHARED_KEYS_FILE=%s", path);
    const char *env[] = {file_var, "SB_PUBLIC_URL=https://hooks.example.com", NULL};
    sb_twilio_http_t *self = s_new (env);
    unlink (path);
    CHECK (self && sb_twilio_http_configured (self));
    if (!self)
        return;
    const char *body = "From=rcs%3A%2B14155550100&To=rcs%3Aagent&Body=hi&MessageSid=SM1";
    const char *url = "https://hooks.example.com/twilio/messages";
    sb_form_t *params = sb_form_parse (body, strlen (body));
    char signature[SB_SIG_TWILIO256_SIZE];
    CHECK (sb_sig_twilio_sign_with ("second", SB_SIG_HMAC_SHA256, url, params, signature) == 0);
    sb_form_destroy (&params);
    sb_twilio_http_request_t request = {.path = "/twilio/messages",
                                        .host = "127.0.0.1",
                                        .signature = signature,
                                        .signature_settings = "key=new,algorithm=HMAC_SHA256"};
    sb_form_t *form;
    sb_sig_result_t sig;
    CHECK (s_read (self, &request, body, false, &form, &sig) == SB_TWILIO_HTTP_OK);
    CHECK (sig == SB_SIG_OK && form && strcmp (sb_form_get (form, "To"), "rcs:agent") == 0);
    sb_form_destroy (&form);
    //  The other key, an unknown one, no settings (the auth token is unset)
    request.signature_settings = "key=old,algorithm=HMAC_SHA256";
    CHECK (s_read (self, &request, body, false, &form, &sig) == SB_TWILIO_HTTP_BAD_SIGNATURE);
    CHECK (sig == SB_SIG_MISMATCH && form == NULL);
    request.signature_settings = "key=older,algorithm=HMAC_SHA256";
    CHECK (s_read (self, &request, body, false, &form, &sig) == SB_TWILIO_HTTP_BAD_SIGNATURE);
    CHECK (sig == SB_SIG_UNKNOWN_KEY);
    request.signature_settings = "key=new,algorithm=RSA_SHA256";
    CHECK (s_read (self, &request, body, false, &form, &sig) == SB_TWILIO_HTTP_BAD_SIGNATURE);
    CHECK (sig == SB_SIG_UNKNOWN_ALGORITHM);
    request.signature_settings = NULL;
    CHECK (s_read (self, &request, body, false, &form, &sig) == SB_TWILIO_HTTP_BAD_SIGNATURE);
    CHECK (sig == SB_SIG_MALFORMED);  //  a 44-character signature is not SHA-1's
    sb_twilio_http_destroy (&self);
}

int
main (void)
{
    sb_log_init ("test", getenv ("SB_TEST_VERBOSE") ? SB_LOG_DEBUG : SB_LOG_OFF);
    s_test_public_url ();
    s_test_host_and_proxy ();
    s_test_lenient_form ();
    s_test_json ();
    s_test_answers ();
    s_test_shared_keys ();
    if (s_failures)
        fprintf (stderr, "test_sb_twilio_http: %d failure(s)\n", s_failures);
    return s_failures ? 1 : 0;
}

/*  sb_sig: the providers' webhook signatures, computed and checked over the
    exact bytes received, compared in constant time (CRYPTO_memcmp).

    Twilio X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + for each
    key in sorted order, for each of its distinct values in sorted order,
    key + value)). For JSON bodies Twilio signs the URL alone, which carries
    ?bodySHA256=<hex SHA-256 of the body>. As the official SDKs do, a
    signature over the URL with its port removed, or with the scheme's
    default port added, is also accepted. The URL is used verbatim: no case
    folding of scheme or host.

    Twilio shared keys (Webhooks configuration API): when a Webhook Rule
    matches the URL, Twilio signs with a SharedKey's secret instead of the
    auth token, with HMAC-SHA1 or HMAC-SHA256 over the same string, and says
    which in X-Twilio-Webhooks-Signature-Settings: key=KEY_ID,algorithm=
    HMAC_SHA256 (twilio-node examples/WebhookSignatureValidation.md). The
    receiver holds its keys as TWILIO_WEBHOOK_SHARED_KEYS, KEY_ID=SECRET
    pairs; several at once while a key is rotated.

    Meta X-Hub-Signature-256: "sha256=" + lower-case hex HMAC-SHA256(app
    secret, raw body).
*/
#ifndef SB_SIG_H_INCLUDED
#define SB_SIG_H_INCLUDED

#include <stddef.h>

#include "sb_form.h"

//  Why a signature was refused; the names label the 403 counter.
typedef enum {
    SB_SIG_OK = 0,
    SB_SIG_MISSING,            //  no signature header, or empty
    SB_SIG_MALFORMED,          //  not base64 / not "sha256=" + 64 hex digits
    SB_SIG_MISMATCH,           //  well-formed but wrong
    SB_SIG_BODY_HASH,          //  Twilio JSON: bodySHA256 missing or not the body's hash
    SB_SIG_BAD_SETTINGS,       //  Twilio: X-Twilio-Webhooks-Signature-Settings unreadable
    SB_SIG_UNKNOWN_KEY,        //  Twilio: the settings name a key we do not hold
    SB_SIG_UNKNOWN_ALGORITHM,  //  Twilio: the settings name an algorithm we do not know
} sb_sig_result_t;

#define SB_SIG_COUNT 8  //  how many sb_sig_result_t values (for counters)

//  "ok", "missing", "malformed", "mismatch", "body_hash", "bad_settings",
//  "unknown_key", "unknown_algorithm".
const char *sb_sig_reason (sb_sig_result_t result);

//  The HMAC a Twilio signature uses.
typedef enum {
    SB_SIG_HMAC_SHA1,    //  the auth token's, and a shared key's HMAC_SHA1
    SB_SIG_HMAC_SHA256,  //  a shared key's HMAC_SHA256
} sb_sig_algorithm_t;

#define SB_SIG_TWILIO_SIZE 29     //  base64 of 20 bytes, plus NUL
#define SB_SIG_TWILIO256_SIZE 45  //  base64 of 32 bytes, plus NUL
#define SB_SIG_META_SIZE 72       //  "sha256=" + 64 hex, plus NUL

//  Twilio's signature of url and params (params may be NULL or empty: the
//  JSON variant signs the URL only). Writes a NUL-terminated base64 string.
//  Returns 0, or -1 on an OpenSSL failure.
int sb_sig_twilio_sign (const char *auth_token, const char *url, const sb_form_t *params,
                        char out[SB_SIG_TWILIO_SIZE]);

//  Check X-Twilio-Signature. url is the full URL Twilio called (query
//  included). For a form request pass its parsed params and body NULL; for a
//  JSON request pass params NULL and the raw body, which must hash to the
//  URL's bodySHA256. signature may be NULL (missing).
sb_sig_result_t sb_sig_twilio_validate (const char *auth_token, const char *url,
                                        const sb_form_t *params, const void *body, size_t body_size,
                                        const char *signature);

//  ---------------------------------------------------------------------------
//  Twilio shared keys

typedef struct sb_sig_keys_t sb_sig_keys_t;

#define SB_SIG_KEYS_MAX 32  //  most keys TWILIO_WEBHOOK_SHARED_KEYS may hold

//  Parse "KEY_ID=SECRET[,KEY_ID=SECRET...]": spaces around a pair are
//  dropped; the id is what precedes the first '=' (no spaces, commas or
//  control bytes), the secret the rest (may hold '=', not ','). NULL and
//  *problem (static text) set when a pair has no '=', an empty id or
//  secret, an id repeats, or there are more than SB_SIG_KEYS_MAX pairs.
//  Caller owns the return value.
sb_sig_keys_t *sb_sig_keys_new (const char *text, const char **problem);

//  Free it; the secrets are cleansed first.
void sb_sig_keys_destroy (sb_sig_keys_t **self_p);

//  How many keys it holds.
size_t sb_sig_keys_size (const sb_sig_keys_t *self);

//  Read X-Twilio-Webhooks-Signature-Settings: comma-separated name=value
//  parts, spaces around them ignored, names without case, unknown names
//  skipped; "key" and "algorithm" each exactly once. On SB_SIG_OK sets
//  *secret (borrowed from keys) and *algorithm. SB_SIG_BAD_SETTINGS when
//  unreadable (empty, over 1 KiB, key or algorithm missing or repeated),
//  SB_SIG_UNKNOWN_ALGORITHM when not HMAC_SHA1 or HMAC_SHA256 (the case of
//  the value is ignored), SB_SIG_UNKNOWN_KEY when keys (may be NULL) holds
//  no such id.
sb_sig_result_t sb_sig_twilio_settings (const char *header, const sb_sig_keys_t *keys,
                                        const char **secret, sb_sig_algorithm_t *algorithm);

//  Sign as sb_sig_twilio_sign does, with key and algorithm; out holds
//  SB_SIG_TWILIO256_SIZE bytes. 0 or -1.
int sb_sig_twilio_sign_with (const char *key, sb_sig_algorithm_t algorithm, const char *url,
                             const sb_form_t *params, char out[SB_SIG_TWILIO256_SIZE]);

//  Check X-Twilio-Signature the way Twilio chose: when settings (the
//  X-Twilio-Webhooks-Signature-Settings header) is NULL, with auth_token
//  and HMAC-SHA1 (sb_sig_twilio_validate); else with the key and algorithm
//  it names (sb_sig_twilio_settings), over the same URL variants, params
//  and body hash. The settings are read before the signature, so a request
//  naming an unknown key is refused as such whatever its signature.
sb_sig_result_t sb_sig_twilio_check (const char *auth_token, const sb_sig_keys_t *keys,
                                     const char *settings, const char *url, const sb_form_t *params,
                                     const void *body, size_t body_size, const char *signature);

//  Meta's X-Hub-Signature-256 value for body.
int sb_sig_meta_sign (const char *app_secret, const void *body, size_t body_size,
                      char out[SB_SIG_META_SIZE]);

//  Check X-Hub-Signature-256 (header may be NULL: missing).
sb_sig_result_t sb_sig_meta_validate (const char *app_secret, const void *body, size_t body_size,
                                      const char *header);

#endif

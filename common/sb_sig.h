/*  sb_sig: the providers' webhook signatures, computed and checked over the
    exact bytes received, compared in constant time (CRYPTO_memcmp).

    Twilio X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + for each
    key in sorted order, for each of its distinct values in sorted order,
    key + value)). For JSON bodies Twilio signs the URL alone, which carries
    ?bodySHA256=<hex SHA-256 of the body>. As the official SDKs do, a
    signature over the URL with its port removed, or with the scheme's
    default port added, is also accepted. The URL is used verbatim: no case
    folding of scheme or host.

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
    SB_SIG_MISSING,    //  no signature header, or empty
    SB_SIG_MALFORMED,  //  not base64 / not "sha256=" + 64 hex digits
    SB_SIG_MISMATCH,   //  well-formed but wrong
    SB_SIG_BODY_HASH,  //  Twilio JSON: bodySHA256 missing or not the body's hash
} sb_sig_result_t;

//  "ok", "missing", "malformed", "mismatch", "body_hash".
const char *sb_sig_reason (sb_sig_result_t result);

#define SB_SIG_TWILIO_SIZE 29  //  base64 of 20 bytes, plus NUL
#define SB_SIG_META_SIZE 72    //  "sha256=" + 64 hex, plus NUL

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

//  Meta's X-Hub-Signature-256 value for body.
int sb_sig_meta_sign (const char *app_secret, const void *body, size_t body_size,
                      char out[SB_SIG_META_SIZE]);

//  Check X-Hub-Signature-256 (header may be NULL: missing).
sb_sig_result_t sb_sig_meta_validate (const char *app_secret, const void *body, size_t body_size,
                                      const char *header);

#endif

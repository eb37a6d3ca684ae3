/*  fuzz_twilio_sig: the signature validators on arbitrary requests.

    Input: up to five parts separated by NUL bytes,
        token NUL url NUL params NUL signature [NUL body]
    token is the Twilio auth token (the Meta app secret), url the URL Twilio
    called, params a form body (parsed with sb_form_parse; absent or
    malformed: no params), signature the X-Twilio-Signature (or
    X-Hub-Signature-256) header; a missing part is absent (NULL header).
    With a fifth part the request is a JSON one: body is every byte after
    the fourth NUL (NULs included) and params are not used. The corpus
    (make_corpus.py) holds the conformance vectors in this form.

    Invariants, beyond "no sanitizer finding":
    - results are one of the enum's values; no header is "missing"; OK
      needs a non-empty token and a well-formed header, and for a JSON
      request a URL carrying the body's SHA-256.
    - what sb_sig_twilio_sign makes is well-formed: validating it is never
      "missing" or "malformed". Over a URL we know to be acceptable
      (https://h.example/<the url's safe characters>) it validates, also
      when the URL is received with the default port :443, and with the
      params given in reverse order; a different token does not validate.
    - JSON: a URL with ?bodySHA256=<hex SHA-256 of body>, signed, validates
      with the body; the body changed by one byte is "body_hash".
    - Meta: a header from sb_sig_meta_sign validates, in upper-case hex
      too; one hex digit changed, or another secret, is "mismatch".
*/
#include <ctype.h>
#include <string.h>

#include <openssl/evp.h>

#include "sb_form.h"
#include "sb_fuzz.h"
#include "sb_sig.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    sb_fuzz_quiet ();
    return 0;
}

//  The parts of one input; strings point into a NUL-terminated copy.
typedef struct {
    char *copy;           //  the input with a NUL after it (owned)
    const char *token;    //  "" when absent
    const char *url;      //  "" when absent
    const char *params;   //  NULL when absent
    const char *header;   //  NULL when absent
    const uint8_t *body;  //  NULL when absent (a form request)
    size_t body_size;     //  its length
} s_parts_t;

static void
s_split (s_parts_t *parts, const uint8_t *data, size_t size)
{
    memset (parts, 0, sizeof *parts);
    parts->copy = malloc (size + 1);
    SB_FUZZ_CHECK (parts->copy);
    if (size)
        memcpy (parts->copy, data, size);
    parts->copy[size] = '\0';
    const char *fields[4] = {NULL, NULL, NULL, NULL};
    size_t at = 0;
    for (int i = 0; i < 4 && at <= size; i++) {
        fields[i] = parts->copy + at;
        at += strlen (parts->copy + at) + 1;
    }
    parts->token = fields[0] ? fields[0] : "";
    parts->url = fields[1] ? fields[1] : "";
    parts->params = fields[2];
    parts->header = fields[3];
    if (at <= size) {
        parts->body = (const uint8_t *) parts->copy + at;
        parts->body_size = size - at;
    }
}

static int
s_valid_result (sb_sig_result_t result)
{
    return result == SB_SIG_OK || result == SB_SIG_MISSING || result == SB_SIG_MALFORMED
           || result == SB_SIG_MISMATCH || result == SB_SIG_BODY_HASH;
}

//  Lower-case hex SHA-256 of data into hex (65 bytes).
static void
s_sha256_hex (const void *data, size_t size, char hex[65])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_size = 0;
    SB_FUZZ_CHECK (EVP_Digest (data, size, digest, &digest_size, EVP_sha256 (), NULL) == 1);
    SB_FUZZ_CHECK (digest_size == 32);
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = "0123456789abcdef"[digest[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[digest[i] & 15];
    }
    hex[64] = '\0';
}

//  "https://h.example" + port + "/" + the characters of url that are safe
//  in a path, at most 200 of them. Caller frees.
static char *
s_safe_url (const char *url, const char *port)
{
    size_t size = strlen (url);
    if (size > 200)
        size = 200;
    char *out = malloc (size + 64);
    SB_FUZZ_CHECK (out);
    int n = snprintf (out, 64, "https://h.example%s/", port);
    SB_FUZZ_CHECK (n > 0 && n < 64);
    size_t o = (size_t) n;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char) url[i];
        if (isalnum (c) || c == '/' || c == '.' || c == '_' || c == '-' || c == '~')
            out[o++] = (char) c;
    }
    out[o] = '\0';
    return out;
}

//  The form's pairs in reverse order.
static sb_form_t *
s_reversed (const sb_form_t *form)
{
    sb_form_t *reversed = sb_form_new ();
    SB_FUZZ_CHECK (reversed);
    for (size_t i = sb_form_size (form); i > 0; i--)
        SB_FUZZ_CHECK (
            sb_form_add (reversed, sb_form_key (form, i - 1), sb_form_value (form, i - 1)) == 0);
    return reversed;
}

static void
s_check_twilio_given (const s_parts_t *parts, const sb_form_t *form)
{
    sb_sig_result_t result =
        sb_sig_twilio_validate (parts->token, parts->url, parts->body ? NULL : form, parts->body,
                                parts->body_size, parts->header);
    SB_FUZZ_CHECK (s_valid_result (result));
    SB_FUZZ_CHECK ((result == SB_SIG_MISSING) == (!parts->header || !*parts->header));
    if (result == SB_SIG_OK) {
        SB_FUZZ_CHECK (*parts->token);
        SB_FUZZ_CHECK (strlen (parts->header) == SB_SIG_TWILIO_SIZE - 1);
        SB_FUZZ_CHECK (parts->header[SB_SIG_TWILIO_SIZE - 2] == '=');
        if (parts->body) {
            char hex[65], needle[80];
            s_sha256_hex (parts->body, parts->body_size, hex);
            snprintf (needle, sizeof needle, "bodySHA256=%s", hex);
            SB_FUZZ_CHECK (strstr (parts->url, needle));
        }
    }
}

static void
s_check_twilio_signed (const s_parts_t *parts, const sb_form_t *form)
{
    char signature[SB_SIG_TWILIO_SIZE];
    int rc = sb_sig_twilio_sign (parts->token, parts->url, form, signature);
    SB_FUZZ_CHECK (rc == 0 || rc == -1);
    if (!*parts->token) {
        SB_FUZZ_CHECK (rc == -1);
        return;
    }
    SB_FUZZ_CHECK (rc == 0);
    SB_FUZZ_CHECK (strlen (signature) == SB_SIG_TWILIO_SIZE - 1);
    sb_sig_result_t result =
        sb_sig_twilio_validate (parts->token, parts->url, form, NULL, 0, signature);
    SB_FUZZ_CHECK (result != SB_SIG_MISSING && result != SB_SIG_MALFORMED);
    if (result == SB_SIG_BODY_HASH)
        SB_FUZZ_CHECK (strstr (parts->url, "bodySHA256="));

    //  A URL we know is acceptable: signed as configured, received with :443
    char *url = s_safe_url (parts->url, "");
    char *url_443 = s_safe_url (parts->url, ":443");
    SB_FUZZ_CHECK (sb_sig_twilio_sign (parts->token, url, form, signature) == 0);
    SB_FUZZ_CHECK (sb_sig_twilio_validate (parts->token, url, form, NULL, 0, signature)
                   == SB_SIG_OK);
    SB_FUZZ_CHECK (sb_sig_twilio_validate (parts->token, url_443, form, NULL, 0, signature)
                   == SB_SIG_OK);
    sb_form_t *reversed = s_reversed (form);
    SB_FUZZ_CHECK (sb_sig_twilio_validate (parts->token, url, reversed, NULL, 0, signature)
                   == SB_SIG_OK);
    sb_form_destroy (&reversed);
    size_t token_size = strlen (parts->token);
    char *other = malloc (token_size + 2);
    SB_FUZZ_CHECK (other);
    memcpy (other, parts->token, token_size);
    other[token_size] = 'x';
    other[token_size + 1] = '\0';
    SB_FUZZ_CHECK (sb_sig_twilio_validate (other, url, form, NULL, 0, signature)
                   == SB_SIG_MISMATCH);
    free (other);

    //  JSON: the URL carries the body's hash
    if (parts->body) {
        char hex[65];
        s_sha256_hex (parts->body, parts->body_size, hex);
        size_t json_size = strlen (url) + 96;
        char *json_url = malloc (json_size);
        SB_FUZZ_CHECK (json_url);
        snprintf (json_url, json_size, "%s?bodySHA256=%s", url, hex);
        SB_FUZZ_CHECK (sb_sig_twilio_sign (parts->token, json_url, NULL, signature) == 0);
        SB_FUZZ_CHECK (sb_sig_twilio_validate (parts->token, json_url, NULL, parts->body,
                                               parts->body_size, signature)
                       == SB_SIG_OK);
        if (parts->body_size > 0) {
            uint8_t *changed = malloc (parts->body_size);
            SB_FUZZ_CHECK (changed);
            memcpy (changed, parts->body, parts->body_size);
            changed[parts->body_size / 2] ^= 0x01;
            SB_FUZZ_CHECK (sb_sig_twilio_validate (parts->token, json_url, NULL, changed,
                                                   parts->body_size, signature)
                           == SB_SIG_BODY_HASH);
            free (changed);
        }
        //  The same URL posted as a form skips no body check: refused
        SB_FUZZ_CHECK (sb_sig_twilio_validate (parts->token, json_url, NULL, NULL, 0, signature)
                       == SB_SIG_BODY_HASH);
        free (json_url);
    }
    free (url_443);
    free (url);
}

static void
s_check_meta (const s_parts_t *parts)
{
    //  Meta signs the body; a form input's params stand in for one
    const void *body = parts->body ? (const void *) parts->body : parts->params;
    size_t body_size =
        parts->body ? parts->body_size : (parts->params ? strlen (parts->params) : 0);
    sb_sig_result_t result = sb_sig_meta_validate (parts->token, body, body_size, parts->header);
    SB_FUZZ_CHECK (s_valid_result (result) && result != SB_SIG_BODY_HASH);
    SB_FUZZ_CHECK ((result == SB_SIG_MISSING) == (!parts->header || !*parts->header));
    if (result == SB_SIG_OK) {
        SB_FUZZ_CHECK (*parts->token);
        SB_FUZZ_CHECK (strlen (parts->header) == SB_SIG_META_SIZE - 1);
        SB_FUZZ_CHECK (strncmp (parts->header, "sha256=", 7) == 0);
    }

    char header[SB_SIG_META_SIZE];
    int rc = sb_sig_meta_sign (parts->token, body, body_size, header);
    if (!*parts->token) {
        SB_FUZZ_CHECK (rc == -1);
        return;
    }
    SB_FUZZ_CHECK (rc == 0);
    SB_FUZZ_CHECK (strlen (header) == SB_SIG_META_SIZE - 1);
    SB_FUZZ_CHECK (sb_sig_meta_validate (parts->token, body, body_size, header) == SB_SIG_OK);
    char upper[SB_SIG_META_SIZE];
    memcpy (upper, header, sizeof upper);
    for (size_t i = 7; upper[i]; i++)
        upper[i] = (char) toupper ((unsigned char) upper[i]);
    SB_FUZZ_CHECK (sb_sig_meta_validate (parts->token, body, body_size, upper) == SB_SIG_OK);
    size_t digit = 7 + body_size % 64;
    upper[digit] = upper[digit] == '0' ? '1' : '0';
    SB_FUZZ_CHECK (sb_sig_meta_validate (parts->token, body, body_size, upper) == SB_SIG_MISMATCH);
    SB_FUZZ_CHECK (sb_sig_meta_validate ("another secret", body, body_size, header)
                   == (strcmp (parts->token, "another secret") ? SB_SIG_MISMATCH : SB_SIG_OK));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_parts_t parts;
    s_split (&parts, data, size);
    sb_form_t *form = parts.params ? sb_form_parse (parts.params, strlen (parts.params)) : NULL;
    s_check_twilio_given (&parts, form);
    s_check_twilio_signed (&parts, form);
    s_check_meta (&parts);
    sb_form_destroy (&form);
    free (parts.copy);
    return 0;
}

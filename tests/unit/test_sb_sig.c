/*  test_sb_sig: Twilio and Meta webhook signatures.

    Silent on success; prints file:line and what differed on failure. Run from
    tests/: it reads the conformance vectors (see conformance/README.md):
      conformance/twilio-signature-vectors.json   43 SDK vectors
      conformance/twilio-forms-signatures.json    14 example forms, signed
      conformance/meta-signature-vectors.json     14 X-Hub-Signature-256 vectors
      conformance/twilio-sharedkey-vectors.json   14 shared-key (SHA-256, SHA-1) vectors

    Every Twilio vector is asserted as its expect_valid says; no exceptions
    were needed:
      - csharp-*-lowercase-signature-invalid: refused, because we do not case
        fold (the C# SDK's own valid vectors are signed over MyCompany.com as
        written; twilio-node accepts these only because Node's URL class
        lower-cases the host).
      - form-query-special-chars-valid and node-*quote*: accepted, because
        sb_sig also tries the query with ' written %27 and with %27 written '.
      - URL credentials: kept in the signed string, as all SDKs do.
*/
#include "sb_sig.h"
#include "sb_log.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_check.h"

//  Result is as expected; label says which case.
#define CHECK_RESULT(got, want, label)                                                             \
    do {                                                                                           \
        sb_sig_result_t g_ = (got), w_ = (want);                                                   \
        if (g_ != w_) {                                                                            \
            fprintf (stderr, "%s:%d: %s: got %s, want %s\n", __FILE__, __LINE__, label,            \
                     sb_sig_reason (g_), sb_sig_reason (w_));                                      \
            s_failures++;                                                                          \
        }                                                                                          \
    } while (0)

#define TOKEN "12345"
#define URL "https://mycompany.com/myapp.php?foo=1&bar=2"

//  Independent reference: base64(HMAC-SHA1(key, text)) by one OpenSSL call.
static void
s_reference_twilio (const char *key, const char *text, char out[SB_SIG_TWILIO_SIZE])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t size = 0;
    out[0] = 0;
    if (!EVP_Q_mac (NULL, "HMAC", NULL, "SHA1", NULL, key, strlen (key),
                    (const unsigned char *) text, strlen (text), mac, sizeof mac, &size)
        || size != 20) {
        fprintf (stderr, "%s:%d: reference HMAC failed\n", __FILE__, __LINE__);
        s_failures++;
        return;
    }
    EVP_EncodeBlock ((unsigned char *) out, mac, 20);
}

//  The form of Twilio's documented example.
static sb_form_t *
s_example_form (void)
{
    sb_form_t *form = sb_form_new ();
    sb_form_add (form, "CallSid", "CA1234567890ABCDE");
    sb_form_add (form, "Caller", "+14158675309");
    sb_form_add (form, "Digits", "1234");
    sb_form_add (form, "From", "+14158675309");
    sb_form_add (form, "To", "+18005551212");
    return form;
}

//  ---------------------------------------------------------------------------
//  Conformance: twilio-signature-vectors.json

//  Why each invalid vector must be refused (default SB_SIG_MISMATCH).
static sb_sig_result_t
s_expected_refusal (const char *name)
{
    static const struct {
        const char *name;
        sb_sig_result_t result;
    } table[] = {
        {"form-wrong-signature", SB_SIG_MALFORMED},  //  "WRONG_SIGNATURE": not base64 of 20 bytes
        {"form-prefixed-signature", SB_SIG_MALFORMED},  //  31 characters
        {"form-empty-signature", SB_SIG_MISSING},
        {"json-body-without-bodySHA256-invalid", SB_SIG_BODY_HASH},
        {"json-body-tampered-invalid", SB_SIG_BODY_HASH},  //  URL signature fine, body changed
        {"json-body-hash-truncated-invalid",
         SB_SIG_MISMATCH},  //  URL changed: signature fails first
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp (table[i].name, name) == 0)
            return table[i].result;
    return SB_SIG_MISMATCH;
}

//  A vector's "params", a list of [key, value] pairs, as a form.
static sb_form_t *
s_vector_params (json_t *vector)
{
    sb_form_t *params = sb_form_new ();
    json_t *pairs = json_object_get (vector, "params");
    for (size_t p = 0; p < json_array_size (pairs); p++) {
        json_t *pair = json_array_get (pairs, p);
        CHECK (sb_form_add (params, json_string_value (json_array_get (pair, 0)),
                            json_string_value (json_array_get (pair, 1)))
               == 0);
    }
    return params;
}

static void
s_test_twilio_vectors (void)
{
    json_error_t error;
    json_t *root = json_load_file ("conformance/twilio-signature-vectors.json", 0, &error);
    if (!root) {
        fprintf (stderr, "%s:%d: cannot load twilio-signature-vectors.json: %s (run from tests/)\n",
                 __FILE__, __LINE__, error.text);
        s_failures++;
        return;
    }
    json_t *vectors = json_object_get (root, "vectors");
    CHECK (json_array_size (vectors) == 43);
    size_t valid_count = 0, signed_count = 0;
    for (size_t i = 0; i < json_array_size (vectors); i++) {
        json_t *vector = json_array_get (vectors, i);
        const char *name = json_string_value (json_object_get (vector, "name"));
        const char *url = json_string_value (json_object_get (vector, "url"));
        const char *token = json_string_value (json_object_get (vector, "auth_token"));
        const char *expected = json_string_value (json_object_get (vector, "expected_signature"));
        json_t *body = json_object_get (vector, "body");
        int expect_valid = json_is_true (json_object_get (vector, "expect_valid"));
        if (!name || !url || !token || !expected) {
            fprintf (stderr, "%s:%d: vector %zu incomplete\n", __FILE__, __LINE__, i);
            s_failures++;
            continue;
        }
        sb_form_t *params = s_vector_params (vector);
        int is_json = json_is_string (body);
        const char *body_text = is_json ? json_string_value (body) : NULL;
        size_t body_size = is_json ? json_string_length (body) : 0;

        sb_sig_result_t result =
            is_json ? sb_sig_twilio_validate (token, url, NULL, body_text, body_size, expected)
                    : sb_sig_twilio_validate (token, url, params, NULL, 0, expected);
        CHECK_RESULT (result, expect_valid ? SB_SIG_OK : s_expected_refusal (name), name);
        valid_count += expect_valid;

        //  Signing the URL as given reproduces the signature when that is
        //  the URL that was signed
        json_t *verification = json_object_get (vector, "verification");
        const char *variant =
            json_string_value (json_object_get (verification, "openssl_matched_variant"));
        if (expect_valid && variant && strcmp (variant, "as-received") == 0) {
            char signature[SB_SIG_TWILIO_SIZE];
            CHECK (sb_sig_twilio_sign (token, url, is_json ? NULL : params, signature) == 0);
            CHECK_STR_AS (signature, expected, name);
            signed_count++;
        }
        //  The signed string recorded for the vector is what the signature
        //  is over: sign it as a bare URL, and check the reference agrees
        const char *signed_string = json_string_value (json_object_get (vector, "signed_string"));
        if (signed_string) {
            char signature[SB_SIG_TWILIO_SIZE], reference[SB_SIG_TWILIO_SIZE];
            CHECK (sb_sig_twilio_sign (token, signed_string, NULL, signature) == 0);
            s_reference_twilio (token, signed_string, reference);
            CHECK_STR_AS (signature, reference, name);
            if (strcmp (name, "json-body-tampered-invalid") != 0)
                CHECK_STR_AS (signature, expected, name);
        }
        //  A refusal is not an accident of the signature's spelling: the
        //  valid vectors are refused with any other token
        if (expect_valid) {
            sb_sig_result_t other =
                is_json
                    ? sb_sig_twilio_validate ("54321", url, NULL, body_text, body_size, expected)
                    : sb_sig_twilio_validate ("54321", url, params, NULL, 0, expected);
            CHECK_RESULT (other, SB_SIG_MISMATCH, name);
        }
        sb_form_destroy (&params);
    }
    CHECK (valid_count == 32);
    CHECK (signed_count == 22);
    json_decref (root);
}

//  ---------------------------------------------------------------------------
//  Conformance: twilio-forms-signatures.json (the example .form bodies)

static void
s_test_twilio_forms (void)
{
    json_error_t error;
    json_t *root = json_load_file ("conformance/twilio-forms-signatures.json", 0, &error);
    if (!root) {
        fprintf (stderr, "%s:%d: cannot load twilio-forms-signatures.json: %s\n", __FILE__,
                 __LINE__, error.text);
        s_failures++;
        return;
    }
    const char *token = json_string_value (json_object_get (root, "auth_token"));
    json_t *forms = json_object_get (root, "forms");
    CHECK (token && json_array_size (forms) == 14);
    for (size_t i = 0; token && i < json_array_size (forms); i++) {
        json_t *entry = json_array_get (forms, i);
        const char *file = json_string_value (json_object_get (entry, "file"));
        const char *url = json_string_value (json_object_get (entry, "url"));
        const char *signature = json_string_value (json_object_get (entry, "x_twilio_signature"));
        if (!file || !url || !signature) {
            fprintf (stderr, "%s:%d: form entry %zu incomplete\n", __FILE__, __LINE__, i);
            s_failures++;
            continue;
        }
        char path[256];
        snprintf (path, sizeof path, "conformance/%s", file);
        size_t size = 0;
        char *data = sb_check_read_file (path, &size);
        sb_form_t *form = data ? sb_form_parse (data, size) : NULL;
        if (!form) {
            fprintf (stderr, "%s:%d: %s: cannot read or parse\n", __FILE__, __LINE__, path);
            s_failures++;
            free (data);
            continue;
        }
        CHECK_RESULT (sb_sig_twilio_validate (token, url, form, NULL, 0, signature), SB_SIG_OK,
                      file);
        char again[SB_SIG_TWILIO_SIZE];
        CHECK (sb_sig_twilio_sign (token, url, form, again) == 0);
        CHECK_STR_AS (again, signature, file);

        //  Any change is refused: another URL, another token, one more pair,
        //  the body passed as JSON
        CHECK_RESULT (sb_sig_twilio_validate (token, "https://switchboard.example.com/twilio/other",
                                              form, NULL, 0, signature),
                      SB_SIG_MISMATCH, file);
        CHECK_RESULT (sb_sig_twilio_validate ("0123456789abcdef0123456789abcdeF", url, form, NULL,
                                              0, signature),
                      SB_SIG_MISMATCH, file);
        CHECK_RESULT (sb_sig_twilio_validate (token, url, NULL, NULL, 0, signature),
                      SB_SIG_MISMATCH, file);
        CHECK_RESULT (sb_sig_twilio_validate (token, url, NULL, data, size, signature),
                      SB_SIG_BODY_HASH, file);
        CHECK (sb_form_add (form, "Injected", "1") == 0);
        CHECK_RESULT (sb_sig_twilio_validate (token, url, form, NULL, 0, signature),
                      SB_SIG_MISMATCH, file);
        sb_form_destroy (&form);
        free (data);
    }
    json_decref (root);
}

//  ---------------------------------------------------------------------------
//  Conformance: meta-signature-vectors.json

static void
s_test_meta_vectors (void)
{
    json_error_t error;
    json_t *root = json_load_file ("conformance/meta-signature-vectors.json", 0, &error);
    if (!root) {
        fprintf (stderr, "%s:%d: cannot load meta-signature-vectors.json: %s\n", __FILE__, __LINE__,
                 error.text);
        s_failures++;
        return;
    }
    json_t *vectors = json_object_get (root, "vectors");
    CHECK (json_array_size (vectors) == 14);
    for (size_t i = 0; i < json_array_size (vectors); i++) {
        json_t *vector = json_array_get (vectors, i);
        const char *name = json_string_value (json_object_get (vector, "name"));
        const char *secret = json_string_value (json_object_get (vector, "app_secret"));
        json_t *body_json = json_object_get (vector, "body");
        const char *body = json_string_value (body_json);
        size_t body_size = json_string_length (body_json);
        const char *header = json_string_value (json_object_get (vector, "header_value"));
        const char *file = json_string_value (json_object_get (vector, "body_file"));
        int expect_valid = json_is_true (json_object_get (vector, "expect_valid"));
        if (!name || !secret || !body || !header) {
            fprintf (stderr, "%s:%d: meta vector %zu incomplete\n", __FILE__, __LINE__, i);
            s_failures++;
            continue;
        }
        //  The body is the exact bytes: its length and SHA-256 are recorded
        CHECK (body_size == (size_t) json_integer_value (json_object_get (vector, "body_length")));
        unsigned char digest[32];
        char hex[65];
        unsigned int digest_size = 0;
        CHECK (EVP_Digest (body, body_size, digest, &digest_size, EVP_sha256 (), NULL) == 1);
        for (int b = 0; b < 32; b++)
            snprintf (hex + 2 * b, 3, "%02x", digest[b]);
        CHECK_STR_AS (hex, json_string_value (json_object_get (vector, "body_sha256")), name);
        //  "-file-bytes" vectors are the file exactly
        if (file && strstr (name, "-file-bytes")) {
            char path[256];
            snprintf (path, sizeof path, "conformance/%s", file);
            size_t size = 0;
            char *data = sb_check_read_file (path, &size);
            CHECK (data && size == body_size && memcmp (data, body, size) == 0);
            free (data);
        }

        sb_sig_result_t want = SB_SIG_OK;
        if (!expect_valid) {
            if (strcmp (name, "negative-empty-header") == 0)
                want = SB_SIG_MISSING;
            else if (strcmp (name, "negative-missing-prefix") == 0
                     || strcmp (name, "negative-sha1-style-header-value") == 0)
                want = SB_SIG_MALFORMED;
            else
                want = SB_SIG_MISMATCH;
        }
        CHECK_RESULT (sb_sig_meta_validate (secret, body, body_size, header), want, name);
        if (expect_valid) {
            char signature[SB_SIG_META_SIZE];
            CHECK (sb_sig_meta_sign (secret, body, body_size, signature) == 0);
            CHECK_STR_AS (signature, header, name);
            //  Decision: upper-case hex is accepted (the digits are decoded
            //  and the 32 bytes compared); Meta itself sends lower case
            char upper[SB_SIG_META_SIZE];
            memcpy (upper, header, sizeof upper);
            for (char *c = upper + 7; *c; c++)
                if (*c >= 'a' && *c <= 'f')
                    *c = (char) (*c - 'a' + 'A');
            CHECK_RESULT (sb_sig_meta_validate (secret, body, body_size, upper), SB_SIG_OK, name);
            //  One byte more or less of body, or another secret, is refused
            CHECK_RESULT (sb_sig_meta_validate (secret, body, body_size - 1, header),
                          SB_SIG_MISMATCH, name);
            CHECK_RESULT (
                sb_sig_meta_validate ("d4c2f6a8b0e1357924680ace13579bdF", body, body_size, header),
                SB_SIG_MISMATCH, name);
        }
    }
    json_decref (root);
}

//  ---------------------------------------------------------------------------
//  Twilio behaviour beyond the vectors

static void
s_test_twilio_sorting (void)
{
    //  Keys in byte order (upper case first, then '_', lower case, then
    //  non-ASCII), values of one key sorted, exact duplicates signed once
    sb_form_t *form = sb_form_new ();
    sb_form_add (form, "b", "2");
    sb_form_add (form, "a", "z");
    sb_form_add (form, "\xc3\xa9", "e");
    sb_form_add (form, "a", "y");
    sb_form_add (form, "_", "u");
    sb_form_add (form, "a", "z");
    sb_form_add (form, "B", "1");
    sb_form_add (form, "a", "");
    char reference[SB_SIG_TWILIO_SIZE], signature[SB_SIG_TWILIO_SIZE];
    s_reference_twilio (TOKEN,
                        URL "B1_uaayazb2\xc3\xa9"
                            "e",
                        reference);
    CHECK (sb_sig_twilio_sign (TOKEN, URL, form, signature) == 0);
    CHECK_STR_AS (signature, reference, "byte-order sort");
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, URL, form, NULL, 0, reference), SB_SIG_OK,
                  "byte-order sort");
    sb_form_destroy (&form);

    //  No params: the URL alone (a GET with its query)
    s_reference_twilio (TOKEN, URL, reference);
    CHECK (sb_sig_twilio_sign (TOKEN, URL, NULL, signature) == 0);
    CHECK_STR_AS (signature, reference, "no params");
    form = sb_form_new ();
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, URL, form, NULL, 0, reference), SB_SIG_OK,
                  "empty form");
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, URL, NULL, NULL, 0, reference), SB_SIG_OK,
                  "NULL form");
    sb_form_destroy (&form);
}

static void
s_test_twilio_url_variants (void)
{
    sb_form_t *form = s_example_form ();
    const char *params = "CallSidCA1234567890ABCDECaller+14158675309Digits1234"
                         "From+14158675309To+18005551212";
    struct {
        const char *signed_url;  //  the URL the signature is over
        const char *url;         //  the URL we validate against
        int valid;
    } cases[] = {
        //  Port removed, default port added
        {"https://h.example/x?a=1", "https://h.example:8443/x?a=1", 1},
        {"https://h.example:443/x?a=1", "https://h.example/x?a=1", 1},
        {"http://h.example:80/x", "http://h.example/x", 1},
        {"HTTP://h.example:80/x", "HTTP://h.example/x", 1},    //  scheme case only picks the port
        {"https://h.example:80/x", "https://h.example/x", 0},  //  wrong default port
        {"https://h.example:443/x", "https://h.example:8443/x", 0},
        {"https://h.example", "https://h.example:443", 1},  //  only a host
        {"https://h.example:443", "https://h.example", 1},
        {"https://h.example:443?q=1", "https://h.example?q=1", 1},
        {"https://u:p@h.example:443/x", "https://u:p@h.example/x", 1},
        {"https://u:p@h.example/x", "https://u:p@h.example:1234/x", 1},
        {"https://h.example/x", "https://u:p@h.example/x", 0},  //  credentials are signed
        {"https://[::1]/x", "https://[::1]:8443/x", 1},         //  IPv6 literal
        {"https://[::1]:443/x", "https://[::1]/x", 1},
        //  No case folding
        {"https://h.example/x", "https://H.example/x", 0},
        {"https://h.example/x", "HTTPS://h.example/x", 0},
        //  Quote in the query: ' and %27 both ways; not in the path
        {"https://h.example/x?b=It%27s", "https://h.example/x?b=It's", 1},
        {"https://h.example/x?b=It's", "https://h.example/x?b=It%27s", 1},
        {"https://h.example:443/x?b=It%27s", "https://h.example/x?b=It's", 1},
        {"https://h.example/it%27s", "https://h.example/it's", 0},
        {"https://h.example/x?b=It%2527s", "https://h.example/x?b=It%27s", 0},
        {"https://h.example/x?b=It%22s", "https://h.example/x?b=It\"s", 0},
        {"https://h.example/x?b=1#It%27s", "https://h.example/x?b=1#It's", 0},
        //  Anything else in the URL is signed
        {"https://h.example/x?a=1", "https://h.example/x?a=1&b=2", 0},
        {"https://h.example/x", "https://h.example/x/", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512], signature[SB_SIG_TWILIO_SIZE];
        snprintf (text, sizeof text, "%s%s", cases[i].signed_url, params);
        s_reference_twilio (TOKEN, text, signature);
        char label[600];
        snprintf (label, sizeof label, "signed %s, validated %s", cases[i].signed_url,
                  cases[i].url);
        CHECK_RESULT (sb_sig_twilio_validate (TOKEN, cases[i].url, form, NULL, 0, signature),
                      cases[i].valid ? SB_SIG_OK : SB_SIG_MISMATCH, label);
    }
    sb_form_destroy (&form);
}

static void
s_test_twilio_json (void)
{
    const char *body = "{\"property\": \"value\", \"boolean\": true}";
    const char *hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    char url[256], signature[SB_SIG_TWILIO_SIZE];
    snprintf (url, sizeof url, URL "&bodySHA256=%s", hash);
    CHECK (sb_sig_twilio_sign (TOKEN, url, NULL, signature) == 0);
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, NULL, body, strlen (body), signature),
                  SB_SIG_OK, "json");
    //  The body must be passed: a form request (no body) whose URL has
    //  bodySHA256 is refused, so a JSON request cannot be replayed as a form
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, NULL, NULL, 0, signature), SB_SIG_BODY_HASH,
                  "json as form");
    sb_form_t *empty = sb_form_new ();
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, empty, NULL, 0, signature), SB_SIG_BODY_HASH,
                  "json as empty form");
    sb_form_destroy (&empty);
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, NULL, NULL, 5, signature), SB_SIG_BODY_HASH,
                  "json NULL body with size");
    //  Params are ignored for JSON: the signature is over the URL only
    sb_form_t *form = s_example_form ();
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, form, body, strlen (body), signature),
                  SB_SIG_OK, "json with params");
    sb_form_destroy (&form);
    //  Upper-case hex in bodySHA256 is not the hash Twilio writes
    char upper[256], upper_signature[SB_SIG_TWILIO_SIZE];
    snprintf (upper, sizeof upper, URL "&bodySHA256=%s",
              "0A1FF7634D9AB3B95DB5C9A2DFE9416E41502B283A80C7CF19632632F96E6620");
    CHECK (sb_sig_twilio_sign (TOKEN, upper, NULL, upper_signature) == 0);
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, upper, NULL, body, strlen (body), upper_signature),
                  SB_SIG_BODY_HASH, "upper-case bodySHA256");
    //  bodySHA256 twice, or a prefix of it as the key, is refused
    snprintf (url, sizeof url, URL "&bodySHA256=%s&bodySHA256=%s", hash, hash);
    CHECK (sb_sig_twilio_sign (TOKEN, url, NULL, signature) == 0);
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, NULL, body, strlen (body), signature),
                  SB_SIG_BODY_HASH, "bodySHA256 twice");
    snprintf (url, sizeof url, URL "&xbodySHA256=%s", hash);
    CHECK (sb_sig_twilio_sign (TOKEN, url, NULL, signature) == 0);
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, NULL, body, strlen (body), signature),
                  SB_SIG_BODY_HASH, "xbodySHA256");
    snprintf (url, sizeof url, URL "&bodySHA256=%s%s", hash, "00");
    CHECK (sb_sig_twilio_sign (TOKEN, url, NULL, signature) == 0);
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, NULL, body, strlen (body), signature),
                  SB_SIG_BODY_HASH, "bodySHA256 too long");
    //  An empty JSON body (non-NULL, size 0) is hashed like any other
    snprintf (url, sizeof url,
              "https://h.example/"
              "j?bodySHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK (sb_sig_twilio_sign (TOKEN, url, NULL, signature) == 0);
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, NULL, "", 0, signature), SB_SIG_OK,
                  "empty JSON body");
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, NULL, "{}", 2, signature), SB_SIG_BODY_HASH,
                  "empty JSON body changed");
    //  Body with NUL bytes and binary is hashed over every byte
    const char binary[] = {'{', 0, '}', (char) 0xff};
    unsigned char digest[32];
    unsigned int digest_size = 0;
    CHECK (EVP_Digest (binary, sizeof binary, digest, &digest_size, EVP_sha256 (), NULL) == 1);
    char hex[65];
    for (int b = 0; b < 32; b++)
        snprintf (hex + 2 * b, 3, "%02x", digest[b]);
    snprintf (url, sizeof url, "https://h.example/j?bodySHA256=%s", hex);
    CHECK (sb_sig_twilio_sign (TOKEN, url, NULL, signature) == 0);
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, NULL, binary, sizeof binary, signature),
                  SB_SIG_OK, "binary JSON body");
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, url, NULL, binary, 1, signature), SB_SIG_BODY_HASH,
                  "binary JSON body cut at NUL");
}

static void
s_test_twilio_hostile (void)
{
    sb_form_t *form = s_example_form ();
    char good[SB_SIG_TWILIO_SIZE];
    CHECK (sb_sig_twilio_sign (TOKEN, URL, form, good) == 0);
    CHECK_STR_AS (good, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "documented example");
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, URL, form, NULL, 0, good), SB_SIG_OK, "good");

    //  Missing
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, URL, form, NULL, 0, NULL), SB_SIG_MISSING, "NULL");
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, URL, form, NULL, 0, ""), SB_SIG_MISSING, "empty");

    //  Malformed: wrong length, trailing garbage, bad alphabet, no padding
    const char *malformed[] = {
        "RSOYDt4T1cUTdK1PDd93/VVr8B8=x",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8= ",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8==",
        " RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8A",
        "RSOYDt4T1cUTdK1PDd93-VVr8B8=",
        "RSOYDt4T1cUTdK1PDd93_VVr8B8=",
        "RSOYDt4T1cUTdK1PDd93/VVr8B=8",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8=\n",
        "=",
        "A",
        "sha1=RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        "AAAAAAAAAAAAAAAAAAAAAAAAAA==",                  //  base64 of 19 bytes
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAA",                  //  base64 of 21 bytes
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  //  base64 of 32 bytes
        "RSOYDt4T1cUTdK1PDd93\xc3\xa9VVr8B8=",
    };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
        CHECK_RESULT (sb_sig_twilio_validate (TOKEN, URL, form, NULL, 0, malformed[i]),
                      SB_SIG_MALFORMED, malformed[i]);
    //  A huge header is refused without reading it all
    size_t huge_size = 1 << 20;
    char *huge = (char *) malloc (huge_size + 1);
    CHECK (huge);
    if (huge) {
        memset (huge, 'A', huge_size);
        huge[huge_size] = 0;
        CHECK_RESULT (sb_sig_twilio_validate (TOKEN, URL, form, NULL, 0, huge), SB_SIG_MALFORMED,
                      "huge");
        memcpy (huge, good, 28);
        CHECK_RESULT (sb_sig_twilio_validate (TOKEN, URL, form, NULL, 0, huge), SB_SIG_MALFORMED,
                      "good + huge tail");
        free (huge);
    }
    //  Well-formed but wrong: a non-canonical spelling of the same bytes
    //  ('8' and '9' differ only in bits the padding drops) is a mismatch
    CHECK_RESULT (
        sb_sig_twilio_validate (TOKEN, URL, form, NULL, 0, "RSOYDt4T1cUTdK1PDd93/VVr8B9="),
        SB_SIG_MISMATCH, "non-canonical");
    CHECK_RESULT (
        sb_sig_twilio_validate (TOKEN, URL, form, NULL, 0, "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        SB_SIG_MISMATCH, "zeros");

    //  Tokens: empty or NULL never validate, never sign (anyone can HMAC
    //  with an empty key)
    char empty_key[SB_SIG_TWILIO_SIZE], text[512];
    snprintf (text, sizeof text, "%s%s", URL,
              "CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212");
    s_reference_twilio ("", text, empty_key);
    CHECK_RESULT (sb_sig_twilio_validate ("", URL, form, NULL, 0, empty_key), SB_SIG_MISMATCH,
                  "empty token");
    CHECK_RESULT (sb_sig_twilio_validate (NULL, URL, form, NULL, 0, empty_key), SB_SIG_MISMATCH,
                  "NULL token");
    char out[SB_SIG_TWILIO_SIZE];
    CHECK (sb_sig_twilio_sign ("", URL, form, out) == -1 && out[0] == 0);
    CHECK (sb_sig_twilio_sign (NULL, URL, form, out) == -1);
    CHECK (sb_sig_twilio_sign (TOKEN, NULL, form, out) == -1);

    //  URLs we refuse even with the exact signature of their text: no or
    //  unknown scheme, no host, bad ports, spaces or control bytes
    const char *bad_urls[] = {
        "mycompany.com/myapp.php?foo=1&bar=2",
        "//mycompany.com/x",
        "https://",
        "https:///x",
        "https://?x",
        "https://u:p@/x",
        "ftp://mycompany.com/x",
        "httpx://mycompany.com/x",
        "https:/mycompany.com/x",
        "https://mycompany.com:/x",
        "https://mycompany.com:99999/x",
        "https://mycompany.com:0/x",
        "https://mycompany.com:123456/x",
        "https://mycompany.com:12a/x",
        "https://mycompany.com:-1/x",
        "https://mycompany.com: 80/x",
        "https://my company.com/x",
        "https://mycompany.com/x\ty",
        "https://mycompany.com/x\r\nX-Evil: 1",
        "https://[::1/x",
        "https://[::1]x/x",
        "https://[::1]:/x",
        "https://mycompany.com:443:443/x",
        "",
    };
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        char signature[SB_SIG_TWILIO_SIZE];
        CHECK (sb_sig_twilio_sign (TOKEN, bad_urls[i], form, signature) == 0);
        CHECK_RESULT (sb_sig_twilio_validate (TOKEN, bad_urls[i], form, NULL, 0, signature),
                      SB_SIG_MISMATCH, bad_urls[i]);
    }
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, NULL, form, NULL, 0, good), SB_SIG_MISMATCH,
                  "NULL URL");
    //  A URL longer than 64 KiB is refused
    size_t long_size = 70000;
    char *long_url = (char *) malloc (long_size + 1);
    CHECK (long_url);
    if (long_url) {
        memset (long_url, 'a', long_size);
        memcpy (long_url, "https://h.example/", 18);
        long_url[long_size] = 0;
        char signature[SB_SIG_TWILIO_SIZE];
        CHECK (sb_sig_twilio_sign (TOKEN, long_url, NULL, signature) == 0);
        CHECK_RESULT (sb_sig_twilio_validate (TOKEN, long_url, NULL, NULL, 0, signature),
                      SB_SIG_MISMATCH, "long URL");
        free (long_url);
    }
    //  A form at SB_FORM_MAX_PAIRS pairs, all with the same key, signs fine
    sb_form_t *big = sb_form_new ();
    for (int i = 0; i < SB_FORM_MAX_PAIRS; i++) {
        char value[16];
        snprintf (value, sizeof value, "%d", i % 7);
        sb_form_add (big, "k", value);
    }
    char big_signature[SB_SIG_TWILIO_SIZE], reference[SB_SIG_TWILIO_SIZE];
    CHECK (sb_sig_twilio_sign (TOKEN, URL, big, big_signature) == 0);
    s_reference_twilio (TOKEN, URL "k0k1k2k3k4k5k6", reference);
    CHECK_STR_AS (big_signature, reference, "1000 pairs, 7 distinct");
    CHECK_RESULT (sb_sig_twilio_validate (TOKEN, URL, big, NULL, 0, big_signature), SB_SIG_OK,
                  "1000 pairs");
    sb_form_destroy (&big);
    sb_form_destroy (&form);
}

//  ---------------------------------------------------------------------------
//  Meta beyond the vectors

static void
s_test_meta_hostile (void)
{
    const char *secret = "app-secret";
    const char *body = "{\"object\":\"whatsapp_business_account\"}";
    size_t size = strlen (body);
    char good[SB_SIG_META_SIZE];
    CHECK (sb_sig_meta_sign (secret, body, size, good) == 0);
    CHECK (strlen (good) == 71 && strncmp (good, "sha256=", 7) == 0);
    CHECK_RESULT (sb_sig_meta_validate (secret, body, size, good), SB_SIG_OK, "meta good");

    CHECK_RESULT (sb_sig_meta_validate (secret, body, size, NULL), SB_SIG_MISSING, "meta NULL");
    CHECK_RESULT (sb_sig_meta_validate (secret, body, size, ""), SB_SIG_MISSING, "meta empty");

    char variant[200];
    const char *hex = good + 7;
    struct {
        const char *prefix;  //  before the hex digits
        int cut;             //  digits dropped from the end
        const char *suffix;  //  after them
    } shapes[] = {
        {"", 0, ""},                                                     //  no prefix
        {"sha256=", 1, ""},                                              //  63 digits
        {"sha256=", 0, "0"},                                             //  65 digits
        {"sha256=", 0, " "},                                             //  trailing space
        {"sha256=", 0, "\n"}, {" sha256=", 0, ""}, {"SHA256=", 0, ""},   //  the prefix is exact
        {"sha256:", 0, ""},   {"sha1=", 0, ""},    {"sha256=", 64, ""},  //  prefix only
        {"sha256==", 1, ""},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        snprintf (variant, sizeof variant, "%s%.*s%s", shapes[i].prefix, 64 - shapes[i].cut, hex,
                  shapes[i].suffix);
        CHECK_RESULT (sb_sig_meta_validate (secret, body, size, variant), SB_SIG_MALFORMED,
                      variant);
    }
    //  Non-hex digits
    snprintf (variant, sizeof variant, "%s", good);
    variant[30] = 'g';
    CHECK_RESULT (sb_sig_meta_validate (secret, body, size, variant), SB_SIG_MALFORMED, "non-hex");
    variant[30] = 0;
    CHECK_RESULT (sb_sig_meta_validate (secret, body, size, variant), SB_SIG_MALFORMED, "short");
    //  Huge header
    size_t huge_size = 1 << 20;
    char *huge = (char *) malloc (huge_size + 1);
    CHECK (huge);
    if (huge) {
        memset (huge, 'a', huge_size);
        huge[huge_size] = 0;
        memcpy (huge, good, 71);
        CHECK_RESULT (sb_sig_meta_validate (secret, body, size, huge), SB_SIG_MALFORMED,
                      "meta huge");
        free (huge);
    }
    //  Well-formed but wrong
    snprintf (variant, sizeof variant, "%s", good);
    variant[70] = variant[70] == '0' ? '1' : '0';
    CHECK_RESULT (sb_sig_meta_validate (secret, body, size, variant), SB_SIG_MISMATCH,
                  "last digit");

    //  Secrets: empty or NULL never validate nor sign
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_size = 0;
    CHECK (EVP_Q_mac (NULL, "HMAC", NULL, "SHA256", NULL, "", 0, (const unsigned char *) body, size,
                      mac, sizeof mac, &mac_size)
           && mac_size == 32);
    char empty_key[SB_SIG_META_SIZE] = "sha256=";
    for (int b = 0; b < 32; b++)
        snprintf (empty_key + 7 + 2 * b, 3, "%02x", mac[b]);
    CHECK_RESULT (sb_sig_meta_validate ("", body, size, empty_key), SB_SIG_MISMATCH,
                  "empty secret");
    CHECK_RESULT (sb_sig_meta_validate (NULL, body, size, empty_key), SB_SIG_MISMATCH,
                  "NULL secret");
    char out[SB_SIG_META_SIZE];
    CHECK (sb_sig_meta_sign ("", body, size, out) == -1 && out[0] == 0);
    CHECK (sb_sig_meta_sign (NULL, body, size, out) == -1);

    //  Bodies: NULL with a size is refused; size 0 is the empty body, whose
    //  signature differs from any other body's (an empty body correctly
    //  signed with the secret is still authentic)
    CHECK_RESULT (sb_sig_meta_validate (secret, NULL, 5, good), SB_SIG_MISMATCH, "NULL body");
    CHECK (sb_sig_meta_sign (secret, NULL, 5, out) == -1);
    CHECK_RESULT (sb_sig_meta_validate (secret, body, 0, good), SB_SIG_MISMATCH, "size 0");
    CHECK_RESULT (sb_sig_meta_validate (secret, NULL, 0, good), SB_SIG_MISMATCH, "NULL size 0");
    char empty_body[SB_SIG_META_SIZE];
    CHECK (sb_sig_meta_sign (secret, NULL, 0, empty_body) == 0);
    CHECK_RESULT (sb_sig_meta_validate (secret, "", 0, empty_body), SB_SIG_OK, "empty body signed");
    //  Every byte counts, NULs included
    const char binary[] = {'{', 0, '}'};
    char binary_signature[SB_SIG_META_SIZE];
    CHECK (sb_sig_meta_sign (secret, binary, sizeof binary, binary_signature) == 0);
    CHECK_RESULT (sb_sig_meta_validate (secret, binary, sizeof binary, binary_signature), SB_SIG_OK,
                  "binary");
    CHECK_RESULT (sb_sig_meta_validate (secret, binary, 1, binary_signature), SB_SIG_MISMATCH,
                  "binary cut");
}

static void
s_test_reasons (void)
{
    CHECK_STR_AS (sb_sig_reason (SB_SIG_OK), "ok", "reason");
    CHECK_STR_AS (sb_sig_reason (SB_SIG_MISSING), "missing", "reason");
    CHECK_STR_AS (sb_sig_reason (SB_SIG_MALFORMED), "malformed", "reason");
    CHECK_STR_AS (sb_sig_reason (SB_SIG_MISMATCH), "mismatch", "reason");
    CHECK_STR_AS (sb_sig_reason (SB_SIG_BODY_HASH), "body_hash", "reason");
    CHECK_STR_AS (sb_sig_reason (SB_SIG_BAD_SETTINGS), "bad_settings", "reason");
    CHECK_STR_AS (sb_sig_reason (SB_SIG_UNKNOWN_KEY), "unknown_key", "reason");
    CHECK_STR_AS (sb_sig_reason (SB_SIG_UNKNOWN_ALGORITHM), "unknown_algorithm", "reason");
}

//  ---------------------------------------------------------------------------
//  Shared keys: twilio-sharedkey-vectors.json, the key list, the settings header

//  The result named reason.
static sb_sig_result_t
s_result_named (const char *reason)
{
    for (int r = 0; r < SB_SIG_COUNT; r++)
        if (reason && strcmp (sb_sig_reason ((sb_sig_result_t) r), reason) == 0)
            return (sb_sig_result_t) r;
    fprintf (stderr, "%s:%d: unknown reason %s\n", __FILE__, __LINE__, reason);
    s_failures++;
    return SB_SIG_OK;
}

static void
s_test_sharedkey_vectors (void)
{
    json_error_t error;
    json_t *root = json_load_file ("conformance/twilio-sharedkey-vectors.json", 0, &error);
    if (!root) {
        fprintf (stderr, "%s:%d: cannot load twilio-sharedkey-vectors.json: %s (run from tests/)\n",
                 __FILE__, __LINE__, error.text);
        s_failures++;
        return;
    }
    //  The keys as TWILIO_WEBHOOK_SHARED_KEYS would hold them
    char text[512] = "";
    const char *id;
    json_t *secret;
    json_object_foreach (json_object_get (root, "keys"), id, secret) {
        size_t used = strlen (text);
        snprintf (text + used, sizeof text - used, "%s%s=%s", used ? "," : "", id,
                  json_string_value (secret));
    }
    const char *problem = NULL;
    sb_sig_keys_t *keys = sb_sig_keys_new (text, &problem);
    CHECK (keys && sb_sig_keys_size (keys) == 2 && !problem);
    const char *token = json_string_value (json_object_get (root, "auth_token"));
    json_t *vectors = json_object_get (root, "vectors");
    CHECK (json_array_size (vectors) == 14);
    for (size_t i = 0; i < json_array_size (vectors); i++) {
        json_t *vector = json_array_get (vectors, i);
        const char *name = json_string_value (json_object_get (vector, "name"));
        const char *url = json_string_value (json_object_get (vector, "url"));
        const char *settings = json_string_value (json_object_get (vector, "settings_header"));
        const char *signature = json_string_value (json_object_get (vector, "signature"));
        const char *signed_string = json_string_value (json_object_get (vector, "signed_string"));
        json_t *body = json_object_get (vector, "body");
        sb_form_t *params = s_vector_params (vector);
        sb_sig_result_t want =
            s_result_named (json_string_value (json_object_get (vector, "expect")));
        sb_sig_result_t got =
            json_is_string (body)
                ? sb_sig_twilio_check (token, keys, settings, url, NULL, json_string_value (body),
                                       json_string_length (body), signature)
                : sb_sig_twilio_check (token, keys, settings, url, params, NULL, 0, signature);
        CHECK_RESULT (got, want, name);
        //  What we sign for the valid ones is the vector's signature, and
        //  the signed string alone (no params) signs to it as well.
        const char *key = NULL;
        sb_sig_algorithm_t algorithm = SB_SIG_HMAC_SHA1;
        if (want == SB_SIG_OK && settings
            && sb_sig_twilio_settings (settings, keys, &key, &algorithm) == SB_SIG_OK) {
            char again[SB_SIG_TWILIO256_SIZE];
            CHECK (sb_sig_twilio_sign_with (key, algorithm, signed_string, NULL, again) == 0);
            CHECK_STR_AS (again, signature, name);
        }
        //  Without the keys a shared-key request is never accepted
        if (settings)
            CHECK_RESULT (
                sb_sig_twilio_check (token, NULL, settings, url, params, NULL, 0, signature)
                    == SB_SIG_OK,
                0, name);
        sb_form_destroy (&params);
    }
    sb_sig_keys_destroy (&keys);
    CHECK (keys == NULL);
    json_decref (root);
}

static void
s_test_sharedkey_list (void)
{
    const char *problem = NULL;
    //  Spaces around pairs dropped, '=' in a secret kept, order kept
    sb_sig_keys_t *keys = sb_sig_keys_new (" k1=abc== , k2=x", &problem);
    CHECK (keys && sb_sig_keys_size (keys) == 2);
    const char *secret = NULL;
    sb_sig_algorithm_t algorithm;
    CHECK_RESULT (sb_sig_twilio_settings ("key=k1,algorithm=HMAC_SHA1", keys, &secret, &algorithm),
                  SB_SIG_OK, "k1");
    CHECK (secret && strcmp (secret, "abc==") == 0 && algorithm == SB_SIG_HMAC_SHA1);
    //  "k2 " is not an id: spaces inside a pair are not trimmed, so it is refused
    sb_sig_keys_destroy (&keys);
    CHECK (!sb_sig_keys_new ("k2 = x", &problem) && strstr (problem, "space"));
    sb_sig_keys_destroy (&keys);  //  NULL: nothing

    struct {
        const char *text;
        const char *problem;
    } bad[] = {
        {"", "empty pair"},          {"k1=a,", "empty pair"},    {"k1=a,,k2=b", "empty pair"},
        {"k1", "without '='"},       {"k1=a,k2", "without '='"}, {"=secret", "empty key id"},
        {"k1=", "empty secret"},     {"k1=  ", "empty secret"},  {"k1=a,k1=b", "given twice"},
        {"k\x01=a", "control byte"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        problem = NULL;
        sb_sig_keys_t *none = sb_sig_keys_new (bad[i].text, &problem);
        if (none || !problem || !strstr (problem, bad[i].problem)) {
            fprintf (stderr, "%s:%d: keys \"%s\": got %s, want %s\n", __FILE__, __LINE__,
                     bad[i].text, problem ? problem : "(accepted)", bad[i].problem);
            s_failures++;
        }
        sb_sig_keys_destroy (&none);
    }
    //  At most SB_SIG_KEYS_MAX
    char many[2048] = "";
    for (int i = 0; i <= SB_SIG_KEYS_MAX; i++) {
        size_t used = strlen (many);
        snprintf (many + used, sizeof many - used, "%sk%d=s", i ? "," : "", i);
        keys = sb_sig_keys_new (many, &problem);
        CHECK (i < SB_SIG_KEYS_MAX ? keys != NULL : keys == NULL);
        sb_sig_keys_destroy (&keys);
    }
    CHECK (strstr (problem, "more than 32"));
}

static void
s_test_sharedkey_settings (void)
{
    sb_sig_keys_t *keys = sb_sig_keys_new ("old=one,new=two", NULL);
    const char *secret = NULL;
    sb_sig_algorithm_t algorithm;
    struct {
        const char *header;
        sb_sig_result_t want;
        const char *secret;
    } cases[] = {
        {"key=new,algorithm=HMAC_SHA256", SB_SIG_OK, "two"},
        {"algorithm=HMAC_SHA256,key=old", SB_SIG_OK, "one"},
        {"key=new, algorithm=HMAC_SHA256, version=2", SB_SIG_OK, "two"},  //  unknown part skipped
        {"key = old , algorithm = hmac_sha1", SB_SIG_OK, "one"},
        {"key=gone,algorithm=HMAC_SHA256", SB_SIG_UNKNOWN_KEY, NULL},
        {"key=NEW,algorithm=HMAC_SHA256", SB_SIG_UNKNOWN_KEY, NULL},  //  ids are exact
        {"key=ne,algorithm=HMAC_SHA256", SB_SIG_UNKNOWN_KEY, NULL},   //  no prefix match
        {"key=new,algorithm=HMAC_SHA512", SB_SIG_UNKNOWN_ALGORITHM, NULL},
        {"key=new,algorithm=HMAC_SHA2566", SB_SIG_UNKNOWN_ALGORITHM, NULL},
        {"key=new,algorithm=", SB_SIG_BAD_SETTINGS, NULL},
        {"key=new", SB_SIG_BAD_SETTINGS, NULL},
        {"algorithm=HMAC_SHA256", SB_SIG_BAD_SETTINGS, NULL},
        {"", SB_SIG_BAD_SETTINGS, NULL},
        {",", SB_SIG_BAD_SETTINGS, NULL},
        {"key=new,,algorithm=HMAC_SHA256", SB_SIG_BAD_SETTINGS, NULL},
        {"key=new;algorithm=HMAC_SHA256", SB_SIG_BAD_SETTINGS, NULL},
        {"key=new,algorithm=HMAC_SHA256,algorithm=HMAC_SHA1", SB_SIG_BAD_SETTINGS, NULL},
        {"HMAC_SHA256", SB_SIG_BAD_SETTINGS, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        secret = NULL;
        CHECK_RESULT (sb_sig_twilio_settings (cases[i].header, keys, &secret, &algorithm),
                      cases[i].want, cases[i].header);
        if (cases[i].secret)
            CHECK (secret && strcmp (secret, cases[i].secret) == 0);
    }
    //  A header past 1 KiB is not read
    char huge[1100];
    memset (huge, ' ', sizeof huge - 1);
    huge[sizeof huge - 1] = 0;
    memcpy (huge, "key=new,algorithm=HMAC_SHA256", 29);
    CHECK_RESULT (sb_sig_twilio_settings (huge, keys, &secret, &algorithm), SB_SIG_BAD_SETTINGS,
                  "huge");
    CHECK_RESULT (sb_sig_twilio_settings (NULL, keys, &secret, &algorithm), SB_SIG_BAD_SETTINGS,
                  "NULL");
    //  The settings are read before the signature: an unknown key is
    //  refused as such whatever the signature says
    sb_form_t *form = s_example_form ();
    CHECK_RESULT (sb_sig_twilio_check (TOKEN, keys, "key=gone,algorithm=HMAC_SHA256", URL, form,
                                       NULL, 0, NULL),
                  SB_SIG_UNKNOWN_KEY, "unknown key, no signature");
    //  A SHA-256 signature of the auth token is not a classic signature
    char sha256[SB_SIG_TWILIO256_SIZE];
    CHECK (sb_sig_twilio_sign_with (TOKEN, SB_SIG_HMAC_SHA256, URL, form, sha256) == 0);
    CHECK (strlen (sha256) == 44);
    CHECK_RESULT (sb_sig_twilio_check (TOKEN, keys, NULL, URL, form, NULL, 0, sha256),
                  SB_SIG_MALFORMED, "sha256 without settings");
    //  And a classic signature passes with the header absent, as before
    char classic[SB_SIG_TWILIO_SIZE];
    CHECK (sb_sig_twilio_sign (TOKEN, URL, form, classic) == 0);
    CHECK_RESULT (sb_sig_twilio_check (TOKEN, keys, NULL, URL, form, NULL, 0, classic), SB_SIG_OK,
                  "classic");
    CHECK_RESULT (sb_sig_twilio_check (TOKEN, keys, "key=new,algorithm=HMAC_SHA1", URL, form, NULL,
                                       0, classic),
                  SB_SIG_MISMATCH, "classic signature under a shared key's settings");
    sb_form_destroy (&form);
    sb_sig_keys_destroy (&keys);
}

//  Meta's header for body under secret, computed apart from sb_sig (one-shot
//  HMAC()), as "sha256=" + lower-case hex.
static void
s_meta_expected (const char *secret, const char *body, char out[SB_SIG_META_SIZE])
{
    unsigned char mac[32];
    unsigned int size = 0;
    HMAC (EVP_sha256 (), secret, (int) strlen (secret), (const unsigned char *) body, strlen (body),
          mac, &size);
    strcpy (out, "sha256=");
    for (unsigned i = 0; i < size; i++)
        snprintf (out + 7 + 2 * i, 3, "%02x", mac[i]);
}

//  Keyed contexts are reused (sb_sig.c): a context never answers for
//  another key, whatever the order, the digest, or a shared prefix.
static void
s_test_keyed_reuse (void)
{
    const char *secrets[] = {
        "alpha", "alphab", "beta",
        "a-key-longer-than-one-sha256-block-of-64-bytes-so-hmac-hashes-it-first"};
    const char *body = "{\"object\":\"whatsapp_business_account\"}";
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
            char expected[SB_SIG_META_SIZE], signed_[SB_SIG_META_SIZE];
            s_meta_expected (secrets[i], body, expected);
            CHECK (sb_sig_meta_sign (secrets[i], body, strlen (body), signed_) == 0);
            CHECK (strcmp (signed_, expected) == 0);
            for (size_t j = 0; j < sizeof secrets / sizeof secrets[0]; j++)
                CHECK (sb_sig_meta_validate (secrets[j], body, strlen (body), expected)
                       == (i == j ? SB_SIG_OK : SB_SIG_MISMATCH));
        }
    //  The same key under the other digest: Twilio's SHA-1 is unaffected
    //  by a SHA-256 context of that key, and the other way round.
    sb_form_t *form = sb_form_new ();
    sb_form_add (form, "Body", "hi");
    const char *url = "https://example.com/twilio/messages";
    for (int round = 0; round < 2; round++) {
        char twilio_a[SB_SIG_TWILIO_SIZE], twilio_b[SB_SIG_TWILIO_SIZE];
        CHECK (sb_sig_twilio_sign ("alpha", url, form, twilio_a) == 0);
        CHECK (sb_sig_twilio_sign ("beta", url, form, twilio_b) == 0);
        CHECK (strcmp (twilio_a, twilio_b) != 0 && strlen (twilio_a) == 28);
        CHECK (sb_sig_twilio_validate ("alpha", url, form, NULL, 0, twilio_a) == SB_SIG_OK);
        CHECK (sb_sig_twilio_validate ("beta", url, form, NULL, 0, twilio_a) == SB_SIG_MISMATCH);
        char meta[SB_SIG_META_SIZE];
        CHECK (sb_sig_meta_sign ("alpha", body, strlen (body), meta) == 0);
        CHECK (sb_sig_meta_validate ("alpha", body, strlen (body), meta) == SB_SIG_OK);
    }
    sb_form_destroy (&form);
}

#define S_THREADS 8
#define S_ROUNDS 2000

//  One thread's share of s_test_threads: returns the failures it saw.
static void *
s_hammer (void *arg)
{
    size_t id = (size_t) arg;
    const char *secrets[] = {"first-secret", "second-secret"};
    char body[64];
    snprintf (body, sizeof body, "{\"thread\":%zu}", id);
    char expected[2][SB_SIG_META_SIZE];
    for (int k = 0; k < 2; k++)
        s_meta_expected (secrets[k], body, expected[k]);
    size_t failures = 0;
    for (size_t round = 0; round < S_ROUNDS; round++) {
        int k = (int) ((round + id) % 2);
        if (sb_sig_meta_validate (secrets[k], body, strlen (body), expected[k]) != SB_SIG_OK)
            failures++;
        if (sb_sig_meta_validate (secrets[!k], body, strlen (body), expected[k]) != SB_SIG_MISMATCH)
            failures++;
    }
    return (void *) failures;
}

//  Many threads validating with two keys at once: every answer right.
static void
s_test_threads (void)
{
    pthread_t threads[S_THREADS];
    for (size_t i = 0; i < S_THREADS; i++)
        CHECK (pthread_create (&threads[i], NULL, s_hammer, (void *) i) == 0);
    for (size_t i = 0; i < S_THREADS; i++) {
        void *failures = NULL;
        CHECK (pthread_join (threads[i], &failures) == 0);
        CHECK (failures == NULL);
    }
}

int
main (void)
{
    //  The refusals below that log (signing with an empty key) are expected
    sb_log_init ("test", SB_LOG_OFF);
    s_test_reasons ();
    s_test_twilio_vectors ();
    s_test_sharedkey_vectors ();
    s_test_sharedkey_list ();
    s_test_sharedkey_settings ();
    s_test_twilio_forms ();
    s_test_meta_vectors ();
    s_test_twilio_sorting ();
    s_test_twilio_url_variants ();
    s_test_twilio_json ();
    s_test_twilio_hostile ();
    s_test_meta_hostile ();
    s_test_keyed_reuse ();
    s_test_threads ();
    if (s_failures) {
        fprintf (stderr, "test_sb_sig: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}

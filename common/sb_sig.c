/*  sb_sig: the providers' webhook signatures (Twilio, Meta).

    Twilio. The signed string is the URL followed by, for each key in byte
    order (strcmp) and each of its distinct values in byte order, key + value.
    We never build that string: the HMAC is fed piece by piece, so the URL
    variants below cost no copies. A validation tries, in this order:
      - the URL verbatim, and the URL with its port removed (when it has one)
        or with the scheme's default port added (:443 https, :80 http; when
        it has none). All official SDKs accept both; Twilio signs either.
      - each of those with the query's ' written %27 (how WHATWG URL parsers,
        and so Twilio's signer, re-encode it) and with %27 written ' (how a
        legacy querystring re-encoding writes it). twilio-node accepts both.
        Only this one character is toggled, and only in the query: a full
        decode and re-encode would map many different URLs onto one.
    There is no case folding: the C# SDK's vectors show that a host written
    MyCompany.com is signed as written, and that the lower-cased form must not
    validate it (twilio-node lower-cases only because Node's URL class does).
    The URL must be http(s)://host[:port]... with a port in 1..65535, no
    spaces or control bytes, at most S_URL_MAX bytes: anything else is refused.

    JSON bodies. When a body is given (params NULL), Twilio signs the URL
    alone and the URL carries bodySHA256 = lower-case hex SHA-256 of the body:
    the signature must match and so must the hash (constant time), else
    SB_SIG_BODY_HASH. A URL with bodySHA256 and no body (a form request) is
    refused too: otherwise a captured JSON request could be replayed as an
    empty form that skips the body check.

    Shared keys. X-Twilio-Webhooks-Signature-Settings names the key and the
    algorithm; only the HMAC changes (twilio-node's
    examples/WebhookSignatureValidation.md: "The signed string is still the
    full URL followed by the sorted POST parameters"), so the URL variants
    and the body hash above apply as they are; a SHA-256 signature is the
    base64 of 32 bytes (44 characters). The header is read first: a request
    naming a key we do not hold, or an algorithm we do not know, is refused
    as such (its own 403 reason) before any HMAC. Without the header the
    auth token and SHA-1 check it, as before. The key list is parsed once,
    at start (sb_sig_keys_new), and held read-only: the workers share it.

    Meta. "sha256=" + 64 hex digits of HMAC-SHA256 over the raw body. The hex
    digits are decoded and the 32 bytes compared, so upper-case hex is
    accepted: the spelling of the digest carries no secret, and refusing it
    would not make a forgery any harder. The "sha256=" prefix is exact.

    An empty token or app secret never validates anything, nor signs: with an
    empty key anyone can compute the HMAC.
*/
#include "sb_sig.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "sb_log.h"
#include "sb_scratch.h"
#include "sb_text.h"

#define S_URL_MAX 65536         //  longest URL we sign or validate
#define S_TWILIO_SIG_LEN 28     //  base64 of a 20-byte SHA-1 HMAC
#define S_TWILIO_SIG256_LEN 44  //  base64 of a 32-byte SHA-256 HMAC
#define S_SETTINGS_MAX 1024     //  longest X-Twilio-Webhooks-Signature-Settings read
#define S_META_PREFIX "sha256="
#define S_META_PREFIX_LEN 7
#define S_META_SIG_LEN 71  //  prefix + 64 hex digits

const char *
sb_sig_reason (sb_sig_result_t result)
{
    switch (result) {
        case SB_SIG_OK: return "ok";
        case SB_SIG_MISSING: return "missing";
        case SB_SIG_MALFORMED: return "malformed";
        case SB_SIG_MISMATCH: return "mismatch";
        case SB_SIG_BODY_HASH: return "body_hash";
        case SB_SIG_BAD_SETTINGS: return "bad_settings";
        case SB_SIG_UNKNOWN_KEY: return "unknown_key";
        case SB_SIG_UNKNOWN_ALGORITHM: return "unknown_algorithm";
    }
    return "unknown";
}

//  ---------------------------------------------------------------------------
//  HMAC through OpenSSL 3 EVP_MAC, keyed contexts reused
//
//  Setting up an HMAC from nothing costs two fetches (the MAC and its
//  digest, lookups in OpenSSL's shared method store), a context and about
//  a dozen allocations: more than hashing a webhook. So the MAC is fetched
//  once, and a context keyed for a (digest, key) pair is kept in a small
//  pool after use: the next computation with that key takes it back and
//  restarts it with EVP_MAC_init and no key, which OpenSSL defines as
//  "keep the key". The pool holds at most as many contexts as ever ran at
//  once (bounded by S_POOL_MAX), each with its own copy of its key,
//  cleansed when freed. A mutex guards the list only, never a computation.

#define S_POOL_MAX 64  //  most idle keyed contexts kept

//  A context keyed for one (digest, key), idle in the pool or in use.
typedef struct s_keyed_t {
    struct s_keyed_t *next;  //  next idle context (in the pool)
    EVP_MAC_CTX *ctx;        //  keyed HMAC context
    const char *digest;      //  "SHA1" or "SHA256" (a string literal)
    size_t key_size;         //  bytes of key
    unsigned char key[];     //  the key it was keyed with
} s_keyed_t;

static pthread_once_t s_fetch_once = PTHREAD_ONCE_INIT;
static EVP_MAC *s_mac = NULL;    //  HMAC, fetched once (NULL: unavailable)
static EVP_MD *s_sha256 = NULL;  //  SHA-256 for bodySHA256, fetched once (NULL: unavailable)
static pthread_mutex_t s_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static s_keyed_t *s_pool = NULL;  //  idle keyed contexts, most recent first
static size_t s_pool_size = 0;    //  how many

//  The algorithms, looked up in OpenSSL's method store once per process.
static void
s_fetch (void)
{
    s_mac = EVP_MAC_fetch (NULL, "HMAC", NULL);
    s_sha256 = EVP_MD_fetch (NULL, "SHA256", NULL);
}

static void
s_keyed_free (s_keyed_t *keyed)
{
    EVP_MAC_CTX_free (keyed->ctx);
    OPENSSL_clear_free (keyed, sizeof *keyed + keyed->key_size);
}

//  A new context keyed for digest and key. NULL (logged) on failure.
static s_keyed_t *
s_keyed_new (const char *digest, const char *key, size_t key_size)
{
    pthread_once (&s_fetch_once, s_fetch);
    if (!s_mac) {
        sb_error ("sig", "OpenSSL HMAC unavailable");
        return NULL;
    }
    s_keyed_t *keyed = (s_keyed_t *) OPENSSL_zalloc (sizeof *keyed + key_size);
    if (!keyed) {
        sb_error ("sig", "out of memory keying an HMAC");
        return NULL;
    }
    keyed->digest = digest;
    keyed->key_size = key_size;
    memcpy (keyed->key, key, key_size);
    keyed->ctx = EVP_MAC_CTX_new (s_mac);
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string (OSSL_MAC_PARAM_DIGEST, (char *) digest, 0);
    params[1] = OSSL_PARAM_construct_end ();
    if (!keyed->ctx
        || EVP_MAC_init (keyed->ctx, (const unsigned char *) key, key_size, params) != 1) {
        sb_error ("sig", "OpenSSL HMAC init failed digest=%s", digest);
        s_keyed_free (keyed);
        return NULL;
    }
    return keyed;
}

//  One HMAC computation in progress.
typedef struct {
    s_keyed_t *keyed;  //  the keyed context, taken from the pool
} s_hmac_t;

//  Take a context keyed for digest ("SHA1", "SHA256": a string literal) and key
//  from the pool, or key a new one.
static int
s_hmac_open (s_hmac_t *self, const char *digest, const char *key)
{
    size_t key_size = strlen (key);
    s_keyed_t *found = NULL;
    pthread_mutex_lock (&s_pool_lock);
    for (s_keyed_t **link = &s_pool; *link; link = &(*link)->next) {
        s_keyed_t *keyed = *link;
        if (strcmp (keyed->digest, digest) == 0 && keyed->key_size == key_size
            && CRYPTO_memcmp (keyed->key, key, key_size) == 0) {
            *link = keyed->next;
            s_pool_size--;
            found = keyed;
            break;
        }
    }
    pthread_mutex_unlock (&s_pool_lock);
    if (!found)
        found = s_keyed_new (digest, key, key_size);
    self->keyed = found;
    return found ? 0 : -1;
}

//  Give the context back to the pool (or free it when the pool is full).
static void
s_hmac_close (s_hmac_t *self)
{
    s_keyed_t *keyed = self->keyed;
    self->keyed = NULL;
    if (!keyed)
        return;
    pthread_mutex_lock (&s_pool_lock);
    if (s_pool_size < S_POOL_MAX) {
        keyed->next = s_pool;
        s_pool = keyed;
        s_pool_size++;
        keyed = NULL;
    }
    pthread_mutex_unlock (&s_pool_lock);
    if (keyed)
        s_keyed_free (keyed);
}

//  Start (or restart) a computation with the key.
static int
s_hmac_begin (s_hmac_t *self)
{
    if (EVP_MAC_init (self->keyed->ctx, NULL, 0, NULL) != 1) {
        sb_error ("sig", "OpenSSL HMAC init failed digest=%s", self->keyed->digest);
        return -1;
    }
    return 0;
}

static int
s_hmac_update (s_hmac_t *self, const void *data, size_t size)
{
    if (size == 0)
        return 0;
    return EVP_MAC_update (self->keyed->ctx, (const unsigned char *) data, size) == 1 ? 0 : -1;
}

//  Finish into out, which holds max bytes. Returns the MAC size, or -1.
static int
s_hmac_end (s_hmac_t *self, unsigned char *out, size_t max)
{
    size_t size = 0;
    if (EVP_MAC_final (self->keyed->ctx, out, &size, max) != 1) {
        sb_error ("sig", "OpenSSL HMAC final failed digest=%s", self->keyed->digest);
        return -1;
    }
    return (int) size;
}

//  ---------------------------------------------------------------------------
//  Twilio

//  One key/value pair of the params, borrowed from the form.
typedef struct {
    const char *key;    //  parameter name
    const char *value;  //  one of its values
} s_param_t;

static int
s_param_compare (const void *a, const void *b)
{
    const s_param_t *pa = (const s_param_t *) a;
    const s_param_t *pb = (const s_param_t *) b;
    int rc = strcmp (pa->key, pb->key);
    return rc ? rc : strcmp (pa->value, pb->value);
}

//  The form's pairs sorted by key then value, exact duplicates dropped.
//  Sets *count; returns NULL with *count 0 for an empty or NULL form, and
//  NULL with *count 1 when out of memory. Caller frees with sb_scratch_free.
static s_param_t *
s_params_sorted (const sb_form_t *form, size_t *count)
{
    size_t size = sb_form_size (form);
    *count = 0;
    if (size == 0)
        return NULL;
    s_param_t *params = (s_param_t *) sb_scratch_alloc (size * sizeof (s_param_t));
    if (!params) {
        sb_error ("sig", "out of memory sorting params count=%zu", size);
        *count = 1;
        return NULL;
    }
    for (size_t i = 0; i < size; i++) {
        params[i].key = sb_form_key (form, i);
        params[i].value = sb_form_value (form, i);
    }
    qsort (params, size, sizeof (s_param_t), s_param_compare);
    size_t kept = 1;
    for (size_t i = 1; i < size; i++)
        if (s_param_compare (&params[i], &params[kept - 1]) != 0)
            params[kept++] = params[i];
    *count = kept;
    return params;
}

//  Where the parts of a URL are, as offsets into it.
typedef struct {
    const char *text;  //  the URL (borrowed)
    size_t size;       //  its length
    size_t host_end;   //  end of the host: where a port would start
    size_t port_end;   //  end of ":port" (== host_end when there is none)
    size_t query;      //  first byte of the query, after '?' (size if none)
    size_t query_end;  //  end of the query: '#' or size
    const char *port;  //  the scheme's default port, ":443" or ":80"
} s_url_t;

static int
s_is_alpha (unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
s_is_digit (unsigned char c)
{
    return c >= '0' && c <= '9';
}

//  Split an absolute http(s) URL. 0, or -1 when it is not one we accept.
static int
s_url_parse (s_url_t *self, const char *url)
{
    memset (self, 0, sizeof *self);
    if (!url)
        return -1;
    self->text = url;
    self->size = strnlen (url, S_URL_MAX + 1);
    if (self->size > S_URL_MAX)
        return -1;
    for (size_t i = 0; i < self->size; i++) {
        unsigned char c = (unsigned char) url[i];
        if (c <= 0x20 || c == 0x7f)
            return -1;
    }
    //  Scheme, compared without case only to choose the default port
    const char *colon = strstr (url, "://");
    if (!colon)
        return -1;
    size_t scheme = (size_t) (colon - url);
    if (scheme == 5 && strncasecmp (url, "https", 5) == 0)
        self->port = ":443";
    else if (scheme == 4 && strncasecmp (url, "http", 4) == 0)
        self->port = ":80";
    else
        return -1;

    //  Authority: [userinfo@]host[:port], up to '/', '?' or '#'
    size_t start = scheme + 3;
    size_t end = start + strcspn (url + start, "/?#");
    size_t host = start;
    for (size_t i = start; i < end; i++)
        if (url[i] == '@')
            host = i + 1;
    size_t host_end;
    if (host < end && url[host] == '[') {
        const char *bracket = (const char *) memchr (url + host, ']', end - host);
        if (!bracket)
            return -1;
        host_end = (size_t) (bracket - url) + 1;
    }
    else {
        const char *port = (const char *) memchr (url + host, ':', end - host);
        host_end = port ? (size_t) (port - url) : end;
    }
    if (host_end == host)
        return -1;  //  no host
    self->host_end = host_end;
    self->port_end = host_end;
    if (host_end < end) {
        if (url[host_end] != ':')
            return -1;  //  "[::1]x"
        size_t digits = end - host_end - 1;
        if (digits < 1 || digits > 5)
            return -1;  //  ":" or ":123456"
        unsigned long value = 0;
        for (size_t i = host_end + 1; i < end; i++) {
            if (!s_is_digit ((unsigned char) url[i]))
                return -1;
            value = value * 10 + (unsigned long) (url[i] - '0');
        }
        if (value < 1 || value > 65535)
            return -1;
        self->port_end = end;
    }
    //  Query and fragment
    const char *hash = strchr (url + end, '#');
    self->query_end = hash ? (size_t) (hash - url) : self->size;
    const char *question = (const char *) memchr (url + end, '?', self->query_end - end);
    self->query = question ? (size_t) (question - url) + 1 : self->query_end;
    return 0;
}

//  How the query's quote is written in a URL variant.
typedef enum {
    S_QUOTE_AS_IS,    //  verbatim
    S_QUOTE_ESCAPED,  //  ' written %27
    S_QUOTE_PLAIN,    //  %27 written '
} s_quote_t;

//  True when the query holds "%27"
static int
s_query_has_escaped_quote (const s_url_t *url)
{
    for (size_t i = url->query; i + 3 <= url->query_end; i++)
        if (memcmp (url->text + i, "%27", 3) == 0)
            return 1;
    return 0;
}

//  Feed the query with the quote written as asked.
static int
s_feed_query (s_hmac_t *hmac, const s_url_t *url, s_quote_t quote)
{
    const char *text = url->text;
    size_t run = url->query;  //  start of bytes not fed yet
    size_t i = url->query;
    while (i < url->query_end) {
        if (quote == S_QUOTE_ESCAPED && text[i] == '\'') {
            if (s_hmac_update (hmac, text + run, i - run) || s_hmac_update (hmac, "%27", 3))
                return -1;
            run = ++i;
        }
        else if (quote == S_QUOTE_PLAIN && i + 3 <= url->query_end
                 && memcmp (text + i, "%27", 3) == 0) {
            if (s_hmac_update (hmac, text + run, i - run) || s_hmac_update (hmac, "'", 1))
                return -1;
            i += 3;
            run = i;
        }
        else
            i++;
    }
    return s_hmac_update (hmac, text + run, url->query_end - run);
}

//  Feed one variant of the URL: port as given (toggle_port 0) or toggled
//  (removed when present, default added when absent), quote as asked.
static int
s_feed_url (s_hmac_t *hmac, const s_url_t *url, int toggle_port, s_quote_t quote)
{
    const char *text = url->text;
    int rc = 0;
    if (toggle_port) {
        rc |= s_hmac_update (hmac, text, url->host_end);
        if (url->port_end == url->host_end)
            rc |= s_hmac_update (hmac, url->port, strlen (url->port));
    }
    else
        rc |= s_hmac_update (hmac, text, url->port_end);
    rc |= s_hmac_update (hmac, text + url->port_end, url->query - url->port_end);
    if (quote == S_QUOTE_AS_IS)
        rc |= s_hmac_update (hmac, text + url->query, url->query_end - url->query);
    else
        rc |= s_feed_query (hmac, url, quote);
    rc |= s_hmac_update (hmac, text + url->query_end, url->size - url->query_end);
    return rc ? -1 : 0;
}

static int
s_feed_params (s_hmac_t *hmac, const s_param_t *params, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (s_hmac_update (hmac, params[i].key, strlen (params[i].key))
            || s_hmac_update (hmac, params[i].value, strlen (params[i].value)))
            return -1;
    return 0;
}

//  OpenSSL's name of the algorithm's digest, and its MAC size.
static const char *
s_digest (sb_sig_algorithm_t algorithm, size_t *mac_size)
{
    *mac_size = algorithm == SB_SIG_HMAC_SHA256 ? 32 : 20;
    return algorithm == SB_SIG_HMAC_SHA256 ? "SHA256" : "SHA1";
}

//  Finish the HMAC of mac_size bytes into base64 (+ NUL).
static int
s_twilio_finish (s_hmac_t *hmac, size_t mac_size, char *out)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    if (s_hmac_end (hmac, mac, sizeof mac) != (int) mac_size)
        return -1;
    sb_text_base64 (mac, mac_size, out);
    OPENSSL_cleanse (mac, sizeof mac);
    return 0;
}

int
sb_sig_twilio_sign (const char *auth_token, const char *url, const sb_form_t *params,
                    char out[SB_SIG_TWILIO_SIZE])
{
    if (!out)
        return -1;
    char full[SB_SIG_TWILIO256_SIZE];
    int rc = sb_sig_twilio_sign_with (auth_token, SB_SIG_HMAC_SHA1, url, params, full);
    memcpy (out, full, SB_SIG_TWILIO_SIZE);  //  28 characters and the NUL, or ""
    return rc;
}

int
sb_sig_twilio_sign_with (const char *key, sb_sig_algorithm_t algorithm, const char *url,
                         const sb_form_t *params, char out[SB_SIG_TWILIO256_SIZE])
{
    if (!out)
        return -1;
    memset (out, 0, SB_SIG_TWILIO256_SIZE);
    if (!key || !*key || !url) {
        sb_error ("sig", "cannot sign: empty key or no URL");
        return -1;
    }
    size_t mac_size;
    const char *digest = s_digest (algorithm, &mac_size);
    size_t count;
    s_param_t *sorted = s_params_sorted (params, &count);
    if (!sorted && count)
        return -1;
    s_hmac_t hmac;
    int rc = -1;
    if (s_hmac_open (&hmac, digest, key) == 0) {
        if (s_hmac_begin (&hmac) == 0 && s_hmac_update (&hmac, url, strlen (url)) == 0
            && s_feed_params (&hmac, sorted, count) == 0
            && s_twilio_finish (&hmac, mac_size, out) == 0)
            rc = 0;
        s_hmac_close (&hmac);
    }
    sb_scratch_free (sorted);
    return rc;
}

//  True when signature has the shape of base64 of 20 bytes (27 characters
//  of the alphabet and one '=') or of 32 bytes (43 and one '='): length is
//  S_TWILIO_SIG_LEN or S_TWILIO_SIG256_LEN.
static int
s_twilio_well_formed (const char *signature, size_t length)
{
    if (strnlen (signature, length + 1) != length)
        return 0;
    for (size_t i = 0; i < length - 1; i++) {
        unsigned char c = (unsigned char) signature[i];
        if (!(s_is_alpha (c) || s_is_digit (c) || c == '+' || c == '/'))
            return 0;
    }
    return signature[length - 1] == '=';
}

//  Find the value of bodySHA256 in the query. 1 and sets value/size when
//  present once, 0 when absent, -1 when repeated.
static int
s_body_sha256 (const s_url_t *url, const char **value, size_t *size)
{
    static const char name[] = "bodySHA256=";
    const size_t name_size = sizeof name - 1;
    int found = 0;
    size_t i = url->query;
    while (i < url->query_end) {
        const char *pair = url->text + i;
        const char *amp = (const char *) memchr (pair, '&', url->query_end - i);
        size_t pair_size = amp ? (size_t) (amp - pair) : url->query_end - i;
        if (pair_size >= name_size && memcmp (pair, name, name_size) == 0) {
            if (found)
                return -1;
            found = 1;
            *value = pair + name_size;
            *size = pair_size - name_size;
        }
        i += pair_size + 1;
    }
    return found;
}

//  The check of sb_sig_twilio_validate, with any key and algorithm.
static sb_sig_result_t
s_twilio_validate (const char *key, sb_sig_algorithm_t algorithm, const char *url,
                   const sb_form_t *params, const void *body, size_t body_size,
                   const char *signature)
{
    size_t mac_size;
    const char *mac_digest = s_digest (algorithm, &mac_size);
    size_t sig_len = mac_size == 32 ? S_TWILIO_SIG256_LEN : S_TWILIO_SIG_LEN;
    if (!signature || !*signature)
        return SB_SIG_MISSING;
    if (!s_twilio_well_formed (signature, sig_len))
        return SB_SIG_MALFORMED;
    if (!key || !*key)
        return SB_SIG_MISMATCH;

    s_url_t parsed;
    if (s_url_parse (&parsed, url))
        return SB_SIG_MISMATCH;

    //  JSON (body given): bodySHA256 must be in the URL, params are not signed.
    //  Form (no body): bodySHA256 must not be in the URL.
    const char *hash_value = NULL;
    size_t hash_size = 0;
    int has_hash = s_body_sha256 (&parsed, &hash_value, &hash_size);
    int json = body != NULL || body_size > 0;
    if (json && (has_hash != 1 || body == NULL))
        return SB_SIG_BODY_HASH;
    if (!json && has_hash != 0)
        return SB_SIG_BODY_HASH;

    size_t count = 0;
    s_param_t *sorted = json ? NULL : s_params_sorted (params, &count);
    if (!sorted && count)
        return SB_SIG_MISMATCH;

    s_hmac_t hmac;
    if (s_hmac_open (&hmac, mac_digest, key)) {
        sb_scratch_free (sorted);
        return SB_SIG_MISMATCH;
    }
    s_quote_t quotes[3] = {S_QUOTE_AS_IS, S_QUOTE_AS_IS, S_QUOTE_AS_IS};
    size_t quote_count = 1;
    if (memchr (parsed.text + parsed.query, '\'', parsed.query_end - parsed.query))
        quotes[quote_count++] = S_QUOTE_ESCAPED;
    if (s_query_has_escaped_quote (&parsed))
        quotes[quote_count++] = S_QUOTE_PLAIN;

    //  At most six HMACs; stop at the first match or OpenSSL failure
    int valid = 0;
    int failed = 0;
    for (size_t variant = 0; variant < 2 * quote_count && !valid && !failed; variant++) {
        char expected[SB_SIG_TWILIO256_SIZE];
        if (s_hmac_begin (&hmac)
            || s_feed_url (&hmac, &parsed, (int) (variant & 1), quotes[variant / 2])
            || s_feed_params (&hmac, sorted, count) || s_twilio_finish (&hmac, mac_size, expected))
            failed = 1;
        else
            valid = CRYPTO_memcmp (expected, signature, sig_len) == 0;
    }
    s_hmac_close (&hmac);
    sb_scratch_free (sorted);
    if (!valid)
        return SB_SIG_MISMATCH;

    if (json) {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int digest_size = 0;
        char hex[2 * 32 + 1];
        //  Fetched once: EVP_sha256 () would look it up on every call.
        pthread_once (&s_fetch_once, s_fetch);
        if (!s_sha256 || EVP_Digest (body, body_size, digest, &digest_size, s_sha256, NULL) != 1
            || digest_size != 32) {
            sb_error ("sig", "OpenSSL SHA-256 failed");
            return SB_SIG_BODY_HASH;
        }
        sb_text_hex (digest, 32, hex);
        if (hash_size != 64 || CRYPTO_memcmp (hex, hash_value, 64) != 0)
            return SB_SIG_BODY_HASH;
    }
    return SB_SIG_OK;
}

sb_sig_result_t
sb_sig_twilio_validate (const char *auth_token, const char *url, const sb_form_t *params,
                        const void *body, size_t body_size, const char *signature)
{
    return s_twilio_validate (auth_token, SB_SIG_HMAC_SHA1, url, params, body, body_size,
                              signature);
}

//  ---------------------------------------------------------------------------
//  Twilio shared keys

//  One KEY_ID=SECRET pair.
typedef struct {
    char *id;      //  the SharedKey's id, as Twilio names it in the settings header
    char *secret;  //  its secret, the HMAC key
} s_key_t;

struct sb_sig_keys_t {
    s_key_t keys[SB_SIG_KEYS_MAX];  //  the pairs, in the order given
    size_t size;                    //  how many
};

void
sb_sig_keys_destroy (sb_sig_keys_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_sig_keys_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++) {
        free (self->keys[i].id);
        if (self->keys[i].secret)
            OPENSSL_cleanse (self->keys[i].secret, strlen (self->keys[i].secret));
        free (self->keys[i].secret);
    }
    free (self);
    *self_p = NULL;
}

size_t
sb_sig_keys_size (const sb_sig_keys_t *self)
{
    return self ? self->size : 0;
}

static bool
s_is_space (char c)
{
    return c == ' ' || c == '\t';
}

//  The comma-separated part at p, spaces around it dropped: [*start, *end),
//  *equals its first '=' (NULL when none). Returns the comma after it, or
//  NULL when it is the last part.
static const char *
s_next_part (const char *p, const char **start, const char **end, const char **equals)
{
    const char *comma = strchr (p, ',');
    *start = p;
    *end = comma ? comma : p + strlen (p);
    while (*start < *end && s_is_space (**start))
        (*start)++;
    while (*end > *start && s_is_space ((*end)[-1]))
        (*end)--;
    *equals = (const char *) memchr (*start, '=', (size_t) (*end - *start));
    return comma;
}

//  The key of this id (id_size bytes), or NULL.
static const s_key_t *
s_keys_find (const sb_sig_keys_t *self, const char *id, size_t id_size)
{
    for (size_t i = 0; self && i < self->size; i++)
        if (strlen (self->keys[i].id) == id_size && memcmp (self->keys[i].id, id, id_size) == 0)
            return &self->keys[i];
    return NULL;
}

sb_sig_keys_t *
sb_sig_keys_new (const char *text, const char **problem)
{
    const char *unused;
    if (!problem)
        problem = &unused;
    *problem = "out of memory";
    sb_sig_keys_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    const char *p = text ? text : "";
    for (;;) {
        const char *start, *end, *equals;
        const char *comma = s_next_part (p, &start, &end, &equals);
        if (start == end)
            *problem = "KEY_ID=SECRET pairs, comma-separated (an empty pair)";
        else if (!equals)
            *problem = "KEY_ID=SECRET pairs, comma-separated (a pair without '=')";
        else if (equals == start)
            *problem = "KEY_ID=SECRET pairs, comma-separated (an empty key id)";
        else if (equals + 1 == end)
            *problem = "KEY_ID=SECRET pairs, comma-separated (an empty secret)";
        else
            *problem = NULL;
        for (const char *c = start; !*problem && equals && c < equals; c++)
            if ((unsigned char) *c <= 0x20 || *c == 0x7f)
                *problem =
                    "KEY_ID=SECRET pairs, comma-separated (a key id with a space or control byte)";
        if (!*problem && s_keys_find (self, start, (size_t) (equals - start)))
            *problem = "KEY_ID=SECRET pairs, comma-separated (a key id given twice)";
        if (!*problem && self->size == SB_SIG_KEYS_MAX)
            *problem = "KEY_ID=SECRET pairs, comma-separated (more than 32 keys)";
        if (*problem)
            goto fail;
        s_key_t *key = &self->keys[self->size];
        key->id = strndup (start, (size_t) (equals - start));
        key->secret = strndup (equals + 1, (size_t) (end - equals - 1));
        self->size++;
        if (!key->id || !key->secret) {
            *problem = "out of memory";
            goto fail;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return self;
fail:
    sb_sig_keys_destroy (&self);
    return NULL;
}

//  Does [value, value + size) equal word, without case?
static bool
s_word_is (const char *value, size_t size, const char *word)
{
    return strlen (word) == size && strncasecmp (value, word, size) == 0;
}

sb_sig_result_t
sb_sig_twilio_settings (const char *header, const sb_sig_keys_t *keys, const char **secret,
                        sb_sig_algorithm_t *algorithm)
{
    if (!header || strnlen (header, S_SETTINGS_MAX + 1) > S_SETTINGS_MAX)
        return SB_SIG_BAD_SETTINGS;
    const char *key_id = NULL, *alg = NULL;
    size_t key_size = 0, alg_size = 0;
    const char *p = header;
    for (;;) {
        const char *start, *end, *equals;
        const char *comma = s_next_part (p, &start, &end, &equals);
        if (!equals)
            return SB_SIG_BAD_SETTINGS;  //  "", "key", ",,"
        const char *name_end = equals;
        while (name_end > start && s_is_space (name_end[-1]))
            name_end--;
        const char *value = equals + 1;
        while (value < end && s_is_space (*value))
            value++;
        size_t name_size = (size_t) (name_end - start), value_size = (size_t) (end - value);
        if (s_word_is (start, name_size, "key")) {
            if (key_id || value_size == 0)
                return SB_SIG_BAD_SETTINGS;
            key_id = value;
            key_size = value_size;
        }
        else if (s_word_is (start, name_size, "algorithm")) {
            if (alg || value_size == 0)
                return SB_SIG_BAD_SETTINGS;
            alg = value;
            alg_size = value_size;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    if (!key_id || !alg)
        return SB_SIG_BAD_SETTINGS;
    if (s_word_is (alg, alg_size, "HMAC_SHA256"))
        *algorithm = SB_SIG_HMAC_SHA256;
    else if (s_word_is (alg, alg_size, "HMAC_SHA1"))
        *algorithm = SB_SIG_HMAC_SHA1;
    else
        return SB_SIG_UNKNOWN_ALGORITHM;
    const s_key_t *key = s_keys_find (keys, key_id, key_size);
    if (!key)
        return SB_SIG_UNKNOWN_KEY;
    *secret = key->secret;
    return SB_SIG_OK;
}

sb_sig_result_t
sb_sig_twilio_check (const char *auth_token, const sb_sig_keys_t *keys, const char *settings,
                     const char *url, const sb_form_t *params, const void *body, size_t body_size,
                     const char *signature)
{
    if (!settings)
        return sb_sig_twilio_validate (auth_token, url, params, body, body_size, signature);
    const char *secret = NULL;
    sb_sig_algorithm_t algorithm = SB_SIG_HMAC_SHA1;
    sb_sig_result_t result = sb_sig_twilio_settings (settings, keys, &secret, &algorithm);
    if (result != SB_SIG_OK)
        return result;
    return s_twilio_validate (secret, algorithm, url, params, body, body_size, signature);
}

//  ---------------------------------------------------------------------------
//  Meta

//  HMAC-SHA256 of body into mac (32 bytes). 0 or -1.
static int
s_meta_mac (const char *app_secret, const void *body, size_t body_size, unsigned char *mac)
{
    s_hmac_t hmac;
    if (s_hmac_open (&hmac, "SHA256", app_secret))
        return -1;
    unsigned char out[EVP_MAX_MD_SIZE];
    int rc = -1;
    if (s_hmac_begin (&hmac) == 0 && s_hmac_update (&hmac, body, body_size) == 0
        && s_hmac_end (&hmac, out, sizeof out) == 32) {
        memcpy (mac, out, 32);
        rc = 0;
    }
    OPENSSL_cleanse (out, sizeof out);
    s_hmac_close (&hmac);
    return rc;
}

int
sb_sig_meta_sign (const char *app_secret, const void *body, size_t body_size,
                  char out[SB_SIG_META_SIZE])
{
    if (!out)
        return -1;
    out[0] = 0;
    if (!app_secret || !*app_secret || (!body && body_size)) {
        sb_error ("sig", "cannot sign: empty app secret or no body");
        return -1;
    }
    unsigned char mac[32];
    if (s_meta_mac (app_secret, body ? body : "", body_size, mac))
        return -1;
    memcpy (out, S_META_PREFIX, S_META_PREFIX_LEN);
    sb_text_hex (mac, 32, out + S_META_PREFIX_LEN);
    return 0;
}

sb_sig_result_t
sb_sig_meta_validate (const char *app_secret, const void *body, size_t body_size,
                      const char *header)
{
    if (!header || !*header)
        return SB_SIG_MISSING;
    if (strnlen (header, S_META_SIG_LEN + 1) != S_META_SIG_LEN
        || memcmp (header, S_META_PREFIX, S_META_PREFIX_LEN) != 0)
        return SB_SIG_MALFORMED;
    unsigned char claimed[32];
    if (sb_text_unhex (header + S_META_PREFIX_LEN, 32, claimed))
        return SB_SIG_MALFORMED;
    if (!app_secret || !*app_secret || (!body && body_size))
        return SB_SIG_MISMATCH;
    unsigned char mac[32];
    if (s_meta_mac (app_secret, body ? body : "", body_size, mac))
        return SB_SIG_MISMATCH;
    int same = CRYPTO_memcmp (mac, claimed, 32) == 0;
    OPENSSL_cleanse (mac, sizeof mac);
    return same ? SB_SIG_OK : SB_SIG_MISMATCH;
}

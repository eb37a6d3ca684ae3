/*  sb_tls: the ingress's certificate and civetweb's OpenSSL set-up.

    The certificate (with its chain) and the key are read and checked here
    at start, with OpenSSL, so a wrong path, an encrypted key or a key of
    another certificate fails naming the variable. civetweb's init_ssl
    callback then puts them on its SSL_CTX (sb_tls_setup_ctx) and raises
    the floor to TLS 1.2; civetweb itself is given no certificate file (it
    wants the key and the certificate in one file).

    DESIGN: the OpenSSL 3 repair. civetweb loads OpenSSL at run time
    (dlopen "libssl.so", then dlsym by name into a table of function
    pointers). Debian 12's libcivetweb 1.15 looks up SSL_get_peer_certificate,
    which OpenSSL 3 no longer exports (it became a macro for
    SSL_get1_peer_certificate, same semantics); the slot stays NULL and
    civetweb calls it after every TLS handshake: the process dies on its
    first HTTPS connection. s_repair_civetweb finds that one slot after
    mg_init_library has filled the table, and only when the slot is NULL,
    its neighbours hold exactly what dlsym gives for their names (so the
    table's layout is the one we think), and it lies outside RELRO, stores
    SSL_get1_peer_certificate in it. Otherwise, when the slot is NULL, TLS
    is refused at start with a message instead of a crash later. A civetweb
    or OpenSSL that does not have the problem is left alone.

    DESIGN: client certificates (mTLS, for Meta). Meta presents a client
    certificate with its intermediate, signed by its own CA since 2026
    (meta-outbound-api-ca-2025-12.pem; the DigiCert one before it expired
    on 15 April 2026), subject CN client.webhooks.fbclientcerts.com. Twilio
    presents none, nor do health probes, and they share the port. civetweb
    verifies per port only (ssl_verify_peer yes or optional), and our
    init_ssl callback replaces its set-up anyway, so the check is ours, in
    two places:
    - The handshake (sb_tls_setup_ctx): SSL_VERIFY_PEER without
      FAIL_IF_NO_PEER_CERT. Every client is asked (the CertificateRequest
      names SB_TLS_CLIENT_CA's subjects), one without a certificate goes
      on, and one that sends a certificate must chain to SB_TLS_CLIENT_CA
      (every certificate in it is a trust anchor: X509_V_FLAG_PARTIAL_CHAIN,
      so a bundle holding an intermediate CA works too) within 3 CAs (as
      Meta's nginx example, ssl_verify_depth 3), be valid now, and with
      SB_TLS_CLIENT_CN have exactly that subject CN, or its handshake fails
      and is counted (s_verify).
    - The route (sb_tls_client_ok, called by sb_http for /meta/whatsapp,
      GET and POST): the connection must have a certificate; its CN is
      checked again.
    So Meta's route requires the certificate and the Twilio routes,
    /healthz, /readyz and /metrics do not.
    The CN is the subject's commonName attribute, compared whole and byte
    for byte after conversion to UTF-8, and a subject with two CNs is
    refused: X509_NAME_get_text_by_NID returns the first CN only and
    copies it without telling an embedded NUL, and X509_check_host matches
    DNS names (SANs first, the CN only without them, wildcards,
    case-folding), which is not "the subject CN equals".

    Limits: the key must be unencrypted (no passphrase prompt at start);
    certificates are read once, at start (restart to renew). No CRL or OCSP
    check of client certificates.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  //  dladdr, RTLD_DEFAULT, dl_iterate_phdr
#endif
#include "sb_tls.h"

#include <civetweb.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <link.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netdb.h>

#include "sb_log.h"
#include "sb_time.h"

#define S_MISSING "SSL_get_peer_certificate"       //  the name civetweb 1.15 asks for
#define S_REPLACEMENT "SSL_get1_peer_certificate"  //  what OpenSSL 3 exports
#define S_NAME_MAX 64                              //  longest OpenSSL function name read
#define S_VERIFY_DEPTH 3  //  CAs above a client certificate, as in Meta's nginx example
#define S_CN_MAX 64       //  ub-common-name (RFC 5280)

//  Why a client certificate was refused: sb_http_tls_refused_total{reason}.
typedef enum { C_NO_CERTIFICATE, C_UNTRUSTED, C_EXPIRED, C_CN_MISMATCH, C_COUNT } s_refusal_t;
static const char *s_refusal_names[C_COUNT] = {"no_certificate", "untrusted", "expired",
                                               "cn_mismatch"};

struct sb_tls_t {
    X509 *cert;                          //  SB_TLS_CERT's first certificate
    STACK_OF (X509) * chain;             //  the certificates after it
    EVP_PKEY *key;                       //  SB_TLS_KEY
    STACK_OF (X509) * client_ca;         //  SB_TLS_CLIENT_CA's certificates, NULL when unset
    char *client_cn;                     //  SB_TLS_CLIENT_CN, NULL: any CN
    sb_metric_t *m_refused[C_COUNT];     //  client certificates refused, by reason
    atomic_int_fast64_t refused_log_us;  //  when the last refusal line was written
    atomic_uint_fast64_t refused_held;   //  refusal lines held back since
    bool library;                        //  mg_init_library was called: exit it
};

bool
sb_tls_wanted (const sb_config_t *config)
{
    return sb_config_has (config, SB_CFG_SB_TLS_CERT) || sb_config_has (config, SB_CFG_SB_TLS_KEY)
           || sb_config_has (config, SB_CFG_SB_TLS_CLIENT_CA)
           || sb_config_has (config, SB_CFG_SB_TLS_CLIENT_CN);
}

//  OpenSSL's reason for the last failure, or fallback. Clears its queue.
static const char *
s_reason (char *buf, size_t size, const char *fallback)
{
    unsigned long code = ERR_peek_last_error ();
    if (code)
        ERR_error_string_n (code, buf, size);
    else
        snprintf (buf, size, "%s", fallback);
    ERR_clear_error ();
    return buf;
}

//  Never prompt for a passphrase: an encrypted key fails to load.
static int
s_no_passphrase (char *buf, int size, int rwflag, void *arg)
{
    (void) buf, (void) size, (void) rwflag, (void) arg;
    return 0;
}

static FILE *
s_open (const char *name, const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        char ebuf[128];
        sb_error ("tls", "%s: cannot open the file path=%s error=\"%s\"", name, path,
                  sb_strerror (errno, ebuf, sizeof ebuf));
    }
    return file;
}

static int
s_load (sb_tls_t *self, const char *cert_path, const char *key_path)
{
    char reason[256];
    FILE *file = s_open ("SB_TLS_CERT", cert_path);
    if (!file)
        return -1;
    self->cert = PEM_read_X509 (file, NULL, s_no_passphrase, NULL);
    self->chain = sk_X509_new_null ();
    X509 *extra;
    while (self->cert && self->chain && (extra = PEM_read_X509 (file, NULL, s_no_passphrase, NULL)))
        if (!sk_X509_push (self->chain, extra))
            X509_free (extra);
    ERR_clear_error ();  //  the end of the file ends the loop with an error
    fclose (file);
    if (!self->cert || !self->chain) {
        sb_error ("tls", "SB_TLS_CERT: no PEM certificate in the file path=%s", cert_path);
        return -1;
    }
    file = s_open ("SB_TLS_KEY", key_path);
    if (!file)
        return -1;
    self->key = PEM_read_PrivateKey (file, NULL, s_no_passphrase, NULL);
    fclose (file);
    if (!self->key) {
        sb_error ("tls",
                  "SB_TLS_KEY: no unencrypted PEM private key in the file path=%s error=\"%s\"",
                  key_path, s_reason (reason, sizeof reason, "no key"));
        return -1;
    }
    if (X509_check_private_key (self->cert, self->key) != 1) {
        sb_error (
            "tls",
            "SB_TLS_KEY: the key does not belong to the certificate of SB_TLS_CERT key=%s cert=%s",
            key_path, cert_path);
        ERR_clear_error ();
        return -1;
    }
    if (X509_cmp_current_time (X509_get0_notAfter (self->cert)) < 0)
        sb_warn ("tls", "SB_TLS_CERT has expired: clients will refuse it path=%s", cert_path);
    else if (X509_cmp_current_time (X509_get0_notBefore (self->cert)) > 0)
        sb_warn ("tls", "SB_TLS_CERT is not valid yet: clients will refuse it path=%s", cert_path);
    return 0;
}

//  SB_TLS_CLIENT_CA: every certificate of a PEM bundle, at least one; a
//  damaged one fails rather than ending the bundle early.
static int
s_load_client_ca (sb_tls_t *self, const char *path)
{
    char reason[256];
    FILE *file = s_open ("SB_TLS_CLIENT_CA", path);
    if (!file)
        return -1;
    self->client_ca = sk_X509_new_null ();
    X509 *ca;
    ERR_clear_error ();
    while (self->client_ca && (ca = PEM_read_X509 (file, NULL, s_no_passphrase, NULL))) {
        if (!sk_X509_push (self->client_ca, ca)) {
            X509_free (ca);
            break;
        }
        if (X509_cmp_current_time (X509_get0_notAfter (ca)) < 0)
            sb_warn ("tls",
                     "SB_TLS_CLIENT_CA holds an expired certificate: it admits no client "
                     "path=%s",
                     path);
    }
    fclose (file);
    unsigned long code = ERR_peek_last_error ();
    bool at_end = ERR_GET_LIB (code) == ERR_LIB_PEM && ERR_GET_REASON (code) == PEM_R_NO_START_LINE;
    if (!self->client_ca || sk_X509_num (self->client_ca) == 0 || (code && !at_end)) {
        sb_error ("tls", "SB_TLS_CLIENT_CA: %s path=%s error=\"%s\"",
                  self->client_ca && sk_X509_num (self->client_ca) > 0
                      ? "a damaged PEM certificate in the file"
                      : "no PEM certificate in the file",
                  path, s_reason (reason, sizeof reason, "none"));
        return -1;
    }
    ERR_clear_error ();
    return 0;
}

//  The shared object holding an address, from the dynamic linker.
typedef struct {
    const char *name_prefix;   //  basename prefix looked for
    uintptr_t base;            //  its load bias
    const ElfW (Phdr) * phdr;  //  its program headers
    int phnum;                 //  how many
} s_object_t;

static int
s_find_object (struct dl_phdr_info *info, size_t size, void *arg)
{
    (void) size;
    s_object_t *object = (s_object_t *) arg;
    const char *slash = info->dlpi_name ? strrchr (info->dlpi_name, '/') : NULL;
    const char *base = slash ? slash + 1 : info->dlpi_name;
    if (!base || strncmp (base, object->name_prefix, strlen (object->name_prefix)) != 0)
        return 0;
    object->base = info->dlpi_addr;
    object->phdr = info->dlpi_phdr;
    object->phnum = info->dlpi_phnum;
    return 1;
}

//  The NUL-terminated name at address p when p lies in one of the
//  object's read-only segments, else NULL.
static const char *
s_name_at (const s_object_t *object, uintptr_t p)
{
    for (int i = 0; i < object->phnum; i++) {
        const ElfW (Phdr) *ph = &object->phdr[i];
        uintptr_t start = object->base + ph->p_vaddr, end = start + ph->p_memsz;
        if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W) || !(ph->p_flags & PF_R) || p < start
            || p >= end)
            continue;
        size_t room = end - p < S_NAME_MAX ? end - p : S_NAME_MAX;
        return memchr ((const void *) p, 0, room) ? (const char *) p : NULL;
    }
    return NULL;
}

//  True when the table entry whose name word is at w[k] (entries of stride
//  words, the function pointer last) names a function and holds the
//  address dlsym gives for it.
static bool
s_entry_ok (const s_object_t *object, const uintptr_t *w, size_t count, size_t k, size_t stride)
{
    if (k + stride > count)
        return false;
    const char *name = s_name_at (object, w[k]);
    if (!name || strncmp (name, "SSL_", 4) != 0)
        return false;
    void *expected = dlsym (RTLD_DEFAULT, name);
    return expected && w[k + stride - 1] == (uintptr_t) expected;
}

//  See the note at the top. 0: nothing to repair, or repaired; -1: TLS
//  would crash (logged).
static int
s_repair_civetweb (void)
{
    if (dlsym (RTLD_DEFAULT, S_MISSING))
        return 0;  //  an OpenSSL that still exports it
    s_object_t object = {"libcivetweb", 0, NULL, 0};
    if (!dl_iterate_phdr (s_find_object, &object))
        return 0;  //  civetweb is not a shared library here: not the build we know
    void *replacement = dlsym (RTLD_DEFAULT, S_REPLACEMENT);
    uintptr_t relro_start = 0, relro_end = 0;
    for (int i = 0; i < object.phnum; i++)
        if (object.phdr[i].p_type == PT_GNU_RELRO) {
            relro_start = object.base + object.phdr[i].p_vaddr;
            relro_end = relro_start + object.phdr[i].p_memsz;
        }
    bool found_null = false;
    for (int i = 0; i < object.phnum; i++) {
        const ElfW (Phdr) *ph = &object.phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W))
            continue;
        uintptr_t start = (object.base + ph->p_vaddr + sizeof (uintptr_t) - 1)
                          & ~(uintptr_t) (sizeof (uintptr_t) - 1);
        uintptr_t end = object.base + ph->p_vaddr + ph->p_memsz;
        uintptr_t *w = (uintptr_t *) start;
        size_t count = (end - start) / sizeof *w;
        for (size_t k = 0; k < count; k++) {
            const char *name = s_name_at (&object, w[k]);
            if (!name || strcmp (name, S_MISSING) != 0)
                continue;
            //  Entries {name, fn} or {name, int flag, fn}.
            for (size_t stride = 2; stride <= 3; stride++) {
                if (k < stride || k + 2 * stride > count)
                    continue;
                uintptr_t *slot = &w[k + stride - 1];
                if (*slot == (uintptr_t) replacement && replacement)
                    return 0;  //  repaired already
                if (*slot != 0 || (stride == 3 && w[k + 1] > 255))
                    continue;
                found_null = true;
                if (!s_entry_ok (&object, w, count, k - stride, stride)
                    || !s_entry_ok (&object, w, count, k + stride, stride))
                    continue;
                if (!replacement
                    || ((uintptr_t) slot >= relro_start && (uintptr_t) slot < relro_end))
                    continue;
                *slot = (uintptr_t) replacement;
                sb_info ("tls", "civetweb's OpenSSL table repaired: %s is OpenSSL 3's %s",
                         S_MISSING, S_REPLACEMENT);
                return 0;
            }
        }
    }
    if (!found_null)
        return 0;  //  a civetweb that does not ask for it
    sb_error ("tls",
              "SB_TLS_CERT: civetweb cannot serve TLS here: it could not load OpenSSL (libssl.so "
              "and libcrypto.so), or it asks OpenSSL 3 for %s, which does not exist, and its table "
              "could not be repaired; terminate TLS in a proxy instead",
              S_MISSING);
    return -1;
}

static void
s_register_metrics (sb_tls_t *self, sb_metrics_t *metrics)
{
    for (int c = 0; c < C_COUNT; c++) {
        char labels[64];
        snprintf (labels, sizeof labels, "reason=\"%s\"", s_refusal_names[c]);
        self->m_refused[c] = sb_metrics_counter (
            metrics, "sb_http_tls_refused_total",
            "Client certificates refused (SB_TLS_CLIENT_CA): handshakes failed by reason, and "
            "requests to /meta/whatsapp without one (no_certificate)",
            labels);
    }
}

sb_tls_t *
sb_tls_new (const sb_config_t *config, sb_metrics_t *metrics)
{
    bool has_cert = sb_config_has (config, SB_CFG_SB_TLS_CERT);
    bool has_key = sb_config_has (config, SB_CFG_SB_TLS_KEY);
    bool has_ca = sb_config_has (config, SB_CFG_SB_TLS_CLIENT_CA);
    bool has_cn = sb_config_has (config, SB_CFG_SB_TLS_CLIENT_CN);
    if (has_cert != has_key) {
        sb_error ("tls", "%s is set but %s is not: HTTPS needs both the certificate and its key",
                  has_cert ? "SB_TLS_CERT" : "SB_TLS_KEY", has_cert ? "SB_TLS_KEY" : "SB_TLS_CERT");
        return NULL;
    }
    if (has_ca && !has_cert) {
        sb_error ("tls", "SB_TLS_CLIENT_CA is set but SB_TLS_CERT is not: client certificates "
                         "need HTTPS on the ingress (SB_TLS_CERT and SB_TLS_KEY), or check them "
                         "in the proxy that terminates TLS");
        return NULL;
    }
    if (has_cn && !has_ca) {
        sb_error ("tls", "SB_TLS_CLIENT_CN is set but SB_TLS_CLIENT_CA is not: a CN is checked "
                         "only on a certificate that chains to SB_TLS_CLIENT_CA");
        return NULL;
    }
    const char *cn = has_cn ? sb_config_str (config, SB_CFG_SB_TLS_CLIENT_CN) : NULL;
    if (cn && strlen (cn) > S_CN_MAX) {
        sb_error ("tls", "SB_TLS_CLIENT_CN: longer than a CN can be (%d characters) length=%zu",
                  S_CN_MAX, strlen (cn));
        return NULL;
    }
    sb_tls_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    atomic_init (&self->refused_log_us, 0);
    atomic_init (&self->refused_held, 0);
    if (s_load (self, sb_config_str (config, SB_CFG_SB_TLS_CERT),
                sb_config_str (config, SB_CFG_SB_TLS_KEY)))
        goto fail;
    if (has_ca) {
        if (s_load_client_ca (self, sb_config_str (config, SB_CFG_SB_TLS_CLIENT_CA)))
            goto fail;
        if (cn && !(self->client_cn = strdup (cn)))
            goto fail;
        s_register_metrics (self, metrics);
        sb_info ("tls", "client certificates checked: /meta/whatsapp requires one cas=%d cn=\"%s\"",
                 sk_X509_num (self->client_ca), cn ? cn : "(any)");
    }
    //  Load civetweb's OpenSSL now (not lazily in mg_start2) so that its
    //  table can be checked before any connection.
    mg_init_library (MG_FEATURES_TLS);
    self->library = true;
    if (!mg_check_feature (MG_FEATURES_TLS)) {
        sb_error ("tls", "SB_TLS_CERT: this civetweb was built without TLS");
        goto fail;
    }
    if (s_repair_civetweb ())
        goto fail;
    return self;
fail:
    sb_tls_destroy (&self);
    return NULL;
}

void
sb_tls_destroy (sb_tls_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_tls_t *self = *self_p;
    X509_free (self->cert);
    sk_X509_pop_free (self->chain, X509_free);
    EVP_PKEY_free (self->key);
    sk_X509_pop_free (self->client_ca, X509_free);
    free (self->client_cn);
    if (self->library)
        mg_exit_library ();
    free (self);
    *self_p = NULL;
}

//  At most one line a second about refused client certificates, with how
//  many were held back: handshakes fail on many workers at once, and no
//  lock is held across the write.
static void
s_log_refused (sb_tls_t *self, s_refusal_t why, const SSL *ssl, const char *detail)
{
    int64_t now = sb_time_mono_us ();
    int64_t last = atomic_load (&self->refused_log_us);
    if ((last && now - last < 1000000)
        || !atomic_compare_exchange_strong (&self->refused_log_us, &last, now)) {
        atomic_fetch_add (&self->refused_held, 1);
        return;
    }
    char remote[64] = "?";
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    int fd = ssl ? SSL_get_fd (ssl) : -1;
    if (fd < 0 || getpeername (fd, (struct sockaddr *) &peer, &len) != 0
        || getnameinfo ((struct sockaddr *) &peer, len, remote, sizeof remote, NULL, 0,
                        NI_NUMERICHOST)
               != 0)
        snprintf (remote, sizeof remote, "?");
    sb_warn ("tls",
             "TLS handshake refused: client certificate not accepted reason=%s detail=\"%s\" "
             "remote=%s repeated=%" PRIuFAST64,
             s_refusal_names[why], detail, remote, atomic_exchange (&self->refused_held, 0));
}

//  The certificate's subject has exactly one CN, and it is cn (see the
//  note at the top).
static bool
s_cn_is (X509 *cert, const char *cn)
{
    X509_NAME *subject = cert ? X509_get_subject_name (cert) : NULL;
    int at = subject ? X509_NAME_get_index_by_NID (subject, NID_commonName, -1) : -1;
    if (at < 0 || X509_NAME_get_index_by_NID (subject, NID_commonName, at) >= 0)
        return false;
    unsigned char *text = NULL;
    int len =
        ASN1_STRING_to_UTF8 (&text, X509_NAME_ENTRY_get_data (X509_NAME_get_entry (subject, at)));
    bool same = len >= 0 && (size_t) len == strlen (cn) && memcmp (text, cn, (size_t) len) == 0;
    OPENSSL_free (text);
    return same;
}

//  OpenSSL's verify callback, once per certificate of the client's chain
//  from the trust anchor down to the client's own (depth 0); ok says
//  whether OpenSSL found it good. Returning 0 ends the verification and
//  fails the handshake, so each refused handshake is counted once.
static int
s_verify (int ok, X509_STORE_CTX *store)
{
    SSL *ssl = (SSL *) X509_STORE_CTX_get_ex_data (store, SSL_get_ex_data_X509_STORE_CTX_idx ());
    sb_tls_t *self = ssl ? (sb_tls_t *) SSL_CTX_get_app_data (SSL_get_SSL_CTX (ssl)) : NULL;
    if (!self)
        return ok;
    if (!ok) {
        int error = X509_STORE_CTX_get_error (store);
        s_refusal_t why =
            error == X509_V_ERR_CERT_HAS_EXPIRED || error == X509_V_ERR_CERT_NOT_YET_VALID
                ? C_EXPIRED
                : C_UNTRUSTED;
        sb_metric_add (self->m_refused[why], 1);
        s_log_refused (self, why, ssl, X509_verify_cert_error_string (error));
        return 0;
    }
    if (X509_STORE_CTX_get_error_depth (store) == 0 && self->client_cn
        && !s_cn_is (X509_STORE_CTX_get_current_cert (store), self->client_cn)) {
        X509_STORE_CTX_set_error (store, X509_V_ERR_APPLICATION_VERIFICATION);
        sb_metric_add (self->m_refused[C_CN_MISMATCH], 1);
        s_log_refused (self, C_CN_MISMATCH, ssl, "the subject CN is not SB_TLS_CLIENT_CN");
        return 0;
    }
    return 1;
}

//  SB_TLS_CLIENT_CA on the SSL_CTX: the trust anchors, the CA names sent
//  in the CertificateRequest, and the verification (see the note at top).
static int
s_setup_client_ca (sb_tls_t *self, SSL_CTX *ctx)
{
    X509_STORE *store = SSL_CTX_get_cert_store (ctx);
    STACK_OF (X509_NAME) *names = sk_X509_NAME_new_null ();
    if (!store || !names)
        goto fail;
    for (int i = 0; i < sk_X509_num (self->client_ca); i++) {
        X509 *ca = sk_X509_value (self->client_ca, i);
        X509_NAME *name = X509_NAME_dup (X509_get_subject_name (ca));
        if (X509_STORE_add_cert (store, ca) != 1 || !name || !sk_X509_NAME_push (names, name)) {
            X509_NAME_free (name);
            goto fail;
        }
    }
    SSL_CTX_set_client_CA_list (ctx, names);  //  takes names
    names = NULL;
    if (X509_STORE_set_flags (store, X509_V_FLAG_PARTIAL_CHAIN) != 1
        || SSL_CTX_set_app_data (ctx, self) != 1)
        goto fail;
    SSL_CTX_set_verify (ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, s_verify);
    SSL_CTX_set_verify_depth (ctx, S_VERIFY_DEPTH);
    return 0;
fail:
    sk_X509_NAME_pop_free (names, X509_NAME_free);
    return -1;
}

int
sb_tls_setup_ctx (sb_tls_t *self, void *ssl_ctx)
{
    SSL_CTX *ctx = (SSL_CTX *) ssl_ctx;
    char reason[256];
    //  A session is resumed only in the context it began in; OpenSSL
    //  refuses to resume without one when it verifies clients (civetweb
    //  sets it only when init_ssl leaves the set-up to it).
    static const unsigned char context[] = "switchboard-ingress";
    if (SSL_CTX_set_min_proto_version (ctx, TLS1_2_VERSION) != 1
        || SSL_CTX_use_cert_and_key (ctx, self->cert, self->key, self->chain, 1) != 1
        || SSL_CTX_set_session_id_context (ctx, context, sizeof context - 1) != 1
        || (self->client_ca && s_setup_client_ca (self, ctx))) {
        sb_error ("tls", "cannot set up TLS error=\"%s\"",
                  s_reason (reason, sizeof reason, "unknown"));
        return -1;
    }
    return 1;
}

bool
sb_tls_client_required (const sb_tls_t *self)
{
    return self && self->client_ca;
}

bool
sb_tls_client_ok (sb_tls_t *self, const void *peer_cert)
{
    X509 *cert = (X509 *) peer_cert;
    s_refusal_t why = C_COUNT;
    if (!cert)
        why = C_NO_CERTIFICATE;
    else if (self->client_cn && !s_cn_is (cert, self->client_cn))
        why = C_CN_MISMATCH;  //  the handshake checked it: not seen unless that changes
    if (why == C_COUNT)
        return true;
    sb_metric_add (self->m_refused[why], 1);
    return false;
}

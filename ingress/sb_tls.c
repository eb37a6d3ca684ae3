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

    Limits: the key must be unencrypted (no passphrase prompt at start);
    certificates are read once, at start (restart to renew).
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  //  dladdr, RTLD_DEFAULT, dl_iterate_phdr
#endif
#include "sb_tls.h"

#include <civetweb.h>
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_log.h"

#define S_MISSING "SSL_get_peer_certificate"       //  the name civetweb 1.15 asks for
#define S_REPLACEMENT "SSL_get1_peer_certificate"  //  what OpenSSL 3 exports
#define S_NAME_MAX 64                              //  longest OpenSSL function name read

struct sb_tls_t {
    X509 *cert;               //  SB_TLS_CERT's first certificate
    STACK_OF (X509) * chain;  //  the certificates after it
    EVP_PKEY *key;            //  SB_TLS_KEY
    bool library;             //  mg_init_library was called: exit it
};

bool
sb_tls_wanted (const sb_config_t *config)
{
    return sb_config_has (config, SB_CFG_SB_TLS_CERT) || sb_config_has (config, SB_CFG_SB_TLS_KEY);
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

sb_tls_t *
sb_tls_new (const sb_config_t *config)
{
    bool has_cert = sb_config_has (config, SB_CFG_SB_TLS_CERT);
    bool has_key = sb_config_has (config, SB_CFG_SB_TLS_KEY);
    if (has_cert != has_key) {
        sb_error ("tls", "%s is set but %s is not: HTTPS needs both the certificate and its key",
                  has_cert ? "SB_TLS_CERT" : "SB_TLS_KEY", has_cert ? "SB_TLS_KEY" : "SB_TLS_CERT");
        return NULL;
    }
    sb_tls_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    if (s_load (self, sb_config_str (config, SB_CFG_SB_TLS_CERT),
                sb_config_str (config, SB_CFG_SB_TLS_KEY)))
        goto fail;
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
    if (self->library)
        mg_exit_library ();
    free (self);
    *self_p = NULL;
}

int
sb_tls_setup_ctx (sb_tls_t *self, void *ssl_ctx)
{
    SSL_CTX *ctx = (SSL_CTX *) ssl_ctx;
    char reason[256];
    if (SSL_CTX_set_min_proto_version (ctx, TLS1_2_VERSION) != 1
        || SSL_CTX_use_cert_and_key (ctx, self->cert, self->key, self->chain, 1) != 1) {
        sb_error ("tls", "cannot set up TLS error=\"%s\"",
                  s_reason (reason, sizeof reason, "unknown"));
        return -1;
    }
    return 1;
}

/*  sb_zmq: CURVE keys, the zauth actor, and guarded bind and connect.

    sb_zmq_security_new reads the five settings once, at start. A key pair
    comes from a czmq certificate file (NAME.key_secret holds both keys, in
    zcert's ZPL format), from the certificate's text itself (NAME_FILE
    pointing at it), or from a bare 40-character Z85 secret key whose public
    key is derived (zmq_curve_public). The file is read here, capped, and
    parsed with zconfig_str_load (zcert_load leaks on a malformed file). Every secret key is checked against its public key,
    so a truncated or mixed-up file fails at start, naming the variable,
    and never on the first connection. Values of the secret settings are
    never echoed in messages.

    DESIGN. libzmq consults the ZAP handler (RFC 27) of its context for
    every CURVE handshake on a socket with a ZAP domain. czmq's zauth is
    that handler; it binds a fixed inproc endpoint, so a process runs one,
    owned here. Server sockets also get ZMQ_ZAP_ENFORCE_DOMAIN where libzmq
    has it (a draft option): without a handler they then refuse clients
    instead of admitting any key. The object is immutable once built, so
    several actor threads bind and connect through it at once.

    Limits: one server key pair and one server public key per process (all
    ingresses a dispatcher follows share the server key pair, or their
    clients cannot tell them apart anyway). Locality is decided on the
    endpoint text: an interface name or a host name other than localhost
    counts as remote.
*/
#include "sb_zmq.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb_log.h"

#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93  //  draft option of libzmq >= 4.2.3
#endif

#define S_ZAP_DOMAIN "switchboard"
#define S_KEY_LEN 40      //  a Z85 CURVE key
#define S_PATH_MAX 200    //  longest SB_CURVE_ALLOWED (zcertstore paths)
#define S_FILE_MAX 65536  //  largest certificate file read

struct sb_zmq_security_t {
    zactor_t *auth;                     //  zauth, when this process is a CURVE server
    bool server;                        //  a server key pair is set
    char server_public[S_KEY_LEN + 1];  //  our server public key (Z85)
    char server_secret[S_KEY_LEN + 1];  //  our server secret key (Z85)
    bool client;                        //  a server public key is set
    char server_key[S_KEY_LEN + 1];     //  the public key of the server we connect to
    char client_public[S_KEY_LEN + 1];  //  our client public key
    char client_secret[S_KEY_LEN + 1];  //  our client secret key
    bool allow_plaintext;               //  SB_ZMQ_ALLOW_PLAINTEXT
};

static bool
s_is_z85_key (const char *text)
{
    if (strlen (text) != S_KEY_LEN)
        return false;
    uint8_t key[32];
    return zmq_z85_decode (key, text) != NULL;
}

//  The keys of a certificate's text (czmq's zcert format, ZPL): 0 with
//  both, 1 with the public key only (secret_txt ""), -1 when it is not a
//  certificate.
static int
s_parse_cert (const char *text, char *public_txt, char *secret_txt)
{
    //  Not even the key's name: not a certificate (and no line from
    //  zconfig's parser on stdout).
    if (!strstr (text, "public-key"))
        return -1;
    zconfig_t *root = zconfig_str_load (text);
    if (!root)
        return -1;
    const char *pub = zconfig_get (root, "/curve/public-key", "");
    const char *sec = zconfig_get (root, "/curve/secret-key", "");
    int rc = -1;
    if (s_is_z85_key (pub)) {
        memcpy (public_txt, pub, S_KEY_LEN + 1);
        *secret_txt = 0;
        rc = 1;
        if (s_is_z85_key (sec)) {
            memcpy (secret_txt, sec, S_KEY_LEN + 1);
            rc = 0;
        }
    }
    zconfig_destroy (&root);
    return rc;
}

//  The text of a certificate file, at most S_FILE_MAX bytes; the path is
//  shown in messages unless the setting is a secret (its value may be a
//  mistyped key). Caller owns the return value; NULL with err.
static char *
s_read_cert_file (const char *name, const char *path, bool show_path, char *err, size_t err_size)
{
    const char *shown = show_path ? path : "the file it names";
    char ebuf[128];
    FILE *file = fopen (path, "rb");
    if (!file) {
        snprintf (err, err_size, "%s: cannot open %.300s: %s", name, shown,
                  sb_strerror (errno, ebuf, sizeof ebuf));
        return NULL;
    }
    char *text = malloc (S_FILE_MAX + 1);
    size_t size = text ? fread (text, 1, S_FILE_MAX + 1, file) : 0;
    bool failed = ferror (file) != 0;
    fclose (file);
    if (!text || failed || size > S_FILE_MAX || memchr (text, 0, size)) {
        snprintf (err, err_size,
                  "%s: %.300s is not a certificate (unreadable, too large or binary)", name, shown);
        free (text);
        return NULL;
    }
    text[size] = 0;
    return text;
}

//  The key pair a setting names: a secret certificate file, its text (from
//  NAME_FILE), or a Z85 secret key. Checks that the keys belong together.
//  0 or -1 with err.
static int
s_load_keypair (const char *name, const char *value, char *public_txt, char *secret_txt, char *err,
                size_t err_size)
{
    if (s_is_z85_key (value) && access (value, F_OK) != 0) {
        memcpy (secret_txt, value, S_KEY_LEN + 1);
        if (zmq_curve_public (public_txt, secret_txt) != 0) {
            snprintf (err, err_size, "%s: cannot derive the public key: %s", name,
                      zmq_strerror (zmq_errno ()));
            return -1;
        }
        return 0;
    }
    char *text = strchr (value, '\n') ? NULL : s_read_cert_file (name, value, false, err, err_size);
    if (!text && !strchr (value, '\n'))
        return -1;
    int rc = s_parse_cert (text ? text : value, public_txt, secret_txt);
    if (text)
        OPENSSL_cleanse (text, strlen (text));
    free (text);
    if (rc < 0) {
        snprintf (err, err_size,
                  "%s: not a certificate: expected the NAME.key_secret file `switchboard keygen` "
                  "wrote, or a 40-character Z85 secret key",
                  name);
        return -1;
    }
    if (rc == 1) {
        snprintf (err, err_size,
                  "%s: the certificate holds a public key only: give the NAME.key_secret file, not "
                  "NAME.key",
                  name);
        return -1;
    }
    char derived[S_KEY_LEN + 1];
    rc = zmq_curve_public (derived, secret_txt) != 0 || strcmp (derived, public_txt) != 0;
    OPENSSL_cleanse (derived, sizeof derived);
    if (rc) {
        snprintf (err, err_size, "%s: the secret and public keys in the certificate do not match",
                  name);
        return -1;
    }
    return 0;
}

//  A public key: Z85 text or a certificate file (NAME.key). 0 or -1 with err.
static int
s_load_public (const char *name, const char *value, char *public_txt, char *err, size_t err_size)
{
    if (s_is_z85_key (value) && access (value, F_OK) != 0) {
        memcpy (public_txt, value, S_KEY_LEN + 1);
        return 0;
    }
    char *text = strchr (value, '\n') ? NULL : s_read_cert_file (name, value, true, err, err_size);
    if (!text && !strchr (value, '\n'))
        return -1;
    char secret_txt[S_KEY_LEN + 1];
    int rc = s_parse_cert (text ? text : value, public_txt, secret_txt);
    OPENSSL_cleanse (secret_txt, sizeof secret_txt);
    if (text)
        OPENSSL_cleanse (text, strlen (text));
    free (text);
    if (rc < 0) {
        snprintf (err, err_size,
                  "%s: not a certificate: expected a 40-character Z85 public key or the server's "
                  "NAME.key file",
                  name);
        return -1;
    }
    return 0;
}

//  Check the allowed-clients directory and say what it holds. 0 or -1.
static int
s_check_allowed (const char *dir, char *err, size_t err_size)
{
    if (strlen (dir) > S_PATH_MAX) {
        snprintf (err, err_size, "SB_CURVE_ALLOWED: the path is longer than %d characters",
                  S_PATH_MAX);
        return -1;
    }
    struct stat st;
    char ebuf[128];
    if (stat (dir, &st) != 0) {
        snprintf (err, err_size, "SB_CURVE_ALLOWED=%s: %s", dir,
                  sb_strerror (errno, ebuf, sizeof ebuf));
        return -1;
    }
    if (!S_ISDIR (st.st_mode)) {
        snprintf (err, err_size,
                  "SB_CURVE_ALLOWED=%s: not a directory: expected a directory of client "
                  "certificates (NAME.key), or *",
                  dir);
        return -1;
    }
    DIR *d = opendir (dir);
    if (!d) {
        snprintf (err, err_size, "SB_CURVE_ALLOWED=%s: %s", dir,
                  sb_strerror (errno, ebuf, sizeof ebuf));
        return -1;
    }
    size_t certs = 0, secrets = 0;
    for (struct dirent *e = readdir (d); e; e = readdir (d)) {
        if (e->d_name[0] == '.')
            continue;
        size_t len = strlen (e->d_name);
        if (len > 7 && strcmp (e->d_name + len - 7, "_secret") == 0)
            secrets++;
        else
            certs++;
    }
    closedir (d);
    if (secrets)
        sb_warn ("zmq",
                 "SB_CURVE_ALLOWED holds secret key files: only the clients' public NAME.key files "
                 "belong there dir=%s files=%zu",
                 dir, secrets);
    if (certs == 0)
        sb_warn ("zmq",
                 "SB_CURVE_ALLOWED is empty: no client can connect until its NAME.key is copied "
                 "there dir=%s",
                 dir);
    return 0;
}

sb_zmq_security_t *
sb_zmq_security_new (const sb_config_t *config, char *err, size_t err_size)
{
    sb_zmq_security_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, err_size, "out of memory");
        return NULL;
    }
    self->allow_plaintext = sb_config_bool (config, SB_CFG_SB_ZMQ_ALLOW_PLAINTEXT);
    bool has_secret = sb_config_has (config, SB_CFG_SB_CURVE_SERVER_SECRET);
    bool has_allowed = sb_config_has (config, SB_CFG_SB_CURVE_ALLOWED);
    bool has_public = sb_config_has (config, SB_CFG_SB_CURVE_SERVER_PUBLIC);
    bool has_client = sb_config_has (config, SB_CFG_SB_CURVE_CLIENT_CERT);
    if ((has_secret || has_public) && !zmq_has ("curve")) {
        snprintf (err, err_size, "%s: this libzmq has no CURVE support",
                  has_secret ? "SB_CURVE_SERVER_SECRET" : "SB_CURVE_SERVER_PUBLIC");
        goto fail;
    }
    if (has_allowed && !has_secret) {
        snprintf (err, err_size,
                  "SB_CURVE_ALLOWED is set but SB_CURVE_SERVER_SECRET is not: set the server key "
                  "pair too");
        goto fail;
    }
    if (has_client && !has_public) {
        snprintf (err, err_size,
                  "SB_CURVE_CLIENT_CERT is set but SB_CURVE_SERVER_PUBLIC is not: set the server's "
                  "public key too");
        goto fail;
    }
    if (has_secret) {
        if (!has_allowed) {
            snprintf (err, err_size,
                      "SB_CURVE_SERVER_SECRET is set but SB_CURVE_ALLOWED is not: set it to a "
                      "directory of client certificates (NAME.key), or * to admit any client key");
            goto fail;
        }
        if (s_load_keypair ("SB_CURVE_SERVER_SECRET",
                            sb_config_str (config, SB_CFG_SB_CURVE_SERVER_SECRET),
                            self->server_public, self->server_secret, err, err_size))
            goto fail;
        const char *allowed = sb_config_str (config, SB_CFG_SB_CURVE_ALLOWED);
        bool any = strcmp (allowed, CURVE_ALLOW_ANY) == 0;
        if (!any && s_check_allowed (allowed, err, err_size))
            goto fail;
        self->server = true;
    }
    if (has_public) {
        if (!has_client) {
            snprintf (err, err_size,
                      "SB_CURVE_SERVER_PUBLIC is set but SB_CURVE_CLIENT_CERT is not: give this "
                      "client a key pair (switchboard keygen)");
            goto fail;
        }
        if (s_load_public ("SB_CURVE_SERVER_PUBLIC",
                           sb_config_str (config, SB_CFG_SB_CURVE_SERVER_PUBLIC), self->server_key,
                           err, err_size)
            || s_load_keypair ("SB_CURVE_CLIENT_CERT",
                               sb_config_str (config, SB_CFG_SB_CURVE_CLIENT_CERT),
                               self->client_public, self->client_secret, err, err_size))
            goto fail;
        self->client = true;
        sb_info ("zmq", "CURVE client on server_key=%s client_key=%s", self->server_key,
                 self->client_public);
    }
    //  Every setting is good: start the ZAP handler.
    if (self->server) {
        const char *allowed = sb_config_str (config, SB_CFG_SB_CURVE_ALLOWED);
        self->auth = zactor_new (zauth, NULL);
        if (!self->auth) {
            snprintf (err, err_size, "SB_CURVE_SERVER_SECRET: cannot start the zauth actor");
            goto fail;
        }
        zstr_sendx (self->auth, "CURVE", allowed, NULL);
        zsock_wait (self->auth);
        if (strcmp (allowed, CURVE_ALLOW_ANY) == 0)
            sb_warn ("zmq", "SB_CURVE_ALLOWED=*: any client key is admitted (traffic is encrypted, "
                            "clients are not authenticated)");
        sb_info ("zmq", "CURVE server on server_key=%s allowed=%s", self->server_public, allowed);
    }
    return self;
fail:
    sb_zmq_security_destroy (&self);
    return NULL;
}

void
sb_zmq_security_destroy (sb_zmq_security_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_zmq_security_t *self = *self_p;
    zactor_destroy (&self->auth);
    OPENSSL_cleanse (self, sizeof *self);
    free (self);
    *self_p = NULL;
}

bool
sb_zmq_security_server (const sb_zmq_security_t *self)
{
    return self && self->server;
}

bool
sb_zmq_security_client (const sb_zmq_security_t *self)
{
    return self && self->client;
}

static bool
s_port_ok (const char *port)
{
    if (strcmp (port, "*") == 0 || strcmp (port, "!") == 0)
        return true;
    size_t len = strlen (port);
    if (len == 0 || len > 5)
        return false;
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return atoi (port) <= 65535;
}

bool
sb_zmq_endpoint_is_local (const char *endpoint)
{
    if (!endpoint)
        return false;
    if (strncmp (endpoint, "inproc://", 9) == 0)
        return endpoint[9] != 0;
    if (strncmp (endpoint, "ipc://", 6) == 0)
        return endpoint[6] != 0;
    if (strncmp (endpoint, "tcp://", 6) != 0)
        return false;
    const char *addr = endpoint + 6;
    //  "tcp://source;destination" names two addresses: not ours to judge.
    if (strchr (addr, ';'))
        return false;
    char host[64];
    const char *port;
    size_t host_len;
    if (addr[0] == '[') {
        const char *close = strchr (addr, ']');
        if (!close || close[1] != ':')
            return false;
        host_len = (size_t) (close - addr - 1);
        addr++;
        port = close + 2;
    }
    else {
        const char *colon = strrchr (addr, ':');
        if (!colon)
            return false;
        host_len = (size_t) (colon - addr);
        port = colon + 1;
    }
    if (host_len == 0 || host_len >= sizeof host || !s_port_ok (port))
        return false;
    memcpy (host, addr, host_len);
    host[host_len] = 0;
    if (strcasecmp (host, "localhost") == 0)
        return true;
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton (AF_INET, host, &v4) == 1)
        return (ntohl (v4.s_addr) >> 24) == 127;
    if (inet_pton (AF_INET6, host, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK (&v6) || (IN6_IS_ADDR_V4MAPPED (&v6) && v6.s6_addr[12] == 127);
    return false;
}

//  Calls fn on each comma-separated item of list; stops at the first
//  non-zero return and returns it (-1 when out of memory).
static int
s_each (const char *list, int (*fn) (const char *item, void *arg), void *arg)
{
    char *copy = strdup (list);
    if (!copy)
        return -1;
    int rc = 0;
    char *save = NULL;
    for (char *item = strtok_r (copy, ",", &save); item && rc == 0;
         item = strtok_r (NULL, ",", &save))
        rc = fn (item, arg);
    free (copy);
    return rc;
}

//  What one bind or connect call works on.
typedef struct {
    const sb_zmq_security_t *self;  //  keys and policy (may be NULL)
    zsock_t *sock;                  //  the socket
    const char *what;               //  its name in log lines
    const char *setting;            //  the setting the endpoints came from, or NULL
    bool curve;                     //  CURVE applies to this socket
} s_call_t;

static int
s_check_bind (const char *ep, void *arg)
{
    s_call_t *call = (s_call_t *) arg;
    if (call->curve || sb_zmq_endpoint_is_local (ep))
        return 0;
    if (call->self && call->self->allow_plaintext) {
        sb_warn ("zmq",
                 "binding a non-loopback endpoint without CURVE (SB_ZMQ_ALLOW_PLAINTEXT=1): anyone "
                 "who reaches it can connect socket=%s endpoint=%s%s%s",
                 call->what, ep, call->setting ? " setting=" : "",
                 call->setting ? call->setting : "");
        return 0;
    }
    sb_error ("zmq",
              "refusing to bind a non-loopback endpoint without CURVE: set SB_CURVE_SERVER_SECRET "
              "and SB_CURVE_ALLOWED (switchboard keygen writes the keys), or "
              "SB_ZMQ_ALLOW_PLAINTEXT=1 on a trusted network socket=%s endpoint=%s%s%s",
              call->what, ep, call->setting ? " setting=" : "", call->setting ? call->setting : "");
    return -1;
}

static int
s_bind_one (const char *ep, void *arg)
{
    s_call_t *call = (s_call_t *) arg;
    if (zsock_bind (call->sock, "%s", ep) < 0) {
        sb_error ("zmq", "cannot bind %s endpoint=%s%s%s error=\"%s\"", call->what, ep,
                  call->setting ? " setting=" : "", call->setting ? call->setting : "",
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    sb_info ("zmq", "bound %s endpoint=%s curve=%s", call->what, ep, call->curve ? "on" : "off");
    return 0;
}

static int
s_setopt (zsock_t *sock, int option, const void *value, size_t size, const char *what)
{
    if (zmq_setsockopt (zsock_resolve (sock), option, value, size) == 0)
        return 0;
    sb_error ("zmq", "cannot set a CURVE option socket=%s option=%d error=\"%s\"", what, option,
              zmq_strerror (zmq_errno ()));
    return -1;
}

int
sb_zmq_bind (const sb_zmq_security_t *self, zsock_t *sock, const char *what, const char *setting,
             const char *endpoints)
{
    s_call_t call = {self, sock, what, setting, sb_zmq_security_server (self)};
    //  Check every endpoint before binding any.
    int rc = s_each (endpoints, s_check_bind, &call);
    if (rc)
        return -1;
    if (call.curve) {
        int one = 1;
        if (s_setopt (sock, ZMQ_ZAP_DOMAIN, S_ZAP_DOMAIN, strlen (S_ZAP_DOMAIN), what)
            || s_setopt (sock, ZMQ_CURVE_SERVER, &one, sizeof one, what)
            || s_setopt (sock, ZMQ_CURVE_PUBLICKEY, self->server_public, S_KEY_LEN, what)
            || s_setopt (sock, ZMQ_CURVE_SECRETKEY, self->server_secret, S_KEY_LEN, what))
            return -1;
        //  Refuse clients rather than admit any key should zauth be gone
        //  (a draft option: libzmq without drafts says EINVAL, ignored).
        zmq_setsockopt (zsock_resolve (sock), ZMQ_ZAP_ENFORCE_DOMAIN, &one, sizeof one);
    }
    return s_each (endpoints, s_bind_one, &call) ? -1 : 0;
}

static int
s_connect_one (const char *ep, void *arg)
{
    s_call_t *call = (s_call_t *) arg;
    if (!call->curve && !sb_zmq_endpoint_is_local (ep)
        && !(call->self && call->self->allow_plaintext))
        sb_warn ("zmq",
                 "connecting to a non-loopback endpoint without CURVE: set SB_CURVE_SERVER_PUBLIC "
                 "and SB_CURVE_CLIENT_CERT socket=%s endpoint=%s%s%s",
                 call->what, ep, call->setting ? " setting=" : "",
                 call->setting ? call->setting : "");
    if (zsock_connect (call->sock, "%s", ep) < 0) {
        sb_error ("zmq", "cannot connect %s endpoint=%s%s%s error=\"%s\"", call->what, ep,
                  call->setting ? " setting=" : "", call->setting ? call->setting : "",
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    sb_debug ("zmq", "connected %s endpoint=%s curve=%s", call->what, ep,
              call->curve ? "on" : "off");
    return 0;
}

int
sb_zmq_connect (const sb_zmq_security_t *self, zsock_t *sock, const char *what, const char *setting,
                const char *endpoints)
{
    s_call_t call = {self, sock, what, setting, sb_zmq_security_client (self)};
    if (call.curve
        && (s_setopt (sock, ZMQ_CURVE_SERVERKEY, self->server_key, S_KEY_LEN, what)
            || s_setopt (sock, ZMQ_CURVE_PUBLICKEY, self->client_public, S_KEY_LEN, what)
            || s_setopt (sock, ZMQ_CURVE_SECRETKEY, self->client_secret, S_KEY_LEN, what)))
        return -1;
    return s_each (endpoints, s_connect_one, &call) ? -1 : 0;
}

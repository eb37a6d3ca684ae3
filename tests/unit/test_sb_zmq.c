/*  test_sb_zmq: ZeroMQ security.

    Which endpoints count as local (hostile spellings included); the
    settings refused at start, each naming its variable and never echoing a
    secret; the plaintext guard on bind; and a real CURVE round trip over
    tcp://127.0.0.1 between sockets of this process: an admitted client
    receives, a client with an unknown key and a plaintext client receive
    nothing, and a key copied into SB_CURVE_ALLOWED later is admitted
    without a restart (zauth rereads the directory).
*/
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb_config.h"
#include "sb_log.h"
#include "sb_zmq.h"

#include "sb_check.h"

#define SERVICES (SB_SVC_INGRESS | SB_SVC_DISPATCHER | SB_SVC_CLI)

static void
s_check_local (void)
{
    static const char *local[] = {
        "inproc://sb-outcomes",
        "ipc:///tmp/sb.sock",
        "tcp://127.0.0.1:5556",
        "tcp://127.0.0.1:*",
        "tcp://127.1.2.3:1",
        "tcp://127.255.255.255:65535",
        "tcp://localhost:5556",
        "tcp://LocalHost:5556",
        "tcp://[::1]:5556",
        "tcp://::1:5556",
        "tcp://[::ffff:127.0.0.1]:5556",
        "tcp://127.0.0.1:!",
    };
    static const char *remote[] = {
        "tcp://0.0.0.0:5556",
        "tcp://*:5556",
        "tcp://10.77.0.1:5556",
        "tcp://[::]:5556",
        "tcp://eth0:5556",
        "tcp://lo:5556",
        "tcp://ingress:5556",
        "tcp://128.0.0.1:5556",
        "tcp://126.255.255.255:5556",
        //  look-alikes and hostile spellings
        "tcp://127.0.0.1.evil.example:5556",
        "tcp://localhost.evil.example:5556",
        "tcp://evil.example/127.0.0.1:5556",
        "tcp://127.1:5556",
        "tcp://0177.0.0.1:5556",
        "tcp://127.0.0.1:5556;10.0.0.1:5556",
        "tcp://10.0.0.1:0;127.0.0.1:5556",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:",
        "tcp://127.0.0.1:5556 ",
        "tcp:// 127.0.0.1:5556",
        "tcp://127.0.0.1:55566666",
        "tcp://127.0.0.1:99999",
        "tcp://127.0.0.1:-1",
        "tcp://[::1]5556",
        "tcp://[::1:5556",
        "tcp://[fe80::1%lo]:5556",
        "tcp://[127.0.0.1]x:1",
        "tcp://:5556",
        "tcp://",
        "tcp:127.0.0.1:5556",
        "TCP://127.0.0.1:5556",
        "udp://127.0.0.1:5556",
        "pgm://127.0.0.1;239.192.1.1:5555",
        "inproc://",
        "ipc://",
        "",
        "tcp://1111111111111111111111111111111111111111111111111111111111111111127.0.0.1:1",
    };
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        if (!sb_zmq_endpoint_is_local (local[i])) {
            fprintf (stderr, "%s:%d: expected local: %s\n", __FILE__, __LINE__, local[i]);
            s_failures++;
        }
    for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++)
        if (sb_zmq_endpoint_is_local (remote[i])) {
            fprintf (stderr, "%s:%d: expected not local: \"%s\"\n", __FILE__, __LINE__, remote[i]);
            s_failures++;
        }
    CHECK (!sb_zmq_endpoint_is_local (NULL));
}

//  A key pair saved as dir/name.key and dir/name.key_secret.
static void
s_keygen (const char *dir, const char *name)
{
    char path[512];
    snprintf (path, sizeof path, "%s/%s.key", dir, name);
    zcert_t *cert = zcert_new ();
    CHECK (cert && zcert_save (cert, path) == 0);
    zcert_destroy (&cert);
}

//  A security object from NAME=value pairs (NULL-terminated); NULL with
//  the error in err when refused.
static sb_zmq_security_t *
s_security (char *err, size_t err_size, ...)
{
    char *env[16] = {NULL};
    va_list args;
    va_start (args, err_size);
    size_t n = 0;
    for (char *kv = va_arg (args, char *); kv && n < 15; kv = va_arg (args, char *))
        env[n++] = kv;
    va_end (args);
    *err = 0;
    sb_config_t *config = sb_config_load_from (SERVICES, env, err, err_size);
    if (!config)
        return NULL;
    sb_zmq_security_t *self = sb_zmq_security_new (config, err, err_size);
    sb_config_destroy (&config);
    return self;
}

//  The settings are refused with a message naming the variable.
static void
s_refused (const char *variable, const char *why, const char *must_not_show, ...)
{
    char *env[16] = {NULL};
    va_list args;
    va_start (args, must_not_show);
    size_t n = 0;
    for (char *kv = va_arg (args, char *); kv && n < 15; kv = va_arg (args, char *))
        env[n++] = kv;
    va_end (args);
    char err[512] = "";
    sb_config_t *config = sb_config_load_from (SERVICES, env, err, sizeof err);
    sb_zmq_security_t *self = config ? sb_zmq_security_new (config, err, sizeof err) : NULL;
    if (self || !strstr (err, variable) || (why && !strstr (err, why))
        || (must_not_show && strstr (err, must_not_show))) {
        fprintf (stderr, "%s:%d: expected a refusal naming %s (%s), got: %s\n", __FILE__, __LINE__,
                 variable, why ? why : "", self ? "(accepted)" : err);
        s_failures++;
    }
    sb_zmq_security_destroy (&self);
    sb_config_destroy (&config);
}

static void
s_check_settings (const char *dir)
{
    char server_secret[600], server_public[600], client_secret[600], client_public[600],
        allowed[600], missing[600], pub_only[800], mismatch[600], notdir[600], garbage[600];
    snprintf (server_secret, sizeof server_secret, "SB_CURVE_SERVER_SECRET=%s/server.key_secret",
              dir);
    snprintf (server_public, sizeof server_public, "SB_CURVE_SERVER_PUBLIC=%s/server.key", dir);
    snprintf (client_secret, sizeof client_secret, "SB_CURVE_CLIENT_CERT=%s/alice.key_secret", dir);
    snprintf (client_public, sizeof client_public, "SB_CURVE_CLIENT_CERT=%s/allowed/alice.key",
              dir);
    snprintf (allowed, sizeof allowed, "SB_CURVE_ALLOWED=%s/allowed", dir);
    snprintf (missing, sizeof missing, "SB_CURVE_SERVER_SECRET=%s/no-such.key_secret", dir);
    snprintf (notdir, sizeof notdir, "SB_CURVE_ALLOWED=%s/server.key", dir);
    snprintf (garbage, sizeof garbage, "%s/garbage.key", dir);
    FILE *f = fopen (garbage, "w");
    CHECK (f && fputs ("this is not a certificate\n", f) >= 0);
    if (f)
        fclose (f);
    snprintf (garbage, sizeof garbage, "SB_CURVE_SERVER_SECRET=%s/garbage.key", dir);
    //  A public certificate whose name ends in _secret: no secret inside.
    char path[700];
    snprintf (path, sizeof path, "%s/public.key_secret", dir);
    zcert_t *cert = zcert_load (strchr (server_public, '=') + 1);
    CHECK (cert && zcert_save_public (cert, path) == 0);
    snprintf (pub_only, sizeof pub_only, "SB_CURVE_SERVER_SECRET=%s", path);
    //  A secret key with someone else's public key.
    zcert_t *other = zcert_new ();
    zcert_t *mixed =
        cert && other ? zcert_new_from (zcert_public_key (other), zcert_secret_key (cert)) : NULL;
    snprintf (path, sizeof path, "%s/mixed.key", dir);
    CHECK (mixed && zcert_save (mixed, path) == 0);
    snprintf (mismatch, sizeof mismatch, "SB_CURVE_SERVER_SECRET=%s/mixed.key_secret", dir);
    zcert_destroy (&mixed);
    zcert_destroy (&other);

    //  What goes together.
    s_refused ("SB_CURVE_ALLOWED", "SB_CURVE_SERVER_SECRET", NULL, allowed, NULL);
    s_refused ("SB_CURVE_ALLOWED", "directory", NULL, server_secret, NULL);
    s_refused ("SB_CURVE_CLIENT_CERT", "SB_CURVE_SERVER_PUBLIC", NULL, client_secret, NULL);
    s_refused ("SB_CURVE_CLIENT_CERT", "key pair", NULL, server_public, NULL);
    //  Bad files and values; a secret setting's value is never echoed.
    s_refused ("SB_CURVE_SERVER_SECRET", "cannot open", "no-such", missing, allowed, NULL);
    s_refused ("SB_CURVE_SERVER_SECRET", "not a certificate", "garbage", garbage, allowed, NULL);
    s_refused ("SB_CURVE_SERVER_SECRET", "public key only", NULL, pub_only, allowed, NULL);
    s_refused ("SB_CURVE_SERVER_SECRET", "do not match", NULL, mismatch, allowed, NULL);
    s_refused ("SB_CURVE_SERVER_SECRET", NULL, "z85-but-39-characters-long-is-not-a-key",
               "SB_CURVE_SERVER_SECRET=z85-but-39-characters-long-is-not-a-key", allowed, NULL);
    s_refused ("SB_CURVE_ALLOWED", "not a directory", NULL, server_secret, notdir, NULL);
    s_refused ("SB_CURVE_ALLOWED", "No such file", NULL, server_secret,
               "SB_CURVE_ALLOWED=/nonexistent/sb-allowed", NULL);
    //  A public certificate is not a key pair.
    s_refused ("SB_CURVE_CLIENT_CERT", "public key only", NULL, server_public, client_public, NULL);
    s_refused ("SB_CURVE_SERVER_PUBLIC", "cannot open", NULL,
               "SB_CURVE_SERVER_PUBLIC=/nonexistent/server.key", client_secret, NULL);
    //  40 characters, but not Z85 (a space, a quote, a tilde).
    s_refused ("SB_CURVE_SERVER_PUBLIC", NULL, NULL,
               "SB_CURVE_SERVER_PUBLIC=abcdefghij abcdefghij\"abcdefghij~abcdefg", client_secret,
               NULL);
    s_refused ("SB_ZMQ_ALLOW_PLAINTEXT", NULL, NULL, "SB_ZMQ_ALLOW_PLAINTEXT=maybe", NULL);

    //  Accepted forms: Z85 keys instead of files, and a certificate's text
    //  (what NAME_FILE pointing at NAME.key_secret gives).
    char err[512];
    char key_secret[128], key_public[128], cert_file[600];
    snprintf (key_secret, sizeof key_secret, "SB_CURVE_SERVER_SECRET=%s", zcert_secret_txt (cert));
    snprintf (key_public, sizeof key_public, "SB_CURVE_SERVER_PUBLIC=%s", zcert_public_txt (cert));
    snprintf (cert_file, sizeof cert_file, "SB_CURVE_CLIENT_CERT_FILE=%s/alice.key_secret", dir);
    sb_zmq_security_t *sec =
        s_security (err, sizeof err, key_secret, allowed, key_public, cert_file, NULL);
    if (!sec)
        fprintf (stderr, "%s:%d: refused: %s\n", __FILE__, __LINE__, err);
    CHECK (sec && sb_zmq_security_server (sec) && sb_zmq_security_client (sec));
    sb_zmq_security_destroy (&sec);
    CHECK (sec == NULL);
    sb_zmq_security_destroy (&sec);  //  a no-op on NULL
    sec = s_security (err, sizeof err, NULL);
    CHECK (sec && !sb_zmq_security_server (sec) && !sb_zmq_security_client (sec));
    sb_zmq_security_destroy (&sec);
    zcert_destroy (&cert);
}

static void
s_check_plaintext_guard (void)
{
    char err[512];
    sb_zmq_security_t *plain = s_security (err, sizeof err, NULL);
    sb_zmq_security_t *allow = s_security (err, sizeof err, "SB_ZMQ_ALLOW_PLAINTEXT=1", NULL);
    CHECK (plain && allow);
    zsock_t *sock = zsock_new (ZMQ_PUB);
    CHECK (sb_zmq_bind (plain, sock, "PUB", "SB_PUB", "tcp://0.0.0.0:*") == -1);
    CHECK (sb_zmq_bind (NULL, sock, "PUB", "SB_PUB", "tcp://*:*") == -1);
    //  One remote endpoint in a list: nothing at all is bound.
    CHECK (sb_zmq_bind (plain, sock, "PUB", "SB_PUB", "tcp://127.0.0.1:*,tcp://0.0.0.0:*") == -1);
    char *last = zsock_last_endpoint (sock);
    CHECK (last == NULL || *last == 0);
    zstr_free (&last);
    CHECK (sb_zmq_bind (plain, sock, "PUB", "SB_PUB", "tcp://127.0.0.1:*,ipc://@sb-test-zmq") == 0);
    zsock_destroy (&sock);
    sock = zsock_new (ZMQ_PUB);
    CHECK (sb_zmq_bind (allow, sock, "PUB", "SB_PUB", "tcp://0.0.0.0:*") == 0);
    //  A bind that fails for another reason (the port is taken) fails too.
    CHECK (sb_zmq_bind (allow, sock, "PUB", "SB_PUB", "tcp://127.0.0.1:*") == 0);
    zsock_t *other = zsock_new (ZMQ_PUB);
    char *taken = zsock_last_endpoint (sock);
    CHECK (taken && sb_zmq_bind (allow, other, "PUB", "SB_PUB", taken) == -1);
    zstr_free (&taken);
    zsock_destroy (&other);
    zsock_destroy (&sock);
    sb_zmq_security_destroy (&plain);
    sb_zmq_security_destroy (&allow);
}

//  Messages a SUB received within ms milliseconds.
static int
s_drain (zsock_t *sub, int ms)
{
    int got = 0;
    zpoller_t *poller = zpoller_new (sub, NULL);
    int64_t end = zclock_mono () + ms;
    while (zclock_mono () < end) {
        if (zpoller_wait (poller, 20) == sub) {
            char *text = zstr_recv (sub);
            got += text && streq (text, "secret news");
            zstr_free (&text);
        }
    }
    zpoller_destroy (&poller);
    return got;
}

//  Publish until the client receives, at most 5 s. True when it did.
static bool
s_receives (zsock_t *pub, zsock_t *sub)
{
    zpoller_t *poller = zpoller_new (sub, NULL);
    bool got = false;
    for (int i = 0; i < 100 && !got; i++) {
        zstr_send (pub, "secret news");
        if (zpoller_wait (poller, 50) == sub) {
            char *text = zstr_recv (sub);
            got = text && streq (text, "secret news");
            zstr_free (&text);
        }
    }
    zpoller_destroy (&poller);
    return got;
}

static zsock_t *
s_sub (const sb_zmq_security_t *sec, const char *endpoint)
{
    zsock_t *sub = zsock_new (ZMQ_SUB);
    zsock_set_subscribe (sub, "");
    CHECK (sb_zmq_connect (sec, sub, "SUB", NULL, endpoint) == 0);
    return sub;
}

static void
s_check_round_trip (const char *dir)
{
    char err[512], secret[600], allowed[600], server_public[600], alice[600], mallory[600],
        path[600];
    snprintf (secret, sizeof secret, "SB_CURVE_SERVER_SECRET=%s/server.key_secret", dir);
    snprintf (allowed, sizeof allowed, "SB_CURVE_ALLOWED=%s/allowed", dir);
    snprintf (server_public, sizeof server_public, "SB_CURVE_SERVER_PUBLIC=%s/server.key", dir);
    snprintf (alice, sizeof alice, "SB_CURVE_CLIENT_CERT=%s/alice.key_secret", dir);
    snprintf (mallory, sizeof mallory, "SB_CURVE_CLIENT_CERT=%s/mallory.key_secret", dir);
    sb_zmq_security_t *server = s_security (err, sizeof err, secret, allowed, NULL);
    if (!server)
        fprintf (stderr, "%s:%d: server refused: %s\n", __FILE__, __LINE__, err);
    sb_zmq_security_t *good = s_security (err, sizeof err, server_public, alice, NULL);
    sb_zmq_security_t *unknown = s_security (err, sizeof err, server_public, mallory, NULL);
    sb_zmq_security_t *plain = s_security (err, sizeof err, NULL);
    CHECK (server && good && unknown && plain);
    if (!server || !good || !unknown || !plain)
        goto done;

    zsock_t *pub = zsock_new (ZMQ_PUB);
    //  CURVE on: a non-loopback bind is fine too.
    CHECK (sb_zmq_bind (server, pub, "PUB", "SB_PUB", "tcp://127.0.0.1:*") == 0);
    char *endpoint = zsock_last_endpoint (pub);
    CHECK (endpoint != NULL);
    zsock_t *sub_good = s_sub (good, endpoint);
    zsock_t *sub_unknown = s_sub (unknown, endpoint);
    zsock_t *sub_plain = s_sub (plain, endpoint);
    CHECK (s_receives (pub, sub_good));
    s_drain (sub_good, 200);
    //  The admitted client keeps receiving; the others get nothing.
    for (int i = 0; i < 10; i++)
        zstr_send (pub, "secret news");
    CHECK (s_drain (sub_good, 300) == 10);
    for (int i = 0; i < 20; i++) {
        zstr_send (pub, "secret news");
        zclock_sleep (25);
    }
    CHECK (s_drain (sub_unknown, 200) == 0);
    CHECK (s_drain (sub_plain, 200) == 0);

    //  Admit mallory by copying its public certificate: no restart.
    snprintf (path, sizeof path, "%s/mallory.key", dir);
    zcert_t *cert = zcert_load (path);
    snprintf (path, sizeof path, "%s/allowed/mallory.key", dir);
    CHECK (cert && zcert_save_public (cert, path) == 0);
    zcert_destroy (&cert);
    zsock_t *sub_later = s_sub (unknown, endpoint);
    CHECK (s_receives (pub, sub_later));
    zsock_destroy (&sub_later);

    zsock_destroy (&sub_good);
    zsock_destroy (&sub_unknown);
    zsock_destroy (&sub_plain);
    zsock_destroy (&pub);
    zstr_free (&endpoint);
done:
    sb_zmq_security_destroy (&plain);
    sb_zmq_security_destroy (&unknown);
    sb_zmq_security_destroy (&good);
    sb_zmq_security_destroy (&server);
}

int
main (void)
{
    sb_log_init ("test", SB_LOG_OFF);
    zsys_init ();
    s_check_local ();

    char dir[] = "/tmp/sb-test-zmq-XXXXXX";
    CHECK (mkdtemp (dir) != NULL);
    char allowed[600];
    snprintf (allowed, sizeof allowed, "%s/allowed", dir);
    CHECK (mkdir (allowed, 0700) == 0);
    s_keygen (dir, "server");
    s_keygen (dir, "alice");
    s_keygen (dir, "mallory");
    s_keygen (allowed, "alice");
    //  only alice's public certificate stays in allowed/
    char path[700];
    snprintf (path, sizeof path, "%s/alice.key_secret", allowed);
    CHECK (unlink (path) == 0);
    //  and it must be alice's own key
    snprintf (path, sizeof path, "%s/alice.key", dir);
    zcert_t *cert = zcert_load (path);
    snprintf (path, sizeof path, "%s/alice.key", allowed);
    CHECK (cert && zcert_save_public (cert, path) == 0);
    zcert_destroy (&cert);

    s_check_settings (dir);
    s_check_plaintext_guard ();
    s_check_round_trip (dir);

    char command[700];
    snprintf (command, sizeof command, "rm -rf '%s'", dir);
    CHECK (system (command) == 0);
    zsys_shutdown ();
    if (s_failures)
        fprintf (stderr, "test_sb_zmq: %d failure(s)\n", s_failures);
    return s_failures ? 1 : 0;
}

/*  switchboard-dispatcher: subscribes to the ingresses, stores every event
    in PostgreSQL once, runs the reply rules, and sends the replies through
    the providers' APIs from a transactional outbox.

    main is thin: config, rules, the ZeroMQ security (CURVE keys, zauth),
    migrations, then the actors (outcome publisher, delivery, ingest) and
    the status server; on SIGTERM or SIGINT it tears down in reverse order
    and exits 0.
*/
#include <czmq.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "sb_config.h"
#include "sb_delivery.h"
#include "sb_ingest.h"
#include "sb_log.h"
#include "sb_metrics.h"
#include "sb_outpub.h"
#include "sb_partition.h"
#include "sb_rules.h"
#include "sb_status_http.h"
#include "sb_stop.h"
#include "sb_store.h"
#include "sb_zmq.h"

#define S_OUTCOMES "inproc://sb-outcomes"

//  This dispatcher's name (SB_DISPATCHER_ID, or the host name and a random
//  suffix) into id. 0, or -1 when the configured one is too long (said).
static int
s_dispatcher_id (const sb_config_t *config, char *id, size_t size)
{
    if (sb_config_has (config, SB_CFG_SB_DISPATCHER_ID)) {
        const char *given = sb_config_str (config, SB_CFG_SB_DISPATCHER_ID);
        if (!*given || strlen (given) >= size) {
            fprintf (stderr,
                     "switchboard-dispatcher: configuration error: SB_DISPATCHER_ID: expected 1 "
                     "to %zu characters\n",
                     size - 1);
            return -1;
        }
        snprintf (id, size, "%s", given);
        return 0;
    }
    char host[HOST_NAME_MAX + 1] = "";
    if (gethostname (host, sizeof host) != 0)
        host[0] = 0;
    host[sizeof host - 1] = 0;
    uint32_t bits = 0;
    if (RAND_bytes ((unsigned char *) &bits, sizeof bits) != 1)
        bits = (uint32_t) getpid () ^ (uint32_t) zclock_time ();
    sb_partition_default_id (id, size, host, bits);
    return 0;
}

#define S_WAKE "inproc://sb-delivery-wake"

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "Usage: switchboard-dispatcher [--migrate-only] [--check-rules] [--help] [--version]\n\n"
        "Subscribes to switchboard-ingress event streams, stores each event in PostgreSQL\n"
        "exactly once, applies the reply rules and sends replies through Twilio and Meta.\n\n"
        "  --migrate-only  apply the database migrations and exit\n"
        "  --check-rules   load SB_RULES, report problems, and exit\n\n");
    sb_config_print_help (SB_SVC_DISPATCHER, out);
    char dir[PATH_MAX];
    sb_store_migrations_default (dir, sizeof dir, SB_BUILD_BIN_DIR);
    fprintf (out, "  (SB_MIGRATIONS_DIR unset: %s)\n", dir);
}

typedef struct {
    sb_ingest_t *ingest;
    sb_delivery_t *delivery;
} s_parts_t;

static bool
s_ready (void *arg, const char **why)
{
    s_parts_t *parts = (s_parts_t *) arg;
    //  Each is the age of the actor's last PostgreSQL success: a thread
    //  blocked on a hung server cannot say so itself.
    if (!parts->ingest || !sb_ingest_ready (parts->ingest)) {
        *why = "PostgreSQL is not accepting writes";
        return false;
    }
    if (!parts->delivery || !sb_delivery_ready (parts->delivery)) {
        *why = "the outbox worker has no PostgreSQL connection";
        return false;
    }
    return true;
}

//  Apply the migrations, waiting for PostgreSQL while it starts (once
//  only: `once`). 0 or -1.
static int
s_migrate (const char *conninfo, int timeout_ms, const char *dir, bool once)
{
    bool logged = false;
    while (!sb_stop_wait (0)) {
        sb_store_t *store = sb_store_new (conninfo, timeout_ms);
        int rc = store ? sb_store_migrate (store, dir) : -1;
        sb_store_destroy (&store);
        if (rc == 0)
            return 0;
        if (once)
            return -1;
        if (!logged)
            sb_warn ("main", "cannot migrate yet: waiting for PostgreSQL (retrying every second)");
        logged = true;
        sb_stop_wait (1000);
    }
    return -1;
}

//  SB_API_CA_FILE, when set, must hold at least one PEM certificate: a
//  wrong path would otherwise fail every send as a TLS error, one by one.
//  0, or -1 with the reason in err.
static int
s_check_ca_file (const sb_config_t *config, char *err, size_t size)
{
    if (!sb_config_has (config, SB_CFG_SB_API_CA_FILE))
        return 0;
    const char *path = sb_config_str (config, SB_CFG_SB_API_CA_FILE);
    FILE *f = fopen (path, "r");
    if (!f) {
        snprintf (err, size, "SB_API_CA_FILE: cannot open %s: %s", path, strerror (errno));
        return -1;
    }
    int certs = 0;
    X509 *cert;
    while ((cert = PEM_read_X509 (f, NULL, NULL, NULL))) {
        X509_free (cert);
        certs++;
    }
    fclose (f);
    if (certs == 0) {
        snprintf (err, size, "SB_API_CA_FILE: %s holds no PEM certificate", path);
        return -1;
    }
    return 0;
}

int
main (int argc, char **argv)
{
    bool migrate_only = false, check_rules = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--help") || !strcmp (argv[i], "-h")) {
            s_usage (stdout);
            return 0;
        }
        else if (!strcmp (argv[i], "--version")) {
            printf ("switchboard-dispatcher %s\n", SB_VERSION);
            return 0;
        }
        else if (!strcmp (argv[i], "--migrate-only"))
            migrate_only = true;
        else if (!strcmp (argv[i], "--check-rules"))
            check_rules = true;
        else {
            fprintf (stderr, "switchboard-dispatcher: unknown argument %s (try --help)\n", argv[i]);
            return 2;
        }
    }
    //  SIGINT and SIGTERM go to this thread alone (sb_stop.h): before any
    //  other thread exists.
    sb_stop_init ();
    char err[512];
    sb_config_t *config = sb_config_load (SB_SVC_DISPATCHER, err, sizeof err);
    if (!config) {
        fprintf (stderr, "switchboard-dispatcher: configuration error: %s\n", err);
        return 2;
    }
    sb_log_init ("dispatcher", (sb_log_level_t) sb_config_int (config, SB_CFG_SB_LOG_LEVEL));
    char migrations_default[PATH_MAX];
    sb_store_migrations_default (migrations_default, sizeof migrations_default, SB_BUILD_BIN_DIR);
    const char *migrations = sb_config_has (config, SB_CFG_SB_MIGRATIONS_DIR)
                                 ? sb_config_str (config, SB_CFG_SB_MIGRATIONS_DIR)
                                 : migrations_default;

    sb_rules_t *rules = NULL;
    if (sb_config_has (config, SB_CFG_SB_RULES)) {
        rules = sb_rules_load (sb_config_str (config, SB_CFG_SB_RULES), err, sizeof err);
        if (!rules) {
            fprintf (stderr, "switchboard-dispatcher: SB_RULES: %s\n", err);
            sb_config_destroy (&config);
            return 2;
        }
        sb_info ("main", "rules loaded file=%s rules=%zu", sb_config_str (config, SB_CFG_SB_RULES),
                 sb_rules_count (rules));
    }
    else
        sb_warn ("main", "SB_RULES is not set: events are stored, no reply is sent");
    if (check_rules) {
        printf ("%s: %zu rules, ok\n", sb_config_str (config, SB_CFG_SB_RULES),
                rules ? sb_rules_count (rules) : 0);
        sb_rules_destroy (&rules);
        sb_config_destroy (&config);
        return 0;
    }

    zsys_handler_set (NULL);
    zsys_set_linger (1000);
    signal (SIGPIPE, SIG_IGN);

    const char *conninfo = sb_config_str (config, SB_CFG_DATABASE_URL);
    int status = 1;
    char id[SB_PARTITION_ID_SIZE];
    if (s_check_ca_file (config, err, sizeof err) != 0) {
        fprintf (stderr, "switchboard-dispatcher: configuration error: %s\n", err);
        sb_config_destroy (&config);
        sb_rules_destroy (&rules);
        return 2;
    }
    if (s_dispatcher_id (config, id, sizeof id) != 0) {
        sb_config_destroy (&config);
        sb_rules_destroy (&rules);
        return 2;
    }
    //  CURVE keys and zauth before any socket is bound or connected.
    sb_zmq_security_t *security = NULL;
    if (!migrate_only) {
        security = sb_zmq_security_new (config, err, sizeof err);
        if (!security) {
            fprintf (stderr, "switchboard-dispatcher: configuration error: %s\n", err);
            status = 2;
            goto done;
        }
    }
    //  From here on only sb_log writes to stderr: actors storing and sending
    //  must not wait for it, so a log thread writes their lines (sb_log.c).
    if (sb_log_start () != 0)
        fprintf (stderr,
                 "switchboard-dispatcher: cannot start the log thread; logging synchronously\n");
    if (s_migrate (conninfo, (int) sb_config_int (config, SB_CFG_SB_PG_TIMEOUT_MS), migrations,
                   migrate_only)) {
        if (!sb_stop_wait (0))
            sb_error ("main", "migrations failed dir=%s", migrations);
        else
            status = 0;
        goto done;
    }
    if (migrate_only) {
        sb_info ("main", "migrations applied dir=%s", migrations);
        status = 0;
        goto done;
    }

    sb_metrics_t *metrics = sb_metrics_new ();
    sb_outpub_t *outpub = NULL;
    s_parts_t parts = {NULL, NULL};
    sb_status_http_t *http = NULL;
    if (!metrics)
        goto teardown;
    outpub = sb_outpub_new (S_OUTCOMES, sb_config_str (config, SB_CFG_SB_DISPATCHER_PUB), security);
    if (!outpub)
        goto teardown;
    parts.delivery = sb_delivery_new (config, metrics, S_OUTCOMES, S_WAKE, id);
    if (!parts.delivery)
        goto teardown;
    //  SB_STORE_SPLIT: store the held partitions' events only (NULL: all).
    parts.ingest = sb_ingest_new (config, security, rules, metrics, S_OUTCOMES, S_WAKE, id,
                                  sb_config_int (config, SB_CFG_SB_STORE_SPLIT)
                                      ? sb_delivery_partitions (parts.delivery)
                                      : NULL);
    if (!parts.ingest)
        goto teardown;
    http = sb_status_http_new (sb_config_str (config, SB_CFG_SB_DISPATCHER_LISTEN), metrics,
                               s_ready, &parts);
    if (!http)
        goto teardown;
    sb_info ("main", "ready id=%s ingress_pub=%s dispatcher_pub=%s listen=%s", id,
             sb_config_str (config, SB_CFG_SB_INGRESS_PUB),
             sb_config_str (config, SB_CFG_SB_DISPATCHER_PUB),
             sb_config_str (config, SB_CFG_SB_DISPATCHER_LISTEN));
    sb_stop_wait (-1);
    sb_info ("main", "stopping");
    status = 0;
teardown:
    sb_status_http_destroy (&http);
    sb_ingest_destroy (&parts.ingest);
    sb_delivery_destroy (&parts.delivery);
    sb_outpub_destroy (&outpub);
    sb_metrics_destroy (&metrics);
done:
    sb_zmq_security_destroy (&security);
    sb_rules_destroy (&rules);
    sb_config_destroy (&config);
    zsys_shutdown ();
    if (status == 0)
        sb_info ("main", "stopped");
    sb_log_stop ();
    return status;
}

/*  switchboard doctor: check, before going live, what the services will
    read and reach, and say what to do about each thing that is wrong.

    It reads the same environment as the services (sb_config) and runs the
    checks of s_checks[] in order, one line each, ✅ or ❌, naming the
    variable or component, and for a ❌ what to do; --json prints the same
    results as a JSON array of {name, ok, detail, fix}. Exit 0 when every
    check passed, 1 otherwise, 2 for bad flags.

    The checks, local only:
      settings     each service's sb_config_load, sb_zmq_security_new (CURVE
                   keys) and the dispatcher's SB_RULES: the very code the
                   services run at start, so the message is theirs
      secrets      Twilio and Meta credentials present, well formed, not a
                   placeholder, and not var/dev.env's development values
                   when SB_PUBLIC_URL's host is public
      public URL   SB_PUBLIC_URL set, https unless loopback, and the webhook
                   URL of every provider route (common/sb_routes.h)
      PostgreSQL   DATABASE_URL reachable, schema_migrations holding every
                   migration this install has (the dispatcher's list)
      journal      SB_JOURNAL_DIR writable, its free space
      services     the ingress's and the dispatcher's /healthz and /readyz
      self-test    a status callback signed with the configured secrets by
                   `switchboard send` (this binary, run as a child) posted
                   to the local ingress answers 200, then is found in
                   PostgreSQL by its provider id
    Provider API checks (a number's webhook URLs, Meta's subscriptions) are
    further entries of s_checks[]; a check reads what earlier ones learned
    from s_doctor_t.

    PostgreSQL through libpq directly, not sb_store: sb_store_new logs why a
    connection failed and returns NULL, while doctor must print the reason
    in its line. The connection has connect_timeout, and every query is
    sent asynchronously and waited for with poll() until the deadline;
    statement_timeout makes the server give up first. The migration list
    and its default directory are the dispatcher's (sb_store.h).

    Every network wait has a deadline: --timeout per request (default 5 s),
    and S_STORED_WAIT_S for the self-test's event to reach PostgreSQL. The
    self-test leaves one status event (provider id SM... or wamid...) for a
    message that does not exist: it matches no reply rule.
*/
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "sb_cli.h"
#include "sb_cmd.h"
#include "sb_fakeprov.h"
#include "sb_log.h"
#include "sb_provider_api.h"
#include "sb_rules.h"
#include "sb_store.h"
#include "sb_text.h"
#include "sb_time.h"
#include "sb_zmq.h"

extern char **environ;

#define S_CMD "doctor"
#define S_DEFAULT_TIMEOUT 5.0  //  seconds per network wait
#define S_MAX_TIMEOUT 300.0    //  --timeout's ceiling
#define S_STORED_WAIT_S 10     //  the self-test's event reaching PostgreSQL
#define S_MIN_FREE_SEGMENTS 2  //  ❌ below this many journal segments of free space
#define S_MAX_ANSWER 4096      //  answer bytes kept from /healthz and /readyz
#define S_MAX_DEV_ENV 64       //  lines read from var/dev.env
#define S_DEV_ENV "var/dev.env"

//  One check's outcome (strings owned).
typedef struct {
    char *name;    //  the variable or component
    bool ok;       //  passed
    bool skipped;  //  not run, for want of the settings it needs (counts as passed)
    char *detail;  //  what was found
    char *fix;     //  what to do, NULL when ok
} s_result_t;

//  What the checks share, filled in as they run.
typedef struct {
    bool json;                 //  --json
    double timeout;            //  --timeout, seconds per network wait
    const char *dev_env_path;  //  --dev-env
    sb_config_t *config;       //  every setting (ingress, dispatcher, CLI); NULL if refused
    sb_config_t *dev;          //  var/dev.env's settings, NULL when absent
    char *dev_lines[S_MAX_DEV_ENV + 1];  //  its NAME=value lines (owned)
    s_result_t *results;                 //  checks so far
    size_t count;                        //  used in results
    size_t cap;                          //  allocated in results
    bool public_host;                    //  SB_PUBLIC_URL names a host beyond this network
    bool urls_known;                     //  SB_PUBLIC_URL passed: the webhook URLs are known
    PGconn *pg;                          //  connected and migrated, else NULL
    bool ingress_up;                     //  the ingress's /healthz answered 200
    bool dispatcher_ready;               //  the dispatcher's /readyz answered 200
    char selftest_id[128];               //  provider id the self-test posted and got 200 for
} s_doctor_t;

typedef void (s_check_fn) (s_doctor_t *self);

//  ---------------------------------------------------------------------
//  Results

static char *s_vformat (const char *fmt, va_list args) __attribute__ ((format (printf, 1, 0)));

static char *
s_vformat (const char *fmt, va_list args)
{
    char *text = NULL;
    if (fmt && vasprintf (&text, fmt, args) < 0)
        text = NULL;
    return text;
}

static void
s_print_result (const s_result_t *r)
{
    printf ("%s %s: %s", r->skipped ? "➖" : r->ok ? "✅" : "❌", r->name, r->detail ? r->detail : "");
    if (!r->ok && r->fix)
        printf (" → %s", r->fix);
    printf ("\n");
    fflush (stdout);
}

//  Record one check (and print it unless --json). fix is for a failure;
//  detail is printf-formatted.
static void s_add (s_doctor_t *self, bool ok, const char *name, const char *fix, const char *fmt,
                   ...) __attribute__ ((format (printf, 5, 6)));

static void
s_add (s_doctor_t *self, bool ok, const char *name, const char *fix, const char *fmt, ...)
{
    if (self->count == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 32;
        s_result_t *grown = realloc (self->results, cap * sizeof *grown);
        if (!grown) {
            fprintf (stderr, "switchboard doctor: out of memory\n");
            exit (SB_CLI_FAILED);
        }
        self->results = grown;
        self->cap = cap;
    }
    va_list args;
    va_start (args, fmt);
    s_result_t *r = &self->results[self->count++];
    *r = (s_result_t){strdup (name), ok, false, s_vformat (fmt, args),
                      ok || !fix ? NULL : strdup (fix)};
    va_end (args);
    if (!self->json)
        s_print_result (r);
}

static void s_fail (s_doctor_t *self, const char *name, const char *fix, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

static void
s_fail (s_doctor_t *self, const char *name, const char *fix, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char *detail = s_vformat (fmt, args);
    va_end (args);
    s_add (self, false, name, fix, "%s", detail ? detail : "");
    free (detail);
}

//  A check not run for want of settings: one ➖ line saying which.
static void s_skip (s_doctor_t *self, const char *name, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static void
s_skip (s_doctor_t *self, const char *name, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char *detail = s_vformat (fmt, args);
    va_end (args);
    bool json = self->json;
    self->json = true;  //  recorded, printed below with its mark
    s_add (self, true, name, NULL, "%s", detail ? detail : "");
    self->json = json;
    free (detail);
    self->results[self->count - 1].skipped = true;
    if (!self->json)
        s_print_result (&self->results[self->count - 1]);
}

//  ---------------------------------------------------------------------
//  Settings: the services' own start-up code

static void
s_check_service (s_doctor_t *self, unsigned service, const char *binary)
{
    char err[512];
    char name[64];
    snprintf (name, sizeof name, "settings of %s", binary);
    sb_config_t *config = sb_config_load (service, err, sizeof err);
    if (!config) {
        s_fail (self, name, "correct the variable named (README, \"Configuration\")",
                "%s: configuration error: %s", binary, err);
        return;
    }
    s_add (self, true, name, NULL, "accepted");
    if (service & (SB_SVC_INGRESS | SB_SVC_DISPATCHER)) {
        snprintf (name, sizeof name, "CURVE keys of %s", binary);
        bool curve = sb_config_has (config, SB_CFG_SB_CURVE_SERVER_SECRET)
                     || sb_config_has (config, SB_CFG_SB_CURVE_SERVER_PUBLIC);
        sb_zmq_security_t *security = sb_zmq_security_new (config, err, sizeof err);
        if (!security)
            s_fail (self, name,
                    "correct the CURVE setting named (README, \"Running the services on "
                    "separate hosts\"; switchboard keygen writes key pairs)",
                    "%s: configuration error: %s", binary, err);
        else
            s_add (self, true, name, NULL, "%s",
                   curve ? "valid" : "not configured (ZeroMQ stays on loopback)");
        sb_zmq_security_destroy (&security);
    }
    if ((service & SB_SVC_DISPATCHER) && sb_config_has (config, SB_CFG_SB_RULES)) {
        sb_rules_t *rules =
            sb_rules_load (sb_config_str (config, SB_CFG_SB_RULES), err, sizeof err);
        if (!rules)
            s_fail (self, "SB_RULES", "correct the rules file (examples/rules.yaml shows the form)",
                    "%s: SB_RULES: %s", binary, err);
        else
            s_add (self, true, "SB_RULES", NULL, "%s: %zu rules",
                   sb_config_str (config, SB_CFG_SB_RULES), sb_rules_count (rules));
        sb_rules_destroy (&rules);
    }
    sb_config_destroy (&config);
}

static void
s_check_settings (s_doctor_t *self)
{
    s_check_service (self, SB_SVC_INGRESS, "switchboard-ingress");
    s_check_service (self, SB_SVC_DISPATCHER, "switchboard-dispatcher");
    s_check_service (self, SB_SVC_CLI, "switchboard");
}

//  ---------------------------------------------------------------------
//  Secrets

//  Why value looks like a placeholder copied from a guide, or NULL.
static const char *
s_placeholder (const char *value)
{
    static const char *words[] = {"changeme",  "change_me",  "change-me", "placeholder",
                                  "replaceme", "replace_me", "todo",      "secret",
                                  "token",     "password",   "example"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcasecmp (value, words[i]) == 0)
            return "a placeholder word";
    if (strncasecmp (value, "your_", 5) == 0 || strncasecmp (value, "your-", 5) == 0
        || strchr (value, '<') || strchr (value, '>'))
        return "a placeholder (your_... or <...>)";
    size_t xs = strspn (value, "xX*.");
    if (xs >= 3 && value[xs] == 0)
        return "a placeholder (x's only)";
    //  AC/SK followed by x's only: a SID with its digits blanked out.
    if (strlen (value) > 4 && strspn (value + 2, "xX") == strlen (value + 2))
        return "a placeholder (a prefix and x's)";
    return NULL;
}

static bool
s_hex (const char *text, size_t len)
{
    if (strlen (text) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (sb_text_hex_value ((unsigned char) text[i]) < 0)
            return false;
    return true;
}

//  Check one credential: present when required, shaped as form says
//  (prefix + hex digits, or anything non-empty when hex_digits is 0), not
//  a placeholder, not var/dev.env's value on a public host.
static void
s_check_credential (s_doctor_t *self, sb_setting_t setting, bool required, const char *prefix,
                    size_t hex_digits, const char *where)
{
    const char *name = sb_config_name (setting);
    char fix[512];
    snprintf (fix, sizeof fix, "set %s (or %s_FILE) to %s", name, name, where);
    if (!sb_config_has (self->config, setting)) {
        if (required)
            s_fail (self, name, fix, "not set");
        return;
    }
    const char *value = sb_config_str (self->config, setting);
    const char *why = s_placeholder (value);
    if (why) {
        s_fail (self, name, fix, "is %s, not a real credential", why);
        return;
    }
    size_t plen = strlen (prefix);
    if (hex_digits && (strncmp (value, prefix, plen) != 0 || !s_hex (value + plen, hex_digits))) {
        s_fail (self, name, fix,
                "malformed: expected %s%s%zu hexadecimal digits (%zu characters given)", prefix,
                plen ? " and " : "", hex_digits, strlen (value));
        return;
    }
    if (self->public_host && self->dev && sb_config_has (self->dev, setting)
        && strcmp (sb_config_str (self->dev, setting), value) == 0) {
        s_fail (self, name, fix,
                "is the development value of %s while SB_PUBLIC_URL's host is public",
                self->dev_env_path);
        return;
    }
    s_add (self, true, name, NULL, "%s", hex_digits ? "well formed" : "set");
}

static void
s_check_secrets (s_doctor_t *self)
{
    const sb_config_t *c = self->config;
    bool twilio = sb_config_has (c, SB_CFG_TWILIO_ACCOUNT_SID)
                  || sb_config_has (c, SB_CFG_TWILIO_AUTH_TOKEN)
                  || sb_config_has (c, SB_CFG_TWILIO_API_KEY);
    bool meta = sb_config_has (c, SB_CFG_META_APP_SECRET)
                || sb_config_has (c, SB_CFG_META_VERIFY_TOKEN)
                || sb_config_has (c, SB_CFG_META_ACCESS_TOKEN);
    if (!twilio && !meta) {
        s_fail (self, "provider secrets",
                "set the Twilio (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN) or Meta (META_APP_SECRET, "
                "META_VERIFY_TOKEN, META_ACCESS_TOKEN) secrets",
                "neither Twilio's nor Meta's are set: every webhook would be refused");
        return;
    }
    if (twilio) {
        s_check_credential (self, SB_CFG_TWILIO_ACCOUNT_SID, true, "AC", 32,
                            "the Account SID of the Twilio Console (AC + 32 hex digits)");
        s_check_credential (self, SB_CFG_TWILIO_AUTH_TOKEN, true, "", 32,
                            "the Auth Token of the Twilio Console (32 hex digits)");
        bool key = sb_config_has (c, SB_CFG_TWILIO_API_KEY);
        s_check_credential (self, SB_CFG_TWILIO_API_KEY, false, "SK", 32,
                            "an API key SID of the Twilio Console (SK + 32 hex digits)");
        s_check_credential (self, SB_CFG_TWILIO_API_SECRET, key, "", 0,
                            "the secret Twilio showed once when the API key was made");
        if (!key && sb_config_has (c, SB_CFG_TWILIO_API_SECRET))
            s_fail (self, "TWILIO_API_KEY", "set TWILIO_API_KEY to the SK... of TWILIO_API_SECRET",
                    "not set, but TWILIO_API_SECRET is");
    }
    if (meta) {
        s_check_credential (self, SB_CFG_META_APP_SECRET, true, "", 0,
                            "the App Secret of the Meta app (App settings > Basic)");
        s_check_credential (self, SB_CFG_META_VERIFY_TOKEN, true, "", 0,
                            "a random string, also given to Meta with the Callback URL");
        s_check_credential (self, SB_CFG_META_ACCESS_TOKEN, true, "", 0,
                            "a system user's access token with whatsapp_business_messaging");
    }
}

//  ---------------------------------------------------------------------
//  SB_PUBLIC_URL and the webhook URLs

static void
s_check_public_url (s_doctor_t *self)
{
    const char *name = "SB_PUBLIC_URL";
    if (!sb_config_has (self->config, SB_CFG_SB_PUBLIC_URL)) {
        s_fail (self, name,
                "set SB_PUBLIC_URL to the https URL the providers call (in development the "
                "tunnel's, e.g. https://abc.ngrok.app)",
                "not set: Twilio signatures are then checked against each request's Host header, "
                "which a proxy or tunnel changes (403)");
        return;
    }
    const char *url = sb_config_str (self->config, SB_CFG_SB_PUBLIC_URL);
    sb_url_scope_t scope = sb_provider_api_url_scope (url);
    self->public_host = scope == SB_URL_PUBLIC;
    char why[1024];
    if (sb_provider_api_public_url_check (self->config, why, sizeof why)) {
        char *fix = strstr (why, "; use https://");
        if (fix)
            *fix = 0;
        s_fail (self, name, fix ? fix + 2 : NULL, "%s", why);
        return;
    }
    //  sb_config drops a trailing '/': say so, the providers get the URLs below.
    const char *raw = getenv ("SB_PUBLIC_URL");
    bool slash = raw && *raw && raw[strlen (raw) - 1] == '/';
    const char *host_end = sb_text_url_host (url) + strcspn (sb_text_url_host (url), "/");
    s_add (self, true, name, NULL, "%s (%s host)%s%s%s", url,
           scope == SB_URL_PUBLIC    ? "public"
           : scope == SB_URL_PRIVATE ? "private"
                                     : "loopback",
           slash ? "; its trailing '/' is dropped: give the providers exactly the URLs below" : "",
           *host_end ? "; its path " : "",
           *host_end ? "must be removed by the proxy before the ingress" : "");
    self->urls_known = true;
#define SB_ROUTE(id, path, metric, allow, use)                                                     \
    {                                                                                              \
        char route_name[64], route_url[SB_PROVIDER_API_URL_SIZE];                                  \
        snprintf (route_name, sizeof route_name, "webhook URL %s", path);                          \
        sb_provider_api_webhook_url (self->config, SB_PROVIDER_##id, route_url, sizeof route_url); \
        s_add (self, true, route_name, NULL, "%s for %s", route_url, use);                         \
    }
#include "sb_routes.h"
#undef SB_ROUTE
    //  Replies of a public install must go to the providers, not a sandbox.
    if (self->public_host) {
        const sb_setting_t bases[] = {SB_CFG_TWILIO_API_BASE, SB_CFG_META_API_BASE};
        for (size_t i = 0; i < 2; i++) {
            if (sb_provider_api_url_scope (sb_config_str (self->config, bases[i]))
                != SB_URL_PUBLIC) {
                char fix[128];
                snprintf (fix, sizeof fix, "unset %s (its default is the provider's API)",
                          sb_config_name (bases[i]));
                s_fail (self, sb_config_name (bases[i]), fix,
                        "%s is not the provider: replies would go to a local sandbox",
                        sb_config_str (self->config, bases[i]));
            }
        }
    }
}

//  ---------------------------------------------------------------------
//  PostgreSQL

//  Wait until the socket of conn is ready, or the deadline. 1, 0 (late),
//  -1 (error).
static int
s_pg_wait (PGconn *conn, bool write, int64_t deadline_ms)
{
    int64_t left = deadline_ms - sb_time_mono_ms ();
    if (left <= 0)
        return 0;
    struct pollfd p = {PQsocket (conn), (short) (write ? POLLOUT : POLLIN), 0};
    int rc = poll (&p, 1, (int) left);
    return rc < 0 && errno == EINTR ? 0 : rc;
}

//  One query with one optional text parameter, sent and awaited within
//  the deadline. The result (caller PQclears), or NULL with why in err.
static PGresult *
s_pg_query (PGconn *conn, const char *sql, const char *param, int64_t deadline_ms, char *err,
            size_t err_size)
{
    const char *params[] = {param};
    if (!PQsendQueryParams (conn, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0)) {
        snprintf (err, err_size, "%s", PQerrorMessage (conn));
        return NULL;
    }
    int flushed;
    while ((flushed = PQflush (conn)) == 1)
        if (s_pg_wait (conn, true, deadline_ms) <= 0) {
            snprintf (err, err_size, "no answer within the deadline");
            return NULL;
        }
    PGresult *result = NULL, *r;
    while (true) {
        while (PQisBusy (conn)) {
            if (s_pg_wait (conn, false, deadline_ms) <= 0 || !PQconsumeInput (conn)) {
                snprintf (err, err_size, "no answer within the deadline");
                PQclear (result);
                return NULL;
            }
        }
        if (!(r = PQgetResult (conn)))
            break;
        if (result)
            PQclear (result);
        result = r;
    }
    if (!result || PQresultStatus (result) != PGRES_TUPLES_OK) {
        snprintf (err, err_size, "%s", result ? PQresultErrorMessage (result) : "no result");
        PQclear (result);
        return NULL;
    }
    return result;
}

//  The first line of a libpq message (they end with '\n').
static const char *
s_line (char *text)
{
    text[strcspn (text, "\n")] = 0;
    return text;
}

static void
s_check_postgres (s_doctor_t *self)
{
    const char *name = "PostgreSQL (DATABASE_URL)";
    int timeout_ms = (int) (self->timeout * 1000);
    char connect_s[16], ms[16], options[64];
    //  libpq's connect_timeout is whole seconds, at least 2.
    snprintf (connect_s, sizeof connect_s, "%d", timeout_ms / 1000 > 2 ? timeout_ms / 1000 : 2);
    snprintf (ms, sizeof ms, "%d", timeout_ms);
    snprintf (options, sizeof options, "-c statement_timeout=%d", timeout_ms);
    const char *keys[] = {"connect_timeout",           "tcp_user_timeout", "dbname",
                          "fallback_application_name", "options",          NULL};
    const char *values[] = {
        connect_s, ms,  sb_config_str (self->config, SB_CFG_DATABASE_URL), "switchboard-doctor",
        options,   NULL};
    PGconn *conn = PQconnectdbParams (keys, values, 1);
    char err[512];
    if (!conn || PQstatus (conn) != CONNECTION_OK) {
        snprintf (err, sizeof err, "%s", conn ? PQerrorMessage (conn) : "out of memory");
        s_fail (self, name,
                "start PostgreSQL, or correct DATABASE_URL (a libpq URI like "
                "postgresql://user@host:5432/switchboard)",
                "cannot connect within %.1f s: %s", self->timeout, s_line (err));
        PQfinish (conn);
        return;
    }
    PQsetnonblocking (conn, 1);
    s_add (self, true, name, NULL, "connected to %s:%s database %s (server %d)", PQhost (conn),
           PQport (conn), PQdb (conn), PQserverVersion (conn));

    const char *mname = "PostgreSQL migrations";
    char dir[PATH_MAX];
    if (sb_config_has (self->config, SB_CFG_SB_MIGRATIONS_DIR))
        snprintf (dir, sizeof dir, "%s", sb_config_str (self->config, SB_CFG_SB_MIGRATIONS_DIR));
    else
        sb_store_migrations_default (dir, sizeof dir, SB_BUILD_BIN_DIR);
    size_t count = 0;
    char **versions = sb_store_migrations_list (dir, &count);
    if (!versions || count == 0) {
        s_fail (self, mname,
                "set SB_MIGRATIONS_DIR to the dispatcher's migrations (share/switchboard/"
                "migrations of the install)",
                "no migrations found in %s", dir);
        sb_store_migrations_free (&versions, count);
        PQfinish (conn);
        return;
    }
    int64_t deadline = sb_time_mono_ms () + timeout_ms;
    PGresult *r =
        s_pg_query (conn, "SELECT version FROM schema_migrations", NULL, deadline, err, sizeof err);
    const char *migrate = "run switchboard-dispatcher --migrate-only (the dispatcher also "
                          "migrates when it starts)";
    if (!r) {
        s_fail (self, mname, migrate, "not migrated: %s", s_line (err));
        PQfinish (conn);
        conn = NULL;
    }
    else {
        size_t pending = 0;
        char first[256] = "";
        for (size_t i = 0; i < count; i++) {
            bool found = false;
            for (int row = 0; row < PQntuples (r) && !found; row++)
                found = strcmp (PQgetvalue (r, row, 0), versions[i]) == 0;
            if (!found && !pending++)
                snprintf (first, sizeof first, "%s", versions[i]);
        }
        if (pending) {
            s_fail (self, mname, migrate, "%zu of the %zu migrations of %s not applied, from %s",
                    pending, count, dir, first);
            PQfinish (conn);
            conn = NULL;
        }
        else
            s_add (self, true, mname, NULL, "all %zu applied (%s, newest %s)", count, dir,
                   versions[count - 1]);
        PQclear (r);
    }
    sb_store_migrations_free (&versions, count);
    self->pg = conn;
}

//  ---------------------------------------------------------------------
//  The journal directory

static void
s_bytes (uint64_t n, char *out, size_t size)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double) n;
    size_t u = 0;
    while (v >= 1024 && u < 5)
        v /= 1024, u++;
    snprintf (out, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void
s_check_journal (s_doctor_t *self)
{
    const char *name = "SB_JOURNAL_DIR";
    const char *dir = sb_config_str (self->config, SB_CFG_SB_JOURNAL_DIR);
    char path[PATH_MAX], ebuf[128];
    snprintf (path, sizeof path, "%s", dir);
    const char *fix = "point SB_JOURNAL_DIR at a writable directory on a local disk, owned by the "
                      "user the ingress runs as";
    //  Missing: the ingress creates it; the nearest existing parent must
    //  let it.
    struct stat st;
    bool exists = stat (path, &st) == 0;
    while (!exists && errno == ENOENT) {
        char *slash = strrchr (path, '/');
        if (!slash)
            snprintf (path, sizeof path, ".");
        else if (slash == path)
            path[1] = 0;
        else
            *slash = 0;
        exists = stat (path, &st) == 0;
    }
    if (!exists || !S_ISDIR (st.st_mode)) {
        s_fail (self, name, fix, "%s: %s", path,
                exists ? "not a directory" : sb_strerror (errno, ebuf, sizeof ebuf));
        return;
    }
    bool created = strcmp (path, dir) != 0;
    if (created) {
        if (access (path, W_OK | X_OK) != 0) {
            s_fail (self, name, fix, "%s is missing and %s does not let it be created: %s", dir,
                    path, sb_strerror (errno, ebuf, sizeof ebuf));
            return;
        }
    }
    else {
        //  A real write: access() says yes to root on a read-only mount.
        char probe[PATH_MAX];
        snprintf (probe, sizeof probe, "%s/.sb-doctor-XXXXXX", dir);
        int fd = mkstemp (probe);
        bool ok = fd >= 0 && write (fd, "x", 1) == 1;
        int e = errno;
        if (fd >= 0) {
            close (fd);
            unlink (probe);
        }
        if (!ok) {
            s_fail (self, name, fix, "%s is not writable: %s", dir,
                    sb_strerror (e, ebuf, sizeof ebuf));
            return;
        }
    }
    struct statvfs vfs;
    if (statvfs (path, &vfs) != 0) {
        s_fail (self, name, fix, "%s: cannot read its free space: %s", path,
                sb_strerror (errno, ebuf, sizeof ebuf));
        return;
    }
    uint64_t free_bytes = (uint64_t) vfs.f_bavail * vfs.f_frsize;
    uint64_t segment = (uint64_t) sb_config_int (self->config, SB_CFG_SB_JOURNAL_SEGMENT_BYTES);
    uint64_t need = S_MIN_FREE_SEGMENTS * segment;
    char free_text[32], need_text[32], max_text[32];
    s_bytes (free_bytes, free_text, sizeof free_text);
    s_bytes (need, need_text, sizeof need_text);
    s_bytes ((uint64_t) sb_config_int (self->config, SB_CFG_SB_JOURNAL_MAX_BYTES), max_text,
             sizeof max_text);
    if (free_bytes < need)
        s_fail (self, name,
                "free disk space, or lower SB_JOURNAL_SEGMENT_BYTES (the ingress answers 503 "
                "when the journal cannot be written)",
                "%s: %s free, below %d journal segments (%s)", dir, free_text, S_MIN_FREE_SEGMENTS,
                need_text);
    else
        s_add (self, true, name, NULL, "%s %s, %s free (the journal keeps up to %s)", dir,
               created ? "will be created" : "writable", free_text, max_text);
}

//  ---------------------------------------------------------------------
//  The services' health

//  http(s)://host:port of a listen address ([host:]port), for this host:
//  a wildcard host becomes loopback.
static void
s_local_base (const char *listen, bool tls, char *out, size_t size)
{
    const char *colon = strrchr (listen, ':');
    const char *port = colon ? colon + 1 : listen;
    char host[128] = "127.0.0.1";
    if (colon) {
        snprintf (host, sizeof host, "%.*s", (int) (colon - listen), listen);
        if (!*host || strcmp (host, "0.0.0.0") == 0 || strcmp (host, "*") == 0)
            snprintf (host, sizeof host, "127.0.0.1");
        else if (strcmp (host, "[::]") == 0)
            snprintf (host, sizeof host, "[::1]");
    }
    snprintf (out, size, "%s://%s:%s", tls ? "https" : "http", host, port);
}

typedef struct {
    char body[S_MAX_ANSWER];  //  the answer's first bytes
    size_t size;              //  bytes in body
} s_answer_t;

static size_t
s_on_body (char *data, size_t size, size_t nmemb, void *arg)
{
    s_answer_t *answer = arg;
    size_t n = size * nmemb;
    size_t room = sizeof answer->body - 1 - answer->size;
    memcpy (answer->body + answer->size, data, n < room ? n : room);
    answer->size += n < room ? n : room;
    answer->body[answer->size] = 0;
    return n;
}

//  GET url within the deadline. The status (0: no answer, why in err).
static long
s_get (const char *url, double timeout, s_answer_t *answer, char *err, size_t err_size)
{
    CURL *curl = curl_easy_init ();
    if (!curl) {
        snprintf (err, err_size, "cannot initialise libcurl");
        return 0;
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    answer->size = 0;
    answer->body[0] = 0;
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, answer);
    curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, (long) (timeout * 1000));
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (curl, CURLOPT_NOPROXY, "*");
    //  Our own service on this host: its certificate names the public
    //  host, not the address we reach it at.
    curl_easy_setopt (curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt (curl, CURLOPT_SSL_VERIFYHOST, 0L);
    long code = 0;
    CURLcode res = curl_easy_perform (curl);
    if (res != CURLE_OK)
        snprintf (err, err_size, "%s", *curl_err ? curl_err : curl_easy_strerror (res));
    else
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup (curl);
    return code;
}

//  GET base + path; a check named "<service> <path>". True on 200.
static bool
s_check_endpoint (s_doctor_t *self, const char *service, const char *base, const char *path,
                  const char *fix)
{
    char name[64], url[512], err[CURL_ERROR_SIZE + 64];
    snprintf (name, sizeof name, "%s %s", service, path);
    snprintf (url, sizeof url, "%s%s", base, path);
    s_answer_t *answer = malloc (sizeof *answer);
    if (!answer) {
        s_fail (self, name, fix, "out of memory");
        return false;
    }
    long code = s_get (url, self->timeout, answer, err, sizeof err);
    answer->body[strcspn (answer->body, "\r\n")] = 0;
    bool ok = code == 200;
    if (!code)
        s_fail (self, name, fix, "GET %s: %s", url, err);
    else if (!ok)
        s_fail (self, name, fix, "GET %s answered %ld %.200s", url, code, answer->body);
    else
        s_add (self, true, name, NULL, "GET %s: 200", url);
    free (answer);
    return ok;
}

static void
s_check_services (s_doctor_t *self)
{
    char base[300];
    s_local_base (sb_config_str (self->config, SB_CFG_SB_LISTEN),
                  sb_config_has (self->config, SB_CFG_SB_TLS_CERT), base, sizeof base);
    const char *fix_ing = "start switchboard-ingress with these settings (its log says why it is "
                          "not ready), or correct SB_LISTEN";
    self->ingress_up = s_check_endpoint (self, "switchboard-ingress", base, "/healthz", fix_ing);
    s_check_endpoint (self, "switchboard-ingress", base, "/readyz", fix_ing);
    s_local_base (sb_config_str (self->config, SB_CFG_SB_DISPATCHER_LISTEN), false, base,
                  sizeof base);
    const char *fix_dis = "start switchboard-dispatcher with these settings (its log says why it "
                          "is not ready: often PostgreSQL), or correct SB_DISPATCHER_LISTEN";
    s_check_endpoint (self, "switchboard-dispatcher", base, "/healthz", fix_dis);
    self->dispatcher_ready =
        s_check_endpoint (self, "switchboard-dispatcher", base, "/readyz", fix_dis);
}

//  ---------------------------------------------------------------------
//  Self-test: `switchboard send` as a child, then PostgreSQL

//  Run this binary with argv, its output into out (first line kept), within
//  timeout seconds. The exit status, or -1 (why in out).
static int
s_run_self (char *const *argv, double timeout, char *out, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf (out, size, "cannot find this program (/proc/self/exe)");
        return -1;
    }
    exe[n] = 0;
    char tmp[] = "/tmp/sb-doctor-XXXXXX";
    int fd = mkstemp (tmp);
    if (fd < 0) {
        snprintf (out, size, "cannot make a temporary file");
        return -1;
    }
    unlink (tmp);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, fd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2 (&actions, fd, STDERR_FILENO);
    pid_t pid;
    int rc = posix_spawn (&pid, exe, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    if (rc != 0) {
        close (fd);
        snprintf (out, size, "cannot run this program's send command");
        return -1;
    }
    //  send has its own --timeout; this one bounds the process as a whole.
    int64_t deadline = sb_time_mono_ms () + (int64_t) (timeout * 1000) + 2000;
    int status = 0;
    pid_t done;
    while ((done = waitpid (pid, &status, WNOHANG)) == 0 && sb_time_mono_ms () < deadline)
        usleep (20 * 1000);
    if (done == 0) {
        kill (pid, SIGKILL);
        waitpid (pid, &status, 0);
        close (fd);
        snprintf (out, size, "switchboard send did not finish within %.1f s", timeout + 2);
        return -1;
    }
    ssize_t got = pread (fd, out, size - 1, 0);
    close (fd);
    out[got > 0 ? got : 0] = 0;
    out[strcspn (out, "\r\n")] = 0;
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static void
s_check_selftest (s_doctor_t *self)
{
    const char *name = "self-test: signed webhook to the ingress";
    bool twilio = sb_config_has (self->config, SB_CFG_TWILIO_AUTH_TOKEN);
    if (!twilio && !sb_config_has (self->config, SB_CFG_META_APP_SECRET))
        return;  //  "provider secrets" said so
    if (!self->ingress_up) {
        s_fail (self, name, "start the ingress first", "not run: the ingress is not answering");
        return;
    }
    //  A delivered status for a message that does not exist: stored, and
    //  no reply rule matches it.
    char id[SB_FAKEPROV_WAMID_SIZE], base[300], timeout[32];
    if (twilio)
        sb_fakeprov_hex_id (id, sizeof id, "SM", 32, false);
    else
        sb_fakeprov_wamid (id, sizeof id, "14155550100", SB_FAKEPROV_OUTBOUND);
    s_local_base (sb_config_str (self->config, SB_CFG_SB_LISTEN),
                  sb_config_has (self->config, SB_CFG_SB_TLS_CERT), base, sizeof base);
    snprintf (timeout, sizeof timeout, "%g", self->timeout);
    char a_name[] = "switchboard", a_send[] = "send", a_url[] = "--url", a_sid[] = "--sid",
         a_timeout[] = "--timeout", a_twilio[] = "twilio-status", a_meta[] = "meta-status";
    char *argv[] = {a_name,  a_send, twilio ? a_twilio : a_meta, a_url, base, a_sid, id, a_timeout,
                    timeout, NULL};
    char out[512];
    int rc = s_run_self (argv, self->timeout, out, sizeof out);
    const char *route = twilio ? "/twilio/status" : "/meta/whatsapp";
    if (rc != 0) {
        const char *fix =
            strstr (out, " 403")
                ? (twilio ? "the ingress refused the signature: give it the same "
                            "TWILIO_AUTH_TOKEN, SB_PUBLIC_URL and SB_PATH_PREFIX as "
                            "here (Twilio signs the public URL with the token)"
                          : "the ingress refused the signature: give it the same "
                            "META_APP_SECRET as here")
            : strstr (out, " 503")
                ? "the ingress could not journal or lacks the secret: see its log and /readyz"
                : "see the ingress's log";
        s_fail (self, name, fix, "POST %s%s%s: %s", base,
                sb_config_str (self->config, SB_CFG_SB_PATH_PREFIX), route,
                *out ? out : "no answer");
        return;
    }
    s_add (self, true, name, NULL, "POST %s%s%s (%s): %s", base,
           sb_config_str (self->config, SB_CFG_SB_PATH_PREFIX), route, id, out);
    snprintf (self->selftest_id, sizeof self->selftest_id, "%s", id);
}

static void
s_check_stored (s_doctor_t *self)
{
    //  Stored means PostgreSQL and the dispatcher: their own lines said
    //  why when either is missing.
    if (!*self->selftest_id || !self->pg || !self->dispatcher_ready)
        return;
    const char *name = "self-test: stored by the dispatcher";
    int64_t start = sb_time_mono_ms ();
    int64_t deadline = start + S_STORED_WAIT_S * 1000;
    char err[512] = "";
    while (sb_time_mono_ms () < deadline) {
        int64_t query_deadline = sb_time_mono_ms () + (int64_t) (self->timeout * 1000);
        PGresult *r = s_pg_query (self->pg, "SELECT 1 FROM events WHERE provider_id = $1",
                                  self->selftest_id, query_deadline, err, sizeof err);
        bool found = r && PQntuples (r) > 0;
        PQclear (r);
        if (!r)
            break;
        if (found) {
            s_add (self, true, name, NULL, "event %s in PostgreSQL after %.1f s", self->selftest_id,
                   (double) (sb_time_mono_ms () - start) / 1000.0);
            return;
        }
        usleep (100 * 1000);
    }
    s_fail (self, name,
            "the dispatcher does not receive this ingress's events: its SB_INGRESS_PUB must be "
            "the ingress's SB_PUB (and with CURVE, its keys admitted); see the dispatcher's log",
            "event %s not in PostgreSQL within %d s%s%s", self->selftest_id, S_STORED_WAIT_S,
            *err ? ": " : "", s_line (err));
}

//  ---------------------------------------------------------------------
//  The providers' side: a Twilio number's URLs, Meta's subscriptions

//  One URL of the number against the ingress's: name the check, compare
//  URL and method, say when an application or trunk overrides it.
static void
s_check_number_url (s_doctor_t *self, const json_t *number, const char *field,
                    const char *method_field, const char *want, const char *const *overrides)
{
    const char *phone = sb_provider_api_str (number, "phone_number");
    char name[128], fix[256];
    snprintf (name, sizeof name, "Twilio number %s %s", phone, field);
    snprintf (fix, sizeof fix, "switchboard connect twilio --number %s", phone);
    const char *url = sb_provider_api_str (number, field);
    const char *method = sb_provider_api_str (number, method_field);
    for (size_t i = 0; overrides[i]; i++) {
        const char *sid = sb_provider_api_str (number, overrides[i]);
        if (*sid) {
            char remove[384];
            snprintf (remove, sizeof remove,
                      "remove %s from the number in the Twilio Console (Phone Numbers > Active "
                      "numbers > %s), then %s",
                      overrides[i], phone, fix);
            s_fail (self, name, remove,
                    "overridden: %s is %s, so Twilio uses its URLs, not %s (%s); the ingress "
                    "verifies %s",
                    overrides[i], sid, *url ? url : "(empty)", method, want);
            return;
        }
    }
    if (strcmp (url, want) == 0 && strcmp (method, "POST") == 0)
        s_add (self, true, name, NULL, "%s (POST)", url);
    else
        s_fail (self, name, fix, "%s (%s), but the ingress verifies %s (POST)",
                *url ? url : "(empty)", *method ? method : "no method", want);
}

static void
s_check_twilio_number (s_doctor_t *self, sb_provider_api_t *api)
{
    const sb_config_t *c = self->config;
    const char *name = "Twilio number webhooks";
    const char *missing = NULL;
    if (!sb_config_has (c, SB_CFG_TWILIO_PHONE_NUMBER)) {
        s_skip (self, name,
                "not checked: TWILIO_PHONE_NUMBER is not set (set it, with the Twilio "
                "credentials, to compare the number's webhook URLs with the ingress's)");
        return;
    }
    const char *phone = sb_config_str (c, SB_CFG_TWILIO_PHONE_NUMBER);
    if (!sb_provider_api_twilio_ready (c, &missing)) {
        s_skip (self, name, "not checked: %s is not set", missing);
        return;
    }
    if (!self->urls_known) {
        s_skip (self, name, "not checked: SB_PUBLIC_URL (above) first");
        return;
    }
    char err[1024], check[128], want[3][SB_PROVIDER_API_URL_SIZE];
    snprintf (check, sizeof check, "Twilio number %s", phone);
    json_t *number = NULL;
    if (sb_provider_api_twilio_number (api, phone, &number, err, sizeof err)) {
        s_fail (self, check,
                "check TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and "
                "TWILIO_API_SECRET) and TWILIO_API_BASE",
                "%s", err);
        return;
    }
    if (!number) {
        s_fail (self, check,
                "buy or port the number in that account, or correct TWILIO_PHONE_NUMBER",
                "not found in account %s (IncomingPhoneNumbers)",
                sb_config_str (c, SB_CFG_TWILIO_ACCOUNT_SID));
        return;
    }
    sb_provider_api_webhook_url (c, SB_PROVIDER_R_TWILIO_MESSAGES, want[0], sizeof want[0]);
    sb_provider_api_webhook_url (c, SB_PROVIDER_R_TWILIO_VOICE, want[1], sizeof want[1]);
    sb_provider_api_webhook_url (c, SB_PROVIDER_R_TWILIO_STATUS, want[2], sizeof want[2]);
    const char *sms_over[] = {"sms_application_sid", NULL};
    const char *voice_over[] = {"voice_application_sid", "trunk_sid", NULL};
    s_check_number_url (self, number, "sms_url", "sms_method", want[0], sms_over);
    s_check_number_url (self, number, "voice_url", "voice_method", want[1], voice_over);
    s_check_number_url (self, number, "status_callback", "status_callback_method", want[2],
                        voice_over);
    json_decref (number);

    //  A Messaging Service's inbound URL wins over the number's sms_url
    //  unless it defers to the number (use_inbound_webhook_on_number).
    snprintf (check, sizeof check, "Twilio number %s Messaging Service", phone);
    json_t *service = NULL;
    if (sb_provider_api_twilio_service_of (api, phone, &service, err, sizeof err)) {
        s_fail (self, check, "check TWILIO_MESSAGING_API_BASE and the Twilio credentials", "%s",
                err);
        return;
    }
    if (!service) {
        s_add (self, true, check, NULL, "in none: the number's own URLs apply");
        return;
    }
    const char *sid = sb_provider_api_str (service, "sid");
    const char *friendly = sb_provider_api_str (service, "friendly_name");
    const char *inbound = sb_provider_api_str (service, "inbound_request_url");
    const char *method = sb_provider_api_str (service, "inbound_method");
    if (json_is_true (json_object_get (service, "use_inbound_webhook_on_number")))
        s_add (self, true, check, NULL,
               "%s (%s) defers to the number's URLs (use_inbound_webhook_on_number)", sid,
               friendly);
    else if (strcmp (inbound, want[0]) == 0 && strcmp (method, "POST") == 0)
        s_add (self, true, check, NULL, "%s (%s) inbound_request_url %s (POST)", sid, friendly,
               inbound);
    else {
        char fix[3 * SB_PROVIDER_API_URL_SIZE];
        snprintf (fix, sizeof fix,
                  "in the Twilio Console, Messaging > Services > %s > Integration: choose "
                  "\"Defer to sender's webhook\", or send a webhook to %s with HTTP POST "
                  "(switchboard connect does not change a service)",
                  friendly, want[0]);
        s_fail (self, check, fix,
                "%s (%s) has inbound_request_url %s (%s) and does not defer to the number "
                "(use_inbound_webhook_on_number false), but the ingress verifies %s (POST)",
                sid, friendly, *inbound ? inbound : "(none: inbound messages are dropped)",
                *method ? method : "no method", want[0]);
    }
    json_decref (service);
}

//  Whether the comma-separated list has name.
static bool
s_in_list (const char *list, const char *name)
{
    size_t len = strlen (name);
    for (const char *p = list; *p;) {
        size_t n = strcspn (p, ",");
        if (n == len && strncmp (p, name, n) == 0)
            return true;
        p += n + (p[n] == ',');
    }
    return false;
}

static void
s_check_meta_app (s_doctor_t *self, sb_provider_api_t *api, const char *callback)
{
    const sb_config_t *c = self->config;
    const char *name = "Meta app webhook";
    if (!sb_config_has (c, SB_CFG_META_APP_ID) || !sb_config_has (c, SB_CFG_META_APP_SECRET)) {
        s_skip (self, name,
                "not checked: %s is not set (set META_APP_ID and META_APP_SECRET to compare the "
                "app's webhook subscription with the ingress)",
                sb_config_has (c, SB_CFG_META_APP_ID) ? "META_APP_SECRET" : "META_APP_ID");
        return;
    }
    const char *app_id = sb_config_str (c, SB_CFG_META_APP_ID);
    char check[128], fix[256], err[1024];
    snprintf (check, sizeof check, "Meta app %s webhook", app_id);
    snprintf (fix, sizeof fix, "switchboard connect meta --app-id %s", app_id);
    json_t *sub = NULL;
    if (sb_provider_api_meta_app_subscription (api, app_id, &sub, err, sizeof err)) {
        s_fail (self, check, "check META_APP_ID, META_APP_SECRET and META_API_BASE", "%s", err);
        return;
    }
    if (!sub) {
        s_fail (self, check, fix,
                "no whatsapp_business_account subscription; the ingress "
                "expects %s",
                callback);
        return;
    }
    const char *url = sb_provider_api_str (sub, "callback_url");
    bool active = json_is_true (json_object_get (sub, "active"));
    char have[1024] = "", lacking[1024] = "";
    size_t i, used = 0;
    json_t *field;
    json_array_foreach (json_object_get (sub, "fields"), i, field) {
        int n = snprintf (have + used, sizeof have - used, "%s%s", used ? "," : "",
                          sb_provider_api_str (field, "name"));
        if (n > 0 && (size_t) n < sizeof have - used)
            used += (size_t) n;
    }
    const char *wanted = sb_provider_api_meta_fields ();
    used = 0;
    for (const char *p = wanted; *p;) {
        size_t n = strcspn (p, ",");
        char one[64];
        snprintf (one, sizeof one, "%.*s", (int) (n < 63 ? n : 63), p);
        if (!s_in_list (have, one)) {
            int w = snprintf (lacking + used, sizeof lacking - used, "%s%s", used ? "," : "", one);
            if (w > 0 && (size_t) w < sizeof lacking - used)
                used += (size_t) w;
        }
        p += n + (p[n] == ',');
    }
    if (strcmp (url, callback) != 0 || !active || !s_in_list (have, "messages"))
        s_fail (self, check, fix,
                "callback_url %s%s, fields %s, but the ingress expects %s with "
                "messages",
                *url ? url : "(none)", active ? "" : " (not active)", *have ? have : "(none)",
                callback);
    else
        s_add (self, true, check, NULL, "callback_url %s, fields %s%s%s", url, have,
               *lacking ? "; not subscribed (the ingress reads them too): " : "", lacking);
    json_decref (sub);
}

static void
s_check_meta_waba (s_doctor_t *self, sb_provider_api_t *api, const char *callback)
{
    const sb_config_t *c = self->config;
    const char *name = "Meta WABA subscribed apps";
    if (!sb_config_has (c, SB_CFG_META_WABA_ID) || !sb_config_has (c, SB_CFG_META_ACCESS_TOKEN)) {
        s_skip (self, name,
                "not checked: %s is not set (set META_WABA_ID and META_ACCESS_TOKEN to check "
                "the app is subscribed to the WhatsApp Business Account)",
                sb_config_has (c, SB_CFG_META_WABA_ID) ? "META_ACCESS_TOKEN" : "META_WABA_ID");
        return;
    }
    const char *waba_id = sb_config_str (c, SB_CFG_META_WABA_ID);
    const char *app_id =
        sb_config_has (c, SB_CFG_META_APP_ID) ? sb_config_str (c, SB_CFG_META_APP_ID) : NULL;
    char check[128], fix[256], err[1024];
    snprintf (check, sizeof check, "Meta WABA %s subscribed apps", waba_id);
    snprintf (fix, sizeof fix, "switchboard connect meta --waba-id %s", waba_id);
    json_t *apps = NULL;
    if (sb_provider_api_meta_waba_apps (api, waba_id, &apps, err, sizeof err)) {
        s_fail (self, check, "check META_WABA_ID, META_ACCESS_TOKEN and META_API_BASE", "%s", err);
        return;
    }
    const json_t *mine = NULL;
    char names[512] = "";
    size_t i, used = 0;
    json_t *app;
    json_array_foreach (apps, i, app) {
        const json_t *data = json_object_get (app, "whatsapp_business_api_data");
        const char *id = sb_provider_api_str (data, "id");
        int n = snprintf (names + used, sizeof names - used, "%s%s (%s)", used ? ", " : "", id,
                          sb_provider_api_str (data, "name"));
        if (n > 0 && (size_t) n < sizeof names - used)
            used += (size_t) n;
        if (!mine && (!app_id || strcmp (id, app_id) == 0))
            mine = app;
    }
    const char *override = mine ? sb_provider_api_str (mine, "override_callback_uri") : "";
    if (!mine)
        s_fail (self, check, fix, "%s%s%s", app_id ? "app " : "no app subscribed",
                app_id ? app_id : "", app_id ? " is not subscribed" : "");
    else if (*override && strcmp (override, callback) != 0)
        s_fail (self, check, fix,
                "the app's override_callback_uri %s replaces the app's callback URL, but the "
                "ingress expects %s",
                override, callback);
    else
        s_add (self, true, check, NULL, "subscribed: %s", names);
    json_decref (apps);
}

static void
s_check_providers (s_doctor_t *self)
{
    sb_provider_api_t *api = sb_provider_api_new (self->config, self->timeout, NULL);
    if (!api) {
        s_fail (self, "provider APIs", NULL, "out of memory");
        return;
    }
    s_check_twilio_number (self, api);
    char callback[SB_PROVIDER_API_URL_SIZE];
    sb_provider_api_webhook_url (self->config, SB_PROVIDER_R_META_WHATSAPP, callback,
                                 sizeof callback);
    if (!self->urls_known)
        s_skip (self, "Meta webhooks", "not checked: SB_PUBLIC_URL (above) first");
    else {
        s_check_meta_app (self, api, callback);
        s_check_meta_waba (self, api, callback);
    }
    sb_provider_api_destroy (&api);
}

//  ---------------------------------------------------------------------
//  Entry point

//  The checks, in order. Provider API checks go after the self-test.
static s_check_fn *const s_checks[] = {
    s_check_public_url,  //  first: the secrets' checks need public_host
    s_check_secrets,    s_check_postgres, s_check_journal,   s_check_services,
    s_check_selftest,   s_check_stored,   s_check_providers,
};

//  Read var/dev.env (NAME=value lines, as scripts/run.sh writes it) into
//  a config of its own, to recognise its development secrets.
static void
s_load_dev_env (s_doctor_t *self)
{
    FILE *file = fopen (self->dev_env_path, "r");
    if (!file)
        return;
    char line[4096];
    size_t n = 0;
    while (n < S_MAX_DEV_ENV && fgets (line, sizeof line, file)) {
        line[strcspn (line, "\r\n")] = 0;
        if (*line == '#' || !strchr (line, '='))
            continue;
        self->dev_lines[n] = strdup (line);
        n += self->dev_lines[n] != NULL;
    }
    fclose (file);
    char err[512];
    self->dev = sb_config_load_from (SB_SVC_INGRESS | SB_SVC_DISPATCHER | SB_SVC_CLI,
                                     self->dev_lines, err, sizeof err);
}

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: switchboard doctor [--json] [--timeout SECONDS] [--dev-env FILE]\n"
             "\n"
             "Check the settings the services read (this environment) and what they reach,\n"
             "one line per check: ✅ or ❌, the variable or component, and what to do.\n"
             "  settings     what switchboard-ingress and -dispatcher would refuse at start\n"
             "               (same messages), CURVE keys, SB_RULES\n"
             "  secrets      Twilio and Meta credentials present and well formed, no\n"
             "               placeholder, no development value (of --dev-env) on a public host\n"
             "  SB_PUBLIC_URL  set, https unless loopback; the webhook URL of every route\n"
             "  PostgreSQL   DATABASE_URL reachable and migrated\n"
             "  SB_JOURNAL_DIR  writable, with at least %d segments of free space\n"
             "  services     the ingress's and the dispatcher's /healthz and /readyz\n"
             "  self-test    a signed status webhook posted to the ingress answers 200 and is\n"
             "               stored in PostgreSQL within %d s\n"
             "\n"
             "  --json              print the checks as a JSON array of {name, ok, detail, fix}\n"
             "  --timeout SECONDS   deadline of each network wait (default %g)\n"
             "  --dev-env FILE      development settings (default %s, as scripts/run.sh\n"
             "                      writes them)\n"
             "  -h, --help          this help\n"
             "\n"
             "Exit status: 0 every check passed, 1 one failed, 2 bad flags.\n",
             S_MIN_FREE_SEGMENTS, S_STORED_WAIT_S, S_DEFAULT_TIMEOUT, S_DEV_ENV);
}

static void
s_print_json (const s_doctor_t *self)
{
    json_t *array = json_array ();
    for (size_t i = 0; array && i < self->count; i++) {
        const s_result_t *r = &self->results[i];
        json_t *item = json_pack ("{s:s, s:b, s:s, s:s?}", "name", r->name ? r->name : "", "ok",
                                  r->ok, "detail", r->detail ? r->detail : "", "fix", r->fix);
        if (item && r->skipped)
            json_object_set_new (item, "skipped", json_true ());
        json_array_append_new (array, item);
    }
    if (array) {
        json_dumpf (array, stdout, JSON_INDENT (2));
        printf ("\n");
    }
    json_decref (array);
}

int
sb_cmd_doctor (int argc, char **argv)
{
    s_doctor_t self = {.timeout = S_DEFAULT_TIMEOUT, .dev_env_path = S_DEV_ENV};
    static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"dev-env", required_argument, NULL, 'd'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long (argc, argv, ":ht:", longopts, NULL)) != -1) {
        switch (c) {
            case 'j': self.json = true; break;
            case 't':
                if (sb_cli_parse_seconds (optarg, S_MAX_TIMEOUT, &self.timeout)
                    || self.timeout < 0.1)
                    return sb_cli_usage_error (S_CMD, "--timeout: expected seconds from 0.1 to %g",
                                               S_MAX_TIMEOUT);
                break;
            case 'd': self.dev_env_path = optarg; break;
            case 'h': s_usage (stdout); return SB_CLI_OK;
            default: return sb_cli_bad_flag (S_CMD, c, argv);
        }
    }
    if (optind < argc)
        return sb_cli_usage_error (S_CMD, "unexpected argument '%s'", argv[optind]);
    //  Internal code (CURVE, migrations) logs only what is worse than info.
    sb_log_init ("switchboard", SB_LOG_WARN);
    zsys_handler_set (NULL);
    bool curl_started = curl_global_init (CURL_GLOBAL_DEFAULT) == CURLE_OK;

    s_check_settings (&self);
    char err[512];
    self.config = sb_config_load (SB_SVC_INGRESS | SB_SVC_DISPATCHER | SB_SVC_CLI, err, sizeof err);
    if (!self.config)
        s_fail (&self, "other checks", "correct the settings above first",
                "not run: the settings are refused");
    else if (!curl_started)
        s_fail (&self, "other checks", "see libcurl's installation",
                "not run: libcurl did not start");
    else {
        s_load_dev_env (&self);
        for (size_t i = 0; i < sizeof s_checks / sizeof s_checks[0]; i++)
            s_checks[i](&self);
    }

    size_t failed = 0;
    for (size_t i = 0; i < self.count; i++)
        failed += !self.results[i].ok;
    if (self.json)
        s_print_json (&self);
    else
        printf ("%s %zu of %zu checks passed\n", failed ? "❌" : "✅", self.count - failed,
                self.count);

    for (size_t i = 0; i < self.count; i++) {
        free (self.results[i].name);
        free (self.results[i].detail);
        free (self.results[i].fix);
    }
    free (self.results);
    for (size_t i = 0; self.dev_lines[i]; i++)
        free (self.dev_lines[i]);
    PQfinish (self.pg);
    sb_config_destroy (&self.dev);
    sb_config_destroy (&self.config);
    if (curl_started)
        curl_global_cleanup ();
    zsys_shutdown ();
    return failed ? SB_CLI_FAILED : SB_CLI_OK;
}

/*  sb_config: the table of settings and their parsers.

    Each entry names the variable, which binaries read it, its default, the
    kind of value with bounds, whether it is a secret, and one line of help.
    Loading reads NAME or NAME_FILE (never both), checks every value of the
    requested services, and stores both the text and the parsed number, so
    later accessors cannot fail. No getenv() happens after sb_config_load.

    Limits: values are at most 64 KiB (NAME_FILE contents included); one
    trailing newline of a NAME_FILE is dropped, as Docker secrets end in one.
*/
#include "sb_config.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sb_log.h"
#include "sb_text.h"

extern char **environ;

typedef enum {
    S_STRING,    //  any text
    S_INT,       //  integer within [min, max], optional k/m/g suffix for sizes
    S_BOOL,      //  0/1, true/false, yes/no, on/off
    S_LEVEL,     //  log level name
    S_LISTEN,    //  [host:]port
    S_URL,       //  http:// or https:// URL, no trailing slash kept
    S_PREFIX,    //  "" or "/seg[/seg]" without trailing slash
    S_ENDPOINT,  //  ZeroMQ endpoint(s), comma-separated
    S_DURATION,  //  seconds within [min, max], optional s/m/h/d suffix
} s_kind_t;

typedef struct {
    const char *name;      //  environment variable
    unsigned services;     //  SB_SVC_* mask of binaries that read it
    const char *dflt;      //  default text, NULL for none (or computed)
    s_kind_t kind;         //  parser
    int64_t min, max;      //  bounds for S_INT
    bool secret;           //  never printed
    const char *help;      //  one line for --help
} s_setting_t;

#define ING SB_SVC_INGRESS
#define DIS SB_SVC_DISPATCHER
#define CLI SB_SVC_CLI
#define SBX SB_SVC_SANDBOX

static const s_setting_t s_settings[] = {
    {"SB_LOG_LEVEL", ING | DIS | CLI | SBX, "info", S_LEVEL, 0, 0, false,
     "debug, info, warn or error"},
    // ---- ingress: HTTP --------------------------------------------------
    {"SB_LISTEN", ING, "127.0.0.1:8080", S_LISTEN, 0, 0, false,
     "HTTP listen address of the ingress, [host:]port"},
    {"SB_PUBLIC_URL", ING | DIS | CLI | SBX, NULL, S_URL, 0, 0, false,
     "public base URL the providers call (e.g. https://hooks.example.com); Twilio signs it, used verbatim"},
    {"SB_TRUST_PROXY", ING, "0", S_BOOL, 0, 0, false,
     "1: take the scheme from X-Forwarded-Proto when SB_PUBLIC_URL is unset"},
    {"SB_PATH_PREFIX", ING | DIS | CLI | SBX, "", S_PREFIX, 0, 0, false,
     "optional path prefix of every route, e.g. /api/v1"},
    {"SB_MAX_BODY", ING, "1048576", S_INT, 1024, 64 * 1024 * 1024, false,
     "largest request body in bytes (k/m suffix allowed); Meta bodies can reach 3 MB"},
    {"SB_HTTP_THREADS", ING, "256", S_INT, 8, 4096, false,
     "HTTP worker threads; civetweb holds one per open connection, idle keep-alive ones included; each costs about 20 KiB of memory; 256 still answer webhooks with 250 idle or slow clients connected"},
    {"SB_HTTP_REQUEST_TIMEOUT_MS", ING, "10000", S_INT, 100, 600000, false,
     "cut off a client that takes longer than this to send a whole request (headers and body)"},
    {"SB_HTTP_KEEPALIVE_TIMEOUT_MS", ING, "15000", S_INT, 0, 600000, false,
     "close a keep-alive connection idle for longer than this"},
    {"SB_HTTP_QUEUE", ING, "256", S_INT, 1, 65536, false,
     "accepted connections that may wait for a free worker thread"},
    {"SB_HTTP_MAX_CONN_PER_IP", ING, "64", S_INT, 0, 65536, false,
     "connections one client address may hold; more are closed at once (0: no limit; set 0 behind a proxy, which limits per client itself)"},
    {"SB_TLS_CERT", ING, NULL, S_STRING, 0, 0, false,
     "PEM file of the ingress's TLS certificate (then its chain): serve HTTPS on SB_LISTEN; with SB_TLS_KEY"},
    {"SB_TLS_KEY", ING, NULL, S_STRING, 0, 0, false,
     "PEM file of the private key of SB_TLS_CERT (unencrypted)"},
    {"SB_INSECURE_SKIP_SIGNATURES", ING, "0", S_BOOL, 0, 0, false,
     "1: accept unsigned webhooks (experiments only; logs a warning)"},
    {"SB_TWILIO_VOICE_TWIML", ING, NULL, S_STRING, 0, 0, false,
     "file with the TwiML answered to inbound calls (default: a 6-digit <Gather>)"},
    {"SB_TWILIO_GATHER_TWIML", ING, NULL, S_STRING, 0, 0, false,
     "file with the TwiML answered after a <Gather> (default: a thank-you <Say>)"},
    // ---- ingress: journal and publishing --------------------------------
    {"SB_JOURNAL_DIR", ING | CLI, "var/journal", S_STRING, 0, 0, false,
     "directory of the ingress journal (created if missing)"},
    {"SB_JOURNAL_SEGMENT_BYTES", ING, "67108864", S_INT, 4096, (int64_t) 1 << 40, false,
     "start a new journal segment file past this size (k/m/g suffix allowed)"},
    {"SB_PUB", ING, "tcp://127.0.0.1:5556", S_ENDPOINT, 0, 0, false,
     "ZeroMQ PUB endpoint(s) the ingress binds and publishes events on"},
    {"SB_INGRESS_ID", ING, NULL, S_STRING, 0, 0, false,
     "this ingress's id in events (default: the host name)"},
    {"SB_PUB_HWM", ING, "100000", S_INT, 1, 10000000, false,
     "events queued per PUB subscriber before it misses some (it then catches up by replay)"},
    {"SB_REPLAY", ING | CLI, "tcp://127.0.0.1:5557", S_ENDPOINT, 0, 0, false,
     "ZeroMQ ROUTER endpoint(s) the ingress binds to replay its journal (switchboard replay's default)"},
    {"SB_JOURNAL_RETAIN_HOURS", ING, "72", S_INT, 0, 24 * 365 * 100, false,
     "remove journal segments whose newest record is older than this many hours (0: no age limit)"},
    {"SB_JOURNAL_MAX_BYTES", ING, "1g", S_INT, 4096, (int64_t) 1 << 50, false,
     "remove the oldest journal segments while the journal is larger (k/m/g suffix allowed)"},
    {"SB_JOURNAL_HARD_MAX_BYTES", ING, "4g", S_INT, 4096, (int64_t) 1 << 50, false,
     "past this size even segments a consumer has not acknowledged are removed (counted in sb_journal_dropped_unacked_events_total); at least SB_JOURNAL_MAX_BYTES"},
    {"SB_CONSUMER_TTL", ING, "24h", S_DURATION, 1, 366 * 86400, false,
     "a replay consumer id not heard from (by its owner) for this long is forgotten: it no longer holds journal segments back and another peer may take it (seconds, or with s/m/h/d)"},
    // ---- dispatcher -------------------------------------------------------
    {"DATABASE_URL", DIS, "", S_STRING, 0, 0, true,
     "PostgreSQL libpq URI or conninfo (empty: the PG* variables)"},
    {"SB_PG_TIMEOUT_MS", DIS, "5000", S_INT, 250, 600000, false,
     "deadline of every PostgreSQL round trip and connect; also sets statement_timeout, lock_timeout, keepalives and tcp_user_timeout unless DATABASE_URL does"},
    {"SB_INGRESS_PUB", DIS, "tcp://127.0.0.1:5556", S_ENDPOINT, 0, 0, false,
     "ingress PUB endpoint(s) the dispatcher subscribes to, comma-separated"},
    {"SB_INGRESS_REPLAY", DIS, NULL, S_ENDPOINT, 0, 0, false,
     "ingress replay endpoint(s) (their SB_REPLAY), one per SB_INGRESS_PUB endpoint in the same order; unset: tcp://127.0.0.1:5557 when SB_INGRESS_PUB is its default, else no replay"},
    {"SB_RULES", DIS, NULL, S_STRING, 0, 0, false,
     "YAML file of reply rules (see examples/rules.yaml); unset: store events, reply to none"},
    {"SB_DISPATCHER_LISTEN", DIS, "127.0.0.1:8081", S_LISTEN, 0, 0, false,
     "HTTP address of the dispatcher's /healthz, /readyz and /metrics"},
    {"SB_DISPATCHER_PUB", DIS, "tcp://127.0.0.1:5558", S_ENDPOINT, 0, 0, false,
     "ZeroMQ PUB endpoint(s) the dispatcher binds and publishes its outcomes on"},
    {"SB_MIGRATIONS_DIR", DIS, NULL, S_STRING, 0, 0, false,
     "directory of the SQL migrations; unset: for a binary run from its build tree, the source tree's dispatcher/migrations, else share/switchboard/migrations of the prefix it is installed in (found from the binary's path: bin/../share/switchboard/migrations)"},
    {"SB_BATCH_MAX", DIS, "500", S_INT, 1, 10000, false,
     "most events stored in one PostgreSQL transaction"},
    {"SB_QUEUE_MAX", DIS, "100000", S_INT, 1000, 10000000, false,
     "events held in memory (ZeroMQ receive queue) while PostgreSQL is away"},
    {"SB_SEND_MAX_ATTEMPTS", DIS, "8", S_INT, 1, 100, false,
     "attempts before an outbox row is dead"},
    {"SB_SEND_BACKOFF_BASE_MS", DIS, "500", S_INT, 1, 3600000, false,
     "first retry delay; doubles each attempt, with jitter"},
    {"SB_SEND_BACKOFF_MAX_MS", DIS, "300000", S_INT, 1, 86400000, false,
     "longest retry delay"},
    // ---- ZeroMQ across hosts: CURVE (README "Running the services on separate hosts")
    {"SB_CURVE_SERVER_SECRET", ING | DIS, NULL, S_STRING, 0, 0, true,
     "this server's CURVE key pair: the NAME.key_secret file `switchboard keygen` wrote, or the Z85 secret key; every ZeroMQ socket it binds then uses CURVE"},
    {"SB_CURVE_ALLOWED", ING | DIS, NULL, S_STRING, 0, 0, false,
     "with SB_CURVE_SERVER_SECRET: directory of the public certificates (NAME.key) of the clients admitted, reread when it changes; * admits any client key"},
    {"SB_CURVE_SERVER_PUBLIC", DIS | CLI, NULL, S_STRING, 0, 0, false,
     "the CURVE public key (Z85, or its NAME.key file) of the server this process connects to; every ZeroMQ socket it connects then uses CURVE"},
    {"SB_CURVE_CLIENT_CERT", DIS | CLI, NULL, S_STRING, 0, 0, true,
     "with SB_CURVE_SERVER_PUBLIC: this client's key pair, the NAME.key_secret file `switchboard keygen` wrote (or the Z85 secret key)"},
    {"SB_ZMQ_ALLOW_PLAINTEXT", ING | DIS | CLI, "0", S_BOOL, 0, 0, false,
     "1: allow binding a non-loopback ZeroMQ endpoint without CURVE (a trusted private network only)"},
    // ---- provider secrets -------------------------------------------------
    {"TWILIO_AUTH_TOKEN", ING | DIS | CLI | SBX, NULL, S_STRING, 0, 0, true,
     "Twilio auth token: validates X-Twilio-Signature (and authenticates sends)"},
    {"META_APP_SECRET", ING | CLI | SBX, NULL, S_STRING, 0, 0, true,
     "Meta app secret: validates X-Hub-Signature-256"},
    {"META_VERIFY_TOKEN", ING | CLI, NULL, S_STRING, 0, 0, true,
     "token Meta echoes in the GET /meta/whatsapp subscription handshake"},
    // ---- sending replies (dispatcher; the sandbox checks the same credentials)
    {"TWILIO_ACCOUNT_SID", DIS | CLI | SBX, NULL, S_STRING, 0, 0, false,
     "Twilio account SID (AC + 32 hex digits) that replies are sent from"},
    {"TWILIO_API_KEY", DIS | SBX, NULL, S_STRING, 0, 0, false,
     "Twilio API key SID (SK...): with TWILIO_API_SECRET, authenticates sends instead of the auth token"},
    {"TWILIO_API_SECRET", DIS | SBX, NULL, S_STRING, 0, 0, true,
     "secret of TWILIO_API_KEY"},
    {"TWILIO_API_BASE", DIS, "https://api.twilio.com", S_URL, 0, 0, false,
     "base URL of the Twilio REST API (the sandbox: http://127.0.0.1:8090)"},
    {"META_ACCESS_TOKEN", DIS | SBX, NULL, S_STRING, 0, 0, true,
     "Meta access token (system user) that sends WhatsApp Cloud API messages"},
    {"META_API_BASE", DIS, "https://graph.facebook.com", S_URL, 0, 0, false,
     "base URL of the Meta Graph API (the sandbox: http://127.0.0.1:8090)"},
    {"META_API_VERSION", DIS, "v23.0", S_STRING, 0, 0, false,
     "Graph API version in send URLs, like v23.0"},
    {"SB_SEND_CONCURRENCY", DIS, "32", S_INT, 1, 1024, false,
     "most provider requests (and bot forwards) in flight at once"},
    {"SB_SEND_TIMEOUT_MS", DIS, "10000", S_INT, 100, 600000, false,
     "total time allowed for one provider request; past it the send is retried"},
    {"SB_SEND_CONNECT_TIMEOUT_MS", DIS, "3000", S_INT, 100, 600000, false,
     "time allowed to connect to a provider (TCP and TLS)"},
    // ---- the local provider sandbox (switchboard sandbox) -----------------
    {"SB_SANDBOX_LISTEN", SBX, "127.0.0.1:8090", S_LISTEN, 0, 0, false,
     "HTTP listen address of the sandbox, [host:]port"},
    {"SB_SANDBOX_CALLBACKS", SBX, NULL, S_URL, 0, 0, false,
     "ingress base URL (with SB_PATH_PREFIX) the sandbox posts signed status callbacks to"},
};

#define S_COUNT (sizeof s_settings / sizeof s_settings[0])
#define S_MAX_VALUE (64 * 1024)

struct sb_config_t {
    char *values[S_COUNT];     //  text value, NULL when unset without default
    int64_t numbers[S_COUNT];  //  parsed S_INT / S_BOOL value
};

static int
s_index (const char *name)
{
    for (size_t i = 0; i < S_COUNT; i++)
        if (strcmp (s_settings[i].name, name) == 0)
            return (int) i;
    return -1;
}

static const char *
s_lookup (char *const *env, const char *name, size_t name_len)
{
    for (char *const *e = env; e && *e; e++)
        if (strncmp (*e, name, name_len) == 0 && (*e)[name_len] == '=')
            return *e + name_len + 1;
    return NULL;
}

static char *
s_read_file (const char *path, char *err, size_t err_size, const char *name)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        char ebuf[128];
        snprintf (err, err_size, "%s_FILE: cannot open %s: %s", name, path,
                  sb_strerror (errno, ebuf, sizeof ebuf));
        return NULL;
    }
    char *buf = malloc (S_MAX_VALUE + 1);
    size_t n = buf ? fread (buf, 1, S_MAX_VALUE + 1, file) : 0;
    fclose (file);
    if (!buf || n > S_MAX_VALUE) {
        snprintf (err, err_size, "%s_FILE: %s is larger than %d bytes", name, path,
                  S_MAX_VALUE);
        free (buf);
        return NULL;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = 0;
    if (strlen (buf) != n) {
        snprintf (err, err_size, "%s_FILE: %s holds a NUL byte", name, path);
        free (buf);
        return NULL;
    }
    return buf;
}

static int
s_parse_int (const char *text, int64_t *out)
{
    errno = 0;
    char *end;
    long long v = strtoll (text, &end, 10);
    if (errno || end == text)
        return -1;
    int64_t mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mult = 1024 * 1024 * 1024, end++;
    if (*end != 0)
        return -1;
    if (v > INT64_MAX / mult || v < INT64_MIN / mult)
        return -1;
    *out = (int64_t) v * mult;
    return 0;
}

//  Seconds: digits and an optional unit, s, m, h or d.
static int
s_parse_duration (const char *text, int64_t *out)
{
    if (*text < '0' || *text > '9')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll (text, &end, 10);
    if (errno || end == text)
        return -1;
    int64_t mult = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        mult = 60, end++;
    else if (*end == 'h')
        mult = 3600, end++;
    else if (*end == 'd')
        mult = 86400, end++;
    if (*end != 0 || v > INT64_MAX / mult)
        return -1;
    *out = (int64_t) v * mult;
    return 0;
}

static int
s_parse_bool (const char *text, int64_t *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off", ""};
    for (size_t i = 0; i < 4; i++)
        if (strcasecmp (text, yes[i]) == 0)
            return *out = 1, 0;
    for (size_t i = 0; i < 5; i++)
        if (strcasecmp (text, no[i]) == 0)
            return *out = 0, 0;
    return -1;
}

static int
s_check_port (const char *text)
{
    if (!*text || strlen (text) > 5)
        return -1;
    for (const char *p = text; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    long port = strtol (text, NULL, 10);
    return port >= 1 && port <= 65535 ? 0 : -1;
}

static int
s_check_listen (const char *text)
{
    const char *colon = strrchr (text, ':');
    if (!colon)
        return s_check_port (text);
    if (colon == text)
        return -1;
    return s_check_port (colon + 1);
}

static int
s_check_endpoints (const char *text)
{
    //  Each comma-separated item is transport://address, transport known.
    const char *p = text;
    if (!*p)
        return -1;
    while (*p) {
        const char *end = strchr (p, ',');
        size_t len = end ? (size_t) (end - p) : strlen (p);
        if (!((len > 6 && strncmp (p, "tcp://", 6) == 0)
              || (len > 6 && strncmp (p, "ipc://", 6) == 0)
              || (len > 9 && strncmp (p, "inproc://", 9) == 0)))
            return -1;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

//  Check one value; may rewrite it (trailing slash of a URL). 0 or -1.
static int
s_check (const s_setting_t *s, char *value, int64_t *number, const char **expected)
{
    switch (s->kind) {
        case S_STRING:
            return 0;
        case S_INT:
            *expected = "an integer within bounds";
            if (s_parse_int (value, number) || *number < s->min || *number > s->max)
                return -1;
            return 0;
        case S_BOOL:
            *expected = "0 or 1";
            return s_parse_bool (value, number);
        case S_LEVEL: {
            sb_log_level_t level;
            *expected = "debug, info, warn or error";
            if (sb_log_level_parse (value, &level))
                return -1;
            *number = level;
            return 0;
        }
        case S_LISTEN:
            *expected = "[host:]port with port 1-65535";
            return s_check_listen (value);
        case S_URL: {
            *expected = "an http:// or https:// URL without query";
            const char *host = sb_text_url_host (value);
            if (!host || strchr (value, '?') || strchr (value, '#') || strchr (value, ' '))
                return -1;
            if (!*host || *host == '/')
                return -1;
            size_t len = strlen (value);
            while (len > 0 && value[len - 1] == '/')
                value[--len] = 0;
            return 0;
        }
        case S_PREFIX: {
            *expected = "empty or a path like /api/v1 (no trailing slash)";
            if (!*value)
                return 0;
            size_t len = strlen (value);
            if (value[0] != '/' || value[len - 1] == '/' || strchr (value, '?')
                || strchr (value, ' ') || strstr (value, "//"))
                return -1;
            return 0;
        }
        case S_ENDPOINT:
            *expected = "ZeroMQ endpoints like tcp://127.0.0.1:5556, comma-separated";
            return s_check_endpoints (value);
        case S_DURATION:
            *expected = "seconds, or a number with s, m, h or d (like 90s, 30m, 24h, 7d),";
            if (s_parse_duration (value, number) || *number < s->min || *number > s->max)
                return -1;
            return 0;
    }
    return -1;
}

sb_config_t *
sb_config_load_from (unsigned services, char *const *env, char *err, size_t err_size)
{
    sb_config_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, err_size, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < S_COUNT; i++) {
        const s_setting_t *s = &s_settings[i];
        if (!(s->services & services))
            continue;
        size_t name_len = strlen (s->name);
        const char *direct = s_lookup (env, s->name, name_len);
        char file_name[128];
        snprintf (file_name, sizeof file_name, "%s_FILE", s->name);
        const char *file = s_lookup (env, file_name, strlen (file_name));
        if (direct && file) {
            snprintf (err, err_size, "%s and %s_FILE are both set: set only one", s->name,
                      s->name);
            goto fail;
        }
        if (file) {
            self->values[i] = s_read_file (file, err, err_size, s->name);
            if (!self->values[i])
                goto fail;
        }
        else if (direct) {
            if (strlen (direct) > S_MAX_VALUE) {
                snprintf (err, err_size, "%s: longer than %d bytes", s->name, S_MAX_VALUE);
                goto fail;
            }
            self->values[i] = strdup (direct);
        }
        else if (s->dflt)
            self->values[i] = strdup (s->dflt);
        else if (strcmp (s->name, "SB_INGRESS_ID") == 0) {
            char host[256] = "";
            if (gethostname (host, sizeof host - 1) || !*host)
                snprintf (host, sizeof host, "ingress");
            self->values[i] = strdup (host);
        }
        else
            continue;
        if (!self->values[i]) {
            snprintf (err, err_size, "out of memory");
            goto fail;
        }
        const char *expected = "a valid value";
        //  An empty value of a setting without default means "unset".
        if (!*self->values[i] && !s->dflt && s->kind != S_PREFIX) {
            free (self->values[i]);
            self->values[i] = NULL;
            continue;
        }
        if (s_check (s, self->values[i], &self->numbers[i], &expected)) {
            if (s->secret)
                snprintf (err, err_size, "%s: invalid value: expected %s", s->name, expected);
            else
                snprintf (err, err_size, "%s=%.200s: invalid value: expected %s", s->name,
                          self->values[i], expected);
            if (s->kind == S_INT)
                snprintf (err + strlen (err), err_size - strlen (err),
                          " between %lld and %lld", (long long) s->min, (long long) s->max);
            else if (s->kind == S_DURATION)
                snprintf (err + strlen (err), err_size - strlen (err),
                          " from %llds to %llds", (long long) s->min, (long long) s->max);
            goto fail;
        }
    }
    //  Settings that must agree with one another.
    int id = s_index ("SB_INGRESS_ID");
    if (self->values[id]) {
        for (const char *p = self->values[id]; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.')) {
                snprintf (err, err_size,
                          "SB_INGRESS_ID=%.100s: invalid value: expected letters, digits, '-', '_' or '.'",
                          self->values[id]);
                goto fail;
            }
    }
    //  The hard cap of the journal is above its ordinary size limit.
    int max_bytes = s_index ("SB_JOURNAL_MAX_BYTES");
    int hard_bytes = s_index ("SB_JOURNAL_HARD_MAX_BYTES");
    if (self->values[max_bytes] && self->values[hard_bytes]
        && self->numbers[hard_bytes] < self->numbers[max_bytes]) {
        snprintf (err, err_size,
                  "SB_JOURNAL_HARD_MAX_BYTES=%.100s: invalid value: expected at least SB_JOURNAL_MAX_BYTES (%.100s)",
                  self->values[hard_bytes], self->values[max_bytes]);
        goto fail;
    }
    //  SB_INGRESS_REPLAY: one replay endpoint per PUB endpoint; unset, the
    //  default pair of a local install (SB_INGRESS_PUB and SB_REPLAY at
    //  their defaults), otherwise none.
    int pub = s_index ("SB_INGRESS_PUB"), replay = s_index ("SB_INGRESS_REPLAY");
    if (self->values[pub] && !self->values[replay]
        && strcmp (self->values[pub], s_settings[pub].dflt) == 0) {
        self->values[replay] = strdup (s_settings[s_index ("SB_REPLAY")].dflt);
        if (!self->values[replay]) {
            snprintf (err, err_size, "out of memory");
            goto fail;
        }
    }
    if (self->values[pub] && self->values[replay]) {
        size_t pubs = 1, replays = 1;
        for (const char *p = self->values[pub]; *p; p++)
            pubs += *p == ',';
        for (const char *p = self->values[replay]; *p; p++)
            replays += *p == ',';
        if (pubs != replays) {
            snprintf (err, err_size,
                      "SB_INGRESS_REPLAY=%.200s: invalid value: expected %zu endpoint(s), one per SB_INGRESS_PUB endpoint, in the same order",
                      self->values[replay], pubs);
            goto fail;
        }
    }
    return self;
fail:
    sb_config_destroy (&self);
    return NULL;
}

sb_config_t *
sb_config_load (unsigned services, char *err, size_t err_size)
{
    return sb_config_load_from (services, environ, err, err_size);
}

void
sb_config_destroy (sb_config_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    sb_config_t *self = *self_p;
    for (size_t i = 0; i < S_COUNT; i++)
        if (self->values[i]) {
            //  Secrets do not linger in freed memory.
            if (s_settings[i].secret)
                memset (self->values[i], 0, strlen (self->values[i]));
            free (self->values[i]);
        }
    free (self);
    *self_p = NULL;
}

static int
s_require (const sb_config_t *self, const char *name)
{
    int i = s_index (name);
    assert (i >= 0);  //  a name not in the table is our bug
    (void) self;
    return i;
}

const char *
sb_config_str (const sb_config_t *self, const char *name)
{
    int i = s_require (self, name);
    return self->values[i] ? self->values[i] : "";
}

bool
sb_config_has (const sb_config_t *self, const char *name)
{
    int i = s_require (self, name);
    return self->values[i] && *self->values[i];
}

char *
sb_config_dup (const sb_config_t *self, const char *name)
{
    return sb_config_has (self, name) ? strdup (sb_config_str (self, name)) : NULL;
}

int64_t
sb_config_int (const sb_config_t *self, const char *name)
{
    int i = s_require (self, name);
    assert (s_settings[i].kind == S_INT || s_settings[i].kind == S_BOOL
            || s_settings[i].kind == S_LEVEL || s_settings[i].kind == S_DURATION);
    return self->numbers[i];
}

bool
sb_config_bool (const sb_config_t *self, const char *name)
{
    int i = s_require (self, name);
    assert (s_settings[i].kind == S_BOOL);
    return self->numbers[i] != 0;
}

void
sb_config_print_help (unsigned services, FILE *out)
{
    fprintf (out, "Settings (environment variables; NAME_FILE reads the value from a file):\n");
    for (size_t i = 0; i < S_COUNT; i++) {
        const s_setting_t *s = &s_settings[i];
        if (!(s->services & services))
            continue;
        fprintf (out, "  %-30s %s\n", s->name, s->help);
        if (s->dflt && *s->dflt)
            fprintf (out, "  %-30s default: %s\n", "", s->dflt);
        else if (strcmp (s->name, "SB_INGRESS_ID") == 0)
            fprintf (out, "  %-30s default: the host name\n", "");
        if (s->secret)
            fprintf (out, "  %-30s secret: prefer %s_FILE\n", "", s->name);
    }
}

void
sb_config_print_markdown (FILE *out)
{
    static const char *names[] = {"ingress", "dispatcher", "cli", "sandbox"};
    fprintf (out, "| Variable | Used by | Default | Meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < S_COUNT; i++) {
        const s_setting_t *s = &s_settings[i];
        char used[64] = "";
        for (unsigned b = 0; b < 4; b++)
            if (s->services & (1u << b))
                snprintf (used + strlen (used), sizeof used - strlen (used), "%s%s",
                          *used ? ", " : "", names[b]);
        const char *dflt = s->dflt && *s->dflt ? s->dflt : "";
        if (strcmp (s->name, "SB_INGRESS_ID") == 0)
            dflt = "host name";
        fprintf (out, "| `%s` | %s | %s%s%s | %s%s |\n", s->name, used, *dflt ? "`" : "",
                 dflt, *dflt ? "`" : "", s->help, s->secret ? " (secret)" : "");
    }
}

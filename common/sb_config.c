/*  sb_config: the table of settings and their parsers.

    The table is built from the list in sb_config_table.h, in the order of
    the enum sb_setting_t, so a setting's entry is s_settings[setting].
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
#include "sb_sig.h"
#include "sb_text.h"

extern char **environ;

typedef enum {
    S_STRING,    //  any text
    S_INT,       //  integer within [min, max], optional k/m/g suffix for sizes
    S_INT_OFF,   //  0 (off), or an integer within [min, max]
    S_BOOL,      //  0/1, true/false, yes/no, on/off
    S_LEVEL,     //  log level name
    S_LISTEN,    //  [host:]port
    S_URL,       //  http:// or https:// URL, no trailing slash kept
    S_PREFIX,    //  "" or "/seg[/seg]" without trailing slash
    S_ENDPOINT,  //  ZeroMQ endpoint(s), comma-separated
    S_DURATION,  //  seconds within [min, max], optional s/m/h/d suffix
    S_SIG_KEYS,  //  KEY_ID=SECRET pairs, comma-separated (sb_sig_keys_new)
    S_E164,      //  a phone number: '+' and 2 to 15 digits, the first not 0
    S_DIGITS,    //  an id of 1 to 32 decimal digits (Meta's ids)
} s_kind_t;

typedef struct {
    const char *name;   //  environment variable
    unsigned services;  //  SB_SVC_* mask of binaries that read it
    const char *dflt;   //  default text, NULL for none (or computed)
    s_kind_t kind;      //  parser
    int64_t min, max;   //  bounds for S_INT and S_INT_OFF
    bool secret;        //  never printed
    const char *help;   //  one line for --help
} s_setting_t;

#define ING SB_SVC_INGRESS
#define DIS SB_SVC_DISPATCHER
#define CLI SB_SVC_CLI
#define SBX SB_SVC_SANDBOX
#define CON SB_SVC_CONSOLE

static const s_setting_t s_settings[] = {
#define SB_SETTING(name, services, dflt, kind, min, max, secret, help)                             \
    {#name, services, dflt, kind, min, max, secret, help},
#include "sb_config_table.h"
#undef SB_SETTING
};

#define S_COUNT (sizeof s_settings / sizeof s_settings[0])
#define S_MAX_VALUE (64 * 1024)

struct sb_config_t {
    char *values[S_COUNT];     //  text value, NULL when unset without default
    int64_t numbers[S_COUNT];  //  parsed S_INT(_OFF) / S_BOOL value
};

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
        snprintf (err, err_size, "%s_FILE: %s is larger than %d bytes", name, path, S_MAX_VALUE);
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
        case S_STRING: return 0;
        case S_INT:
            *expected = "an integer within bounds";
            if (s_parse_int (value, number) || *number < s->min || *number > s->max)
                return -1;
            return 0;
        case S_INT_OFF:
            *expected = "0 (off) or an integer";
            if (s_parse_int (value, number)
                || (*number != 0 && (*number < s->min || *number > s->max)))
                return -1;
            return 0;
        case S_BOOL: *expected = "0 or 1"; return s_parse_bool (value, number);
        case S_LEVEL: {
            sb_log_level_t level;
            *expected = "debug, info, warn or error";
            if (sb_log_level_parse (value, &level))
                return -1;
            *number = level;
            return 0;
        }
        case S_LISTEN: *expected = "[host:]port with port 1-65535"; return s_check_listen (value);
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
        case S_E164: {
            *expected = "a phone number in E.164 form, like +14155550100";
            size_t digits = strspn (value + (*value == '+'), "0123456789");
            return value[0] == '+' && value[1] != '0' && digits >= 2 && digits <= 15
                           && value[1 + digits] == 0
                       ? 0
                       : -1;
        }
        case S_DIGITS: {
            *expected = "decimal digits only (1 to 32)";
            size_t digits = strspn (value, "0123456789");
            return digits >= 1 && digits <= 32 && value[digits] == 0 ? 0 : -1;
        }
        case S_SIG_KEYS: {
            sb_sig_keys_t *keys = sb_sig_keys_new (value, expected);
            int rc = keys ? 0 : -1;
            sb_sig_keys_destroy (&keys);
            return rc;
        }
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
            snprintf (err, err_size, "%s and %s_FILE are both set: set only one", s->name, s->name);
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
        else if (i == SB_CFG_SB_INGRESS_ID) {
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
            if (s->kind == S_INT || s->kind == S_INT_OFF)
                snprintf (err + strlen (err), err_size - strlen (err), " between %lld and %lld",
                          (long long) s->min, (long long) s->max);
            else if (s->kind == S_DURATION)
                snprintf (err + strlen (err), err_size - strlen (err), " from %llds to %llds",
                          (long long) s->min, (long long) s->max);
            goto fail;
        }
    }
    //  Settings that must agree with one another.
    int id = SB_CFG_SB_INGRESS_ID;
    if (self->values[id]) {
        for (const char *p = self->values[id]; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
                  || *p == '-' || *p == '_' || *p == '.')) {
                snprintf (err, err_size,
                          "SB_INGRESS_ID=%.100s: invalid value: expected letters, digits, '-', '_' "
                          "or '.'",
                          self->values[id]);
                goto fail;
            }
    }
    //  The hard cap of the journal is above its ordinary size limit.
    int max_bytes = SB_CFG_SB_JOURNAL_MAX_BYTES;
    int hard_bytes = SB_CFG_SB_JOURNAL_HARD_MAX_BYTES;
    if (self->values[max_bytes] && self->values[hard_bytes]
        && self->numbers[hard_bytes] < self->numbers[max_bytes]) {
        snprintf (err, err_size,
                  "SB_JOURNAL_HARD_MAX_BYTES=%.100s: invalid value: expected at least "
                  "SB_JOURNAL_MAX_BYTES (%.100s)",
                  self->values[hard_bytes], self->values[max_bytes]);
        goto fail;
    }
    //  SB_INGRESS_REPLAY: one replay endpoint per PUB endpoint; unset, the
    //  default pair of a local install (SB_INGRESS_PUB and SB_REPLAY at
    //  their defaults), otherwise none.
    int pub = SB_CFG_SB_INGRESS_PUB, replay = SB_CFG_SB_INGRESS_REPLAY;
    if (self->values[pub] && !self->values[replay]
        && strcmp (self->values[pub], s_settings[pub].dflt) == 0) {
        self->values[replay] = strdup (s_settings[SB_CFG_SB_REPLAY].dflt);
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
                      "SB_INGRESS_REPLAY=%.200s: invalid value: expected %zu endpoint(s), one per "
                      "SB_INGRESS_PUB endpoint, in the same order",
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
s_require (sb_setting_t setting)
{
    assert ((unsigned) setting < S_COUNT);  //  only a cast can miss the table
    return (int) setting;
}

const char *
sb_config_str (const sb_config_t *self, sb_setting_t setting)
{
    int i = s_require (setting);
    return self->values[i] ? self->values[i] : "";
}

bool
sb_config_has (const sb_config_t *self, sb_setting_t setting)
{
    int i = s_require (setting);
    return self->values[i] && *self->values[i];
}

char *
sb_config_dup (const sb_config_t *self, sb_setting_t setting)
{
    return sb_config_has (self, setting) ? strdup (sb_config_str (self, setting)) : NULL;
}

int64_t
sb_config_int (const sb_config_t *self, sb_setting_t setting)
{
    int i = s_require (setting);
    assert (s_settings[i].kind == S_INT || s_settings[i].kind == S_INT_OFF
            || s_settings[i].kind == S_BOOL || s_settings[i].kind == S_LEVEL
            || s_settings[i].kind == S_DURATION);
    return self->numbers[i];
}

bool
sb_config_bool (const sb_config_t *self, sb_setting_t setting)
{
    int i = s_require (setting);
    assert (s_settings[i].kind == S_BOOL);
    return self->numbers[i] != 0;
}

const char *
sb_config_name (sb_setting_t setting)
{
    return s_settings[s_require (setting)].name;
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
        else if (i == SB_CFG_SB_INGRESS_ID)
            fprintf (out, "  %-30s default: the host name\n", "");
        if (s->secret)
            fprintf (out, "  %-30s secret: prefer %s_FILE\n", "", s->name);
    }
}

void
sb_config_print_markdown (FILE *out)
{
    static const char *names[] = {"ingress", "dispatcher", "cli", "sandbox", "console"};
    fprintf (out, "| Variable | Used by | Default | Meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < S_COUNT; i++) {
        const s_setting_t *s = &s_settings[i];
        char used[64] = "";
        for (unsigned b = 0; b < sizeof names / sizeof names[0]; b++)
            if (s->services & (1u << b))
                snprintf (used + strlen (used), sizeof used - strlen (used), "%s%s",
                          *used ? ", " : "", names[b]);
        const char *dflt = s->dflt && *s->dflt ? s->dflt : "";
        if (i == SB_CFG_SB_INGRESS_ID)
            dflt = "host name";
        fprintf (out, "| `%s` | %s | %s%s%s | %s%s |\n", s->name, used, *dflt ? "`" : "", dflt,
                 *dflt ? "`" : "", s->help, s->secret ? " (secret)" : "");
    }
}

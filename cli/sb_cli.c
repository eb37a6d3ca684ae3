/*  sb_cli: helpers shared by the `switchboard` subcommands.

    Start-up loads the settings once (no getenv afterwards) and sets up
    sb_log on stderr, so library modules that log (the journal reader, the
    codec) speak in the same format as the services. Output meant for people
    or pipes goes to stdout; diagnostics go to stderr.

    The event printers never break a line: control bytes in provider text are
    escaped in the human form, and the JSON form is one compact object.
*/
#include "sb_cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb_log.h"

sb_config_t *
sb_cli_setup (const char *cmd)
{
    char err[512];
    sb_config_t *config = sb_config_load (SB_SVC_CLI, err, sizeof err);
    if (!config) {
        fprintf (stderr, "switchboard %s: %s\n", cmd, err);
        return NULL;
    }
    sb_log_init ("switchboard", (sb_log_level_t) sb_config_int (config, SB_CFG_SB_LOG_LEVEL));
    return config;
}

int
sb_cli_usage_error (const char *cmd, const char *fmt, ...)
{
    char message[512];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    fprintf (stderr, "switchboard %s: %s\nTry 'switchboard %s --help'.\n", cmd, message, cmd);
    return SB_CLI_USAGE;
}

//  The signal flag: set by SIGINT/SIGTERM, read by a command's loop (one
//  of the three globals STYLE.md allows).
static volatile sig_atomic_t s_interrupted = 0;

static void
s_on_signal (int signum)
{
    (void) signum;
    s_interrupted = 1;
}

void
sb_cli_catch_signals (void)
{
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
}

bool
sb_cli_interrupted (void)
{
    return s_interrupted;
}

int
sb_cli_bad_flag (const char *cmd, int c, char **argv)
{
    //  getopt_long has moved optind past a bad long flag; for a short one
    //  optopt holds the letter.
    const char *token = optind > 0 ? argv[optind - 1] : NULL;
    char shortname[3] = {'-', (char) optopt, 0};
    if (!token || strncmp (token, "--", 2) != 0)
        token = (optopt > 32 && optopt < 127) ? shortname : token ? token : "?";
    if (c == ':')
        return sb_cli_usage_error (cmd, "flag %s needs a value", token);
    return sb_cli_usage_error (cmd, "unknown flag %s", token);
}

int
sb_cli_parse_u64 (const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!text || *text < '0' || *text > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long value = strtoull (text, &end, 10);
    if (errno || *end || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

int
sb_cli_parse_seconds (const char *text, double max, double *out)
{
    if (!text || !((*text >= '0' && *text <= '9') || *text == '.'))
        return -1;
    errno = 0;
    char *end;
    double value = strtod (text, &end);
    if (errno || *end || !isfinite (value) || value < 0 || value > max)
        return -1;
    *out = value;
    return 0;
}

void
sb_cli_print_quoted (FILE *out, const char *text)
{
    fputc ('"', out);
    for (const unsigned char *p = (const unsigned char *) (text ? text : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf (out, "\\%c", *p);
        else if (*p == '\n')
            fputs ("\\n", out);
        else if (*p == '\r')
            fputs ("\\r", out);
        else if (*p == '\t')
            fputs ("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf (out, "\\x%02x", *p);
        else
            fputc (*p, out);
    }
    fputc ('"', out);
}

const char *
sb_cli_short_topic (const char *topic)
{
    return strncmp (topic, "sb.v1.", 6) == 0 ? topic + 6 : topic;
}

//  True when a protobuf-c string field holds text (they are "" when empty,
//  but a hand-built event may leave NULL).
static bool
s_has (const char *text)
{
    return text && *text;
}

//  Print " key=value" with value quoted when it holds anything but plain
//  address or id characters.
static void
s_field (FILE *out, const char *key, const char *value)
{
    if (!s_has (value))
        return;
    bool plain = true;
    for (const unsigned char *p = (const unsigned char *) value; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '\\' || *p >= 0x7f)
            plain = false;
    fprintf (out, " %s=", key);
    if (plain)
        fputs (value, out);
    else
        sb_cli_print_quoted (out, value);
}

void
sb_cli_print_summary (FILE *out, const sb_event_t *ev)
{
    if (s_has (ev->message_type) && strcmp (ev->message_type, "text") != 0)
        s_field (out, "type", ev->message_type);
    s_field (out, "sid", ev->provider_id);
    s_field (out, "from", ev->from);
    s_field (out, "to", ev->to);
    s_field (out, "name", ev->profile_name);
    s_field (out, "call_status", ev->call_status);
    if (ev->status) {
        s_field (out, "status", ev->status->status);
        s_field (out, "error", ev->status->error_code);
        s_field (out, "error_message", ev->status->error_message);
    }
    s_field (out, "digits", ev->digits);
    if (s_has (ev->speech_result)) {
        s_field (out, "speech", ev->speech_result);
        fprintf (out, " confidence=%g", ev->speech_confidence);
    }
    if (s_has (ev->text)) {
        fputs (" text=", out);
        sb_cli_print_quoted (out, ev->text);
    }
    if (ev->n_media > 0) {
        fprintf (out, " media=%zu", ev->n_media);
        const sb_event_media_t *media = ev->media[0];
        if (media) {
            s_field (out, "media0", s_has (media->url) ? media->url : media->id);
            s_field (out, "media0_type", media->content_type);
        }
    }
    if (ev->location)
        fprintf (out, " location=%.6f,%.6f", ev->location->latitude, ev->location->longitude);
    if (ev->interactive) {
        s_field (out, "reply_type", ev->interactive->type);
        s_field (out, "reply_id", ev->interactive->id);
        s_field (out, "reply_title", ev->interactive->title);
    }
    if (ev->reaction) {
        fputs (" reaction=", out);
        sb_cli_print_quoted (out, ev->reaction->emoji);
        s_field (out, "reaction_to", ev->reaction->message_id);
    }
    if (ev->n_contacts > 0)
        fprintf (out, " contacts=%zu", ev->n_contacts);
    if (ev->order)
        fprintf (out, " order_items=%zu", ev->order->n_items);
    if (ev->system)
        s_field (out, "system", ev->system->type);
    if (ev->n_errors > 0 && ev->errors[0])
        fprintf (out, " error_code=%lld", (long long) ev->errors[0]->code);
    s_field (out, "context", ev->context_id);
}

//  JSON string of text into a new buffer (caller frees), quotes included.
//  Bytes that are not UTF-8 become '?': a topic frame from the wire may be
//  anything.
static char *
s_json_quote (const char *text)
{
    json_t *string = json_string (text);
    if (!string) {
        char *copy = strdup (text);
        if (!copy)
            return NULL;
        for (unsigned char *p = (unsigned char *) copy; *p; p++)
            if (*p >= 0x80)
                *p = '?';
        string = json_string (copy);
        free (copy);
    }
    if (!string)
        return NULL;
    char *quoted = json_dumps (string, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref (string);
    return quoted;
}

int
sb_cli_print_json (FILE *out, const sb_event_t *ev, const char *topic)
{
    char *json = sb_event_to_json (ev);
    if (!json)
        return -1;
    if (!topic || json[0] != '{') {
        fprintf (out, "%s\n", json);
        free (json);
        return 0;
    }
    //  Splice "topic" in front rather than re-parse: the text stays exactly
    //  what sb_event_to_json wrote (numbers included).
    char *quoted = s_json_quote (topic);
    if (!quoted) {
        free (json);
        return -1;
    }
    const char *rest = json + 1;
    while (*rest == ' ')
        rest++;
    fprintf (out, "{\"topic\":%s%s%s\n", quoted, *rest == '}' ? "" : ",", rest);
    free (quoted);
    free (json);
    return 0;
}

int
sb_cli_exec (const char *cmd, const char *binary, char **argv)
{
    char ebuf[128];
    char self[PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
    char beside[PATH_MAX + 64] = "";
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr (self, '/');
        if (slash) {
            slash[1] = 0;
            snprintf (beside, sizeof beside, "%s%s", self, binary);
            argv[0] = beside;
            execv (beside, argv);
        }
    }
    char name[64];
    snprintf (name, sizeof name, "%s", binary);
    argv[0] = name;
    execvp (name, argv);
    int error = errno;
    fprintf (stderr,
             "switchboard %s: cannot run %s: looked for %s and on PATH (%s): %s\n"
             "Build it (target %s) or install it next to switchboard.\n",
             cmd, binary, *beside ? beside : "it next to switchboard", binary,
             sb_strerror (error, ebuf, sizeof ebuf), binary);
    return SB_CLI_FAILED;
}

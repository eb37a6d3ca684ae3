/*  switchboard send: build a realistic provider webhook, sign it exactly as
    the provider would, and post it to an ingress (local development without
    a tunnel, integration tests, simple load).

    Twilio requests are forms shaped like tests/conformance/twilio-*.form
    (same parameters, in Twilio's order), signed with X-Twilio-Signature
    over the PUBLIC URL: SB_PUBLIC_URL when set (what Twilio would have been
    given), else --url, then SB_PATH_PREFIX and the route. Meta requests are
    compact JSON envelopes like tests/conformance/meta-*.json, non-ASCII and
    '/' escaped as Meta sends them, signed with X-Hub-Signature-256 over the
    exact bytes posted. Ids are fresh for every request: SM/MM/CA + 32 hex
    digits, wamid.<base64> built the way Meta's are. Ids, segment counts and
    the status webhooks come from sb_fakeprov, which the provider sandbox
    uses for its answers and callbacks too.

    --file posts a given body verbatim (signed), so the integration tests can
    post every conformance payload. --print-only prints the request (with a
    Content-Length header, so a reader can split the body exactly) instead
    of sending it.

    libcurl's easy interface, one handle reused for every request so --count
    keeps the connection alive. Answers are read up to S_MAX_ANSWER bytes.
*/
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sb_cli.h"
#include "sb_cmd.h"
#include "sb_fakeprov.h"
#include "sb_form.h"
#include "sb_log.h"
#include "sb_sig.h"
#include "sb_text.h"
#include "sb_time.h"

#define S_CMD "send"
#define S_DEFAULT_URL "http://127.0.0.1:8080"
#define S_MAX_MEDIA 10                  //  Twilio's limit per message
#define S_MAX_FLAG 1024                 //  longest address, sid, status, ... flag
#define S_MAX_BODY_FLAG (64 * 1024)     //  longest --body
#define S_MAX_FILE (64u * 1024 * 1024)  //  largest --file (SB_MAX_BODY's ceiling)
#define S_MAX_ANSWER (1024 * 1024)      //  answer bytes kept for printing
#define S_MAX_COUNT 10000000

//  Defaults: a user's number and the business's number (fictional 555s),
//  Meta's documented example WABA and phone number id.
#define S_USER "+14155550100"
#define S_OURS "+15558675310"
#define S_PROFILE "Ada Lovelace"
#define S_BODY "Hello from switchboard send"
#define S_META_PHONE_ID "106540352242922"

typedef enum { S_TWILIO = 1, S_META = 2 } s_provider_t;

typedef enum {
    K_TWILIO_SMS,
    K_TWILIO_WHATSAPP,
    K_TWILIO_VOICE,
    K_TWILIO_GATHER,
    K_TWILIO_STATUS,
    K_META_TEXT,
    K_META_STATUS,
    K_META_VERIFY,
    K_FILE,  //  --file: not a KIND name
} s_kind_id_t;

//  One KIND: its name, provider, route and help line (indexed by s_kind_id_t).
typedef struct {
    const char *name;       //  as typed
    s_provider_t provider;  //  who signs it
    const char *path;       //  route below SB_PATH_PREFIX
    const char *help;       //  one line for --help
} s_kind_t;

static const s_kind_t s_kinds[] = {
    {"twilio-sms", S_TWILIO, "/twilio/messages", "inbound SMS (MMS with --media)"},
    {"twilio-whatsapp", S_TWILIO, "/twilio/messages", "inbound WhatsApp message through Twilio"},
    {"twilio-voice", S_TWILIO, "/twilio/voice", "inbound call (--status sets CallStatus)"},
    {"twilio-gather", S_TWILIO, "/twilio/gather",
     "<Gather> result: --digits, or speech when --body is given"},
    {"twilio-status", S_TWILIO, "/twilio/status",
     "message status callback; a call's when --sid is CA... or --status is a call status"},
    {"meta-text", S_META, "/meta/whatsapp", "WhatsApp Cloud API inbound text (media with --media)"},
    {"meta-status", S_META, "/meta/whatsapp", "WhatsApp Cloud API status of a sent message"},
    {"meta-verify", S_META, "/meta/whatsapp",
     "GET subscription handshake with META_VERIFY_TOKEN; checks the echoed challenge"},
};
#define S_KIND_COUNT (sizeof s_kinds / sizeof s_kinds[0])

//  Options as parsed from the command line (strings borrowed from argv).
typedef struct {
    s_kind_id_t kind;                //  what to build
    const char *url;                 //  --url, where to post
    const char *from;                //  --from, NULL for the kind's default
    const char *to;                  //  --to
    const char *body;                //  --body
    const char *sid;                 //  --sid: the provider id to use
    const char *account;             //  --account: AccountSid / phone_number_id
    const char *digits;              //  --digits
    const char *status;              //  --status
    const char *error_code;          //  --error-code, as typed (digits)
    uint64_t error_number;           //  --error-code, parsed
    const char *profile_name;        //  --profile-name
    const char *media[S_MAX_MEDIA];  //  --media URLs
    size_t n_media;                  //  how many
    bool print_only;                 //  --print-only
    bool no_sign;                    //  --no-sign
    uint64_t count;                  //  --count
    double timeout;                  //  --timeout, seconds per request
    const char *file;                //  --file PATH
    s_provider_t provider;           //  --provider (with --file), 0 = from extension
    const char *path;                //  --path (with --file)
} s_opts_t;

//  One request ready to print or send.
typedef struct {
    const char *method;        //  "POST" or "GET"
    char *path;                //  route and query below the prefix (owned)
    char *body;                //  body bytes (owned), NULL for GET
    size_t body_size;          //  bytes in body
    const char *content_type;  //  Content-Type, NULL for GET
    char sig_header[128];      //  "X-Twilio-Signature: ..." or "X-Hub-...", "" unsigned
    char id[256];              //  provider id, for the --count lines
    char expect_body[32];      //  meta-verify: the challenge to be echoed, else ""
} s_request_t;

//  Everything the builders need, fixed for the whole run.
typedef struct {
    const s_opts_t *opts;      //  flags
    const char *secret;        //  TWILIO_AUTH_TOKEN / META_APP_SECRET / META_VERIFY_TOKEN
    const char *sign_base;     //  SB_PUBLIC_URL, else the --url base
    const char *post_base;     //  the --url base, no trailing '/'
    const char *prefix;        //  SB_PATH_PREFIX
    char account[64];          //  AccountSid for Twilio, phone_number_id for Meta
    const uint8_t *file_data;  //  --file contents (borrowed)
    size_t file_size;          //  bytes in file_data
} s_ctx_t;

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: switchboard send KIND [FLAGS]\n"
             "       switchboard send --file PATH [--provider twilio|meta] [--path ROUTE] [FLAGS]\n"
             "\n"
             "Build a realistic webhook request, sign it as the provider does and post it to the\n"
             "ingress; print the HTTP status line and the answer. KIND is one of:\n");
    for (size_t i = 0; i < S_KIND_COUNT; i++)
        fprintf (out, "  %-16s %s %s: %s\n", s_kinds[i].name, i == K_META_VERIFY ? "GET" : "POST",
                 s_kinds[i].path, s_kinds[i].help);
    fprintf (out,
             "\n"
             "  --url BASE          where the ingress listens (default %s); the route is\n"
             "                      appended after SB_PATH_PREFIX\n"
             "  --from ADDR         sender (default %s, or ours %s for status callbacks)\n"
             "  --to ADDR           recipient (default %s, or the user for status callbacks);\n"
             "                      twilio-whatsapp adds \"whatsapp:\", meta-* drop '+'\n"
             "  --body TEXT         message text (default \"%s\"); twilio-gather: speech\n"
             "  --sid ID            provider id to use instead of a fresh one (MessageSid,\n"
             "                      CallSid, wamid) - e.g. to post a status for a sent message\n"
             "  --account ID        Twilio AccountSid (default: TWILIO_ACCOUNT_SID, else a fresh\n"
             "                      AC... per run) or Meta phone_number_id (default %s)\n"
             "  --digits D          twilio-gather Digits (default 1234)\n"
             "  --status S          twilio-status / meta-status status (default delivered;\n"
             "                      completed for calls), twilio-voice CallStatus (ringing)\n"
             "  --error-code C      error code of a failed/undelivered status (defaults:\n"
             "                      30003 SMS, 63016 WhatsApp, 131049 Meta)\n"
             "  --profile-name N    WhatsApp profile name (default \"%s\")\n"
             "  --media URL         attach media (repeatable, up to %d); the type is guessed\n"
             "                      from the extension\n"
             "  --count N           send N requests, one status line each; each has fresh ids\n"
             "                      unless --sid is given (then they are N retries)\n"
             "  --timeout SECONDS   per-request HTTP timeout (default 30)\n"
             "  --print-only        print the request (with Content-Length) instead of sending\n"
             "  --no-sign           send without a signature header (to test refusals)\n"
             "  --file PATH         post PATH verbatim, signed; with --provider twilio|meta\n"
             "                      (default: from the extension, .form or .json) and --path\n"
             "                      (default /twilio/messages or /meta/whatsapp)\n"
             "  -h, --help          this help\n"
             "\n"
             "Signing: Twilio over SB_PUBLIC_URL (else --url) + SB_PATH_PREFIX + route with\n"
             "TWILIO_AUTH_TOKEN; Meta over the body with META_APP_SECRET.\n"
             "Exit status: 0 every answer was 2xx, 1 otherwise, 2 bad flags or a missing secret.\n",
             S_DEFAULT_URL, S_USER, S_OURS, S_OURS, S_BODY, S_META_PHONE_ID, S_PROFILE,
             S_MAX_MEDIA);
}

//  ---------------------------------------------------------------------
//  Flags

static int
s_check_len (const char *flag, const char *value, size_t max)
{
    if (strlen (value) > max)
        return sb_cli_usage_error (S_CMD, "%s: longer than %zu bytes", flag, max);
    return 0;
}

//  Parse flags into opts. Returns -1 after printing help (exit 0), a usage
//  status, or SB_CLI_OK.
static int
s_parse (int argc, char **argv, s_opts_t *opts)
{
    enum {
        O_URL = 256,
        O_FROM,
        O_TO,
        O_BODY,
        O_SID,
        O_ACCOUNT,
        O_DIGITS,
        O_STATUS,
        O_ERROR,
        O_PROFILE,
        O_MEDIA,
        O_PRINT,
        O_NOSIGN,
        O_COUNT,
        O_TIMEOUT,
        O_FILE,
        O_PROVIDER,
        O_PATH
    };
    static const struct option longopts[] = {
        {"url", required_argument, NULL, O_URL},
        {"from", required_argument, NULL, O_FROM},
        {"to", required_argument, NULL, O_TO},
        {"body", required_argument, NULL, O_BODY},
        {"sid", required_argument, NULL, O_SID},
        {"account", required_argument, NULL, O_ACCOUNT},
        {"digits", required_argument, NULL, O_DIGITS},
        {"status", required_argument, NULL, O_STATUS},
        {"error-code", required_argument, NULL, O_ERROR},
        {"profile-name", required_argument, NULL, O_PROFILE},
        {"media", required_argument, NULL, O_MEDIA},
        {"print-only", no_argument, NULL, O_PRINT},
        {"no-sign", no_argument, NULL, O_NOSIGN},
        {"count", required_argument, NULL, O_COUNT},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"file", required_argument, NULL, O_FILE},
        {"provider", required_argument, NULL, O_PROVIDER},
        {"path", required_argument, NULL, O_PATH},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset (opts, 0, sizeof *opts);
    opts->url = S_DEFAULT_URL;
    opts->count = 1;
    opts->timeout = 30;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long (argc, argv, ":h", longopts, NULL)) != -1) {
        const char **target = NULL;
        const char *flag = NULL;
        switch (c) {
            case 'h': s_usage (stdout); return -1;
            case O_URL:
                opts->url = optarg;
                if (!sb_text_url_host (optarg))
                    return sb_cli_usage_error (S_CMD, "--url %s: expected http://host:port",
                                               optarg);
                if (s_check_len ("--url", optarg, S_MAX_FLAG))
                    return SB_CLI_USAGE;
                break;
            case O_FROM: target = &opts->from, flag = "--from"; break;
            case O_TO: target = &opts->to, flag = "--to"; break;
            case O_SID: target = &opts->sid, flag = "--sid"; break;
            case O_ACCOUNT: target = &opts->account, flag = "--account"; break;
            case O_DIGITS: target = &opts->digits, flag = "--digits"; break;
            case O_STATUS: target = &opts->status, flag = "--status"; break;
            case O_PROFILE: target = &opts->profile_name, flag = "--profile-name"; break;
            case O_BODY:
                if (s_check_len ("--body", optarg, S_MAX_BODY_FLAG))
                    return SB_CLI_USAGE;
                opts->body = optarg;
                break;
            case O_ERROR: {
                if (sb_cli_parse_u64 (optarg, 1, 999999999, &opts->error_number))
                    return sb_cli_usage_error (S_CMD, "--error-code %s: expected digits", optarg);
                opts->error_code = optarg;
                break;
            }
            case O_MEDIA:
                if (opts->n_media == S_MAX_MEDIA)
                    return sb_cli_usage_error (S_CMD, "at most %d --media", S_MAX_MEDIA);
                if (!sb_text_url_host (optarg))
                    return sb_cli_usage_error (S_CMD, "--media %s: expected an http(s) URL",
                                               optarg);
                if (s_check_len ("--media", optarg, S_MAX_FLAG))
                    return SB_CLI_USAGE;
                opts->media[opts->n_media++] = optarg;
                break;
            case O_PRINT: opts->print_only = true; break;
            case O_NOSIGN: opts->no_sign = true; break;
            case O_COUNT:
                if (sb_cli_parse_u64 (optarg, 1, S_MAX_COUNT, &opts->count))
                    return sb_cli_usage_error (S_CMD, "--count %s: expected 1 to %d", optarg,
                                               S_MAX_COUNT);
                break;
            case O_TIMEOUT:
                if (sb_cli_parse_seconds (optarg, 3600, &opts->timeout) || opts->timeout <= 0)
                    return sb_cli_usage_error (S_CMD, "--timeout %s: expected seconds > 0", optarg);
                break;
            case O_FILE: opts->file = optarg; break;
            case O_PROVIDER:
                if (strcmp (optarg, "twilio") == 0)
                    opts->provider = S_TWILIO;
                else if (strcmp (optarg, "meta") == 0)
                    opts->provider = S_META;
                else
                    return sb_cli_usage_error (S_CMD, "--provider %s: expected twilio or meta",
                                               optarg);
                break;
            case O_PATH:
                if (optarg[0] != '/' || strchr (optarg, ' ') || strchr (optarg, '#'))
                    return sb_cli_usage_error (
                        S_CMD, "--path %s: expected a route like /twilio/messages", optarg);
                if (s_check_len ("--path", optarg, S_MAX_FLAG))
                    return SB_CLI_USAGE;
                opts->path = optarg;
                break;
            default: return sb_cli_bad_flag (S_CMD, c, argv);
        }
        if (target) {
            if (s_check_len (flag, optarg, S_MAX_FLAG))
                return SB_CLI_USAGE;
            *target = optarg;
        }
    }
    int rest = argc - optind;
    if (opts->file) {
        if (rest > 0)
            return sb_cli_usage_error (S_CMD, "--file takes no KIND (got '%s')", argv[optind]);
        opts->kind = K_FILE;
        if (!opts->provider) {
            const char *dot = strrchr (opts->file, '.');
            if (dot && strcmp (dot, ".form") == 0)
                opts->provider = S_TWILIO;
            else if (dot && strcmp (dot, ".json") == 0)
                opts->provider = S_META;
            else
                return sb_cli_usage_error (
                    S_CMD, "--file %s: say --provider twilio or meta (not a .form or .json file)",
                    opts->file);
        }
        if (!opts->path)
            opts->path = opts->provider == S_TWILIO ? "/twilio/messages" : "/meta/whatsapp";
        return SB_CLI_OK;
    }
    if (opts->provider || opts->path)
        return sb_cli_usage_error (S_CMD, "--provider and --path go with --file");
    if (rest == 0)
        return sb_cli_usage_error (S_CMD, "expected a KIND (twilio-sms, meta-text, ...) or --file");
    if (rest > 1)
        return sb_cli_usage_error (S_CMD, "expected one KIND, got %d arguments", rest);
    for (size_t i = 0; i < S_KIND_COUNT; i++)
        if (strcmp (argv[optind], s_kinds[i].name) == 0) {
            opts->kind = (s_kind_id_t) i;
            return SB_CLI_OK;
        }
    return sb_cli_usage_error (S_CMD, "unknown KIND '%s'", argv[optind]);
}

//  ---------------------------------------------------------------------
//  Ids, addresses and other realistic details

//  "whatsapp:" + the bare address.
static void
s_whatsapp (char *out, size_t size, const char *addr)
{
    snprintf (out, size, "whatsapp:%s", sb_fakeprov_bare (addr));
}

//  Meta's form of an address: digits only (no "whatsapp:", no '+').
static void
s_meta_address (char *out, size_t size, const char *addr)
{
    const char *p = sb_fakeprov_bare (addr);
    if (*p == '+')
        p++;
    snprintf (out, size, "%s", p);
}

//  A North American number: the Twilio geography fields make sense.
static bool
s_nanp (const char *addr)
{
    return strncmp (sb_fakeprov_bare (addr), "+1", 2) == 0;
}

//  The media type of a URL, from its extension.
static const char *
s_content_type (const char *url)
{
    static const char *const table[][2] = {
        {".jpg", "image/jpeg"},      {".jpeg", "image/jpeg"}, {".png", "image/png"},
        {".gif", "image/gif"},       {".webp", "image/webp"}, {".mp4", "video/mp4"},
        {".3gp", "video/3gpp"},      {".ogg", "audio/ogg"},   {".opus", "audio/ogg"},
        {".mp3", "audio/mpeg"},      {".amr", "audio/amr"},   {".m4a", "audio/mp4"},
        {".pdf", "application/pdf"}, {".txt", "text/plain"},  {".vcf", "text/vcard"},
    };
    const char *end = url + strcspn (url, "?#");
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        size_t len = strlen (table[i][0]);
        if ((size_t) (end - url) > len && strncasecmp (end - len, table[i][0], len) == 0)
            return table[i][1];
    }
    return "application/octet-stream";
}

//  WhatsApp message type of a media type.
static const char *
s_media_kind (const char *content_type)
{
    if (strncmp (content_type, "image/", 6) == 0)
        return strcmp (content_type, "image/webp") == 0 ? "sticker" : "image";
    if (strncmp (content_type, "video/", 6) == 0)
        return "video";
    if (strncmp (content_type, "audio/", 6) == 0)
        return "audio";
    return "document";
}

//  Statuses only a call has (Twilio's CallStatus values that are not also
//  message statuses).
static bool
s_call_status (const char *status)
{
    static const char *const calls[] = {"initiated", "ringing", "in-progress",
                                        "completed", "busy",    "no-answer"};
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
        if (strcmp (status, calls[i]) == 0)
            return true;
    return false;
}

//  ---------------------------------------------------------------------
//  Twilio forms

//  MediaContentTypeN (first) or MediaUrlN (urls true) for every --media.
static int
s_add_media (sb_form_t *form, const s_opts_t *opts, bool urls)
{
    for (size_t i = 0; i < opts->n_media; i++) {
        char key[48];
        snprintf (key, sizeof key, "%s%zu", urls ? "MediaUrl" : "MediaContentType", i);
        if (sb_form_add (form, key, urls ? opts->media[i] : s_content_type (opts->media[i])))
            return -1;
    }
    return 0;
}

//  Fill form for a Twilio KIND; the provider id goes to req->id.
static int
s_twilio_form (const s_ctx_t *ctx, uint64_t index, sb_form_t *form, s_request_t *req)
{
    const s_opts_t *o = ctx->opts;
    char sid[S_MAX_FLAG + 1], body[S_MAX_BODY_FLAG + 64], from[S_MAX_FLAG + 16],
        to[S_MAX_FLAG + 16];
    char num_media[8], segments[16], wa_id[S_MAX_FLAG + 16];
    snprintf (num_media, sizeof num_media, "%zu", o->n_media);
    if (o->body)
        snprintf (body, sizeof body, "%s", o->body);
    else if (o->count > 1)
        snprintf (body, sizeof body, "%s (%llu/%llu)", S_BODY, (unsigned long long) index + 1,
                  (unsigned long long) o->count);
    else
        snprintf (body, sizeof body, "%s", S_BODY);
    const char *account = ctx->account;
    const char *api = "2010-04-01";

    switch (o->kind) {
        case K_TWILIO_SMS: {
            if (o->sid)
                snprintf (sid, sizeof sid, "%s", o->sid);
            else
                sb_fakeprov_hex_id (sid, sizeof sid, o->n_media ? "MM" : "SM", 32, false);
            snprintf (from, sizeof from, "%s", o->from ? o->from : S_USER);
            snprintf (to, sizeof to, "%s", o->to ? o->to : S_OURS);
            snprintf (segments, sizeof segments, "%d", sb_fakeprov_sms_segments (body));
            bool geo_to = s_nanp (to), geo_from = s_nanp (from);
            const char *pairs[] = {"ToCountry",
                                   geo_to ? "US" : NULL,
                                   "ToState",
                                   geo_to ? "CA" : NULL,
                                   "SmsMessageSid",
                                   sid,
                                   "NumMedia",
                                   num_media,
                                   "ToCity",
                                   geo_to ? "SAUSALITO" : NULL,
                                   "FromZip",
                                   geo_from ? "94103" : NULL,
                                   "SmsSid",
                                   sid,
                                   "FromState",
                                   geo_from ? "CA" : NULL,
                                   "SmsStatus",
                                   "received",
                                   "FromCity",
                                   geo_from ? "SAN FRANCISCO" : NULL,
                                   "Body",
                                   body,
                                   "FromCountry",
                                   geo_from ? "US" : NULL,
                                   "To",
                                   to,
                                   "ToZip",
                                   geo_to ? "94965" : NULL,
                                   "NumSegments",
                                   segments,
                                   "MessageSid",
                                   sid,
                                   "AccountSid",
                                   account,
                                   "From",
                                   from,
                                   NULL};
            if (s_add_media (form, o, false) || sb_fakeprov_add_pairs (form, pairs)
                || s_add_media (form, o, true) || sb_form_add (form, "ApiVersion", api))
                return -1;
            break;
        }
        case K_TWILIO_WHATSAPP: {
            if (o->sid)
                snprintf (sid, sizeof sid, "%s", o->sid);
            else
                sb_fakeprov_hex_id (sid, sizeof sid, o->n_media ? "MM" : "SM", 32, false);
            s_whatsapp (from, sizeof from, o->from ? o->from : S_USER);
            s_whatsapp (to, sizeof to, o->to ? o->to : S_OURS);
            const char *bare = sb_fakeprov_bare (from);
            snprintf (wa_id, sizeof wa_id, "%s", *bare == '+' ? bare + 1 : bare);
            const char *type = o->n_media ? s_media_kind (s_content_type (o->media[0])) : "text";
            const char *pairs[] = {"SmsMessageSid",
                                   sid,
                                   "NumMedia",
                                   num_media,
                                   "ProfileName",
                                   o->profile_name ? o->profile_name : S_PROFILE,
                                   "MessageType",
                                   type,
                                   "SmsSid",
                                   sid,
                                   "WaId",
                                   wa_id,
                                   "SmsStatus",
                                   "received",
                                   "Body",
                                   body,
                                   "To",
                                   to,
                                   "NumSegments",
                                   "1",
                                   "ReferralNumMedia",
                                   "0",
                                   "MessageSid",
                                   sid,
                                   "AccountSid",
                                   account,
                                   "From",
                                   from,
                                   NULL};
            if (s_add_media (form, o, false) || sb_fakeprov_add_pairs (form, pairs)
                || s_add_media (form, o, true) || sb_form_add (form, "ApiVersion", api))
                return -1;
            break;
        }
        case K_TWILIO_VOICE: {
            if (o->sid)
                snprintf (sid, sizeof sid, "%s", o->sid);
            else
                sb_fakeprov_hex_id (sid, sizeof sid, "CA", 32, false);
            snprintf (from, sizeof from, "%s", o->from ? o->from : S_USER);
            snprintf (to, sizeof to, "%s", o->to ? o->to : S_OURS);
            bool geo_to = s_nanp (to), geo_from = s_nanp (from);
            const char *pairs[] = {"Called",
                                   to,
                                   "ToState",
                                   geo_to ? "CA" : NULL,
                                   "CallerCountry",
                                   geo_from ? "US" : NULL,
                                   "Direction",
                                   "inbound",
                                   "CallerState",
                                   geo_from ? "CA" : NULL,
                                   "ToZip",
                                   geo_to ? "94965" : NULL,
                                   "CallSid",
                                   sid,
                                   "To",
                                   to,
                                   "CallerZip",
                                   geo_from ? "94103" : NULL,
                                   "ToCountry",
                                   geo_to ? "US" : NULL,
                                   "CalledZip",
                                   geo_to ? "94965" : NULL,
                                   "ApiVersion",
                                   api,
                                   "CalledCity",
                                   geo_to ? "SAUSALITO" : NULL,
                                   "CallStatus",
                                   o->status ? o->status : "ringing",
                                   "From",
                                   from,
                                   "AccountSid",
                                   account,
                                   "CalledCountry",
                                   geo_to ? "US" : NULL,
                                   "CallerCity",
                                   geo_from ? "SAN FRANCISCO" : NULL,
                                   "ToCity",
                                   geo_to ? "SAUSALITO" : NULL,
                                   "FromCountry",
                                   geo_from ? "US" : NULL,
                                   "Caller",
                                   from,
                                   "FromCity",
                                   geo_from ? "SAN FRANCISCO" : NULL,
                                   "CalledState",
                                   geo_to ? "CA" : NULL,
                                   "FromZip",
                                   geo_from ? "94103" : NULL,
                                   "FromState",
                                   geo_from ? "CA" : NULL,
                                   NULL};
            if (sb_fakeprov_add_pairs (form, pairs))
                return -1;
            break;
        }
        case K_TWILIO_GATHER: {
            if (o->sid)
                snprintf (sid, sizeof sid, "%s", o->sid);
            else
                sb_fakeprov_hex_id (sid, sizeof sid, "CA", 32, false);
            snprintf (from, sizeof from, "%s", o->from ? o->from : S_USER);
            snprintf (to, sizeof to, "%s", o->to ? o->to : S_OURS);
            bool speech = o->body != NULL;
            const char *pairs[] = {"AccountSid",
                                   account,
                                   "ApiVersion",
                                   api,
                                   "CallSid",
                                   sid,
                                   "CallStatus",
                                   o->status ? o->status : "in-progress",
                                   "Called",
                                   to,
                                   "Caller",
                                   from,
                                   "Confidence",
                                   speech ? "0.9128386" : NULL,
                                   "Digits",
                                   speech      ? NULL
                                   : o->digits ? o->digits
                                               : "1234",
                                   "Direction",
                                   "inbound",
                                   "FinishedOnKey",
                                   speech ? NULL : "#",
                                   "From",
                                   from,
                                   "Language",
                                   speech ? "en-US" : NULL,
                                   "SpeechResult",
                                   speech ? body : NULL,
                                   "To",
                                   to,
                                   "msg",
                                   "Gather End",
                                   NULL};
            if (sb_fakeprov_add_pairs (form, pairs))
                return -1;
            break;
        }
        case K_TWILIO_STATUS: {
            const char *status = o->status ? o->status : NULL;
            bool call =
                (o->sid && strncmp (o->sid, "CA", 2) == 0) || (status && s_call_status (status));
            if (call) {
                if (!status)
                    status = "completed";
                if (o->sid)
                    snprintf (sid, sizeof sid, "%s", o->sid);
                else
                    sb_fakeprov_hex_id (sid, sizeof sid, "CA", 32, false);
                snprintf (from, sizeof from, "%s", o->from ? o->from : S_USER);
                snprintf (to, sizeof to, "%s", o->to ? o->to : S_OURS);
                char stamp[SB_FAKEPROV_DATE_SIZE];
                sb_fakeprov_rfc2822 (time (NULL), stamp, sizeof stamp);
                bool done = strcmp (status, "completed") == 0;
                const char *pairs[] = {"AccountSid",
                                       account,
                                       "ApiVersion",
                                       api,
                                       "CallDuration",
                                       done ? "42" : NULL,
                                       "CallSid",
                                       sid,
                                       "CallStatus",
                                       status,
                                       "Called",
                                       to,
                                       "Caller",
                                       from,
                                       "Direction",
                                       "inbound",
                                       "Duration",
                                       done ? "1" : NULL,
                                       "From",
                                       from,
                                       "SequenceNumber",
                                       "0",
                                       "Timestamp",
                                       stamp,
                                       "To",
                                       to,
                                       NULL};
                if (sb_fakeprov_add_pairs (form, pairs))
                    return -1;
                break;
            }
            if (!status)
                status = "delivered";
            if (o->sid)
                snprintf (sid, sizeof sid, "%s", o->sid);
            else
                sb_fakeprov_hex_id (sid, sizeof sid, "SM", 32, false);
            //  A status callback is about our outbound message: from us.
            sb_fakeprov_twilio_status_t callback = {
                .account = account,
                .sid = sid,
                .status = status,
                .from = o->from ? o->from : S_OURS,
                .to = o->to ? o->to : S_USER,
                .error_code = o->error_code,
            };
            if (sb_fakeprov_twilio_status (form, &callback))
                return -1;
            break;
        }
        default: return -1;
    }
    snprintf (req->id, sizeof req->id, "%.250s", sid);
    return 0;
}

//  ---------------------------------------------------------------------
//  Meta JSON

static char *
s_meta_body (const s_ctx_t *ctx, uint64_t index, s_request_t *req)
{
    const s_opts_t *o = ctx->opts;
    char user[S_MAX_FLAG + 1], ours[S_MAX_FLAG + 1], wamid[S_MAX_FLAG + 1], stamp[32];
    snprintf (stamp, sizeof stamp, "%lld", (long long) time (NULL));
    //  In messages the user is "from"; in statuses the user is the recipient.
    bool status = o->kind == K_META_STATUS;
    s_meta_address (user, sizeof user,
                    status ? (o->to ? o->to : S_USER) : (o->from ? o->from : S_USER));
    s_meta_address (ours, sizeof ours,
                    status ? (o->from ? o->from : S_OURS) : (o->to ? o->to : S_OURS));
    if (o->sid)
        snprintf (wamid, sizeof wamid, "%s", o->sid);
    else
        sb_fakeprov_wamid (wamid, sizeof wamid, user, SB_FAKEPROV_INBOUND);
    snprintf (req->id, sizeof req->id, "%.250s", wamid);
    if (status) {
        sb_fakeprov_meta_status_t hook = {
            .display_number = ours,
            .phone_number_id = ctx->account,
            .wamid = wamid,
            .recipient = user,
            .status = o->status ? o->status : "delivered",
            .error_code = o->error_code ? (int64_t) o->error_number : 0,
        };
        return sb_fakeprov_meta_status (&hook);
    }
    json_t *metadata =
        json_pack ("{s:s, s:s}", "display_phone_number", ours, "phone_number_id", ctx->account);
    if (!metadata)
        return NULL;

    char body[S_MAX_BODY_FLAG + 64];
    if (o->body)
        snprintf (body, sizeof body, "%s", o->body);
    else if (o->count > 1)
        snprintf (body, sizeof body, "%s (%llu/%llu)", S_BODY, (unsigned long long) index + 1,
                  (unsigned long long) o->count);
    else
        snprintf (body, sizeof body, "%s", S_BODY);
    const char *type = "text";
    json_t *content;
    if (o->n_media) {
        const char *content_type = s_content_type (o->media[0]);
        type = s_media_kind (content_type);
        uint8_t digest[32];
        char sha[SB_TEXT_BASE64_SIZE (sizeof digest)], media_id[20];
        sb_fakeprov_random (digest, sizeof digest);
        sb_text_base64 (digest, sizeof digest, sha);
        sb_fakeprov_digits (media_id, 16);
        content = json_pack ("{s:s, s:s, s:s, s:s}", "mime_type", content_type, "sha256", sha, "id",
                             media_id, "url", o->media[0]);
        //  Audio and stickers carry no caption.
        bool captioned = strcmp (type, "image") == 0 || strcmp (type, "video") == 0
                         || strcmp (type, "document") == 0;
        if (content && o->body && captioned)
            json_object_set_new (content, "caption", json_string (body));
    }
    else
        content = json_pack ("{s:s}", "body", body);
    json_t *message = json_pack ("{s:s, s:s, s:s, s:s, s:o}", "from", user, "id", wamid,
                                 "timestamp", stamp, "type", type, type, content);
    json_t *value = json_pack ("{s:s, s:o, s:[{s:{s:s}, s:s}], s:[o]}", "messaging_product",
                               "whatsapp", "metadata", metadata, "contacts", "profile", "name",
                               o->profile_name ? o->profile_name : S_PROFILE, "wa_id", user,
                               "messages", message);
    return sb_fakeprov_meta_dump (sb_fakeprov_meta_envelope (value));
}

//  ---------------------------------------------------------------------
//  Requests

static void
s_request_reset (s_request_t *req)
{
    free (req->path);
    free (req->body);
    memset (req, 0, sizeof *req);
}

//  Build request number index. 0, or -1 after printing why.
static int
s_build (const s_ctx_t *ctx, uint64_t index, s_request_t *req)
{
    const s_opts_t *o = ctx->opts;
    memset (req, 0, sizeof *req);
    req->method = "POST";
    s_provider_t provider = o->kind == K_FILE ? o->provider : s_kinds[o->kind].provider;
    const char *route = o->kind == K_FILE ? o->path : s_kinds[o->kind].path;
    sb_form_t *form = NULL;
    int rc = -1;

    if (o->kind == K_META_VERIFY) {
        req->method = "GET";
        sb_fakeprov_digits (req->expect_body, 10);
        form = sb_form_new ();
        if (!form || sb_form_add (form, "hub.mode", "subscribe")
            || sb_form_add (form, "hub.challenge", req->expect_body)
            || sb_form_add (form, "hub.verify_token", o->no_sign ? "" : ctx->secret))
            goto oom;
        char *query = sb_form_encode (form);
        if (!query)
            goto oom;
        req->path = sb_text_join (route, "?", query, NULL);
        free (query);
        if (!req->path)
            goto oom;
        snprintf (req->id, sizeof req->id, "challenge=%s", req->expect_body);
        rc = 0;
        goto done;
    }
    req->path = strdup (route);
    if (!req->path)
        goto oom;
    if (provider == S_TWILIO) {
        req->content_type = "application/x-www-form-urlencoded";
        if (o->kind == K_FILE) {
            req->body = malloc (ctx->file_size + 1);
            if (!req->body)
                goto oom;
            memcpy (req->body, ctx->file_data, ctx->file_size);
            req->body_size = ctx->file_size;
            if (!o->no_sign) {
                form = sb_form_parse ((const char *) ctx->file_data, ctx->file_size);
                if (!form) {
                    fprintf (stderr,
                             "switchboard send: %s is not a valid form body: cannot sign it "
                             "(--no-sign posts it anyway)\n",
                             o->file);
                    goto done;
                }
            }
            const char *sid = form ? sb_form_get (form, "MessageSid") : NULL;
            if (form && !sid)
                sid = sb_form_get (form, "CallSid");
            snprintf (req->id, sizeof req->id, "%.250s", sid ? sid : o->file);
        }
        else {
            form = sb_form_new ();
            if (!form || s_twilio_form (ctx, index, form, req))
                goto oom;
            req->body = sb_form_encode (form);
            if (!req->body)
                goto oom;
            req->body_size = strlen (req->body);
        }
        if (!o->no_sign) {
            char *url = sb_text_join (ctx->sign_base, ctx->prefix, req->path, NULL);
            char sig[SB_SIG_TWILIO_SIZE];
            int failed = !url || sb_sig_twilio_sign (ctx->secret, url, form, sig);
            free (url);
            if (failed) {
                fprintf (stderr, "switchboard send: cannot compute the Twilio signature\n");
                goto done;
            }
            snprintf (req->sig_header, sizeof req->sig_header, "X-Twilio-Signature: %s", sig);
        }
    }
    else {
        req->content_type = "application/json";
        if (o->kind == K_FILE) {
            req->body = malloc (ctx->file_size + 1);
            if (!req->body)
                goto oom;
            memcpy (req->body, ctx->file_data, ctx->file_size);
            req->body_size = ctx->file_size;
            snprintf (req->id, sizeof req->id, "%.250s", o->file);
        }
        else {
            req->body = s_meta_body (ctx, index, req);
            if (!req->body) {
                fprintf (stderr, "switchboard send: cannot build the JSON body "
                                 "(is every flag valid UTF-8?)\n");
                goto done;
            }
            req->body_size = strlen (req->body);
        }
        if (!o->no_sign) {
            char sig[SB_SIG_META_SIZE];
            if (sb_sig_meta_sign (ctx->secret, req->body, req->body_size, sig)) {
                fprintf (stderr, "switchboard send: cannot compute the Meta signature\n");
                goto done;
            }
            snprintf (req->sig_header, sizeof req->sig_header, "X-Hub-Signature-256: %s", sig);
        }
    }
    rc = 0;
    goto done;
oom:
    fprintf (stderr, "switchboard send: out of memory building the request\n");
done:
    sb_form_destroy (&form);
    if (rc)
        s_request_reset (req);
    return rc;
}

//  Extra headers the providers send, one per line ("" when none).
static const char *const *
s_provider_headers (s_provider_t provider, char *token, size_t token_size)
{
    static const char *const twilio[] = {"User-Agent: TwilioProxy/1.1", "X-Home-Region: us1", NULL};
    static const char *const meta[] = {"User-Agent: facebookexternalua", NULL};
    if (provider == S_TWILIO) {
        char id[48];
        sb_fakeprov_hex_id (id, sizeof id, "", 32, false);
        snprintf (token, token_size, "I-Twilio-Idempotency-Token: %.8s-%.4s-%.4s-%.4s-%.12s", id,
                  id + 8, id + 12, id + 16, id + 20);
        return twilio;
    }
    token[0] = 0;
    return meta;
}

static void
s_print_request (const s_ctx_t *ctx, const s_request_t *req, s_provider_t provider)
{
    char token[96];
    const char *const *headers = s_provider_headers (provider, token, sizeof token);
    printf ("%s %s%s%s\n", req->method, ctx->post_base, ctx->prefix, req->path);
    if (req->content_type)
        printf ("Content-Type: %s\nContent-Length: %zu\n", req->content_type, req->body_size);
    for (size_t i = 0; headers[i]; i++)
        printf ("%s\n", headers[i]);
    if (*token)
        printf ("%s\n", token);
    if (*req->sig_header)
        printf ("%s\n", req->sig_header);
    printf ("\n");
    if (req->body_size)
        fwrite (req->body, 1, req->body_size, stdout);
    printf ("\n");
    fflush (stdout);
}

//  ---------------------------------------------------------------------
//  HTTP

//  What came back for one request.
typedef struct {
    char status_line[256];  //  last "HTTP/..." line seen (100 Continue is replaced)
    char *body;             //  answer bytes, NUL-terminated (owned)
    size_t size;            //  bytes kept in body
    bool truncated;         //  more than S_MAX_ANSWER arrived
} s_answer_t;

static size_t
s_on_header (char *data, size_t size, size_t nmemb, void *arg)
{
    s_answer_t *answer = arg;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp (data, "HTTP/", 5) == 0) {
        size_t len = n;
        while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
            len--;
        if (len >= sizeof answer->status_line)
            len = sizeof answer->status_line - 1;
        memcpy (answer->status_line, data, len);
        answer->status_line[len] = 0;
        answer->size = 0;  //  a new response starts
        answer->truncated = false;
    }
    return n;
}

static size_t
s_on_body (char *data, size_t size, size_t nmemb, void *arg)
{
    s_answer_t *answer = arg;
    size_t n = size * nmemb;
    size_t room = S_MAX_ANSWER - answer->size;
    size_t take = n < room ? n : room;
    if (take < n)
        answer->truncated = true;
    if (!answer->body) {
        answer->body = malloc (S_MAX_ANSWER + 1);
        if (!answer->body)
            return 0;  //  curl reports a write error
    }
    memcpy (answer->body + answer->size, data, take);
    answer->size += take;
    answer->body[answer->size] = 0;
    return n;
}

//  Send one request. Returns the HTTP status, or 0 when there was none
//  (error printed into err).
static long
s_send (CURL *curl, const s_ctx_t *ctx, const s_request_t *req, s_provider_t provider,
        s_answer_t *answer, char *err, size_t err_size)
{
    char *url = sb_text_join (ctx->post_base, ctx->prefix, req->path, NULL);
    struct curl_slist *headers = NULL;
    long code = 0;
    char token[96], line[200];
    const char *const *extra = s_provider_headers (provider, token, sizeof token);
    bool ok = url != NULL;
    if (ok && req->content_type) {
        snprintf (line, sizeof line, "Content-Type: %s", req->content_type);
        ok = (headers = curl_slist_append (headers, line)) != NULL;
    }
    for (size_t i = 0; ok && extra[i]; i++)
        ok = (headers = curl_slist_append (headers, extra[i])) != NULL;
    if (ok && *token)
        ok = (headers = curl_slist_append (headers, token)) != NULL;
    if (ok && *req->sig_header)
        ok = (headers = curl_slist_append (headers, req->sig_header)) != NULL;
    if (ok)  //  no "Expect: 100-continue" round trip for large bodies
        ok = (headers = curl_slist_append (headers, "Expect:")) != NULL;
    if (!ok) {
        snprintf (err, err_size, "out of memory");
        goto done;
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
    if (req->body) {
        curl_easy_setopt (curl, CURLOPT_POST, 1L);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_size);
    }
    else
        curl_easy_setopt (curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt (curl, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt (curl, CURLOPT_HEADERDATA, answer);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, answer);
    curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, (long) (ctx->opts->timeout * 1000.0));
    curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    CURLcode res = curl_easy_perform (curl);
    if (res != CURLE_OK)
        snprintf (err, err_size, "%s %s: %s", req->method, url,
                  *curl_err ? curl_err : curl_easy_strerror (res));
    else
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, NULL);
done:
    curl_slist_free_all (headers);
    free (url);
    return code;
}

//  ---------------------------------------------------------------------
//  Entry point

//  Read the whole of path (at most S_MAX_FILE bytes). Caller frees.
static uint8_t *
s_read_file (const char *path, size_t *size)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        char ebuf[128];
        fprintf (stderr, "switchboard send: cannot open %s: %s\n", path,
                 sb_strerror (errno, ebuf, sizeof ebuf));
        return NULL;
    }
    size_t cap = 64 * 1024, used = 0;
    uint8_t *data = malloc (cap);
    while (data) {
        size_t n = fread (data + used, 1, cap - used, file);
        used += n;
        if (used < cap)
            break;
        if (cap > S_MAX_FILE) {
            fprintf (stderr, "switchboard send: %s is larger than %u bytes\n", path, S_MAX_FILE);
            free (data);
            data = NULL;
            break;
        }
        uint8_t *bigger = realloc (data, cap * 2);
        if (!bigger) {
            free (data);
            data = NULL;
            fprintf (stderr, "switchboard send: out of memory reading %s\n", path);
            break;
        }
        data = bigger;
        cap *= 2;
    }
    if (data && ferror (file)) {
        fprintf (stderr, "switchboard send: cannot read %s\n", path);
        free (data);
        data = NULL;
    }
    fclose (file);
    *size = used;
    return data;
}

//  The secret this kind needs, or NULL after printing why (exit 2).
static const char *
s_secret (const sb_config_t *config, const s_opts_t *opts)
{
    s_provider_t provider = opts->kind == K_FILE ? opts->provider : s_kinds[opts->kind].provider;
    sb_setting_t setting = opts->kind == K_META_VERIFY ? SB_CFG_META_VERIFY_TOKEN
                           : provider == S_TWILIO      ? SB_CFG_TWILIO_AUTH_TOKEN
                                                       : SB_CFG_META_APP_SECRET;
    const char *name = sb_config_name (setting);
    if (opts->no_sign)
        return "";
    if (!sb_config_has (config, setting)) {
        fprintf (stderr,
                 "switchboard send: %s is not set: it is needed to sign the request "
                 "(set %s or %s_FILE, or pass --no-sign)\n",
                 name, name, name);
        return NULL;
    }
    return sb_config_str (config, setting);
}

int
sb_cmd_send (int argc, char **argv)
{
    s_opts_t opts;
    int rc = s_parse (argc, argv, &opts);
    if (rc != SB_CLI_OK)
        return rc < 0 ? SB_CLI_OK : rc;
    sb_config_t *config = sb_cli_setup (S_CMD);
    if (!config)
        return SB_CLI_USAGE;

    char post_base[S_MAX_FLAG + 1];
    snprintf (post_base, sizeof post_base, "%s", opts.url);
    for (size_t len = strlen (post_base); len > 0 && post_base[len - 1] == '/';)
        post_base[--len] = 0;
    s_ctx_t ctx = {
        .opts = &opts,
        .post_base = post_base,
        .sign_base = sb_config_has (config, SB_CFG_SB_PUBLIC_URL)
                         ? sb_config_str (config, SB_CFG_SB_PUBLIC_URL)
                         : post_base,
        .prefix = sb_config_str (config, SB_CFG_SB_PATH_PREFIX),
    };
    uint8_t *file_data = NULL;
    CURL *curl = NULL;
    bool curl_started = false;
    s_request_t req = {0};
    s_answer_t answer = {0};
    s_provider_t provider = opts.kind == K_FILE ? opts.provider : s_kinds[opts.kind].provider;

    rc = SB_CLI_USAGE;
    ctx.secret = s_secret (config, &opts);
    if (!ctx.secret)
        goto done;
    if (opts.account)
        snprintf (ctx.account, sizeof ctx.account, "%s", opts.account);
    else if (provider == S_TWILIO && sb_config_has (config, SB_CFG_TWILIO_ACCOUNT_SID))
        snprintf (ctx.account, sizeof ctx.account, "%s",
                  sb_config_str (config, SB_CFG_TWILIO_ACCOUNT_SID));
    else if (provider == S_TWILIO)
        sb_fakeprov_hex_id (ctx.account, sizeof ctx.account, "AC", 32, false);
    else
        snprintf (ctx.account, sizeof ctx.account, "%s", S_META_PHONE_ID);
    if (opts.file) {
        rc = SB_CLI_FAILED;
        file_data = s_read_file (opts.file, &ctx.file_size);
        if (!file_data)
            goto done;
        ctx.file_data = file_data;
    }
    if (opts.print_only && provider == S_TWILIO && !opts.no_sign)
        fprintf (stderr, "switchboard send: signed for %s%s%s\n", ctx.sign_base, ctx.prefix,
                 opts.kind == K_FILE ? opts.path : s_kinds[opts.kind].path);
    if (!opts.print_only) {
        curl_started = curl_global_init (CURL_GLOBAL_DEFAULT) == CURLE_OK;
        if (!curl_started || !(curl = curl_easy_init ())) {
            fprintf (stderr, "switchboard send: cannot initialise libcurl\n");
            rc = SB_CLI_FAILED;
            goto done;
        }
    }

    rc = SB_CLI_OK;
    uint64_t good = 0;
    int64_t started = sb_time_mono_ms ();
    for (uint64_t i = 0; i < opts.count; i++) {
        if (s_build (&ctx, i, &req)) {
            rc = SB_CLI_FAILED;
            break;
        }
        if (opts.print_only) {
            if (i > 0)
                printf ("\n");
            s_print_request (&ctx, &req, provider);
            s_request_reset (&req);
            good++;
            continue;
        }
        char err[512] = "";
        long code = s_send (curl, &ctx, &req, provider, &answer, err, sizeof err);
        bool ok = code >= 200 && code < 300;
        if (ok && *req.expect_body) {
            //  meta-verify: the challenge must come back verbatim.
            if (!answer.body || strcmp (answer.body, req.expect_body) != 0) {
                ok = false;
                fprintf (stderr, "switchboard send: the answer is not the challenge %s\n",
                         req.expect_body);
            }
        }
        if (opts.count == 1) {
            if (!code)
                fprintf (stderr, "switchboard send: %s\n", err);
            else {
                printf ("%s\n", *answer.status_line ? answer.status_line : "HTTP (no status line)");
                if (answer.size) {
                    fwrite (answer.body, 1, answer.size, stdout);
                    if (answer.body[answer.size - 1] != '\n')
                        printf ("\n");
                }
                if (answer.truncated)
                    printf ("[answer cut at %d bytes]\n", S_MAX_ANSWER);
            }
        }
        else if (!code)
            printf ("error %s id=%s\n", err, req.id);
        else
            printf ("%s id=%s\n", answer.status_line, req.id);
        fflush (stdout);
        good += ok;
        if (!ok)
            rc = SB_CLI_FAILED;
        s_request_reset (&req);
        answer.size = 0;
        answer.status_line[0] = 0;
    }
    if (opts.count > 1 && !opts.print_only) {
        double seconds = (double) (sb_time_mono_ms () - started) / 1000.0;
        fprintf (stderr, "switchboard send: %llu of %llu answered 2xx in %.2f s (%.0f/s)\n",
                 (unsigned long long) good, (unsigned long long) opts.count, seconds,
                 seconds > 0 ? (double) opts.count / seconds : 0.0);
    }
done:
    s_request_reset (&req);
    free (answer.body);
    if (curl)
        curl_easy_cleanup (curl);
    if (curl_started)
        curl_global_cleanup ();
    free (file_data);
    sb_config_destroy (&config);
    return rc;
}

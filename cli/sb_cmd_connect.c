/*  switchboard connect: point a Twilio number or a Meta app at this
    install's webhook URLs through the providers' own APIs, and print what
    was set before and after.

        connect twilio [--number +E164]   the number's SmsUrl, VoiceUrl and
                                          StatusCallback, method POST
        connect meta [--app-id ID] [--waba-id ID] [--fields LIST]
                                          the app's whatsapp_business_account
                                          subscription (callback URL, verify
                                          token, fields), then the WABA's
                                          subscribed apps

    The URLs are doctor's: SB_PUBLIC_URL + SB_PATH_PREFIX + the routes of
    common/sb_routes.h (sb_provider_api_webhook_url), and SB_PUBLIC_URL must
    pass the same rule (https unless loopback). The number, app and WABA
    default to TWILIO_PHONE_NUMBER, META_APP_ID and META_WABA_ID, the
    settings doctor checks. Meta verifies the callback before it accepts
    the subscription, so the ingress must be running with this
    META_VERIFY_TOKEN.

    Exit 0 when the provider holds the URLs afterwards; 1 with the
    provider's error (code and message) on any refusal; 2 for bad flags or
    settings. --dry-run reads the current state but prints the changing
    requests instead of sending them; --json prints one JSON object.
*/
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "sb_cli.h"
#include "sb_cmd.h"
#include "sb_provider_api.h"

#define S_CMD "connect"
#define S_DEFAULT_TIMEOUT 15.0  //  seconds per call: Meta's handshake takes up to 5 of them
#define S_MAX_TIMEOUT 300.0

//  The command's flags and what it prints.
typedef struct {
    const sb_config_t *config;  //  the CLI's settings (borrowed)
    sb_provider_api_t *api;     //  the providers' APIs
    bool json;                  //  --json
    bool dry_run;               //  --dry-run
    json_t *report;             //  what --json prints, filled as it goes
} s_connect_t;

//  A flag's value checked by its setting's own parser (sb_config), so
//  --number takes exactly what TWILIO_PHONE_NUMBER takes. 0 or -1.
static int
s_check_flag (const char *flag, const char *setting, const char *value)
{
    char *entry = NULL;
    if (asprintf (&entry, "%s=%s", setting, value) < 0)
        return -1;
    char *env[] = {entry, NULL};
    char err[512];
    sb_config_t *probe = sb_config_load_from (SB_SVC_CLI, env, err, sizeof err);
    free (entry);
    if (!probe) {
        sb_cli_usage_error (S_CMD, "%s: %s", flag, err);
        return -1;
    }
    sb_config_destroy (&probe);
    return 0;
}

//  Why the command failed: to stderr, or into the JSON report.
static int
s_failed (s_connect_t *self, const char *message)
{
    if (self->json) {
        json_object_set_new (self->report, "ok", json_false ());
        json_object_set_new (self->report, "error", json_string (message));
    }
    else
        fprintf (stderr, "switchboard connect: %s\n", message);
    return SB_CLI_FAILED;
}

//  ---------------------------------------------------------------------
//  Twilio

static const char *const s_number_fields[] = {"sms_url",
                                              "sms_method",
                                              "voice_url",
                                              "voice_method",
                                              "status_callback",
                                              "status_callback_method",
                                              "sms_application_sid",
                                              "voice_application_sid",
                                              "trunk_sid"};
#define S_NUMBER_FIELDS (sizeof s_number_fields / sizeof s_number_fields[0])

//  The webhook fields of a number object, as printed and reported.
static json_t *
s_number_view (const json_t *number)
{
    json_t *view = json_object ();
    for (size_t i = 0; view && i < S_NUMBER_FIELDS; i++)
        json_object_set_new (view, s_number_fields[i],
                             json_string (sb_provider_api_str (number, s_number_fields[i])));
    return view;
}

static void
s_print_number (const char *when, const json_t *number)
{
    printf ("  %s:\n", when);
    for (size_t i = 0; i < S_NUMBER_FIELDS; i++) {
        const char *value = sb_provider_api_str (number, s_number_fields[i]);
        if (i < 6 || *value)  //  the overrides only when set
            printf ("    %-22s %s\n", s_number_fields[i], *value ? value : "(empty)");
    }
}

static int
s_twilio (s_connect_t *self, const char *number)
{
    char err[3 * SB_PROVIDER_API_URL_SIZE];
    char sms[SB_PROVIDER_API_URL_SIZE], voice[SB_PROVIDER_API_URL_SIZE],
        status[SB_PROVIDER_API_URL_SIZE];
    sb_provider_api_webhook_url (self->config, SB_PROVIDER_R_TWILIO_MESSAGES, sms, sizeof sms);
    sb_provider_api_webhook_url (self->config, SB_PROVIDER_R_TWILIO_VOICE, voice, sizeof voice);
    sb_provider_api_webhook_url (self->config, SB_PROVIDER_R_TWILIO_STATUS, status, sizeof status);
    json_object_set_new (self->report, "number", json_string (number));

    json_t *before = NULL, *after = NULL;
    if (sb_provider_api_twilio_number (self->api, number, &before, err, sizeof err))
        return s_failed (self, err);
    if (!before) {
        snprintf (err, sizeof err,
                  "number %s not found in Twilio account %s (IncomingPhoneNumbers): buy or port "
                  "it there, or correct --number / TWILIO_PHONE_NUMBER",
                  number, sb_config_str (self->config, SB_CFG_TWILIO_ACCOUNT_SID));
        return s_failed (self, err);
    }
    const char *sid = sb_provider_api_str (before, "sid");
    json_object_set_new (self->report, "sid", json_string (sid));
    json_object_set_new (self->report, "before", s_number_view (before));
    if (!self->json) {
        printf ("Twilio number %s (%s)\n", number, sid);
        s_print_number ("before", before);
    }
    int rc = SB_CLI_FAILED;
    if (sb_provider_api_twilio_number_update (self->api, sid, sms, voice, status, &after, err,
                                              sizeof err)) {
        rc = s_failed (self, err);
        goto done;
    }
    if (self->dry_run) {
        json_object_set_new (self->report, "ok", json_true ());
        json_object_set_new (self->report, "dry_run", json_true ());
        rc = SB_CLI_OK;
        goto done;
    }
    json_object_set_new (self->report, "after", s_number_view (after));
    if (!self->json)
        s_print_number ("after", after);
    //  What Twilio answered must be what was asked.
    const char *wanted[][2] = {
        {"sms_url", sms},       {"voice_url", voice},     {"status_callback", status},
        {"sms_method", "POST"}, {"voice_method", "POST"}, {"status_callback_method", "POST"}};
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++)
        if (strcmp (sb_provider_api_str (after, wanted[i][0]), wanted[i][1]) != 0) {
            snprintf (err, sizeof err, "Twilio answered %s=%s, not %s", wanted[i][0],
                      sb_provider_api_str (after, wanted[i][0]), wanted[i][1]);
            rc = s_failed (self, err);
            goto done;
        }
    //  Set, but overridden: say so (the Console is where they are removed).
    json_t *notes = json_array ();
    const char *overrides[][2] = {
        {"sms_application_sid", "SMS"}, {"voice_application_sid", "calls"}, {"trunk_sid", "calls"}};
    for (size_t i = 0; i < 3; i++) {
        const char *value = sb_provider_api_str (after, overrides[i][0]);
        if (!*value)
            continue;
        char note[256];
        snprintf (note, sizeof note,
                  "%s %s overrides these URLs for %s: remove it from the number in the Twilio "
                  "Console",
                  overrides[i][0], value, overrides[i][1]);
        json_array_append_new (notes, json_string (note));
        if (!self->json)
            printf ("  note: %s\n", note);
    }
    json_object_set_new (self->report, "notes", notes);
    json_object_set_new (self->report, "ok", json_true ());
    if (!self->json)
        printf ("✅ Twilio number %s now calls %s, %s and %s\n", number, sms, voice, status);
    rc = SB_CLI_OK;
done:
    json_decref (before);
    json_decref (after);
    return rc;
}

//  ---------------------------------------------------------------------
//  Meta

static void
s_print_subscription (const char *when, const json_t *subscription)
{
    if (!subscription) {
        printf ("  %s: no whatsapp_business_account subscription\n", when);
        return;
    }
    printf ("  %s: callback_url %s, active %s, fields", when,
            sb_provider_api_str (subscription, "callback_url"),
            json_is_true (json_object_get (subscription, "active")) ? "true" : "false");
    size_t i;
    json_t *field;
    json_array_foreach (json_object_get (subscription, "fields"), i, field)
        printf ("%s%s", i ? "," : " ", sb_provider_api_str (field, "name"));
    printf ("\n");
}

static void
s_print_apps (const char *when, const json_t *apps)
{
    printf ("  %s:", when);
    if (!json_array_size (apps))
        printf (" no app subscribed");
    size_t i;
    json_t *app;
    json_array_foreach (apps, i, app) {
        const json_t *data = json_object_get (app, "whatsapp_business_api_data");
        printf ("%s app %s (%s)", i ? "," : "", sb_provider_api_str (data, "id"),
                sb_provider_api_str (data, "name"));
    }
    printf ("\n");
}

//  Whether apps (a subscribed_apps "data" array) has the app app_id.
static bool
s_has_app (const json_t *apps, const char *app_id)
{
    size_t i;
    json_t *app;
    json_array_foreach (apps, i, app) {
        const json_t *data = json_object_get (app, "whatsapp_business_api_data");
        if (strcmp (sb_provider_api_str (data, "id"), app_id) == 0)
            return true;
    }
    return false;
}

static int
s_meta_app (s_connect_t *self, const char *app_id, const char *fields, const char *callback)
{
    char err[3 * SB_PROVIDER_API_URL_SIZE];
    json_t *before = NULL, *after = NULL;
    json_t *app = json_object ();
    json_object_set_new (self->report, "app", app);
    json_object_set_new (app, "id", json_string (app_id));
    int rc = SB_CLI_FAILED;
    if (sb_provider_api_meta_app_subscription (self->api, app_id, &before, err, sizeof err)) {
        rc = s_failed (self, err);
        goto done;
    }
    json_object_set (app, "before", before ? before : json_null ());
    if (!self->json) {
        printf ("Meta app %s, whatsapp_business_account webhook\n", app_id);
        s_print_subscription ("before", before);
    }
    if (sb_provider_api_meta_app_subscribe (self->api, app_id, callback, fields, err, sizeof err)) {
        rc = s_failed (self, err);
        goto done;
    }
    if (self->dry_run) {
        rc = SB_CLI_OK;
        goto done;
    }
    if (sb_provider_api_meta_app_subscription (self->api, app_id, &after, err, sizeof err)) {
        rc = s_failed (self, err);
        goto done;
    }
    json_object_set (app, "after", after ? after : json_null ());
    if (!self->json)
        s_print_subscription ("after", after);
    if (!after || strcmp (sb_provider_api_str (after, "callback_url"), callback) != 0) {
        snprintf (err, sizeof err,
                  "Meta accepted the subscription but the app's callback_url is %s, not %s",
                  after ? sb_provider_api_str (after, "callback_url") : "(none)", callback);
        rc = s_failed (self, err);
        goto done;
    }
    if (!self->json)
        printf ("✅ Meta app %s sends whatsapp_business_account webhooks to %s\n", app_id, callback);
    rc = SB_CLI_OK;
done:
    json_decref (before);
    json_decref (after);
    return rc;
}

static int
s_meta_waba (s_connect_t *self, const char *waba_id, const char *app_id)
{
    char err[3 * SB_PROVIDER_API_URL_SIZE];
    json_t *before = NULL, *after = NULL;
    json_t *waba = json_object ();
    json_object_set_new (self->report, "waba", waba);
    json_object_set_new (waba, "id", json_string (waba_id));
    int rc = SB_CLI_FAILED;
    if (sb_provider_api_meta_waba_apps (self->api, waba_id, &before, err, sizeof err)) {
        rc = s_failed (self, err);
        goto done;
    }
    json_object_set (waba, "before", before);
    if (!self->json) {
        printf ("Meta WABA %s, subscribed apps\n", waba_id);
        s_print_apps ("before", before);
    }
    if (sb_provider_api_meta_waba_subscribe (self->api, waba_id, err, sizeof err)) {
        rc = s_failed (self, err);
        goto done;
    }
    if (self->dry_run) {
        rc = SB_CLI_OK;
        goto done;
    }
    if (sb_provider_api_meta_waba_apps (self->api, waba_id, &after, err, sizeof err)) {
        rc = s_failed (self, err);
        goto done;
    }
    json_object_set (waba, "after", after);
    if (!self->json)
        s_print_apps ("after", after);
    //  The app subscribed is the one META_ACCESS_TOKEN belongs to.
    if (app_id && !s_has_app (after, app_id)) {
        snprintf (err, sizeof err,
                  "Meta accepted, but app %s is not among the WABA's subscribed apps: "
                  "META_ACCESS_TOKEN belongs to another app",
                  app_id);
        rc = s_failed (self, err);
        goto done;
    }
    if (!self->json)
        printf ("✅ Meta WABA %s has the app subscribed\n", waba_id);
    rc = SB_CLI_OK;
done:
    json_decref (before);
    json_decref (after);
    return rc;
}

static int
s_meta (s_connect_t *self, const char *app_id, const char *waba_id, const char *fields)
{
    char callback[SB_PROVIDER_API_URL_SIZE];
    sb_provider_api_webhook_url (self->config, SB_PROVIDER_R_META_WHATSAPP, callback,
                                 sizeof callback);
    json_object_set_new (self->report, "callback_url", json_string (callback));
    json_object_set_new (self->report, "fields", json_string (fields));
    //  Meta's reference for the app's subscriptions edge sends WhatsApp to
    //  the App Dashboard: when Meta refuses the app step, say where to
    //  click, and still subscribe the app to the WABA, which the dashboard
    //  does not do.
    bool app_failed = app_id && s_meta_app (self, app_id, fields, callback) != SB_CLI_OK;
    if (app_failed) {
        const char *hint = "set the webhook in the App Dashboard instead: WhatsApp > Configuration"
                           " > Webhook: the callback URL above, META_VERIFY_TOKEN, and subscribe"
                           " the fields; `switchboard doctor` checks it";
        if (self->json)
            json_object_set_new (self->report, "fix", json_string (hint));
        else
            fprintf (stderr, "switchboard connect: %s (%s)\n", hint, callback);
    }
    if (waba_id && s_meta_waba (self, waba_id, app_id) != SB_CLI_OK)
        return SB_CLI_FAILED;
    if (app_failed)
        return SB_CLI_FAILED;
    json_object_set_new (self->report, "ok", json_true ());
    if (self->dry_run)
        json_object_set_new (self->report, "dry_run", json_true ());
    return SB_CLI_OK;
}

//  ---------------------------------------------------------------------
//  Entry point

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: switchboard connect twilio [--number +E164] [FLAGS]\n"
             "       switchboard connect meta [--app-id ID] [--waba-id ID] [--fields LIST] "
             "[FLAGS]\n"
             "\n"
             "Give a provider this install's webhook URLs (SB_PUBLIC_URL + SB_PATH_PREFIX +\n"
             "route, as switchboard doctor prints them) through its API; print before and after.\n"
             "  twilio   the number's SmsUrl (/twilio/messages), VoiceUrl (/twilio/voice) and\n"
             "           StatusCallback (/twilio/status), each method POST\n"
             "           (TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN, or TWILIO_API_KEY/SECRET)\n"
             "  meta     the app's whatsapp_business_account subscription: callback URL\n"
             "           (/meta/whatsapp), META_VERIFY_TOKEN, fields (app access token from\n"
             "           META_APP_SECRET; Meta calls the ingress's GET handshake first), then\n"
             "           the WABA's subscribed apps (META_ACCESS_TOKEN)\n"
             "\n"
             "  --number +E164      the Twilio number (default TWILIO_PHONE_NUMBER)\n"
             "  --app-id ID         the Meta app (default META_APP_ID)\n"
             "  --waba-id ID        the WhatsApp Business Account (default META_WABA_ID;\n"
             "                      none: the WABA is left as it is)\n"
             "  --fields LIST       webhook fields, comma-separated (default: those the ingress\n"
             "                      reads: %s)\n"
             "  --dry-run           read the current state, print the changing requests\n"
             "                      instead of sending them\n"
             "  --json              print one JSON object {ok, before, after, error, ...}\n"
             "  --timeout SECONDS   deadline of each request (default %g)\n"
             "  -h, --help          this help\n"
             "\n"
             "Exit status: 0 connected, 1 the provider refused (its code and message are\n"
             "printed), 2 bad flags or settings.\n",
             sb_provider_api_meta_fields (), S_DEFAULT_TIMEOUT);
}

int
sb_cmd_connect (int argc, char **argv)
{
    s_connect_t self = {0};
    double timeout = S_DEFAULT_TIMEOUT;
    const char *number = NULL, *app_id = NULL, *waba_id = NULL, *fields = NULL;
    static const struct option longopts[] = {{"number", required_argument, NULL, 'n'},
                                             {"app-id", required_argument, NULL, 'a'},
                                             {"waba-id", required_argument, NULL, 'w'},
                                             {"fields", required_argument, NULL, 'f'},
                                             {"dry-run", no_argument, NULL, 'd'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long (argc, argv, ":ht:", longopts, NULL)) != -1) {
        switch (c) {
            case 'n': number = optarg; break;
            case 'a': app_id = optarg; break;
            case 'w': waba_id = optarg; break;
            case 'f': fields = optarg; break;
            case 'd': self.dry_run = true; break;
            case 'j': self.json = true; break;
            case 't':
                if (sb_cli_parse_seconds (optarg, S_MAX_TIMEOUT, &timeout) || timeout < 0.1)
                    return sb_cli_usage_error (S_CMD, "--timeout: expected seconds from 0.1 to %g",
                                               S_MAX_TIMEOUT);
                break;
            case 'h': s_usage (stdout); return SB_CLI_OK;
            default: return sb_cli_bad_flag (S_CMD, c, argv);
        }
    }
    if (optind >= argc)
        return sb_cli_usage_error (S_CMD, "which provider: twilio or meta?");
    const char *provider = argv[optind++];
    bool twilio = strcmp (provider, "twilio") == 0;
    if (!twilio && strcmp (provider, "meta") != 0)
        return sb_cli_usage_error (S_CMD, "unknown provider '%s': twilio or meta", provider);
    if (optind < argc)
        return sb_cli_usage_error (S_CMD, "unexpected argument '%s'", argv[optind]);
    if ((twilio && (app_id || waba_id || fields)) || (!twilio && number))
        return sb_cli_usage_error (S_CMD, "%s takes %s", provider,
                                   twilio ? "--number only" : "--app-id, --waba-id and --fields");
    if ((number && s_check_flag ("--number", "TWILIO_PHONE_NUMBER", number))
        || (app_id && s_check_flag ("--app-id", "META_APP_ID", app_id))
        || (waba_id && s_check_flag ("--waba-id", "META_WABA_ID", waba_id)))
        return SB_CLI_USAGE;
    if (fields && (!*fields || strspn (fields, "abcdefghijklmnopqrstuvwxyz_,") != strlen (fields)))
        return sb_cli_usage_error (S_CMD, "--fields: expected field names, comma-separated");

    sb_config_t *config = sb_cli_setup (S_CMD);
    if (!config)
        return SB_CLI_USAGE;
    self.config = config;
    char err[3 * SB_PROVIDER_API_URL_SIZE];
    int rc = SB_CLI_USAGE;
    const char *missing = NULL;
    if (twilio) {
        if (!number && sb_config_has (config, SB_CFG_TWILIO_PHONE_NUMBER))
            number = sb_config_str (config, SB_CFG_TWILIO_PHONE_NUMBER);
        if (!number) {
            sb_cli_usage_error (S_CMD, "no number: give --number +E164 or set TWILIO_PHONE_NUMBER");
            goto done;
        }
        if (!sb_provider_api_twilio_ready (config, &missing)) {
            sb_cli_usage_error (S_CMD, "%s is not set: Twilio's API needs it", missing);
            goto done;
        }
    }
    else {
        app_id = app_id ? app_id
                 : sb_config_has (config, SB_CFG_META_APP_ID)
                     ? sb_config_str (config, SB_CFG_META_APP_ID)
                     : NULL;
        waba_id = waba_id ? waba_id
                  : sb_config_has (config, SB_CFG_META_WABA_ID)
                      ? sb_config_str (config, SB_CFG_META_WABA_ID)
                      : NULL;
        if (!app_id && !waba_id) {
            sb_cli_usage_error (S_CMD, "no app or WABA: give --app-id ID (or set META_APP_ID) "
                                       "and --waba-id ID (or set META_WABA_ID)");
            goto done;
        }
        if (app_id
            && (!sb_config_has (config, SB_CFG_META_APP_SECRET)
                || !sb_config_has (config, SB_CFG_META_VERIFY_TOKEN))) {
            sb_cli_usage_error (S_CMD, "%s is not set: the app's subscription needs it",
                                sb_config_has (config, SB_CFG_META_APP_SECRET) ? "META_VERIFY_TOKEN"
                                                                               : "META_APP_SECRET");
            goto done;
        }
        if (waba_id && !sb_config_has (config, SB_CFG_META_ACCESS_TOKEN)) {
            sb_cli_usage_error (S_CMD,
                                "META_ACCESS_TOKEN is not set: the WABA's subscription needs it");
            goto done;
        }
    }
    if (sb_provider_api_public_url_check (config, err, sizeof err)) {
        sb_cli_usage_error (S_CMD, "%s", err);
        goto done;
    }
    if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf (stderr, "switchboard connect: libcurl did not start\n");
        rc = SB_CLI_FAILED;
        goto done;
    }
    self.api =
        sb_provider_api_new (config, timeout, self.dry_run ? (self.json ? stderr : stdout) : NULL);
    self.report = json_pack ("{s:s}", "provider", provider);
    if (!self.api || !self.report) {
        fprintf (stderr, "switchboard connect: out of memory\n");
        rc = SB_CLI_FAILED;
    }
    else
        rc = twilio ? s_twilio (&self, number)
                    : s_meta (&self, app_id, waba_id,
                              fields ? fields : sb_provider_api_meta_fields ());
    if (self.json && self.report) {
        json_dumpf (self.report, stdout, JSON_INDENT (2));
        printf ("\n");
    }
    json_decref (self.report);
    sb_provider_api_destroy (&self.api);
    curl_global_cleanup ();
done:
    sb_config_destroy (&config);
    return rc;
}

/*  switchboard-sandbox: fake Twilio and Meta send APIs for local runs and
    tests (`switchboard sandbox` runs this binary). main parses the flags,
    loads the settings (SB_SVC_SANDBOX), starts the callback thread and
    civetweb, prints "switchboard sandbox listening on http://HOST:PORT" on
    stdout, waits for SIGINT or SIGTERM, and tears down in reverse order
    (exit 0). The parts are described in sb_sandbox.h.

    It speaks as "switchboard sandbox" in its help and errors, whichever way
    it was started, and shares the CLI's flag-error helpers (cli/sb_cli.h).
*/
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sb_cli.h"
#include "sb_config.h"
#include "sb_log.h"
#include "sb_sandbox.h"

#define S_CMD "sandbox"
#define S_NUMBERS_MAX 100  //  --twilio-number flags

static int
s_civetweb_log (const struct mg_connection *conn, const char *message)
{
    (void) conn;
    sb_warn (SB_SANDBOX_MODULE, "civetweb: %s", message);
    return 1;
}

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "Usage: switchboard sandbox [--listen [HOST:]PORT] [--callbacks URL]\n"
        "                           [--callback-delay-ms MS] [--latency-ms MS] [--threads N]\n"
        "                           [--twilio-number +E164]... [--meta-app-id ID]\n"
        "\n"
        "Fake Twilio Messages API and Meta WhatsApp Cloud API on loopback, for local runs\n"
        "and tests. Checks auth and request shape as the real APIs do and answers with\n"
        "realistic bodies.\n"
        "\n"
        "  --listen [HOST:]PORT     where to listen (default SB_SANDBOX_LISTEN, 127.0.0.1:8090);\n"
        "                           port 0 picks a free port\n"
        "  --callbacks URL          ingress base URL, SB_PATH_PREFIX included (default\n"
        "                           SB_SANDBOX_CALLBACKS): after each accepted send, post the\n"
        "                           signed status callbacks \"sent\" then \"delivered\" there\n"
        "  --callback-delay-ms MS   pause before each callback (default 100)\n"
        "  --latency-ms MS          answer every provider request after MS (default 0;\n"
        "                           benchmarks: real APIs take 100 to 300 ms)\n"
        "  --threads N              HTTP worker threads, one per open connection (default\n"
        "                           512: a dispatcher opens up to SB_SEND_CONCURRENCY)\n"
        "  --twilio-number +E164    a phone number the account holds at start, with empty\n"
        "                           URLs (repeatable; also TWILIO_PHONE_NUMBER)\n"
        "  --meta-app-id ID         the app a WABA subscription by META_ACCESS_TOKEN is for\n"
        "                           (default 0: the app last subscribed through\n"
        "                           /{app-id}/subscriptions, else 1)\n"
        "  -h, --help               this help\n"
        "\n"
        "Endpoints:\n"
        "  POST /2010-04-01/Accounts/{AccountSid}/Messages.json   Twilio (Basic auth)\n"
        "  POST /{version}/{phone_number_id}/messages             Meta (Bearer token)\n"
        "  GET  /_sandbox/requests[?since=SEQ]   every request recorded, as JSON\n"
        "  DELETE /_sandbox/requests             clear the record\n"
        "  POST /_sandbox/fail?count=N&mode=500|429|slow|meta131047|meta131056\n"
        "       [&retry_after=S]\n"
        "       [&delay_ms=MS][&provider=twilio|meta]   fail the next N requests\n"
        "  POST /_sandbox/fail?rate=R&mode=500|429|mixed   fail a random share R (0..1)\n"
        "  GET|DELETE /_sandbox/fail             show or clear the plan\n"
        "Management APIs (paths, auth and answers as the providers'):\n"
        "  GET  /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json[?PhoneNumber=+E164]\n"
        "  GET|POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{PN...}.json\n"
        "       (POST: SmsUrl, SmsMethod, VoiceUrl, VoiceMethod, StatusCallback,\n"
        "       StatusCallbackMethod, SmsFallbackUrl, VoiceFallbackUrl, ...)\n"
        "  GET  /v1/Services, /v1/Services/{MG...}, /v1/Services/{MG...}/PhoneNumbers\n"
        "  GET|POST /{version}/{app-id}/subscriptions   app token {app-id}|META_APP_SECRET;\n"
        "       POST verifies callback_url with Meta's GET handshake (5 s) first\n"
        "  GET|POST|DELETE /{version}/{waba-id}/subscribed_apps   Bearer META_ACCESS_TOKEN\n"
        "  POST /_sandbox/twilio/numbers   form PhoneNumber=+E164 [SmsUrl VoiceUrl\n"
        "       StatusCallback SmsMethod VoiceMethod StatusCallbackMethod\n"
        "       SmsApplicationSid VoiceApplicationSid TrunkSid]: create or change a number\n"
        "  POST /_sandbox/twilio/services  form FriendlyName InboundRequestUrl\n"
        "       UseInboundWebhookOnNumber=true|false PhoneNumber=+E164...: add a service\n"
        "  GET|DELETE /_sandbox/state      everything those APIs hold, as JSON; clear it\n"
        "  (at most 1000 numbers, 100 services, 100 apps, 100 WABAs)\n"
        "  GET  /healthz\n"
        "\n"
        "On start it prints \"switchboard sandbox listening on http://HOST:PORT\" on stdout.\n"
        "SIGINT or SIGTERM exits 0.\n"
        "\n");
    sb_config_print_help (SB_SVC_SANDBOX, out);
}

//  Check "[host:]port" with port 0-65535; fills civetweb's listening_ports.
static int
s_listen_spec (const char *text, char *out, size_t size)
{
    const char *colon = strrchr (text, ':');
    const char *port = colon ? colon + 1 : text;
    long value;
    if (sb_sandbox_parse_long (port, 0, 65535, &value) || (colon && colon == text))
        return -1;
    if (colon)
        snprintf (out, size, "%s", text);
    else
        snprintf (out, size, "127.0.0.1:%ld", value);
    return 0;
}

int
main (int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"callbacks", required_argument, NULL, 'c'},
        {"callback-delay-ms", required_argument, NULL, 'd'},
        {"threads", required_argument, NULL, 't'},
        {"latency-ms", required_argument, NULL, 'L'},
        {"twilio-number", required_argument, NULL, 'n'},
        {"meta-app-id", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = NULL, *callbacks = NULL;
    //  civetweb holds a worker per open connection, idle keep-alive ones
    //  included, and a dispatcher keeps up to SB_SEND_CONCURRENCY (256)
    //  connections: fewer workers would make its connections queue.
    long delay_ms = 100, threads = 512, latency_ms = 0;
    const char *meta_app_id = "0";
    const char *numbers[S_NUMBERS_MAX + 1];
    size_t num_numbers = 0;
    int c;
    optind = 0;  //  full re-initialisation of GNU getopt
    while ((c = getopt_long (argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
            case 'l': listen = optarg; break;
            case 'c': callbacks = optarg; break;
            case 'd':
                if (sb_sandbox_parse_long (optarg, 0, 600000, &delay_ms))
                    return sb_cli_usage_error (
                        S_CMD, "--callback-delay-ms %s: expected 0 to 600000", optarg);
                break;
            case 'L':
                if (sb_sandbox_parse_long (optarg, 0, 60000, &latency_ms))
                    return sb_cli_usage_error (S_CMD, "--latency-ms %s: expected 0 to 60000",
                                               optarg);
                break;
            case 't':
                if (sb_sandbox_parse_long (optarg, 2, 1024, &threads))
                    return sb_cli_usage_error (S_CMD, "--threads %s: expected 2 to 1024", optarg);
                break;
            case 'n':
                if (!sb_sandbox_is_e164 (optarg))
                    return sb_cli_usage_error (S_CMD, "--twilio-number %s: expected +E.164",
                                               optarg);
                if (num_numbers == S_NUMBERS_MAX)
                    return sb_cli_usage_error (S_CMD, "--twilio-number: at most %d", S_NUMBERS_MAX);
                numbers[num_numbers++] = optarg;
                break;
            case 'a':
                if (!sb_sandbox_is_graph_id (optarg))
                    return sb_cli_usage_error (S_CMD, "--meta-app-id %s: expected digits", optarg);
                meta_app_id = optarg;
                break;
            case 'h': s_usage (stdout); return SB_CLI_OK;
            default: return sb_cli_bad_flag (S_CMD, c, argv);
        }
    }
    if (optind < argc)
        return sb_cli_usage_error (S_CMD, "unexpected argument '%s'", argv[optind]);
    //  TWILIO_PHONE_NUMBER belongs to the CLI's settings, not the sandbox's:
    //  read directly, once, at start.
    const char *env_number = getenv ("TWILIO_PHONE_NUMBER");
    if (env_number && *env_number) {
        if (!sb_sandbox_is_e164 (env_number))
            return sb_cli_usage_error (S_CMD, "TWILIO_PHONE_NUMBER %s: expected +E.164",
                                       env_number);
        numbers[num_numbers++] = env_number;
    }

    char err[512];
    sb_config_t *config = sb_config_load (SB_SVC_SANDBOX, err, sizeof err);
    if (!config) {
        fprintf (stderr, "switchboard %s: %s\n", S_CMD, err);
        return SB_CLI_USAGE;
    }
    sb_log_init ("sandbox", (sb_log_level_t) sb_config_int (config, SB_CFG_SB_LOG_LEVEL));

    int rc = SB_CLI_FAILED;
    char ports[300];
    if (!listen)
        listen = sb_config_str (config, SB_CFG_SB_SANDBOX_LISTEN);
    if (strlen (listen) > 200 || s_listen_spec (listen, ports, sizeof ports)) {
        rc = sb_cli_usage_error (S_CMD, "--listen %s: expected [host:]port", listen);
        sb_config_destroy (&config);
        return rc;
    }
    char *callbacks_url =
        strdup (callbacks ? callbacks : sb_config_str (config, SB_CFG_SB_SANDBOX_CALLBACKS));
    if (!callbacks_url) {
        sb_config_destroy (&config);
        return SB_CLI_FAILED;
    }
    size_t len = strlen (callbacks_url);
    while (len > 0 && callbacks_url[len - 1] == '/')
        callbacks_url[--len] = 0;
    if (*callbacks_url && (!sb_sandbox_is_url (callbacks_url) || strchr (callbacks_url, '?'))) {
        rc = sb_cli_usage_error (S_CMD, "--callbacks %s: expected an http:// or https:// URL",
                                 callbacks_url);
        free (callbacks_url);
        sb_config_destroy (&config);
        return rc;
    }
    sb_sandbox_t *self = calloc (1, sizeof *self);
    if (!self) {
        free (callbacks_url);
        sb_config_destroy (&config);
        return SB_CLI_FAILED;
    }
    self->account_sid = sb_config_str (config, SB_CFG_TWILIO_ACCOUNT_SID);
    self->auth_token = sb_config_str (config, SB_CFG_TWILIO_AUTH_TOKEN);
    self->api_key = sb_config_str (config, SB_CFG_TWILIO_API_KEY);
    self->api_secret = sb_config_str (config, SB_CFG_TWILIO_API_SECRET);
    self->meta_token = sb_config_str (config, SB_CFG_META_ACCESS_TOKEN);
    self->app_secret = sb_config_str (config, SB_CFG_META_APP_SECRET);
    self->public_url = sb_config_str (config, SB_CFG_SB_PUBLIC_URL);
    self->prefix = sb_config_str (config, SB_CFG_SB_PATH_PREFIX);
    self->callbacks = callbacks_url;
    self->callback_delay_ms = delay_ms;
    self->latency_ms = latency_ms;
    atomic_init (&self->stopping, 0);
    sb_sandbox_plan_reset (&self->plan);
    pthread_mutex_init (&self->lock, NULL);
    self->log = json_array ();
    self->next_seq = 1;  //  so ?since=0 means "all"

    struct mg_context *ctx = NULL;
    if (*self->account_sid && !sb_sandbox_is_sid (self->account_sid, "AC")) {
        rc = sb_cli_usage_error (S_CMD, "TWILIO_ACCOUNT_SID: expected AC and 32 hex digits");
        goto done;
    }
    self->state = sb_sandbox_state_new (self->account_sid, meta_app_id);
    for (size_t i = 0; self->state && i < num_numbers; i++) {
        sb_form_t *form = sb_form_new ();
        sb_sandbox_state_err_t refusal = {0};
        json_t *number = form && sb_form_add (form, "PhoneNumber", numbers[i]) == 0
                             ? sb_sandbox_state_number_seed (self->state, form, &refusal)
                             : NULL;
        sb_form_destroy (&form);
        if (!number) {
            sb_error (SB_SANDBOX_MODULE, "cannot create number=%s", numbers[i]);
            goto done;
        }
        json_decref (number);
    }
    if (!self->state)
        goto done;
    if (!*self->account_sid || (!*self->auth_token && !*self->api_secret))
        sb_warn (SB_SANDBOX_MODULE,
                 "Twilio API answers 401 to everything: set TWILIO_ACCOUNT_SID and "
                 "TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET)");
    if (!*self->meta_token)
        sb_warn (SB_SANDBOX_MODULE, "Meta API answers 401 to everything: set META_ACCESS_TOKEN");

    if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK
        || !self->log
        //  civetweb options, a name and its value a line: laid out by hand, clang-format leaves it
        // clang-format off
        || !(self->multi = curl_multi_init ())) {
        sb_error (SB_SANDBOX_MODULE, "cannot initialise libcurl");
        goto done;
    }
    if (sb_sandbox_callbacks_start (self))
        goto done;

    sb_cli_catch_signals ();
    signal (SIGPIPE, SIG_IGN);

    mg_init_library (0);
    char threads_text[24];
    snprintf (threads_text, sizeof threads_text, "%ld", threads);
    const char *options[] = {"listening_ports",       ports,
                             "num_threads",           threads_text,
                             "request_timeout_ms",    "30000",
                             "enable_keep_alive",     "yes",
                             "keep_alive_timeout_ms", "15000",
                             //  A head and a body written apart would
                             //  otherwise wait for the client's delayed
                             //  ACK (Nagle): ~40 ms per kept-alive request.
                             "tcp_nodelay",           "1",
                             NULL};
    // clang-format on
    struct mg_callbacks mg_callbacks;
    memset (&mg_callbacks, 0, sizeof mg_callbacks);
    mg_callbacks.log_message = s_civetweb_log;
    ctx = mg_start (&mg_callbacks, self, options);
    if (!ctx) {
        sb_error (SB_SANDBOX_MODULE, "cannot listen listen=%s", ports);
        mg_exit_library ();
        goto done;
    }
    mg_set_request_handler (ctx, "/", sb_sandbox_handler, self);
    struct mg_server_port bound[4];
    memset (bound, 0, sizeof bound);
    int n_bound = mg_get_server_ports (ctx, 4, bound);
    char host[sizeof ports];
    snprintf (host, sizeof host, "%s", ports);
    char *colon = strrchr (host, ':');
    if (colon)
        *colon = 0;
    int port = n_bound > 0 ? bound[0].port : 0;
    printf ("switchboard sandbox listening on http://%s:%d\n", host, port);
    fflush (stdout);
    sb_info (SB_SANDBOX_MODULE,
             "listening addr=%s:%d callbacks=%s twilio=%s meta=%s latency_ms=%ld threads=%ld", host,
             port, *self->callbacks ? self->callbacks : "off", *self->account_sid ? "on" : "off",
             *self->meta_token ? "on" : "off", latency_ms, threads);

    while (!sb_cli_interrupted ()) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep (&ts, NULL);
    }
    sb_info (SB_SANDBOX_MODULE, "stopping");
    rc = SB_CLI_OK;
done:
    atomic_store (&self->stopping, 1);
    if (ctx) {
        mg_stop (ctx);
        mg_exit_library ();
    }
    sb_sandbox_callbacks_stop (self);
    if (self->multi) {
        curl_multi_cleanup (self->multi);
        curl_global_cleanup ();
    }
    json_decref (self->log);
    sb_sandbox_state_destroy (&self->state);
    pthread_mutex_destroy (&self->lock);
    free (callbacks_url);
    free (self);
    sb_config_destroy (&config);
    return rc;
}

/*  test_sb_sender: the outbox's HTTP side.

    Part one is the classification table: every status and provider code
    the sender must tell apart, Retry-After in both forms, and garbage
    bodies. Part two is real HTTP: it starts the provider sandbox (the
    switchboard-sandbox binary of this build tree, or $SB_SANDBOX_BINARY)
    on a free loopback port and a tiny bot server in this
    process, then sends through them: the requests must reach the sandbox
    in the shape the OpenAPI documents in conformance/ require, and the
    sandbox's injected failures must come back as RETRY or FINAL.

    Silent on success; prints file:line and what differed on failure. Run
    from tests/ (it reads the two OpenAPI documents in conformance/).
*/
#include "sb_sender.h"

#include <civetweb.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sb_config.h"
#include "sb_event.h"
#include "sb_log.h"
#include "sb_time.h"

#include "sb_check.h"

//  The sandbox child, so a fatal failure does not leave it running.
static pid_t s_child = 0;

#define FATAL(...)                                                                                 \
    do {                                                                                           \
        fprintf (stderr, "%s:%d: FATAL: ", __FILE__, __LINE__);                                    \
        fprintf (stderr, __VA_ARGS__);                                                             \
        fputc ('\n', stderr);                                                                      \
        if (s_child > 0)                                                                           \
            kill (s_child, SIGKILL);                                                               \
        exit (1);                                                                                  \
    } while (0)

#define ACCOUNT_SID "AC0123456789abcdef0123456789abcdef"
#define AUTH_TOKEN "test-twilio-token-0123456789abcdef"
#define API_KEY "SKfedcba9876543210fedcba9876543210"
#define API_SECRET "test-api-secret"
#define META_TOKEN "EAAtest-meta-token"
#define PHONE_NUMBER_ID "106540352242922"
#define PUBLIC_URL "https://hooks.example.test"

//  --------------------------------------------------------------------------
//  Part one: classification

typedef struct {
    int provider;
    int status;
    const char *body;
    const char *retry_after;
    sb_send_outcome_t outcome;
    const char *provider_id;   //  expected id (SENT)
    const char *error_code;    //  expected code text
    long long retry_after_ms;  //  expected, -1 none
    bool opt_out;
} s_case_t;

#define TW SB_PROVIDER_TWILIO
#define ME SB_PROVIDER_META

static const s_case_t s_cases[] = {
    //  Accepted.
    {TW, 201,
     "{\"sid\":\"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"status\":\"queued\",\"error_code\":null}",
     NULL, SB_SEND_SENT, "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "", -1, false},
    {ME, 200,
     "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"1\",\"wa_id\":\"1\"}],"
     "\"messages\":[{\"id\":\"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI\"}]}",
     NULL, SB_SEND_SENT, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI", "", -1, false},
    //  Accepted, but no id we can read: still sent (never send twice).
    {TW, 201, "not json", NULL, SB_SEND_SENT, "", "", -1, false},
    {TW, 200, "{\"sid\":12}", NULL, SB_SEND_SENT, "", "", -1, false},
    {ME, 200, "[]", NULL, SB_SEND_SENT, "", "", -1, false},
    {ME, 200, "{\"messages\":[]}", NULL, SB_SEND_SENT, "", "", -1, false},
    {ME, 200, "", NULL, SB_SEND_SENT, "", "", -1, false},
    {ME, 200, NULL, NULL, SB_SEND_SENT, "", "", -1, false},
    //  No answer at all: network error or timeout.
    {TW, 0, NULL, NULL, SB_SEND_RETRY, "", "", -1, false},
    {ME, 0, "", NULL, SB_SEND_RETRY, "", "", -1, false},
    //  5xx, 429, 408: retry, with Retry-After when given.
    {TW, 500, "<html>oops</html>", NULL, SB_SEND_RETRY, "", "", -1, false},
    {ME, 502, "{\"error\":{\"code\":131000,\"message\":\"Something went wrong\"}}", NULL,
     SB_SEND_RETRY, "", "131000", -1, false},
    {TW, 503, "", "120", SB_SEND_RETRY, "", "", 120000, false},
    {TW, 429, "{\"code\":20429,\"message\":\"Too Many Requests\",\"status\":429}", "3",
     SB_SEND_RETRY, "", "20429", 3000, false},
    {ME, 429,
     "{\"error\":{\"message\":\"(#130429) Rate limit hit\",\"type\":\"OAuthException\","
     "\"code\":130429}}",
     " 5 ", SB_SEND_RETRY, "", "130429", 5000, false},
    {TW, 408, "", NULL, SB_SEND_RETRY, "", "", -1, false},
    {TW, 429, "", "0", SB_SEND_RETRY, "", "", 0, false},
    //  Throttling codes in a 4xx: retry.
    {TW, 400, "{\"code\":20429,\"message\":\"Too Many Requests\"}", NULL, SB_SEND_RETRY, "",
     "20429", -1, false},
    {TW, 400, "{\"code\":63018,\"message\":\"Rate limit exceeded\"}", "2", SB_SEND_RETRY, "",
     "63018", 2000, false},
    {TW, 400, "{\"code\":\"63018\"}", NULL, SB_SEND_RETRY, "", "63018", -1, false},
    {ME, 400, "{\"error\":{\"code\":4,\"message\":\"(#4) Application request limit reached\"}}",
     NULL, SB_SEND_RETRY, "", "4", -1, false},
    {ME, 400, "{\"error\":{\"code\":80007,\"message\":\"rate limit\"}}", NULL, SB_SEND_RETRY, "",
     "80007", -1, false},
    {ME, 400, "{\"error\":{\"code\":130429,\"message\":\"Rate limit hit\"}}", NULL, SB_SEND_RETRY,
     "", "130429", -1, false},
    {ME, 400, "{\"error\":{\"code\":131048,\"message\":\"Spam rate limit hit\"}}", NULL,
     SB_SEND_RETRY, "", "131048", -1, false},
    {ME, 400, "{\"error\":{\"code\":131056,\"message\":\"Pair rate limit hit\"}}", NULL,
     SB_SEND_RETRY, "", "131056", -1, false},
    {ME, 400, "{\"error\":{\"code\":2,\"message\":\"Service temporarily unavailable\"}}", NULL,
     SB_SEND_RETRY, "", "2", -1, false},
    {ME, 400, "{\"error\":{\"code\":1,\"message\":\"x\",\"is_transient\":true}}", NULL,
     SB_SEND_RETRY, "", "1", -1, false},
    //  Other 4xx: final, with the provider's code.
    {TW, 400, "{\"code\":21211,\"message\":\"Invalid 'To' Phone Number\"}", "30", SB_SEND_FINAL, "",
     "21211", -1, false},
    {TW, 400, "{\"code\":21610,\"message\":\"Attempt to send to unsubscribed recipient\"}", NULL,
     SB_SEND_FINAL, "", "21610", -1, true},
    {TW, 401, "{\"code\":20003,\"message\":\"Authenticate\"}", NULL, SB_SEND_FINAL, "", "20003", -1,
     false},
    {TW, 404, "", NULL, SB_SEND_FINAL, "", "", -1, false},
    {ME, 400, "{\"error\":{\"message\":\"(#131047) Re-engagement message\",\"code\":131047}}", NULL,
     SB_SEND_FINAL, "", "131047", -1, false},
    {ME, 400, "{\"error\":{\"code\":100,\"message\":\"(#100) Invalid parameter\"}}", NULL,
     SB_SEND_FINAL, "", "100", -1, false},
    {ME, 401, "{\"error\":{\"code\":190,\"message\":\"Invalid OAuth access token\"}}", NULL,
     SB_SEND_FINAL, "", "190", -1, false},
    //  Codes of the other provider mean nothing here.
    {ME, 400, "{\"code\":20429}", NULL, SB_SEND_FINAL, "", "", -1, false},
    {TW, 400, "{\"error\":{\"code\":130429}}", NULL, SB_SEND_FINAL, "", "", -1, false},
    {ME, 400, "{\"error\":{\"code\":21610}}", NULL, SB_SEND_FINAL, "", "21610", -1, false},
    //  Garbage.
    {TW, 400, "garbage", NULL, SB_SEND_FINAL, "", "", -1, false},
    {ME, 400, "{\"error\":\"flat string\"}", NULL, SB_SEND_FINAL, "", "", -1, false},
    {ME, 400, "{\"error\":{\"code\":\"abc\"}}", NULL, SB_SEND_FINAL, "", "", -1, false},
    {TW, 400, "{\"code\":-5}", NULL, SB_SEND_FINAL, "", "", -1, false},
    {TW, 400, "[1,2,3]", NULL, SB_SEND_FINAL, "", "", -1, false},
    {TW, 400, "{\"code\":", NULL, SB_SEND_FINAL, "", "", -1, false},
    {TW, 400, "\xff\xfe{\"code\":20429}", NULL, SB_SEND_FINAL, "", "", -1, false},
    //  1xx/3xx from an API is a proxy's doing: retry.
    {TW, 302, "", NULL, SB_SEND_RETRY, "", "", -1, false},
    //  Retry-After that cannot be read, or absurd.
    {TW, 503, "", "soon", SB_SEND_RETRY, "", "", -1, false},
    {TW, 503, "", "-5", SB_SEND_RETRY, "", "", -1, false},
    {TW, 503, "", "12abc", SB_SEND_RETRY, "", "", -1, false},
    {TW, 503, "", "", SB_SEND_RETRY, "", "", -1, false},
    {TW, 503, "", "99999999999999999999", SB_SEND_RETRY, "", "", 86400000, false},
    {TW, 503, "", "Wed, 21 Oct 2015 07:28:00 GMT", SB_SEND_RETRY, "", "", 0, false},
};

static void
s_test_classify_table (void)
{
    for (size_t i = 0; i < sizeof s_cases / sizeof s_cases[0]; i++) {
        const s_case_t *c = &s_cases[i];
        sb_send_result_t r = {.id = 77, .kind = SB_OUTBOX_REPLY};
        sb_sender_classify (c->provider, c->status, c->body, c->retry_after, &r);
        bool ok = r.outcome == c->outcome && r.provider_id && r.error_code && r.error && r.bot_text
                  && strcmp (r.provider_id, c->provider_id) == 0
                  && strcmp (r.error_code, c->error_code) == 0
                  && r.retry_after_ms == c->retry_after_ms && r.opt_out == c->opt_out
                  && r.http_status == c->status && r.id == 77;
        if (!ok) {
            fprintf (stderr,
                     "%s:%d: case %zu (provider %d, HTTP %d, body %.60s, Retry-After %s): got "
                     "outcome %d id \"%s\" code \"%s\" retry_after_ms %lld opt_out %d; want %d "
                     "\"%s\" \"%s\" %lld %d\n",
                     __FILE__, __LINE__, i, c->provider, c->status, c->body ? c->body : "(null)",
                     c->retry_after ? c->retry_after : "(null)", (int) r.outcome,
                     r.provider_id ? r.provider_id : "(null)",
                     r.error_code ? r.error_code : "(null)", (long long) r.retry_after_ms,
                     (int) r.opt_out, (int) c->outcome, c->provider_id, c->error_code,
                     c->retry_after_ms, (int) c->opt_out);
            s_failures++;
        }
        //  Every failure says what happened.
        if (r.outcome != SB_SEND_SENT)
            CHECK (r.error && *r.error);
        sb_outbox_result_free (&r);
        sb_outbox_result_free (&r);  //  harmless twice
    }
}

static void
s_test_retry_after_date (void)
{
    char date[64];
    sb_time_rfc1123 ((int64_t) time (NULL) + 30, "GMT", date, sizeof date);
    sb_send_result_t r = {0};
    sb_sender_classify (SB_PROVIDER_META, 429, "{}", date, &r);
    CHECK (r.outcome == SB_SEND_RETRY);
    CHECK (r.retry_after_ms >= 27000 && r.retry_after_ms <= 31000);
    sb_outbox_result_free (&r);
    //  A final answer ignores Retry-After.
    sb_sender_classify (SB_PROVIDER_META, 400, "{\"error\":{\"code\":100}}", date, &r);
    CHECK (r.outcome == SB_SEND_FINAL && r.retry_after_ms == -1);
    sb_outbox_result_free (&r);
}

//  Random bytes and mangled JSON never crash the classifier (ASan watches).
static void
s_test_classify_garbage (void)
{
    static const char *seeds[] = {"{\"sid\":\"SM1\"}",
                                  "{\"error\":{\"code\":131047,\"is_transient\":false}}",
                                  "{\"messages\":[{\"id\":\"wamid.x\"}]}",
                                  "{\"code\":21610}",
                                  "[]",
                                  "null"};
    unsigned seed = 12345;
    char body[256];
    for (int round = 0; round < 3000; round++) {
        const char *base = seeds[round % 6];
        size_t len = strlen (base);
        memcpy (body, base, len + 1);
        for (int flips = 0; flips < 1 + round % 4; flips++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % len;
            body[at] = (char) (seed >> 16);
        }
        body[len] = 0;
        static const int statuses[] = {0, 200, 201, 400, 401, 429, 500};
        sb_send_result_t r = {0};
        sb_sender_classify (round % 2 ? SB_PROVIDER_TWILIO : SB_PROVIDER_META, statuses[round % 7],
                            body, round % 3 ? NULL : body, &r);
        CHECK (r.outcome == SB_SEND_SENT || r.outcome == SB_SEND_RETRY
               || r.outcome == SB_SEND_FINAL);
        CHECK (r.provider_id && r.error_code && r.error && r.bot_text);
        sb_outbox_result_free (&r);
    }
    //  A huge id is not kept.
    char big[2048];
    int n = snprintf (big, sizeof big, "{\"sid\":\"SM");
    memset (big + n, 'a', 1000);
    snprintf (big + n + 1000, sizeof big - (size_t) n - 1000, "\"}");
    sb_send_result_t r = {0};
    sb_sender_classify (SB_PROVIDER_TWILIO, 201, big, NULL, &r);
    CHECK (r.outcome == SB_SEND_SENT);
    CHECK_STR (r.provider_id, "");
    CHECK (strstr (r.error, "message id longer than 256 bytes") != NULL);
    sb_outbox_result_free (&r);
}

//  2xx answers that are not what the APIs document: sent (the provider
//  took the message), no id kept, the reason said.
static void
s_test_classify_undocumented (void)
{
    static const struct {
        int provider;
        const char *body;
        const char *why;
    } cases[] = {
        {SB_PROVIDER_TWILIO, "<html>Created</html>", "not a JSON object in UTF-8"},
        {SB_PROVIDER_TWILIO, "{\"sid\":\"SM\xff\xfe\"}", "not a JSON object in UTF-8"},
        {SB_PROVIDER_TWILIO, "{\"sid\":42}", "no message id"},
        {SB_PROVIDER_TWILIO, "{\"sid\":\"\"}", "empty message id"},
        {SB_PROVIDER_TWILIO, "{\"sid\":\"SM 1\\n\"}", "printable ASCII"},
        {SB_PROVIDER_TWILIO, "", "empty body"},
        {SB_PROVIDER_META, "{\"messages\":{\"id\":\"wamid.x\"}}", "no message id"},
        {SB_PROVIDER_META, "[{\"id\":\"wamid.x\"}]", "not a JSON object in UTF-8"},
        {SB_PROVIDER_META, "{\"messages\":[{\"id\":\"wamid.\\u00e9\"}]}", "printable ASCII"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sb_send_result_t r = {0};
        sb_sender_classify (cases[i].provider, 200, cases[i].body, NULL, &r);
        CHECK (r.outcome == SB_SEND_SENT);
        CHECK_STR (r.provider_id, "");
        if (!strstr (r.error, "not what the API documents") || !strstr (r.error, cases[i].why)) {
            fprintf (stderr, "%s:%d: case %zu: error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, i,
                     r.error, cases[i].why);
            s_failures++;
        }
        sb_outbox_result_free (&r);
    }
    //  The documented examples keep their ids.
    sb_send_result_t r = {0};
    sb_sender_classify (SB_PROVIDER_META, 200,
                        "{\"messages\":[{\"id\":\"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3\"}]}",
                        NULL, &r);
    CHECK_STR (r.provider_id, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3");
    CHECK_STR (r.error, "");
    sb_outbox_result_free (&r);
}

//  --------------------------------------------------------------------------
//  Part two: real HTTP against the sandbox and a bot

//  The sandbox process.
typedef struct {
    pid_t pid;          //  child
    int port;           //  where it listens
    char base[64];      //  http://127.0.0.1:port
    char log_path[64];  //  its stderr, shown on failure
} s_sandbox_t;

static const char *
s_sandbox_path (char *buf, size_t size)
{
    const char *env = getenv ("SB_SANDBOX_BINARY");
    if (env && *env)
        return env;
    env = getenv ("SB_BUILD_DIR");
    if (env && *env) {
        snprintf (buf, size, "%s/sandbox/switchboard-sandbox", env);
        return buf;
    }
    //  This test lives in <build>/tests/; the sandbox in <build>/sandbox/.
    char self[PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return NULL;
    self[n] = 0;
    char *slash = strrchr (self, '/');
    if (!slash)
        return NULL;
    *slash = 0;
    snprintf (buf, size, "%s/../sandbox/switchboard-sandbox", self);
    return buf;
}

static void
s_sandbox_start (s_sandbox_t *sandbox)
{
    char path_buf[PATH_MAX + 32];
    const char *path = s_sandbox_path (path_buf, sizeof path_buf);
    if (!path || access (path, X_OK) != 0)
        FATAL ("cannot find the sandbox binary (%s): build the 'switchboard-sandbox' target, "
               "or set SB_SANDBOX_BINARY",
               path ? path : "?");
    snprintf (sandbox->log_path, sizeof sandbox->log_path, "/tmp/test_sb_sender.XXXXXX");
    int log_fd = mkstemp (sandbox->log_path);
    int out[2];
    if (log_fd < 0 || pipe (out))
        FATAL ("cannot create the sandbox's log file or pipe: %d", errno);
    static char env_sid[] = "TWILIO_ACCOUNT_SID=" ACCOUNT_SID;
    static char env_token[] = "TWILIO_AUTH_TOKEN=" AUTH_TOKEN;
    static char env_key[] = "TWILIO_API_KEY=" API_KEY;
    static char env_secret[] = "TWILIO_API_SECRET=" API_SECRET;
    static char env_meta[] = "META_ACCESS_TOKEN=" META_TOKEN;
    static char env_app[] = "META_APP_SECRET=app-secret";
    static char env_level[] = "SB_LOG_LEVEL=info";
    char *const env[] = {env_sid,  env_token, env_key,   env_secret,
                         env_meta, env_app,   env_level, NULL};
    pid_t pid = fork ();
    if (pid < 0)
        FATAL ("fork failed: %d", errno);
    if (pid == 0) {
        dup2 (out[1], 1);
        dup2 (log_fd, 2);
        close (out[0]);
        static char arg_flag[] = "--listen", arg_addr[] = "127.0.0.1:0";
        char *const argv[] = {(char *) path, arg_flag, arg_addr, NULL};
        execve (path, argv, env);
        _exit (127);
    }
    close (out[1]);
    close (log_fd);
    sandbox->pid = pid;
    s_child = pid;
    //  First line: "switchboard sandbox listening on http://127.0.0.1:PORT".
    char line[256];
    size_t used = 0;
    while (used < sizeof line - 1 && !memchr (line, '\n', used)) {
        struct pollfd pfd = {out[0], POLLIN, 0};
        if (poll (&pfd, 1, 10000) <= 0)
            FATAL ("the sandbox did not say where it listens within 10 s (log: %s)",
                   sandbox->log_path);
        ssize_t n = read (out[0], line + used, sizeof line - 1 - used);
        if (n <= 0)
            FATAL ("the sandbox exited before listening (log: %s)", sandbox->log_path);
        used += (size_t) n;
    }
    line[used] = 0;
    close (out[0]);
    const char *colon = strrchr (line, ':');
    char *end = NULL;
    long port = colon ? strtol (colon + 1, &end, 10) : 0;
    sandbox->port = end && *end == '\n' && port > 0 && port < 65536 ? (int) port : 0;
    if (strncmp (line, "switchboard sandbox listening on http://127.0.0.1:", 50) != 0
        || sandbox->port <= 0)
        FATAL ("unexpected first line from the sandbox: %s", line);
    snprintf (sandbox->base, sizeof sandbox->base, "http://127.0.0.1:%d", sandbox->port);
}

static void
s_sandbox_stop (s_sandbox_t *sandbox)
{
    kill (sandbox->pid, SIGTERM);
    int status = 0;
    if (waitpid (sandbox->pid, &status, 0) != sandbox->pid)
        FATAL ("waitpid failed");
    s_child = 0;
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    //  The sandbox logs at info; any error line is a bug.
    FILE *log = fopen (sandbox->log_path, "r");
    char line[2048];
    while (log && fgets (line, sizeof line, log))
        if (strstr (line, " error ") || strstr (line, "Sanitizer")
            || strstr (line, "runtime error:")) {
            fprintf (stderr, "%s:%d: sandbox logged an error: %s", __FILE__, __LINE__, line);
            s_failures++;
        }
    if (log)
        fclose (log);
    if (s_failures) {
        fprintf (stderr, "--- sandbox log (%s) ---\n", sandbox->log_path);
        log = fopen (sandbox->log_path, "r");
        while (log && fgets (line, sizeof line, log))
            fputs (line, stderr);
        if (log)
            fclose (log);
    }
    else
        unlink (sandbox->log_path);
}

typedef struct {
    char *data;
    size_t size;
} s_buffer_t;

static size_t
s_collect_body (char *data, size_t size, size_t count, void *arg)
{
    s_buffer_t *buffer = arg;
    char *grown = realloc (buffer->data, buffer->size + size * count + 1);
    if (!grown)
        return 0;
    memcpy (grown + buffer->size, data, size * count);
    buffer->data = grown;
    buffer->size += size * count;
    buffer->data[buffer->size] = 0;
    return size * count;
}

//  A plain request to the sandbox's control endpoints; returns the parsed
//  JSON answer (caller owns), and the status.
static json_t *
s_control (const s_sandbox_t *sandbox, const char *method, const char *path, long *status)
{
    char url[512];
    snprintf (url, sizeof url, "%s%s", sandbox->base, path);
    CURL *easy = curl_easy_init ();
    s_buffer_t buffer = {0};
    curl_easy_setopt (easy, CURLOPT_URL, url);
    curl_easy_setopt (easy, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_collect_body);
    curl_easy_setopt (easy, CURLOPT_WRITEDATA, &buffer);
    curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, 10000L);
    if (strcmp (method, "POST") == 0)
        curl_easy_setopt (easy, CURLOPT_POSTFIELDS, "");
    CURLcode code = curl_easy_perform (easy);
    long http = 0;
    curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_cleanup (easy);
    if (code != CURLE_OK)
        FATAL ("%s %s failed: %s", method, url, curl_easy_strerror (code));
    if (status)
        *status = http;
    json_t *root = json_loads (buffer.data ? buffer.data : "", 0, NULL);
    free (buffer.data);
    return root;
}

static void
s_plan (const s_sandbox_t *sandbox, const char *query)
{
    char path[256];
    snprintf (path, sizeof path, "/_sandbox/fail?%s", query);
    long status = 0;
    json_t *answer = s_control (sandbox, "POST", path, &status);
    if (status != 200)
        FATAL ("planning failures %s: HTTP %ld", query, status);
    json_decref (answer);
}

//  The records the sandbox made since seq `since`.
static json_t *
s_requests (const s_sandbox_t *sandbox, long long since)
{
    char path[128];
    snprintf (path, sizeof path, "/_sandbox/requests?since=%lld", since);
    json_t *records = s_control (sandbox, "GET", path, NULL);
    if (!json_is_array (records))
        FATAL ("GET %s did not answer a JSON array", path);
    return records;
}

static long long
s_last_seq (const s_sandbox_t *sandbox)
{
    json_t *records = s_requests (sandbox, 0);
    long long seq = 0;
    size_t i;
    json_t *record;
    json_array_foreach (records, i, record)
        seq = json_integer_value (json_object_get (record, "seq"));
    json_decref (records);
    return seq;
}

//  Wait up to 10 s until the sandbox has recorded `count` requests after
//  `since` (a slow answer is recorded when it is finally given).
static void
s_wait_records (const s_sandbox_t *sandbox, long long since, size_t count)
{
    for (int i = 0; i < 200; i++) {
        json_t *records = s_requests (sandbox, since);
        size_t n = json_array_size (records);
        json_decref (records);
        if (n >= count)
            return;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep (&ts, NULL);
    }
    FATAL ("the sandbox recorded fewer than %zu requests after seq %lld", count, since);
}

//  A sender for this sandbox: extra settings as NAME=value strings.
static sb_sender_t *
s_sender_new (const s_sandbox_t *sandbox, const char *const *extra)
{
    char twilio_base[96], meta_base[96];
    snprintf (twilio_base, sizeof twilio_base, "TWILIO_API_BASE=%s", sandbox->base);
    snprintf (meta_base, sizeof meta_base, "META_API_BASE=%s", sandbox->base);
    char *env[32];
    size_t n = 0;
    env[n++] = twilio_base;
    env[n++] = meta_base;
    for (; extra && *extra && n < 30; extra++)
        env[n++] = (char *) *extra;
    env[n] = NULL;
    char err[256];
    sb_config_t *config = sb_config_load_from (SB_SVC_DISPATCHER, env, err, sizeof err);
    if (!config)
        FATAL ("config: %s", err);
    sb_sender_t *sender = sb_sender_new (config);
    sb_config_destroy (&config);
    return sender;
}

static const char *s_default_env[] = {"TWILIO_ACCOUNT_SID=" ACCOUNT_SID,
                                      "TWILIO_AUTH_TOKEN=" AUTH_TOKEN,
                                      "META_ACCESS_TOKEN=" META_TOKEN,
                                      "SB_PUBLIC_URL=" PUBLIC_URL,
                                      "SB_PATH_PREFIX=/hooks",
                                      "SB_SEND_TIMEOUT_MS=5000",
                                      NULL};

static sb_outbox_item_t
s_twilio_item (int64_t id, int channel, const char *body)
{
    sb_outbox_item_t item = {.id = id,
                             .kind = SB_OUTBOX_REPLY,
                             .provider = SB_PROVIDER_TWILIO,
                             .channel = channel,
                             .account = strdup (""),
                             .from = strdup ("+15558675310"),
                             .to = strdup ("+14155550100"),
                             .body = strdup (body),
                             .context_id = strdup (""),
                             .forward_url = strdup (""),
                             .event_json = strdup ("")};
    return item;
}

static sb_outbox_item_t
s_meta_item (int64_t id, const char *context, const char *body)
{
    sb_outbox_item_t item = {.id = id,
                             .kind = SB_OUTBOX_REPLY,
                             .provider = SB_PROVIDER_META,
                             .channel = SB_CHANNEL_WHATSAPP,
                             .account = strdup (PHONE_NUMBER_ID),
                             .from = strdup ("15550783881"),
                             .to = strdup ("16505551234"),
                             .body = strdup (body),
                             .context_id = strdup (context),
                             .forward_url = strdup (""),
                             .event_json = strdup ("")};
    return item;
}

//  Submit one item and wait for its result (fills *result). 0 or -1.
//  Every result carries its item's claim token (the store records it only
//  while the row still has that token): -1 when it does not.
static int
s_send_one (sb_sender_t *sender, const sb_outbox_item_t *item, sb_send_result_t *result)
{
    sb_outbox_item_t claimed = *item;
    snprintf (claimed.claim_token, sizeof claimed.claim_token, "0123456789abcdef.%08llx",
              (unsigned long long) item->id);
    int rc = -1;
    if (sb_sender_submit (sender, &claimed) != 0)
        rc = sb_sender_next_result (sender, result) == 1 ? 0 : -1;
    else
        for (int i = 0; i < 400 && rc != 0; i++) {
            if (sb_sender_perform (sender, 50) != 0)
                return -1;
            if (sb_sender_next_result (sender, result) == 1)
                rc = 0;
        }
    if (rc == 0 && strcmp (result->claim_token, claimed.claim_token) != 0) {
        fprintf (stderr, "result claim_token=\"%s\", want \"%s\"\n", result->claim_token,
                 claimed.claim_token);
        return -1;
    }
    return rc;
}

static json_t *
s_load_json (const char *path)
{
    json_error_t error;
    json_t *root = json_load_file (path, 0, &error);
    if (!root)
        FATAL ("cannot read %s: %s (run from tests/)", path, error.text);
    return root;
}

static bool
s_in_array (json_t *array, const char *text)
{
    size_t i;
    json_t *item;
    json_array_foreach (array, i, item)
        if (json_is_string (item) && strcmp (json_string_value (item), text) == 0)
            return true;
    return false;
}

//  The Twilio request in record matches the OpenAPI document: path pattern,
//  Basic auth, form body, required fields, known fields, conditionals.
static void
s_check_twilio_shape (json_t *spec, json_t *record)
{
    json_t *post =
        json_object_get (json_object_get (json_object_get (spec, "paths"),
                                          "/2010-04-01/Accounts/{AccountSid}/Messages.json"),
                         "post");
    json_t *schema = json_object_get (
        json_object_get (json_object_get (json_object_get (post, "requestBody"), "content"),
                         "application/x-www-form-urlencoded"),
        "schema");
    json_t *properties = json_object_get (schema, "properties");
    json_t *required = json_object_get (schema, "required");
    CHECK (json_is_object (properties) && json_array_size (required) > 0);

    const char *path = json_string_value (json_object_get (record, "path"));
    regex_t re;
    regcomp (&re, "^/2010-04-01/Accounts/AC[0-9a-fA-F]{32}/Messages\\.json$",
             REG_EXTENDED | REG_NOSUB);
    CHECK (path && regexec (&re, path, 0, NULL, 0) == 0);
    regfree (&re);
    CHECK_STR (json_string_value (json_object_get (record, "method")), "POST");
    const char *type =
        json_string_value (json_object_get (json_object_get (record, "headers"), "Content-Type"));
    CHECK (type && strncmp (type, "application/x-www-form-urlencoded", 33) == 0);
    CHECK_STR (json_string_value (json_object_get (record, "auth_user")), ACCOUNT_SID);

    json_t *params = json_object_get (record, "params");
    json_t *seen = json_array ();
    size_t i;
    json_t *pair;
    json_array_foreach (params, i, pair) {
        const char *key = json_string_value (json_array_get (pair, 0));
        CHECK (key && json_object_get (properties, key));  //  a documented field
        if (key && !s_in_array (seen, key))
            json_array_append_new (seen, json_string (key));
    }
    json_t *name;
    json_array_foreach (required, i, name)
        CHECK (s_in_array (seen, json_string_value (name)));
    //  x-twilio conditionals: From or MessagingServiceSid; Body, MediaUrl or ContentSid.
    CHECK (s_in_array (seen, "From") || s_in_array (seen, "MessagingServiceSid"));
    CHECK (s_in_array (seen, "Body") || s_in_array (seen, "MediaUrl")
           || s_in_array (seen, "ContentSid"));
    json_decref (seen);
}

//  The value of a form field in a record (borrowed), or NULL.
static const char *
s_param (json_t *record, const char *key)
{
    size_t i;
    json_t *pair;
    json_array_foreach (json_object_get (record, "params"), i, pair)
        if (strcmp (json_string_value (json_array_get (pair, 0)), key) == 0)
            return json_string_value (json_array_get (pair, 1));
    return NULL;
}

//  The Meta request in record matches the OpenAPI document: required base
//  properties, the TextMessage's required text, no unknown keys, header
//  parameters.
static void
s_check_meta_shape (json_t *spec, json_t *record)
{
    json_t *schemas = json_object_get (json_object_get (spec, "components"), "schemas");
    json_t *base = json_object_get (schemas, "BaseMessageProperties");
    json_t *text_message =
        json_array_get (json_object_get (json_object_get (schemas, "TextMessage"), "allOf"), 1);
    json_t *context_schema = json_object_get (schemas, "MessageContext");
    json_t *message = json_object_get (record, "json");
    CHECK (json_is_object (message));
    size_t i;
    json_t *name;
    json_array_foreach (json_object_get (base, "required"), i, name)
        CHECK (json_object_get (message, json_string_value (name)));
    json_array_foreach (json_object_get (text_message, "required"), i, name)
        CHECK (json_object_get (message, json_string_value (name)));
    const char *key;
    json_t *value;
    json_object_foreach (message, key, value)
        CHECK (json_object_get (json_object_get (base, "properties"), key)
               || json_object_get (json_object_get (text_message, "properties"), key));
    json_t *recipient_enum = json_object_get (
        json_object_get (json_object_get (base, "properties"), "recipient_type"), "enum");
    CHECK (s_in_array (recipient_enum,
                       json_string_value (json_object_get (message, "recipient_type"))));
    CHECK_STR (json_string_value (json_object_get (message, "messaging_product")), "whatsapp");
    CHECK_STR (json_string_value (json_object_get (message, "type")), "text");
    json_t *text_properties = json_object_get (
        json_object_get (json_object_get (text_message, "properties"), "text"), "properties");
    json_object_foreach (json_object_get (message, "text"), key, value)
        CHECK (json_object_get (text_properties, key));
    CHECK (json_is_string (json_object_get (json_object_get (message, "text"), "body")));
    json_object_foreach (json_object_get (message, "context"), key, value)
        CHECK (json_object_get (json_object_get (context_schema, "properties"), key));

    //  Header parameters: Content-Type from its enum, Authorization Bearer
    //  (the sandbox compared the token), User-Agent in the documented pattern.
    json_t *headers = json_object_get (record, "headers");
    const char *type = json_string_value (json_object_get (headers, "Content-Type"));
    CHECK (type && strncmp (type, "application/json", 16) == 0);
    CHECK_STR (json_string_value (json_object_get (record, "auth_user")), "bearer");
    const char *agent = json_string_value (json_object_get (headers, "User-Agent"));
    regex_t re;
    regcomp (&re, "^[a-zA-Z0-9_-]+/[0-9]+\\.[0-9]+\\.[0-9]+", REG_EXTENDED | REG_NOSUB);
    CHECK (agent && regexec (&re, agent, 0, NULL, 0) == 0);
    regfree (&re);
}

static void
s_test_twilio_sends (const s_sandbox_t *sandbox, json_t *spec)
{
    sb_sender_t *sender = s_sender_new (sandbox, s_default_env);
    CHECK (sender);
    if (!sender)
        return;
    long long since = s_last_seq (sandbox);

    //  SMS.
    sb_outbox_item_t item = s_twilio_item (1, SB_CHANNEL_SMS, "Thanks! We got: caf\xc3\xa9 & more");
    sb_send_result_t r = {0};
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_SENT);
    CHECK_INT (r.id, 1);
    CHECK_INT (r.http_status, 201);
    CHECK (r.provider_id && strlen (r.provider_id) == 34 && strncmp (r.provider_id, "SM", 2) == 0);
    json_t *records = s_requests (sandbox, since);
    CHECK_INT (json_array_size (records), 1);
    json_t *record = json_array_get (records, 0);
    s_check_twilio_shape (spec, record);
    CHECK_INT (json_integer_value (json_object_get (record, "status")), 201);
    CHECK_STR (json_string_value (json_object_get (record, "id")), r.provider_id);
    CHECK_STR (s_param (record, "To"), "+14155550100");
    CHECK_STR (s_param (record, "From"), "+15558675310");
    CHECK_STR (s_param (record, "Body"), "Thanks! We got: caf\xc3\xa9 & more");
    CHECK_STR (s_param (record, "StatusCallback"), PUBLIC_URL "/hooks/twilio/status");
    json_decref (records);
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);

    //  WhatsApp through Twilio: both addresses get the channel prefix back.
    since = s_last_seq (sandbox);
    item = s_twilio_item (2, SB_CHANNEL_WHATSAPP, "hello on whatsapp");
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_SENT);
    records = s_requests (sandbox, since);
    record = json_array_get (records, 0);
    s_check_twilio_shape (spec, record);
    CHECK_STR (s_param (record, "To"), "whatsapp:+14155550100");
    CHECK_STR (s_param (record, "From"), "whatsapp:+15558675310");
    json_decref (records);
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);

    //  RCS: a reply goes back from the RCS sender it was addressed to
    //  (From=rcs:<sender>) to the user's rcs: address, and the sandbox takes it.
    since = s_last_seq (sandbox);
    item = s_twilio_item (4, SB_CHANNEL_RCS, "hello over rcs");
    free (item.from);
    item.from = strdup ("sb_demo_agent");
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_SENT);
    records = s_requests (sandbox, since);
    record = json_array_get (records, 0);
    s_check_twilio_shape (spec, record);
    CHECK_INT (json_integer_value (json_object_get (record, "status")), 201);
    CHECK_STR (s_param (record, "To"), "rcs:+14155550100");
    CHECK_STR (s_param (record, "From"), "rcs:sb_demo_agent");
    json_decref (records);
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);

    //  500: retry.
    s_plan (sandbox, "count=1&mode=500");
    item = s_twilio_item (3, SB_CHANNEL_SMS, "x");
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_RETRY);
    CHECK_INT (r.http_status, 500);
    CHECK_INT (r.retry_after_ms, -1);
    sb_outbox_result_free (&r);
    //  429 with Retry-After: retry after that long.
    s_plan (sandbox, "count=1&mode=429&retry_after=7");
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_RETRY);
    CHECK_INT (r.http_status, 429);
    CHECK_INT (r.retry_after_ms, 7000);
    CHECK_STR (r.error_code, "20429");
    sb_outbox_result_free (&r);
    //  The plan is used up: the next one goes through.
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_SENT);
    sb_outbox_result_free (&r);
    //  The sandbox's own validation: an invalid To is final, with Twilio's code.
    free (item.to);
    item.to = strdup ("12345");
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_FINAL);
    CHECK_INT (r.http_status, 400);
    CHECK_STR (r.error_code, "21211");
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);
    sb_sender_destroy (&sender);
    CHECK (sender == NULL);
    sb_sender_destroy (&sender);  //  harmless twice
}

static void
s_test_meta_sends (const s_sandbox_t *sandbox, json_t *spec)
{
    sb_sender_t *sender = s_sender_new (sandbox, s_default_env);
    CHECK (sender);
    if (!sender)
        return;
    long long since = s_last_seq (sandbox);
    //  In context of the inbound message.
    sb_outbox_item_t item =
        s_meta_item (10, "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=",
                     "Thanks \xf0\x9f\x91\x8d \"quoted\"");
    sb_send_result_t r = {0};
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_SENT);
    CHECK_INT (r.http_status, 200);
    CHECK (r.provider_id && strncmp (r.provider_id, "wamid.", 6) == 0);
    json_t *records = s_requests (sandbox, since);
    CHECK_INT (json_array_size (records), 1);
    json_t *record = json_array_get (records, 0);
    s_check_meta_shape (spec, record);
    CHECK_STR (json_string_value (json_object_get (record, "path")),
               "/v23.0/" PHONE_NUMBER_ID "/messages");
    json_t *message = json_object_get (record, "json");
    CHECK_STR (json_string_value (json_object_get (message, "to")), "16505551234");
    CHECK_STR (json_string_value (json_object_get (json_object_get (message, "text"), "body")),
               "Thanks \xf0\x9f\x91\x8d \"quoted\"");
    CHECK_STR (
        json_string_value (json_object_get (json_object_get (message, "context"), "message_id")),
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=");
    CHECK_STR (json_string_value (json_object_get (record, "id")), r.provider_id);
    json_decref (records);
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);

    //  Not in context: no context object at all.
    since = s_last_seq (sandbox);
    item = s_meta_item (11, "", "plain");
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_SENT);
    records = s_requests (sandbox, since);
    record = json_array_get (records, 0);
    s_check_meta_shape (spec, record);
    CHECK (json_object_get (json_object_get (record, "json"), "context") == NULL);
    json_decref (records);
    sb_outbox_result_free (&r);

    //  Outside the 24-hour window: final, with Meta's code.
    s_plan (sandbox, "count=1&mode=meta131047");
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_FINAL);
    CHECK_INT (r.http_status, 400);
    CHECK_STR (r.error_code, "131047");
    CHECK (!r.opt_out);
    sb_outbox_result_free (&r);
    //  Throughput limit: retry after the Retry-After.
    s_plan (sandbox, "count=1&mode=429&retry_after=2&provider=meta");
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_RETRY);
    CHECK_INT (r.retry_after_ms, 2000);
    CHECK_STR (r.error_code, "130429");
    sb_outbox_result_free (&r);
    s_plan (sandbox, "count=1&mode=500");
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_RETRY);
    CHECK_INT (r.http_status, 500);
    sb_outbox_result_free (&r);
    //  An empty reply is refused by the API (text.body required): final.
    free (item.body);
    item.body = strdup ("");
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_FINAL);
    CHECK_STR (r.error_code, "100");
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);
    sb_sender_destroy (&sender);
}

static void
s_test_credentials (const s_sandbox_t *sandbox)
{
    //  Wrong Twilio token and wrong Meta token: final (401).
    const char *bad[] = {"TWILIO_ACCOUNT_SID=" ACCOUNT_SID, "TWILIO_AUTH_TOKEN=wrong",
                         "META_ACCESS_TOKEN=wrong", NULL};
    sb_sender_t *sender = s_sender_new (sandbox, bad);
    CHECK (sender);
    sb_outbox_item_t item = s_twilio_item (20, SB_CHANNEL_SMS, "x");
    sb_send_result_t r = {0};
    CHECK (sender && s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_FINAL);
    CHECK_INT (r.http_status, 401);
    CHECK_STR (r.error_code, "20003");
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);
    item = s_meta_item (21, "", "x");
    CHECK (sender && s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_FINAL);
    CHECK_INT (r.http_status, 401);
    CHECK_STR (r.error_code, "190");
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);
    sb_sender_destroy (&sender);

    //  An API key and its secret instead of the auth token.
    const char *keyed[] = {"TWILIO_ACCOUNT_SID=" ACCOUNT_SID, "TWILIO_API_KEY=" API_KEY,
                           "TWILIO_API_SECRET=" API_SECRET, NULL};
    sender = s_sender_new (sandbox, keyed);
    CHECK (sender);
    long long since = s_last_seq (sandbox);
    item = s_twilio_item (22, SB_CHANNEL_SMS, "keyed");
    CHECK (sender && s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_SENT);
    json_t *records = s_requests (sandbox, since);
    CHECK_STR (json_string_value (json_object_get (json_array_get (records, 0), "auth_user")),
               API_KEY);
    //  No public URL: no StatusCallback.
    CHECK (s_param (json_array_get (records, 0), "StatusCallback") == NULL);
    json_decref (records);
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);

    //  Meta not configured for this sender: refused at once, FINAL.
    item = s_meta_item (23, "", "x");
    CHECK (sender && sb_sender_submit (sender, &item) == -1);
    CHECK (sender && sb_sender_next_result (sender, &r) == 1);
    CHECK (r.outcome == SB_SEND_FINAL);
    CHECK_INT (r.id, 23);
    CHECK_INT (r.http_status, 0);
    sb_outbox_result_free (&r);
    CHECK (sender && sb_sender_next_result (sender, &r) == 0);
    sb_outbox_item_free (&item);
    sb_sender_destroy (&sender);

    //  Settings that cannot work stop the start.
    const char *bad_sid[] = {"TWILIO_ACCOUNT_SID=AC123", "TWILIO_AUTH_TOKEN=x", NULL};
    CHECK (s_sender_new (sandbox, bad_sid) == NULL);
    const char *half_key[] = {"TWILIO_ACCOUNT_SID=" ACCOUNT_SID, "TWILIO_API_KEY=" API_KEY, NULL};
    CHECK (s_sender_new (sandbox, half_key) == NULL);
    const char *bad_version[] = {"META_ACCESS_TOKEN=x", "META_API_VERSION=23", NULL};
    CHECK (s_sender_new (sandbox, bad_version) == NULL);
}

static void
s_test_timeouts (const s_sandbox_t *sandbox)
{
    //  A slow answer past the total timeout: retry, no HTTP status.
    const char *quick[] = {"TWILIO_ACCOUNT_SID=" ACCOUNT_SID, "TWILIO_AUTH_TOKEN=" AUTH_TOKEN,
                           "SB_SEND_TIMEOUT_MS=300", NULL};
    sb_sender_t *sender = s_sender_new (sandbox, quick);
    CHECK (sender);
    long long since = s_last_seq (sandbox);
    s_plan (sandbox, "count=1&mode=slow&delay_ms=1500");
    sb_outbox_item_t item = s_twilio_item (30, SB_CHANNEL_SMS, "slow");
    sb_send_result_t r = {0};
    struct timespec t0, t1;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    CHECK (sender && s_send_one (sender, &item, &r) == 0);
    clock_gettime (CLOCK_MONOTONIC, &t1);
    long elapsed_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    CHECK (r.outcome == SB_SEND_RETRY);
    CHECK_INT (r.http_status, 0);
    CHECK (r.error && strstr (r.error, "timeout"));
    CHECK (elapsed_ms >= 250 && elapsed_ms < 1400);
    sb_outbox_result_free (&r);
    sb_sender_destroy (&sender);
    //  The sandbox still answers it, later, to nobody: wait for that, so
    //  it does not count in the next test's concurrency.
    s_wait_records (sandbox, since, 1);

    //  Nobody listening: retry.
    const char *closed[] = {"TWILIO_ACCOUNT_SID=" ACCOUNT_SID, "TWILIO_AUTH_TOKEN=" AUTH_TOKEN,
                            "TWILIO_API_BASE=http://127.0.0.1:1", NULL};
    char *env[8];
    size_t n = 0;
    for (const char **e = closed; *e; e++)
        env[n++] = (char *) *e;
    env[n] = NULL;
    char err[256];
    sb_config_t *config = sb_config_load_from (SB_SVC_DISPATCHER, env, err, sizeof err);
    CHECK (config);
    sender = config ? sb_sender_new (config) : NULL;
    sb_config_destroy (&config);
    CHECK (sender && s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_RETRY);
    CHECK_INT (r.http_status, 0);
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);
    sb_sender_destroy (&sender);
}

static void
s_test_concurrency (const s_sandbox_t *sandbox)
{
    const char *bounded[] = {"TWILIO_ACCOUNT_SID=" ACCOUNT_SID, "TWILIO_AUTH_TOKEN=" AUTH_TOKEN,
                             "META_ACCESS_TOKEN=" META_TOKEN, "SB_SEND_CONCURRENCY=3", NULL};
    sb_sender_t *sender = s_sender_new (sandbox, bounded);
    CHECK (sender);
    if (!sender)
        return;
    long long since = s_last_seq (sandbox);
    s_plan (sandbox, "count=8&mode=slow&delay_ms=300");
    enum { TOTAL = 8 };
    sb_outbox_item_t items[TOTAL];
    for (int i = 0; i < TOTAL; i++)
        items[i] =
            i % 2 ? s_meta_item (100 + i, "", "c") : s_twilio_item (100 + i, SB_CHANNEL_SMS, "c");
    CHECK_INT (sb_sender_room (sender), 3);
    int submitted = 0, done = 0;
    int max_in_flight = 0;
    bool seen_id[TOTAL] = {false};
    for (int loops = 0; done < TOTAL && loops < 1000; loops++) {
        while (submitted < TOTAL && sb_sender_room (sender) > 0) {
            CHECK (sb_sender_submit (sender, &items[submitted]) == 0);
            submitted++;
        }
        if ((int) sb_sender_in_flight (sender) > max_in_flight)
            max_in_flight = (int) sb_sender_in_flight (sender);
        if (submitted < TOTAL)  //  full: one more is refused, and nothing queued for it
            CHECK (sb_sender_submit (sender, &items[submitted]) == -1);
        CHECK (sb_sender_perform (sender, 50) == 0);
        sb_send_result_t r;
        while (sb_sender_next_result (sender, &r) == 1) {
            CHECK (r.outcome == SB_SEND_SENT);
            if (r.id >= 100 && r.id < 100 + TOTAL) {
                CHECK (!seen_id[r.id - 100]);
                seen_id[r.id - 100] = true;
            }
            sb_outbox_result_free (&r);
            done++;
        }
    }
    CHECK_INT (done, TOTAL);
    CHECK_INT (max_in_flight, 3);
    CHECK_INT (sb_sender_in_flight (sender), 0);
    //  What the sandbox saw: never more than 3 at once, and 3 at some point.
    json_t *records = s_requests (sandbox, since);
    CHECK_INT (json_array_size (records), TOTAL);
    long long most = 0;
    size_t i;
    json_t *record;
    json_array_foreach (records, i, record) {
        long long c = json_integer_value (json_object_get (record, "concurrent"));
        if (c > most)
            most = c;
    }
    CHECK_INT (most, 3);
    json_decref (records);
    for (int k = 0; k < TOTAL; k++)
        sb_outbox_item_free (&items[k]);
    sb_sender_destroy (&sender);
}

//  --------------------------------------------------------------------------
//  The bot: a civetweb server in this process.

typedef struct {
    pthread_mutex_t lock;  //  guards the fields below
    char *last_body;       //  body of the last request
    char last_type[128];   //  its Content-Type
    int requests;          //  requests seen
} s_bot_t;

static int
s_bot_handler (struct mg_connection *conn, void *cbdata)
{
    s_bot_t *bot = cbdata;
    const struct mg_request_info *info = mg_get_request_info (conn);
    //  On the heap: civetweb's threads have small stacks.
    enum { BODY_MAX = 65536 };
    char *body = malloc (BODY_MAX);
    if (!body)
        return 500;
    size_t used = 0;
    int n;
    while (used < BODY_MAX - 1 && (n = mg_read (conn, body + used, BODY_MAX - 1 - used)) > 0)
        used += (size_t) n;
    body[used] = 0;
    const char *type = mg_get_header (conn, "Content-Type");
    pthread_mutex_lock (&bot->lock);
    free (bot->last_body);
    bot->last_body = body;
    snprintf (bot->last_type, sizeof bot->last_type, "%s", type ? type : "");
    bot->requests++;
    pthread_mutex_unlock (&bot->lock);

    const char *path = info->local_uri;
    int status = 200;
    const char *answer_type = "application/json";
    const char *answer = "";
    if (strcmp (path, "/json") == 0)
        answer = "{\"text\":\"  Hi from the bot  \",\"reply\":\"not this\"}";
    else if (strcmp (path, "/reply") == 0)
        answer = "{\"reply\":\"reply field\"}";
    else if (strcmp (path, "/nothing") == 0)
        answer = "{\"ok\":true}";
    else if (strcmp (path, "/string") == 0)
        answer = "\"a JSON string\"";
    else if (strcmp (path, "/badjson") == 0)
        answer = "{\"text\": oops";
    else if (strcmp (path, "/plain") == 0)
        answer_type = "text/plain", answer = "\n  plain answer\n\n";
    else if (strcmp (path, "/empty") == 0)
        status = 204, answer_type = "text/plain";
    else if (strcmp (path, "/long") == 0) {
        static char long_text[10001];
        memset (long_text, 'x', sizeof long_text - 1);
        answer_type = "text/plain", answer = long_text;
    }
    else if (strcmp (path, "/fail") == 0)
        status = 500, answer = "{\"text\":\"error page\"}";
    else if (strcmp (path, "/slow") == 0) {
        struct timespec ts = {1, 0};
        nanosleep (&ts, NULL);
        answer = "{\"text\":\"too late\"}";
    }
    mg_printf (conn,
               "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Connection: close\r\n\r\n%s",
               status, answer_type, strlen (answer), answer);
    return status;
}

static sb_outbox_item_t
s_forward_item (int64_t id, const char *url, int timeout_ms)
{
    sb_outbox_item_t item = {.id = id,
                             .kind = SB_OUTBOX_FORWARD,
                             .provider = SB_PROVIDER_TWILIO,
                             .channel = SB_CHANNEL_SMS,
                             .account = strdup (""),
                             .from = strdup ("+15558675310"),
                             .to = strdup ("+14155550100"),
                             .body = strdup (""),
                             .context_id = strdup (""),
                             .forward_url = strdup (url),
                             .forward_timeout_ms = timeout_ms,
                             .event_json =
                                 strdup ("{\"text\":\"menu\",\"from\":\"+14155550100\"}")};
    return item;
}

static void
s_test_forward (const s_sandbox_t *sandbox)
//  civetweb options, a name and its value a line: laid out by hand, clang-format leaves it
// clang-format off
{
    s_bot_t bot = {.lock = PTHREAD_MUTEX_INITIALIZER};
    const char *options[] = {"listening_ports", "127.0.0.1:0", "num_threads", "8", NULL};
    // clang-format on
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    struct mg_context *ctx = mg_start (&callbacks, NULL, options);
    if (!ctx)
        FATAL ("cannot start the bot server");
    mg_set_request_handler (ctx, "/", s_bot_handler, &bot);
    struct mg_server_port ports[2];
    memset (ports, 0, sizeof ports);
    CHECK (mg_get_server_ports (ctx, 2, ports) >= 1);
    char base[64];
    snprintf (base, sizeof base, "http://127.0.0.1:%d", ports[0].port);

    //  Bots are not providers: a sender without any provider forwards fine.
    sb_sender_t *sender = s_sender_new (sandbox, NULL);
    CHECK (sender);
    if (!sender) {
        mg_stop (ctx);
        return;
    }
    static const struct {
        const char *path;
        sb_send_outcome_t outcome;
        const char *text;
        int status;
    } cases[] = {
        {"/json", SB_SEND_SENT, "Hi from the bot", 200},
        {"/reply", SB_SEND_SENT, "reply field", 200},
        {"/nothing", SB_SEND_SENT, "", 200},
        {"/string", SB_SEND_SENT, "a JSON string", 200},
        {"/badjson", SB_SEND_SENT, "", 200},
        {"/plain", SB_SEND_SENT, "plain answer", 200},
        {"/empty", SB_SEND_SENT, "", 204},
        {"/fail", SB_SEND_FINAL, "", 500},
        {"/slow", SB_SEND_FINAL, "", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char url[128];
        snprintf (url, sizeof url, "%s%s", base, cases[i].path);
        sb_outbox_item_t item = s_forward_item (200 + (int64_t) i, url, 400);
        sb_send_result_t r = {0};
        CHECK (s_send_one (sender, &item, &r) == 0);
        if (r.outcome != cases[i].outcome || !r.bot_text || strcmp (r.bot_text, cases[i].text)
            || r.http_status != cases[i].status) {
            fprintf (stderr, "%s:%d: forward %s: got outcome %d text \"%s\" HTTP %d\n", __FILE__,
                     __LINE__, cases[i].path, (int) r.outcome, r.bot_text ? r.bot_text : "(null)",
                     r.http_status);
            s_failures++;
        }
        CHECK (r.kind == SB_OUTBOX_FORWARD);
        CHECK_INT (r.id, 200 + (int64_t) i);
        CHECK_INT (r.retry_after_ms, -1);
        if (r.outcome == SB_SEND_FINAL)
            CHECK (r.error && *r.error);
        sb_outbox_result_free (&r);
        sb_outbox_item_free (&item);
    }
    //  The bot got the event as JSON.
    pthread_mutex_lock (&bot.lock);
    CHECK_STR (bot.last_body, "{\"text\":\"menu\",\"from\":\"+14155550100\"}");
    CHECK (strncmp (bot.last_type, "application/json", 16) == 0);
    CHECK_INT (bot.requests, (int) (sizeof cases / sizeof cases[0]));
    pthread_mutex_unlock (&bot.lock);

    //  A long answer is capped.
    char url[128];
    snprintf (url, sizeof url, "%s/long", base);
    sb_outbox_item_t item = s_forward_item (300, url, 2000);
    sb_send_result_t r = {0};
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_SENT);
    CHECK (r.bot_text && strlen (r.bot_text) == 4096);
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);
    //  Not http(s): refused at once, FINAL.
    item = s_forward_item (301, "file:///etc/passwd", 2000);
    CHECK (sb_sender_submit (sender, &item) == -1);
    CHECK (sb_sender_next_result (sender, &r) == 1);
    CHECK (r.outcome == SB_SEND_FINAL && r.id == 301);
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);
    //  Nobody listening: FINAL (bots are not retried).
    item = s_forward_item (302, "http://127.0.0.1:1/bot", 2000);
    CHECK (s_send_one (sender, &item, &r) == 0);
    CHECK (r.outcome == SB_SEND_FINAL);
    CHECK_INT (r.http_status, 0);
    sb_outbox_result_free (&r);
    sb_outbox_item_free (&item);

    sb_sender_destroy (&sender);
    mg_stop (ctx);
    free (bot.last_body);
}

//  Destroying a sender with transfers in flight and results unread frees
//  everything (ASan's leak check watches).
static void
s_test_destroy_busy (const s_sandbox_t *sandbox)
{
    sb_sender_t *sender = s_sender_new (sandbox, s_default_env);
    CHECK (sender);
    if (!sender)
        return;
    s_plan (sandbox, "count=2&mode=slow&delay_ms=500");
    sb_outbox_item_t a = s_twilio_item (400, SB_CHANNEL_SMS, "a");
    sb_outbox_item_t b = s_meta_item (401, "", "b");
    sb_outbox_item_t c = s_meta_item (402, "", "c");
    free (c.account);
    c.account = strdup ("not-digits");
    CHECK (sb_sender_submit (sender, &a) == 0);
    CHECK (sb_sender_submit (sender, &b) == 0);
    CHECK (sb_sender_submit (sender, &c) == -1);  //  FINAL result waiting
    CHECK (sb_sender_perform (sender, 10) == 0);
    CHECK_INT (sb_sender_in_flight (sender), 2);
    sb_sender_destroy (&sender);
    sb_outbox_item_free (&a);
    sb_outbox_item_free (&b);
    sb_outbox_item_free (&c);
    //  Let the sandbox's slow answers finish before the next test plans.
    struct timespec ts = {0, 600 * 1000000L};
    nanosleep (&ts, NULL);
    long status = 0;
    json_decref (s_control (sandbox, "DELETE", "/_sandbox/fail", &status));
    CHECK_INT (status, 200);
}

int
main (void)
{
    sb_log_init ("test", getenv ("SB_TEST_VERBOSE") ? SB_LOG_DEBUG : SB_LOG_OFF);
    curl_global_init (CURL_GLOBAL_DEFAULT);
    s_test_classify_table ();
    s_test_retry_after_date ();
    s_test_classify_garbage ();
    s_test_classify_undocumented ();

    json_t *twilio_spec = s_load_json ("conformance/twilio-messages-openapi.json");
    json_t *meta_spec = s_load_json ("conformance/meta-messages-openapi.json");
    s_sandbox_t sandbox;
    memset (&sandbox, 0, sizeof sandbox);
    s_sandbox_start (&sandbox);
    s_test_twilio_sends (&sandbox, twilio_spec);
    s_test_meta_sends (&sandbox, meta_spec);
    s_test_credentials (&sandbox);
    s_test_timeouts (&sandbox);
    s_test_concurrency (&sandbox);
    s_test_forward (&sandbox);
    s_test_destroy_busy (&sandbox);
    s_sandbox_stop (&sandbox);
    json_decref (twilio_spec);
    json_decref (meta_spec);
    curl_global_cleanup ();
    if (s_failures) {
        fprintf (stderr, "test_sb_sender: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}

/*  sb-bench-load: the load generator of the dispatcher benchmark
    (bench/dispatcher/README.md). It posts correctly signed Twilio inbound
    SMS webhooks to switchboard-ingress at a fixed rate for a fixed time and
    records, for each one, when its answer arrived.

    Open loop: webhook n is due at start + n / rate, whatever the answers
    do. Due webhooks go out on the first idle connection of a pool of
    keep-alive connections (plain sockets, one request in flight per
    connection, driven by one ppoll loop); when every connection is busy
    the webhook waits for one. The summary counts the webhooks that waited
    for a connection (a slow server) and those written over 1 ms late for
    any reason (the tool itself short of CPU, too). Webhook n is
    the inbound SMS n of sb_bench_sms (its own MessageSid: SM + the run tag
    + n in hex; the text "bench <n>"; a sender from a pool of --contacts
    numbers), signed with sb_sig over the public URL and the form exactly
    as Twilio signs (X-Twilio-Signature). All requests are built and signed
    before the clock starts, so signing costs nothing during the run.

    Output: a CSV (--out), one row per webhook: sid, n, and the wall-clock
    (CLOCK_REALTIME, ns) times it was due, written and answered, with the
    HTTP status (0: no answer). Wall clock, because the benchmark compares
    the answer's time with the provider sandbox's request log, which is
    wall clock too. Scheduling itself runs on CLOCK_MONOTONIC. A summary
    line "SBLOAD key=value ..." goes to stdout.

    The auth token comes from TWILIO_AUTH_TOKEN (never the command line);
    the account SID from TWILIO_ACCOUNT_SID when set.

    Limits: a benchmark tool. Plain HTTP on an IPv4 address, no
    pipelining, answers must carry Content-Length (the ingress's do) and
    are capped at S_ANSWER_MAX bytes. A connection that fails or closes
    is reopened; its webhook in flight is sent again once if no answer had
    begun (counted as a retry), else it is lost (status 0, counted).
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sb_bench_sms.h"
#include "sb_form.h"
#include "sb_sig.h"

#define S_NAME "sb-bench-load"
#define S_ANSWER_MAX (64 * 1024)  //  bytes of one answer, headers included
#define S_CONN_MAX 4096           //  most connections
#define S_DRAIN_S 30              //  default wait for answers after the last send
#define S_NS 1000000000LL

//  Set by the signal handler: stop sending, write what we have.
static volatile sig_atomic_t s_stop = 0;

static void
s_on_signal (int sig)
{
    (void) sig;
    s_stop = 1;
}

//  One webhook.
typedef struct {
    char *data;                       //  the whole HTTP request
    size_t size;                      //  its length
    char sid[SB_BENCH_SMS_SID_SIZE];  //  its MessageSid
    int64_t sent_ns;                  //  wall clock when its last byte was written (0: never)
    int64_t ack_ns;                   //  wall clock when its answer was complete (0: none)
    int64_t sent_mono;                //  monotonic time of the write, for the summary
    int64_t ack_mono;                 //  monotonic time of the answer
    int status;                       //  HTTP status of the answer (0: none)
    bool retried;                     //  sent again on a new connection (see s_conn_fail)
} s_req_t;

//  One keep-alive connection.
typedef struct {
    int fd;          //  socket, -1 when closed
    size_t req;      //  webhook in flight, SIZE_MAX when idle
    size_t written;  //  bytes of it written so far
    char *in;        //  the answer so far (S_ANSWER_MAX + 1 bytes)
    size_t in_size;  //  bytes in it
} s_conn_t;

//  What the command line says.
typedef struct {
    const char *host;        //  ingress address (IPv4)
    int port;                //  ingress port
    const char *public_url;  //  the URL Twilio would call, without the path
    const char *path;        //  route of inbound messages
    double rate;             //  webhooks per second
    double duration;         //  seconds of sending
    int connections;         //  connection pool size
    long contacts;           //  distinct senders
    const char *tag;         //  8 hex digits in every MessageSid
    const char *out;         //  CSV path, or NULL
    double drain;            //  seconds to wait for answers after the last send
} s_opts_t;

static int64_t
s_clock (clockid_t id)
{
    struct timespec ts;
    clock_gettime (id, &ts);
    return (int64_t) ts.tv_sec * S_NS + ts.tv_nsec;
}

static int64_t
s_mono (void)
{
    return s_clock (CLOCK_MONOTONIC);
}

static int64_t
s_wall (void)
{
    return s_clock (CLOCK_REALTIME);
}

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: " S_NAME " --url http://HOST:PORT --rate R --duration S [options]\n\n"
             "Posts signed Twilio inbound SMS webhooks to switchboard-ingress at R per second\n"
             "(open loop) for S seconds and records when each answer arrived.\n\n"
             "  --url URL           the ingress, http://IPv4:PORT\n"
             "  --public-url URL    the URL Twilio signs, without the path (default: --url)\n"
             "  --path PATH         route of inbound messages (default /twilio/messages)\n"
             "  --rate R            webhooks per second\n"
             "  --duration S        seconds of sending\n"
             "  --connections N     keep-alive connections (default 64)\n"
             "  --contacts N        distinct sender numbers (default 1000)\n"
             "  --tag HEX8          8 hex digits put in every MessageSid (default: random)\n"
             "  --drain S           seconds to wait for answers after the last send (default %d)\n"
             "  --out FILE          CSV: sid,n,t_due_ns,t_sent_ns,t_ack_ns,status (wall clock)\n\n"
             "Environment: TWILIO_AUTH_TOKEN (required), TWILIO_ACCOUNT_SID (optional).\n",
             S_DRAIN_S);
}

//  A whole number or decimal in [min, max], or -1 on a bad value.
static double
s_parse_number (const char *name, const char *text, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod (text, &end);
    if (errno || end == text || *end || !(v >= min && v <= max)) {
        fprintf (stderr, S_NAME ": %s %s: expected a number from %g to %g\n", name, text, min, max);
        return -1;
    }
    return v;
}

//  "http://1.2.3.4:5678" into host and port (host points into a static copy).
static int
s_parse_url (const char *url, s_opts_t *opts)
{
    static char host[64];
    const char *p = url;
    if (strncmp (p, "http://", 7) != 0)
        goto bad;
    p += 7;
    const char *colon = strchr (p, ':');
    if (!colon || (size_t) (colon - p) >= sizeof host)
        goto bad;
    memcpy (host, p, (size_t) (colon - p));
    host[colon - p] = 0;
    char *end;
    errno = 0;
    long port = strtol (colon + 1, &end, 10);
    if (errno || end == colon + 1 || (*end && strcmp (end, "/") != 0) || port < 1 || port > 65535)
        goto bad;
    struct in_addr addr;
    if (inet_pton (AF_INET, host, &addr) != 1)
        goto bad;
    opts->host = host;
    opts->port = (int) port;
    return 0;
bad:
    fprintf (stderr, S_NAME ": --url %s: expected http://IPv4:PORT\n", url);
    return -1;
}

static int
s_parse_args (int argc, char **argv, s_opts_t *opts)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},      {"public-url", required_argument, NULL, 'P'},
        {"path", required_argument, NULL, 'p'},     {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 'd'}, {"connections", required_argument, NULL, 'c'},
        {"contacts", required_argument, NULL, 'k'}, {"tag", required_argument, NULL, 't'},
        {"out", required_argument, NULL, 'o'},      {"drain", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    const char *url = NULL;
    *opts = (s_opts_t){.path = "/twilio/messages",
                       .connections = 64,
                       .contacts = 1000,
                       .drain = S_DRAIN_S,
                       .rate = -1,
                       .duration = -1};
    int c;
    double v;
    while ((c = getopt_long (argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
            case 'u': url = optarg; break;
            case 'P': opts->public_url = optarg; break;
            case 'p': opts->path = optarg; break;
            case 'r':
                if ((opts->rate = s_parse_number ("--rate", optarg, 0.001, 1e6)) < 0)
                    return -1;
                break;
            case 'd':
                if ((opts->duration = s_parse_number ("--duration", optarg, 0.001, 86400)) < 0)
                    return -1;
                break;
            case 'c':
                if ((v = s_parse_number ("--connections", optarg, 1, S_CONN_MAX)) < 0)
                    return -1;
                opts->connections = (int) v;
                break;
            case 'k':
                if ((v = s_parse_number ("--contacts", optarg, 1, 1e7)) < 0)
                    return -1;
                opts->contacts = (long) v;
                break;
            case 't': opts->tag = optarg; break;
            case 'o': opts->out = optarg; break;
            case 'D':
                if ((opts->drain = s_parse_number ("--drain", optarg, 0, 3600)) < 0)
                    return -1;
                break;
            case 'h': s_usage (stdout); exit (0);
            default: s_usage (stderr); return -1;
        }
    }
    if (optind != argc || !url || opts->rate < 0 || opts->duration < 0) {
        s_usage (stderr);
        return -1;
    }
    if (s_parse_url (url, opts))
        return -1;
    if (!opts->public_url)
        opts->public_url = url;
    if (opts->tag && (strlen (opts->tag) != 8 || strspn (opts->tag, "0123456789abcdef") != 8)) {
        fprintf (stderr, S_NAME ": --tag %s: expected 8 lower-case hex digits\n", opts->tag);
        return -1;
    }
    if (opts->rate * opts->duration > 1e8) {
        fprintf (stderr, S_NAME ": rate x duration over 100,000,000 webhooks\n");
        return -1;
    }
    return 0;
}

//  ---------------------------------------------------------------------
//  Requests

//  Build and sign webhook n. 0 or -1.
static int
s_req_build (s_req_t *req, uint64_t n, const s_opts_t *opts, const char *tag, const char *token,
             const char *account, const char *url)
{
    sb_bench_sms_t sms;
    sb_bench_sms_make (&sms, n, tag, opts->contacts);
    snprintf (req->sid, sizeof req->sid, "%s", sms.sid);
    int rc = -1;
    char *body = NULL;
    sb_form_t *form = sb_bench_sms_form (&sms, account);
    if (!form)
        return -1;
    char sig[SB_SIG_TWILIO_SIZE];
    if (!(body = sb_form_encode (form)) || sb_sig_twilio_sign (token, url, form, sig))
        goto done;
    size_t body_size = strlen (body);
    size_t cap = body_size + 512 + strlen (opts->path) + strlen (opts->host);
    if (!(req->data = malloc (cap)))
        goto done;
    int head = snprintf (req->data, cap,
                         "POST %s HTTP/1.1\r\n"
                         "Host: %s:%d\r\n"
                         "User-Agent: TwilioProxy/1.1\r\n"
                         "Content-Type: application/x-www-form-urlencoded\r\n"
                         "X-Twilio-Signature: %s\r\n"
                         "Content-Length: %zu\r\n"
                         "\r\n",
                         opts->path, opts->host, opts->port, sig, body_size);
    if (head < 0 || (size_t) head + body_size >= cap)
        goto done;
    memcpy (req->data + head, body, body_size);
    req->size = (size_t) head + body_size;
    rc = 0;
done:
    free (body);
    sb_form_destroy (&form);
    return rc;
}

//  ---------------------------------------------------------------------
//  Connections

static int
s_conn_open (s_conn_t *conn, const s_opts_t *opts)
{
    conn->req = SIZE_MAX;
    conn->in_size = 0;
    conn->written = 0;
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        perror (S_NAME ": socket");
        return -1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t) opts->port)};
    inet_pton (AF_INET, opts->host, &sa.sin_addr);
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect (fd, (struct sockaddr *) &sa, sizeof sa) != 0) {
        fprintf (stderr, S_NAME ": cannot connect to %s:%d (errno %d)\n", opts->host, opts->port,
                 errno);
        close (fd);
        return -1;
    }
    fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
    conn->fd = fd;
    return 0;
}

static void
s_conn_close (s_conn_t *conn)
{
    if (conn->fd >= 0)
        close (conn->fd);
    conn->fd = -1;
    conn->req = SIZE_MAX;
    conn->in_size = 0;
    conn->written = 0;
}

//  Write what is left of the request in flight. 0, or -1 on a failure.
static int
s_conn_write (s_conn_t *conn, s_req_t *req)
{
    while (conn->written < req->size) {
        ssize_t n =
            send (conn->fd, req->data + conn->written, req->size - conn->written, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -1;
        }
        conn->written += (size_t) n;
    }
    req->sent_ns = s_wall ();
    req->sent_mono = s_mono ();
    return 0;
}

//  The connection failed or was closed with a webhook in flight. Reopen it;
//  if nothing of the answer had arrived, send the webhook again, once, on
//  the new connection: the server may have closed an idle keep-alive
//  connection as we wrote (as HTTP clients do, we retry then; the ingress
//  stores a MessageSid once however often it comes). Returns true when the
//  webhook is in flight again; false when it is lost, the connection then
//  idle (or closed, fd -1, when it cannot be reopened).
static bool
s_conn_fail (s_conn_t *conn, s_req_t *reqs, const s_opts_t *opts, size_t *retries)
{
    size_t which = conn->req;
    bool resend = conn->in_size == 0 && !reqs[which].retried;
    s_conn_close (conn);
    if (s_conn_open (conn, opts) != 0)
        return false;
    if (!resend)
        return false;
    reqs[which].retried = true;
    (*retries)++;
    conn->req = which;
    if (s_conn_write (conn, &reqs[which]) == 0)
        return true;
    s_conn_close (conn);
    s_conn_open (conn, opts);
    return false;
}

//  Is the answer complete? 1 yes (status set, *close when the server
//  closes the connection after it), 0 not yet, -1 malformed or too big.
static int
s_answer_complete (s_conn_t *conn, int *status, bool *close_after)
{
    conn->in[conn->in_size] = 0;
    char *end = strstr (conn->in, "\r\n\r\n");
    if (!end)
        return conn->in_size >= S_ANSWER_MAX ? -1 : 0;
    size_t head = (size_t) (end - conn->in) + 4;
    int code = 0;
    if (sscanf (conn->in, "HTTP/1.%*d %d", &code) != 1 || code < 100 || code > 599)
        return -1;
    long long length = -1;
    *close_after = false;
    for (char *line = strstr (conn->in, "\r\n") + 2; line < end;) {
        char *eol = strstr (line, "\r\n");
        if (strncasecmp (line, "Content-Length:", 15) == 0) {
            char *num_end;
            errno = 0;
            length = strtoll (line + 15, &num_end, 10);
            if (errno || length < 0 || length > S_ANSWER_MAX)
                return -1;
        }
        else if (strncasecmp (line, "Connection:", 11) == 0) {
            const char *v = line + 11;
            while (*v == ' ')
                v++;
            if (strncasecmp (v, "close", 5) == 0)
                *close_after = true;
        }
        else if (strncasecmp (line, "Transfer-Encoding:", 18) == 0)
            return -1;  //  not sent by the ingress; not handled here
        line = eol + 2;
    }
    if (length < 0)
        return -1;
    if (conn->in_size < head + (size_t) length)
        return conn->in_size >= S_ANSWER_MAX ? -1 : 0;
    if (conn->in_size > head + (size_t) length)
        return -1;  //  bytes we did not ask for
    *status = code;
    return 1;
}

//  ---------------------------------------------------------------------
//  Summary

static int
s_cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

//  The p-th percentile (0..100) of sorted values, nearest rank.
static int64_t
s_pct (const int64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t) (p / 100.0 * (double) n + 0.999999);
    if (i < 1)
        i = 1;
    if (i > n)
        i = n;
    return v[i - 1];
}

static int
s_write_csv (const char *path, const s_req_t *reqs, size_t count, int64_t wall0, double rate)
{
    FILE *f = fopen (path, "w");
    if (!f) {
        perror (path);
        return -1;
    }
    fprintf (f, "sid,n,t_due_ns,t_sent_ns,t_ack_ns,status\n");
    for (size_t i = 0; i < count; i++) {
        int64_t due = wall0 + (int64_t) ((double) i * 1e9 / rate);
        fprintf (f, "%s,%zu,%" PRId64 ",%" PRId64 ",%" PRId64 ",%d\n", reqs[i].sid, i, due,
                 reqs[i].sent_ns, reqs[i].ack_ns, reqs[i].status);
    }
    if (fclose (f) != 0) {
        perror (path);
        return -1;
    }
    return 0;
}

//  ---------------------------------------------------------------------

int
main (int argc, char **argv)
{
    s_opts_t opts;
    if (s_parse_args (argc, argv, &opts))
        return 2;
    const char *token = getenv ("TWILIO_AUTH_TOKEN");
    if (!token || !*token) {
        fprintf (stderr, S_NAME ": TWILIO_AUTH_TOKEN is not set\n");
        return 2;
    }
    const char *account = getenv ("TWILIO_ACCOUNT_SID");
    if (!account || !*account)
        account = "AC0123456789abcdef0123456789abcdef";
    char tag[9];
    if (opts.tag)
        snprintf (tag, sizeof tag, "%s", opts.tag);
    else {
        srand ((unsigned) (s_wall () ^ getpid ()));
        snprintf (tag, sizeof tag, "%08x", (unsigned) rand ());
    }
    char url[1024];
    const char *base = opts.public_url;
    size_t base_len = strlen (base);
    if (base_len && base[base_len - 1] == '/')
        base_len--;
    snprintf (url, sizeof url, "%.*s%s", (int) base_len, base, opts.path);

    size_t count = (size_t) (opts.rate * opts.duration + 0.5);
    s_req_t *reqs = calloc (count ? count : 1, sizeof *reqs);
    s_conn_t *conns = calloc ((size_t) opts.connections, sizeof *conns);
    struct pollfd *pfds = calloc ((size_t) opts.connections, sizeof *pfds);
    int *pconn = calloc ((size_t) opts.connections, sizeof *pconn);
    size_t *idle = calloc ((size_t) opts.connections, sizeof *idle);
    if (!reqs || !conns || !pfds || !pconn || !idle) {
        fprintf (stderr, S_NAME ": out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < count; i++)
        if (s_req_build (&reqs[i], i, &opts, tag, token, account, url)) {
            fprintf (stderr, S_NAME ": cannot build webhook %zu\n", i);
            return 1;
        }
    //  Idle connections, first in first out: each is used often, none stays
    //  idle long enough for the server's keep-alive timeout to close it.
    size_t nconn = (size_t) opts.connections;
    size_t idle_head = 0;  //  the oldest idle connection in idle[]
    size_t nidle = 0;      //  idle connections
    for (int i = 0; i < opts.connections; i++) {
        conns[i].fd = -1;
        if (!(conns[i].in = malloc (S_ANSWER_MAX + 1)) || s_conn_open (&conns[i], &opts))
            return 1;
        idle[(idle_head + nidle++) % nconn] = (size_t) i;
    }

    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction (SIGINT, &sa, NULL);
    sigaction (SIGTERM, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);

    size_t next = 0;          //  next webhook to send
    size_t in_flight = 0;     //  webhooks written or being written, not answered
    size_t late = 0;          //  webhooks written over 1 ms after they were due
    size_t waited = 0;        //  webhooks that found no idle connection when due
    size_t waiting_upto = 0;  //  webhooks below this found no idle connection
    size_t conn_errors = 0;   //  webhooks lost: connection failed or closed mid-request
    size_t retries = 0;       //  webhooks sent again on a new connection
    int64_t max_late_ns = 0;  //  longest such wait
    double period_ns = 1e9 / opts.rate;
    int64_t wall0 = s_wall ();
    int64_t mono0 = s_mono ();
    int64_t drain_end = 0;

    while (true) {
        int64_t now = s_mono ();
        if (!s_stop && next < count) {
            size_t due = (size_t) ((double) (now - mono0) / period_ns) + 1;
            if (due > count)
                due = count;
            while (next < due && nidle > 0) {
                int64_t due_at = mono0 + (int64_t) ((double) next * period_ns);
                if (now - due_at > 1000000) {  //  over 1 ms behind schedule
                    late++;
                    if (now - due_at > max_late_ns)
                        max_late_ns = now - due_at;
                }
                if (next < waiting_upto)
                    waited++;
                s_conn_t *conn = &conns[idle[idle_head]];
                idle_head = (idle_head + 1) % nconn;
                nidle--;
                conn->req = next;
                conn->written = 0;
                conn->in_size = 0;
                in_flight++;
                if (s_conn_write (conn, &reqs[next])
                    && !s_conn_fail (conn, reqs, &opts, &retries)) {
                    conn_errors++;
                    in_flight--;
                    if (conn->fd >= 0)
                        idle[(idle_head + nidle++) % nconn] = (size_t) (conn - conns);
                }
                next++;
            }
            if (next < due && nidle == 0 && due > waiting_upto)
                waiting_upto = due;
        }
        bool sending = !s_stop && next < count;
        if (!sending) {
            if (!drain_end)
                drain_end = s_mono () + (int64_t) (opts.drain * 1e9);
            if (in_flight == 0 || s_mono () >= drain_end)
                break;
        }
        //  Wait for sockets, or until the next webhook is due.
        int64_t wait_ns;
        if (sending && nidle > 0) {
            int64_t due_at = mono0 + (int64_t) ((double) next * period_ns);
            wait_ns = due_at - s_mono ();
            if (wait_ns < 0)
                wait_ns = 0;
        }
        else
            wait_ns = 100000000;  //  100 ms: also notices the end of the drain
        int n = 0;
        for (int i = 0; i < opts.connections; i++) {
            if (conns[i].fd < 0 || conns[i].req == SIZE_MAX)
                continue;
            pfds[n].fd = conns[i].fd;
            pfds[n].events = POLLIN;
            if (conns[i].written < reqs[conns[i].req].size)
                pfds[n].events |= POLLOUT;
            pfds[n].revents = 0;
            pconn[n] = i;
            n++;
        }
        struct timespec ts = {.tv_sec = wait_ns / S_NS, .tv_nsec = wait_ns % S_NS};
        int ready = ppoll (pfds, (nfds_t) n, &ts, NULL);
        if (ready < 0 && errno != EINTR) {
            perror (S_NAME ": ppoll");
            return 1;
        }
        if (ready <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            int i = pconn[k];
            s_conn_t *conn = &conns[i];
            short revents = pfds[k].revents;
            if (!revents || conn->req == SIZE_MAX)
                continue;
            s_req_t *req = &reqs[conn->req];
            bool failed = false;
            if ((revents & POLLOUT) && conn->written < req->size)
                failed = s_conn_write (conn, req) != 0;
            if (!failed && (revents & (POLLIN | POLLERR | POLLHUP))) {
                ssize_t got =
                    recv (conn->fd, conn->in + conn->in_size, S_ANSWER_MAX - conn->in_size, 0);
                if (got < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                if (got <= 0)
                    failed = true;
                else {
                    conn->in_size += (size_t) got;
                    int status = 0;
                    bool close_after = false;
                    int complete = s_answer_complete (conn, &status, &close_after);
                    if (complete < 0)
                        failed = true;
                    else if (complete > 0) {
                        req->ack_ns = s_wall ();
                        req->ack_mono = s_mono ();
                        req->status = status;
                        in_flight--;
                        conn->req = SIZE_MAX;
                        conn->in_size = 0;
                        if (close_after) {
                            s_conn_close (conn);
                            if (s_conn_open (conn, &opts) != 0)
                                continue;
                        }
                        idle[(idle_head + nidle++) % nconn] = (size_t) i;
                    }
                }
            }
            if (failed && !s_conn_fail (conn, reqs, &opts, &retries)) {
                conn_errors++;
                in_flight--;
                if (conn->fd >= 0)
                    idle[(idle_head + nidle++) % nconn] = (size_t) i;
            }
        }
    }
    int64_t mono_end = s_mono ();

    //  Summary: answers by status, achieved rate, answer latency.
    size_t ok = 0, non200 = 0, unanswered = 0;
    int64_t *lat = calloc (next ? next : 1, sizeof *lat);
    size_t nlat = 0;
    int64_t first_sent = 0, last_sent = 0;
    for (size_t i = 0; i < next; i++) {
        if (reqs[i].status == 200)
            ok++;
        else if (reqs[i].status)
            non200++;
        else
            unanswered++;
        if (reqs[i].status && lat)
            lat[nlat++] = reqs[i].ack_mono - reqs[i].sent_mono;
        if (reqs[i].sent_mono) {
            if (!first_sent || reqs[i].sent_mono < first_sent)
                first_sent = reqs[i].sent_mono;
            if (reqs[i].sent_mono > last_sent)
                last_sent = reqs[i].sent_mono;
        }
    }
    if (lat)
        qsort (lat, nlat, sizeof *lat, s_cmp_i64);
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    double cpu_s = (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6
                   + (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
    double span = (double) (last_sent - first_sent) / 1e9;
    double achieved = span > 0 && next > 1 ? (double) (next - 1) / span : 0;
    printf ("SBLOAD tag=%s target_rate=%g duration_s=%g connections=%d planned=%zu sent=%zu"
            " ok=%zu non200=%zu unanswered=%zu conn_errors=%zu retries=%zu late=%zu waited=%zu"
            " max_late_ms=%.2f"
            " achieved_rate=%.1f ack_p50_ms=%.3f ack_p99_ms=%.3f ack_max_ms=%.3f wall_s=%.2f"
            " cpu_s=%.2f\n",
            tag, opts.rate, opts.duration, opts.connections, count, next, ok, non200, unanswered,
            conn_errors, retries, late, waited, (double) max_late_ns / 1e6, achieved,
            lat ? (double) s_pct (lat, nlat, 50) / 1e6 : 0,
            lat ? (double) s_pct (lat, nlat, 99) / 1e6 : 0,
            lat && nlat ? (double) lat[nlat - 1] / 1e6 : 0, (double) (mono_end - mono0) / 1e9,
            cpu_s);
    fflush (stdout);
    int rc = 0;
    if (opts.out && s_write_csv (opts.out, reqs, next, wall0, opts.rate))
        rc = 1;
    free (lat);
    for (size_t i = 0; i < count; i++)
        free (reqs[i].data);
    free (reqs);
    for (int i = 0; i < opts.connections; i++) {
        s_conn_close (&conns[i]);
        free (conns[i].in);
    }
    free (conns);
    free (pfds);
    free (pconn);
    free (idle);
    return rc;
}

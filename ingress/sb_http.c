/*  sb_http: the ingress's HTTP routes on civetweb.

    One begin_request callback routes every request: it strips the optional
    SB_PATH_PREFIX, answers 404/405 for unknown paths and methods, then for
    the provider routes checks, in this order: the provider's secret is
    configured (else 503), Content-Type (415), body size (413, before
    reading when Content-Length says so), the signature over the exact bytes
    (403), the body's shape (400), and finally hands the events to the
    journal writer and answers only once they are durable (503 if not).
    Before any of that, a request whose framing is ambiguous gets 400 and
    its connection is closed (s_framing_error). What is Twilio's own (the
    URL it signed behind proxies and SB_PUBLIC_URL, lenient forms, JSON
    bodies as forms, the TwiML answers) is in sb_twilio_http; the bodies
    become events in sb_twilio and sb_meta. This file keeps HTTP: routing,
    limits, deadlines, the answer, and the hand-off to the journal writer.

    DESIGN
    civetweb serves a connection with one worker thread for as long as the
    connection lives, idle keep-alive time included. So the pool is sized
    for connections, not for CPU (SB_HTTP_THREADS, default 256: with 250
    idle or slow clients connected, the 6 threads left still answer
    thousands of webhooks a second, since each takes about a millisecond;
    connections beyond the pool wait in civetweb's queue), and idle and slow
    clients are bounded by keep_alive_timeout_ms and request_timeout_ms.

    Two things civetweb does not do, done here without patching it:
    - One address holds at most SB_HTTP_MAX_CONN_PER_IP workers. The first
      callback a plain connection reaches is init_connection, on the worker that
      took it from the queue and before that worker reads a byte; past the
      limit the connection is shut down there and then (s_init_connection),
      so slow or idle connections from one client cannot fill the pool.
    - A request is complete within SB_HTTP_REQUEST_TIMEOUT_MS of the moment
      a worker starts waiting for it (on a keep-alive connection, after the
      idle allowance SB_HTTP_KEEPALIVE_TIMEOUT_MS). civetweb's timeout is
      per read, and one mg_read of n bytes returns only when n bytes came or
      the client went silent for the whole timeout, so a trickle holds it
      for ever. A watchdog actor (s_watchdog) shuts the reading side of the
      socket of a request past its deadline: the blocked read returns,
      headers end in civetweb's 400 or a close, a body in our 408.
    civetweb 1.15 tells init_connection neither the address nor the socket:
    the address is read from the connection's request_info, found once per
    worker through the user connection data it holds (s_conn_info, checked
    against mg_get_request_info on every request); the socket is found
    among the process's descriptors by its addresses (s_find_socket, at
    most a pool, a queue and 512 descriptors past the highest connection
    descriptor seen), which only refused and cut connections pay; one not
    found is searched again a second later. A connection's addresses sit
    under one mutex (conn_lock), taken when a connection starts and ends
    (the per-address scan only when SB_HTTP_MAX_CONN_PER_IP is set), never
    per request and never across a blocking call; it also keeps a socket
    from being closed while the watchdog shuts it. A request's deadline is a
    per-worker atomic: the watchdog cuts only by swapping the due value for
    a cut mark, so a request that ended meanwhile keeps its connection.
    With TLS, civetweb's handshake comes before init_connection: a
    connection is taken up when its handshake starts, from OpenSSL's info
    callback (s_tls_info), where its socket is known; init_connection then
    only gives the first request a fresh deadline.

    Memory: a thread costs what its stack and civetweb's per-thread buffer
    keep resident, about 20 KiB when idle, so the pool is most of the
    ingress's memory. A request allocates from a scratch on its stack
    (s_begin_request) and a closing connection gives back the stack pages
    its requests touched (s_connection_close): docs/internals.md, "Memory".

    Each worker thread lazily creates its journal-writer client on its
    first webhook. Handlers hold no lock while waiting for the journal. The
    path and query are taken raw (decode_url=no): Twilio signs the URL as it
    sent it, and sb_twilio_http checks it so.

    With SB_TLS_CERT and SB_TLS_KEY the port serves HTTPS instead (sb_tls
    loads the certificate; civetweb's init_ssl callback installs it). With
    SB_TLS_CLIENT_CA as well, the handshake checks a client certificate
    when one is sent, and the Meta route refuses (403) a connection that
    sent none (s_client_cert_refused); the Twilio routes, which never get
    one, do not ask (sb_tls, "client certificates").

    Limits: bodies larger than SB_MAX_BODY are refused; the request line and
    headers are capped by civetweb (16 KiB).
*/
#include "sb_http.h"

#include <assert.h>
#include <civetweb.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sb_actor.h"
#include "sb_event.h"
#include "sb_form.h"
#include "sb_log.h"
#include "sb_meta.h"
#include "sb_scratch.h"
#include "sb_sig.h"
#include "sb_time.h"
#include "sb_tls.h"
#include "sb_twilio.h"
#include "sb_twilio_http.h"

#define S_CHALLENGE_MAX 256
#define S_DRAIN_MAX (8u * 1024 * 1024)  //  most bytes read to refuse a body politely
//  A request's scratch, on its worker's stack (civetweb gives each 100
//  KiB): a one-message Meta webhook takes about 5 KiB of it (body, parsed
//  JSON, the event), a Twilio one about 4.5 KiB; more spills to malloc.
#define S_SCRATCH_SIZE (16 * 1024)
#define S_FD_SLACK 512  //  descriptors s_find_socket looks at past a pool and a queue

typedef enum {
//  The provider routes (common/sb_routes.h, which doctor reads too).
#define SB_ROUTE(id, path, name, allow, use) id,
#include "sb_routes.h"
#undef SB_ROUTE
    R_HEALTHZ,
    R_READYZ,
    R_METRICS,
    R_UNKNOWN,
    R_COUNT
} s_route_t;

static const struct {
    const char *path;   //  path after the prefix
    const char *name;   //  label in metrics
    const char *allow;  //  methods, for 405
} s_routes[R_COUNT] = {
#define SB_ROUTE(id, path, name, allow, use) [id] = {path, name, allow},
#include "sb_routes.h"
#undef SB_ROUTE
    [R_HEALTHZ] = {"/healthz", "healthz", "GET, HEAD"},
    [R_READYZ] = {"/readyz", "readyz", "GET, HEAD"},
    [R_METRICS] = {"/metrics", "metrics", "GET, HEAD"},
    [R_UNKNOWN] = {NULL, "unknown", NULL},
};

//  Status codes counted per route.
static const int s_codes[] = {200, 400, 403, 404, 405, 408, 413, 415, 500, 503};
#define S_CODES (sizeof s_codes / sizeof s_codes[0])

//  Why a request was refused before the journal, for sb_rejected_total.
typedef enum {
    X_NOT_FOUND,
    X_BAD_METHOD,
    X_TOO_LARGE,
    X_CONTENT_TYPE,
    X_MALFORMED,
    X_NOT_CONFIGURED,
    X_JOURNAL,
    X_TIMEOUT,
    X_FRAMING,
    X_COUNT
} s_reject_t;
static const char *s_reject_names[X_COUNT] = {"not_found",           "bad_method", "too_large",
                                              "content_type",        "malformed",  "not_configured",
                                              "journal_unavailable", "timeout",    "bad_framing"};

struct sb_http_t {
    struct mg_context *ctx;    //  civetweb server
    sb_writer_t *writer;       //  borrowed: the journal actor
    sb_metrics_t *metrics;     //  borrowed
    char *prefix;              //  SB_PATH_PREFIX ("" when none)
    size_t prefix_len;         //  its length
    bool skip_signatures;      //  SB_INSECURE_SKIP_SIGNATURES
    sb_twilio_http_t *twilio;  //  Twilio's URL, signature, parameters and TwiML
    char *meta_secret;         //  META_APP_SECRET, NULL when unset
    char *meta_verify;         //  META_VERIFY_TOKEN, NULL when unset
    char *ingress_id;          //  SB_INGRESS_ID
    size_t max_body;           //  SB_MAX_BODY
    sb_tls_t *tls;             //  certificate and key when serving HTTPS, else NULL
    atomic_int_fast64_t last_unconfigured_log;  //  rate limit of the "set X" log line
    sb_metric_t *m_requests[R_COUNT][S_CODES];  //  requests by route and code
    sb_metric_t *m_sig_fail[2][SB_SIG_COUNT];   //  403s by provider and reason
    sb_metric_t *m_rejected[X_COUNT];           //  refusals by reason
    sb_metric_t *m_latency;                     //  webhook latency histogram
    sb_metric_t *m_inflight;                    //  webhooks in flight
    atomic_int_fast64_t inflight;               //  its value
    sb_metric_t *m_refused_conns;               //  connections past the per-address limit
    sb_metric_t *m_deadline_cuts;               //  requests cut at their deadline
    int64_t request_timeout_us;                 //  SB_HTTP_REQUEST_TIMEOUT_MS
    int64_t keepalive_timeout_us;               //  SB_HTTP_KEEPALIVE_TIMEOUT_MS
    int max_conn_per_ip;                        //  SB_HTTP_MAX_CONN_PER_IP, 0: no limit
    int fd_limit;                               //  RLIMIT_NOFILE: no descriptor reaches it
    int fd_slack;               //  descriptors s_find_socket looks at past the highest seen
    atomic_int fd_high;         //  highest connection descriptor found so far
    pthread_mutex_t conn_lock;  //  guards workers[] and their connection fields
    bool conn_lock_ready;       //  conn_lock was initialised
    struct s_thread **workers;  //  the pool's threads (SB_HTTP_THREADS slots)
    size_t workers_max;         //  slots in workers
    size_t workers_count;       //  slots used
    uint64_t last_conn_id;      //  serial of the last connection taken up
    atomic_int_fast64_t refused_log_us;  //  when the last refusal line was written
    atomic_uint_fast64_t refused_held;   //  refusal lines held back since
    sb_log_every_t miss_log;             //  sockets the watchdog did not find (its thread only)
    zactor_t *watchdog;                  //  cuts requests past their deadline
    atomic_bool info_wrong;              //  s_conn_info disagreed with civetweb: no limit
};

//  Per worker thread, created by init_thread.
typedef struct s_thread {
    sb_http_t *http;             //  the server
    sb_writer_client_t *client;  //  journal writer client, created on first use
    uint64_t rng;                //  request id generator state
    char *stack_lo;              //  lowest usable byte of this thread's stack (NULL: unknown)
    char *stack_hi;              //  one past its highest
    size_t page;                 //  the page size
    //  The connection this worker serves, under http->conn_lock:
    _Atomic uint64_t conn_id;  //  its serial (0: none); written under the lock
    uint64_t addr_hash;        //  hash of its remote address
    char addr[48];             //  its remote address, as civetweb writes it
    int remote_port;           //  its remote port
    int local_port;            //  the port it came in on
    int fd;                    //  its socket when known (TLS), else -1
    bool counted;              //  counted against SB_HTTP_MAX_CONN_PER_IP
    //  When the request being read must be in: 0 none, S_CUT when the
    //  watchdog shut it. Lock-free: the worker sets and clears it, the
    //  watchdog swaps a due value for S_CUT (compare-and-swap).
    atomic_int_fast64_t deadline_us;
    bool armed;                             //  the worker's own: its connection has a deadline
    bool tls;                               //  the worker's own: its connection's handshake began
    const struct mg_connection *info_conn;  //  the civetweb connection info belongs to
    const struct mg_request_info *info;     //  its request_info, found by s_conn_info
} s_thread_t;

//  One request being handled.
typedef struct {
    struct mg_connection *conn;
    const struct mg_request_info *info;
    sb_http_t *http;
    s_thread_t *thread;
    s_route_t route;
    const char *path;    //  raw path as received (prefix included)
    char id[17];         //  request id
    int64_t started_us;  //  for the latency histogram
    char *body;          //  request body, NUL-terminated (owned)
    size_t body_size;
    bool body_drained;  //  the body was read (kept or thrown away)
    bool closing;       //  the connection closes after the answer
} s_req_t;

static size_t
s_code_index (int code)
{
    for (size_t i = 0; i < S_CODES; i++)
        if (s_codes[i] == code)
            return i;
    return S_CODES;
}

// --------------------------------------------------------------------------
//  Connections: the per-address limit and the whole-request deadline

//  FNV-1a of an address, to compare slots quickly; never 0.
static uint64_t
s_addr_hash (const char *addr)
{
    uint64_t h = 14695981039346656037ULL;
    for (const char *p = addr; *p; p++)
        h = (h ^ (uint8_t) *p) * 1099511628211ULL;
    return h ? h : 1;
}

static int
s_port_of (const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return ntohs (((const struct sockaddr_in *) sa)->sin_port);
    if (sa->ss_family == AF_INET6)
        return ntohs (((const struct sockaddr_in6 *) sa)->sin6_port);
    return -1;
}

//  fd is the TCP connection from addr:remote_port to local_port. The
//  address is written as civetweb writes it (getnameinfo, numeric).
static bool
s_socket_is (int fd, const char *addr, int remote_port, int local_port)
{
    struct sockaddr_storage peer, local;
    socklen_t peer_len = sizeof peer, len = sizeof local;
    if (getpeername (fd, (struct sockaddr *) &peer, &peer_len) != 0
        || s_port_of (&peer) != remote_port)
        return false;
    if (getsockname (fd, (struct sockaddr *) &local, &len) != 0 || s_port_of (&local) != local_port)
        return false;
    char text[64];
    return getnameinfo ((struct sockaddr *) &peer, peer_len, text, sizeof text, NULL, 0,
                        NI_NUMERICHOST)
               == 0
           && strcmp (text, addr) == 0;
}

//  The descriptor of the connection a worker holds, or -1. The kernel
//  hands out the lowest free descriptor, so a live connection sits at most
//  a pool and a queue above the others: the search ends fd_slack past the
//  highest connection descriptor found so far (never at RLIMIT_NOFILE, up
//  to a million getpeername calls), and as soon as the worker has let the
//  connection go (its conn_id changed).
static int
s_find_socket (sb_http_t *http, const s_thread_t *thread, uint64_t conn_id, const char *addr,
               int remote_port, int local_port)
{
    int high = atomic_load (&http->fd_high);
    int limit = high < http->fd_limit - http->fd_slack ? high + http->fd_slack : http->fd_limit;
    for (int fd = 0; fd < limit; fd++) {
        if (fd % 64 == 63 && atomic_load (&thread->conn_id) != conn_id)
            return -1;
        if (s_socket_is (fd, addr, remote_port, local_port)) {
            while (fd > high && !atomic_compare_exchange_weak (&http->fd_high, &high, fd))
                ;
            return fd;
        }
    }
    return -1;
}

#define S_INFO_SEARCH 1024  //  bytes of a connection searched; it is several KiB long

//  The request_info of a connection a worker has just taken up. civetweb
//  fills in its addresses before init_connection, but mg_get_request_info
//  answers NULL until a request has been read. The user connection data
//  lives in that same struct (civetweb.h: mg_request_info->conn_data), so a
//  marker put there with mg_set_user_connection_data shows where it is: it
//  starts offsetof (conn_data) before the marker, inside the connection (a
//  few hundred bytes from its start in civetweb 1.15). A worker reuses one
//  connection struct, so this is searched once per worker; begin_request
//  checks the answer against mg_get_request_info (s_check_conn_info).
static const struct mg_request_info *
s_conn_info (s_thread_t *thread, const struct mg_connection *conn)
{
    if (thread->info_conn == conn)
        return thread->info;
    void *marker = &thread->info;  //  an address nothing else holds
    mg_set_user_connection_data (conn, marker);
    const char *base = (const char *) conn;
    const struct mg_request_info *found = NULL;
    for (size_t at = 0; at + sizeof marker <= S_INFO_SEARCH; at += alignof (void *)) {
        void *value;
        memcpy (&value, base + at, sizeof value);
        if (value == marker) {
            if (at >= offsetof (struct mg_request_info, conn_data))
                found = (const struct mg_request_info *) (const void *) (base + at
                                                                         - offsetof (
                                                                             struct mg_request_info,
                                                                             conn_data));
            break;
        }
    }
    mg_set_user_connection_data (conn, NULL);
    if (found
        && (found->remote_port <= 0 || found->remote_port > 65535
            || !memchr (found->remote_addr, 0, sizeof found->remote_addr)))
        found = NULL;
    thread->info_conn = conn;
    thread->info = found;
    return found;
}

//  In begin_request, where civetweb answers: was s_conn_info right? If
//  not, the per-address limit is switched off (loudly) rather than guessed.
static void
s_check_conn_info (sb_http_t *http, s_thread_t *thread, const struct mg_connection *conn,
                   const struct mg_request_info *info)
{
    if (thread->info_conn != conn || thread->info == info || atomic_load (&http->info_wrong))
        return;
    if (!atomic_exchange (&http->info_wrong, true))
        sb_error ("http", "cannot tell a new connection's address with this civetweb: "
                          "SB_HTTP_MAX_CONN_PER_IP is not enforced");
}

//  At most one refusal line a second, with how many were held back: a
//  lock-free limiter, since workers refuse concurrently and no lock is
//  held across the write.
static void
s_log_refusal (sb_http_t *http, const char *addr, int held)
{
    int64_t now = sb_time_mono_us ();
    int64_t last = atomic_load (&http->refused_log_us);
    if (last && now - last < 1000000) {
        atomic_fetch_add (&http->refused_held, 1);
        return;
    }
    if (!atomic_compare_exchange_strong (&http->refused_log_us, &last, now)) {
        atomic_fetch_add (&http->refused_held, 1);
        return;
    }
    sb_warn ("http",
             "connection refused: too many from one address remote=%s held=%d limit=%d "
             "repeated=%" PRIuFAST64,
             addr, held, http->max_conn_per_ip, atomic_exchange (&http->refused_held, 0));
}

//  A worker takes up a connection, before it reads a byte of it: count it
//  against its address, or shut it down at once when that address already
//  holds max_conn_per_ip workers. Either way its deadline runs from now: a
//  refused connection whose socket was not found is cut by the watchdog
//  like any other. fd is the connection's socket when the caller knows it
//  (the TLS handshake), -1 when it must be searched for.
static void
s_conn_begin (sb_http_t *http, s_thread_t *thread, const struct mg_connection *conn, int fd)
{
    const struct mg_request_info *info = s_conn_info (thread, conn);
    if (!info || atomic_load (&http->info_wrong))
        return;
    uint64_t hash = s_addr_hash (info->remote_addr);
    int held = 0;
    bool refuse = false;
    pthread_mutex_lock (&http->conn_lock);
    if (http->max_conn_per_ip > 0) {
        for (size_t i = 0; i < http->workers_count; i++) {
            const s_thread_t *other = http->workers[i];
            if (other->counted && other->addr_hash == hash
                && strcmp (other->addr, info->remote_addr) == 0)
                held++;
        }
        refuse = held >= http->max_conn_per_ip;
    }
    uint64_t conn_id = ++http->last_conn_id;
    atomic_store (&thread->conn_id, conn_id);
    thread->addr_hash = hash;
    snprintf (thread->addr, sizeof thread->addr, "%s", info->remote_addr);
    thread->remote_port = info->remote_port;
    thread->local_port = info->server_port;
    thread->fd = fd;
    thread->counted = !refuse;
    atomic_store (&thread->deadline_us, sb_time_mono_us () + http->request_timeout_us);
    pthread_mutex_unlock (&http->conn_lock);
    thread->armed = !refuse;
    if (refuse) {
        sb_metric_add (http->m_refused_conns, 1);
        s_log_refusal (http, info->remote_addr, held);
        //  Our own connection: nobody else closes it meanwhile. civetweb's
        //  next read (of the request, or of the handshake) then sees the
        //  end of the stream and closes it.
        if (fd < 0)
            fd = s_find_socket (http, thread, conn_id, info->remote_addr, info->remote_port,
                                info->server_port);
        if (fd >= 0)
            shutdown (fd, SHUT_RDWR);
        else
            sb_warn ("http",
                     "cannot find the socket of a refused connection, the watchdog cuts "
                     "it at its deadline remote=%s port=%d",
                     info->remote_addr, info->remote_port);
    }
}

//  civetweb's init_connection: for plain HTTP the first callback a
//  connection reaches. With TLS it comes after the handshake, which
//  s_tls_info already took up: the request's deadline then starts afresh.
static int
s_init_connection (const struct mg_connection *conn, void **conn_data)
{
    sb_http_t *http = (sb_http_t *) mg_get_user_data (mg_get_context (conn));
    s_thread_t *thread = (s_thread_t *) mg_get_thread_pointer (conn);
    *conn_data = NULL;
    if (!thread)
        return 0;
    if (thread->tls) {
        if (thread->armed)
            atomic_store (&thread->deadline_us, sb_time_mono_us () + http->request_timeout_us);
        return 0;
    }
    s_conn_begin (http, thread, conn, -1);
    return 0;
}

//  OpenSSL's info callback on civetweb's SSL_CTX (installed by s_init_ssl).
//  civetweb runs the whole TLS handshake before init_connection, so a
//  connection is taken up here, where the handshake starts: the
//  per-address limit and the deadline then hold a half-finished handshake
//  as they hold a slow request (the socket is known: no search). A later
//  handshake on the same connection (TLS 1.2 renegotiation) is not a new
//  connection.
static void
s_tls_info (const SSL *ssl, int where, int ret)
{
    (void) ret;
    if (!(where & SSL_CB_HANDSHAKE_START))
        return;
    const struct mg_connection *conn = (const struct mg_connection *) SSL_get_app_data (ssl);
    s_thread_t *thread = conn ? (s_thread_t *) mg_get_thread_pointer (conn) : NULL;
    if (!thread || thread->tls)
        return;
    thread->tls = true;
    s_conn_begin (thread->http, thread, conn, SSL_get_fd (ssl));
}

//  The connection is closing (civetweb's connection_close, before it
//  closes the socket): it no longer counts, and the watchdog lets it be.
static void
s_conn_forget (sb_http_t *http, s_thread_t *thread)
{
    pthread_mutex_lock (&http->conn_lock);
    atomic_store (&thread->conn_id, 0);
    thread->counted = false;
    thread->fd = -1;
    atomic_store (&thread->deadline_us, 0);
    pthread_mutex_unlock (&http->conn_lock);
    thread->armed = false;
    thread->tls = false;
}

#define S_CUT ((int_fast64_t) -1)  //  deadline_us of a request the watchdog cut

//  The request's bytes are all in (or given up on): stop its clock. True
//  when the watchdog had cut it (the mark stays: no new deadline then).
static bool
s_deadline_end (s_thread_t *thread)
{
    int_fast64_t old = atomic_load (&thread->deadline_us);
    while (old != S_CUT && !atomic_compare_exchange_weak (&thread->deadline_us, &old, 0))
        ;
    return old == S_CUT;
}

//  A request was answered: the next one on this connection may idle for
//  the keep-alive timeout, then has the request timeout to arrive whole.
static void
s_deadline_next (s_thread_t *thread)
{
    if (!thread->armed)
        return;
    sb_http_t *http = thread->http;
    int_fast64_t next = sb_time_mono_us () + http->keepalive_timeout_us + http->request_timeout_us;
    int_fast64_t old = atomic_load (&thread->deadline_us);
    while (old != S_CUT && !atomic_compare_exchange_weak (&thread->deadline_us, &old, next))
        ;
}

#define S_CUTS_PER_TICK 32
#define S_FIND_RETRY_US 1000000  //  a request whose socket was not found is tried again then

//  Shut the reading side of every request past its deadline. The sockets
//  are searched without the lock, then shut under it (connection_close
//  takes the lock first) only if the deadline found due is still there:
//  a request that ended meanwhile keeps its connection. A socket not found
//  is searched again a second later, not given up.
static void
s_watchdog_tick (sb_http_t *http)
{
    struct {
        s_thread_t *thread;
        uint64_t conn_id;
        int_fast64_t deadline_us;
        char addr[48];
        int remote_port, local_port, fd;
    } due[S_CUTS_PER_TICK];
    size_t count = 0;
    int64_t now = sb_time_mono_us ();
    pthread_mutex_lock (&http->conn_lock);
    for (size_t i = 0; i < http->workers_count && count < S_CUTS_PER_TICK; i++) {
        s_thread_t *thread = http->workers[i];
        uint64_t conn_id = atomic_load (&thread->conn_id);
        int_fast64_t deadline = atomic_load (&thread->deadline_us);
        if (conn_id && deadline > 0 && now >= deadline) {
            due[count].thread = thread;
            due[count].conn_id = conn_id;
            due[count].deadline_us = deadline;
            memcpy (due[count].addr, thread->addr, sizeof due[count].addr);
            due[count].remote_port = thread->remote_port;
            due[count].local_port = thread->local_port;
            due[count].fd = thread->fd;
            count++;
        }
    }
    pthread_mutex_unlock (&http->conn_lock);
    for (size_t i = 0; i < count; i++) {
        s_thread_t *thread = due[i].thread;
        int fd = due[i].fd >= 0 ? due[i].fd
                                : s_find_socket (http, thread, due[i].conn_id, due[i].addr,
                                                 due[i].remote_port, due[i].local_port);
        bool cut = false, missed = false;
        pthread_mutex_lock (&http->conn_lock);
        int_fast64_t expected = due[i].deadline_us;
        if (atomic_load (&thread->conn_id) == due[i].conn_id) {
            if (fd >= 0 && s_socket_is (fd, due[i].addr, due[i].remote_port, due[i].local_port)) {
                cut = atomic_compare_exchange_strong (&thread->deadline_us, &expected, S_CUT);
                if (cut)
                    shutdown (fd, SHUT_RD);
            }
            else
                missed = atomic_compare_exchange_strong (&thread->deadline_us, &expected,
                                                         now + S_FIND_RETRY_US);
        }
        pthread_mutex_unlock (&http->conn_lock);
        if (cut) {
            sb_metric_add (http->m_deadline_cuts, 1);
            sb_debug ("http", "request cut at its deadline remote=%s port=%d", due[i].addr,
                      due[i].remote_port);
        }
        else if (missed)
            sb_log_every (&http->miss_log, SB_LOG_WARN, "http",
                          "cannot find the socket of a request past its deadline, trying again "
                          "remote=%s port=%d",
                          due[i].addr, due[i].remote_port);
    }
}

//  The watchdog actor: a tick a twentieth of the request timeout (10 to
//  100 ms), so a request is cut at most that late.
static void
s_watchdog (zsock_t *pipe, void *args)
{
    sb_http_t *http = (sb_http_t *) args;
    zpoller_t *poller = zpoller_new (pipe, NULL);
    sb_actor_started (pipe, poller != NULL);
    if (!poller)
        return;
    int64_t tick = http->request_timeout_us / 20000;
    tick = tick < 10 ? 10 : tick > 100 ? 100 : tick;
    while (true) {
        void *which = zpoller_wait (poller, (int) tick);
        if (which == pipe && sb_actor_pipe_says_stop (pipe, "http"))
            break;
        if (zpoller_terminated (poller))
            break;
        s_watchdog_tick (http);
    }
    zpoller_destroy (&poller);
}

// --------------------------------------------------------------------------
//  Answers

static void
s_respond (s_req_t *req, int code, const char *content_type, const char *body, size_t size)
{
    //  The head is written here rather than with mg_response_header_*:
    //  civetweb formats its Date header with gmtime(), not thread-safe.
    struct mg_connection *conn = req->conn;
    char date[SB_HTTP_DATE_SIZE];
    sb_time_http_date (date);
    const char *reason = mg_get_response_code_text (conn, code);
    char allow[64] = "";
    if (code == 405 && req->route < R_UNKNOWN)
        snprintf (allow, sizeof allow, "Allow: %s\r\n", s_routes[req->route].allow);
    //  Counted before the answer leaves: a client that reads /metrics next
    //  sees its own request.
    size_t ci = s_code_index (code);
    if (ci < S_CODES)
        sb_metric_add (req->http->m_requests[req->route][ci], 1);
    //  One write for head and a short body (TCP_NODELAY is on), from a
    //  small buffer: mg_printf formats into 8 KiB of stack, which each of
    //  the hundreds of worker threads would then keep resident.
    char buf[1536];
    int n = snprintf (buf, sizeof buf,
                      "HTTP/1.1 %d %s\r\n"
                      "Content-Type: %s\r\n"
                      "Content-Length: %zu\r\n"
                      "Date: %s\r\n"
                      "X-Request-Id: %s\r\n"
                      "Cache-Control: no-store\r\n"
                      "%s%s\r\n",
                      code, reason ? reason : "Unknown", content_type, size, date, req->id, allow,
                      req->closing ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t) n >= sizeof buf)
        n = 0;  //  cannot happen: every field above is short and fixed
    bool send_body = size && strcmp (req->info->request_method, "HEAD") != 0;
    if (send_body && (size_t) n + size <= sizeof buf) {
        memcpy (buf + n, body, size);
        mg_write (conn, buf, (size_t) n + size);
    }
    else {
        mg_write (conn, buf, (size_t) n);
        if (send_body)
            mg_write (conn, body, size);
    }
}

static void
s_respond_text (s_req_t *req, int code, const char *text)
{
    s_respond (req, code, "text/plain; charset=utf-8", text, strlen (text));
}

//  Read and discard an unread request body, so that closing or reusing
//  the connection does not reset it under the client before it reads our
//  answer. Bodies past S_DRAIN_MAX are not worth reading: the connection is
//  closed after the answer instead.
static void
s_drain (s_req_t *req)
{
    req->body_drained = true;
    long long declared = req->info->content_length;
    if (declared == 0)
        return;
    if (declared > (long long) S_DRAIN_MAX) {
        mg_disable_connection_keep_alive (req->conn);
        req->closing = true;
        return;
    }
    char scratch[16384];
    size_t total = 0;
    int n;
    while ((n = mg_read (req->conn, scratch, sizeof scratch)) > 0) {
        total += (size_t) n;
        if (total > S_DRAIN_MAX) {
            mg_disable_connection_keep_alive (req->conn);
            req->closing = true;
            return;
        }
    }
    if (n < 0) {
        mg_disable_connection_keep_alive (req->conn);
        req->closing = true;
    }
}

//  Refuse a request, count why, and log it at the given level.
static int
s_reject (s_req_t *req, int code, s_reject_t why, const char *text)
{
    sb_metric_add (req->http->m_rejected[why], 1);
    if (!req->body && !req->body_drained)
        s_drain (req);
    s_respond_text (req, code, text);
    sb_log (code >= 500 ? SB_LOG_WARN : SB_LOG_INFO, "http",
            "refused method=%s path=\"%.200s\" status=%d reason=%s remote=%s request_id=%s",
            req->info->request_method, req->path, code, s_reject_names[why], req->info->remote_addr,
            req->id);
    return code;
}

// --------------------------------------------------------------------------
//  Request pieces

static const char *
s_header (s_req_t *req, const char *name)
{
    return mg_get_header (req->conn, name);
}

//  Content-Type's media type equals type (parameters such as charset ignored).
static bool
s_content_type_is (s_req_t *req, const char *type)
{
    const char *ct = s_header (req, "Content-Type");
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t len = strlen (type);
    if (strncasecmp (ct, type, len) != 0)
        return false;
    char next = ct[len];
    return next == 0 || next == ';' || next == ' ';
}

//  Read the body into req->body (from the request's scratch when it fits),
//  up to max_body. 0, 413 or 400.
static int
s_receive_body (s_req_t *req)
{
    size_t cap = req->http->max_body;
    long long declared = req->info->content_length;
    if (declared > (long long) cap)
        return 413;
    size_t alloc = declared >= 0 ? (size_t) declared + 1 : 16384;
    if (alloc > cap + 1)
        alloc = cap + 1;
    char *buf = sb_scratch_alloc (alloc);
    if (!buf)
        return 500;
    size_t used = 0;
    while (true) {
        if (used + 1 >= alloc) {
            if (alloc > cap) {
                sb_scratch_free (buf);
                return 413;
            }
            size_t grow = alloc * 2 > cap + 1 ? cap + 1 : alloc * 2;
            char *bigger = sb_scratch_realloc (buf, grow);
            if (!bigger) {
                sb_scratch_free (buf);
                return 500;
            }
            buf = bigger;
            alloc = grow;
        }
        int n = mg_read (req->conn, buf + used, alloc - 1 - used);
        if (n < 0) {
            sb_scratch_free (buf);
            return 400;
        }
        if (n == 0)
            break;
        used += (size_t) n;
        if (used > cap) {
            sb_scratch_free (buf);
            return 413;
        }
    }
    if (declared >= 0 && used != (size_t) declared) {
        sb_scratch_free (buf);
        return 400;  //  the client sent less than it announced (timed out)
    }
    buf[used] = 0;
    req->body = buf;
    req->body_size = used;
    return 0;
}

//  s_receive_body within the request's deadline: 408 when the watchdog cut
//  it (the connection then closes, with nothing more to read).
static int
s_read_body (s_req_t *req)
{
    int rc = s_receive_body (req);
    if (s_deadline_end (req->thread) && rc) {
        req->body_drained = true;
        req->closing = true;
        mg_disable_connection_keep_alive (req->conn);
        return 408;
    }
    return rc;
}

//  Refuse unsigned or wrongly signed traffic. 0 when it may pass.
static int
s_signature_failed (s_req_t *req, int provider, sb_sig_result_t result)
{
    sb_http_t *http = req->http;
    sb_metric_add (http->m_sig_fail[provider][result], 1);
    s_respond_text (req, 403, "forbidden: bad signature\n");
    sb_warn ("http",
             "signature refused provider=%s reason=%s path=\"%.200s\" remote=%s request_id=%s",
             provider ? "meta" : "twilio", sb_sig_reason (result), req->path,
             req->info->remote_addr, req->id);
    return 403;
}

//  Answer 503 for a provider whose secret is not set, and say what to set
//  (at most once a minute in the log).
static int
s_not_configured (s_req_t *req, const char *variable)
{
    int64_t now = sb_time_wall_ms ();
    int64_t last = atomic_load (&req->http->last_unconfigured_log);
    if (now - last > 60000
        && atomic_compare_exchange_strong (&req->http->last_unconfigured_log, &last, now))
        sb_error ("http",
                  "webhook refused: %s is not set; set %s (or %s_FILE) to accept this provider "
                  "path=\"%.200s\" request_id=%s",
                  variable, variable, variable, req->path, req->id);
    return s_reject (req, 503, X_NOT_CONFIGURED, "provider not configured\n");
}

static void
s_random_id (s_thread_t *thread, char out[17])
{
    //  xorshift64*: request ids only need to be unique enough to grep.
    uint64_t x = thread->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    thread->rng = x;
    uint64_t v = x * 0x2545F4914F6CDD1DULL;
    //  16 lower-case hex digits, as "%016" PRIx64 writes them, without
    //  snprintf's cost on every request.
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = digits[v & 15];
    out[16] = '\0';
}

//  Fill what every event of this request shares. The raw body is not:
//  s_store_and_answer lends it to the first event only (sb_event_share_raw;
//  a Meta batch of n events would journal the body n times) and takes the
//  loan back before the caller frees the events; its content type goes
//  with it.
static int
s_stamp_common (s_req_t *req, sb_event_t *event, int64_t received_us)
{
    event->received_at_ms = received_us / 1000;
    event->received_at_us = received_us;
    const char *ct = s_header (req, "Content-Type");
    if (sb_event_set (&event->ingress_id, req->http->ingress_id)
        || sb_event_set (&event->epoch, sb_writer_epoch (req->http->writer))
        || sb_event_set (&event->raw_content_type, ct && event->request_index == 0 ? ct : "")
        || sb_event_set (&event->request_path, req->path)
        || sb_event_set (&event->request_id, req->id))
        return -1;
    return 0;
}

//  Journal the events and answer. Takes ownership of nothing.
static int
s_store_and_answer (s_req_t *req, sb_event_t **events, size_t count, const char *content_type,
                    const char *answer)
{
    int64_t received = sb_time_wall_us ();
    bool stamped = true;
    uint8_t body_sha256[SB_EVENT_SHA256_SIZE];
    sb_event_share_raw (events, count, req->body, req->body ? req->body_size : 0, body_sha256);
    for (size_t i = 0; i < count && stamped; i++)
        stamped = s_stamp_common (req, events[i], received) == 0;
    s_thread_t *thread = req->thread;
    if (stamped && !thread->client)
        thread->client = sb_writer_client_new (req->http->writer);
    uint64_t first_seq = 0;
    sb_journal_result_t stored = SB_JOURNAL_NOT_STORED;
    if (stamped && thread->client)
        //  Bounded from the request's start (10 s queued, 14 s in all).
        stored =
            sb_writer_client_store (thread->client, events, count, req->started_us, &first_seq);
    sb_event_unshare_raw (events, count);  //  the loans back
    if (!stamped) {
        s_respond_text (req, 500, "out of memory\n");
        return 500;
    }
    if (stored != SB_JOURNAL_STORED)
        return s_reject (req, 503, X_JOURNAL, "journal unavailable, retry later\n");
    s_respond (req, 200, content_type, answer, strlen (answer));
    sb_metric_observe (req->http->m_latency, (double) (sb_time_mono_us () - req->started_us) / 1e6);
    if (count > 0) {
        char topic[96] = "";
        sb_event_topic (events[0], topic, sizeof topic);
        sb_info ("http",
                 "stored method=POST path=\"%.200s\" status=200 topic=%s events=%zu seq=%" PRIu64
                 " provider_id=%.64s request_id=%s us=%" PRId64,
                 req->path, topic, count, first_seq, events[0]->provider_id, req->id,
                 sb_time_mono_us () - req->started_us);
    }
    return 200;
}

// --------------------------------------------------------------------------
//  Provider routes

static int
s_handle_twilio (s_req_t *req)
{
    sb_http_t *http = req->http;
    if (strcmp (req->info->request_method, "POST") != 0)
        return s_reject (req, 405, X_BAD_METHOD, "method not allowed\n");
    if (!sb_twilio_http_configured (http->twilio))
        return s_not_configured (req, "TWILIO_AUTH_TOKEN");
    bool json = s_content_type_is (req, "application/json");
    if (!json && !s_content_type_is (req, "application/x-www-form-urlencoded"))
        return s_reject (req, 415, X_CONTENT_TYPE,
                         "unsupported content type: expected application/x-www-form-urlencoded\n");
    int rc = s_read_body (req);
    if (rc == 413)
        return s_reject (req, 413, X_TOO_LARGE, "request body too large\n");
    if (rc == 408)
        return s_reject (req, 408, X_TIMEOUT, "request not received in time\n");
    if (rc)
        return s_reject (req, rc, X_MALFORMED, "could not read the request body\n");

    sb_twilio_http_request_t request = {
        .path = req->path,
        .query = req->info->query_string,
        .host = s_header (req, "Host"),
        .forwarded_proto = s_header (req, "X-Forwarded-Proto"),
        .signature = s_header (req, "X-Twilio-Signature"),
        .signature_settings = s_header (req, "X-Twilio-Webhooks-Signature-Settings"),
        .tls = req->info->is_ssl,
    };
    sb_form_t *form = NULL;
    sb_sig_result_t sig = SB_SIG_OK;
    switch (sb_twilio_http_read (http->twilio, &request, req->body, req->body_size, json, &form,
                                 &sig)) {
        case SB_TWILIO_HTTP_OK: break;
        case SB_TWILIO_HTTP_BAD_HOST:
            return s_reject (req, 400, X_MALFORMED, "missing or bad Host header\n");
        case SB_TWILIO_HTTP_BAD_SIGNATURE: return s_signature_failed (req, 0, sig);
        case SB_TWILIO_HTTP_BAD_FORM:
            return s_reject (req, 400, X_MALFORMED, "malformed form body\n");
        case SB_TWILIO_HTTP_MALFORMED: return s_reject (req, 400, X_MALFORMED, "malformed body\n");
    }

    sb_twilio_route_t route = req->route == R_TWILIO_MESSAGES ? SB_TWILIO_MESSAGES
                              : req->route == R_TWILIO_STATUS ? SB_TWILIO_STATUS
                              : req->route == R_TWILIO_VOICE  ? SB_TWILIO_VOICE
                                                              : SB_TWILIO_GATHER;
    char err[256] = "";
    sb_event_t *event = sb_twilio_normalize (route, form, err, sizeof err);
    sb_form_destroy (&form);
    if (!event) {
        sb_warn ("http", "malformed twilio webhook path=\"%.200s\" reason=\"%s\" request_id=%s",
                 req->path, err, req->id);
        return s_reject (req, 400, X_MALFORMED, "malformed webhook\n");
    }
    const char *type;
    char *built;
    const char *answer = sb_twilio_http_answer (http->twilio, route, req->path, &type, &built);
    rc = s_store_and_answer (req, &event, 1, type, answer);
    free (built);
    sb_event_destroy (&event);
    return rc;
}

static int
s_handle_meta_handshake (s_req_t *req)
{
    sb_http_t *http = req->http;
    if (!http->meta_verify)
        return s_not_configured (req, "META_VERIFY_TOKEN");
    const char *query = req->info->query_string;
    sb_form_t *form = query ? sb_form_parse (query, strlen (query)) : NULL;
    const char *mode = form ? sb_form_get (form, "hub.mode") : NULL;
    const char *token = form ? sb_form_get (form, "hub.verify_token") : NULL;
    const char *challenge = form ? sb_form_get (form, "hub.challenge") : NULL;
    bool ok = mode && strcmp (mode, "subscribe") == 0 && token && challenge && *challenge
              && strlen (challenge) <= S_CHALLENGE_MAX
              && strlen (token) == strlen (http->meta_verify)
              && CRYPTO_memcmp (token, http->meta_verify, strlen (token)) == 0;
    int rc;
    if (ok) {
        s_respond_text (req, 200, challenge);
        sb_info ("http", "meta subscription verified request_id=%s", req->id);
        rc = 200;
    }
    else {
        sb_metric_add (http->m_sig_fail[1][SB_SIG_MISMATCH], 1);
        s_respond_text (req, 403, "forbidden\n");
        sb_warn ("http", "meta subscription handshake refused remote=%s request_id=%s",
                 req->info->remote_addr, req->id);
        rc = 403;
    }
    sb_form_destroy (&form);
    return rc;
}

//  With SB_TLS_CLIENT_CA, Meta's route requires the connection's client
//  certificate (verified in the handshake): 403 without it, counted by
//  sb_tls, before anything else of the request is looked at.
static bool
s_client_cert_refused (s_req_t *req)
{
    sb_tls_t *tls = req->http->tls;
    if (!sb_tls_client_required (tls))
        return false;
    const struct mg_client_cert *cert = req->info->client_cert;
    if (sb_tls_client_ok (tls, cert ? cert->peer_cert : NULL))
        return false;
    if (!req->body_drained)
        s_drain (req);
    s_respond_text (req, 403, "forbidden: client certificate required\n");
    sb_info ("http",
             "refused method=%s path=\"%.200s\" status=403 reason=client_certificate remote=%s "
             "request_id=%s",
             req->info->request_method, req->path, req->info->remote_addr, req->id);
    return true;
}

static int
s_handle_meta (s_req_t *req)
{
    sb_http_t *http = req->http;
    const char *method = req->info->request_method;
    if (s_client_cert_refused (req))
        return 403;
    if (strcmp (method, "GET") == 0)
        return s_handle_meta_handshake (req);
    if (strcmp (method, "POST") != 0)
        return s_reject (req, 405, X_BAD_METHOD, "method not allowed\n");
    if (!http->meta_secret && !http->skip_signatures)
        return s_not_configured (req, "META_APP_SECRET");
    if (!s_content_type_is (req, "application/json"))
        return s_reject (req, 415, X_CONTENT_TYPE,
                         "unsupported content type: expected application/json\n");
    int rc = s_read_body (req);
    if (rc == 413)
        return s_reject (req, 413, X_TOO_LARGE, "request body too large\n");
    if (rc == 408)
        return s_reject (req, 408, X_TIMEOUT, "request not received in time\n");
    if (rc)
        return s_reject (req, rc, X_MALFORMED, "could not read the request body\n");
    if (!http->skip_signatures) {
        sb_sig_result_t sig = sb_sig_meta_validate (http->meta_secret, req->body, req->body_size,
                                                    s_header (req, "X-Hub-Signature-256"));
        if (sig != SB_SIG_OK)
            return s_signature_failed (req, 1, sig);
    }
    sb_event_t **events = NULL;
    size_t count = 0;
    char err[256] = "";
    if (sb_meta_normalize (req->body, req->body_size, &events, &count, err, sizeof err)) {
        sb_warn ("http", "malformed meta webhook path=\"%.200s\" reason=\"%s\" request_id=%s",
                 req->path, err, req->id);
        return s_reject (req, 400, X_MALFORMED, "malformed webhook\n");
    }
    rc = s_store_and_answer (req, events, count, "text/plain; charset=utf-8", "");
    sb_meta_events_free (&events, count);
    return rc;
}

// --------------------------------------------------------------------------
//  Health and metrics

static int
s_handle_health (s_req_t *req)
{
    const char *method = req->info->request_method;
    if (strcmp (method, "GET") != 0 && strcmp (method, "HEAD") != 0)
        return s_reject (req, 405, X_BAD_METHOD, "method not allowed\n");
    if (req->route == R_HEALTHZ) {
        s_respond_text (req, 200, "ok\n");
        return 200;
    }
    if (req->route == R_READYZ) {
        if (sb_writer_ready (req->http->writer)) {
            s_respond_text (req, 200, "ready\n");
            return 200;
        }
        s_respond_text (req, 503, "not ready: the journal is not writable\n");
        return 503;
    }
    sb_metric_set (req->http->m_inflight, atomic_load (&req->http->inflight));
    char *text = sb_metrics_render (req->http->metrics);
    if (!text) {
        s_respond_text (req, 500, "out of memory\n");
        return 500;
    }
    s_respond (req, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen (text));
    free (text);
    return 200;
}

// --------------------------------------------------------------------------
//  civetweb callbacks

static s_route_t
s_route (sb_http_t *http, const char *path)
{
    //  Routes answer under the prefix and without it (for proxies that
    //  strip it; see README "Behind a proxy").
    const char *rest = path;
    if (http->prefix_len && strncmp (path, http->prefix, http->prefix_len) == 0
        && path[http->prefix_len] == '/')
        rest = path + http->prefix_len;
    for (int r = 0; r < R_UNKNOWN; r++)
        if (strcmp (rest, s_routes[r].path) == 0)
            return (s_route_t) r;
    return R_UNKNOWN;
}

//  Why a request's framing is ambiguous, or NULL. civetweb frames by the
//  first Transfer-Encoding, else by the first Content-Length (read with
//  strtoll, so "+12" and "12abc" pass), and ignores headers past its 64th;
//  a proxy in front that frames otherwise (by Content-Length, say) would
//  see other requests in the same bytes: request smuggling.
static const char *
s_framing_error (const struct mg_request_info *info)
{
    if (info->num_headers >= MG_MAX_HEADERS)
        return "too many headers";
    const char *length = NULL, *encoding = NULL;
    for (int i = 0; i < info->num_headers; i++) {
        const char *name = info->http_headers[i].name;
        const char *value = info->http_headers[i].value;
        if (strcasecmp (name, "Transfer-Encoding") == 0) {
            if (encoding)
                return "repeated Transfer-Encoding";
            encoding = value;
        }
        else if (strcasecmp (name, "Content-Length") == 0) {
            size_t digits = strspn (value, "0123456789");
            if (digits == 0 || digits > 18 || value[digits])
                return "Content-Length is not a plain decimal";
            if (length && strcmp (length, value) != 0)
                return "Content-Length values differ";
            length = value;
        }
    }
    if (encoding && length)
        return "both Content-Length and Transfer-Encoding";
    if (encoding && strcasecmp (encoding, "chunked") != 0)
        return "Transfer-Encoding other than chunked";
    return NULL;
}

//  400 without reading a byte more (where the body ends is the question),
//  and close the connection.
static int
s_refuse_framing (s_req_t *req, const char *why)
{
    req->body_drained = true;
    req->closing = true;
    mg_disable_connection_keep_alive (req->conn);
    sb_info ("http", "ambiguous framing reason=\"%s\" remote=%s request_id=%s", why,
             req->info->remote_addr, req->id);
    return s_reject (req, 400, X_FRAMING, "bad request: ambiguous message framing\n");
}

static int
s_begin_request (struct mg_connection *conn)
{
    sb_http_t *http = (sb_http_t *) mg_get_user_data (mg_get_context (conn));
    s_thread_t *thread = (s_thread_t *) mg_get_thread_pointer (conn);
    assert (thread);
    //  What this request allocates and frees before it returns comes from
    //  this scratch (docs/internals.md, "Memory").
    alignas (16) char scratch[S_SCRATCH_SIZE];
    sb_scratch_begin (scratch, sizeof scratch);
    s_req_t req = {
        .conn = conn,
        .info = mg_get_request_info (conn),
        .http = http,
        .thread = thread,
        .started_us = sb_time_mono_us (),
    };
    s_random_id (thread, req.id);
    req.path = req.info->local_uri_raw ? req.info->local_uri_raw : req.info->local_uri;
    if (!req.path)
        req.path = "";
    req.route = s_route (http, req.path);
    s_check_conn_info (http, thread, conn, req.info);
    int rc;
    atomic_fetch_add (&http->inflight, 1);
    const char *framing = s_framing_error (req.info);
    switch (framing ? R_COUNT : req.route) {  //  R_COUNT: no route before the framing is sound
        case R_COUNT: rc = s_refuse_framing (&req, framing); break;
        case R_TWILIO_MESSAGES:
        case R_TWILIO_STATUS:
        case R_TWILIO_VOICE:
        case R_TWILIO_GATHER: rc = s_handle_twilio (&req); break;
        case R_META_WHATSAPP: rc = s_handle_meta (&req); break;
        case R_HEALTHZ:
        case R_READYZ:
        case R_METRICS: rc = s_handle_health (&req); break;
        default: rc = s_reject (&req, 404, X_NOT_FOUND, "not found\n"); break;
    }
    atomic_fetch_sub (&http->inflight, 1);
    s_deadline_next (thread);
    sb_scratch_free (req.body);
    sb_debug ("http", "request done scratch_bytes=%zu scratch_spills=%zu request_id=%s",
              sb_scratch_used (scratch), sb_scratch_spills (scratch), req.id);
    sb_scratch_end (scratch);
    return rc;
}

static void *
s_init_thread (const struct mg_context *ctx, int thread_type)
{
    if (thread_type != 1)
        return NULL;
    s_thread_t *thread = calloc (1, sizeof *thread);
    if (thread)
        thread->fd = -1;
    if (!thread)
        return NULL;
    thread->http = (sb_http_t *) mg_get_user_data (ctx);
    if (getrandom (&thread->rng, sizeof thread->rng, 0) != sizeof thread->rng)
        thread->rng = (uint64_t) sb_time_mono_us () ^ (uint64_t) (uintptr_t) thread;
    thread->rng |= 1;
    //  This thread's stack bounds, for s_connection_close (without them
    //  nothing is released).
    pthread_attr_t attr;
    if (pthread_getattr_np (pthread_self (), &attr) == 0) {
        void *lo;
        size_t size;
        if (pthread_attr_getstack (&attr, &lo, &size) == 0) {
            thread->stack_lo = (char *) lo;
            thread->stack_hi = (char *) lo + size;
        }
        pthread_attr_destroy (&attr);
    }
    long page = sysconf (_SC_PAGESIZE);
    thread->page = page > 0 ? (size_t) page : 4096;
    //  A slot for the per-address count and the watchdog.
    sb_http_t *http = thread->http;
    pthread_mutex_lock (&http->conn_lock);
    if (http->workers_count < http->workers_max)
        http->workers[http->workers_count++] = thread;
    pthread_mutex_unlock (&http->conn_lock);
    return thread;
}

//  Stack kept below the releasing frame: this frame's page and the next
//  one, which also hold madvise's own frame while it runs.
#define S_STACK_SLACK_PAGES 2

//  civetweb's connection_close, called on the worker thread that served
//  the connection, before it waits for the next one. Gives back the stack
//  pages below this frame, where nothing is live: MADV_DONTNEED drops
//  them, and the next deep call gets zero-filled ones. What it buys and
//  its rules: docs/internals.md, "Memory".
static void
s_connection_close (const struct mg_connection *conn)
{
    s_thread_t *thread = (s_thread_t *) mg_get_thread_pointer (conn);
    if (thread)
        s_conn_forget (thread->http, thread);
    char *frame = (char *) __builtin_frame_address (0);
    //  Only a worker thread's own stack, and only when called on it (a
    //  connection closed by another thread, at shutdown, is left alone).
    if (!thread || !thread->stack_lo || frame <= thread->stack_lo || frame >= thread->stack_hi)
        return;
    uintptr_t top =
        ((uintptr_t) frame & ~(uintptr_t) (thread->page - 1)) - S_STACK_SLACK_PAGES * thread->page;
    if (top <= (uintptr_t) thread->stack_lo)
        return;
    //  Advice only: if the kernel refuses, the pages stay resident.
    madvise (thread->stack_lo, top - (uintptr_t) thread->stack_lo, MADV_DONTNEED);
}

static void
s_exit_thread (const struct mg_context *ctx, int thread_type, void *pointer)
{
    s_thread_t *thread = (s_thread_t *) pointer;
    if (!thread)
        return;
    sb_http_t *http = thread->http;
    pthread_mutex_lock (&http->conn_lock);
    for (size_t i = 0; i < http->workers_count; i++)
        if (http->workers[i] == thread) {
            http->workers[i] = http->workers[--http->workers_count];
            break;
        }
    pthread_mutex_unlock (&http->conn_lock);
    sb_writer_client_destroy (&thread->client);
    free (thread);
}

static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    //  civetweb's own messages (timeouts, client errors) are debug detail.
    sb_debug ("civetweb", "%s", message);
    return 1;
}

// --------------------------------------------------------------------------

static void
s_register_metrics (sb_http_t *self)
{
    for (int r = 0; r < R_COUNT; r++)
        for (size_t c = 0; c < S_CODES; c++) {
            char labels[96];
            snprintf (labels, sizeof labels, "route=\"%s\",code=\"%d\"", s_routes[r].name,
                      s_codes[c]);
            self->m_requests[r][c] =
                sb_metrics_counter (self->metrics, "sb_http_requests_total",
                                    "HTTP requests by route and status", labels);
        }
    static const char *providers[2] = {"twilio", "meta"};
    for (int p = 0; p < 2; p++)
        for (int why = 1; why < SB_SIG_COUNT; why++) {
            char labels[96];
            snprintf (labels, sizeof labels, "provider=\"%s\",reason=\"%s\"", providers[p],
                      sb_sig_reason ((sb_sig_result_t) why));
            self->m_sig_fail[p][why] =
                sb_metrics_counter (self->metrics, "sb_signature_failures_total",
                                    "Webhooks refused with 403 by provider and reason", labels);
        }
    for (int x = 0; x < X_COUNT; x++) {
        char labels[64];
        snprintf (labels, sizeof labels, "reason=\"%s\"", s_reject_names[x]);
        self->m_rejected[x] =
            sb_metrics_counter (self->metrics, "sb_rejected_requests_total",
                                "Requests refused before the journal, by reason", labels);
    }
    static const double bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1};
    self->m_latency = sb_metrics_histogram (self->metrics, "sb_webhook_seconds",
                                            "Time from request to durable answer", NULL, bounds,
                                            sizeof bounds / sizeof bounds[0]);
    self->m_inflight =
        sb_metrics_gauge (self->metrics, "sb_http_inflight", "Requests being handled", NULL);
    self->m_refused_conns = sb_metrics_counter (
        self->metrics, "sb_http_refused_connections_total",
        "Connections closed at once: their address held SB_HTTP_MAX_CONN_PER_IP already", NULL);
    self->m_deadline_cuts = sb_metrics_counter (
        self->metrics, "sb_http_deadline_cuts_total",
        "Requests cut off: not received whole within SB_HTTP_REQUEST_TIMEOUT_MS", NULL);
}

//  civetweb's init_ssl: our certificate and key on its SSL_CTX, and our
//  info callback in place of civetweb's (which does nothing), so that a
//  connection is taken up when its handshake starts (s_tls_info).
static int
s_init_ssl (void *ssl_ctx, void *user_data)
{
    sb_http_t *self = (sb_http_t *) user_data;
    if (!self->tls)
        return 0;
    int rc = sb_tls_setup_ctx (self->tls, ssl_ctx);
    if (rc == 1)
        SSL_CTX_set_info_callback ((SSL_CTX *) ssl_ctx, s_tls_info);
    return rc;
}

sb_http_t *
sb_http_new (const sb_config_t *config, sb_writer_t *writer, sb_metrics_t *metrics)
{
    sb_http_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->writer = writer;
    self->metrics = metrics;
    self->prefix = strdup (sb_config_str (config, SB_CFG_SB_PATH_PREFIX));
    self->prefix_len = self->prefix ? strlen (self->prefix) : 0;
    self->skip_signatures = sb_config_bool (config, SB_CFG_SB_INSECURE_SKIP_SIGNATURES);
    self->meta_secret = sb_config_dup (config, SB_CFG_META_APP_SECRET);
    self->meta_verify = sb_config_dup (config, SB_CFG_META_VERIFY_TOKEN);
    self->ingress_id = strdup (sb_config_str (config, SB_CFG_SB_INGRESS_ID));
    self->max_body = (size_t) sb_config_int (config, SB_CFG_SB_MAX_BODY);
    atomic_init (&self->last_unconfigured_log, 0);
    atomic_init (&self->inflight, 0);
    atomic_init (&self->info_wrong, false);
    self->request_timeout_us = sb_config_int (config, SB_CFG_SB_HTTP_REQUEST_TIMEOUT_MS) * 1000;
    self->keepalive_timeout_us = sb_config_int (config, SB_CFG_SB_HTTP_KEEPALIVE_TIMEOUT_MS) * 1000;
    self->max_conn_per_ip = (int) sb_config_int (config, SB_CFG_SB_HTTP_MAX_CONN_PER_IP);
    self->miss_log = (sb_log_every_t) SB_LOG_EVERY (1000);
    atomic_init (&self->refused_log_us, 0);
    atomic_init (&self->refused_held, 0);
    struct rlimit nofile;
    self->fd_limit = getrlimit (RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < INT_MAX
                         ? (int) nofile.rlim_cur
                         : INT_MAX;
    self->workers_max = (size_t) sb_config_int (config, SB_CFG_SB_HTTP_THREADS);
    //  Connection descriptors come after the ones open now, at most a pool
    //  and a queue of them, plus a slack for the process's own (journal
    //  segments, ZeroMQ sockets) opened meanwhile.
    self->fd_slack =
        (int) (self->workers_max + (size_t) sb_config_int (config, SB_CFG_SB_HTTP_QUEUE))
        + S_FD_SLACK;
    int lowest_free = fcntl (0, F_DUPFD_CLOEXEC, 0);
    if (lowest_free >= 0)
        close (lowest_free);
    atomic_init (&self->fd_high, lowest_free > 0 ? lowest_free : 0);
    self->workers = calloc (self->workers_max, sizeof *self->workers);
    if (!self->prefix || !self->ingress_id || !self->workers
        || pthread_mutex_init (&self->conn_lock, NULL) != 0)
        goto fail;
    self->conn_lock_ready = true;
    if (!(self->twilio = sb_twilio_http_new (config)))
        goto fail;
    s_register_metrics (self);

    //  HTTPS when SB_TLS_CERT and SB_TLS_KEY are set: civetweb marks a TLS
    //  port with a trailing "s"; the certificate goes in by init_ssl.
    if (sb_tls_wanted (config) && !(self->tls = sb_tls_new (config, metrics)))
        goto fail;
    char listen[300];
    snprintf (listen, sizeof listen, "%s%s", sb_config_str (config, SB_CFG_SB_LISTEN),
              self->tls ? "s" : "");
    char threads[16], request_timeout[16], keepalive_timeout[16], queue[16];
    snprintf (threads, sizeof threads, "%" PRId64, sb_config_int (config, SB_CFG_SB_HTTP_THREADS));
    snprintf (request_timeout, sizeof request_timeout, "%" PRId64,
              sb_config_int (config, SB_CFG_SB_HTTP_REQUEST_TIMEOUT_MS));
    snprintf (keepalive_timeout, sizeof keepalive_timeout, "%" PRId64,
              sb_config_int (config, SB_CFG_SB_HTTP_KEEPALIVE_TIMEOUT_MS));
    snprintf (queue, sizeof queue, "%" PRId64, sb_config_int (config, SB_CFG_SB_HTTP_QUEUE));
    //  civetweb options, a name and its value a line: laid out by hand, clang-format leaves it
    // clang-format off
    const char *options[] = {
        "listening_ports", listen,
        "num_threads", threads,
        "request_timeout_ms", request_timeout,
        "keep_alive_timeout_ms", keepalive_timeout,
        "enable_keep_alive", "yes",
        "connection_queue", queue,
        "listen_backlog", "1024",
        "decode_url", "no",
        "tcp_nodelay", "1",
        //  TLS 1.2 and later (4); without TLS the list ends here.
        self->tls ? "ssl_protocol_version" : NULL, "4",
        NULL};
    // clang-format on
    struct mg_callbacks callbacks = {0};
    callbacks.begin_request = s_begin_request;
    callbacks.init_thread = s_init_thread;
    callbacks.exit_thread = s_exit_thread;
    callbacks.connection_close = s_connection_close;
    callbacks.init_connection = s_init_connection;
    callbacks.log_message = s_log_message;
    if (self->tls)
        callbacks.init_ssl = s_init_ssl;
    struct mg_init_data init = {&callbacks, self, options};
    //  The watchdog before the server: once it serves, /healthz says the
    //  ingress is up (and a signal may come).
    self->watchdog = sb_actor_new (s_watchdog, self);
    if (!self->watchdog) {
        sb_error ("http", "cannot start the request watchdog");
        goto fail;
    }
    char error_text[256] = "";
    struct mg_error_data error = {NULL, error_text, sizeof error_text};
    self->ctx = mg_start2 (&init, &error);
    if (!self->ctx) {
        sb_error ("http", "cannot start the HTTP server listen=%s error=\"%s\"",
                  sb_config_str (config, SB_CFG_SB_LISTEN), error_text);
        goto fail;
    }
    struct mg_server_port ports[4];
    int n = mg_get_server_ports (self->ctx, 4, ports);
    int port = n > 0 ? ports[0].port : 0;
    sb_info ("http",
             "listening listen=%s port=%d tls=%s threads=%s request_timeout_ms=%s "
             "keepalive_timeout_ms=%s max_conn_per_ip=%d prefix=\"%s\"",
             sb_config_str (config, SB_CFG_SB_LISTEN), port, self->tls ? "on" : "off", threads,
             request_timeout, keepalive_timeout, self->max_conn_per_ip, self->prefix);
    return self;
fail:
    sb_http_destroy (&self);
    return NULL;
}

void
sb_http_destroy (sb_http_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    sb_http_t *self = *self_p;
    //  The watchdog first: it looks at the workers mg_stop ends.
    zactor_destroy (&self->watchdog);
    if (self->ctx)
        mg_stop (self->ctx);
    free (self->workers);
    if (self->conn_lock_ready)
        pthread_mutex_destroy (&self->conn_lock);
    sb_tls_destroy (&self->tls);
    sb_twilio_http_destroy (&self->twilio);
    free (self->prefix);
    //  Secrets do not linger in freed memory.
    if (self->meta_secret)
        OPENSSL_cleanse (self->meta_secret, strlen (self->meta_secret));
    if (self->meta_verify)
        OPENSSL_cleanse (self->meta_verify, strlen (self->meta_verify));
    free (self->meta_secret);
    free (self->meta_verify);
    free (self->ingress_id);
    free (self);
    *self_p = NULL;
}

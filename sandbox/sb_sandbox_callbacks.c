/*  sb_sandbox_callbacks: the status callbacks the sandbox posts after each
    accepted send ("sent" then "delivered"), to the ingress named by
    --callbacks.

    The API handlers build each message's callbacks as a chain (the bodies
    and signatures come from sb_sandbox_twilio.c and sb_sandbox_meta.c) and
    queue it; one background thread posts them with libcurl's multi
    interface, up to S_CONCURRENCY at a time. A message's second callback
    is queued only when its first has been answered, so they arrive in
    order.

    Limits: callbacks are not retried when the ingress does not take them
    (logged as a warning); each has S_TIMEOUT_MS in all. On stop, what is in
    flight or waiting is abandoned.
*/
#include <stdlib.h>
#include <string.h>

#include "sb_log.h"
#include "sb_sandbox.h"
#include "sb_time.h"

#define S_CONCURRENCY 16    //  callbacks in flight at once
#define S_TIMEOUT_MS 10000  //  total time of one callback

//  One status callback to post; `then` is posted after it is answered.
struct sb_sandbox_callback_t {
    sb_sandbox_callback_t *next;  //  queue
    sb_sandbox_callback_t *then;  //  the next status of the same message
    int64_t due;                  //  monotonic ms when it may be posted
    char *url;                    //  where to POST
    char *body;                   //  exact bytes
    struct curl_slist *headers;   //  Content-Type and signature
    char *what;                   //  for logs: "twilio sent SM..."
    char error[CURL_ERROR_SIZE];  //  libcurl's detail on failure
};

void
sb_sandbox_callback_destroy (sb_sandbox_callback_t **callback_p)
{
    sb_sandbox_callback_t *callback = *callback_p;
    while (callback) {
        sb_sandbox_callback_t *then = callback->then;
        free (callback->url);
        free (callback->body);
        free (callback->what);
        curl_slist_free_all (callback->headers);
        free (callback);
        callback = then;
    }
    *callback_p = NULL;
}

sb_sandbox_callback_t *
sb_sandbox_callback_new (const char *url, char *body, const char *content_type,
                         const char *sig_name, const char *sig_value, const char *what)
{
    sb_sandbox_callback_t *callback = calloc (1, sizeof *callback);
    if (!callback) {
        free (body);
        return NULL;
    }
    callback->body = body;
    callback->url = strdup (url);
    callback->what = strdup (what);
    char line[160];
    snprintf (line, sizeof line, "Content-Type: %s", content_type);
    struct curl_slist *headers = curl_slist_append (NULL, line);
    if (headers && sig_value) {
        snprintf (line, sizeof line, "%s: %s", sig_name, sig_value);
        struct curl_slist *more = curl_slist_append (headers, line);
        if (more)
            headers = more;
        else {
            curl_slist_free_all (headers);
            headers = NULL;
        }
    }
    if (headers) {
        struct curl_slist *more = curl_slist_append (headers, "Expect:");
        if (more)
            headers = more;
    }
    callback->headers = headers;
    if (!callback->body || !callback->url || !callback->what || !callback->headers)
        sb_sandbox_callback_destroy (&callback);
    return callback;
}

sb_sandbox_callback_t *
sb_sandbox_callback_then (sb_sandbox_callback_t *last, sb_sandbox_callback_t *next)
{
    if (last)
        last->then = next;
    return next;
}

//  The delay is the same for all, so the queue stays in order of due time.
void
sb_sandbox_callback_queue (sb_sandbox_t *self, sb_sandbox_callback_t *callback)
{
    if (!callback)
        return;
    callback->due = sb_time_mono_ms () + self->callback_delay_ms;
    pthread_mutex_lock (&self->lock);
    if (self->queue_tail)
        self->queue_tail->next = callback;
    else
        self->queue = callback;
    self->queue_tail = callback;
    pthread_mutex_unlock (&self->lock);
    curl_multi_wakeup (self->multi);
}

//  Discard answers: only the status matters.
static size_t
s_discard (char *data, size_t size, size_t count, void *arg)
{
    (void) data;
    (void) arg;
    return size * count;
}

//  Start posting a callback. Returns its easy handle, or NULL (then the
//  callback and its chain are dropped, logged).
static CURL *
s_callback_start (sb_sandbox_t *self, sb_sandbox_callback_t *callback)
{
    CURL *easy = curl_easy_init ();
    if (!easy || curl_easy_setopt (easy, CURLOPT_URL, callback->url) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, (long) S_TIMEOUT_MS) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_USERAGENT, "TwilioProxy/1.1") != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_HTTPHEADER, callback->headers) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_POSTFIELDS, callback->body) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t) strlen (callback->body))
               != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_discard) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, callback->error) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_PRIVATE, callback) != CURLE_OK
        || curl_multi_add_handle (self->multi, easy) != CURLM_OK) {
        sb_warn (SB_SANDBOX_MODULE, "callback not sent: cannot start a transfer what=\"%s\"",
                 callback->what);
        if (easy)
            curl_easy_cleanup (easy);
        sb_sandbox_callback_destroy (&callback);
        return NULL;
    }
    return easy;
}

static void *
s_callback_thread (void *arg)
{
    sb_sandbox_t *self = arg;
    CURL *active[S_CONCURRENCY];  //  transfers in flight
    size_t n_active = 0;

    while (!atomic_load (&self->stopping)) {
        //  Take the callbacks that are due, up to the bound, and start them.
        sb_sandbox_callback_t *due = NULL;
        int64_t now = sb_time_mono_ms ();
        int64_t next_due = now + 100;
        size_t taking = n_active;
        pthread_mutex_lock (&self->lock);
        while (self->queue && self->queue->due <= now && taking < S_CONCURRENCY) {
            sb_sandbox_callback_t *callback = self->queue;
            self->queue = callback->next;
            if (!self->queue)
                self->queue_tail = NULL;
            callback->next = due;
            due = callback;
            taking++;
        }
        if (self->queue && self->queue->due < next_due)
            next_due = self->queue->due;
        pthread_mutex_unlock (&self->lock);
        while (due) {
            sb_sandbox_callback_t *callback = due;
            due = callback->next;
            callback->next = NULL;
            CURL *easy = s_callback_start (self, callback);
            if (easy)
                active[n_active++] = easy;
        }
        int running = 0;
        curl_multi_perform (self->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read (self->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *easy = msg->easy_handle;
            CURLcode code = msg->data.result;
            char *private = NULL;
            curl_easy_getinfo (easy, CURLINFO_PRIVATE, &private);
            sb_sandbox_callback_t *callback = (sb_sandbox_callback_t *) private;
            long status = 0;
            curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle (self->multi, easy);
            curl_easy_cleanup (easy);
            for (size_t i = 0; i < n_active; i++)
                if (active[i] == easy) {
                    active[i] = active[--n_active];
                    break;
                }
            if (code != CURLE_OK)
                sb_warn (SB_SANDBOX_MODULE, "callback failed what=\"%s\" url=%s error=\"%s\"",
                         callback->what, callback->url,
                         *callback->error ? callback->error : curl_easy_strerror (code));
            else if (status < 200 || status > 299)
                sb_warn (SB_SANDBOX_MODULE, "callback refused what=\"%s\" url=%s http=%ld",
                         callback->what, callback->url, status);
            else
                sb_debug (SB_SANDBOX_MODULE, "callback delivered what=\"%s\" http=%ld",
                          callback->what, status);
            //  The next status of the same message goes once this one is answered.
            sb_sandbox_callback_t *then = callback->then;
            callback->then = NULL;
            sb_sandbox_callback_destroy (&callback);
            sb_sandbox_callback_queue (self, then);
        }
        now = sb_time_mono_ms ();
        int wait_ms = next_due > now ? (int) (next_due - now) : 0;
        if (wait_ms > 100 || n_active == S_CONCURRENCY)
            wait_ms = 100;
        curl_multi_poll (self->multi, NULL, 0, wait_ms, NULL);
    }
    //  Stopping: abandon what is in flight or waiting.
    for (size_t i = 0; i < n_active; i++) {
        char *private = NULL;
        curl_easy_getinfo (active[i], CURLINFO_PRIVATE, &private);
        sb_sandbox_callback_t *callback = (sb_sandbox_callback_t *) private;
        curl_multi_remove_handle (self->multi, active[i]);
        curl_easy_cleanup (active[i]);
        sb_sandbox_callback_destroy (&callback);
    }
    return NULL;
}

int
sb_sandbox_callbacks_start (sb_sandbox_t *self)
{
    if (pthread_create (&self->thread, NULL, s_callback_thread, self) != 0) {
        sb_error (SB_SANDBOX_MODULE, "cannot start the callback thread");
        return -1;
    }
    self->thread_started = true;
    return 0;
}

void
sb_sandbox_callbacks_stop (sb_sandbox_t *self)
{
    if (self->thread_started) {
        curl_multi_wakeup (self->multi);
        pthread_join (self->thread, NULL);
        self->thread_started = false;
    }
    while (self->queue) {
        sb_sandbox_callback_t *callback = self->queue;
        self->queue = callback->next;
        sb_sandbox_callback_destroy (&callback);
    }
    self->queue_tail = NULL;
}

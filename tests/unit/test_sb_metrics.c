/*  test_sb_metrics: registration, lock-free updates from many threads, and
    the Prometheus text. Silent on success.
*/
#include "sb_metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_log.h"

#define SB_CHECK_FAILED() exit (1)
#include "sb_check.h"

//  text has this exact line.
#define CHECK_LINE(text, line)                                                                     \
    do {                                                                                           \
        if (s_count_lines (text, line) != 1) {                                                     \
            fprintf (stderr, "%s:%d: expected the line once: %s\n---- text ----\n%s", __FILE__,    \
                     __LINE__, line, text);                                                        \
            exit (1);                                                                              \
        }                                                                                          \
    } while (0)

static int
s_count_lines (const char *text, const char *line)
{
    int count = 0;
    size_t len = strlen (line);
    for (const char *p = text; *p;) {
        const char *end = strchr (p, '\n');
        size_t n = end ? (size_t) (end - p) : strlen (p);
        if (n == len && memcmp (p, line, n) == 0)
            count++;
        p += n + (end ? 1 : 0);
    }
    return count;
}

//  Lines starting with prefix.
static int
s_count_prefix (const char *text, const char *prefix)
{
    int count = 0;
    size_t len = strlen (prefix);
    for (const char *p = text; p && *p; p = strchr (p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp (p, prefix, len) == 0)
            count++;
    return count;
}

#define THREADS 8
#define ROUNDS 20000

static const double s_bounds[] = {0.005, 0.1, 1, 2.5, 10};

typedef struct {
    sb_metrics_t *metrics;  //  shared registry
    int index;              //  0..THREADS-1
    int failed;             //  line of a failed check
} s_worker_t;

static void *
s_work (void *arg)
{
    s_worker_t *worker = arg;
    sb_metrics_t *metrics = worker->metrics;
    //  Registering concurrently gives every thread the same series.
    sb_metric_t *twilio = sb_metrics_counter (metrics, "sb_requests_total", "Requests handled.",
                                              "provider=\"twilio\"");
    sb_metric_t *meta =
        sb_metrics_counter (metrics, "sb_requests_total", "Requests handled.", "provider=\"meta\"");
    sb_metric_t *latency =
        sb_metrics_histogram (metrics, "sb_latency_seconds", "Latency.", NULL, s_bounds, 5);
    sb_metric_t *depth = sb_metrics_gauge (metrics, "sb_depth", "Queue depth.", NULL);
    char labels[32];
    snprintf (labels, sizeof labels, "thread=\"%d\"", worker->index);
    sb_metric_t *own = sb_metrics_counter (metrics, "sb_thread_total", "Per thread.", labels);
    if (!twilio || !meta || !latency || !depth || !own) {
        worker->failed = __LINE__;
        return NULL;
    }
    for (int i = 0; i < ROUNDS; i++) {
        sb_metric_add (twilio, 1);
        sb_metric_add (meta, 2);
        sb_metric_add (own, 1);
        sb_metric_add (depth, 1);
        //  Exact in binary, so the sum is exact: 0.25 -> le 1, 2 -> le 2.5,
        //  0.0625 -> le 0.1, 100 -> +Inf.
        sb_metric_observe (latency, (i % 4 == 0)   ? 0.25
                                    : (i % 4 == 1) ? 2
                                    : (i % 4 == 2) ? 0.0625
                                                   : 100);
        if (i % 1000 == 0) {
            char *text = sb_metrics_render (metrics);  //  while others update
            if (!text)
                worker->failed = __LINE__;
            free (text);
        }
    }
    return NULL;
}

static void
s_test_threads (void)
{
    sb_metrics_t *metrics = sb_metrics_new ();
    CHECK (metrics);
    pthread_t threads[THREADS];
    s_worker_t workers[THREADS];
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (s_worker_t){.metrics = metrics, .index = i};
        CHECK (pthread_create (&threads[i], NULL, s_work, &workers[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK (pthread_join (threads[i], NULL) == 0);
        CHECK (workers[i].failed == 0);
    }
    char *text = sb_metrics_render (metrics);
    CHECK (text);
    char line[128];
    snprintf (line, sizeof line, "sb_requests_total{provider=\"twilio\"} %d", THREADS * ROUNDS);
    CHECK_LINE (text, line);
    snprintf (line, sizeof line, "sb_requests_total{provider=\"meta\"} %d", 2 * THREADS * ROUNDS);
    CHECK_LINE (text, line);
    for (int i = 0; i < THREADS; i++) {
        snprintf (line, sizeof line, "sb_thread_total{thread=\"%d\"} %d", i, ROUNDS);
        CHECK_LINE (text, line);
    }
    snprintf (line, sizeof line, "sb_depth %d", THREADS * ROUNDS);
    CHECK_LINE (text, line);
    int quarter = THREADS * ROUNDS / 4;
    snprintf (line, sizeof line, "sb_latency_seconds_bucket{le=\"0.005\"} 0");
    CHECK_LINE (text, line);
    snprintf (line, sizeof line, "sb_latency_seconds_bucket{le=\"0.1\"} %d", quarter);
    CHECK_LINE (text, line);
    snprintf (line, sizeof line, "sb_latency_seconds_bucket{le=\"1\"} %d", 2 * quarter);
    CHECK_LINE (text, line);
    snprintf (line, sizeof line, "sb_latency_seconds_bucket{le=\"2.5\"} %d", 3 * quarter);
    CHECK_LINE (text, line);
    snprintf (line, sizeof line, "sb_latency_seconds_bucket{le=\"10\"} %d", 3 * quarter);
    CHECK_LINE (text, line);
    snprintf (line, sizeof line, "sb_latency_seconds_bucket{le=\"+Inf\"} %d", 4 * quarter);
    CHECK_LINE (text, line);
    snprintf (line, sizeof line, "sb_latency_seconds_count %d", 4 * quarter);
    CHECK_LINE (text, line);
    snprintf (line, sizeof line, "sb_latency_seconds_sum %d",
              (int) (quarter * (0.25 + 2 + 0.0625 + 100)));
    CHECK_LINE (text, line);
    //  One HELP and TYPE per name, however many series and threads.
    CHECK_LINE (text, "# HELP sb_requests_total Requests handled.");
    CHECK_LINE (text, "# TYPE sb_requests_total counter");
    CHECK_LINE (text, "# TYPE sb_thread_total counter");
    CHECK_LINE (text, "# TYPE sb_latency_seconds histogram");
    CHECK_LINE (text, "# TYPE sb_depth gauge");
    CHECK (s_count_prefix (text, "# HELP ") == 4);
    CHECK (s_count_prefix (text, "# TYPE ") == 4);
    CHECK (s_count_prefix (text, "sb_thread_total{") == THREADS);
    free (text);
    sb_metrics_destroy (&metrics);
    CHECK (metrics == NULL);
    sb_metrics_destroy (&metrics);
}

static void
s_test_registry (void)
{
    sb_log_init ("test", SB_LOG_OFF);  //  the refusals below log at error
    sb_metrics_t *metrics = sb_metrics_new ();
    CHECK (metrics);
    //  Same name and labels: same series. NULL labels and "" are the same.
    sb_metric_t *a1 = sb_metrics_counter (metrics, "sb_a_total", "A.", "x=\"1\"");
    sb_metric_t *plain = sb_metrics_counter (metrics, "sb_b_total", "B.", NULL);
    sb_metric_t *a2 = sb_metrics_counter (metrics, "sb_a_total", "A again.", "x=\"2\"");
    CHECK (a1 && plain && a2 && a1 != a2);
    CHECK (sb_metrics_counter (metrics, "sb_a_total", "A.", "x=\"1\"") == a1);
    CHECK (sb_metrics_counter (metrics, "sb_b_total", "B.", "") == plain);
    //  One name, one type; names are checked.
    CHECK (sb_metrics_gauge (metrics, "sb_a_total", "A.", "x=\"3\"") == NULL);
    CHECK (sb_metrics_counter (metrics, "9bad", "Bad.", NULL) == NULL);
    CHECK (sb_metrics_counter (metrics, "bad-name", "Bad.", NULL) == NULL);
    CHECK (sb_metrics_counter (metrics, "", "Bad.", NULL) == NULL);
    double descending[] = {2, 1};
    CHECK (sb_metrics_histogram (metrics, "sb_h", "H.", NULL, descending, 2) == NULL);

    sb_metric_add (a1, 5);
    sb_metric_add (a2, 7);
    sb_metric_add (plain, 1);
    CHECK (sb_metric_value (a1) == 5);
    //  A NULL metric (registration failed) is ignored.
    sb_metric_add (NULL, 1);
    sb_metric_set (NULL, 1);
    sb_metric_observe (NULL, 1);
    CHECK (sb_metric_value (NULL) == 0);

    sb_metric_t *gauge =
        sb_metrics_gauge (metrics, "sb_temperature", "Line one\nback\\slash.", "room=\"a\"");
    CHECK (gauge);
    sb_metric_set (gauge, -5);
    CHECK ((int64_t) sb_metric_value (gauge) == -5);
    sb_metric_t *bare = sb_metrics_histogram (metrics, "sb_bare", "No bounds.", NULL, NULL, 0);
    CHECK (bare);
    sb_metric_observe (bare, 1e9);
    sb_metric_observe (bare, 0.5);
    CHECK (sb_metric_value (bare) == 2);
    double bounds[] = {0.1, 1};
    sb_metric_t *h =
        sb_metrics_histogram (metrics, "sb_h_seconds", "H.", "route=\"meta\"", bounds, 2);
    CHECK (h);
    sb_metric_observe (h, 0.1);  //  le is inclusive
    sb_metric_observe (h, 0.5);
    sb_metric_observe (h, 5);

    char *text = sb_metrics_render (metrics);
    CHECK (text);
    const char *expect = "# HELP sb_a_total A.\n"
                         "# TYPE sb_a_total counter\n"
                         "sb_a_total{x=\"1\"} 5\n"
                         "sb_a_total{x=\"2\"} 7\n"
                         "# HELP sb_b_total B.\n"
                         "# TYPE sb_b_total counter\n"
                         "sb_b_total 1\n"
                         "# HELP sb_temperature Line one\\nback\\\\slash.\n"
                         "# TYPE sb_temperature gauge\n"
                         "sb_temperature{room=\"a\"} -5\n"
                         "# HELP sb_bare No bounds.\n"
                         "# TYPE sb_bare histogram\n"
                         "sb_bare_bucket{le=\"+Inf\"} 2\n"
                         "sb_bare_sum 1000000000.5\n"
                         "sb_bare_count 2\n"
                         "# HELP sb_h_seconds H.\n"
                         "# TYPE sb_h_seconds histogram\n"
                         "sb_h_seconds_bucket{route=\"meta\",le=\"0.1\"} 1\n"
                         "sb_h_seconds_bucket{route=\"meta\",le=\"1\"} 2\n"
                         "sb_h_seconds_bucket{route=\"meta\",le=\"+Inf\"} 3\n"
                         "sb_h_seconds_sum{route=\"meta\"} 5.6\n"
                         "sb_h_seconds_count{route=\"meta\"} 3\n";
    if (strcmp (text, expect) != 0) {
        fprintf (stderr, "%s:%d: render differs\n---- got ----\n%s---- expected ----\n%s", __FILE__,
                 __LINE__, text, expect);
        exit (1);
    }
    free (text);

    //  An empty registry renders as empty text.
    sb_metrics_t *empty = sb_metrics_new ();
    CHECK (empty);
    text = sb_metrics_render (empty);
    CHECK (text && *text == '\0');
    free (text);
    sb_metrics_destroy (&empty);
    sb_metrics_destroy (&metrics);
}

int
main (void)
{
    s_test_registry ();
    s_test_threads ();
    return 0;
}

/*  sb_metrics: counters, gauges and histograms, rendered in Prometheus text
    format (version 0.0.4).

    A registry is a list of series in registration order, guarded by a mutex
    that only registration and rendering take. Updates never lock: counters
    and gauges are C11 atomics, a histogram keeps one atomic count per bucket
    (not cumulative) and its sum as the bits of a double updated by
    compare-and-swap. These atomic counters are the shared state STYLE.md
    allows, held here rather than at file scope. Series are never removed
    before sb_metrics_destroy, so a series pointer stays valid until then.

    Rendering groups the series of one name under a single HELP and TYPE
    (the help of the first one registered), in the order names were first
    registered. A histogram's _count is the sum of its buckets as read, so
    +Inf always equals _count even while other threads observe; _sum is read
    separately and may be one observation apart.

    Limits: names must match [a-zA-Z_:][a-zA-Z0-9_:]*; labels are taken as
    written by our own code (label="value",...) and not checked beyond being
    single-line. A name registered with two types is refused (NULL). A
    histogram registered again with other bounds keeps its first bounds.
*/
#include "sb_metrics.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_log.h"

typedef enum { S_COUNTER, S_GAUGE, S_HISTOGRAM } s_type_t;

static const char *s_type_names[] = {"counter", "gauge", "histogram"};

struct sb_metric_t {
    sb_metric_t *next;          //  next series in registration order
    s_type_t type;              //  counter, gauge or histogram
    char *name;                 //  metric name
    char *help;                 //  help text, as given
    char *labels;               //  label text without braces, "" for none
    _Atomic uint64_t count;     //  counter value
    _Atomic int64_t gauge;      //  gauge value
    size_t nbounds;             //  histogram upper bounds, +Inf not included
    double *bounds;             //  ascending
    _Atomic uint64_t *buckets;  //  nbounds + 1 counts, last one +Inf; not cumulative
    _Atomic uint64_t sum_bits;  //  the sum of observations, a double's bits
};

struct sb_metrics_t {
    pthread_mutex_t lock;  //  guards the list, not the values
    sb_metric_t *head;     //  first series registered
    sb_metric_t *tail;     //  last series registered
};

sb_metrics_t *
sb_metrics_new (void)
{
    sb_metrics_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    if (pthread_mutex_init (&self->lock, NULL) != 0) {
        free (self);
        return NULL;
    }
    return self;
}

static void
s_metric_free (sb_metric_t *metric)
{
    free (metric->name);
    free (metric->help);
    free (metric->labels);
    free (metric->bounds);
    free ((void *) metric->buckets);
    free (metric);
}

void
sb_metrics_destroy (sb_metrics_t **self_p)
{
    sb_metrics_t *self = *self_p;
    if (!self)
        return;
    sb_metric_t *metric = self->head;
    while (metric) {
        sb_metric_t *next = metric->next;
        s_metric_free (metric);
        metric = next;
    }
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

static bool
s_name_valid (const char *name)
{
    if (!name || !*name)
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p > name && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static sb_metric_t *
s_register (sb_metrics_t *self, s_type_t type, const char *name, const char *help,
            const char *labels, const double *bounds, size_t nbounds)
{
    if (!self)
        return NULL;
    if (!labels)
        labels = "";
    if (!s_name_valid (name) || strchr (labels, '\n')) {
        sb_error ("metrics", "metric refused: bad name or labels name=%.100s", name ? name : "");
        return NULL;
    }
    for (size_t i = 0; i + 1 < nbounds; i++)
        if (!(bounds[i] < bounds[i + 1])) {
            sb_error ("metrics", "metric refused: bounds not ascending name=%s", name);
            return NULL;
        }
    pthread_mutex_lock (&self->lock);
    sb_metric_t *metric;
    for (metric = self->head; metric; metric = metric->next) {
        if (strcmp (metric->name, name) != 0)
            continue;
        if (metric->type != type) {
            sb_error ("metrics",
                      "metric refused: registered with another type name=%s type=%s "
                      "was=%s",
                      name, s_type_names[type], s_type_names[metric->type]);
            metric = NULL;
            goto done;
        }
        if (strcmp (metric->labels, labels) == 0)
            goto done;
    }
    metric = calloc (1, sizeof *metric);
    if (!metric)
        goto done;
    metric->type = type;
    metric->name = strdup (name);
    metric->help = strdup (help ? help : "");
    metric->labels = strdup (labels);
    atomic_init (&metric->count, 0);
    atomic_init (&metric->gauge, 0);
    atomic_init (&metric->sum_bits, 0);  //  0.0
    bool ok = metric->name && metric->help && metric->labels;
    if (ok && type == S_HISTOGRAM) {
        metric->nbounds = nbounds;
        metric->bounds = malloc ((nbounds ? nbounds : 1) * sizeof *metric->bounds);
        metric->buckets = malloc ((nbounds + 1) * sizeof *metric->buckets);
        ok = metric->bounds && metric->buckets;
        if (ok) {
            if (nbounds)
                memcpy (metric->bounds, bounds, nbounds * sizeof *bounds);
            for (size_t i = 0; i <= nbounds; i++)
                atomic_init (&metric->buckets[i], 0);
        }
    }
    if (!ok) {
        s_metric_free (metric);
        metric = NULL;
        goto done;
    }
    if (self->tail)
        self->tail->next = metric;
    else
        self->head = metric;
    self->tail = metric;
done:
    pthread_mutex_unlock (&self->lock);
    return metric;
}

sb_metric_t *
sb_metrics_counter (sb_metrics_t *self, const char *name, const char *help, const char *labels)
{
    return s_register (self, S_COUNTER, name, help, labels, NULL, 0);
}

sb_metric_t *
sb_metrics_gauge (sb_metrics_t *self, const char *name, const char *help, const char *labels)
{
    return s_register (self, S_GAUGE, name, help, labels, NULL, 0);
}

sb_metric_t *
sb_metrics_histogram (sb_metrics_t *self, const char *name, const char *help, const char *labels,
                      const double *bounds, size_t count)
{
    return s_register (self, S_HISTOGRAM, name, help, labels, bounds, count);
}

void
sb_metric_add (sb_metric_t *metric, uint64_t value)
{
    if (!metric)
        return;
    if (metric->type == S_COUNTER)
        atomic_fetch_add_explicit (&metric->count, value, memory_order_relaxed);
    else if (metric->type == S_GAUGE)
        atomic_fetch_add_explicit (&metric->gauge, (int64_t) value, memory_order_relaxed);
}

void
sb_metric_set (sb_metric_t *metric, int64_t value)
{
    if (!metric)
        return;
    if (metric->type == S_GAUGE)
        atomic_store_explicit (&metric->gauge, value, memory_order_relaxed);
    else if (metric->type == S_COUNTER)
        atomic_store_explicit (&metric->count, (uint64_t) value, memory_order_relaxed);
}

static double
s_bits_double (uint64_t bits)
{
    double value;
    memcpy (&value, &bits, sizeof value);
    return value;
}

static uint64_t
s_double_bits (double value)
{
    uint64_t bits;
    memcpy (&bits, &value, sizeof bits);
    return bits;
}

void
sb_metric_observe (sb_metric_t *metric, double value)
{
    if (!metric || metric->type != S_HISTOGRAM || isnan (value))
        return;
    size_t i = 0;
    while (i < metric->nbounds && !(value <= metric->bounds[i]))
        i++;
    atomic_fetch_add_explicit (&metric->buckets[i], 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit (&metric->sum_bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit (&metric->sum_bits, &old,
                                                   s_double_bits (s_bits_double (old) + value),
                                                   memory_order_relaxed, memory_order_relaxed))
        ;
}

uint64_t
sb_metric_value (const sb_metric_t *metric)
{
    if (!metric)
        return 0;
    if (metric->type == S_COUNTER)
        return atomic_load_explicit (&metric->count, memory_order_relaxed);
    if (metric->type == S_GAUGE)
        return (uint64_t) atomic_load_explicit (&metric->gauge, memory_order_relaxed);
    uint64_t total = 0;
    for (size_t i = 0; i <= metric->nbounds; i++)
        total += atomic_load_explicit (&metric->buckets[i], memory_order_relaxed);
    return total;
}

// ---------------------------------------------------------------------------
//  Rendering

typedef struct {
    char *data;   //  text so far, NUL-terminated
    size_t len;   //  bytes used, NUL not included
    size_t cap;   //  bytes allocated
    bool failed;  //  out of memory: the text is lost
} s_text_t;

static void s_printf (s_text_t *text, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_printf (s_text_t *text, const char *fmt, ...)
{
    if (text->failed)
        return;
    while (true) {
        va_list args;
        va_start (args, fmt);
        int n = vsnprintf (text->data + text->len, text->cap - text->len, fmt, args);
        va_end (args);
        if (n < 0) {
            text->failed = true;
            return;
        }
        if ((size_t) n < text->cap - text->len) {
            text->len += (size_t) n;
            return;
        }
        size_t cap = text->cap * 2;
        while (cap < text->len + (size_t) n + 1)
            cap *= 2;
        char *data = realloc (text->data, cap);
        if (!data) {
            text->failed = true;
            return;
        }
        text->data = data;
        text->cap = cap;
    }
}

//  HELP text escapes backslash and newline.
static void
s_help (s_text_t *text, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            s_printf (text, "\\\\");
        else if (*p == '\n')
            s_printf (text, "\\n");
        else
            s_printf (text, "%c", *p);
    }
}

//  The shortest text that reads back as the same double, written plainly
//  for exponents -4..20 and with an exponent otherwise (as Go's
//  strconv.FormatFloat 'g', -1 does for Prometheus); +Inf, -Inf, NaN.
static void
s_double (char *buf, size_t size, double value)
{
    if (isnan (value)) {
        snprintf (buf, size, "NaN");
        return;
    }
    if (isinf (value)) {
        snprintf (buf, size, value > 0 ? "+Inf" : "-Inf");
        return;
    }
    int digits = 1;
    for (; digits < 17; digits++) {
        snprintf (buf, size, "%.*e", digits - 1, value);
        if (strtod (buf, NULL) == value)
            break;
    }
    snprintf (buf, size, "%.*e", digits - 1, value);
    const char *e = strchr (buf, 'e');
    int exponent = e ? atoi (e + 1) : 0;
    if (exponent >= -4 && exponent < 21) {
        int decimals = digits - 1 - exponent;
        snprintf (buf, size, "%.*f", decimals > 0 ? decimals : 0, value);
    }
    else
        snprintf (buf, size, "%.*g", digits, value);
}

static void
s_series (s_text_t *text, const sb_metric_t *metric)
{
    const char *labels = metric->labels;
    bool any = *labels != '\0';
    if (metric->type == S_COUNTER)
        s_printf (text, "%s%s%s%s %llu\n", metric->name, any ? "{" : "", labels, any ? "}" : "",
                  (unsigned long long) atomic_load_explicit (&metric->count, memory_order_relaxed));
    else if (metric->type == S_GAUGE)
        s_printf (text, "%s%s%s%s %lld\n", metric->name, any ? "{" : "", labels, any ? "}" : "",
                  (long long) atomic_load_explicit (&metric->gauge, memory_order_relaxed));
    else {
        uint64_t cumulative = 0;
        char le[40];
        for (size_t i = 0; i <= metric->nbounds; i++) {
            cumulative += atomic_load_explicit (&metric->buckets[i], memory_order_relaxed);
            s_double (le, sizeof le, i < metric->nbounds ? metric->bounds[i] : INFINITY);
            s_printf (text, "%s_bucket{%s%sle=\"%s\"} %llu\n", metric->name, labels, any ? "," : "",
                      le, (unsigned long long) cumulative);
        }
        char sum[40];
        s_double (sum, sizeof sum,
                  s_bits_double (atomic_load_explicit (&metric->sum_bits, memory_order_relaxed)));
        s_printf (text, "%s_sum%s%s%s %s\n", metric->name, any ? "{" : "", labels, any ? "}" : "",
                  sum);
        s_printf (text, "%s_count%s%s%s %llu\n", metric->name, any ? "{" : "", labels,
                  any ? "}" : "", (unsigned long long) cumulative);
    }
}

char *
sb_metrics_render (sb_metrics_t *self)
{
    s_text_t text = {.data = malloc (4096), .cap = 4096};
    if (!text.data)
        return NULL;
    text.data[0] = '\0';
    pthread_mutex_lock (&self->lock);
    for (const sb_metric_t *metric = self->head; metric; metric = metric->next) {
        //  Only the first series of a name starts its group.
        const sb_metric_t *earlier = self->head;
        while (earlier != metric && strcmp (earlier->name, metric->name) != 0)
            earlier = earlier->next;
        if (earlier != metric)
            continue;
        s_printf (&text, "# HELP %s ", metric->name);
        s_help (&text, metric->help);
        s_printf (&text, "\n# TYPE %s %s\n", metric->name, s_type_names[metric->type]);
        for (const sb_metric_t *series = metric; series; series = series->next)
            if (strcmp (series->name, metric->name) == 0)
                s_series (&text, series);
    }
    pthread_mutex_unlock (&self->lock);
    if (text.failed) {
        free (text.data);
        sb_error ("metrics", "cannot render metrics: out of memory");
        return NULL;
    }
    return text.data;
}

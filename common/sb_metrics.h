/*  sb_metrics: counters, gauges and histograms rendered in Prometheus text
    format.

    Series are registered at start (or on first use, under a mutex) and then
    updated lock-free with atomics from any thread: the atomic counters are
    the third of the globals-like shared state STYLE.md allows, kept inside
    this object rather than at file scope.
*/
#ifndef SB_METRICS_H_INCLUDED
#define SB_METRICS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct sb_metrics_t sb_metrics_t;
typedef struct sb_metric_t sb_metric_t;

sb_metrics_t *sb_metrics_new (void);
void sb_metrics_destroy (sb_metrics_t **self_p);

//  The series name{labels}, registered once: the same name and labels give
//  the same series. labels is Prometheus label text, e.g.
//  provider="twilio",reason="missing", or NULL. NULL when out of memory.
sb_metric_t *sb_metrics_counter (sb_metrics_t *self, const char *name, const char *help,
                                 const char *labels);
sb_metric_t *sb_metrics_gauge (sb_metrics_t *self, const char *name, const char *help,
                               const char *labels);
//  A histogram with the given upper bounds (ascending, +Inf added).
sb_metric_t *sb_metrics_histogram (sb_metrics_t *self, const char *name, const char *help,
                                   const char *labels, const double *bounds, size_t count);

//  Update a series (a NULL metric is ignored).
void sb_metric_add (sb_metric_t *metric, uint64_t value);
void sb_metric_set (sb_metric_t *metric, int64_t value);
void sb_metric_observe (sb_metric_t *metric, double value);

//  Prometheus text exposition of every series. Caller owns the return value.
char *sb_metrics_render (sb_metrics_t *self);

//  ---- For tests: public so the unit tests reach them; no other module
//  calls them.

//  A counter's or gauge's value (the tests read series back; the services
//  only render them).
uint64_t sb_metric_value (const sb_metric_t *metric);

#endif

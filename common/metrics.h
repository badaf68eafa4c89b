/*
 * A small Prometheus registry: counters, gauges and histograms with up to
 * METRIC_LABELS_MAX labels, rendered in the text exposition format.  Each
 * process owns one; the children ship theirs to the supervisor as text in
 * their health answers.
 */
#ifndef RP_METRICS_H
#define RP_METRICS_H

#include <stddef.h>

#include "buf.h"

#define METRIC_LABELS_MAX 4
#define METRIC_PREFIX     "runner_provisioner_"

enum metric_type {
	METRIC_COUNTER,
	METRIC_GAUGE,
	METRIC_HISTOGRAM,
};

struct metrics;
struct metric_family;
struct metric_series;

/* metrics.c */
struct metrics *metrics_new(void);
void metrics_free(struct metrics *);
/* name gets METRIC_PREFIX prepended.  labels: NULL-terminated names or
 * NULL; buckets: histogram upper bounds, ascending (copied).  The family is
 * owned by the registry. */
struct metric_family *metrics_family(struct metrics *, enum metric_type,
    const char *name, const char *help, const char *const *labels,
    const double *buckets, size_t nbuckets);
/* The series for these label values (as many as the family has labels),
 * created at zero on first use; owned by the family, stable pointer. */
struct metric_series *metric_series(
    struct metric_family *, const char *const *values);
/* Removes the series from its family and frees it (a class that went
 * away); NULL is a no-op. */
void metric_series_drop(struct metric_series *);
/* Both ignore a NULL series (one a process does not report). */
void metric_inc(struct metric_series *, double);
void metric_set(struct metric_series *, double);
void metric_observe(struct metric_series *, double);
double metric_value(const struct metric_series *);
/* Convenience: family without labels → its only series. */
struct metric_series *metric_single(struct metric_family *);
void metrics_render(const struct metrics *, struct buf *);
/* Returns 0 if text is well-formed exposition text whose metric names all
 * start with METRIC_PREFIX (used on text received from a child). */
int metrics_text_valid(const char *text, size_t len);

#endif

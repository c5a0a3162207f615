/*
 * metrics.h - process-wide counters and histograms for GET /metrics,
 * rendered in the Prometheus text exposition format 0.0.4.
 *
 * The module owns four labeled families, each a table of series keyed by
 * its label values:
 *
 *   evhost_events_accepted_total{source,event_type}            counter
 *   evhost_events_refused_total{source,event_type,reason}      counter
 *   evhost_executions_total{workflow,status}                   counter
 *   evhost_step_duration_seconds{workflow,step,plugin}         histogram
 *   evhost_deliveries_total{subscription,status}               counter
 *   evhost_delivery_duration_seconds{subscription}             histogram
 *
 * one that watches the others:
 *
 *   evhost_metrics_series_overflow_total{metric}               counter
 *
 * and one gauge the notifier sets (notify.c):
 *
 *   evhost_deliveries_pending                                  gauge
 *
 * Updates are thread-safe and cheap: the label values are normalized into
 * stack buffers, hashed, and the series is found under the family's mutex.
 * Only the first update of a series allocates; none ever frees, except
 * metrics_reset.
 *
 * Cardinality is bounded.  A label value is cut to EVH_METRICS_LABEL_MAX_BYTES
 * bytes (never inside a UTF-8 sequence) and bytes that are not valid UTF-8
 * become '?'.  A family holds at most EVH_METRICS_MAX_SERIES series; an
 * update for a new label set beyond that goes to the family's overflow
 * series, whose free-form labels (source, event_type, workflow, step,
 * plugin) read METRICS_OTHER while the enumerated ones (reason, status)
 * keep their value, and is counted in evhost_metrics_series_overflow_total
 * (as is an update dropped because memory ran out for a new series).
 * METRICS_OTHER, "(other)", holds parentheses, which no plugin id, declared
 * event type, workflow id or step id may, so an overflow series never
 * merges with a real one.
 *
 * Gauges that are read from the host at scrape time (queue depth, plugins
 * by state, ...) are not kept here: the caller renders them after
 * metrics_render with metrics_write_header and metrics_write_sample.
 */
#ifndef EVH_METRICS_H
#define EVH_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "textbuf.h"

/* The value of free-form labels in a family's overflow series. */
#define METRICS_OTHER "(other)"

/* Why an event was not accepted (the reason label). */
typedef enum metrics_refusal {
    METRICS_REFUSED_QUEUE_FULL = 0, /* "queue_full": no room within the wait */
    METRICS_REFUSED_UNDECLARED_TYPE, /* "undeclared_type": not in eventTypes */
    METRICS_REFUSED_SCHEMA,          /* "schema": data fails the type's schema */
    METRICS_REFUSED_INVALID,         /* "invalid": bad metadata or arguments */
    METRICS_REFUSED_STOPPING,        /* "stopping": the host or the source stops */
    METRICS_REFUSED_INTERNAL,        /* "internal": not stored (database, memory) */
    METRICS_REFUSED_COUNT
} metrics_refusal;

const char *metrics_refusal_name(metrics_refusal r);

/* The refusal reason of an EVH_E_* status (anything unknown: internal). */
metrics_refusal metrics_refusal_of(int status);

/* ---- updates (thread-safe; NULL label values read as "") ------------------ */

void metrics_event_accepted(const char *source, const char *event_type);
void metrics_event_refused(const char *source, const char *event_type, metrics_refusal reason);
/* The outcome of one emit or ingest: EVH_OK counts as accepted,
 * EVH_E_DUPLICATE (a retried request, answered with the first event) as
 * nothing, any other status as refused for metrics_refusal_of(status). */
void metrics_event_outcome(const char *source, const char *event_type, int status);

/* One finished workflow execution. */
void metrics_execution(const char *workflow, int succeeded);

/* One step attempt that took `seconds` (negative or NaN counts as 0). */
void metrics_step_duration(const char *workflow, const char *step, const char *plugin,
                           double seconds);

/* One attempt to deliver an outbound webhook to subscription `subscription`
 * that took `seconds`; outcome (the status label): "delivered" (2xx),
 * "failed" (another attempt follows) or "dead" (no attempt left, or 410). */
void metrics_delivery(const char *subscription, const char *outcome, double seconds);

/* Deliveries not yet delivered or dead (pending or failed), as last counted. */
void metrics_deliveries_pending_set(int64_t n);

/* The upper bounds (le) of the step duration buckets, in seconds, before
 * the implicit +Inf. */
#define METRICS_STEP_BUCKETS                                                                  \
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
#define METRICS_STEP_BUCKET_COUNT 15

/* ---- rendering ------------------------------------------------------------- */

/* Append every family of the module: # HELP and # TYPE lines, then one
 * line per sample, series in label order.  0, or -1 when memory ran out. */
int metrics_render(textbuf *b);

/* For scrape-time families: "# HELP name help" and "# TYPE name type". */
void metrics_write_header(textbuf *b, const char *name, const char *type, const char *help);
/* name{names[0]="values[0]",...} value, label values escaped (and cut and
 * made valid UTF-8 as above); n may be 0. */
void metrics_write_sample(textbuf *b, const char *name, const char *const *names,
                          const char *const *values, size_t n, double value);

/* Forget every series and overflow count (tests).  Safe against
 * concurrent updates and renders. */
void metrics_reset(void);

#endif

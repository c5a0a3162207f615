/*
 * metrics.c - process-wide counters and histograms (see metrics.h).
 *
 * Each family is a fixed-size hash table of chained series under one mutex.
 * A series is one allocation: the node, its histogram buckets, and its label
 * values.  Rendering copies the values of every series under the family's
 * lock, then sorts and formats them without it, so a scrape holds an
 * update up for the time of a copy only.  Series are freed by metrics_reset
 * alone, which takes render_lock first: a render never sees a freed series.
 */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "evh_limits.h"

#define MAX_LABELS 3
#define HASH_SIZE 4096 /* buckets per family, a power of two */
/* Overflow series are few (one per value of the enumerated labels), but a
 * family never grows past this many beyond its cap, whatever the caller. */
#define OVERFLOW_SERIES_MAX 64
#define N_BUCKETS (METRICS_STEP_BUCKET_COUNT + 1) /* + the +Inf bucket */

static const double step_bounds[METRICS_STEP_BUCKET_COUNT] = {METRICS_STEP_BUCKETS};

typedef enum family_type { COUNTER, HISTOGRAM } family_type;

typedef struct series {
    struct series *next;
    uint64_t hash;
    uint64_t count;   /* a counter's value; a histogram's number of observations */
    double sum;       /* histogram: the sum of observations */
    uint64_t *bucket; /* histogram: N_BUCKETS counts, not cumulative; else NULL */
    const char *value[MAX_LABELS];
} series;

typedef struct family {
    const char *name, *help;
    family_type type;
    size_t n_labels;
    const char *label[MAX_LABELS];
    unsigned enumerated; /* bit i: label i takes values from a fixed set */
    pthread_mutex_t lock;
    size_t n_series;
    uint64_t overflowed; /* updates that went to the overflow series or were dropped */
    series *table[HASH_SIZE];
} family;

enum {
    F_ACCEPTED,
    F_REFUSED,
    F_EXECUTIONS,
    F_STEP_DURATION,
    F_DELIVERIES,
    F_DELIVERY_DURATION,
    F_COUNT
};

static family families[F_COUNT] = {
    [F_ACCEPTED] = {.name = "evhost_events_accepted_total",
                    .help = "Events accepted into the queue, by source plugin and event type.",
                    .type = COUNTER,
                    .n_labels = 2,
                    .label = {"source", "event_type"},
                    .lock = PTHREAD_MUTEX_INITIALIZER},
    [F_REFUSED] = {.name = "evhost_events_refused_total",
                   .help = "Events refused by emit or ingest, by source plugin, event type as "
                           "given, and reason.",
                   .type = COUNTER,
                   .n_labels = 3,
                   .label = {"source", "event_type", "reason"},
                   .enumerated = 1u << 2,
                   .lock = PTHREAD_MUTEX_INITIALIZER},
    [F_EXECUTIONS] = {.name = "evhost_executions_total",
                      .help = "Workflow executions finished, by workflow and final status.",
                      .type = COUNTER,
                      .n_labels = 2,
                      .label = {"workflow", "status"},
                      .enumerated = 1u << 1,
                      .lock = PTHREAD_MUTEX_INITIALIZER},
    [F_STEP_DURATION] = {.name = "evhost_step_duration_seconds",
                         .help = "Duration of each step attempt, by workflow, step and plugin.",
                         .type = HISTOGRAM,
                         .n_labels = 3,
                         .label = {"workflow", "step", "plugin"},
                         .lock = PTHREAD_MUTEX_INITIALIZER},
    [F_DELIVERIES] = {.name = "evhost_deliveries_total",
                      .help = "Outbound webhook delivery attempts, by subscription and outcome "
                              "(delivered, failed: another attempt follows, dead).",
                      .type = COUNTER,
                      .n_labels = 2,
                      .label = {"subscription", "status"},
                      .enumerated = 1u << 1,
                      .lock = PTHREAD_MUTEX_INITIALIZER},
    [F_DELIVERY_DURATION] = {.name = "evhost_delivery_duration_seconds",
                             .help = "Duration of each outbound webhook delivery attempt, by "
                                     "subscription.",
                             .type = HISTOGRAM,
                             .n_labels = 1,
                             .label = {"subscription"},
                             .lock = PTHREAD_MUTEX_INITIALIZER},
};

/* evhost_deliveries_pending, set by the notifier */
static _Atomic int64_t deliveries_pending;

static pthread_mutex_t render_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- label values ---------------------------------------------------------- */

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* beyond U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return len;
}

/* Copy v into out (EVH_METRICS_LABEL_MAX_BYTES + 1 bytes): cut at the limit
 * on a character boundary, invalid bytes as '?'. */
static void normalize(const char *v, char *out)
{
    size_t o = 0;
    if (v) {
        const unsigned char *s = (const unsigned char *)v;
        size_t n = strlen(v);
        for (size_t i = 0; i < n;) {
            if (s[i] < 0x80) { /* the common case: ASCII */
                if (o == EVH_METRICS_LABEL_MAX_BYTES)
                    break;
                out[o++] = (char)s[i++];
                continue;
            }
            size_t len = utf8_seq(s + i, n - i);
            if (o + (len ? len : 1) > EVH_METRICS_LABEL_MAX_BYTES)
                break;
            if (len == 0) {
                out[o++] = '?';
                i++;
            } else {
                memcpy(out + o, s + i, len);
                o += len;
                i += len;
            }
        }
    }
    out[o] = '\0';
}

typedef char label_text[EVH_METRICS_LABEL_MAX_BYTES + 1];

static uint64_t hash_values(const family *f, const char *const *v)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < f->n_labels; i++) {
        for (const unsigned char *p = (const unsigned char *)v[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ 0xFFu) * 1099511628211ULL; /* never in a value: they are UTF-8 */
    }
    return h;
}

static series *find_locked(const family *f, const char *const *v, uint64_t h)
{
    for (series *s = f->table[h & (HASH_SIZE - 1)]; s; s = s->next) {
        if (s->hash != h)
            continue;
        size_t i = 0;
        while (i < f->n_labels && !strcmp(s->value[i], v[i]))
            i++;
        if (i == f->n_labels)
            return s;
    }
    return NULL;
}

static series *insert_locked(family *f, const char *const *v, uint64_t h)
{
    size_t len[MAX_LABELS], total = 0;
    for (size_t i = 0; i < f->n_labels; i++) {
        len[i] = strlen(v[i]) + 1;
        total += len[i];
    }
    size_t nb = f->type == HISTOGRAM ? N_BUCKETS : 0;
    series *s = calloc(1, sizeof *s + nb * sizeof(uint64_t) + total);
    if (!s)
        return NULL;
    /* the buckets right after the node (aligned: sizeof *s is a multiple of
     * its alignment, which uint64_t's does not exceed), then the values */
    s->bucket = nb ? (uint64_t *)(void *)(s + 1) : NULL;
    char *text = (char *)(s + 1) + nb * sizeof(uint64_t);
    for (size_t i = 0; i < f->n_labels; i++) {
        memcpy(text, v[i], len[i]);
        s->value[i] = text;
        text += len[i];
    }
    s->hash = h;
    series **head = &f->table[h & (HASH_SIZE - 1)];
    s->next = *head;
    *head = s;
    f->n_series++;
    return s;
}

/* The series for these (normalized) values, whose hash is h, created when
 * new; past the cap the family's overflow series.  NULL when out of
 * memory.  Locked. */
static series *series_locked(family *f, const char *const *v, uint64_t h)
{
    series *s = find_locked(f, v, h);
    if (s)
        return s;
    if (f->n_series < EVH_METRICS_MAX_SERIES) {
        s = insert_locked(f, v, h);
        if (!s)
            f->overflowed++;
        return s;
    }
    f->overflowed++;
    const char *other[MAX_LABELS];
    for (size_t i = 0; i < f->n_labels; i++)
        other[i] = f->enumerated & (1u << i) ? v[i] : METRICS_OTHER;
    h = hash_values(f, other);
    s = find_locked(f, other, h);
    if (!s && f->n_series < (size_t)EVH_METRICS_MAX_SERIES + OVERFLOW_SERIES_MAX)
        s = insert_locked(f, other, h);
    return s;
}

/* Add 1 to a counter, or observe x in a histogram. */
static void update(family *f, const char *const *raw, double x)
{
    label_text buf[MAX_LABELS];
    const char *v[MAX_LABELS];
    for (size_t i = 0; i < f->n_labels; i++) {
        normalize(raw[i], buf[i]);
        v[i] = buf[i];
    }
    size_t b = 0;
    if (f->type == HISTOGRAM) {
        while (b < METRICS_STEP_BUCKET_COUNT && !(x <= step_bounds[b]))
            b++;
    }
    uint64_t h = hash_values(f, v);
    pthread_mutex_lock(&f->lock);
    series *s = series_locked(f, v, h);
    if (s) {
        s->count++;
        if (s->bucket) {
            s->bucket[b]++;
            s->sum += x;
        }
    }
    pthread_mutex_unlock(&f->lock);
}

/* ---- the host's updates ------------------------------------------------------ */

static const char *const refusal_names[METRICS_REFUSED_COUNT] = {
    [METRICS_REFUSED_QUEUE_FULL] = "queue_full",
    [METRICS_REFUSED_UNDECLARED_TYPE] = "undeclared_type",
    [METRICS_REFUSED_SCHEMA] = "schema",
    [METRICS_REFUSED_INVALID] = "invalid",
    [METRICS_REFUSED_STOPPING] = "stopping",
    [METRICS_REFUSED_INTERNAL] = "internal",
};

const char *metrics_refusal_name(metrics_refusal r)
{
    return (unsigned)r < METRICS_REFUSED_COUNT ? refusal_names[r] : "internal";
}

metrics_refusal metrics_refusal_of(int status)
{
    switch (status) {
    case EVH_E_QUEUE_FULL:
        return METRICS_REFUSED_QUEUE_FULL;
    case EVH_E_UNDECLARED_TYPE:
        return METRICS_REFUSED_UNDECLARED_TYPE;
    case EVH_E_SCHEMA:
        return METRICS_REFUSED_SCHEMA;
    case EVH_E_INVALID:
        return METRICS_REFUSED_INVALID;
    case EVH_E_STOPPING:
        return METRICS_REFUSED_STOPPING;
    default:
        return METRICS_REFUSED_INTERNAL;
    }
}

void metrics_event_accepted(const char *source, const char *event_type)
{
    const char *v[] = {source, event_type};
    update(&families[F_ACCEPTED], v, 0);
}

void metrics_event_refused(const char *source, const char *event_type, metrics_refusal reason)
{
    const char *v[] = {source, event_type, metrics_refusal_name(reason)};
    update(&families[F_REFUSED], v, 0);
}

void metrics_event_outcome(const char *source, const char *event_type, int status)
{
    if (status == EVH_OK)
        metrics_event_accepted(source, event_type);
    else if (status != EVH_E_DUPLICATE)
        metrics_event_refused(source, event_type, metrics_refusal_of(status));
}

void metrics_execution(const char *workflow, int succeeded)
{
    const char *v[] = {workflow, succeeded ? "succeeded" : "failed"};
    update(&families[F_EXECUTIONS], v, 0);
}

void metrics_step_duration(const char *workflow, const char *step, const char *plugin,
                           double seconds)
{
    const char *v[] = {workflow, step, plugin};
    if (!(seconds >= 0)) /* negative (the wall clock stepped back) or NaN */
        seconds = 0;
    update(&families[F_STEP_DURATION], v, seconds);
}

void metrics_delivery(const char *subscription, const char *outcome, double seconds)
{
    const char *v[] = {subscription, outcome};
    if (!(seconds >= 0))
        seconds = 0;
    update(&families[F_DELIVERIES], v, 0);
    update(&families[F_DELIVERY_DURATION], v, seconds);
}

void metrics_deliveries_pending_set(int64_t n)
{
    atomic_store(&deliveries_pending, n);
}

/* Escape for a label value (backslash, quote, newline) or HELP text
 * (backslash, newline). */
static void buf_escaped(textbuf *b, const char *s, int quote)
{
    const char *run = s;
    for (const char *p = s;; p++) {
        const char *rep = NULL;
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '\n')
            rep = "\\n";
        else if (*p == '"' && quote)
            rep = "\\\"";
        else if (*p != '\0')
            continue;
        textbuf_add(b, run, (size_t)(p - run));
        if (!rep)
            break;
        textbuf_adds(b, rep);
        run = p + 1;
    }
}

/* A float as Prometheus reads it: integers in full, else the shortest text
 * that reads back the same; "+Inf", "-Inf" or "NaN". */
static void format_double(double x, char out[40])
{
    if (isnan(x)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(x)) {
        strcpy(out, x > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (fabs(x) < 1e15 && x == (double)(int64_t)x) { /* "10", not "1e+01" */
        snprintf(out, 40, "%.0f", x);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, x);
        if (strtod(out, NULL) == x)
            break;
    }
}

static void buf_double(textbuf *b, double x)
{
    char text[40];
    format_double(x, text);
    textbuf_adds(b, text);
}

void metrics_write_header(textbuf *b, const char *name, const char *type, const char *help)
{
    textbuf_printf(b, "# HELP %s ", name);
    buf_escaped(b, help, 0);
    textbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

/* name{a="x",b="y"[,le="..."]} without the value; values already normal. */
static void write_name(textbuf *b, const char *name, const char *suffix,
                       const char *const *names, const char *const *values, size_t n,
                       const char *le)
{
    textbuf_adds(b, name);
    textbuf_adds(b, suffix);
    if (n == 0 && !le)
        return;
    textbuf_add(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        textbuf_printf(b, "%s%s=\"", i ? "," : "", names[i]);
        buf_escaped(b, values[i], 1);
        textbuf_add(b, "\"", 1);
    }
    if (le)
        textbuf_printf(b, "%sle=\"%s\"", n ? "," : "", le);
    textbuf_add(b, "}", 1);
}

void metrics_write_sample(textbuf *b, const char *name, const char *const *names,
                          const char *const *values, size_t n, double value)
{
    label_text buf[8];
    const char *v[8];
    if (n > 8)
        n = 8; /* scrape-time families have one or two labels */
    for (size_t i = 0; i < n; i++) {
        normalize(values[i], buf[i]);
        v[i] = buf[i];
    }
    write_name(b, name, "", names, v, n, NULL);
    textbuf_add(b, " ", 1);
    buf_double(b, value);
    textbuf_add(b, "\n", 1);
}

/* ---- rendering ------------------------------------------------------------------ */

typedef struct snap {
    const series *s;
    uint64_t count;
    double sum;
    size_t bucket_off; /* into the snapshot's bucket copies */
} snap;

static size_t sort_labels; /* n_labels of the family being sorted (under render_lock) */

static int snap_cmp(const void *pa, const void *pb)
{
    const snap *a = pa, *b = pb;
    for (size_t i = 0; i < sort_labels; i++) {
        int c = strcmp(a->s->value[i], b->s->value[i]);
        if (c)
            return c;
    }
    return 0;
}

/* Render one family; -1 when memory ran out.  Under render_lock. */
static int render_family(textbuf *out, family *f)
{
    pthread_mutex_lock(&f->lock);
    size_t n = f->n_series;
    snap *sn = n ? malloc(n * sizeof *sn) : NULL;
    uint64_t *bk = n && f->type == HISTOGRAM ? malloc(n * N_BUCKETS * sizeof *bk) : NULL;
    if (n && (!sn || (f->type == HISTOGRAM && !bk))) {
        pthread_mutex_unlock(&f->lock);
        free(sn);
        free(bk);
        return -1;
    }
    size_t k = 0;
    for (size_t h = 0; h < HASH_SIZE; h++) {
        for (const series *s = f->table[h]; s; s = s->next, k++) {
            sn[k] = (snap){.s = s, .count = s->count, .sum = s->sum, .bucket_off = k * N_BUCKETS};
            if (bk)
                memcpy(bk + k * N_BUCKETS, s->bucket, N_BUCKETS * sizeof *bk);
        }
    }
    pthread_mutex_unlock(&f->lock);

    sort_labels = f->n_labels;
    if (n)
        qsort(sn, n, sizeof *sn, snap_cmp);
    char le[N_BUCKETS][40];
    for (size_t j = 0; j < N_BUCKETS; j++)
        format_double(j < METRICS_STEP_BUCKET_COUNT ? step_bounds[j] : INFINITY, le[j]);
    metrics_write_header(out, f->name, f->type == HISTOGRAM ? "histogram" : "counter", f->help);
    for (size_t i = 0; i < n && !out->failed; i++) {
        const char *const *v = sn[i].s->value;
        if (f->type == COUNTER) {
            write_name(out, f->name, "", f->label, v, f->n_labels, NULL);
            textbuf_printf(out, " %" PRIu64 "\n", sn[i].count);
            continue;
        }
        uint64_t cum = 0;
        for (size_t j = 0; j < N_BUCKETS; j++) {
            cum += bk[sn[i].bucket_off + j];
            write_name(out, f->name, "_bucket", f->label, v, f->n_labels, le[j]);
            textbuf_printf(out, " %" PRIu64 "\n", cum);
        }
        write_name(out, f->name, "_sum", f->label, v, f->n_labels, NULL);
        textbuf_add(out, " ", 1);
        buf_double(out, sn[i].sum);
        textbuf_add(out, "\n", 1);
        write_name(out, f->name, "_count", f->label, v, f->n_labels, NULL);
        textbuf_printf(out, " %" PRIu64 "\n", sn[i].count);
    }
    free(sn);
    free(bk);
    return out->failed ? -1 : 0;
}

int metrics_render(textbuf *b)
{
    int rc = 0;
    pthread_mutex_lock(&render_lock);
    for (size_t i = 0; i < F_COUNT && rc == 0; i++)
        rc = render_family(b, &families[i]);
    if (rc == 0) {
        metrics_write_header(b, "evhost_metrics_series_overflow_total", "counter",
                             "Updates that found their metric at its cap of distinct label "
                             "sets and went to its (other) series instead.");
        for (size_t i = 0; i < F_COUNT; i++) {
            pthread_mutex_lock(&families[i].lock);
            uint64_t n = families[i].overflowed;
            pthread_mutex_unlock(&families[i].lock);
            write_name(b, "evhost_metrics_series_overflow_total", "",
                       (const char *const[]){"metric"}, &families[i].name, 1, NULL);
            textbuf_printf(b, " %" PRIu64 "\n", n);
        }
        metrics_write_header(b, "evhost_deliveries_pending", "gauge",
                             "Outbound webhook deliveries not yet delivered or dead.");
        textbuf_printf(b, "evhost_deliveries_pending %" PRId64 "\n",
                   (int64_t)atomic_load(&deliveries_pending));
    }
    pthread_mutex_unlock(&render_lock);
    return rc == 0 && !b->failed ? 0 : -1;
}

void metrics_reset(void)
{
    pthread_mutex_lock(&render_lock);
    for (size_t i = 0; i < F_COUNT; i++) {
        family *f = &families[i];
        pthread_mutex_lock(&f->lock);
        for (size_t h = 0; h < HASH_SIZE; h++) {
            for (series *s = f->table[h], *next; s; s = next) {
                next = s->next;
                free(s);
            }
            f->table[h] = NULL;
        }
        f->n_series = 0;
        f->overflowed = 0;
        pthread_mutex_unlock(&f->lock);
    }
    atomic_store(&deliveries_pending, 0);
    pthread_mutex_unlock(&render_lock);
}

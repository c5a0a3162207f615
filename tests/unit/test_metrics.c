/*
 * test_metrics.c - the metrics module: counters, histogram buckets and
 * their boundaries, label escaping and normalization, the cardinality cap
 * and its overflow series, reset, concurrent updates, and the exposition
 * format, checked by parsing the rendered text line by line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "evh_limits.h"
#include "metrics.h"

/* ---- a strict parser of the text format 0.0.4 ------------------------------ */

typedef struct sample {
    char *name;
    char *labels; /* the raw text between the braces ("" when none), escapes kept */
    double value;
} sample;

typedef struct parsed {
    sample *items;
    size_t count, cap;
    /* families in order of their # TYPE lines */
    char *family[64];
    char *type[64];
    size_t n_families;
} parsed;

static int name_char(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* The family a sample name belongs to (histogram suffixes stripped when the
 * stripped name is a histogram family). */
static const char *family_of(const parsed *p, const char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < p->n_families; i++) {
        if (!strcmp(p->family[i], name))
            return p->family[i];
        for (size_t s = 0; s < 3; s++) {
            size_t fl = strlen(p->family[i]);
            if (!strcmp(p->type[i], "histogram") && !strncmp(name, p->family[i], fl) &&
                !strcmp(name + fl, suffixes[s]))
                return p->family[i];
        }
    }
    return NULL;
}

/* Parse one sample line; fails the test on any deviation. */
static void parse_sample(parsed *p, const char *line)
{
    const char *c = line;
    assert_true(name_char(*c, 1));
    while (name_char(*c, 0))
        c++;
    char *name = strndup(line, (size_t)(c - line));
    const char *fam = family_of(p, name);
    if (!fam)
        fail_msg("sample '%s' before (or without) its # TYPE line", line);
    /* the last # TYPE seen must be this sample's: a family's samples are together */
    assert_string_equal(fam, p->family[p->n_families - 1]);
    char *labels = strdup("");
    if (*c == '{') {
        const char *start = ++c;
        while (*c != '}') {
            const char *ln = c;
            assert_true(name_char(*c, 1));
            while (name_char(*c, 0))
                c++;
            assert_true(c > ln);
            assert_int_equal(*c++, '=');
            assert_int_equal(*c++, '"');
            while (*c != '"') {
                assert_true(*c != '\0' && *c != '\n');
                if (*c == '\\') {
                    c++;
                    assert_true(*c == '\\' || *c == '"' || *c == 'n');
                }
                c++;
            }
            c++;
            if (*c == ',')
                c++;
            else
                assert_int_equal(*c, '}');
        }
        free(labels);
        labels = strndup(start, (size_t)(c - start));
        c++;
    }
    assert_int_equal(*c++, ' ');
    double v;
    if (!strcmp(c, "+Inf")) {
        v = INFINITY;
    } else if (!strcmp(c, "-Inf")) {
        v = -INFINITY;
    } else if (!strcmp(c, "NaN")) {
        v = NAN;
    } else {
        char *end;
        v = strtod(c, &end);
        assert_true(end != c);
        assert_int_equal(*end, '\0'); /* no timestamp, no trailing text */
    }
    if (p->count == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->items = realloc(p->items, p->cap * sizeof *p->items);
        assert_non_null(p->items);
    }
    p->items[p->count++] = (sample){name, labels, v};
}

static parsed *parse(const char *text)
{
    parsed *p = calloc(1, sizeof *p);
    assert_non_null(p);
    assert_non_null(text);
    size_t n = strlen(text);
    assert_true(n > 0);
    assert_int_equal(text[n - 1], '\n'); /* every line ends with \n */
    char *copy = strdup(text);
    char *help_for = NULL;
    for (char *line = copy, *next; *line; line = next) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        next = nl + 1;
        assert_true(*line != '\0'); /* no blank lines */
        if (!strncmp(line, "# HELP ", 7)) {
            char *name = line + 7;
            char *sp = strchr(name, ' ');
            assert_non_null(sp);
            free(help_for);
            help_for = strndup(name, (size_t)(sp - name));
            assert_true(strlen(sp + 1) > 0);
        } else if (!strncmp(line, "# TYPE ", 7)) {
            char *name = line + 7;
            char *sp = strchr(name, ' ');
            assert_non_null(sp);
            *sp = '\0';
            const char *type = sp + 1;
            assert_true(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
                        !strcmp(type, "histogram"));
            /* HELP comes right before TYPE, for the same name */
            assert_non_null(help_for);
            assert_string_equal(help_for, name);
            for (size_t i = 0; i < p->n_families; i++)
                assert_string_not_equal(p->family[i], name); /* one TYPE per family */
            assert_true(p->n_families < 64);
            p->family[p->n_families] = strdup(name);
            p->type[p->n_families++] = strdup(type);
        } else {
            assert_true(line[0] != '#');
            parse_sample(p, line);
        }
    }
    free(help_for);
    free(copy);
    return p;
}

static void parsed_free(parsed *p)
{
    for (size_t i = 0; i < p->count; i++) {
        free(p->items[i].name);
        free(p->items[i].labels);
    }
    for (size_t i = 0; i < p->n_families; i++) {
        free(p->family[i]);
        free(p->type[i]);
    }
    free(p->items);
    free(p);
}

/* The value of sample name{labels}, or -1 when there is none. */
static double value_of(const parsed *p, const char *name, const char *labels)
{
    for (size_t i = 0; i < p->count; i++) {
        if (!strcmp(p->items[i].name, name) && !strcmp(p->items[i].labels, labels))
            return p->items[i].value;
    }
    return -1;
}

static size_t samples_named(const parsed *p, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < p->count; i++)
        n += !strcmp(p->items[i].name, name);
    return n;
}

static const char *type_of(const parsed *p, const char *family)
{
    for (size_t i = 0; i < p->n_families; i++) {
        if (!strcmp(p->family[i], family))
            return p->type[i];
    }
    return NULL;
}

static parsed *render(void)
{
    textbuf b = {0};
    assert_int_equal(metrics_render(&b), 0);
    assert_false(b.failed);
    parsed *p = parse(b.data);
    textbuf_free(&b);
    return p;
}

static int reset(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

/* ---- the tests ------------------------------------------------------------- */

static void test_families_without_series(void **state)
{
    (void)state;
    parsed *p = render();
    assert_string_equal(type_of(p, "evhost_events_accepted_total"), "counter");
    assert_string_equal(type_of(p, "evhost_events_refused_total"), "counter");
    assert_string_equal(type_of(p, "evhost_executions_total"), "counter");
    assert_string_equal(type_of(p, "evhost_step_duration_seconds"), "histogram");
    assert_string_equal(type_of(p, "evhost_metrics_series_overflow_total"), "counter");
    assert_int_equal(samples_named(p, "evhost_events_accepted_total"), 0);
    /* the overflow counter has a sample per family, 0 */
    assert_int_equal(samples_named(p, "evhost_metrics_series_overflow_total"), 6);
    assert_true(value_of(p, "evhost_metrics_series_overflow_total",
                         "metric=\"evhost_step_duration_seconds\"") == 0);
    parsed_free(p);
}

static void test_counters(void **state)
{
    (void)state;
    metrics_event_accepted("src-a", "thing");
    metrics_event_accepted("src-a", "thing");
    metrics_event_accepted("src-a", "other_thing");
    metrics_event_accepted("src-b", "thing");
    metrics_event_refused("src-a", "nope", METRICS_REFUSED_UNDECLARED_TYPE);
    metrics_event_refused("src-a", "thing", METRICS_REFUSED_SCHEMA);
    metrics_event_refused("src-a", "thing", METRICS_REFUSED_SCHEMA);
    metrics_execution("wf", 1);
    metrics_execution("wf", 0);
    metrics_execution("wf", 1);
    metrics_event_accepted(NULL, NULL); /* NULL reads as "" */

    parsed *p = render();
    const char *acc = "evhost_events_accepted_total";
    assert_true(value_of(p, acc, "source=\"src-a\",event_type=\"thing\"") == 2);
    assert_true(value_of(p, acc, "source=\"src-a\",event_type=\"other_thing\"") == 1);
    assert_true(value_of(p, acc, "source=\"src-b\",event_type=\"thing\"") == 1);
    assert_true(value_of(p, acc, "source=\"\",event_type=\"\"") == 1);
    assert_int_equal(samples_named(p, acc), 4);
    const char *ref = "evhost_events_refused_total";
    assert_true(value_of(p, ref, "source=\"src-a\",event_type=\"nope\",reason=\"undeclared_type\"") ==
                1);
    assert_true(value_of(p, ref, "source=\"src-a\",event_type=\"thing\",reason=\"schema\"") == 2);
    assert_int_equal(samples_named(p, ref), 2);
    assert_true(value_of(p, "evhost_executions_total", "workflow=\"wf\",status=\"succeeded\"") ==
                2);
    assert_true(value_of(p, "evhost_executions_total", "workflow=\"wf\",status=\"failed\"") == 1);
    parsed_free(p);

    /* series come out sorted by their label values: stable scrapes */
    textbuf b = {0};
    assert_int_equal(metrics_render(&b), 0);
    const char *x = strstr(b.data, "source=\"\",");
    const char *y = strstr(b.data, "source=\"src-a\",event_type=\"other_thing\"");
    const char *z = strstr(b.data, "source=\"src-a\",event_type=\"thing\"");
    const char *w = strstr(b.data, "source=\"src-b\"");
    assert_true(x && y && z && w && x < y && y < z && z < w);
    textbuf_free(&b);
}

static void test_outcome_mapping(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *reason;
    } cases[] = {
        {EVH_E_QUEUE_FULL, "queue_full"}, {EVH_E_UNDECLARED_TYPE, "undeclared_type"},
        {EVH_E_SCHEMA, "schema"},         {EVH_E_INVALID, "invalid"},
        {EVH_E_STOPPING, "stopping"},     {EVH_E_IO, "internal"},
        {EVH_E_NOMEM, "internal"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        metrics_event_outcome("s", "t", cases[i].status);
    metrics_event_outcome("s", "t", EVH_OK);
    metrics_event_outcome("s", "t", EVH_E_DUPLICATE); /* a retry: neither */
    parsed *p = render();
    assert_true(value_of(p, "evhost_events_accepted_total", "source=\"s\",event_type=\"t\"") == 1);
    char want[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(want, sizeof want, "source=\"s\",event_type=\"t\",reason=\"%s\"", cases[i].reason);
        double expect = !strcmp(cases[i].reason, "internal") ? 2 : 1;
        assert_true(value_of(p, "evhost_events_refused_total", want) == expect);
    }
    assert_int_equal(samples_named(p, "evhost_events_refused_total"), 6);
    parsed_free(p);
    assert_string_equal(metrics_refusal_name(METRICS_REFUSED_COUNT), "internal");
}

static void test_histogram_buckets(void **state)
{
    (void)state;
    const char *L = "workflow=\"w\",step=\"s\",plugin=\"p\"";
    /* on a bound: counted in that bucket (le is "less or equal") */
    metrics_step_duration("w", "s", "p", 0.001);
    metrics_step_duration("w", "s", "p", 0.0010001); /* just above: the next */
    metrics_step_duration("w", "s", "p", 60);        /* the largest bound */
    metrics_step_duration("w", "s", "p", 61);        /* only +Inf */
    metrics_step_duration("w", "s", "p", -3);        /* a clock step: counts as 0 */
    metrics_step_duration("w", "s", "p", NAN);       /* as 0 too */
    metrics_step_duration("w", "s", "p", 0.3);
    parsed *p = render();
    static const struct {
        const char *le;
        double cumulative;
    } want[] = {{"0.001", 3}, {"0.0025", 4}, {"0.005", 4}, {"0.01", 4}, {"0.025", 4},
                {"0.05", 4},  {"0.1", 4},    {"0.25", 4},  {"0.5", 5},  {"1", 5},
                {"2.5", 5},   {"5", 5},      {"10", 5},    {"30", 5},   {"60", 6},
                {"+Inf", 7}};
    assert_int_equal(sizeof want / sizeof want[0], METRICS_STEP_BUCKET_COUNT + 1);
    char labels[160];
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        snprintf(labels, sizeof labels, "%s,le=\"%s\"", L, want[i].le);
        double v = value_of(p, "evhost_step_duration_seconds_bucket", labels);
        if (v != want[i].cumulative)
            fail_msg("le=%s: %g, want %g", want[i].le, v, want[i].cumulative);
    }
    assert_int_equal(samples_named(p, "evhost_step_duration_seconds_bucket"),
                     METRICS_STEP_BUCKET_COUNT + 1);
    assert_true(value_of(p, "evhost_step_duration_seconds_count", L) == 7);
    double sum = value_of(p, "evhost_step_duration_seconds_sum", L);
    assert_true(fabs(sum - (0.001 + 0.0010001 + 60 + 61 + 0.3)) < 1e-9);
    parsed_free(p);

    /* the bucket lines are in le order, each after the previous */
    textbuf b = {0};
    assert_int_equal(metrics_render(&b), 0);
    const char *prev = b.data;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        snprintf(labels, sizeof labels, "le=\"%s\"}", want[i].le);
        const char *at = strstr(prev, labels);
        assert_non_null(at);
        prev = at;
    }
    assert_true(strstr(prev, "evhost_step_duration_seconds_sum{") > prev);
    textbuf_free(&b);
}

static void test_escaping_and_normalizing(void **state)
{
    (void)state;
    metrics_event_accepted("src", "a\\b\"c\nd");
    /* invalid UTF-8 (a lone continuation byte, an overlong '/', a surrogate)
     * becomes '?'; valid multibyte text stays */
    metrics_event_accepted("src", "x\x80y\xC0\xAFz\xED\xA0\x80-\xC3\xA9\xE2\x82\xAC");
    /* a long value is cut at 128 bytes, never inside a character: 127 'a'
     * and a 2-byte 'é' keep the 127 'a' only */
    char longv[300];
    memset(longv, 'a', 127);
    strcpy(longv + 127, "\xC3\xA9tail");
    metrics_event_accepted("src", longv);
    char exact[200];
    memset(exact, 'b', 150);
    exact[150] = '\0';
    metrics_event_accepted("src", exact);
    metrics_event_accepted("src", exact); /* the same cut value: the same series */

    parsed *p = render();
    const char *acc = "evhost_events_accepted_total";
    assert_true(value_of(p, acc, "source=\"src\",event_type=\"a\\\\b\\\"c\\nd\"") == 1);
    assert_true(value_of(p, acc, "source=\"src\",event_type=\"x?y?" "?z?" "?" "?-\xC3\xA9\xE2\x82\xAC\"") ==
                1);
    char want[400];
    snprintf(want, sizeof want, "source=\"src\",event_type=\"%.127s\"", longv);
    assert_true(value_of(p, acc, want) == 1);
    snprintf(want, sizeof want, "source=\"src\",event_type=\"%.128s\"", exact);
    assert_true(value_of(p, acc, want) == 2);
    assert_int_equal(samples_named(p, acc), 4);
    parsed_free(p);

    /* scrape-time samples: escaped the same way; numbers as Prometheus reads them */
    textbuf b = {0};
    metrics_write_header(&b, "g", "gauge", "help with \\ and\nnewline");
    const char *names[] = {"k"};
    const char *vals[] = {"q\"uote"};
    metrics_write_sample(&b, "g", names, vals, 1, 0.1);
    metrics_write_sample(&b, "g", NULL, NULL, 0, 1e-7);
    metrics_write_sample(&b, "g", NULL, NULL, 0, INFINITY);
    metrics_write_sample(&b, "g", NULL, NULL, 0, 12345678901.0);
    assert_string_equal(b.data, "# HELP g help with \\\\ and\\nnewline\n"
                                "# TYPE g gauge\n"
                                "g{k=\"q\\\"uote\"} 0.1\n"
                                "g 1e-07\n"
                                "g +Inf\n"
                                "g 12345678901\n");
    size_t len = 0;
    char *text = textbuf_take(&b, &len);
    assert_int_equal(len, strlen(text));
    assert_null(b.data);
    free(text);
}

static void test_cardinality_cap(void **state)
{
    (void)state;
    char type[32];
    for (int i = 0; i < EVH_METRICS_MAX_SERIES; i++) {
        snprintf(type, sizeof type, "t%d", i);
        metrics_event_accepted("src", type);
    }
    /* the cap is reached: new label sets go to the (other) series */
    for (int i = 0; i < 5; i++) {
        snprintf(type, sizeof type, "late%d", i);
        metrics_event_accepted("src", type);
    }
    /* existing series still count normally */
    metrics_event_accepted("src", "t0");
    /* refusals: past the cap the reason is kept, the free-form labels are not */
    for (int i = 0; i < EVH_METRICS_MAX_SERIES; i++) {
        snprintf(type, sizeof type, "r%d", i);
        metrics_event_refused("src", type, METRICS_REFUSED_SCHEMA);
    }
    metrics_event_refused("src", "new1", METRICS_REFUSED_SCHEMA);
    metrics_event_refused("src", "new2", METRICS_REFUSED_QUEUE_FULL);
    metrics_event_refused("src", "new3", METRICS_REFUSED_QUEUE_FULL);

    parsed *p = render();
    const char *acc = "evhost_events_accepted_total";
    assert_int_equal(samples_named(p, acc), EVH_METRICS_MAX_SERIES + 1);
    assert_true(value_of(p, acc, "source=\"(other)\",event_type=\"(other)\"") == 5);
    assert_true(value_of(p, acc, "source=\"src\",event_type=\"t0\"") == 2);
    assert_true(value_of(p, acc, "source=\"src\",event_type=\"late0\"") == -1);
    const char *ref = "evhost_events_refused_total";
    assert_int_equal(samples_named(p, ref), EVH_METRICS_MAX_SERIES + 2);
    assert_true(value_of(p, ref, "source=\"(other)\",event_type=\"(other)\",reason=\"schema\"") ==
                1);
    assert_true(value_of(p, ref,
                         "source=\"(other)\",event_type=\"(other)\",reason=\"queue_full\"") == 2);
    const char *ovf = "evhost_metrics_series_overflow_total";
    assert_true(value_of(p, ovf, "metric=\"evhost_events_accepted_total\"") == 5);
    assert_true(value_of(p, ovf, "metric=\"evhost_events_refused_total\"") == 3);
    assert_true(value_of(p, ovf, "metric=\"evhost_executions_total\"") == 0);
    parsed_free(p);

    /* reset forgets everything, overflow counts included */
    metrics_reset();
    p = render();
    assert_int_equal(samples_named(p, acc), 0);
    assert_true(value_of(p, ovf, "metric=\"evhost_events_accepted_total\"") == 0);
    parsed_free(p);
    /* and the family takes new series again */
    metrics_event_accepted("src", "late0");
    p = render();
    assert_true(value_of(p, acc, "source=\"src\",event_type=\"late0\"") == 1);
    parsed_free(p);
}

/* ---- concurrency ------------------------------------------------------------ */

#define THREADS 4
#define PER_THREAD 20000

static void *updater(void *arg)
{
    long id = (long)(intptr_t)arg;
    char mine[16];
    snprintf(mine, sizeof mine, "own%ld", id);
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_event_accepted("src", "shared");
        metrics_event_accepted("src", mine);
        metrics_step_duration("w", "s", "p", 0.002);
    }
    return NULL;
}

typedef struct scrape_ctl {
    atomic_int stop;
    atomic_int failures; /* cmocka's asserts belong to the test's thread */
} scrape_ctl;

static void *scraper(void *arg)
{
    scrape_ctl *c = arg;
    while (!atomic_load(&c->stop)) {
        textbuf b = {0};
        if (metrics_render(&b) != 0 || !b.data || !strstr(b.data, "# TYPE evhost_"))
            atomic_fetch_add(&c->failures, 1);
        textbuf_free(&b);
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    (void)state;
    pthread_t t[THREADS], s;
    scrape_ctl ctl;
    atomic_init(&ctl.stop, 0);
    atomic_init(&ctl.failures, 0);
    assert_int_equal(pthread_create(&s, NULL, scraper, &ctl), 0);
    for (long i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, updater, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&ctl.stop, 1);
    pthread_join(s, NULL);
    assert_int_equal(atomic_load(&ctl.failures), 0);
    parsed *p = render();
    const char *acc = "evhost_events_accepted_total";
    assert_true(value_of(p, acc, "source=\"src\",event_type=\"shared\"") == THREADS * PER_THREAD);
    assert_true(value_of(p, acc, "source=\"src\",event_type=\"own2\"") == PER_THREAD);
    const char *L = "workflow=\"w\",step=\"s\",plugin=\"p\"";
    assert_true(value_of(p, "evhost_step_duration_seconds_count", L) == THREADS * PER_THREAD);
    assert_true(value_of(p, "evhost_step_duration_seconds_bucket", "workflow=\"w\",step=\"s\","
                                                                   "plugin=\"p\",le=\"0.001\"") ==
                0);
    assert_true(value_of(p, "evhost_step_duration_seconds_bucket", "workflow=\"w\",step=\"s\","
                                                                   "plugin=\"p\",le=\"0.0025\"") ==
                THREADS * PER_THREAD);
    parsed_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_families_without_series, reset),
        cmocka_unit_test_setup(test_counters, reset),
        cmocka_unit_test_setup(test_outcome_mapping, reset),
        cmocka_unit_test_setup(test_histogram_buckets, reset),
        cmocka_unit_test_setup(test_escaping_and_normalizing, reset),
        cmocka_unit_test_setup(test_cardinality_cap, reset),
        cmocka_unit_test_setup(test_concurrent_updates, reset),
    };
    return cmocka_run_group_tests(tests, NULL, reset);
}

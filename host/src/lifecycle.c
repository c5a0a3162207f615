/*
 * lifecycle.c - building and handing out lifecycle events (see
 * lifecycle.h; the envelope is documented field by field in
 * docs/events.md).
 */
#include "lifecycle.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <evhost/evhost.h>

#include "event.h"
#include "log.h"
#include "textbuf.h"

struct lifecycle {
    notifier *n;
    pthread_mutex_t lock; /* the publisher */
    lifecycle_publish_fn publish;
    void *publish_ud;
    _Atomic int has_publisher;
};

lifecycle *lifecycle_new(notifier *n)
{
    lifecycle *lc = calloc(1, sizeof *lc);
    if (!lc)
        return NULL;
    lc->n = n;
    pthread_mutex_init(&lc->lock, NULL);
    return lc;
}

void lifecycle_set_publisher(lifecycle *lc, lifecycle_publish_fn fn, void *ud)
{
    pthread_mutex_lock(&lc->lock);
    lc->publish = fn;
    lc->publish_ud = ud;
    lc->has_publisher = fn != NULL;
    pthread_mutex_unlock(&lc->lock);
}

void lifecycle_free(lifecycle *lc)
{
    if (!lc)
        return;
    pthread_mutex_destroy(&lc->lock);
    free(lc);
}

/* Does anyone take event e? */
static int wanted(const lifecycle_job *j, lc_event e)
{
    return j->lc && (j->lc->has_publisher || notifier_wants(j->lc->n, e));
}

/* ---- the envelope ------------------------------------------------------------ */

/* s as a JSON string: quotes, backslashes and control characters escaped
 * (RFC 8259 section 7); other bytes, UTF-8 included, as they are. */
static void put_string(textbuf *t, const char *s)
{
    textbuf_add(t, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        textbuf_add(t, run, (size_t)(s - run));
        char esc[8];
        switch (c) {
        case '"': textbuf_adds(t, "\\\""); break;
        case '\\': textbuf_adds(t, "\\\\"); break;
        case '\n': textbuf_adds(t, "\\n"); break;
        case '\r': textbuf_adds(t, "\\r"); break;
        case '\t': textbuf_adds(t, "\\t"); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            textbuf_adds(t, esc);
        }
        run = s + 1;
    }
    textbuf_add(t, run, (size_t)(s - run));
    textbuf_add(t, "\"", 1);
}

/* A cJSON node, printed compact; null when there is none. */
static void put_json(textbuf *t, const cJSON *v)
{
    char *printed = v ? cJSON_PrintUnformatted(v) : NULL;
    if (v && !printed)
        t->failed = 1;
    textbuf_adds(t, printed ? printed : "null");
    free(printed);
}

/* The envelope is assembled as text: four per execution, on the workers'
 * threads, and the job's config (the biggest part) is printed once per job
 * instead of once per event (building and printing a cJSON tree per event
 * cost ~7 us of the workers' time, a fifth of an execution's). */
char *lifecycle_envelope_text(lc_event e, const char *job_id, const char *plugin_name,
                              const cJSON *metrics, const char *error, const lifecycle_job_part *job,
                              const char *timestamp, size_t *len)
{
    textbuf t = {0};
    /* the members in the seed's order */
    textbuf_adds(&t, "{\"event\":");
    put_string(&t, lc_event_name(e));
    textbuf_adds(&t, ",\"data\":{\"jobId\":");
    put_string(&t, job_id);
    if (plugin_name) {
        textbuf_adds(&t, ",\"pluginName\":");
        put_string(&t, plugin_name);
    }
    if (metrics) {
        textbuf_adds(&t, ",\"metrics\":");
        put_json(&t, metrics);
    }
    if (error) {
        textbuf_adds(&t, ",\"error\":{\"message\":");
        put_string(&t, error);
        textbuf_adds(&t, "}");
    }
    if (job) {
        char progress[96];
        textbuf_adds(&t, ",\"job\":{\"id\":");
        put_string(&t, job->id);
        textbuf_adds(&t, ",\"config\":");
        textbuf_adds(&t, job->config_text ? job->config_text : "null");
        snprintf(progress, sizeof progress, ",\"progress\":{\"done\":%zu,\"total\":%zu", job->done,
                 job->total);
        textbuf_adds(&t, progress);
        if (job->step) {
            textbuf_adds(&t, ",\"step\":");
            put_string(&t, job->step);
        }
        textbuf_adds(&t, "}");
        if (job->result) {
            textbuf_adds(&t, ",\"result\":");
            put_json(&t, job->result);
        }
        textbuf_adds(&t, "}");
    }
    textbuf_adds(&t, "},\"timestamp\":");
    put_string(&t, timestamp);
    textbuf_adds(&t, "}");
    if (t.failed) {
        textbuf_free(&t);
        return NULL;
    }
    return textbuf_take(&t, len);
}

/* ---- job parts ------------------------------------------------------------------ */

static const char *str_of(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static cJSON *str_or_null(const char *v)
{
    return v ? cJSON_CreateString(v) : cJSON_CreateNull();
}

/* job.config: what the job runs and why, printed. */
static char *config_of(const exec_request *req)
{
    cJSON *c = cJSON_CreateObject();
    if (!c)
        return NULL;
    const workflow *wf = req->wf;
    cJSON_AddStringToObject(c, "workflow_id", wf->id);
    cJSON_AddItemToObject(c, "workflow_version", str_or_null(wf->version[0] ? wf->version : NULL));
    cJSON_AddItemToObject(c, "trigger_id", str_or_null(req->trigger_id));
    cJSON_AddItemToObject(c, "event_id", str_or_null(str_of(req->envelope, "id")));
    cJSON_AddItemToObject(c, "event_type", str_or_null(str_of(req->envelope, "event_type")));
    cJSON_AddItemToObject(c, "source", str_or_null(str_of(req->envelope, "source")));
    cJSON *steps = cJSON_AddArrayToObject(c, "steps");
    for (size_t i = 0; steps && i < wf->n_steps; i++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "id", wf->steps[i].id);
        cJSON_AddStringToObject(s, "plugin", wf->steps[i].uses);
        cJSON_AddItemToArray(steps, s);
    }
    char *printed = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return printed;
}

/* {"id", "config", "progress": {"done", "total"[, "step"]}} */
static lifecycle_job_part job_of(lifecycle_job *j, const char *step_id)
{
    if (!j->config_text)
        j->config_text = config_of(j->req);
    return (lifecycle_job_part){.id = j->req->execution_id,
                                .config_text = j->config_text,
                                .done = j->done,
                                .total = j->req->wf->n_steps,
                                .step = step_id};
}

/* Hand one event out: to the publisher, then to the notifier. */
static void emit(lifecycle_job *j, lc_event e, const char *plugin_name, const cJSON *metrics,
                 const char *error, const lifecycle_job_part *job)
{
    char ts[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(ts);
    size_t len = 0;
    char *body = lifecycle_envelope_text(e, j->req->execution_id, plugin_name, metrics, error, job,
                                         ts, &len);
    char uuid[EVH_UUID_LEN + 1], msg_id[EVH_UUID_LEN + 5];
    if (!body || uuid_v4(uuid) != EVH_OK) {
        log_error("lifecycle", "%s of job %s is lost: out of memory", lc_event_name(e),
                  j->req->execution_id);
        free(body);
        return;
    }
    snprintf(msg_id, sizeof msg_id, "msg_%s", uuid);
    lifecycle *lc = j->lc;
    if (lc->has_publisher) {
        pthread_mutex_lock(&lc->lock);
        lifecycle_publish_fn fn = lc->publish;
        void *ud = lc->publish_ud;
        pthread_mutex_unlock(&lc->lock);
        if (fn) {
            lifecycle_event ev = {.event = e,
                                  .name = lc_event_name(e),
                                  .job_id = j->req->execution_id,
                                  .workflow_id = j->req->wf->id,
                                  .message_id = msg_id,
                                  .body = body,
                                  .body_len = len};
            fn(ud, &ev);
        }
    }
    if (notifier_wants(lc->n, e)) {
        int rc = notifier_submit(lc->n, e, j->req->execution_id, msg_id, body, len);
        if (rc != EVH_OK)
            log_error("lifecycle", "%s of job %s not queued for delivery: %s", lc_event_name(e),
                      j->req->execution_id, evh_status_message(rc));
    } else {
        free(body);
    }
}

/* The latest run of step_id among the execution's runs (ordered by id). */
static const cJSON *latest_run(const cJSON *runs, const char *step_id)
{
    const cJSON *found = NULL, *run;
    cJSON_ArrayForEach(run, runs)
    {
        const char *s = str_of(run, "step_id");
        if (s && !strcmp(s, step_id))
            found = run;
    }
    return found;
}

/* RFC 3339 UTC ("2026-11-23T10:30:00.123Z") -> ms since the epoch; -1. */
static int64_t parse_ms(const char *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0;
    if (!t || sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t secs = timegm(&tm);
    return secs == (time_t)-1 ? -1 : (int64_t)secs * 1000 + ms;
}

/* ---- the calls from execute.c -------------------------------------------------------- */

/* The execution's records as the database has them, once what the worker
 * handed to the recorder is committed. */
static cJSON *stored_metrics(lifecycle_job *j)
{
    if (j->rec)
        recorder_wait(j->rec, recorder_last_ticket(j->rec));
    return store_execution_metrics(j->st, j->req->execution_id);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* j->metrics[step] = a copy of m (an object), replacing an earlier one. */
static void keep_metrics(lifecycle_job *j, const char *step, cJSON *m)
{
    if (!j->metrics || !cJSON_IsObject(m)) {
        cJSON_Delete(m);
        return;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(j->metrics, step);
    cJSON_AddItemToObject(j->metrics, step, m);
}

/* A resumed or replayed job: the metrics of the steps that ran before, and
 * the first start, as stored. */
static void load_earlier(lifecycle_job *j)
{
    cJSON *x = stored_metrics(j);
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(x, "steps");
    for (size_t i = 0; i < j->req->wf->n_steps; i++) {
        const char *step = j->req->wf->steps[i].id;
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(latest_run(runs, step), "metrics");
        if (cJSON_IsObject(m))
            keep_metrics(j, step, cJSON_Duplicate(m, 1));
    }
    int64_t started = parse_ms(str_of(x, "started_at"));
    if (started >= 0)
        j->started_ms = started;
    cJSON_Delete(x);
}

void lifecycle_job_start(lifecycle_job *j, lifecycle *lc, store *st, struct recorder *rec,
                         const exec_request *req)
{
    memset(j, 0, sizeof *j);
    j->lc = lc;
    j->st = st;
    j->rec = rec;
    j->req = req;
    j->started_ms = now_ms();
    if (!lc)
        return;
    j->metrics = cJSON_CreateObject();
    /* resumed or replayed from a step: what ran before counts as done */
    for (size_t i = 0; req->prior_outputs && i < req->wf->n_steps; i++)
        j->done += cJSON_GetObjectItemCaseSensitive(req->prior_outputs,
                                                     req->wf->steps[i].id) != NULL;
    if (j->done && (wanted(j, LC_JOB_COMPLETE) || wanted(j, LC_JOB_ERROR)))
        load_earlier(j);
    if (!wanted(j, LC_JOB_START))
        return;
    lifecycle_job_part job = job_of(j, NULL);
    emit(j, LC_JOB_START, NULL, NULL, NULL, &job);
}

void lifecycle_plugin_start(lifecycle_job *j, size_t step)
{
    if (!wanted(j, LC_PLUGIN_START))
        return;
    const wf_step *s = &j->req->wf->steps[step];
    lifecycle_job_part job = job_of(j, s->id);
    emit(j, LC_PLUGIN_START, s->uses, NULL, NULL, &job);
}

void lifecycle_plugin_end(lifecycle_job *j, size_t step, int rc, const char *error,
                          const char *metrics_json)
{
    if (!j->lc)
        return;
    const wf_step *s = &j->req->wf->steps[step];
    if (rc == EVH_OK || s->on_error_continue)
        j->done++;
    /* a failed attempt's metrics count too, as they are stored with its run */
    cJSON *m = metrics_json ? cJSON_Parse(metrics_json) : NULL;
    if (cJSON_IsObject(m) || rc == EVH_OK)
        keep_metrics(j, s->id, cJSON_IsObject(m) ? m : cJSON_CreateObject());
    else
        cJSON_Delete(m);
    lc_event e = rc == EVH_OK ? LC_PLUGIN_COMPLETE : LC_PLUGIN_ERROR;
    if (!wanted(j, e))
        return;
    lifecycle_job_part job = job_of(j, s->id);
    if (rc == EVH_OK) {
        /* the metrics the step reported through the SDK, as stored with its run */
        const cJSON *kept = cJSON_GetObjectItemCaseSensitive(j->metrics, s->id);
        cJSON *empty = cJSON_IsObject(kept) ? NULL : cJSON_CreateObject();
        emit(j, e, s->uses, empty ? empty : kept, NULL, &job);
        cJSON_Delete(empty);
    } else {
        emit(j, e, s->uses, NULL, error ? error : "step failed", &job);
    }
}

/* job.result: {"metrics": [{"step", "plugin", "metrics"}...], "summary":
 * {"status", "duration_ms"}}, from what the job kept as it ran. */
static cJSON *result_of(lifecycle_job *j, int rc)
{
    cJSON *result = cJSON_CreateObject();
    cJSON *metrics = cJSON_AddArrayToObject(result, "metrics");
    for (size_t i = 0; metrics && i < j->req->wf->n_steps; i++) {
        const wf_step *s = &j->req->wf->steps[i];
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j->metrics, s->id);
        if (!cJSON_IsObject(m) || !m->child)
            continue;
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "step", s->id);
        cJSON_AddStringToObject(item, "plugin", s->uses);
        cJSON_AddItemToObject(item, "metrics", cJSON_Duplicate(m, 1));
        cJSON_AddItemToArray(metrics, item);
    }
    cJSON *summary = cJSON_AddObjectToObject(result, "summary");
    cJSON_AddStringToObject(summary, "status", rc == EVH_OK ? "succeeded" : "failed");
    int64_t took = now_ms() - j->started_ms;
    cJSON_AddItemToObject(summary, "duration_ms",
                          took >= 0 ? cJSON_CreateNumber((double)took) : cJSON_CreateNull());
    return result;
}

void lifecycle_job_end(lifecycle_job *j, int rc, const char *error)
{
    lc_event e = rc == EVH_OK ? LC_JOB_COMPLETE : LC_JOB_ERROR;
    if (wanted(j, e)) {
        lifecycle_job_part job = job_of(j, NULL);
        cJSON *result = result_of(j, rc);
        job.result = result;
        emit(j, e, NULL, NULL, rc == EVH_OK ? NULL : error ? error : "execution failed", &job);
        cJSON_Delete(result);
    }
    free(j->config_text);
    j->config_text = NULL;
    cJSON_Delete(j->metrics);
    j->metrics = NULL;
}

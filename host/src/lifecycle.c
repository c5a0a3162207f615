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

char *lifecycle_envelope(lc_event e, const char *job_id, const char *plugin_name,
                         const cJSON *metrics, const char *error, const cJSON *job,
                         const char *timestamp)
{
    cJSON *env = cJSON_CreateObject();
    cJSON *data = cJSON_CreateObject();
    if (!env || !data) {
        cJSON_Delete(env);
        cJSON_Delete(data);
        return NULL;
    }
    /* the members in the seed's order */
    cJSON_AddStringToObject(env, "event", lc_event_name(e));
    cJSON_AddStringToObject(data, "jobId", job_id);
    if (plugin_name)
        cJSON_AddStringToObject(data, "pluginName", plugin_name);
    /* metrics and job are the caller's and outlive the print: referenced,
     * not copied (a copy per event was a good part of its cost) */
    if (metrics)
        cJSON_AddItemReferenceToObject(data, "metrics", (cJSON *)metrics);
    if (error) {
        cJSON *err = cJSON_AddObjectToObject(data, "error");
        cJSON_AddStringToObject(err, "message", error);
    }
    if (job)
        cJSON_AddItemReferenceToObject(data, "job", (cJSON *)job);
    cJSON_AddItemToObject(env, "data", data);
    cJSON_AddStringToObject(env, "timestamp", timestamp);
    char *text = cJSON_PrintUnformatted(env);
    cJSON_Delete(env);
    return text;
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

/* job.config: what the job runs and why. */
static cJSON *config_of(const exec_request *req)
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
    return c;
}

/* {"id", "config", "progress": {"done", "total"[, "step"]}} */
static cJSON *job_of(lifecycle_job *j, const char *step_id)
{
    if (!j->config)
        j->config = config_of(j->req);
    cJSON *job = cJSON_CreateObject();
    if (!job)
        return NULL;
    cJSON_AddStringToObject(job, "id", j->req->execution_id);
    /* j->config outlives this object: referenced, not copied */
    if (j->config)
        cJSON_AddItemReferenceToObject(job, "config", j->config);
    else
        cJSON_AddItemToObject(job, "config", cJSON_CreateNull());
    cJSON *p = cJSON_AddObjectToObject(job, "progress");
    cJSON_AddNumberToObject(p, "done", (double)j->done);
    cJSON_AddNumberToObject(p, "total", (double)j->req->wf->n_steps);
    if (step_id)
        cJSON_AddStringToObject(p, "step", step_id);
    return job;
}

/* Hand one event out: to the publisher, then to the notifier. */
static void emit(lifecycle_job *j, lc_event e, const char *plugin_name, const cJSON *metrics,
                 const char *error, const cJSON *job)
{
    char ts[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(ts);
    char *body = lifecycle_envelope(e, j->req->execution_id, plugin_name, metrics, error, job, ts);
    char uuid[EVH_UUID_LEN + 1], msg_id[EVH_UUID_LEN + 5];
    if (!body || uuid_v4(uuid) != EVH_OK) {
        log_error("lifecycle", "%s of job %s is lost: out of memory", lc_event_name(e),
                  j->req->execution_id);
        free(body);
        return;
    }
    snprintf(msg_id, sizeof msg_id, "msg_%s", uuid);
    size_t len = strlen(body);
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
    cJSON *job = job_of(j, NULL);
    emit(j, LC_JOB_START, NULL, NULL, NULL, job);
    cJSON_Delete(job);
}

void lifecycle_plugin_start(lifecycle_job *j, size_t step)
{
    if (!wanted(j, LC_PLUGIN_START))
        return;
    const wf_step *s = &j->req->wf->steps[step];
    cJSON *job = job_of(j, s->id);
    emit(j, LC_PLUGIN_START, s->uses, NULL, NULL, job);
    cJSON_Delete(job);
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
    cJSON *job = job_of(j, s->id);
    if (rc == EVH_OK) {
        /* the metrics the step reported through the SDK, as stored with its run */
        const cJSON *kept = cJSON_GetObjectItemCaseSensitive(j->metrics, s->id);
        cJSON *empty = cJSON_IsObject(kept) ? NULL : cJSON_CreateObject();
        emit(j, e, s->uses, empty ? empty : kept, NULL, job);
        cJSON_Delete(empty);
    } else {
        emit(j, e, s->uses, NULL, error ? error : "step failed", job);
    }
    cJSON_Delete(job);
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
        cJSON *job = job_of(j, NULL);
        cJSON *result = result_of(j, rc);
        if (job && result)
            cJSON_AddItemToObject(job, "result", result);
        else
            cJSON_Delete(result);
        emit(j, e, NULL, NULL, rc == EVH_OK ? NULL : error ? error : "execution failed", job);
        cJSON_Delete(job);
    }
    cJSON_Delete(j->config);
    j->config = NULL;
    cJSON_Delete(j->metrics);
    j->metrics = NULL;
}

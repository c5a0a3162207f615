/*
 * execute.c - running one workflow execution (see execute.h).
 */
#include "execute.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <evhost/evhost.h>

#include "event.h"
#include "hostapi.h"
#include "isolate.h"
#include "lifecycle.h"
#include "evh_limits.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "recorder.h"
#include "schema.h"
#include "template.h"

/* One step plugin instance, owned by one worker, for one workflow step. */
typedef struct instance {
    const workflow *wf;
    size_t step_index;
    plugin *p;
    evh_host *host;
    void *ctx;
} instance;

struct exec_worker {
    runtime *rt;
    store *st;
    recorder *rec; /* NULL: every record written on st at once */
    uint64_t last; /* the ticket of this worker's last write to rec */
    instance *items;
    size_t count, cap;
    char stopped_by[EVH_ID_MAX_LEN + 1]; /* see exec_stopped_by */
};

/* depth + 1 of the event whose workflow runs on this thread; 0 outside. */
static _Thread_local uint32_t running_depth_plus_one;

uint32_t exec_current_chain_depth(void)
{
    return running_depth_plus_one;
}

exec_worker *exec_worker_new(runtime *rt, store *st, recorder *rec)
{
    exec_worker *w = calloc(1, sizeof *w);
    if (w) {
        w->rt = rt;
        w->st = st;
        w->rec = rec;
    }
    return w;
}

int exec_record_create(exec_worker *w, store_execution *x, int is_new)
{
    /* the same id whether or not a crash lost the first attempt's row */
    if (!x->replay_of && uuid_for_execution(x->event_id, x->trigger_id, x->id) != EVH_OK)
        return EVH_E_IO;
    if (!w->rec || !is_new)
        return store_execution_create(w->st, x);
    uint64_t t = recorder_execution_create(w->rec, x);
    if (!t)
        return EVH_E_NOMEM;
    w->last = t;
    return EVH_OK;
}

void exec_record_count(exec_worker *w, atomic_ullong *count)
{
    uint64_t t = w->rec ? recorder_count(w->rec, count, 1) : 0;
    if (t)
        w->last = t;
    else
        atomic_fetch_add(count, 1); /* no recorder, or out of memory */
}

static void set_status(exec_worker *w, const char *id, const char *status, const char *error)
{
    if (w->rec) {
        uint64_t t = recorder_execution_status(w->rec, id, status, error, NULL);
        if (t) {
            w->last = t;
            return;
        }
    }
    if (store_execution_set_status(w->st, id, status, error) != EVH_OK)
        log_error("engine", "execution %s: cannot record status '%s': %s", id, status,
                  store_errmsg(w->st));
}

void exec_worker_reset(exec_worker *w)
{
    for (size_t i = 0; i < w->count; i++) {
        if (w->items[i].host) /* NULL: abandoned after a timeout, see call_step */
            loader_step_instance_free(w->items[i].p, w->items[i].host, w->items[i].ctx);
        plugin_release(w->items[i].p); /* a replaced version may now drain (reload.h) */
    }
    w->count = 0;
}

void exec_worker_free(exec_worker *w)
{
    if (!w)
        return;
    exec_worker_reset(w);
    free(w->items);
    free(w);
}

static instance *instance_find(exec_worker *w, const workflow *wf, size_t step_index)
{
    for (size_t i = 0; i < w->count; i++) {
        if (w->items[i].wf == wf && w->items[i].step_index == step_index)
            return &w->items[i];
    }
    return NULL;
}

/* The worker's instance for this step, created (init) on first use. */
static instance *instance_get(exec_worker *w, const exec_request *req, size_t idx, char **err)
{
    instance *in = instance_find(w, req->wf, idx);
    if (in && in->host)
        return in;
    const wf_step *step = &req->wf->steps[idx];
    /* the instance holds a reference: the plugin version stays loaded
     * until exec_worker_reset, even if a hot reload replaces it */
    plugin *p = registry_acquire(req->reg, step->uses);
    if (!p || p->kind != EVH_KIND_STEP) {
        plugin_release(p);
        *err = strdup("step plugin is not loaded");
        registry_rdlock(req->reg);
        if ((p = registry_find(req->reg, step->uses)) != NULL ||
            (p = registry_find_any(req->reg, step->uses)) != NULL) {
            free(*err);
            if (asprintf(err, "step plugin '%s' is not usable: %s", step->uses,
                         p->error ? p->error : plugin_state_name(p->state)) < 0)
                *err = NULL;
        }
        registry_unlock(req->reg);
        return NULL;
    }
    char *config = cJSON_PrintUnformatted(step->with);
    evh_host *host = NULL;
    void *ctx = NULL;
    int rc = config ? loader_step_instance_new(p, w->rt, config, &host, &ctx, err)
                    : EVH_E_NOMEM;
    free(config);
    if (rc != EVH_OK) {
        plugin_release(p);
        return NULL;
    }
    if (!in) {
        if (w->count == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 8;
            instance *items = realloc(w->items, cap * sizeof *items);
            if (!items) {
                loader_step_instance_free(p, host, ctx);
                plugin_release(p);
                return NULL;
            }
            w->items = items;
            w->cap = cap;
        }
        in = &w->items[w->count++];
    } else {
        plugin_release(in->p); /* the abandoned instance's */
    }
    *in = (instance){.wf = req->wf, .step_index = idx, .p = p, .host = host, .ctx = ctx};
    return in;
}

/* ---- one call into a step, with an optional deadline -------------------- */

typedef struct call {
    const evh_step *step;
    void *ctx;
    evh_host *host; /* the instance's handle, finalized here if abandoned */
    evh_step_input in;
    evh_step_output out;
    int32_t rc;
    char *event_json, *steps_json, *config_json, *exec_id, *wf_id, *step_id;
    uint32_t depth_plus_one; /* the worker's chain depth, for the helper thread */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int abandoned;
} call;

static void call_free(call *c)
{
    free(c->out.output_json);
    free(c->out.error_message);
    free(c->event_json);
    free(c->steps_json);
    free(c->config_json);
    free(c->exec_id);
    free(c->wf_id);
    free(c->step_id);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

static void *call_thread(void *arg)
{
    call *c = arg;
    /* what the plugin emits here chains like an emit on the worker */
    running_depth_plus_one = c->depth_plus_one;
    int32_t rc = c->step->run(c->ctx, &c->in, &c->out);
    pthread_mutex_lock(&c->lock);
    c->rc = rc;
    c->done = 1;
    int abandoned = c->abandoned;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (abandoned) {
        /* The worker gave up on this call and on its instance; nobody else
         * will finalize them.  The library stays loaded while the instance
         * lives (loader_unload_one), so fini is still there to call. */
        c->step->fini(c->ctx);
        hostapi_instance_free(c->host);
        call_free(c);
    }
    return NULL;
}

/* Run with a deadline on a helper thread.  A plugin cannot be interrupted
 * safely in-process, so on timeout the call (and its instance) is abandoned:
 * the worker never uses the instance again, and the helper thread finalizes
 * it if the call ever returns. */
static int call_with_timeout(call *c, uint32_t timeout_ms, int *abandoned)
{
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int started = pthread_create(&t, &attr, call_thread, c) == 0;
    pthread_attr_destroy(&attr);
    if (!started)
        return EVH_E_NOMEM;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->lock);
    while (!c->done) {
        if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) != 0 && !c->done) {
            c->abandoned = 1;
            *abandoned = 1;
            pthread_mutex_unlock(&c->lock);
            return EVH_E_TIMEOUT;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return c->rc;
}

static call *call_new(instance *inst, const exec_request *req, size_t idx, const char *event_json,
                      const char *steps_json, const char *config_json, uint32_t attempt)
{
    call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->step = inst->p->desc->step;
    c->ctx = inst->ctx;
    c->host = inst->host;
    c->event_json = strdup(event_json);
    c->steps_json = strdup(steps_json);
    c->config_json = strdup(config_json);
    c->exec_id = strdup(req->execution_id);
    c->wf_id = strdup(req->wf->id);
    c->step_id = strdup(req->wf->steps[idx].id);
    c->depth_plus_one = running_depth_plus_one;
    if (!c->event_json || !c->steps_json || !c->config_json || !c->exec_id || !c->wf_id ||
        !c->step_id) {
        call_free(c);
        return NULL;
    }
    c->in = (evh_step_input){.struct_size = sizeof(evh_step_input),
                             .attempt = attempt,
                             .event_json = c->event_json,
                             .event_len = strlen(c->event_json),
                             .steps_json = c->steps_json,
                             .steps_len = strlen(c->steps_json),
                             .execution_id = c->exec_id,
                             .workflow_id = c->wf_id,
                             .step_id = c->step_id,
                             .config_json = c->config_json,
                             .config_len = strlen(c->config_json)};
    c->out.struct_size = sizeof(evh_step_output);
    return c;
}

static char *metrics_json(const evh_host *h)
{
    cJSON *m = cJSON_CreateObject();
    for (size_t i = 0; m && i < h->n_metrics; i++)
        cJSON_AddNumberToObject(m, h->metric_names[i], h->metric_values[i]);
    char *text = m ? cJSON_PrintUnformatted(m) : NULL;
    cJSON_Delete(m);
    return text;
}

/* ---- one step, all its attempts ----------------------------------------- */

typedef struct attempt_result {
    int rc;
    cJSON *output;  /* on success */
    char *error;    /* on failure */
    char *metrics;  /* what the step reported (JSON object text), or NULL */
    int stop;       /* on success: EVH_STEP_STOP_WORKFLOW was set */
} attempt_result;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void record(exec_worker *w, const exec_request *req, size_t idx, uint32_t attempt,
                   const char *status, const char *output, const char *error,
                   const char *metrics, int64_t started, int64_t finished)
{
    store_step_run r = {.execution_id = req->execution_id,
                        .step_id = req->wf->steps[idx].id,
                        .plugin = req->wf->steps[idx].uses,
                        .attempt = (int)attempt,
                        .status = status,
                        .output_json = output,
                        .error = error,
                        .metrics_json = metrics,
                        .started_us = started,
                        .finished_us = finished};
    if (w->rec) {
        uint64_t t = recorder_step_run(w->rec, &r);
        if (t) {
            w->last = t;
            return;
        }
    }
    if (store_step_run_put(w->st, &r) != EVH_OK)
        log_error("engine", "execution %s: cannot record step '%s': %s", req->execution_id,
                  r.step_id, store_errmsg(w->st));
}

/* A step that stopped the workflow (EVH_STEP_STOP_WORKFLOW): the steps after
 * it are recorded as skipped runs (attempt 0, no output) with this note.
 * They are written before the stopping step's own success, so that a
 * restart in between runs that step again rather than the ones it stopped;
 * stopped_before reads the note back. */
#define STOP_NOTE_PREFIX "not run: step '"
#define STOP_NOTE_SUFFIX "' stopped the workflow"

static void record_skipped_after(exec_worker *w, const exec_request *req, size_t idx)
{
    char note[EVH_ID_MAX_LEN + 64];
    snprintf(note, sizeof note, STOP_NOTE_PREFIX "%s" STOP_NOTE_SUFFIX, req->wf->steps[idx].id);
    for (size_t i = idx + 1; i < req->wf->n_steps; i++)
        record(w, req, i, 0, "skipped", NULL, note, NULL, 0, 0);
}

/* Resuming after a restart: the step that had stopped this execution (its
 * success recorded, and the later steps skipped) into w->stopped_by; 0 when
 * there is none and the execution goes on.  runs: the execution's step runs
 * as stored. */
static int stopped_before(exec_worker *w, const cJSON *runs, const cJSON *prior)
{
    const cJSON *run;
    int found = 0;
    cJSON_ArrayForEach(run, runs)
    {
        const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(run, "status"));
        const char *note = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(run, "error"));
        size_t pre = strlen(STOP_NOTE_PREFIX), len = note ? strlen(note) : 0;
        if (!status || strcmp(status, "skipped") || !note ||
            strncmp(note, STOP_NOTE_PREFIX, pre) || len <= pre + strlen(STOP_NOTE_SUFFIX))
            continue;
        size_t id_len = len - pre - strlen(STOP_NOTE_SUFFIX);
        if (id_len >= sizeof w->stopped_by || strcmp(note + pre + id_len, STOP_NOTE_SUFFIX))
            continue;
        memcpy(w->stopped_by, note + pre, id_len);
        w->stopped_by[id_len] = '\0';
        if (cJSON_GetObjectItemCaseSensitive(prior, w->stopped_by)) {
            found = 1;
            break;
        }
        w->stopped_by[0] = '\0';
    }
    return found;
}

/*
 * Resuming after a restart: the attempt step_id goes on with, from the
 * execution's stored runs.  The retry policy counts for the execution, not
 * for one process: an attempt left 'running' (the process died in it) is
 * run again under its own number, the at-least-once re-run pipeline.md
 * promises; after a 'failed' one comes the next.  Starting over at 1 ran a
 * step killed in its last retry up to twice its retry.max + 1 attempts.
 * *last_error: the error of the last failed attempt (borrowed from runs).
 * Past retry_max + 1 the step had used up its attempts before the restart.
 */
static uint32_t resume_attempt(const cJSON *runs, const char *step_id, const char **last_error)
{
    uint32_t last = 0;
    const char *status = NULL;
    const cJSON *run;
    *last_error = NULL;
    cJSON_ArrayForEach(run, runs)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(run, "step_id"));
        const cJSON *attempt = cJSON_GetObjectItemCaseSensitive(run, "attempt");
        if (!id || strcmp(id, step_id) || !cJSON_IsNumber(attempt) || attempt->valueint <= 0 ||
            (uint32_t)attempt->valueint <= last)
            continue;
        last = (uint32_t)attempt->valueint;
        status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(run, "status"));
        *last_error = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(run, "error"));
    }
    if (last == 0)
        return 1;
    return status && !strcmp(status, "running") ? last : last + 1;
}

const char *exec_stopped_by(const exec_worker *w)
{
    return w->stopped_by[0] ? w->stopped_by : NULL;
}

static attempt_result run_attempt(exec_worker *w, const exec_request *req, size_t idx,
                                  const char *event_json, const char *steps_json,
                                  const char *config_json, uint32_t attempt)
{
    attempt_result res = {EVH_E_PLUGIN, NULL, NULL, NULL, 0};
    const wf_step *step = &req->wf->steps[idx];
    int64_t started = now_us();
    record(w, req, idx, attempt, "running", NULL, NULL, NULL, started, 0);
    instance *inst = instance_get(w, req, idx, &res.error);
    if (!inst) {
        res.rc = EVH_E_PLUGIN;
        if (!res.error)
            res.error = strdup("cannot initialize the step plugin");
        goto out;
    }
    call *c = call_new(inst, req, idx, event_json, steps_json, config_json, attempt);
    if (!c) {
        res.rc = EVH_E_NOMEM;
        res.error = strdup("out of memory");
        goto out;
    }
    int abandoned = 0;
    hostapi_run_begin(inst->host);
    if (step->timeout_ms > 0 && !inst->p->iso) {
        res.rc = call_with_timeout(c, step->timeout_ms, &abandoned);
    } else {
        /* process isolation kills the plugin's process at the timeout */
        isolate_set_call_timeout(step->timeout_ms);
        res.rc = c->step->run(c->ctx, &c->in, &c->out);
    }
    if (abandoned) {
        if (asprintf(&res.error, "timed out after %u ms (the plugin did not return; its "
                                 "instance is abandoned)", step->timeout_ms) < 0)
            res.error = NULL;
        log_warn("engine", "execution %s: step '%s' (%s) %s", req->execution_id, step->id,
                 step->uses, res.error ? res.error : "timed out");
        /* The call still runs on its thread and owns the instance now. */
        inst->host = NULL;
        goto out;
    }
    hostapi_run_end(inst->host);
    if (res.rc == EVH_OK) {
        const char *text = c->out.output_json ? c->out.output_json : "{}";
        /* 0 (the field left untouched) means NUL-terminated, as the SDK says */
        size_t len = c->out.output_json && c->out.output_len != 0 &&
                             c->out.output_len != EVH_NUL_TERMINATED
                         ? c->out.output_len
                         : strlen(text);
        res.output = cJSON_ParseWithLength(text, len);
        if (!cJSON_IsObject(res.output)) {
            cJSON_Delete(res.output);
            res.output = NULL;
            res.rc = EVH_E_PLUGIN;
            res.error = strdup("step output is not a JSON object");
        }
        /* the host's struct always has flags (ABI 1.1), zeroed by call_new */
        res.stop = res.rc == EVH_OK && (c->out.flags & EVH_STEP_STOP_WORKFLOW);
    } else {
        const char *msg = c->out.error_message;
        int n = msg ? asprintf(&res.error, "%s (%s)", msg, evh_status_name(res.rc))
                    : asprintf(&res.error, "%s", evh_status_message(res.rc));
        if (n < 0)
            res.error = NULL;
    }
    char *metrics = metrics_json(inst->host);
    char *out_text = res.output ? cJSON_PrintUnformatted(res.output) : NULL;
    metrics_step_duration(req->wf->id, step->id, step->uses, (double)(now_us() - started) / 1e6);
    if (res.stop)
        record_skipped_after(w, req, idx);
    record(w, req, idx, attempt, res.rc == EVH_OK ? "succeeded" : "failed", out_text,
           res.error, metrics, started, now_us());
    free(out_text);
    res.metrics = metrics;
    call_free(c);
    return res;
out:
    metrics_step_duration(req->wf->id, step->id, step->uses, (double)(now_us() - started) / 1e6);
    record(w, req, idx, attempt, "failed", NULL, res.error, NULL, started, now_us());
    return res;
}

/* Sleep between retries, cut short when the host stops. */
static void backoff(exec_worker *w, uint32_t ms)
{
    int64_t end = monotonic_ns() + (int64_t)ms * 1000000;
    while (!atomic_load(&w->rt->stopping) && monotonic_ns() < end) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Run one step with its retries, from attempt `first` (1, or where a
 * resumed execution left it).  On success its output is added to ctx.steps,
 * and *stop says whether it stopped the workflow; *metrics (the caller
 * frees) gets what the last attempt reported.  Returns EVH_OK or the last
 * error. */
static int run_step(exec_worker *w, const exec_request *req, size_t idx, cJSON *ctx,
                    uint32_t first, char **error, int *stop, char **metrics)
{
    const wf_step *step = &req->wf->steps[idx];
    diag d;
    diag_init(&d, NULL);
    cJSON *config = template_render(step->with, ctx, &d);
    if (!config) {
        char *why = diag_join(&d);
        if (asprintf(error, "step '%s': %s", step->id, why ? why : "template error") < 0)
            *error = NULL;
        free(why);
        diag_free(&d);
        int64_t t = now_us();
        record(w, req, idx, first, "failed", NULL, *error, NULL, t, t);
        return EVH_E_CONFIG;
    }
    diag_free(&d);
    /* The run's config gets the configSchema defaults too, as init's did:
     * a plugin reads one complete config either way. */
    plugin *p = registry_acquire(req->reg, step->uses);
    if (p && p->m && p->m->config_schema)
        schema_apply_defaults(p->m->config_schema, config);
    plugin_release(p);
    char *config_json = cJSON_PrintUnformatted(config);
    cJSON_Delete(config);
    char *event_json = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(ctx, "event"));
    char *steps_json = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(ctx, "steps"));
    int rc = EVH_E_NOMEM;
    uint32_t backoff_ms = step->retry_backoff_ms;
    for (uint32_t a = 1; a < first; a++) /* the doubling goes on where it was */
        backoff_ms = backoff_ms > UINT32_MAX / 2 ? UINT32_MAX : backoff_ms * 2;
    for (uint32_t attempt = first; config_json && event_json && steps_json &&
                               attempt <= step->retry_max + 1;
         attempt++) {
        attempt_result r = run_attempt(w, req, idx, event_json, steps_json, config_json, attempt);
        rc = r.rc;
        free(*metrics);
        *metrics = r.metrics;
        if (rc == EVH_OK) {
            *stop = r.stop;
            cJSON *entry = cJSON_CreateObject();
            cJSON_AddItemToObject(entry, "output", r.output);
            cJSON_AddItemToObject(cJSON_GetObjectItemCaseSensitive(ctx, "steps"), step->id,
                                  entry);
            break;
        }
        free(*error);
        if (asprintf(error, "step '%s' (%s) failed on attempt %u of %u: %s", step->id,
                     step->uses, attempt, step->retry_max + 1,
                     r.error ? r.error : "unknown error") < 0)
            *error = NULL;
        free(r.error);
        if (attempt <= step->retry_max && !atomic_load(&w->rt->stopping)) {
            /* the backoff starts once the failed attempt is recorded, as a
             * next step does (exec_run): a crash during it then resumes with
             * the next attempt, and a crash re-runs only the attempt that
             * was running, never one the database does not know about */
            if (w->rec && recorder_wait(w->rec, w->last) != EVH_OK)
                log_warn("engine", "execution %s: the record of attempt %u of step '%s' "
                                   "could not be written; a restart may run it again",
                         req->execution_id, attempt, step->id);
            backoff(w, backoff_ms);
            backoff_ms = backoff_ms > UINT32_MAX / 2 ? UINT32_MAX : backoff_ms * 2;
        } else {
            break;
        }
    }
    free(config_json);
    free(event_json);
    free(steps_json);
    return rc;
}

static size_t first_step(const exec_request *req)
{
    if (!req->from_step)
        return 0;
    for (size_t i = 0; i < req->wf->n_steps; i++) {
        if (!strcmp(req->wf->steps[i].id, req->from_step))
            return i;
    }
    return 0;
}

int exec_run(exec_worker *w, const exec_request *req, char **error)
{
    *error = NULL;
    set_status(w, req->execution_id, "running", NULL);
    lifecycle_job lj;
    lifecycle_job_start(&lj, req->lifecycle, w->st, w->rec, req);
    cJSON *ctx = cJSON_CreateObject();
    cJSON_AddItemToObject(ctx, "event", cJSON_Duplicate(req->envelope, 1));
    cJSON_AddItemToObject(ctx, "steps", req->prior_outputs
                                            ? cJSON_Duplicate(req->prior_outputs, 1)
                                            : cJSON_CreateObject());
    running_depth_plus_one = req->chain_depth + 1;
    int rc = EVH_OK;
    const cJSON *prior = cJSON_GetObjectItemCaseSensitive(ctx, "steps");
    w->stopped_by[0] = '\0';
    /* resumed (or a replay): what the execution's steps did before */
    cJSON *stored = req->prior_outputs ? store_execution_get(w->st, req->execution_id) : NULL;
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(stored, "steps");
    /* resumed after a restart that came just after a step stopped it */
    int stopped = !req->from_step && req->prior_outputs && req->prior_outputs->child &&
                  stopped_before(w, runs, prior);
    int ran = 0;
    for (size_t i = first_step(req); !stopped && i < req->wf->n_steps; i++) {
        const wf_step *step = &req->wf->steps[i];
        if (!req->from_step && cJSON_GetObjectItemCaseSensitive(prior, step->id))
            continue; /* resumed: this step had succeeded before */
        /* The promise of docs/pipeline.md: a step's result is in the
         * database before the next step starts, so a crash re-runs only the
         * step that was running.  (The first step needs no wait: a crash
         * before its execution is recorded runs it again, as it would.) */
        if (ran++ && w->rec && recorder_wait(w->rec, w->last) != EVH_OK)
            log_warn("engine", "execution %s: the record of the step before '%s' could not "
                               "be written; a restart may run it again",
                     req->execution_id, step->id);
        cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(ctx, "steps"),
                                                step->id);
        char *step_error = NULL, *step_metrics = NULL;
        int step_stop = 0, step_rc;
        const char *last_error = NULL;
        uint32_t first = runs ? resume_attempt(runs, step->id, &last_error) : 1;
        if (first > step->retry_max + 1) {
            /* its last attempt failed just before the restart */
            step_rc = EVH_E_PLUGIN;
            if (asprintf(&step_error, "step '%s' (%s) failed on attempt %u of %u: %s", step->id,
                         step->uses, first - 1, step->retry_max + 1,
                         last_error ? last_error : "unknown error") < 0)
                step_error = NULL;
        } else {
            lifecycle_plugin_start(&lj, i);
            step_rc = run_step(w, req, i, ctx, first, &step_error, &step_stop, &step_metrics);
            lifecycle_plugin_end(&lj, i, step_rc, step_error, step_metrics);
            free(step_metrics);
        }
        if (step_rc != EVH_OK) {
            log_warn("engine", "execution %s of '%s': %s%s", req->execution_id, req->wf->id,
                     step_error ? step_error : "step failed",
                     step->on_error_continue ? " (on_error: continue)" : "");
            if (!step->on_error_continue) {
                rc = step_rc;
                free(*error);
                *error = step_error;
                break;
            }
        }
        free(step_error);
        if (step_stop) {
            snprintf(w->stopped_by, sizeof w->stopped_by, "%s", step->id);
            if (i + 1 < req->wf->n_steps)
                log_info("engine", "execution %s of '%s': step '%s' stopped the workflow; "
                                   "%zu later step(s) skipped",
                         req->execution_id, req->wf->id, step->id, req->wf->n_steps - i - 1);
            stopped = 1;
        }
    }
    running_depth_plus_one = 0;
    set_status(w, req->execution_id, rc == EVH_OK ? "succeeded" : "failed", *error);
    lifecycle_job_end(&lj, rc, *error);
    cJSON_Delete(stored);
    cJSON_Delete(ctx);
    return rc;
}

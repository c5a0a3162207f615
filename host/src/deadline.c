/*
 * deadline.c - plugin calls with a deadline (see deadline.h).
 */
#include "deadline.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "hostapi.h"

static atomic_uint init_ms = DEADLINE_INIT_DEFAULT_MS;
static atomic_uint stop_ms = DEADLINE_STOP_DEFAULT_MS;

void deadline_set_init_ms(uint32_t ms)
{
    atomic_store(&init_ms, ms);
}

uint32_t deadline_init_ms(void)
{
    return atomic_load(&init_ms);
}

void deadline_set_stop_ms(uint32_t ms)
{
    atomic_store(&stop_ms, ms);
}

uint32_t deadline_stop_ms(void)
{
    return atomic_load(&stop_ms);
}

/* ---- one call on a helper thread ------------------------------------------ */

typedef enum call_kind { CALL_INIT, CALL_STOP, CALL_STEP_INIT, CALL_STEP_VALIDATE } call_kind;

/* Shared by the caller and the helper until one of them lets go: the
 * caller when the call finished in time, the helper when it was
 * abandoned.  Everything the call uses lives here, never on the caller's
 * stack. */
typedef struct dcall {
    call_kind kind;
    const evh_source *src;
    const evh_step *step;
    evh_host *host;
    void *ctx;
    char *errmsg;
    char *field; /* validate's */
    int32_t rc;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int abandoned;
} dcall;

static void dcall_free(dcall *c)
{
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

/* After an abandoned call returned: undo what it made, as the caller would
 * have on failure, since nobody else will. */
static void finish_abandoned(dcall *c)
{
    if (c->kind == CALL_INIT && c->rc == EVH_OK)
        c->src->fini(c->ctx);
    if (c->kind == CALL_STEP_INIT && c->rc == EVH_OK)
        c->step->fini(c->ctx);
    if (c->kind != CALL_STOP) {
        free(c->errmsg);
        free(c->field);
        hostapi_instance_free(c->host);
    }
    dcall_free(c);
}

/* Make c's call, its results into c. */
static int32_t dcall_invoke(dcall *c)
{
    if (c->kind == CALL_INIT)
        return c->src->init(hostapi_table(), c->host, &c->ctx, &c->errmsg);
    if (c->kind == CALL_STEP_INIT)
        return c->step->init(hostapi_table(), c->host, &c->ctx, &c->errmsg);
    if (c->kind == CALL_STEP_VALIDATE)
        return c->step->validate(hostapi_table(), c->host, &c->field, &c->errmsg);
    c->src->stop(c->ctx);
    return EVH_OK;
}

static void *dcall_main(void *arg)
{
    dcall *c = arg;
    int32_t rc = dcall_invoke(c);
    pthread_mutex_lock(&c->lock);
    c->rc = rc;
    c->done = 1;
    int abandoned = c->abandoned;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (abandoned)
        finish_abandoned(c);
    return NULL;
}

static void deadline_after(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Run c on a detached helper thread and wait up to ms.  0: finished (c is
 * the caller's to free); -1: abandoned (c belongs to the helper); -2: the
 * thread could not be started (c is the caller's). */
static int run_with_deadline(dcall *c, uint32_t ms)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->lock, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int err = pthread_create(&t, &attr, dcall_main, c);
    pthread_attr_destroy(&attr);
    if (err != 0)
        return -2;
    struct timespec until;
    deadline_after(&until, ms);
    pthread_mutex_lock(&c->lock);
    while (!c->done) {
        if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT && !c->done) {
            c->abandoned = 1;
            pthread_mutex_unlock(&c->lock);
            return -1;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* A call under the init deadline (a source's or a step's init, a step's
 * validate): EVH_OK when it returned (its results are in c, the caller's
 * to take and free), else the caller's answer (c is gone or the helper's). */
static int32_t run_init_call(dcall *c, int *abandoned)
{
    int rc = run_with_deadline(c, deadline_init_ms());
    if (rc == -2) {
        dcall_free(c);
        return EVH_E_NOMEM;
    }
    if (rc == -1) {
        *abandoned = 1;
        return EVH_E_TIMEOUT;
    }
    return EVH_OK;
}

/* An init or a validate (proto says which) under the init deadline, or
 * made directly when there is none; its results go to ctx and field when
 * given, and to *errmsg. */
static int32_t init_call(dcall proto, void **ctx, char **field, char **errmsg, int *abandoned)
{
    *abandoned = 0;
    dcall *c = &proto;
    int32_t rc;
    if (deadline_init_ms() == 0) {
        rc = dcall_invoke(c);
    } else {
        if (!(c = malloc(sizeof *c)))
            return EVH_E_NOMEM;
        *c = proto;
        rc = run_init_call(c, abandoned);
        if (rc != EVH_OK)
            return rc;
        rc = c->rc;
    }
    if (ctx)
        *ctx = c->ctx;
    if (field)
        *field = c->field;
    *errmsg = c->errmsg;
    if (c != &proto)
        dcall_free(c);
    return rc;
}

int32_t deadline_step_init(const evh_step *s, evh_host *h, void **ctx, char **errmsg,
                           int *abandoned)
{
    return init_call((dcall){.kind = CALL_STEP_INIT, .step = s, .host = h}, ctx, NULL, errmsg,
                     abandoned);
}

int32_t deadline_step_validate(const evh_step *s, evh_host *h, char **field, char **errmsg,
                               int *abandoned)
{
    return init_call((dcall){.kind = CALL_STEP_VALIDATE, .step = s, .host = h}, NULL, field,
                     errmsg, abandoned);
}

int32_t deadline_source_init(const evh_source *s, evh_host *h, void **ctx, char **errmsg,
                             int *abandoned)
{
    return init_call((dcall){.kind = CALL_INIT, .src = s, .host = h}, ctx, NULL, errmsg,
                     abandoned);
}

int deadline_source_stop(const evh_source *s, void *ctx, uint32_t timeout_ms)
{
    if (timeout_ms == 0) {
        s->stop(ctx);
        return 0;
    }
    dcall *c = calloc(1, sizeof *c);
    if (!c) {
        s->stop(ctx); /* no memory for a helper: call it here, as before */
        return 0;
    }
    *c = (dcall){.kind = CALL_STOP, .src = s, .ctx = ctx};
    int rc = run_with_deadline(c, timeout_ms);
    if (rc == -2) {
        dcall_free(c);
        s->stop(ctx);
        return 0;
    }
    if (rc == -1)
        return -1;
    dcall_free(c);
    return 0;
}

/*
 * notify.c - the outbox's delivery thread (see notify.h).  The only user of
 * libcurl in the host.
 *
 * Two threads do everything after notifier_submit.  The storing thread
 * stores what was queued (one transaction per batch, on its own
 * connection: each lifecycle event once, and a lean deliveries row per
 * subscription taking it) and hands the stored deliveries, with their row
 * ids, straight to the delivery thread in memory.  The delivery thread runs
 * them as concurrent transfers on one curl multi handle (whose connection
 * cache gives keep-alive) and hands each batch of outcomes back to the
 * storing thread, which records it (one transaction per batch): the
 * delivery thread is the one that cannot be split, so it leaves the
 * writing of outcomes, a sixth of its time, to the other (it still writes
 * the rare things: hourly pruning, a subscription a 410 disables, attempts
 * given back at stop).  Batching is by count or a few milliseconds
 * (STORE_WAIT_NS, DONE_WAIT_NS), so that a transaction holds many rows,
 * however fast events come.  All of this is in the outbox file
 * (store_outbox_path), whose write lock the pipeline never takes.
 *
 * Each subscription has a lane, live or not.  A live lane's deliveries
 * come from memory only: the table holds nothing open of it that the
 * delivery thread does not hold, and a job's next event waits in memory
 * until the one before it is delivered.  Anything else (start-up, a failed
 * attempt, a retry through the API, a re-enabled subscription, a full
 * in-memory queue) makes the lane not live: its deliveries handed over
 * are dropped (they are in the table) and the lane's due rows are read
 * from the table (store_deliveries_due, which keeps each job's order per
 * subscriber: each row it returns is the first open one of its job, so
 * the rows of one read can all go at once; the rows on the wire it knows
 * itself and skips, so reading writes nothing), READ_AHEAD at a time and
 * started as slots free, until none is open, when it is live again.  It sleeps in
 * curl_multi_poll; the storing thread, notifier_reload and notifier_wake
 * wake it with curl_multi_wakeup.
 */
#include "notify.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include <evhost/evhost.h>

#include "event.h"
#include "log.h"
#include "metrics.h"
#include "signature.h"

/* The outbox is pruned this often (and at start). */
#define PRUNE_PERIOD_S 3600
/* The open-deliveries count is kept as rows are stored and recorded; the
 * table is counted again (a scan of every open row: ~90 ms for 800,000)
 * only after a change through the API (a retry, a deleted subscription)
 * and at most this often otherwise, in case something else changed it. */
#define COUNT_PERIOD_NS (60 * 1000000000LL)
/* The longest sleep: the thread looks at the table at least this often. */
#define MAX_SLEEP_MS 1000
/* Events stored per transaction, and the storing connection's page cache:
 * a transaction's dirty pages (bodies of ~1 KiB, the indexes' leaves) fit
 * in it, so none is spilled to the WAL and written again mid-transaction,
 * and the write lock is held briefly (measured: 4096 events, 2 MiB cache:
 * 150 to 350 ms per transaction). */
#define STORE_BATCH 512
#define STORE_CACHE_KIB (16 * 1024)
/* Queued events are stored once this many wait, or the oldest waited
 * STORE_WAIT_NS: a few milliseconds buy transactions of many rows (a
 * commit costs more than a row). */
#define STORE_EARLY 256
#define STORE_WAIT_NS (10 * 1000000LL)
/* Outcomes are recorded once this many wait, or the oldest waited
 * DONE_WAIT_NS, for the same reason. */
#define DONE_MAX 256
#define DONE_WAIT_NS (20 * 1000000LL)
/* Batches of outcomes handed to the storing thread and not yet recorded;
 * past this, the delivery thread records the next batch itself. */
#define TRANSIT_MAX 4

/* Deliveries handed over in memory that may wait for the delivery thread;
 * past this, lanes fall back to the table (which holds them all anyway). */
#define READY_MAX 262144
/* Deliveries handed over that one pass looks at (the later ones wait). */
#define READY_SCAN 4096
/* Due rows a lane that is not live reads from the table at once (beyond
 * those it holds), at least as many as there are transfers: each read
 * checks every row it returns for an earlier open event of its job, and
 * reading for the free slots only (a few rows, after skipping the many on
 * the wire) made a backlog drain at half the rate from memory. */
#define READ_AHEAD 256

/* One queued lifecycle event; once stored, shared by its deliveries
 * handed to the delivery thread (refs). */
typedef struct msg {
    struct msg *next;
    atomic_int refs;
    lc_event event;
    char *job_id;
    char *message_id;
    char *body;
    size_t body_len;
    uint64_t job_hash;
    int64_t queued_ns;
} msg;

/* A subscription's state in the delivery thread (see the top of the
 * file).  Lanes are made by either thread (under lanes_lock), never freed
 * before the notifier, and their id and next never change. */
typedef struct lane {
    struct lane *next;
    char *id;
    uint64_t hash;
    /* the delivery thread's alone */
    int live;
    int64_t live_after; /* deliveries up to this id were the table's */
    size_t n_flying, n_unrecorded;
    /* due rows read from the table (n_ahead, freed together): those to
     * start, [0, n_use), are started from i_ahead on as slots free, and
     * the table is read again once they are used up */
    store_delivery *ahead;
    size_t n_ahead, n_use, i_ahead;
    int ahead_full; /* the read returned all it was allowed: more may follow */
    signer *sig; /* the subscription's key, made ready once; NULL until signed */
} lane;

/* A stored delivery handed to the delivery thread. */
typedef struct fresh {
    int64_t id;
    msg *m;   /* a reference; NULL once started or dropped */
    lane *l;
    uint64_t key; /* (subscription, job) */
} fresh;

/* A batch of outcomes handed to the storing thread (flush_done): its
 * arrays are the delivery thread's until handed over, then read by both
 * until `recorded`, then the delivery thread's again (take_recorded). */
typedef struct done_batch {
    struct done_batch *next;    /* the storing thread's queue (under q_lock) */
    struct done_batch *transit; /* the delivery thread's list of those out */
    atomic_int recorded;        /* set by the storing thread, with ok */
    int ok;
    size_t n;
    store_delivery_outcome *o;
    char **err; /* the last_error copies o[i].error points at */
    lane **lane;
} done_batch;

/* One attempt on the wire. */
typedef struct xfer {
    CURL *easy;
    struct curl_slist *headers;
    store_delivery d; /* d.subscription_id and d.body unused when m is set */
    msg *m;           /* a reference, for a delivery handed over */
    lane *l;
    uint64_t key;
    const char *body;
    size_t body_len;
    uint32_t max_attempts;
    int64_t base_ms, cap_ms;
    int64_t started_ns;
    long retry_after_s; /* -1: none */
    char snippet[NOTIFY_ERROR_BODY_MAX + 1];
    size_t snippet_len;
    char errbuf[CURL_ERROR_SIZE];
    char error[NOTIFY_ERROR_BODY_MAX + CURL_ERROR_SIZE + 32]; /* last_error */
} xfer;

struct notifier {
    notify_options opt;
    char *outbox_path;
    store *st; /* the delivery thread's connection */
    CURLM *multi;
    pthread_t thread;
    int started;
    /* the storing thread: takes the queue into the outbox (its own
     * connection, so that storing never waits behind deliveries) */
    pthread_t store_thread;
    int store_started;
    store *wst;
    pthread_cond_t q_work; /* the storing thread: something was queued, or stop */
    atomic_int stop;
    atomic_int rescan; /* every lane back to the table (a retry, a reload) */
    int joined;      /* the thread is gone (under q_lock) */
    /* outcomes to record, for the storing thread (under q_lock); once it
     * is gone (store_gone), the delivery thread records its own */
    done_batch *out_head, *out_tail;
    int store_gone;

    /* lanes, one per subscription seen */
    pthread_mutex_t lanes_lock;
    lane *_Atomic lanes;
    /* deliveries stored and handed over (under ib_lock) */
    pthread_mutex_t ib_lock;
    fresh *ib;
    size_t ib_len, ib_cap;
    /* ... taken by the delivery thread: [rq_head, rq_len) */
    fresh *rq;
    size_t rq_head, rq_len, rq_cap;
    int64_t stop_deadline_ns;

    /* the queue notifier_submit fills */
    pthread_mutex_t q_lock;
    pthread_cond_t q_room;
    msg *q_head, *q_tail;
    size_t q_len;

    /* the subscriptions, as last loaded */
    pthread_mutex_t subs_lock;
    subscription **subs;
    size_t n_subs;
    atomic_uint wanted; /* events some enabled subscription takes */

    /* transfers */
    xfer **flying;
    size_t n_flying;
    atomic_size_t in_flight; /* n_flying, published for notifier_get_stats */
    CURL **idle; /* easy handles kept for reuse */
    size_t n_idle;
    uint64_t rng;
    /* outcomes not yet recorded (with their last_error copies) */
    store_delivery_outcome *done;
    char **done_err;
    lane **done_lane;
    size_t n_done;
    int64_t done_since_ns;
    /* batches handed over and not yet taken back (take_recorded) */
    done_batch *transit;
    size_t n_transit;
    int scan_on_record; /* read the lanes again once they are recorded */
    /* the delivery thread's: read lanes from the table now; when next */
    int need_scan;
    int64_t due_us;
    /* ids of the rows on the wire or finished but not yet recorded, which
     * the table still shows as due: skipped when it is read (open
     * addressing, 0 = free; rebuilt whenever outcomes are recorded) */
    int64_t *busy;
    size_t busy_cap;

    atomic_ullong submitted, stored, delivered, failed, dead;
    _Atomic int64_t open;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ok;

static void curl_init_once(void)
{
    curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

/* ---- signing and backoff ----------------------------------------------------- */

int notify_sign(const unsigned char *key, size_t key_len, const char *msg_id, long long timestamp,
                const char *body, size_t body_len, char **out)
{
    *out = NULL;
    signer *s = signer_new(key, key_len);
    if (!s)
        return EVH_E_NOMEM;
    int rc = signer_sign(s, msg_id, timestamp, body, body_len, out);
    signer_free(s);
    return rc;
}

int64_t notify_backoff_ms(int64_t base_ms, int64_t cap_ms, int attempt, uint64_t r)
{
    if (base_ms < 1)
        base_ms = 1;
    if (cap_ms < base_ms)
        cap_ms = base_ms;
    int64_t ceiling = base_ms;
    for (int i = 1; i < attempt && ceiling < cap_ms; i++)
        ceiling = ceiling > cap_ms / 2 ? cap_ms : ceiling * 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    return (int64_t)(r % (uint64_t)(ceiling + 1));
}

static uint64_t next_random(notifier *n)
{
    /* xorshift64*: jitter needs spread, not secrecy */
    uint64_t x = n->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    n->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* FNV-1a: keys for "same subscription and job", where a collision only
 * makes a delivery wait for an unrelated one. */
static uint64_t hash_text(const char *t)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *t; t++)
        h = (h ^ (unsigned char)*t) * 0x100000001b3ULL;
    return h;
}

/* ---- lanes --------------------------------------------------------------------- */

/* The lane of subscription id, made (not live) when there is none yet;
 * NULL when out of memory. */
static lane *lane_get(notifier *n, const char *id)
{
    for (lane *l = atomic_load(&n->lanes); l; l = l->next) {
        if (!strcmp(l->id, id))
            return l;
    }
    pthread_mutex_lock(&n->lanes_lock);
    lane *l = atomic_load(&n->lanes);
    for (; l && strcmp(l->id, id); l = l->next)
        ;
    if (!l && (l = calloc(1, sizeof *l)) && !(l->id = strdup(id))) {
        free(l);
        l = NULL;
    }
    if (l && !l->hash) {
        l->hash = hash_text(id) | 1;
        l->next = atomic_load(&n->lanes);
        atomic_store(&n->lanes, l);
    }
    pthread_mutex_unlock(&n->lanes_lock);
    return l;
}

static uint64_t lane_key(const lane *l, uint64_t job_hash)
{
    return (l->hash * 0x9E3779B97F4A7C15ULL) ^ job_hash;
}

/* ---- subscriptions ------------------------------------------------------------ */

static void free_subs(subscription **subs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        subscription_free(subs[i]);
    free(subs);
}

/* Replace the loaded subscriptions with the table's. */
static int load_subs(notifier *n, store *st)
{
    cJSON *rows = store_subscriptions_list(st);
    if (!rows)
        return EVH_E_IO;
    size_t count = (size_t)cJSON_GetArraySize(rows), k = 0;
    subscription **subs = calloc(count ? count : 1, sizeof *subs);
    if (!subs) {
        cJSON_Delete(rows);
        return EVH_E_NOMEM;
    }
    unsigned wanted = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        subscription *s = subscription_from_row(row);
        if (!s) {
            log_warn("notify", "subscription '%s' in the database is not valid; skipped",
                     cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "id")));
            continue;
        }
        if (s->enabled)
            wanted |= s->events;
        if (!lane_get(n, s->id)) { /* its deliveries wait for the next reload */
            subscription_free(s);
            continue;
        }
        subs[k++] = s;
    }
    cJSON_Delete(rows);
    pthread_mutex_lock(&n->subs_lock);
    subscription **old = n->subs;
    size_t n_old = n->n_subs;
    n->subs = subs;
    n->n_subs = k;
    atomic_store(&n->wanted, wanted);
    pthread_mutex_unlock(&n->subs_lock);
    free_subs(old, n_old);
    return EVH_OK;
}

/* host.yaml's subscriptions -> the table (origin host.yaml). */
static int sync_config(notifier *n, const notify_options *o, char **err)
{
    size_t m = o->n_config_subs;
    store_subscription *rows = calloc(m ? m : 1, sizeof *rows);
    char **texts = calloc(m ? 2 * m : 1, sizeof *texts);
    int rc = rows && texts ? EVH_OK : EVH_E_NOMEM;
    for (size_t i = 0; i < m && rc == EVH_OK; i++) {
        const subscription *s = o->config_subs[i];
        int nomem = 0;
        texts[2 * i] = subscription_events_text(s->events);
        texts[2 * i + 1] = subscription_headers_text(s, &nomem);
        if (!texts[2 * i] || nomem) {
            rc = EVH_E_NOMEM;
            break;
        }
        rows[i] = (store_subscription){.id = s->id,
                                       .url = s->url,
                                       .events_json = texts[2 * i],
                                       .token = s->token,
                                       .secret = s->secret,
                                       .headers_json = texts[2 * i + 1],
                                       .timeout_ms = s->timeout_ms,
                                       .max_attempts = s->max_attempts,
                                       .backoff_base_ms = s->backoff_base_ms,
                                       .backoff_cap_ms = s->backoff_cap_ms,
                                       .enabled = s->enabled};
    }
    if (rc == EVH_OK)
        rc = store_subscriptions_sync_config(n->st, rows, m);
    if (rc != EVH_OK && err &&
        asprintf(err, "%s: host.yaml subscriptions: %s", n->outbox_path,
                 rc == EVH_E_NOMEM ? "out of memory" : store_errmsg(n->st)) < 0)
        *err = NULL;
    for (size_t i = 0; texts && i < 2 * m; i++)
        free(texts[i]);
    free(texts);
    free(rows);
    return rc;
}

/* ---- life cycle of the notifier ------------------------------------------------ */

notifier *notifier_new(const notify_options *o, char **err)
{
    if (err)
        *err = NULL;
    pthread_once(&curl_once, curl_init_once);
    notifier *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->opt = *o;
    n->opt.config_subs = NULL;
    n->opt.n_config_subs = 0;
    if (!n->opt.concurrency)
        n->opt.concurrency = NOTIFY_DEFAULT_CONCURRENCY;
    if (!n->opt.queue)
        n->opt.queue = NOTIFY_DEFAULT_QUEUE;
    if (!n->opt.timeout_ms)
        n->opt.timeout_ms = NOTIFY_DEFAULT_TIMEOUT_MS;
    if (!n->opt.max_attempts)
        n->opt.max_attempts = NOTIFY_DEFAULT_MAX_ATTEMPTS;
    if (!n->opt.backoff_base_ms)
        n->opt.backoff_base_ms = NOTIFY_DEFAULT_BACKOFF_BASE_MS;
    if (!n->opt.backoff_cap_ms)
        n->opt.backoff_cap_ms = NOTIFY_DEFAULT_BACKOFF_CAP_MS;
    pthread_mutex_init(&n->q_lock, NULL);
    pthread_cond_init(&n->q_room, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* timed waits on monotonic_ns */
    pthread_cond_init(&n->q_work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&n->subs_lock, NULL);
    pthread_mutex_init(&n->lanes_lock, NULL);
    pthread_mutex_init(&n->ib_lock, NULL);
    n->rng = (uint64_t)monotonic_ns() ^ ((uint64_t)time(NULL) << 20) ^ (uint64_t)(uintptr_t)n;
    if (!n->rng)
        n->rng = 0x9E3779B97F4A7C15ULL;
    n->outbox_path = o->outbox_path ? strdup(o->outbox_path) : NULL;
    n->flying = calloc(n->opt.concurrency, sizeof *n->flying);
    n->idle = calloc(n->opt.concurrency, sizeof *n->idle);
    n->done = calloc(DONE_MAX, sizeof *n->done);
    n->done_err = calloc(DONE_MAX, sizeof *n->done_err);
    n->done_lane = calloc(DONE_MAX, sizeof *n->done_lane);
    n->busy_cap = 64;
    while (n->busy_cap < 2 * ((size_t)n->opt.concurrency + DONE_MAX * (TRANSIT_MAX + 1)))
        n->busy_cap *= 2;
    n->busy = calloc(n->busy_cap, sizeof *n->busy);
    if (!n->outbox_path || !n->flying || !n->idle || !n->done || !n->done_err || !n->done_lane ||
        !n->busy || !curl_ok || !(n->multi = curl_multi_init())) {
        if (err && asprintf(err, "%s", !curl_ok ? "libcurl could not be initialized"
                                                 : "out of memory") < 0)
            *err = NULL;
        notifier_free(n);
        return NULL;
    }
    curl_multi_setopt(n->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)n->opt.concurrency);
    curl_multi_setopt(n->multi, CURLMOPT_MAXCONNECTS, (long)n->opt.concurrency * 2);
    store_options so = {
        .path = n->outbox_path, .synchronous_full = o->synchronous_full, .outbox = 1};
    if (store_open(&so, &n->st, err) != EVH_OK || store_open(&so, &n->wst, err) != EVH_OK ||
        sync_config(n, o, err) != EVH_OK) {
        notifier_free(n);
        return NULL;
    }
    store_set_cache_kib(n->wst, STORE_CACHE_KIB);
    int64_t open = 0;
    if (load_subs(n, n->st) != EVH_OK || store_deliveries_count_open(n->st, &open) != EVH_OK) {
        if (err && asprintf(err, "%s: outbox: %s", n->outbox_path, store_errmsg(n->st)) < 0)
            *err = NULL;
        notifier_free(n);
        return NULL;
    }
    atomic_store(&n->open, open);
    metrics_deliveries_pending_set(open);
    if (open)
        log_info("notify", "%" PRId64 " webhook deliveries from before are still to be made",
                 open);
    return n;
}

static void *notify_main(void *arg);
static void *store_main(void *arg);
static void batch_free(done_batch *b);

int notifier_start(notifier *n)
{
    if (!n || n->started)
        return EVH_E_INVALID;
    if (pthread_create(&n->store_thread, NULL, store_main, n) != 0)
        return EVH_E_NOMEM;
    n->store_started = 1;
    if (pthread_create(&n->thread, NULL, notify_main, n) != 0)
        return EVH_E_NOMEM;
    n->started = 1;
    /* named for top -H and perf */
    pthread_setname_np(n->store_thread, "evh-outbox");
    pthread_setname_np(n->thread, "evh-deliver");
    return EVH_OK;
}

void notifier_stop(notifier *n, int deadline_ms)
{
    if (!n)
        return;
    n->stop_deadline_ns = monotonic_ns() + (int64_t)(deadline_ms > 0 ? deadline_ms : 0) * 1000000;
    pthread_mutex_lock(&n->q_lock);
    atomic_store(&n->stop, 1);
    pthread_cond_broadcast(&n->q_room);
    pthread_cond_signal(&n->q_work);
    pthread_mutex_unlock(&n->q_lock);
    if (n->store_started) {
        pthread_join(n->store_thread, NULL);
        n->store_started = 0;
    }
    if (n->started) {
        curl_multi_wakeup(n->multi);
        pthread_join(n->thread, NULL);
        n->started = 0;
    }
    pthread_mutex_lock(&n->q_lock);
    n->joined = 1;
    pthread_mutex_unlock(&n->q_lock);
}

static void msg_unref(msg *m)
{
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    free(m->job_id);
    free(m->message_id);
    free(m->body);
    free(m);
}

void notifier_free(notifier *n)
{
    if (!n)
        return;
    if (n->started)
        notifier_stop(n, 0);
    while (n->q_head) {
        msg *m = n->q_head;
        n->q_head = m->next;
        msg_unref(m);
    }
    for (size_t i = 0; i < n->n_idle; i++)
        curl_easy_cleanup(n->idle[i]);
    free(n->idle);
    free(n->flying); /* empty: the thread gave every transfer back */
    for (size_t i = 0; n->done_err && i < n->n_done; i++)
        free(n->done_err[i]);
    free(n->done);
    free(n->done_err);
    free(n->done_lane);
    while (n->transit) { /* recorded: the thread waited for them */
        done_batch *b = n->transit;
        n->transit = b->transit;
        batch_free(b);
    }
    free(n->busy);
    for (size_t i = 0; i < n->ib_len; i++)
        msg_unref(n->ib[i].m);
    free(n->ib);
    for (size_t i = n->rq_head; i < n->rq_len; i++)
        msg_unref(n->rq[i].m);
    free(n->rq);
    for (lane *l = atomic_load(&n->lanes), *next; l; l = next) {
        next = l->next;
        store_deliveries_free(l->ahead, l->n_ahead);
        signer_free(l->sig);
        free(l->id);
        free(l);
    }
    if (n->multi)
        curl_multi_cleanup(n->multi);
    store_close(n->st);
    store_close(n->wst);
    free_subs(n->subs, n->n_subs);
    pthread_mutex_destroy(&n->subs_lock);
    pthread_mutex_destroy(&n->lanes_lock);
    pthread_mutex_destroy(&n->ib_lock);
    pthread_cond_destroy(&n->q_room);
    pthread_cond_destroy(&n->q_work);
    pthread_mutex_destroy(&n->q_lock);
    free(n->outbox_path);
    free(n);
}

int notifier_wants(const notifier *n, lc_event e)
{
    return n && (atomic_load(&n->wanted) & (1u << e)) != 0;
}

int notifier_submit(notifier *n, lc_event e, const char *job_id, const char *message_id,
                    char *body, size_t body_len)
{
    msg *m = calloc(1, sizeof *m);
    if (m) {
        atomic_init(&m->refs, 1);
        m->body = body; /* taken in every case */
    }
    if (!m || !(m->job_id = strdup(job_id)) || !(m->message_id = strdup(message_id))) {
        if (m)
            msg_unref(m);
        else
            free(body);
        return EVH_E_NOMEM;
    }
    m->event = e;
    m->job_hash = hash_text(job_id);
    m->body = body;
    m->body_len = body_len;
    m->queued_ns = monotonic_ns();
    pthread_mutex_lock(&n->q_lock);
    while (n->q_len >= n->opt.queue && !atomic_load(&n->stop))
        pthread_cond_wait(&n->q_room, &n->q_lock);
    if (n->joined) {
        pthread_mutex_unlock(&n->q_lock);
        msg_unref(m);
        return EVH_E_STOPPING;
    }
    int was_empty = n->q_len == 0;
    if (n->q_tail)
        n->q_tail->next = m;
    else
        n->q_head = m;
    n->q_tail = m;
    n->q_len++;
    if (was_empty || n->q_len == STORE_EARLY)
        pthread_cond_signal(&n->q_work);
    pthread_mutex_unlock(&n->q_lock);
    atomic_fetch_add(&n->submitted, 1);
    return EVH_OK;
}

int notifier_reload(notifier *n, store *st)
{
    if (!n)
        return EVH_OK;
    int rc = load_subs(n, st);
    notifier_wake(n);
    return rc;
}

void notifier_wake(notifier *n)
{
    if (!n)
        return;
    atomic_store(&n->rescan, 1);
    curl_multi_wakeup(n->multi);
}

void notifier_get_stats(notifier *n, notifier_stats *out)
{
    memset(out, 0, sizeof *out);
    out->submitted = atomic_load(&n->submitted);
    out->stored = atomic_load(&n->stored);
    out->delivered = atomic_load(&n->delivered);
    out->failed = atomic_load(&n->failed);
    out->dead = atomic_load(&n->dead);
    out->open = atomic_load(&n->open);
    pthread_mutex_lock(&n->q_lock);
    out->queued = n->q_len;
    pthread_mutex_unlock(&n->q_lock);
    /* n_flying itself belongs to the notify thread (a plain read here raced
     * with start_due's increment: ThreadSanitizer, bench_webhooks) */
    out->in_flight = atomic_load_explicit(&n->in_flight, memory_order_relaxed);
}

/* ---- storing what was queued ------------------------------------------------------ */

/* Hand k stored deliveries to the delivery thread (references taken). */
static void hand_over(notifier *n, const fresh *f, size_t k)
{
    if (!k)
        return;
    pthread_mutex_lock(&n->ib_lock);
    if (n->ib_len + k > n->ib_cap) {
        size_t cap = n->ib_cap ? n->ib_cap : 1024;
        while (cap < n->ib_len + k)
            cap *= 2;
        fresh *grown = realloc(n->ib, cap * sizeof *grown);
        if (!grown) { /* they stay in the table: the lanes read them there */
            pthread_mutex_unlock(&n->ib_lock);
            atomic_store(&n->rescan, 1);
            return;
        }
        n->ib = grown;
        n->ib_cap = cap;
    }
    for (size_t i = 0; i < k; i++)
        atomic_fetch_add(&f[i].m->refs, 1);
    memcpy(n->ib + n->ib_len, f, k * sizeof *f);
    n->ib_len += k;
    pthread_mutex_unlock(&n->ib_lock);
}

/* Store a batch of queued events (each once) and a delivery per matching
 * enabled subscription, in one transaction, then hand the deliveries
 * over; *rows = how many deliveries were written. */
static int store_batch(notifier *n, store *st, msg *head, size_t count, size_t *rows_out)
{
    *rows_out = 0;
    pthread_mutex_lock(&n->subs_lock);
    size_t n_subs = n->n_subs, rows = 0;
    lane *lanes[n_subs ? n_subs : 1];
    unsigned events[n_subs ? n_subs : 1];
    int ok = 1;
    for (size_t i = 0; i < n_subs; i++) {
        /* lanes, not the subscriptions, which may be reloaded meanwhile */
        events[i] = n->subs[i]->enabled ? n->subs[i]->events : 0;
        lanes[i] = events[i] ? lane_get(n, n->subs[i]->id) : NULL;
        ok = ok && (lanes[i] || !events[i]);
    }
    pthread_mutex_unlock(&n->subs_lock);
    for (msg *m = head; m; m = m->next) {
        for (size_t i = 0; i < n_subs; i++)
            rows += (events[i] & (1u << m->event)) != 0;
    }
    store_outbox_message *om = calloc(count, sizeof *om);
    const char **ids = calloc(rows ? rows : 1, sizeof *ids);
    int64_t *dids = calloc(rows ? rows : 1, sizeof *dids);
    fresh *f = calloc(rows ? rows : 1, sizeof *f);
    ok = ok && om && ids && dids && f;
    size_t k = 0, j = 0;
    for (msg *m = head; ok && m; m = m->next, j++) {
        om[j] = (store_outbox_message){.event = lc_event_name(m->event),
                                       .job_id = m->job_id,
                                       .message_id = m->message_id,
                                       .body = m->body,
                                       .body_len = m->body_len,
                                       .subscription_ids = ids + k,
                                       .delivery_ids = dids + k};
        for (size_t i = 0; i < n_subs; i++) {
            if (!(events[i] & (1u << m->event)))
                continue;
            ids[k] = lanes[i]->id;
            f[k] = (fresh){.m = m, .l = lanes[i], .key = lane_key(lanes[i], m->job_hash)};
            om[j].n_subs++;
            k++;
        }
    }
    int rc = ok ? store_outbox_insert(st, om, count) : EVH_E_NOMEM;
    size_t live = 0;
    for (size_t i = 0; rc == EVH_OK && i < k; i++) {
        if (dids[i]) { /* 0: the subscription was deleted meanwhile */
            f[live] = f[i];
            f[live++].id = dids[i];
        }
    }
    if (rc == EVH_OK)
        hand_over(n, f, live);
    free(om);
    free(ids);
    free(dids);
    free(f);
    if (rc != EVH_OK) {
        log_error("notify", "storing %zu lifecycle event(s) failed: %s; trying again", count,
                  rc == EVH_E_NOMEM ? "out of memory" : store_errmsg(st));
        return rc;
    }
    atomic_fetch_add(&n->stored, live);
    atomic_fetch_add(&n->open, (int64_t)live);
    *rows_out = live;
    return EVH_OK;
}

/* Store everything queued, STORE_BATCH events per transaction.  Returns
 * the number of rows written; *failed is set when the database refused
 * (what was not stored is queued again, in front). */
static size_t drain_queue(notifier *n, int *failed)
{
    size_t total = 0;
    *failed = 0;
    for (;;) {
        pthread_mutex_lock(&n->q_lock);
        msg *head = n->q_head, *tail = head;
        size_t count = 0;
        if (head) {
            count = 1;
            while (tail->next && count < STORE_BATCH) {
                tail = tail->next;
                count++;
            }
            n->q_head = tail->next;
            if (!n->q_head)
                n->q_tail = NULL;
            tail->next = NULL;
            n->q_len -= count;
            pthread_cond_broadcast(&n->q_room);
        }
        pthread_mutex_unlock(&n->q_lock);
        if (!head)
            return total;
        size_t rows = 0;
        if (store_batch(n, n->wst, head, count, &rows) != EVH_OK) {
            pthread_mutex_lock(&n->q_lock);
            tail->next = n->q_head;
            n->q_head = head;
            if (!n->q_tail)
                n->q_tail = tail;
            n->q_len += count;
            pthread_mutex_unlock(&n->q_lock);
            *failed = 1;
            return total;
        }
        total += rows;
        for (msg *m = head, *next; m; m = next) {
            next = m->next;
            msg_unref(m);
        }
    }
}

/* ---- transfers -------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t len = size * nmemb;
    size_t room = NOTIFY_ERROR_BODY_MAX - x->snippet_len;
    size_t take = len < room ? len : room;
    for (size_t i = 0; i < take; i++) {
        unsigned char c = (unsigned char)p[i];
        x->snippet[x->snippet_len++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    x->snippet[x->snippet_len] = '\0';
    return len;
}

/* Retry-After: delay-seconds or an HTTP date. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t len = size * nmemb;
    static const char name[] = "retry-after:";
    if (len > sizeof name - 1 && len < 256 && !strncasecmp(p, name, sizeof name - 1)) {
        char value[256];
        size_t v = sizeof name - 1;
        while (v < len && (p[v] == ' ' || p[v] == '\t'))
            v++;
        size_t vl = len - v;
        while (vl && (p[v + vl - 1] == '\r' || p[v + vl - 1] == '\n' || p[v + vl - 1] == ' '))
            vl--;
        memcpy(value, p + v, vl);
        value[vl] = '\0';
        char *end = NULL;
        errno = 0;
        long secs = strtol(value, &end, 10);
        if (vl && !errno && end && !*end && secs >= 0) {
            x->retry_after_s = secs;
        } else if (vl) {
            time_t when = curl_getdate(value, NULL);
            if (when != (time_t)-1) {
                time_t now = time(NULL);
                x->retry_after_s = when > now ? (long)(when - now) : 0;
            }
        }
        if (x->retry_after_s > NOTIFY_RETRY_AFTER_MAX_S)
            x->retry_after_s = NOTIFY_RETRY_AFTER_MAX_S;
    }
    return len;
}

static void xfer_free(notifier *n, xfer *x)
{
    if (x->easy) {
        if (n->n_idle < n->opt.concurrency)
            n->idle[n->n_idle++] = x->easy;
        else
            curl_easy_cleanup(x->easy);
    }
    curl_slist_free_all(x->headers);
    if (x->m) { /* d's strings are the message's and the lane's */
        msg_unref(x->m);
    } else {
        free(x->d.subscription_id);
        free(x->d.event);
        free(x->d.job_id);
        free(x->d.message_id);
        free(x->d.body);
    }
    free(x);
}

static int add_header(struct curl_slist **list, const char *name, const char *value)
{
    char *line = NULL;
    if (asprintf(&line, "%s: %s", name, value) < 0)
        return 0;
    struct curl_slist *l = curl_slist_append(*list, line);
    /* the value may be a secret: wipe the copy before it goes */
    memset(line, 0, strlen(line));
    free(line);
    if (!l)
        return 0;
    *list = l;
    return 1;
}

/* Set up the attempt for delivery d (taken over, with m: d's strings are
 * then m's and l's, and m's reference is taken) of lane l with the
 * subscription's settings; NULL when its subscription is gone meanwhile
 * or on out-of-memory (d and m are then still the caller's). */
static xfer *xfer_new(notifier *n, store_delivery *d, msg *m, lane *l)
{
    xfer *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->retry_after_s = -1;
    x->easy = n->n_idle ? n->idle[--n->n_idle] : curl_easy_init();
    if (!x->easy) {
        free(x);
        return NULL;
    }
    curl_easy_reset(x->easy);
    char ts[32];
    long long now_s = (long long)time(NULL);
    snprintf(ts, sizeof ts, "%lld", now_s);
    int ok = 1;
    uint32_t timeout_ms = n->opt.timeout_ms;
    pthread_mutex_lock(&n->subs_lock);
    const subscription *s = NULL;
    for (size_t i = 0; i < n->n_subs && !s; i++) {
        if (!strcmp(n->subs[i]->id, d->subscription_id))
            s = n->subs[i];
    }
    if (!s || !s->enabled) {
        ok = 0;
    } else {
        if (s->timeout_ms)
            timeout_ms = s->timeout_ms;
        x->max_attempts = s->max_attempts ? s->max_attempts : n->opt.max_attempts;
        x->base_ms = s->backoff_base_ms ? s->backoff_base_ms : n->opt.backoff_base_ms;
        x->cap_ms = s->backoff_cap_ms ? s->backoff_cap_ms : n->opt.backoff_cap_ms;
        ok = curl_easy_setopt(x->easy, CURLOPT_URL, s->url) == CURLE_OK;
        ok = ok && add_header(&x->headers, "Content-Type", "application/json");
        if (ok && s->token) {
            char *auth = NULL;
            ok = asprintf(&auth, "Bearer %s", s->token) >= 0 &&
                 add_header(&x->headers, "Authorization", auth);
            if (auth) {
                memset(auth, 0, strlen(auth));
                free(auth);
            }
        }
        ok = ok && add_header(&x->headers, "webhook-id", d->message_id) &&
             add_header(&x->headers, "webhook-timestamp", ts);
        if (ok && s->key) {
            if (!signer_is_for(l->sig, s->key, s->key_len)) { /* first, or a new secret */
                signer_free(l->sig);
                if (!(l->sig = signer_new(s->key, s->key_len)))
                    log_error("notify",
                              "subscription '%s': cannot sign its deliveries (out of "
                              "memory, or OpenSSL has no HMAC-SHA256); trying again",
                              l->id);
            }
            char *sig = NULL;
            ok = l->sig &&
                 signer_sign(l->sig, d->message_id, now_s, d->body, d->body_len, &sig) == EVH_OK &&
                 add_header(&x->headers, "webhook-signature", sig);
            free(sig);
        }
        for (size_t i = 0; ok && i < s->n_headers; i++)
            ok = add_header(&x->headers, s->header_names[i], s->header_values[i]);
    }
    pthread_mutex_unlock(&n->subs_lock);
    /* no "Expect: 100-continue" round trip, whatever the body size */
    struct curl_slist *list = ok ? curl_slist_append(x->headers, "Expect:") : NULL;
    if (!list) {
        curl_slist_free_all(x->headers);
        if (n->n_idle < n->opt.concurrency)
            n->idle[n->n_idle++] = x->easy;
        else
            curl_easy_cleanup(x->easy);
        free(x);
        return NULL;
    }
    x->headers = list;
    x->d = *d;
    x->m = m;
    x->l = l;
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->d.body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->d.body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 10000 ? timeout_ms : 10000));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "evhost/" EVH_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    x->started_ns = monotonic_ns();
    return x;
}

/* ---- rows on the wire, outcomes not yet recorded ------------------------------------- */

/* Called by the notify thread after every change of n_flying. */
static void publish_flying(notifier *n)
{
    atomic_store_explicit(&n->in_flight, n->n_flying, memory_order_relaxed);
}

static size_t busy_slot(const notifier *n, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 20) & (n->busy_cap - 1);
}

static void busy_add(notifier *n, int64_t id)
{
    size_t i = busy_slot(n, id);
    while (n->busy[i] && n->busy[i] != id)
        i = (i + 1) & (n->busy_cap - 1);
    n->busy[i] = id;
}

static int busy_has(const notifier *n, int64_t id)
{
    for (size_t i = busy_slot(n, id); n->busy[i]; i = (i + 1) & (n->busy_cap - 1)) {
        if (n->busy[i] == id)
            return 1;
    }
    return 0;
}

static void batch_free(done_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->err[i]);
    free(b);
}

/* What follows the recording of n outcomes (ok: it succeeded). */
static void recorded(notifier *n, const store_delivery_outcome *o, char **err, lane **lanes,
                     size_t count, int ok)
{
    if (ok) {
        int64_t closed = 0;
        for (size_t i = 0; i < count; i++)
            closed += strcmp(o[i].status, "failed") != 0;
        atomic_fetch_sub(&n->open, closed);
    }
    for (size_t i = 0; i < count; i++) {
        free(err[i]);
        err[i] = NULL;
        lanes[i]->n_unrecorded--;
        /* a lane read from the table that found only rows waiting for
         * their outcome (scan_lanes) reads again now, whatever other
         * batches are still out: under steady load some always are */
        if (!lanes[i]->n_unrecorded && !lanes[i]->live && n->scan_on_record)
            n->need_scan = 1;
        if (!ok) {
            /* they stay open in the table and are sent again from there: at
             * least once */
            lanes[i]->live = 0;
            n->need_scan = 1;
        }
    }
}

/* Only what is on the wire now, and the outcomes not yet recorded. */
static void busy_rebuild(notifier *n)
{
    memset(n->busy, 0, n->busy_cap * sizeof *n->busy);
    for (size_t i = 0; i < n->n_flying; i++)
        busy_add(n, n->flying[i]->d.id);
    for (size_t i = 0; i < n->n_done; i++)
        busy_add(n, n->done[i].id);
    for (const done_batch *b = n->transit; b; b = b->transit)
        for (size_t i = 0; i < b->n; i++)
            busy_add(n, b->o[i].id);
}

/* Take back the batches the storing thread has recorded. */
static void take_recorded(notifier *n)
{
    size_t taken = 0;
    for (done_batch **p = &n->transit; *p;) {
        done_batch *b = *p;
        if (!atomic_load_explicit(&b->recorded, memory_order_acquire)) {
            p = &b->transit;
            continue;
        }
        *p = b->transit;
        n->n_transit--;
        recorded(n, b->o, b->err, b->lane, b->n, b->ok);
        b->n = 0; /* its error copies are freed */
        batch_free(b);
        taken++;
    }
    if (!taken)
        return;
    busy_rebuild(n);
    if (n->scan_on_record && !n->n_transit) {
        n->scan_on_record = 0;
        n->need_scan = 1;
    }
}

/* Record the outcomes waiting, here, in one transaction. */
static void record_here(notifier *n)
{
    int ok = store_deliveries_finish(n->st, n->done, n->n_done) == EVH_OK;
    if (!ok)
        log_error("notify", "recording %zu delivery outcome(s) failed: %s", n->n_done,
                  store_errmsg(n->st));
    recorded(n, n->done, n->done_err, n->done_lane, n->n_done, ok);
    n->n_done = 0;
    busy_rebuild(n);
}

/* Hand the outcomes waiting to the storing thread to record; their ids
 * stay busy until it has (take_recorded).  Records them here when it is
 * gone, TRANSIT_MAX batches are out already, or out of memory. */
static void flush_done(notifier *n)
{
    if (!n->n_done)
        return;
    size_t k = n->n_done;
    done_batch *b =
        n->n_transit < TRANSIT_MAX
            ? calloc(1, sizeof *b + k * (sizeof *b->o + sizeof *b->err + sizeof *b->lane))
            : NULL;
    if (!b) {
        record_here(n);
        return;
    }
    b->o = (store_delivery_outcome *)(b + 1);
    b->err = (char **)(b->o + k);
    b->lane = (lane **)(b->err + k);
    b->n = k;
    memcpy(b->o, n->done, k * sizeof *b->o);
    memcpy(b->err, n->done_err, k * sizeof *b->err);
    memcpy(b->lane, n->done_lane, k * sizeof *b->lane);
    pthread_mutex_lock(&n->q_lock);
    int gone = n->store_gone;
    if (!gone) {
        if (n->out_tail)
            n->out_tail->next = b;
        else
            n->out_head = b;
        n->out_tail = b;
        pthread_cond_signal(&n->q_work);
    }
    pthread_mutex_unlock(&n->q_lock);
    if (gone) {
        free(b); /* the error copies are still n->done_err's */
        record_here(n);
        return;
    }
    b->transit = n->transit;
    n->transit = b;
    n->n_transit++;
    memset(n->done_err, 0, k * sizeof *n->done_err);
    n->n_done = 0; /* their ids stay busy: busy_rebuild keeps the batch's */
}

/* The storing thread: record the batches handed over (b and what follows
 * it), each in one transaction, and wake the delivery thread. */
static void record_batches(notifier *n, done_batch *b)
{
    while (b) {
        done_batch *next = b->next;
        b->ok = store_deliveries_finish(n->wst, b->o, b->n) == EVH_OK;
        if (!b->ok)
            log_error("notify", "recording %zu delivery outcome(s) failed: %s", b->n,
                      store_errmsg(n->wst));
        atomic_store_explicit(&b->recorded, 1, memory_order_release);
        b = next;
    }
    curl_multi_wakeup(n->multi);
}

static int64_t wall_us(void);

/* Is a delivery of key's subscription and job on the wire? */
static int key_flying(const notifier *n, uint64_t key)
{
    for (size_t i = 0; i < n->n_flying; i++) {
        if (n->flying[i]->key == key)
            return 1;
    }
    return 0;
}

/* Start delivery d of lane l (see xfer_new for d and m).  1: started. */
static int start_one(notifier *n, store_delivery *d, msg *m, lane *l, uint64_t key)
{
    xfer *x = xfer_new(n, d, m, l);
    if (!x)
        return 0;
    if (curl_multi_add_handle(n->multi, x->easy) != CURLM_OK) {
        x->m = NULL; /* still the caller's, as d is */
        memset(&x->d, 0, sizeof x->d);
        xfer_free(n, x);
        return 0;
    }
    x->key = key;
    n->flying[n->n_flying++] = x;
    publish_flying(n);
    busy_add(n, x->d.id);
    l->n_flying++;
    return 1;
}

/* Rows read ahead and not started are let go (they stay in the table). */
static void ahead_drop(lane *l)
{
    store_deliveries_free(l->ahead, l->n_ahead);
    l->ahead = NULL;
    l->n_ahead = l->n_use = l->i_ahead = 0;
    l->ahead_full = 0;
}

/* Every lane reads from the table; forget: and what lanes read ahead is
 * read again (a change through the API, a retry for one, may have made
 * a row read ahead wait for an earlier one of its job). */
static void lanes_to_table(notifier *n, int forget)
{
    for (lane *l = atomic_load(&n->lanes); l; l = l->next) {
        l->live = 0;
        if (forget)
            ahead_drop(l);
    }
    n->need_scan = 1;
}

/* Take what the storing thread handed over. */
static void take_handed(notifier *n)
{
    pthread_mutex_lock(&n->ib_lock);
    size_t k = n->ib_len, waiting = n->rq_len - n->rq_head;
    if (k && waiting + k > READY_MAX) {
        /* the receivers are slower than the events: the table holds them
         * all, so memory lets them go and the lanes read the table */
        for (size_t i = 0; i < k; i++)
            msg_unref(n->ib[i].m);
        for (size_t i = n->rq_head; i < n->rq_len; i++)
            msg_unref(n->rq[i].m);
        n->rq_head = n->rq_len = 0;
        lanes_to_table(n, 0);
        k = 0;
    } else if (k) {
        if (n->rq_head) {
            memmove(n->rq, n->rq + n->rq_head, waiting * sizeof *n->rq);
            n->rq_head = 0;
            n->rq_len = waiting;
        }
        if (n->rq_len + k > n->rq_cap) {
            size_t cap = n->rq_cap ? n->rq_cap : 1024;
            while (cap < n->rq_len + k)
                cap *= 2;
            fresh *grown = realloc(n->rq, cap * sizeof *grown);
            if (!grown) {
                for (size_t i = 0; i < k; i++)
                    msg_unref(n->ib[i].m);
                lanes_to_table(n, 0);
                k = 0;
            } else {
                n->rq = grown;
                n->rq_cap = cap;
            }
        }
        if (k) {
            memcpy(n->rq + n->rq_len, n->ib, k * sizeof *n->ib);
            n->rq_len += k;
        }
    }
    n->ib_len = 0;
    pthread_mutex_unlock(&n->ib_lock);
}

/* Deliveries handed over, in the order they were stored: start those of
 * live lanes whose job has nothing on the wire for that subscription (a
 * job's next event waits for the one before it), drop those of lanes that
 * are not live (the table has them). */
static void start_ready(notifier *n)
{
    take_handed(n);
    size_t end = n->rq_len - n->rq_head > READY_SCAN ? n->rq_head + READY_SCAN : n->rq_len;
    for (size_t i = n->rq_head; i < end; i++) {
        fresh *f = &n->rq[i];
        if (!f->m)
            continue;
        if (!f->l->live || f->id <= f->l->live_after) {
            n->need_scan |= !f->l->live;
            msg_unref(f->m);
            f->m = NULL;
            continue;
        }
        if (n->n_flying >= n->opt.concurrency)
            break;
        if (key_flying(n, f->key))
            continue;
        store_delivery d = {.id = f->id,
                            .subscription_id = f->l->id,
                            .event = (char *)lc_event_name(f->m->event),
                            .job_id = f->m->job_id,
                            .message_id = f->m->message_id,
                            .body = f->m->body,
                            .body_len = f->m->body_len,
                            .attempt = 1};
        if (!start_one(n, &d, f->m, f->l, f->key)) {
            /* its subscription is disabled or gone, or memory ran out: the
             * table has it */
            f->l->live = 0;
            n->need_scan = 1;
            msg_unref(f->m);
        }
        f->m = NULL;
    }
    while (n->rq_head < n->rq_len && !n->rq[n->rq_head].m)
        n->rq_head++;
    if (n->rq_head == n->rq_len)
        n->rq_head = n->rq_len = 0;
}

static int sub_enabled(notifier *n, const char *id)
{
    int on = 0;
    pthread_mutex_lock(&n->subs_lock);
    for (size_t i = 0; i < n->n_subs; i++) {
        if (!strcmp(n->subs[i]->id, id)) {
            on = n->subs[i]->enabled;
            break;
        }
    }
    pthread_mutex_unlock(&n->subs_lock);
    return on;
}

/* Lanes that are not live: read their due rows from the table and start
 * them.  A lane with nothing open in the table and nothing of its own on
 * the wire or unrecorded goes live, taking over from the deliveries handed
 * over after the newest the table showed.  Sets need_scan (more to read
 * now) and due_us (when to read again). */
static void scan_lanes(notifier *n)
{
    n->need_scan = 0;
    n->due_us = 0;
    for (lane *l = atomic_load(&n->lanes); l; l = l->next) {
        if (l->live)
            continue;
        if (!sub_enabled(n, l->id)) {
            ahead_drop(l); /* a disabled lane is read again when it is enabled (a reload) */
            continue;
        }
        if (n->n_flying >= n->opt.concurrency) {
            n->need_scan = 1;
            return;
        }
        if (l->i_ahead == l->n_use) {
            /* nothing left of the last read: read again (the rows we hold
             * come first: read past them) */
            ahead_drop(l);
            size_t want = n->opt.concurrency > READ_AHEAD ? n->opt.concurrency : READ_AHEAD;
            size_t max = want + l->n_flying + l->n_unrecorded;
            if (store_deliveries_due(n->st, l->id, max, &l->ahead, &l->n_ahead) != EVH_OK) {
                log_error("notify", "reading due deliveries of '%s' failed: %s", l->id,
                          store_errmsg(n->st));
                int64_t later = wall_us() + 1000000;
                if (!n->due_us || later < n->due_us)
                    n->due_us = later;
                continue;
            }
            l->ahead_full = l->n_ahead == max;
            /* the rows we hold (on the wire, outcome not recorded) are set
             * aside now, while they are ours: one whose outcome is recorded
             * before the lane gets to it would look open, and go twice */
            size_t use = 0;
            for (size_t i = 0; i < l->n_ahead; i++) {
                if (busy_has(n, l->ahead[i].id))
                    continue;
                store_delivery keep = l->ahead[i];
                l->ahead[i] = l->ahead[use];
                l->ahead[use++] = keep;
            }
            l->n_use = use;
        }
        int refused = 0;
        size_t started = 0;
        while (l->i_ahead < l->n_use && n->n_flying < n->opt.concurrency) {
            store_delivery *d = &l->ahead[l->i_ahead++];
            if (!start_one(n, d, NULL, l, 0)) {
                refused = 1; /* disabled meanwhile, or out of memory */
                break;
            }
            memset(d, 0, sizeof *d); /* owned by the transfer now */
            started++;
        }
        if (refused) {
            ahead_drop(l); /* they stay in the table */
        } else if (l->i_ahead < l->n_use) {
            continue; /* no slot left: the rest as transfers finish (collect_done) */
        } else {
            int full = l->ahead_full;
            ahead_drop(l);
            if (full) {
                n->need_scan = 1;
                continue;
            }
        }
        if (started)
            continue; /* read again as they finish (collect_done) */
        if (l->n_unrecorded) {
            /* what was read may be rows whose outcome is not recorded yet:
             * read again once they are */
            flush_done(n);
            if (n->n_transit)
                n->scan_on_record = 1;
            else
                n->need_scan = 1;
            continue;
        }
        int idle = 0;
        int64_t last = 0, due = 0;
        if (!refused && !l->n_flying &&
            store_deliveries_idle(n->st, l->id, &idle, &last) == EVH_OK && idle) {
            l->live = 1;
            l->live_after = last;
            continue;
        }
        if (refused || store_deliveries_next_due(n->st, l->id, &due) != EVH_OK)
            due = wall_us() + 1000000; /* look again in a second */
        if (due && (!n->due_us || due < n->due_us))
            n->due_us = due;
    }
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The subscription answered 410 Gone: disable it. */
static void disable_gone(notifier *n, const char *sub_id)
{
    char now[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(now);
    char reason[96];
    snprintf(reason, sizeof reason, "the receiver answered 410 Gone at %s", now);
    if (store_subscription_set_enabled(n->st, sub_id, 0, reason) != EVH_OK) {
        log_error("notify", "cannot disable subscription '%s': %s", sub_id, store_errmsg(n->st));
        return;
    }
    log_warn("notify", "subscription '%s' disabled: %s (PATCH /api/subscriptions/%s "
                       "{\"enabled\": true} enables it again)",
             sub_id, reason, sub_id);
    load_subs(n, n->st);
}

/* Take every finished transfer's outcome into n->done.  Returns how many. */
static size_t collect_done(notifier *n)
{
    size_t count = 0;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(n->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        if (n->n_done == DONE_MAX)
            flush_done(n);
        xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode res = m->data.result;
        curl_multi_remove_handle(n->multi, m->easy_handle);
        long code = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
        double seconds = (double)(monotonic_ns() - x->started_ns) / 1e9;
        if (!n->n_done)
            n->done_since_ns = monotonic_ns();
        size_t k = n->n_done++;
        count++;
        lane *l = x->l;
        l->n_flying--;
        l->n_unrecorded++;
        n->done_lane[k] = l;
        store_delivery_outcome *o = &n->done[k];
        *o = (store_delivery_outcome){.id = x->d.id, .http_status = (int)code,
                                      .attempt = x->d.attempt};
        const char *outcome;
        int gone = 0;
        if (res == CURLE_OK && code >= 200 && code < 300) {
            o->status = outcome = "delivered";
        } else {
            if (res != CURLE_OK)
                snprintf(x->error, sizeof x->error, "%s",
                         x->errbuf[0] ? x->errbuf : curl_easy_strerror(res));
            else
                snprintf(x->error, sizeof x->error, "HTTP %ld%s%s", code,
                         x->snippet_len ? ": " : "", x->snippet);
            o->error = n->done_err[k] = strdup(x->error);
            if (res == CURLE_OK && code == 410) {
                o->status = outcome = "dead";
                gone = 1;
            } else if ((uint32_t)x->d.attempt >= x->max_attempts) {
                o->status = outcome = "dead";
            } else {
                o->status = outcome = "failed";
                int64_t delay_ms =
                    x->retry_after_s >= 0
                        ? (int64_t)x->retry_after_s * 1000
                        : notify_backoff_ms(x->base_ms, x->cap_ms, x->d.attempt, next_random(n));
                o->next_attempt_us = wall_us() + delay_ms * 1000;
            }
        }
        metrics_delivery(x->d.subscription_id, outcome, seconds);
        if (!strcmp(outcome, "delivered")) {
            atomic_fetch_add(&n->delivered, 1);
        } else if (!strcmp(outcome, "failed")) {
            atomic_fetch_add(&n->failed, 1);
            log_debug("notify", "delivery %lld (%s of job %s) to '%s', attempt %d of %u: %s",
                      (long long)x->d.id, x->d.event, x->d.job_id, x->d.subscription_id,
                      x->d.attempt, x->max_attempts, x->error);
        } else {
            atomic_fetch_add(&n->dead, 1);
            log_warn("notify", "delivery %lld (%s of job %s) to '%s' is a dead letter after %d "
                               "attempt(s): %s",
                     (long long)x->d.id, x->d.event, x->d.job_id, x->d.subscription_id,
                     x->d.attempt, x->error);
        }
        if (strcmp(outcome, "delivered"))
            l->live = 0; /* the table orders what follows (retries, the job's later events) */
        if (!l->live)
            n->need_scan = 1;
        if (gone)
            disable_gone(n, x->d.subscription_id);
        for (size_t j = 0; j < n->n_flying; j++) {
            if (n->flying[j] == x) {
                n->flying[j] = n->flying[--n->n_flying];
                publish_flying(n);
                break;
            }
        }
        xfer_free(n, x); /* its id stays busy until the outcome is recorded */
    }
    return count;
}

/* Past the stop deadline: what is still on the wire goes back as pending,
 * the attempt not counted, due at once after the next start. */
static void give_back_flying(notifier *n)
{
    flush_done(n);
    if (!n->n_flying)
        return;
    store_delivery_outcome out[n->n_flying];
    for (size_t i = 0; i < n->n_flying; i++) {
        curl_multi_remove_handle(n->multi, n->flying[i]->easy);
        out[i] = (store_delivery_outcome){.id = n->flying[i]->d.id, .status = "pending"};
    }
    if (store_deliveries_finish(n->st, out, n->n_flying) != EVH_OK)
        log_error("notify", "giving back %zu delivery attempt(s) failed: %s", n->n_flying,
                  store_errmsg(n->st));
    else
        log_warn("notify", "stop deadline reached: %zu delivery attempt(s) given back for the "
                           "next start",
                 n->n_flying);
    for (size_t i = 0; i < n->n_flying; i++) {
        n->flying[i]->l->n_flying--;
        xfer_free(n, n->flying[i]);
    }
    n->n_flying = 0;
    publish_flying(n);
}

static void recount(notifier *n)
{
    int64_t open = 0;
    if (store_deliveries_count_open(n->st, &open) == EVH_OK) {
        atomic_store(&n->open, open);
        metrics_deliveries_pending_set(open);
    }
}

static void *notify_main(void *arg)
{
    notifier *n = arg;
    int recount_now = 0; /* notifier_new counted */
    int64_t last_count_ns = monotonic_ns(), last_prune_ns = 0;
    n->need_scan = 1; /* every lane starts from the table */
    for (;;) {
        int stopping = atomic_load(&n->stop);
        int64_t now_ns = monotonic_ns();
        take_recorded(n);
        if (n->opt.retention_days > 0 && (last_prune_ns == 0 ||
                                          now_ns - last_prune_ns > PRUNE_PERIOD_S * 1000000000LL)) {
            size_t pruned = 0;
            if (store_deliveries_prune(n->st, (int64_t)n->opt.retention_days * 86400, &pruned) ==
                    EVH_OK &&
                pruned)
                log_info("notify", "%zu old delivered or dead deliveries removed", pruned);
            last_prune_ns = now_ns;
        }
        int timeout_ms = MAX_SLEEP_MS;
        if (atomic_exchange(&n->rescan, 0)) { /* a retry, a reload */
            lanes_to_table(n, 1);
            recount_now = 1;
        }
        if (n->due_us && wall_us() >= n->due_us)
            n->need_scan = 1;
        if (n->n_done && (n->n_done >= DONE_MAX || stopping ||
                          now_ns - n->done_since_ns >= DONE_WAIT_NS))
            flush_done(n);
        if (stopping) {
            /* the storing thread has stored the queue (notifier_stop joins it
             * first); what is stored and not on the wire goes out after the
             * next start */
            if (n->n_flying == 0 || now_ns >= n->stop_deadline_ns) {
                give_back_flying(n);
                break;
            }
        } else {
            start_ready(n);
            if (n->need_scan && n->n_flying < n->opt.concurrency)
                scan_lanes(n);
        }
        int running = 0;
        curl_multi_perform(n->multi, &running);
        size_t finished = collect_done(n);
        int waiting = n->rq_len > n->rq_head;
        if (!stopping && n->n_flying < n->opt.concurrency &&
            (n->need_scan || (finished && waiting))) {
            timeout_ms = 0;
        } else if (n->due_us && !stopping) {
            int64_t wait = (n->due_us - wall_us()) / 1000;
            if (wait < timeout_ms)
                timeout_ms = wait < 0 ? 0 : (int)wait + 1;
        }
        if (n->n_done) {
            int64_t wait = (n->done_since_ns + DONE_WAIT_NS - monotonic_ns()) / 1000000;
            if (wait < timeout_ms)
                timeout_ms = wait < 0 ? 0 : (int)wait + 1;
        }
        if (stopping && n->n_flying) {
            int64_t left = (n->stop_deadline_ns - monotonic_ns()) / 1000000;
            if (left < timeout_ms)
                timeout_ms = left < 0 ? 0 : (int)left + 1;
        }
        if (!n->n_done && !n->n_transit &&
            (recount_now || now_ns - last_count_ns > COUNT_PERIOD_NS)) {
            recount(n);
            last_count_ns = now_ns;
            recount_now = 0;
        } else {
            metrics_deliveries_pending_set(atomic_load(&n->open));
        }
        if (timeout_ms > 0)
            curl_multi_poll(n->multi, NULL, 0, timeout_ms, NULL);
    }
    flush_done(n);
    /* the storing thread records what was handed to it before it ends */
    while (n->n_transit) {
        take_recorded(n);
        if (n->n_transit)
            curl_multi_poll(n->multi, NULL, 0, 10, NULL);
    }
    recount(n);
    return NULL;
}

/* The storing thread: the delivery thread's outcomes as soon as they are
 * handed over (flush_done), and the queue into the outbox, STORE_EARLY
 * events or STORE_WAIT_NS at a time (a few milliseconds buy transactions of
 * many rows), then a wake-up for the delivery thread.  At stop it stores
 * what is left, trying until the stop deadline if the database refuses. */
static void *store_main(void *arg)
{
    notifier *n = arg;
    pthread_mutex_lock(&n->q_lock);
    for (;;) {
        int stopping = atomic_load(&n->stop);
        if (n->out_head) { /* outcomes first: the delivery thread waits for them */
            done_batch *b = n->out_head;
            n->out_head = n->out_tail = NULL;
            pthread_mutex_unlock(&n->q_lock);
            record_batches(n, b);
            pthread_mutex_lock(&n->q_lock);
            continue;
        }
        if (!n->q_len) {
            if (stopping)
                break;
            pthread_cond_wait(&n->q_work, &n->q_lock);
            continue;
        }
        int64_t ripe_ns = n->q_head->queued_ns + STORE_WAIT_NS;
        if (!stopping && n->q_len < STORE_EARLY && monotonic_ns() < ripe_ns) {
            struct timespec until = {(time_t)(ripe_ns / 1000000000LL),
                                     (long)(ripe_ns % 1000000000LL)};
            pthread_cond_timedwait(&n->q_work, &n->q_lock, &until);
            continue;
        }
        pthread_mutex_unlock(&n->q_lock);
        int failed = 0;
        if (drain_queue(n, &failed))
            curl_multi_wakeup(n->multi); /* deliveries were handed over */
        if (failed && stopping && monotonic_ns() >= n->stop_deadline_ns) {
            pthread_mutex_lock(&n->q_lock);
            log_error("notify", "stopping: %zu lifecycle event(s) could not be stored before "
                                "the deadline; they are lost", n->q_len);
            break;
        }
        if (failed) { /* the database refused: try again soon */
            struct timespec pause = {0, 100 * 1000000L};
            nanosleep(&pause, NULL);
        }
        pthread_mutex_lock(&n->q_lock);
    }
    /* from now on the delivery thread records its own outcomes */
    n->store_gone = 1;
    done_batch *left = n->out_head;
    n->out_head = n->out_tail = NULL;
    pthread_mutex_unlock(&n->q_lock);
    record_batches(n, left);
    return NULL;
}

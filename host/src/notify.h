/*
 * notify.h - outbound webhooks: the outbox and its delivery thread (libcurl
 * lives behind this file only).
 *
 *   pipeline threads --lifecycle.c--> notifier_submit (bounded queue, no I/O)
 *        --> storing thread: matches subscriptions, stores each event once
 *            (outbox_messages) and a deliveries row per (event,
 *            subscription), in one transaction per batch (the durable
 *            outbox, a database file of its own: store_outbox_path), and
 *            hands those rows over in memory
 *        --> delivery thread: sends them through curl's multi interface:
 *            concurrent, keep-alive, bounded (notifications.concurrency),
 *            and hands the outcomes back to the storing thread to record
 *
 * Nothing here runs on a pipeline thread except notifier_submit and the
 * notifier_wants check, so a slow, hanging or dead receiver never slows
 * event processing: the worst it can do is grow the deliveries table.
 *
 * A delivery is an HTTP POST of the envelope (lifecycle.h) with
 *   Content-Type: application/json
 *   Authorization: Bearer <token>                  (when the subscription has one)
 *   webhook-id: <message id>                       (the same on every retry)
 *   webhook-timestamp: <unix seconds of this attempt>
 *   webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">  (with a secret)
 *   <the subscription's extra headers>
 * 2xx is delivered.  410 Gone makes the delivery dead and disables the
 * subscription (PATCH enabled: true brings it back).  Anything else (other
 * statuses, connection errors, the timeout, redirects, which are not
 * followed) is retried after an exponential backoff with full jitter,
 * random(0, min(cap, base * 2^(attempt-1))), or after Retry-After when the
 * receiver sent one (seconds or an HTTP date, at most
 * NOTIFY_RETRY_AFTER_MAX_S); after max_attempts the delivery is dead (a
 * dead letter, which POST /api/deliveries/{id}/retry sends again).
 *
 * Order: a job's events reach each subscriber in the order they happened;
 * a later one waits until the earlier ones are delivered or dead (in
 * memory, or store_deliveries_due when read from the table).  Delivery is
 * at least once: an attempt in flight or not yet recorded when the process
 * ends is made again after the restart, with the same webhook-id, which
 * receivers use to drop duplicates.
 */
#ifndef EVH_NOTIFY_H
#define EVH_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "subscription.h"

#define NOTIFY_DEFAULT_CONCURRENCY 16
#define NOTIFY_DEFAULT_QUEUE 65536
#define NOTIFY_DEFAULT_TIMEOUT_MS 10000
#define NOTIFY_DEFAULT_MAX_ATTEMPTS 8
#define NOTIFY_DEFAULT_BACKOFF_BASE_MS 1000
#define NOTIFY_DEFAULT_BACKOFF_CAP_MS 3600000
/* A Retry-After further away than this is cut to it. */
#define NOTIFY_RETRY_AFTER_MAX_S 86400
/* Bytes of a failed answer's body kept in last_error. */
#define NOTIFY_ERROR_BODY_MAX 200

typedef struct notify_options {
    /* the outbox file (store_outbox_path of the main database, which must
     * have been opened first: opening it moves an older database's outbox
     * there) */
    const char *outbox_path;
    int synchronous_full;
    unsigned concurrency;   /* transfers at once; 0: NOTIFY_DEFAULT_CONCURRENCY */
    size_t queue;           /* events waiting to be stored; 0: NOTIFY_DEFAULT_QUEUE */
    /* for subscriptions that do not set their own; 0: the NOTIFY_DEFAULT_* */
    uint32_t timeout_ms, max_attempts;
    int64_t backoff_base_ms, backoff_cap_ms;
    int retention_days;     /* delivered and dead rows older than this go; 0: kept */
    /* host.yaml's subscriptions (borrowed for notifier_new only) */
    subscription *const *config_subs;
    size_t n_config_subs;
} notify_options;

typedef struct notifier notifier;

/* Open the outbox file (its own connections), bring the host.yaml subscriptions
 * into the subscriptions table (store_subscriptions_sync_config), make
 * attempts a previous process left in flight due again, and load the
 * subscriptions.  NULL and a malloc'd reason in *err on failure. */
notifier *notifier_new(const notify_options *o, char **err);
/* Start the delivery thread. */
int notifier_start(notifier *n);
/* Store what is queued (always: it is only database work), let transfers in
 * flight finish up to deadline_ms, give the rest back as pending (they go
 * out after the next start), and join the thread.  Call after the pipeline
 * stopped, so that no more events come. */
void notifier_stop(notifier *n, int deadline_ms);
void notifier_free(notifier *n);

/* Does any enabled subscription take event e?  Lock-free: the pipeline
 * asks before building an envelope nobody wants. */
int notifier_wants(const notifier *n, lc_event e);

/*
 * Queue one lifecycle event for every enabled subscription that takes it.
 * body (malloc'd, the envelope) is taken in every case; job_id and
 * message_id are copied.  Waits while the queue is full (the delivery
 * thread empties it at database speed, whatever the receivers do).
 * EVH_OK, EVH_E_STOPPING (after notifier_stop), EVH_E_NOMEM.
 */
int notifier_submit(notifier *n, lc_event e, const char *job_id, const char *message_id,
                    char *body, size_t body_len);

/* Read the subscriptions again from the database through st (the caller's
 * connection), after the API changed one; wakes the delivery thread. */
int notifier_reload(notifier *n, store *st);
/* Look at the outbox now (after a retry through the API). */
void notifier_wake(notifier *n);

typedef struct notifier_stats {
    uint64_t submitted;  /* lifecycle events taken by notifier_submit */
    uint64_t stored;     /* deliveries rows written */
    uint64_t delivered, failed, dead; /* attempts, by outcome */
    int64_t open;        /* deliveries pending or failed, as last counted */
    size_t queued;       /* events waiting to be stored */
    size_t in_flight;    /* attempts on the wire */
} notifier_stats;
void notifier_get_stats(notifier *n, notifier_stats *out);

/*
 * The Standard Webhooks signature of one attempt: "v1," followed by the
 * base64 HMAC-SHA256, keyed with key, of "<msg_id>.<timestamp>.<body>",
 * into out (malloc'd).  EVH_OK or EVH_E_NOMEM.  Exposed for tests.
 */
int notify_sign(const unsigned char *key, size_t key_len, const char *msg_id, long long timestamp,
                const char *body, size_t body_len, char **out);

/* The delay before attempt `attempt` + 1 (attempt >= 1) with full jitter:
 * a random value from 0 to min(cap_ms, base_ms * 2^(attempt-1)).  r is a
 * random number (the caller's generator).  Exposed for tests. */
int64_t notify_backoff_ms(int64_t base_ms, int64_t cap_ms, int attempt, uint64_t r);

#endif

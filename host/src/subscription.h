/*
 * subscription.h - an outbound webhook subscription: where lifecycle events
 * go, which ones, and how (token, signing secret, timeout, attempts,
 * backoff, extra headers).
 *
 * One validator serves host.yaml (notifications.subscriptions, read through
 * yamldoc as a cJSON tree) and the API (/api/subscriptions bodies), so the
 * two accept exactly the same thing.  No I/O here: the store keeps the rows
 * (store.h), the notifier sends (notify.h).
 *
 * Secrets.  token, secret and every extra header value are secrets: no
 * message built here ever contains them, and subscription_to_json shows them
 * as "***" when asked to redact.  The signing secret follows Standard
 * Webhooks: "whsec_<base64>" is base64-decoded and the bytes are the HMAC
 * key; any other text is used as the key as it is (its bytes).
 */
#ifndef EVH_SUBSCRIPTION_H
#define EVH_SUBSCRIPTION_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "diag.h"

/* The lifecycle events, in the order the seed lists them. */
typedef enum lc_event {
    LC_JOB_START = 0,
    LC_JOB_COMPLETE,
    LC_JOB_ERROR,
    LC_PLUGIN_START,
    LC_PLUGIN_COMPLETE,
    LC_PLUGIN_ERROR,
    LC_EVENT_COUNT
} lc_event;

#define LC_ALL_EVENTS ((1u << LC_EVENT_COUNT) - 1u)

/* "jobStart", ... ; NULL for an out-of-range value. */
const char *lc_event_name(lc_event e);
/* The event named name, or -1. */
int lc_event_parse(const char *name);

/* What a redacted value reads in API output; a PUT or PATCH that sends it
 * back for token, secret or a header value keeps the stored value. */
#define SUBSCRIPTION_REDACTED "***"

/* Limits of one subscription's fields. */
#define SUBSCRIPTION_URL_MAX 2048
#define SUBSCRIPTION_SECRET_MAX 1024
#define SUBSCRIPTION_HEADER_VALUE_MAX 4096
#define SUBSCRIPTION_MAX_HEADERS 32
#define SUBSCRIPTION_TIMEOUT_MAX_MS 300000
#define SUBSCRIPTION_MAX_ATTEMPTS_MAX 100
#define SUBSCRIPTION_BACKOFF_MAX_MS (7LL * 24 * 3600 * 1000)

/* Every string is owned (malloc'd); subscription_free releases them. */
typedef struct subscription {
    char *id;
    char *url;
    unsigned events;         /* bit (1u << lc_event) per event */
    char *token;             /* NULL: no Authorization header */
    char *secret;            /* as given; NULL: requests are not signed */
    unsigned char *key;      /* the HMAC key the secret stands for */
    size_t key_len;
    /* 0: the notifier's default (notifications.* in host.yaml) */
    uint32_t timeout_ms, max_attempts;
    int64_t backoff_base_ms, backoff_cap_ms;
    char **header_names, **header_values;
    size_t n_headers;
    int enabled;
    char *disabled_reason;   /* why it was disabled (410 Gone), or NULL */
    char *origin;            /* "api" or "host.yaml" */
    char *created_at, *updated_at; /* NULL until stored */
} subscription;

/*
 * Check spec (a JSON object: url, events, token, secret, timeout_ms,
 * max_attempts, backoff_base_ms, backoff_cap_ms, headers, enabled, and id
 * when id_required) and build a subscription from it.  Every problem goes
 * to d with its path under base ("" at the top), and then NULL is returned.
 * The read-only fields of API output (origin, disabled_reason, created_at,
 * updated_at) are accepted and ignored when allow_read_only is set, so that
 * GET -> edit -> PUT works.  Messages never contain secret values.
 */
subscription *subscription_from_json(const cJSON *spec, int id_required, int allow_read_only,
                                     diag *d, const char *base);

/* A stored row (store_subscriptions_list) back into a subscription; the row
 * holds the same keys plus enabled, disabled_reason, origin and times.  NULL
 * when the row is unusable (written by hand?) or on out-of-memory. */
subscription *subscription_from_row(const cJSON *row);

/* The public view {id, url, events ("all" or a list), token, secret,
 * timeout_ms, max_attempts, backoff_base_ms, backoff_cap_ms, headers,
 * enabled, disabled_reason, origin, created_at, updated_at}; with redact,
 * token, secret and header values read "***" (null stays null). */
cJSON *subscription_to_json(const subscription *s, int redact);

/* "all" or ["jobStart", ...] (new node). */
cJSON *subscription_events_json(unsigned events);

/* The store's text forms (malloc'd): events as JSON ("\"all\"" or a list),
 * headers as a JSON object (NULL when there are none, or on out-of-memory:
 * *nomem says which). */
char *subscription_events_text(unsigned events);
char *subscription_headers_text(const subscription *s, int *nomem);

/* A deep copy; NULL on out-of-memory. */
subscription *subscription_dup(const subscription *s);
void subscription_free(subscription *s);

/* 1 when id is 1 to 128 letters, digits, '.', '_' or '-'. */
int subscription_id_valid(const char *id);

#endif

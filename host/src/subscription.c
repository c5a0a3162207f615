/*
 * subscription.c - the subscription model and its validator (see
 * subscription.h).
 */
#include "subscription.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "evh_limits.h"
#include "jsonutil.h"

static const char *const EVENT_NAMES[LC_EVENT_COUNT] = {
    [LC_JOB_START] = "jobStart",           [LC_JOB_COMPLETE] = "jobComplete",
    [LC_JOB_ERROR] = "jobError",           [LC_PLUGIN_START] = "pluginStart",
    [LC_PLUGIN_COMPLETE] = "pluginComplete", [LC_PLUGIN_ERROR] = "pluginError",
};

const char *lc_event_name(lc_event e)
{
    return (unsigned)e < LC_EVENT_COUNT ? EVENT_NAMES[e] : NULL;
}

int lc_event_parse(const char *name)
{
    for (int i = 0; name && i < LC_EVENT_COUNT; i++) {
        if (!strcmp(name, EVENT_NAMES[i]))
            return i;
    }
    return -1;
}

int subscription_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > EVH_ID_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return 0;
    }
    return 1;
}

/* ---- small checks ------------------------------------------------------------ */

/* No control characters at all (CR and LF would split a header: header
 * injection), and no spaces when no_space. */
static int clean_text(const char *s, int no_space)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || (no_space && *p == ' '))
            return 0;
    }
    return 1;
}

/* An RFC 9110 token: a header name. */
static int header_name_valid(const char *s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && !strchr(extra, c))
            return 0;
    }
    return 1;
}

/* Headers the notifier sets itself (or that would break the request). */
static int header_reserved(const char *name)
{
    static const char *const reserved[] = {
        "content-type", "content-length", "host", "transfer-encoding", "connection",
        "expect",       "webhook-id",     "webhook-timestamp", "webhook-signature", NULL};
    for (size_t i = 0; reserved[i]; i++) {
        if (!strcasecmp(name, reserved[i]))
            return 1;
    }
    return 0;
}

/* "whsec_<base64>" -> its bytes; anything else -> its own bytes.  0 when a
 * whsec_ secret is not base64 (or decodes to nothing). */
static int secret_key(const char *secret, unsigned char **key, size_t *len)
{
    *key = NULL;
    *len = 0;
    if (strncmp(secret, "whsec_", 6) != 0) {
        size_t n = strlen(secret);
        *key = malloc(n ? n : 1);
        if (!*key)
            return -1;
        memcpy(*key, secret, n);
        *len = n;
        return 1;
    }
    const char *b64 = secret + 6;
    size_t n = strlen(b64);
    if (n == 0 || n % 4 != 0)
        return 0;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    if (!out)
        return -1;
    int got = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)n);
    if (got <= 0) {
        free(out);
        return 0;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes */
    size_t pad = (b64[n - 1] == '=') + (n >= 2 && b64[n - 2] == '=');
    if ((size_t)got <= pad) {
        free(out);
        return 0;
    }
    *key = out;
    *len = (size_t)got - pad;
    return 1;
}

static char *at(const char *base, const char *key)
{
    return path_key(base, key);
}

/* Integer field in [lo, hi]; 1 when present and fine, 0 when absent, -1 when
 * wrong (reported). */
static int int_field(const cJSON *spec, const char *key, long long lo, long long hi,
                     long long *out, diag *d, const char *base)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    double n = cJSON_IsNumber(v) ? v->valuedouble : -1e300;
    if (!(n >= (double)lo && n <= (double)hi && n == (double)(long long)n)) {
        char *p = at(base, key);
        diag_add(d, p, "must be an integer from %lld to %lld", lo, hi);
        free(p);
        return -1;
    }
    *out = (long long)n;
    return 1;
}

/* A secret string field (token, secret): its value is never echoed. */
static const char *secret_field(const cJSON *spec, const char *key, size_t max, diag *d,
                                const char *base)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, key);
    if (!v || cJSON_IsNull(v))
        return NULL;
    char *p = at(base, key);
    const char *out = NULL;
    if (!cJSON_IsString(v) || !v->valuestring[0])
        diag_add(d, p, "must be a non-empty string (or null for none)");
    else if (strlen(v->valuestring) > max)
        diag_add(d, p, "must be at most %zu characters", max);
    else if (!clean_text(v->valuestring, 0))
        diag_add(d, p, "must not contain control characters (line breaks included)");
    else
        out = v->valuestring;
    free(p);
    return out;
}

static unsigned events_of(const cJSON *v, diag *d, const char *base)
{
    char *p = at(base, "events");
    unsigned mask = 0;
    if (cJSON_IsString(v) && !strcmp(v->valuestring, "all")) {
        mask = LC_ALL_EVENTS;
    } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) {
        size_t i = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, v)
        {
            int e = cJSON_IsString(item) ? lc_event_parse(item->valuestring) : -1;
            char *ip = path_index(p, i++);
            if (cJSON_IsString(item) && !strcmp(item->valuestring, "all"))
                mask |= LC_ALL_EVENTS;
            else if (e < 0)
                diag_add(d, ip, "must be one of jobStart, jobComplete, jobError, pluginStart, "
                                "pluginComplete, pluginError (or \"all\")");
            else
                mask |= 1u << e;
            free(ip);
        }
    } else {
        diag_add(d, p, "must be \"all\" or a non-empty list of event names (jobStart, "
                       "jobComplete, jobError, pluginStart, pluginComplete, pluginError)");
    }
    free(p);
    return mask;
}

static int headers_of(subscription *s, const cJSON *v, diag *d, const char *base)
{
    char *p = at(base, "headers");
    int rc = 0;
    if (!cJSON_IsObject(v)) {
        diag_add(d, p, "must be a mapping of header name to value");
        free(p);
        return 0;
    }
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > SUBSCRIPTION_MAX_HEADERS) {
        diag_add(d, p, "at most %d headers", SUBSCRIPTION_MAX_HEADERS);
        free(p);
        return 0;
    }
    s->header_names = calloc(n ? n : 1, sizeof *s->header_names);
    s->header_values = calloc(n ? n : 1, sizeof *s->header_values);
    if (!s->header_names || !s->header_values) {
        free(p);
        return -1;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        char *ip = path_key(p, item->string);
        if (!header_name_valid(item->string)) {
            diag_add(d, ip, "not a valid header name (letters, digits and !#$%%&'*+-.^_`|~)");
        } else if (header_reserved(item->string)) {
            diag_add(d, ip, "set by evhost itself; it cannot be given here");
        } else if (!cJSON_IsString(item)) {
            diag_add(d, ip, "must be a string");
        } else if (strlen(item->valuestring) > SUBSCRIPTION_HEADER_VALUE_MAX) {
            diag_add(d, ip, "must be at most %d characters", SUBSCRIPTION_HEADER_VALUE_MAX);
        } else if (!clean_text(item->valuestring, 0)) {
            diag_add(d, ip, "must not contain control characters (line breaks included)");
        } else {
            for (size_t i = 0; i < s->n_headers; i++) {
                if (!strcasecmp(s->header_names[i], item->string))
                    diag_add(d, ip, "given twice (header names are case-insensitive)");
            }
            s->header_names[s->n_headers] = strdup(item->string);
            s->header_values[s->n_headers] = strdup(item->valuestring);
            if (!s->header_names[s->n_headers] || !s->header_values[s->n_headers])
                rc = -1;
            s->n_headers++;
        }
        free(ip);
    }
    free(p);
    return rc;
}

static const char *const SPEC_KEYS[] = {"id",           "url",          "events",
                                        "token",        "secret",       "timeout_ms",
                                        "max_attempts", "backoff_base_ms", "backoff_cap_ms",
                                        "headers",      "enabled",      NULL};
static const char *const READ_ONLY_KEYS[] = {"origin", "disabled_reason", "created_at",
                                             "updated_at", NULL};

static int in_list(const char *k, const char *const *list)
{
    for (; *list; list++) {
        if (!strcmp(k, *list))
            return 1;
    }
    return 0;
}

subscription *subscription_from_json(const cJSON *spec, int id_required, int allow_read_only,
                                     diag *d, const char *base)
{
    size_t before = d->count + d->dropped;
    if (!cJSON_IsObject(spec)) {
        diag_add(d, base, "must be a mapping (url, events, token, secret, ...)");
        return NULL;
    }
    subscription *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    int nomem = 0;
    s->enabled = 1;
    const cJSON *item;
    cJSON_ArrayForEach(item, spec)
    {
        if (in_list(item->string, SPEC_KEYS) ||
            (allow_read_only && in_list(item->string, READ_ONLY_KEYS)))
            continue;
        char *p = at(base, item->string);
        diag_add(d, p, "unknown key (known keys: id, url, events, token, secret, timeout_ms, "
                       "max_attempts, backoff_base_ms, backoff_cap_ms, headers, enabled)");
        free(p);
    }
    /* id */
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(spec, "id");
    char *p = at(base, "id");
    if (id && !cJSON_IsNull(id)) {
        if (!cJSON_IsString(id) || !subscription_id_valid(id->valuestring))
            diag_add(d, p, "must be 1 to %d letters, digits, '.', '_' or '-'", EVH_ID_MAX_LEN);
        else if (!(s->id = strdup(id->valuestring)))
            nomem = 1;
    } else if (id_required) {
        diag_add(d, p, "required: a name for the subscription");
    }
    free(p);
    /* url: shown in messages by its scheme only, since a webhook URL (Make.com's,
     * for one) is often its own secret */
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(spec, "url");
    p = at(base, "url");
    if (!url || cJSON_IsNull(url))
        diag_add(d, p, "required: the http:// or https:// address to deliver to");
    else if (!cJSON_IsString(url) || (strncasecmp(url->valuestring, "http://", 7) != 0 &&
                                      strncasecmp(url->valuestring, "https://", 8) != 0))
        diag_add(d, p, "must be an http:// or https:// URL");
    else if (strlen(url->valuestring) > SUBSCRIPTION_URL_MAX)
        diag_add(d, p, "must be at most %d characters", SUBSCRIPTION_URL_MAX);
    else if (!clean_text(url->valuestring, 1) ||
             url->valuestring[strncasecmp(url->valuestring, "http://", 7) ? 8 : 7] == '\0')
        diag_add(d, p, "must be a URL with a host and no spaces or control characters");
    else if (!(s->url = strdup(url->valuestring)))
        nomem = 1;
    free(p);
    /* events (default: all) */
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(spec, "events");
    s->events = events && !cJSON_IsNull(events) ? events_of(events, d, base) : LC_ALL_EVENTS;
    /* token and secret */
    const char *token = secret_field(spec, "token", SUBSCRIPTION_HEADER_VALUE_MAX, d, base);
    if (token && !(s->token = strdup(token)))
        nomem = 1;
    const char *secret = secret_field(spec, "secret", SUBSCRIPTION_SECRET_MAX, d, base);
    if (secret) {
        int k = secret_key(secret, &s->key, &s->key_len);
        if (k < 0 || !(s->secret = strdup(secret))) {
            nomem = 1;
        } else if (k == 0) {
            p = at(base, "secret");
            diag_add(d, p, "a secret starting with whsec_ must continue with base64 (Standard "
                           "Webhooks); any other text is used as the key's bytes");
            free(p);
        }
    }
    /* numbers */
    long long n;
    if (int_field(spec, "timeout_ms", 1, SUBSCRIPTION_TIMEOUT_MAX_MS, &n, d, base) > 0)
        s->timeout_ms = (uint32_t)n;
    if (int_field(spec, "max_attempts", 1, SUBSCRIPTION_MAX_ATTEMPTS_MAX, &n, d, base) > 0)
        s->max_attempts = (uint32_t)n;
    if (int_field(spec, "backoff_base_ms", 1, SUBSCRIPTION_BACKOFF_MAX_MS, &n, d, base) > 0)
        s->backoff_base_ms = n;
    if (int_field(spec, "backoff_cap_ms", 1, SUBSCRIPTION_BACKOFF_MAX_MS, &n, d, base) > 0)
        s->backoff_cap_ms = n;
    if (s->backoff_base_ms && s->backoff_cap_ms && s->backoff_cap_ms < s->backoff_base_ms) {
        p = at(base, "backoff_cap_ms");
        diag_add(d, p, "must not be below backoff_base_ms (%lld)", (long long)s->backoff_base_ms);
        free(p);
    }
    /* headers */
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(spec, "headers");
    if (headers && !cJSON_IsNull(headers) && headers_of(s, headers, d, base) < 0)
        nomem = 1;
    for (size_t i = 0; s->token && i < s->n_headers; i++) {
        if (!strcasecmp(s->header_names[i], "authorization")) {
            char *hp = at(base, "headers");
            char *ip = path_key(hp, s->header_names[i]);
            diag_add(d, ip, "token sets Authorization already: give one or the other");
            free(ip);
            free(hp);
        }
    }
    /* enabled */
    const cJSON *enabled = cJSON_GetObjectItemCaseSensitive(spec, "enabled");
    if (enabled && !cJSON_IsNull(enabled)) {
        if (!cJSON_IsBool(enabled)) {
            p = at(base, "enabled");
            diag_add(d, p, "must be true or false");
            free(p);
        } else {
            s->enabled = cJSON_IsTrue(enabled);
        }
    }
    if (nomem) {
        diag_add(d, base, "out of memory");
    }
    if (d->count + d->dropped != before) {
        subscription_free(s);
        return NULL;
    }
    return s;
}

static int set_str(char **dst, const cJSON *row, const char *key)
{
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, key));
    free(*dst);
    *dst = v ? strdup(v) : NULL;
    return !v || *dst;
}

subscription *subscription_from_row(const cJSON *row)
{
    /* the definition is validated again: a row written by hand gets no pass */
    cJSON *spec = cJSON_CreateObject();
    if (!spec)
        return NULL;
    const cJSON *item;
    cJSON_ArrayForEach(item, row)
    {
        if (in_list(item->string, SPEC_KEYS) && !cJSON_IsNull(item))
            cJSON_AddItemToObject(spec, item->string, cJSON_Duplicate(item, 1));
    }
    diag d;
    diag_init(&d, NULL);
    subscription *s = subscription_from_json(spec, 1, 0, &d, "");
    diag_free(&d);
    cJSON_Delete(spec);
    if (!s)
        return NULL;
    if (!set_str(&s->disabled_reason, row, "disabled_reason") ||
        !set_str(&s->origin, row, "origin") || !set_str(&s->created_at, row, "created_at") ||
        !set_str(&s->updated_at, row, "updated_at")) {
        subscription_free(s);
        return NULL;
    }
    return s;
}

cJSON *subscription_events_json(unsigned events)
{
    if ((events & LC_ALL_EVENTS) == LC_ALL_EVENTS)
        return cJSON_CreateString("all");
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; list && i < LC_EVENT_COUNT; i++) {
        if (events & (1u << i))
            cJSON_AddItemToArray(list, cJSON_CreateString(EVENT_NAMES[i]));
    }
    return list;
}

char *subscription_events_text(unsigned events)
{
    cJSON *j = subscription_events_json(events);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return text;
}

char *subscription_headers_text(const subscription *s, int *nomem)
{
    *nomem = 0;
    if (!s->n_headers)
        return NULL;
    cJSON *h = cJSON_CreateObject();
    for (size_t i = 0; h && i < s->n_headers; i++) {
        if (!cJSON_AddStringToObject(h, s->header_names[i], s->header_values[i])) {
            cJSON_Delete(h);
            h = NULL;
        }
    }
    char *text = h ? cJSON_PrintUnformatted(h) : NULL;
    cJSON_Delete(h);
    *nomem = text == NULL;
    return text;
}

static cJSON *str_or_null(const char *v)
{
    return v ? cJSON_CreateString(v) : cJSON_CreateNull();
}

static cJSON *secret_or_null(const char *v, int redact)
{
    return v ? cJSON_CreateString(redact ? SUBSCRIPTION_REDACTED : v) : cJSON_CreateNull();
}

static cJSON *num_or_null(long long v)
{
    return v ? cJSON_CreateNumber((double)v) : cJSON_CreateNull();
}

cJSON *subscription_to_json(const subscription *s, int redact)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddItemToObject(o, "id", str_or_null(s->id));
    cJSON_AddItemToObject(o, "url", str_or_null(s->url));
    cJSON_AddItemToObject(o, "events", subscription_events_json(s->events));
    cJSON_AddItemToObject(o, "token", secret_or_null(s->token, redact));
    cJSON_AddItemToObject(o, "secret", secret_or_null(s->secret, redact));
    cJSON_AddItemToObject(o, "timeout_ms", num_or_null(s->timeout_ms));
    cJSON_AddItemToObject(o, "max_attempts", num_or_null(s->max_attempts));
    cJSON_AddItemToObject(o, "backoff_base_ms", num_or_null(s->backoff_base_ms));
    cJSON_AddItemToObject(o, "backoff_cap_ms", num_or_null(s->backoff_cap_ms));
    cJSON *h = cJSON_AddObjectToObject(o, "headers");
    for (size_t i = 0; h && i < s->n_headers; i++)
        cJSON_AddItemToObject(h, s->header_names[i],
                              cJSON_CreateString(redact ? SUBSCRIPTION_REDACTED
                                                        : s->header_values[i]));
    cJSON_AddBoolToObject(o, "enabled", s->enabled != 0);
    cJSON_AddItemToObject(o, "disabled_reason", str_or_null(s->disabled_reason));
    cJSON_AddItemToObject(o, "origin", str_or_null(s->origin));
    cJSON_AddItemToObject(o, "created_at", str_or_null(s->created_at));
    cJSON_AddItemToObject(o, "updated_at", str_or_null(s->updated_at));
    return o;
}

static int dup_str(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return !src || *dst;
}

subscription *subscription_dup(const subscription *s)
{
    subscription *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->events = s->events;
    c->timeout_ms = s->timeout_ms;
    c->max_attempts = s->max_attempts;
    c->backoff_base_ms = s->backoff_base_ms;
    c->backoff_cap_ms = s->backoff_cap_ms;
    c->enabled = s->enabled;
    int ok = dup_str(&c->id, s->id) && dup_str(&c->url, s->url) &&
             dup_str(&c->token, s->token) && dup_str(&c->secret, s->secret) &&
             dup_str(&c->disabled_reason, s->disabled_reason) &&
             dup_str(&c->origin, s->origin) && dup_str(&c->created_at, s->created_at) &&
             dup_str(&c->updated_at, s->updated_at);
    if (ok && s->key) {
        c->key = malloc(s->key_len ? s->key_len : 1);
        ok = c->key != NULL;
        if (ok) {
            memcpy(c->key, s->key, s->key_len);
            c->key_len = s->key_len;
        }
    }
    if (ok && s->n_headers) {
        c->header_names = calloc(s->n_headers, sizeof *c->header_names);
        c->header_values = calloc(s->n_headers, sizeof *c->header_values);
        ok = c->header_names && c->header_values;
        for (size_t i = 0; ok && i < s->n_headers; i++) {
            c->n_headers = i + 1;
            ok = dup_str(&c->header_names[i], s->header_names[i]) &&
                 dup_str(&c->header_values[i], s->header_values[i]);
        }
    }
    if (!ok) {
        subscription_free(c);
        return NULL;
    }
    return c;
}

void subscription_free(subscription *s)
{
    if (!s)
        return;
    free(s->id);
    free(s->url);
    free(s->token);
    if (s->secret)
        memset(s->secret, 0, strlen(s->secret));
    free(s->secret);
    if (s->key)
        memset(s->key, 0, s->key_len);
    free(s->key);
    for (size_t i = 0; i < s->n_headers; i++) {
        free(s->header_names ? s->header_names[i] : NULL);
        free(s->header_values ? s->header_values[i] : NULL);
    }
    free(s->header_names);
    free(s->header_values);
    free(s->disabled_reason);
    free(s->origin);
    free(s->created_at);
    free(s->updated_at);
    free(s);
}

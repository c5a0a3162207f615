/*
 * event.c - events, their envelope, ids and clocks (see event.h).
 */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <evhost/evhost.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static char *dup_n(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

evh_event *event_new(const char *source, const char *event_type,
                     const char *data_json, size_t data_len,
                     const char *user_id, const char *additional_json)
{
    if (!source || !event_type || !data_json)
        return NULL;
    evh_event *ev = calloc(1, sizeof *ev);
    if (!ev)
        return NULL;
    if (uuid_v7(ev->id) != EVH_OK)
        goto fail_free_event;
    ev->timestamp_us = rfc3339_now(ev->timestamp);
    ev->source = strdup(source);
    ev->event_type = strdup(event_type);
    ev->data_json = dup_n(data_json, data_len);
    ev->data_len = data_len;
    ev->user_id = user_id ? strdup(user_id) : NULL;
    ev->additional_json = additional_json ? strdup(additional_json) : NULL;
    if (!ev->source || !ev->event_type || !ev->data_json || (user_id && !ev->user_id) ||
        (additional_json && !ev->additional_json))
        goto fail_free_event;
    return ev;

fail_free_event:
    event_free(ev);
    return NULL;
}

void event_free(evh_event *ev)
{
    if (!ev)
        return;
    free(ev->source);
    free(ev->event_type);
    free(ev->data_json);
    free(ev->user_id);
    free(ev->additional_json);
    free(ev->idempotency_key);
    free(ev);
}

/* Parse embedded JSON text; the text was validated when the event was
 * accepted, so a failure here means memory ran out. */
static cJSON *embed(const char *text, size_t len)
{
    if (!text)
        return cJSON_CreateObject();
    return cJSON_ParseWithLength(text, len);
}

static cJSON *build_metadata(const evh_event *ev)
{
    cJSON *meta = cJSON_CreateObject();
    if (!meta)
        return NULL;
    cJSON *extra = embed(ev->additional_json,
                         ev->additional_json ? strlen(ev->additional_json) : 0);
    if (!extra || !cJSON_AddStringToObject(meta, "source", ev->source) ||
        !cJSON_AddStringToObject(meta, "timestamp", ev->timestamp) ||
        !(ev->user_id ? cJSON_AddStringToObject(meta, "user_id", ev->user_id)
                      : cJSON_AddNullToObject(meta, "user_id")) ||
        !cJSON_AddItemToObject(meta, "additional_data", extra)) {
        cJSON_Delete(extra); /* attached last, so never attached on this path */
        cJSON_Delete(meta);
        return NULL;
    }
    return meta;
}

cJSON *event_envelope(const evh_event *ev)
{
    if (!ev)
        return NULL;
    cJSON *env = cJSON_CreateObject();
    cJSON *data = embed(ev->data_json, ev->data_len);
    cJSON *meta = build_metadata(ev);
    if (!env || !data || !meta)
        goto fail;
    if (!cJSON_AddStringToObject(env, "id", ev->id) ||
        !cJSON_AddStringToObject(env, "event_type", ev->event_type) ||
        !cJSON_AddStringToObject(env, "source", ev->source) ||
        !cJSON_AddItemToObject(env, "data", data))
        goto fail;
    data = NULL; /* env owns it now */
    if (!cJSON_AddItemToObject(env, "metadata", meta))
        goto fail;
    return env;

fail:
    cJSON_Delete(data);
    cJSON_Delete(meta);
    cJSON_Delete(env);
    return NULL;
}

char *event_envelope_json(const evh_event *ev)
{
    cJSON *env = event_envelope(ev);
    char *out = env ? cJSON_PrintUnformatted(env) : NULL;
    cJSON_Delete(env);
    return out;
}

/* 8-4-4-4-12 lower-case hex; by hand because snprintf's format parsing
 * cost more than the random bytes (one id per event and execution). */
static void uuid_format(const unsigned char b[16], char out[EVH_UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 0x0f];
    }
    *p = '\0';
}

/* Random bytes for ids: RAND_bytes (OpenSSL's DRBG) drawn 4 KiB at a time
 * per thread, because one call per id, with its locking and setup, was 3 %
 * of an HTTP ingest's CPU.  The pool notes its process: a forked child
 * draws its own instead of repeating its parent's bytes. */
static int random_bytes(unsigned char *out, size_t n)
{
    static _Thread_local unsigned char pool[4096];
    static _Thread_local size_t left;
    static _Thread_local pid_t owner;
    if (n > sizeof pool)
        return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
    pid_t self = getpid();
    if (left < n || owner != self) {
        if (RAND_bytes(pool, (int)sizeof pool) != 1) {
            left = 0;
            return -1;
        }
        left = sizeof pool;
        owner = self;
    }
    unsigned char *p = pool + sizeof pool - left;
    memcpy(out, p, n);
    memset(p, 0, n); /* used once */
    left -= n;
    return 0;
}

int uuid_v4(char out[EVH_UUID_LEN + 1])
{
    unsigned char b[16];
    if (random_bytes(b, sizeof b) != 0) {
        out[0] = '\0';
        return EVH_E_IO;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    uuid_format(b, out);
    return EVH_OK;
}

int uuid_v7(char out[EVH_UUID_LEN + 1])
{
    unsigned char b[16];
    if (random_bytes(b + 6, 10) != 0) {
        out[0] = '\0';
        return EVH_E_IO;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i)); /* 48-bit big-endian ms */
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x70); /* version 7 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 9562 variant */
    uuid_format(b, out);
    return EVH_OK;
}

int uuid_for_execution(const char *event_id, const char *trigger_key,
                       char out[EVH_UUID_LEN + 1])
{
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int h_len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, event_id, strlen(event_id) + 1) == 1 && /* with its NUL */
             EVP_DigestUpdate(md, trigger_key, strlen(trigger_key)) == 1 &&
             EVP_DigestFinal_ex(md, h, &h_len) == 1 && h_len >= 16;
    EVP_MD_CTX_free(md);
    if (!ok) {
        out[0] = '\0';
        return EVH_E_IO;
    }
    unsigned char b[16];
    memcpy(b, h, sizeof b);
    /* the event's time first (a v7 event id's first 48 bits), so the ids
     * of executions made together stay neighbours in the indexes */
    size_t len = strlen(event_id);
    if (len == EVH_UUID_LEN && event_id[14] == '7') {
        for (int i = 0, k = 0; i < 6; i++, k += 2) {
            if (k == 8)
                k++; /* the '-' after the first 8 digits */
            unsigned v = 0;
            if (sscanf(event_id + k, "%2x", &v) != 1)
                break;
            b[i] = (unsigned char)v;
        }
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x80); /* version 8: made by us */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 9562 variant */
    uuid_format(b, out);
    return EVH_OK;
}

int64_t rfc3339_now(char out[EVH_TIMESTAMP_LEN + 1])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char secs[32];
    if (strftime(secs, sizeof secs, "%Y-%m-%dT%H:%M:%S", &tm) != 19)
        snprintf(secs, sizeof secs, "0000-00-00T00:00:00"); /* year past 9999 */
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000) % 1000u;
    snprintf(out, EVH_TIMESTAMP_LEN + 1, "%.19s.%03uZ", secs, ms);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

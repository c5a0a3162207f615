/*
 * http_source.h - shared by the built-in sources that serve HTTP through
 * the host (api-webhook, web-client-upload): header lookup, secret
 * comparison, timestamps and the host's error answer.  Header-only, so
 * each plugin stays built against the SDK (and OpenSSL's libcrypto, which
 * both link for their digests) alone.
 */
#ifndef EVH_SOURCES_HTTP_SOURCE_H
#define EVH_SOURCES_HTTP_SOURCE_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <evhost/evhost.h>

/* The value of request header name (any case); NULL when absent. */
static inline const char *evh_sources_header(const evh_http_request *req, const char *name)
{
    for (uint32_t i = 0; i < req->n_headers; i++) {
        if (!strcasecmp(req->headers[i].name, name))
            return req->headers[i].value;
    }
    return NULL;
}

/* Constant-time equality of two secrets of any lengths: their SHA-256
 * digests are compared, so neither the content nor the length leaks. */
static inline int evh_sources_same_secret(const char *given, size_t given_len, const char *want)
{
    unsigned char a[32], b[32];
    unsigned int la = 0, lb = 0;
    if (!given || !EVP_Digest(given, given_len, a, &la, EVP_sha256(), NULL) ||
        !EVP_Digest(want, strlen(want), b, &lb, EVP_sha256(), NULL))
        return 0;
    return la == sizeof a && lb == sizeof b && CRYPTO_memcmp(a, b, sizeof a) == 0;
}

/* Now, RFC 3339 UTC with milliseconds ("2026-11-26T07:30:00.123Z"). */
static inline void evh_sources_now_iso(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Answer status with {"error": {"code", "message", "details": []}}, the
 * host's error shape, and extra_headers (NULL: none) as given. */
static inline int32_t evh_sources_answer_error(const evh_host_api *api, evh_http_response *res,
                                               int status, const char *code, const char *message,
                                               const char *extra_headers)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddArrayToObject(e, "details");
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text)
        return EVH_E_NOMEM;
    res->status = status;
    res->content_type = "application/json";
    res->body = api->strdup(text);
    res->body_len = EVH_NUL_TERMINATED;
    cJSON_free(text);
    if (extra_headers)
        res->headers = api->strdup(extra_headers);
    return res->body ? EVH_OK : EVH_E_NOMEM;
}

#endif

/* crashy-source: an event source for the crash isolation tests.
 *
 * run() counts its starts in a file of its data_dir (so the count survives
 * the process being restarted), emits tick {"n": <start number>} and
 * appends "run <n> <emit status>" to the config's record_file.  Then:
 *   crash  after crash_after_ms, it writes to address 16 (a segfault);
 *   calm   it waits until the host stops it and appends "stopped".
 * http (POST to /api/webhooks/crashy): emits tick {"n": -1} and answers 202
 * {"emit": "<status name>"} with the header X-Crashy: yes. */
#include <evhost/evhost.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct ctx {
    const evh_host_api *api;
    evh_host *host;
} ctx;

static int32_t src_init(const evh_host_api *api, evh_host *host, void **out, char **errmsg)
{
    ctx *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    *out = c;
    (void)errmsg;
    return EVH_OK;
}

static void record(const ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void record(const ctx *c, const char *fmt, ...)
{
    const char *path = c->api->config_string(c->host, "record_file", NULL);
    FILE *f = path ? fopen(path, "a") : NULL;
    if (!f)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

/* The number of this start, counted in <data_dir>/starts. */
static int next_start(const ctx *c)
{
    const char *dir = c->api->data_dir(c->host);
    if (!dir)
        return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/starts", dir);
    int n = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = 0;
        fclose(f);
    }
    n++;
    f = fopen(path, "w");
    if (f) {
        fprintf(f, "%d\n", n);
        fclose(f);
    }
    return n;
}

/* An address no process maps (the first page), not NULL itself: a sanitized
 * build's null check would catch a NULL store and exit instead of faulting. */
static volatile int *volatile nowhere = (volatile int *)(uintptr_t)16;

static int32_t src_run(void *p)
{
    ctx *c = p;
    const evh_host_api *api = c->api;
    int n = next_start(c);
    char data[64];
    snprintf(data, sizeof data, "{\"n\":%d}", n);
    int32_t rc = api->emit(c->host, "tick", data, EVH_NUL_TERMINATED, "crashy");
    record(c, "run %d %s\n", n, evh_status_name(rc));
    const char *mode = api->config_string(c->host, "mode", "calm");
    if (!strcmp(mode, "crash")) {
        if (api->wait(c->host, (uint64_t)api->config_int(c->host, "crash_after_ms", 50)) ==
            EVH_OK)
            *nowhere = 1;
    }
    while (api->wait(c->host, 60000) == EVH_OK)
        ;
    record(c, "stopped\n");
    return EVH_OK;
}

static int32_t src_http(void *p, const evh_http_request *req, evh_http_response *res)
{
    ctx *c = p;
    const evh_host_api *api = c->api;
    if (strcmp(req->method, "POST") != 0) {
        res->status = 405;
        return EVH_OK;
    }
    int32_t rc = api->emit(c->host, "tick", "{\"n\":-1}", EVH_NUL_TERMINATED, NULL);
    res->status = rc == EVH_OK ? 202 : 503;
    res->content_type = "application/json";
    res->body = api->mprintf("{\"emit\":\"%s\",\"body_len\":%zu}", evh_status_name(rc),
                             req->body_len);
    res->headers = api->strdup("X-Crashy: yes");
    return EVH_OK;
}

static void src_fini(void *p)
{
    ctx *c = p;
    c->api->free(c);
}

static const evh_source desc = {.struct_size = sizeof(evh_source),
                                .init = src_init,
                                .run = src_run,
                                .fini = src_fini,
                                .http = src_http};
EVH_DECLARE_SOURCE("crashy-source", &desc)

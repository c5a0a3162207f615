/*
 * apitest.h - the REST API under test: the host assembled in process the
 * way the daemon assembles it (real plugins through dlopen, a real SQLite
 * file, the engine's threads, the HTTP server on 127.0.0.1 with a free
 * port) and a libcurl client that talks to it over loopback.
 */
#ifndef EVH_APITEST_H
#define EVH_APITEST_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "pipeline.h"

typedef struct at_options {
    /* fixture plugins to load (NULL-terminated); NULL: ok-minimal, test-step */
    const char *const *fixtures;
    /* built-in plugins to load too, by id (NULL-terminated), from the
     * build tree: "timer" -> plugins/event-sources/timer, "log" ->
     * plugins/steps/log (whichever exists) */
    const char *const *builtins;
    /* plugin configs as a JSON object text {"<id>": {...}}, or NULL */
    const char *plugin_configs;
    /* workflow YAML texts (NULL-terminated) and the trigger file text */
    const char *const *workflows;
    const char *triggers;
    /* extra host.yaml text for the server section, e.g.
     * "server: {api_keys: [{name: ci, key: s3cret}], max_body_bytes: 2048}" */
    const char *host_yaml;
    size_t queue;      /* 0: 1024 */
    unsigned workers;  /* 0: 2 */
    /* the database file to use (it outlives the host: a restart), or NULL
     * for a new one in the host's temporary directory */
    const char *db;
} at_options;

typedef struct apitest {
    char *root, *plugins, *data, *wfdir, *trigfile, *db;
    char *outbox; /* the outbox file (store_outbox_path(db)) */
    const char *wf_dirs[1], *trig_files[1];
    pipeline_sources src;
    pipeline_reloader rl;
    evh_config *cfg;
    runtime *rt;
    registry *r;
    engine *e;
    struct notifier *notify;  /* outbound webhooks (notify.h) */
    struct lifecycle *lc;
    struct stream_hub *hub;   /* the live stream (stream.h) */
    store *st; /* the test's own connection, for assertions */
    api_ctx api;
    http_server *http;
    int port;
} apitest;

apitest *at_start(const at_options *o);
void at_stop(apitest *t);

/* Reload workflows and triggers as SIGHUP does and return every problem it
 * reported, one "file:line:column: reason" line each ("" when none);
 * malloc'd. */
char *at_reload_problems(apitest *t);

typedef struct at_response {
    long status;
    char *body;    /* NUL-terminated */
    size_t body_len;
    char *headers; /* the raw response headers */
    cJSON *json;   /* body parsed, or NULL */
} at_response;

/*
 * method, path (with query), headers ("Name: value", NULL-terminated, may
 * be NULL), body (may be NULL; body_len (size_t)-1 means strlen).  Returns
 * 0 when the exchange completed (whatever the status).
 */
int at_request(apitest *t, const char *method, const char *path, const char *const *headers,
               const char *body, size_t body_len, at_response *out);
/* The same, JSON body with Content-Type: application/json. */
int at_json(apitest *t, const char *method, const char *path, const char *body,
            at_response *out);
void at_response_free(at_response *r);

/* The value of a response header (case-insensitive), malloc'd, or NULL. */
char *at_header(const at_response *r, const char *name);

/* Wait until the engine settled `events` events (dispatched or unmatched). */
void at_wait_settled(apitest *t, unsigned long long events);

#endif

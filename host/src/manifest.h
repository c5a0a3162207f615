/*
 * manifest.h - plugin.json: reading and validating it.
 *
 * Fields (the seed's "Event Source Manifest" plus what the loader needs):
 *   type          "event-source" | "workflow-step"            required
 *   id            kebab-case, 1..128 chars                       required
 *   name          non-empty string                               required
 *   description   string                                         required
 *   version       semantic version (semver.org 2.0.0)            required
 *   abi           "MAJOR.MINOR": the SDK ABI the plugin requires required
 *   library       file name of the .so in the plugin folder;     optional,
 *                 no '/'; default "<id>.so"
 *   eventTypes    array of {type, label, description, schema?};  required
 *                 non-empty for event sources, optional for steps; types
 *                 unique, snake_case identifiers
 *   configSchema  schema (subset, see schema.h) for the config   optional
 *   webhookEndpoint  path beginning with "/", without "?", "#",  optional
 *                 ".." or whitespace; event sources receive requests
 *                 to it (evh_source.http, ABI 1.1)
 *   status        "active" | "inactive"                          optional,
 *                 default "active"
 *   isolation     "in-process" | "process": run the plugin in    optional,
 *                 a child process (isolate.h)                    default
 *                                                                "in-process"
 *   author, license, homepage, tags      informational            optional
 * Unknown keys are errors, so a misspelt key is reported, not ignored.
 */
#ifndef EVH_MANIFEST_H
#define EVH_MANIFEST_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "diag.h"
#include "schema.h"

typedef struct manifest_event_type {
    char *type;
    char *label;
    char *description;
    cJSON *schema_json; /* NULL when the type declares no schema */
    schema *schema;     /* compiled; NULL when none */
} manifest_event_type;

typedef struct manifest {
    char *path; /* the plugin.json file as given */
    int kind;   /* EVH_KIND_SOURCE or EVH_KIND_STEP */
    char *id;
    char *name;
    char *description;
    char *version;
    uint16_t abi_major;
    uint16_t abi_minor;
    char *library; /* file name, relative to the plugin folder */
    manifest_event_type *event_types;
    size_t n_event_types;
    cJSON *config_schema_json; /* NULL when none */
    schema *config_schema;     /* compiled; NULL when none */
    char *webhook_endpoint;    /* NULL when none */
    int active;                /* status: 1 active, 0 inactive */
    int isolation_process;     /* "isolation": 1 "process", 0 "in-process" */
    cJSON *json;               /* the whole document */
} manifest;

/*
 * Validate a plugin.json text.  `path` names the file in messages and is
 * copied.  All problems go to d (JSON path + reason).  Returns EVH_OK with
 * *out set, or EVH_E_MANIFEST (or EVH_E_JSON when the text is not JSON)
 * with *out NULL.
 */
int manifest_parse(const char *text, size_t len, const char *path,
                   manifest **out, diag *d);

/* Read and validate a plugin.json file (size-capped). */
int manifest_load(const char *path, manifest **out, diag *d);

void manifest_free(manifest *m);

/* The event type named `type`, or NULL. */
const manifest_event_type *manifest_find_type(const manifest *m,
                                              const char *type);

/*
 * Webhook endpoints as request paths.  Segments are compared, and empty ones
 * (a doubled "/", a trailing "/" of the request) do not count, as for the
 * HTTP server's own routes.  An endpoint with at least one segment that ends
 * in "/" ("/api/webhooks/") is a PREFIX endpoint: it matches its own path
 * and every path below it.  Any other endpoint ("/api/webhooks/github", and
 * "/" itself) matches exactly its own path, never a sub-path.
 */

/* 1 when the request path reaches the endpoint, else 0. */
int manifest_endpoint_matches(const char *endpoint, const char *path);

/* 1 when the endpoint is a prefix endpoint (see above). */
int manifest_endpoint_is_prefix(const char *endpoint);

/* How specific a matching endpoint is, for choosing between several that
 * match one path: more segments win, and an exact endpoint beats a prefix
 * endpoint with the same segments.  0 for NULL. */
unsigned manifest_endpoint_rank(const char *endpoint);

/* 1 when two endpoints name the same path (the same segments, whether or not
 * one is a prefix endpoint): two sources cannot both declare it. */
int manifest_endpoint_same(const char *a, const char *b);

/* Validators shared with other readers. */
int is_kebab_id(const char *s);
int is_semver(const char *s);
int is_event_type_name(const char *s);

#endif

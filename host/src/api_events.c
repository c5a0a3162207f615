/*
 * api_events.c - POST /api/events/process, GET /api/events, GET /api/events/{id}.
 *
 * POST takes one event in any of three shapes and turns each into the same
 * call, hostapi_ingest: the checks a plugin's emit goes through, so the
 * source's manifest alone says which types and data are valid.
 *   - the seed's envelope (application/json):
 *       {"event_type", "source", "data", "user_id"?, "metadata"?}
 *   - CloudEvents 1.0, structured mode (application/cloudevents+json)
 *   - CloudEvents 1.0, binary mode (ce-* headers; the body is the data)
 * The request's shape is checked first, every problem into one diag, so a
 * client fixes everything in one round; then ingest adds the type and
 * schema problems.  202 comes only once the event is committed.
 */
#include "api.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <evhost/evhost.h>

#include "diag.h"
#include "event.h"
#include "hostapi.h"
#include "jsonutil.h"
#include "log.h"
#include "schema.h"

#define IDEMPOTENCY_KEY_MAX 255 /* bytes, for the header and a CloudEvents id */
#define QUOTE_MAX 64            /* how much of a client value a message repeats */
#define RETRY_FULL_S "1"        /* Retry-After of 429: the queue drains fast */
#define RETRY_STOPPING_S "5"    /* Retry-After of 503 while the host stops */

/* One event to ingest, whatever shape it came in. */
typedef struct inbound {
    const char *source, *event_type;     /* borrowed from the request */
    const char *source_path, *type_path; /* how the request names them */
    const cJSON *data;                   /* borrowed; NULL: {} */
    const char *user_id;                 /* borrowed; NULL: none */
    cJSON *additional;                   /* owned; NULL: none */
    char *key;                           /* owned idempotency key; NULL: none */
    const manifest *m;                   /* the source's, once found */
    plugin *held;                        /* its record, referenced (hot reload) */
    cJSON *attrs;                        /* owned; binary mode: the ce-* headers read */
} inbound;

/* ---- reading values ------------------------------------------------------- */

/* o[key] as a string.  NULL when absent or null (a problem when required),
 * or when it is no string or an empty required one (a problem). */
static const char *get_string(const cJSON *o, const char *key, const char *path, int required,
                              diag *d)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || (cJSON_IsNull(v) && !required)) {
        if (required)
            diag_add(d, path, "required string is missing");
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        diag_add(d, path, "must be a string, got %s", json_type_name(v));
        return NULL;
    }
    if (required && !v->valuestring[0]) {
        diag_add(d, path, "must not be empty");
        return NULL;
    }
    return v->valuestring;
}

/* o[key] as an object; NULL (and problems) as get_string. */
static const cJSON *get_object(const cJSON *o, const char *key, const char *path, int required,
                               diag *d)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || (cJSON_IsNull(v) && !required)) {
        if (required)
            diag_add(d, path, "required object is missing");
        return NULL;
    }
    if (!cJSON_IsObject(v)) {
        diag_add(d, path, "must be a JSON object, got %s", json_type_name(v));
        return NULL;
    }
    return v;
}

static pthread_once_t time_once = PTHREAD_ONCE_INIT;
static schema *time_schema; /* {"type": "string", "format": "date-time"}; lives until exit */

static void compile_time_schema(void)
{
    cJSON *j = cJSON_Parse("{\"type\":\"string\",\"format\":\"date-time\"}");
    time_schema = j ? schema_compile(j, "", NULL) : NULL;
    cJSON_Delete(j);
}

/* o[key], when present and not null, must be an RFC 3339 date-time. */
static void check_time(const cJSON *o, const char *key, const char *path, diag *d)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    pthread_once(&time_once, compile_time_schema);
    if (v && !cJSON_IsNull(v) && time_schema)
        schema_validate(time_schema, v, path, d);
}

static int listed(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++) {
        if (!strcmp(s, list[i]))
            return 1;
    }
    return 0;
}

/* 1..IDEMPOTENCY_KEY_MAX bytes, none a control character; ascii_only: also
 * no byte above 0x7e (HTTP header values). */
static int key_ok(const char *k, int ascii_only)
{
    size_t n = strlen(k);
    if (n == 0 || n > IDEMPOTENCY_KEY_MAX)
        return 0;
    for (const unsigned char *p = (const unsigned char *)k; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || (ascii_only && *p > 0x7e))
            return 0;
    }
    return 1;
}

/* ---- the seed's envelope ---------------------------------------------------- */

static const char *const ENVELOPE_KEYS[] = {"event_type", "source",   "data",
                                            "user_id",    "metadata", NULL};
static const char *const METADATA_KEYS[] = {"source", "timestamp", "user_id", "additional_data",
                                            NULL};

/* Every key of o (at path base) must be one of allowed and appear once. */
static void check_keys(const cJSON *o, const char *base, const char *const *allowed, diag *d)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, o)
    {
        char *path = path_key(base, k->string);
        if (!path)
            continue;
        if (!base && !strcmp(k->string, "id"))
            diag_add(d, path,
                     "unknown key: the host assigns event ids (send an Idempotency-Key "
                     "header to make retries safe)");
        else if (!base && !strcmp(k->string, "specversion"))
            diag_add(d, path,
                     "unknown key: send a CloudEvents event with Content-Type: "
                     "application/cloudevents+json");
        else if (!listed(k->string, allowed))
            diag_add(d, path, "unknown key (allowed: %s)",
                     base ? "source, timestamp, user_id, additional_data"
                          : "event_type, source, data, user_id, metadata");
        else if (cJSON_GetObjectItemCaseSensitive(o, k->string) != k)
            diag_add(d, path, "duplicate key");
        free(path);
    }
}

static void read_metadata(const cJSON *meta, inbound *in, diag *d)
{
    check_keys(meta, "metadata", METADATA_KEYS, d);
    const char *src = get_string(meta, "source", "metadata.source", 0, d);
    if (src && in->source && strcmp(src, in->source))
        diag_add(d, "metadata.source",
                 "'%.*s' differs from source '%.*s': the host stamps metadata.source with the "
                 "source, so leave it out or send the same id",
                 QUOTE_MAX, src, QUOTE_MAX, in->source);
    /* checked, then replaced: the host stamps the time of acceptance */
    check_time(meta, "timestamp", "metadata.timestamp", d);
    const char *user = get_string(meta, "user_id", "metadata.user_id", 0, d);
    if (user && in->user_id && strcmp(user, in->user_id))
        diag_add(d, "metadata.user_id", "'%.*s' differs from user_id '%.*s': send one of them",
                 QUOTE_MAX, user, QUOTE_MAX, in->user_id);
    else if (user)
        in->user_id = user;
    const cJSON *extra = get_object(meta, "additional_data", "metadata.additional_data", 0, d);
    if (extra)
        in->additional = cJSON_Duplicate(extra, 1);
}

static void read_envelope(const cJSON *doc, inbound *in, diag *d)
{
    check_keys(doc, NULL, ENVELOPE_KEYS, d);
    in->event_type = get_string(doc, "event_type", "event_type", 1, d);
    in->source = get_string(doc, "source", "source", 1, d);
    in->data = get_object(doc, "data", "data", 1, d);
    in->user_id = get_string(doc, "user_id", "user_id", 0, d);
    const cJSON *meta = get_object(doc, "metadata", "metadata", 0, d);
    if (meta)
        read_metadata(meta, in, d);
}

/* ---- CloudEvents 1.0 ---------------------------------------------------------- */

static const char *const CE_ATTRIBUTES[] = {
    "specversion", "id",      "source", "type", "datacontenttype",
    "dataschema",  "subject", "time",   NULL};

/* "application/json", "text/json" or any "<type>/<subtype>+json", with parameters. */
static int json_media_type(const char *t)
{
    size_t n = strcspn(t, "; ");
    return (n == 16 && !strncasecmp(t, "application/json", n)) ||
           (n == 9 && !strncasecmp(t, "text/json", n)) ||
           (n > 5 && strchr(t, '/') && !strncasecmp(t + n - 5, "+json", 5));
}

static int ce_name_ok(const char *name)
{
    if (!*name)
        return 0;
    for (const char *c = name; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')))
            return 0;
    }
    return 1;
}

/* Each attribute once; extensions with lower-case alphanumeric names and
 * scalar values. */
static void check_extensions(const cJSON *attrs, const char *prefix, diag *d)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, attrs)
    {
        char path[96];
        snprintf(path, sizeof path, "%s%.*s", prefix, QUOTE_MAX, k->string);
        if (cJSON_GetObjectItemCaseSensitive(attrs, k->string) != k)
            diag_add(d, path, "duplicate key");
        else if (listed(k->string, CE_ATTRIBUTES) || !strcmp(k->string, "data"))
            continue;
        else if (!strcmp(k->string, "data_base64"))
            diag_add(d, path, "binary data is not supported: send a JSON object in 'data'");
        else if (!ce_name_ok(k->string))
            diag_add(d, path, "not a CloudEvents attribute name (lower-case letters and digits)");
        else if (cJSON_IsObject(k) || cJSON_IsArray(k))
            diag_add(d, path, "an extension attribute must be a string, number or boolean, got %s",
                     json_type_name(k));
    }
}

/* What the CloudEvents attributes become: metadata.additional_data.cloudevents
 * holds every attribute but type, source and data (which have their own
 * places in the envelope); null attributes are absent. */
static cJSON *ce_metadata(const cJSON *attrs)
{
    cJSON *ce = cJSON_CreateObject();
    const cJSON *k;
    cJSON_ArrayForEach(k, attrs)
    {
        if (cJSON_IsNull(k) || !strcmp(k->string, "type") || !strcmp(k->string, "source") ||
            !strcmp(k->string, "data"))
            continue;
        cJSON_AddItemToObject(ce, k->string, cJSON_Duplicate(k, 1));
    }
    cJSON *extra = cJSON_CreateObject();
    cJSON_AddItemToObject(extra, "cloudevents", ce);
    return extra;
}

/* The path of attribute `name` into buf: "name", or "ce-name" in binary
 * mode (where the attributes are headers).  Returns buf. */
static const char *at(char buf[32], int binary, const char *name)
{
    snprintf(buf, 32, "%s%s", binary ? "ce-" : "", name);
    return buf;
}

/*
 * attrs: the event's attributes (structured: the body; binary: read from
 * the ce-* headers, then paths are "ce-<name>").  data: binary mode's body,
 * NULL in structured mode (data is attrs.data there).
 */
static void read_cloudevent(const cJSON *attrs, const cJSON *data, int binary, inbound *in, diag *d)
{
    char p[32];
    const char *version = get_string(attrs, "specversion", at(p, binary, "specversion"), 1, d);
    if (version && strcmp(version, "1.0"))
        diag_add(d, p, "CloudEvents version '%.*s' is not supported (use 1.0)", QUOTE_MAX, version);
    const char *id = get_string(attrs, "id", at(p, binary, "id"), 1, d);
    if (id && !key_ok(id, 0))
        diag_add(d, p, "must be at most %d bytes, without control characters", IDEMPOTENCY_KEY_MAX);
    in->source = get_string(attrs, "source", at(p, binary, "source"), 1, d);
    in->event_type = get_string(attrs, "type", at(p, binary, "type"), 1, d);
    in->source_path = binary ? "ce-source" : "source";
    in->type_path = binary ? "ce-type" : "type";
    const char *subject = get_string(attrs, "subject", at(p, binary, "subject"), 0, d);
    if (subject && !*subject)
        diag_add(d, p, "must not be empty when present");
    get_string(attrs, "dataschema", at(p, binary, "dataschema"), 0, d);
    check_time(attrs, "time", at(p, binary, "time"), d);
    const char *ctype =
        get_string(attrs, "datacontenttype", at(p, binary, "datacontenttype"), 0, d);
    if (ctype && !json_media_type(ctype))
        diag_add(d, p, "'%.*s' is not a JSON media type: evhost events carry JSON object data",
                 QUOTE_MAX, ctype);
    check_extensions(attrs, binary ? "ce-" : "", d);
    in->data = binary ? data : get_object(attrs, "data", "data", 0, d);
    in->additional = ce_metadata(attrs);
    /* CloudEvents: source + id identify an event, so a repeat is a retry */
    if (id && in->source && key_ok(id, 0) && asprintf(&in->key, "ce:%s:%s", in->source, id) < 0)
        in->key = NULL;
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* CloudEvents' HTTP binding percent-encodes header values; NULL when
 * malformed or decoding to a control character. */
static char *percent_decode(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    for (const char *c = s; out && *c; c++) {
        int v = (unsigned char)*c;
        if (*c == '%') {
            int hi = hex_value(c[1]), lo = hi < 0 ? -1 : hex_value(c[2]);
            v = lo < 0 ? -1 : hi * 16 + lo;
            c += 2;
        }
        if (v < 0x20 || v == 0x7f) {
            free(out);
            return NULL;
        }
        *o++ = (char)v;
    }
    if (out)
        *o = '\0';
    return out;
}

typedef struct ce_headers {
    cJSON *attrs;
    diag *d;
} ce_headers;

static int on_ce_header(void *ud, const char *name, const char *value)
{
    ce_headers *h = ud;
    if (strncasecmp(name, "ce-", 3) != 0)
        return 0;
    char attr[QUOTE_MAX + 1], path[QUOTE_MAX + 4];
    size_t n = 0;
    for (const char *c = name + 3; *c && n < QUOTE_MAX; c++)
        attr[n++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    attr[n] = '\0';
    snprintf(path, sizeof path, "ce-%s", attr);
    if (!strcmp(attr, "datacontenttype") || !strcmp(attr, "data")) {
        diag_add(h->d, path,
                 "not a header in binary mode: the body is the data and "
                 "Content-Type its media type");
        return 0;
    }
    if (cJSON_GetObjectItemCaseSensitive(h->attrs, attr)) {
        diag_add(h->d, path, "sent more than once");
        return 0;
    }
    char *v = percent_decode(value);
    if (!v)
        diag_add(h->d, path, "broken percent-encoding or a control character");
    else
        cJSON_AddItemToObject(h->attrs, attr, cJSON_CreateString(v));
    free(v);
    return 0;
}

/* The attributes come from the ce-* headers (in->attrs keeps them: in
 * borrows from them), datacontenttype from Content-Type. */
static void read_binary(const http_request *req, const cJSON *body, inbound *in, diag *d)
{
    ce_headers h = {in->attrs = cJSON_CreateObject(), d};
    if (!h.attrs)
        return;
    http_each_header(req, on_ce_header, &h);
    const char *ctype = http_header(req, "Content-Type");
    if (ctype)
        cJSON_AddStringToObject(h.attrs, "datacontenttype", ctype);
    read_cloudevent(h.attrs, body, 1, in, d);
}

/* ---- the checks that need the host -------------------------------------------- */

/* "'t' is not an event type of source 's' (declared: a, b)" at in->type_path. */
static void type_problem(diag *d, const inbound *in)
{
    char declared[256] = "";
    for (size_t i = 0; i < in->m->n_event_types; i++) {
        size_t len = strlen(declared);
        snprintf(declared + len, sizeof declared - len, "%s%s", i ? ", " : "",
                 in->m->event_types[i].type);
    }
    diag_add(d, in->type_path, "'%.*s' is not an event type of source '%s' (declared: %s)",
             QUOTE_MAX, in->event_type, in->m->id, declared);
}

/* The source must be a loaded event source.  The event type is checked here
 * only when the request is refused anyway (so all its problems show at
 * once); otherwise ingest checks it, counting the refusal. */
static void find_source(api_ctx *a, inbound *in, diag *d)
{
    if (!in->source)
        return;
    /* a reference: the manifest stays valid until the event is queued,
     * even if a hot reload replaces the source meanwhile */
    plugin *p = registry_acquire(a->reg, in->source);
    in->held = p;
    if (!p || !p->m)
        diag_add(d, in->source_path, "'%.*s' is not a loaded event source", QUOTE_MAX, in->source);
    else if (p->kind != EVH_KIND_SOURCE)
        diag_add(d, in->source_path, "'%s' is a workflow step, not an event source", p->id);
    else if (p->state == PLUGIN_INACTIVE)
        diag_add(d, in->source_path, "event source '%s' is inactive (its plugin.json says so)",
                 p->id);
    else
        in->m = p->m;
    if (d->count && in->m && in->event_type && !manifest_find_type(in->m, in->event_type))
        type_problem(d, in);
}

static void read_key_header(const http_request *req, inbound *in, diag *d)
{
    const char *key = http_header(req, "Idempotency-Key");
    if (!key)
        return;
    if (!key_ok(key, 1)) {
        diag_add(d, "Idempotency-Key", "must be 1 to %d printable ASCII characters",
                 IDEMPOTENCY_KEY_MAX);
        return;
    }
    free(in->key); /* the header wins over a CloudEvents id */
    in->key = strdup(key);
}

/* ---- answers ---------------------------------------------------------------------- */

static void respond_invalid(http_response *res, const diag *d)
{
    const diag_item *first = &d->items[0];
    http_respond_error(res, 400, "invalid_event", d, "the event is refused: %s%s%s%s", first->path,
                       *first->path ? ": " : "", first->reason,
                       d->count > 1 ? " (and more: see details)" : "");
}

static void respond_id(http_response *res, int status, const char *id, const char *what)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "status", what);
    http_respond_json(res, status, o);
    char location[64];
    snprintf(location, sizeof location, "/api/events/%s", id);
    http_response_header(res, "Location", location);
}

/* When the key is stored already, answer 200 with the first event's id and
 * return 1; also 1 after answering 503 (no database).  0: key not seen. */
static int answered_duplicate(api_ctx *a, const char *key, http_response *res)
{
    store *st = api_store_acquire(a, res);
    if (!st)
        return 1;
    char id[EVH_UUID_LEN + 1];
    int rc = store_event_find_by_key(st, key, id);
    if (rc != EVH_OK && rc != EVH_E_NOT_FOUND)
        log_warn("api", "looking up an idempotency key: %s", store_errmsg(st));
    api_store_release(a, st);
    if (rc != EVH_OK)
        return 0;
    respond_id(res, 200, id, "duplicate");
    return 1;
}

static void respond_ingest_error(api_ctx *a, const inbound *in, int rc, const diag *problems,
                                 http_response *res)
{
    diag d;
    diag_init(&d, NULL);
    switch (rc) {
    case EVH_E_DUPLICATE: /* a concurrent request with the same key won */
        if (!answered_duplicate(a, in->key, res))
            http_respond_error(res, 500, "internal", NULL,
                               "the idempotency key was refused as a duplicate, but its event "
                               "cannot be found");
        break;
    case EVH_E_UNDECLARED_TYPE:
    case EVH_E_SCHEMA:
    case EVH_E_INVALID:
        for (size_t i = 0; i < problems->count; i++) {
            if (!strcmp(problems->items[i].path, "event_type"))
                type_problem(&d, in); /* names the request's field, not the manifest's file */
            else
                diag_add(&d, problems->items[i].path, "%s", problems->items[i].reason);
        }
        if (!d.count)
            diag_add(&d, "", "%s", evh_status_message(rc));
        respond_invalid(res, &d);
        break;
    case EVH_E_QUEUE_FULL:
        http_respond_error(res, 429, "queue_full", NULL,
                           "the event queue is full: retry after %s second(s)", RETRY_FULL_S);
        http_response_header(res, "Retry-After", RETRY_FULL_S);
        break;
    case EVH_E_STOPPING:
        http_respond_error(res, 503, "stopping", NULL, "the host is stopping: retry later");
        http_response_header(res, "Retry-After", RETRY_STOPPING_S);
        break;
    case EVH_E_IO:
        http_respond_error(res, 503, "unavailable", NULL,
                           "the event could not be stored: retry later");
        http_response_header(res, "Retry-After", RETRY_FULL_S);
        break;
    default:
        http_respond_error(res, 500, "internal", NULL, "ingest failed: %s", evh_status_message(rc));
    }
    diag_free(&d);
}

/* An accepted event waiting for its commit.  The request is deferred
 * (http_defer), so no server thread waits: every request that arrives
 * while the writer commits joins the next commit, and a few server threads
 * serve thousands of concurrent ingests.  Two parties arrive, the handler
 * once it has queued the event and the writer once it committed it; the
 * second one wakes the request, whose answer (ingest_answer) then reads
 * the outcome. */
typedef struct pending_ingest {
    evh_ack ack;
    http_deferred *deferred;
    atomic_int arrivals;
    char id[EVH_UUID_LEN + 1];
    char *key; /* the Idempotency-Key, for a duplicate's answer */
} pending_ingest;

static void pending_arrive(pending_ingest *p)
{
    if (atomic_fetch_add(&p->arrivals, 1) == 1)
        http_wake(p->deferred);
}

static void ingest_committed(evh_ack *ack)
{
    pending_arrive(ack->arg);
}

static void ingest_answer(void *ctx, const http_request *req, http_response *res, void *arg)
{
    pending_ingest *p = arg;
    (void)req;
    if (res && p->ack.rc == EVH_OK) {
        respond_id(res, 202, p->id, "accepted");
    } else if (res) {
        inbound in = {.key = p->key};
        diag none;
        diag_init(&none, NULL);
        respond_ingest_error(ctx, &in, p->ack.rc, &none, res);
        diag_free(&none);
    }
    free(p->key);
    free(p);
}

static void ingest(api_ctx *a, const http_request *req, const inbound *in, http_response *res)
{
    char *data = in->data ? cJSON_PrintUnformatted(in->data) : strdup("{}");
    char *extra = in->additional ? cJSON_PrintUnformatted(in->additional) : NULL;
    pending_ingest *p = data && (!in->additional || extra) ? calloc(1, sizeof *p) : NULL;
    if (p && in->key && !(p->key = strdup(in->key))) {
        free(p);
        p = NULL;
    }
    /* deferred first: the commit may come before hostapi_ingest returns */
    if (p && !(p->deferred = http_defer(req, ingest_answer, p))) {
        free(p->key);
        free(p);
        p = NULL;
    }
    if (!p) {
        http_respond_error(res, 500, "internal", NULL, "out of memory");
    } else {
        p->ack.notify = ingest_committed;
        p->ack.arg = p;
        ingest_options o = {.idempotency_key = in->key, .durable = 1, .async_ack = &p->ack};
        diag d;
        diag_init(&d, NULL);
        int rc = hostapi_ingest(a->rt, in->m, in->event_type, data, strlen(data), in->user_id,
                                extra, &o, &d, p->id);
        if (rc == EVH_OK) {
            pending_arrive(p);
        } else { /* refused before it was queued: no commit will come */
            http_undefer(req);
            respond_ingest_error(a, in, rc, &d, res);
            free(p->key);
            free(p);
        }
        diag_free(&d);
    }
    free(data);
    free(extra);
}

/* ---- handlers ------------------------------------------------------------------------ */

enum { SHAPE_ENVELOPE, SHAPE_CE_STRUCTURED, SHAPE_CE_BINARY };

static int request_shape(const http_request *req)
{
    static const char ce[] = "application/cloudevents+json";
    const char *ctype = http_header(req, "Content-Type");
    size_t n = sizeof ce - 1;
    if (ctype && !strncasecmp(ctype, ce, n) && strchr("; ", ctype[n]))
        return SHAPE_CE_STRUCTURED; /* strchr also finds the terminating NUL */
    return http_header(req, "ce-specversion") ? SHAPE_CE_BINARY : SHAPE_ENVELOPE;
}

/* POST /api/events/process */
static void post_process(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    inbound in = {.source_path = "source", .type_path = "event_type"};
    int shape = request_shape(req);
    size_t len = 0;
    http_body(req, &len);
    /* binary mode without body and Content-Type: an event without data */
    int no_data = shape == SHAPE_CE_BINARY && len == 0 && !http_header(req, "Content-Type");
    cJSON *doc = no_data ? cJSON_CreateObject() : api_body_object(req, res, 1);
    if (!doc)
        return;
    diag d;
    diag_init(&d, NULL);
    if (shape == SHAPE_ENVELOPE)
        read_envelope(doc, &in, &d);
    else if (shape == SHAPE_CE_STRUCTURED)
        read_cloudevent(doc, NULL, 0, &in, &d);
    else
        read_binary(req, doc, &in, &d);
    read_key_header(req, &in, &d);
    find_source(a, &in, &d);
    if (d.count)
        respond_invalid(res, &d);
    else if (!in.key || !answered_duplicate(a, in.key, res))
        ingest(a, req, &in, res);
    plugin_release(in.held);
    cJSON_Delete(in.additional);
    cJSON_Delete(in.attrs);
    free(in.key);
    diag_free(&d);
    cJSON_Delete(doc);
}

/* A store_events_list failure: 400 naming the parameter for EINVAL (the
 * store's message starts with it: "cursor: not a cursor of this list"). */
static void respond_list_error(http_response *res, int err, const char *msg)
{
    if (err != EINVAL) {
        http_respond_error(res, 500, "internal", NULL, "listing events failed: %s", msg);
        return;
    }
    diag d;
    diag_init(&d, NULL);
    const char *colon = strstr(msg, ": ");
    char name[32] = "";
    if (colon && (size_t)(colon - msg) < sizeof name)
        snprintf(name, sizeof name, "%.*s", (int)(colon - msg), msg);
    diag_add(&d, name, "%s%s", name[0] ? colon + 2 : msg,
             !strcmp(name, "status") ? " (pending, dispatched or unmatched)" : "");
    http_respond_error(res, 400, "invalid", &d, "%s", msg);
    diag_free(&d);
}

/* GET /api/events?source=&type=&status=&workflow=&trigger=&since=&until=&cursor=&limit= */
static void get_list(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    store_filter f = {0};
    static const char *const names[] = {"source",  "type",  "status", "workflow",
                                        "trigger", "since", "until",  "cursor"};
    const char **slots[] = {&f.source,     &f.event_type, &f.status, &f.workflow_id,
                            &f.trigger_id, &f.since,      &f.until,  &f.cursor};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *slots[i] = http_query(req, names[i]);
        if (*slots[i] && !**slots[i]) {
            diag d;
            diag_init(&d, NULL);
            diag_add(&d, names[i], "must not be empty");
            http_respond_error(res, 400, "invalid", &d, "%s: must not be empty", names[i]);
            diag_free(&d);
            return;
        }
    }
    long limit = api_query_limit(req, res);
    if (limit < 0)
        return;
    f.limit = (size_t)limit;
    store *st = api_store_acquire(a, res);
    if (!st)
        return;
    char *next = NULL;
    cJSON *items = store_events_list(st, &f, &next);
    int err = errno;
    if (items)
        api_respond_page(res, items, next);
    else
        respond_list_error(res, err, store_errmsg(st));
    api_store_release(a, st);
}

/* GET /api/events/{id}: the envelope plus "status". */
static void get_one(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    const char *id = http_param(req, "id");
    store *st = api_store_acquire(a, res);
    if (!st)
        return;
    cJSON *ev = store_event_get(st, id);
    if (ev)
        http_respond_json(res, 200, ev);
    else if (*store_errmsg(st))
        http_respond_error(res, 500, "internal", NULL, "reading event: %s", store_errmsg(st));
    else
        http_respond_error(res, 404, "not_found", NULL, "no event '%.*s'", QUOTE_MAX, id);
    api_store_release(a, st);
}

const http_route api_routes_events[] = {
    {"POST", "/api/events/process", post_process, 0},
    {"GET", "/api/events", get_list, 0},
    {"GET", "/api/events/{id}", get_one, 0},
    {0},
};

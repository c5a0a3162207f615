/*
 * event_request.c - a POST /api/events/process request read into one event
 * (see event_request.h).  No server here: headers come through
 * event_request_headers.
 */
#include "event_request.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jsonutil.h"
#include "schema.h"

#define IDEMPOTENCY_KEY_MAX 255 /* bytes, for the header and a CloudEvents id */
#define QUOTE_MAX 64            /* how much of a client value a message repeats */

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

static void read_metadata(const cJSON *meta, event_request *in, diag *d)
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

static void read_envelope(const cJSON *doc, event_request *in, diag *d)
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
static void read_cloudevent(const cJSON *attrs, const cJSON *data, int binary, event_request *in,
                            diag *d)
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
static void read_binary(const event_request_headers *hs, const cJSON *body, event_request *in,
                        diag *d)
{
    ce_headers h = {in->attrs = cJSON_CreateObject(), d};
    if (!h.attrs)
        return;
    hs->each(hs->ud, on_ce_header, &h);
    const char *ctype = hs->get(hs->ud, "Content-Type");
    if (ctype)
        cJSON_AddStringToObject(h.attrs, "datacontenttype", ctype);
    read_cloudevent(h.attrs, body, 1, in, d);
}

/* ---- the request ---------------------------------------------------------------- */

static void read_key_header(const event_request_headers *h, event_request *in, diag *d)
{
    const char *key = h->get(h->ud, "Idempotency-Key");
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

enum { SHAPE_ENVELOPE, SHAPE_CE_STRUCTURED, SHAPE_CE_BINARY };

static int request_shape(const event_request_headers *h)
{
    static const char ce[] = "application/cloudevents+json";
    const char *ctype = h->get(h->ud, "Content-Type");
    size_t n = sizeof ce - 1;
    if (ctype && !strncasecmp(ctype, ce, n) && strchr("; ", ctype[n]))
        return SHAPE_CE_STRUCTURED; /* strchr also finds the terminating NUL */
    return h->get(h->ud, "ce-specversion") ? SHAPE_CE_BINARY : SHAPE_ENVELOPE;
}

int event_request_read(const char *body, size_t len, const event_request_headers *h,
                       event_request *out, diag *d, api_refusal *why)
{
    *out = (event_request){.source_path = "source", .type_path = "event_type"};
    int shape = request_shape(h);
    const char *ctype = h->get(h->ud, "Content-Type");
    /* binary mode without body and Content-Type: an event without data */
    int no_data = shape == SHAPE_CE_BINARY && len == 0 && !ctype;
    if (no_data) {
        out->doc = cJSON_CreateObject();
        if (!out->doc) {
            *why = (api_refusal){500, "internal", NULL};
            return -1;
        }
    } else {
        out->doc = api_body_parse(ctype, body, len, 1, why);
        if (!out->doc)
            return -1;
    }
    if (shape == SHAPE_ENVELOPE)
        read_envelope(out->doc, out, d);
    else if (shape == SHAPE_CE_STRUCTURED)
        read_cloudevent(out->doc, NULL, 0, out, d);
    else
        read_binary(h, out->doc, out, d);
    read_key_header(h, out, d);
    return 0;
}

void event_request_release(event_request *r)
{
    cJSON_Delete(r->additional);
    cJSON_Delete(r->attrs);
    cJSON_Delete(r->doc);
    free(r->key);
    *r = (event_request){0};
}

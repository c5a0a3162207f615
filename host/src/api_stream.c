/*
 * api_stream.c - the lifecycle events live, as Server-Sent Events.
 *
 *   GET /api/events/stream[?job=<execution id>][&workflow=<workflow id>]
 *                         [&events=jobStart,jobError][&last_event_id=<id>]
 *
 * Each lifecycle event (the webhooks' envelope, docs/events.md) is one SSE
 * event:
 *
 *   id: 1764116276123457
 *   event: pluginComplete
 *   data: {"event":"pluginComplete","data":{...},"timestamp":"..."}
 *
 * Ids grow by one per event (stream.h).  A client that comes back with
 * Last-Event-ID (the header EventSource sends on reconnect, or
 * ?last_event_id= for clients that cannot set headers) gets every event
 * after that id that it takes, as long as the hub still holds them;
 * otherwise one "event: reset" says what was lost and the stream goes on
 * from now.  A quiet stream gets a ": keepalive" comment every
 * server.stream_keepalive_s, which also carries the id the client has
 * reached when its filter skipped events (an "id:" line without data moves
 * EventSource's Last-Event-ID without firing an event), so that a filtered
 * client does not fall out of the buffer for events it never wanted.
 *
 * A stream holds no server thread while it waits (http_respond_stream);
 * at most server.max_streams run at once, beyond that 503 + Retry-After.
 * API keys apply as everywhere.
 */
#include "api.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "evh_limits.h"
#include "log.h"
#include "stream.h"
#include "subscription.h"

/* Reconnection delay suggested to EventSource clients (the SSE "retry:"). */
#define SSE_RETRY_MS 2000
/* What a 503 for too many streams suggests to wait, in seconds. */
#define SSE_BUSY_RETRY_AFTER_S "5"

stream_hub *api_stream_hub_new(const evh_config *c, lifecycle *lc)
{
    stream_options o = {.max_events = c->stream_buffer_events,
                        .max_bytes = c->stream_buffer_bytes,
                        .max_subscribers = (size_t)c->max_streams,
                        .keepalive_ms = c->stream_keepalive_s * 1000};
    return stream_hub_new(lc, &o);
}

/* One stream connection. */
typedef struct sse_conn {
    stream_sub *sub;
    _Atomic(http_stream *) hs; /* set once the response exists */
    char *out;                 /* what is to be sent: out[off .. len) */
    size_t off, len, cap;
    uint64_t sent_id;          /* the last id the client was given */
    size_t buffer_events;      /* server.stream_buffer_events, for the reset's reason */
    int fresh;                 /* no Last-Event-ID: tell it where it starts */
    int opened, failed;
} sse_conn;

/* Append to c->out; 0, or -1 on out-of-memory. */
static int out_add(sse_conn *c, const char *p, size_t n)
{
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + n)
            cap *= 2;
        char *b = realloc(c->out, cap);
        if (!b)
            return -1;
        c->out = b;
        c->cap = cap;
    }
    memcpy(c->out + c->len, p, n);
    c->len += n;
    return 0;
}

static int out_str(sse_conn *c, const char *s)
{
    return out_add(c, s, strlen(s));
}

/* "data: " lines for text: one per line of it.  The envelopes are compact
 * JSON, one line; the split only keeps a multi-line text from ending the
 * event early. */
static int out_data(sse_conn *c, const char *text, size_t len)
{
    do {
        const char *nl = memchr(text, '\n', len);
        size_t n = nl ? (size_t)(nl - text) : len;
        if (out_str(c, "data: ") || out_add(c, text, n) || out_str(c, "\n"))
            return -1;
        text += nl ? n + 1 : n;
        len -= nl ? n + 1 : n;
    } while (len);
    return 0;
}

/* stream_sub_next's callback, under the hub's lock: format and return. */
static void format_event(void *ud, const stream_entry *e)
{
    sse_conn *c = ud;
    char head[96];
    snprintf(head, sizeof head, "id: %" PRIu64 "\nevent: %s\n", e->id, lc_event_name(e->event));
    if (out_str(c, head) || out_data(c, e->body, e->body_len) || out_str(c, "\n"))
        c->failed = 1;
    else
        c->sent_id = e->id;
}

static void format_reset(sse_conn *c, const stream_gap *g)
{
    char cursor[24], oldest[24], newest[24];
    snprintf(cursor, sizeof cursor, "%" PRIu64, g->cursor);
    snprintf(oldest, sizeof oldest, "%" PRIu64, g->oldest);
    snprintf(newest, sizeof newest, "%" PRIu64, g->newest);
    char reason[320];
    if (g->cursor > g->newest)
        snprintf(reason, sizeof reason,
                 "event id %s is newer than any event of this daemon; the stream goes on "
                 "from now: read the current state from the REST API", cursor);
    else
        snprintf(reason, sizeof reason,
                 "the events after id %s are no longer held (the daemon restarted, or more "
                 "than the %zu events server.stream_buffer_events keeps came since); the "
                 "stream goes on from now: read the current state from the REST API",
                 cursor, c->buffer_events);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "reason", reason);
    cJSON_AddStringToObject(o, "last_event_id", cursor);
    cJSON_AddStringToObject(o, "oldest_event_id", oldest);
    cJSON_AddStringToObject(o, "newest_event_id", newest);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    char head[64];
    snprintf(head, sizeof head, "id: %s\nevent: reset\n", newest);
    if (!json || out_str(c, head) || out_data(c, json, strlen(json)) || out_str(c, "\n"))
        c->failed = 1;
    else
        c->sent_id = g->newest;
    free(json);
}

/* Refill c->out once it was all sent: 1 when there is something to send,
 * 0 when there is nothing now, -1 to end the stream. */
static int refill(sse_conn *c)
{
    c->off = c->len = 0;
    if (c->failed)
        return -1;
    if (!c->opened) {
        c->opened = 1;
        char head[96];
        int n = snprintf(head, sizeof head, "retry: %d\n", SSE_RETRY_MS);
        if (c->fresh) {
            /* where it starts: a client that gets nothing before it drops
             * still comes back for everything since it connected */
            c->sent_id = stream_sub_cursor(c->sub);
            snprintf(head + n, sizeof head - (size_t)n, "id: %" PRIu64 "\n", c->sent_id);
        }
        if (out_str(c, head) || out_str(c, ": evhost lifecycle events\n\n"))
            c->failed = 1;
    } else {
        stream_gap g;
        switch (stream_sub_next(c->sub, format_event, c, &g)) {
        case STREAM_EVENT:
            break;
        case STREAM_GAP:
            log_info("api", "live stream: a client at id %" PRIu64 " missed events; sent a reset",
                     g.cursor);
            format_reset(c, &g);
            break;
        case STREAM_KEEPALIVE: {
            uint64_t at = stream_sub_cursor(c->sub);
            char line[64] = "";
            if (at != c->sent_id)
                snprintf(line, sizeof line, "id: %" PRIu64 "\n", at);
            if (out_str(c, ": keepalive\n") || out_str(c, line) || out_str(c, "\n"))
                c->failed = 1;
            else
                c->sent_id = at;
            break;
        }
        case STREAM_NONE:
            return 0;
        }
    }
    if (c->failed) {
        /* Ending the stream loses nothing: the client comes back with the
         * last id it got, and the event that failed here comes again. */
        log_error("api", "live stream: out of memory; ending the stream");
        c->off = c->len = 0;
        return -1;
    }
    return 1;
}

/* http_stream_fill: as much as fits, several events per chunk when they
 * are small. */
static long sse_fill(void *ud, char *buf, size_t max)
{
    sse_conn *c = ud;
    size_t put = 0;
    while (put < max) {
        if (c->off == c->len) {
            int r = refill(c);
            if (r < 0 && !put)
                return -1;
            if (r <= 0)
                break;
        }
        size_t n = c->len - c->off < max - put ? c->len - c->off : max - put;
        memcpy(buf + put, c->out + c->off, n);
        c->off += n;
        put += n;
    }
    return (long)put;
}

static void sse_wake(void *ud)
{
    sse_conn *c = ud;
    http_stream *hs = atomic_load(&c->hs);
    /* before the response exists there is nothing to wake: its first fill
     * reads whatever came meanwhile */
    if (hs)
        http_stream_wake(hs);
}

static void sse_done(void *ud)
{
    sse_conn *c = ud;
    stream_unsubscribe(c->sub);
    free(c->out);
    free(c);
}

/* ---- GET /api/events/stream ---------------------------------------------------- */

/* "jobStart,jobError" -> bits; 0 after answering 400. */
static unsigned parse_events(const char *list, http_response *res)
{
    unsigned bits = 0;
    const char *p = list;
    do {
        size_t n = strcspn(p, ",");
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
        int e = n && n < sizeof name ? lc_event_parse(name) : -1;
        if (e < 0) {
            char reason[160];
            snprintf(reason, sizeof reason,
                     "'%.*s' is not a lifecycle event (jobStart, jobComplete, jobError, "
                     "pluginStart, pluginComplete, pluginError)",
                     (int)(n > 40 ? 40 : n), p);
            api_respond_one(res, 400, "invalid", "events", reason, NULL);
            return 0;
        }
        bits |= 1u << e;
        p += n;
    } while (*p++ == ',');
    return bits;
}

/* A filter value: NULL when absent; answers 400 for "" or one too long. */
static int filter_value(const http_request *req, http_response *res, const char *name,
                        const char **out)
{
    const char *v = http_query(req, name);
    *out = v;
    if (v && (!*v || strlen(v) > EVH_ID_MAX_LEN)) {
        api_respond_one(res, 400, "invalid", name,
                        *v ? "longer than any id" : "empty: give an id or leave it out", NULL);
        return -1;
    }
    return 0;
}

static void get_stream(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    if (!a->stream) {
        http_respond_error(res, 503, "unavailable", NULL,
                           "this host runs without the live stream");
        return;
    }
    stream_filter f = {0};
    if (filter_value(req, res, "job", &f.job_id) || filter_value(req, res, "workflow",
                                                                   &f.workflow_id))
        return;
    const char *events = http_query(req, "events");
    if (events && !(f.events = parse_events(events, res)))
        return;

    /* the header wins: EventSource updates it on each reconnect, while a
     * ?last_event_id= stays what the page first put into the URL */
    const char *field = "Last-Event-ID";
    const char *last = http_header(req, field);
    if (!last || !*last) {
        field = "last_event_id";
        last = http_query(req, field);
    }
    uint64_t after = 0;
    int resume = last && *last;
    if (resume) {
        char *end;
        unsigned long long v = strtoull(last, &end, 10);
        if (*last < '0' || *last > '9' || *end || strlen(last) > 20) {
            char reason[160];
            snprintf(reason, sizeof reason,
                     "'%.40s' is not an id of this stream (a decimal number from its 'id:' lines)",
                     last);
            api_respond_one(res, 400, "invalid", field, reason, NULL);
            return;
        }
        after = v;
    }

    sse_conn *c = calloc(1, sizeof *c);
    if (!c) {
        http_respond_error(res, 500, "internal", NULL, "out of memory");
        return;
    }
    c->fresh = !resume;
    c->buffer_events = a->cfg->stream_buffer_events;
    int rc = stream_hub_subscribe(a->stream, &f, resume ? &after : NULL, sse_wake, c, &c->sub);
    if (rc != EVH_OK) {
        free(c);
        if (rc == EVH_E_QUEUE_FULL) {
            http_respond_error(res, 503, "too_many_streams", NULL,
                               "%d live streams are open, the most server.max_streams allows; "
                               "try again later",
                               a->cfg->max_streams);
            http_response_header(res, "Retry-After", SSE_BUSY_RETRY_AFTER_S);
        } else {
            http_respond_error(res, 500, "internal", NULL, "out of memory");
        }
        return;
    }
    http_stream *hs = http_respond_stream(res, 200, "text/event-stream", sse_fill, sse_done, c);
    if (!hs)
        return; /* sse_done freed c */
    atomic_store(&c->hs, hs);
    http_response_header(res, "Cache-Control", "no-cache");
    /* nginx and similar proxies would otherwise hold events back */
    http_response_header(res, "X-Accel-Buffering", "no");
}

const http_route api_routes_stream[] = {
    {"GET", "/api/events/stream", get_stream, 0},
    {0},
};

/*
 * http.c - the HTTP server on libmicrohttpd (see http.h).
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <evhost/evhost.h>

#include "event.h"
#include "evh_limits.h"
#include "log.h"

#define MAX_PARAMS 8
#define MAX_SEGMENTS 16
#define KEY_DIGEST_LEN 32

struct http_request {
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    char *body;
    size_t body_len, body_cap;
    int too_large;
    char param_names[MAX_PARAMS][32];
    char *param_values[MAX_PARAMS];
    size_t n_params;
    const char *auth_name;
    struct http_server *server;
    http_deferred *deferred; /* NULL, or the handler deferred its answer */
};

/* Two references: the request's (dropped when the connection ends) and
 * the waker's (dropped by http_wake). */
struct http_deferred {
    pthread_mutex_t lock;
    int refs;
    int woken, suspended, closed, answered;
    struct MHD_Connection *conn;
    struct http_server *server;
    http_resume_fn resume;
    void *arg;
};

/* One open connection, for the header deadline (see on_connection).  fd
 * is our own dup() of the socket: shutting it down reaches the socket even
 * when libmicrohttpd has already closed its descriptor, and the number can
 * never belong to another connection while we hold it. */
typedef struct conn_watch {
    int fd;
    int waiting;         /* 1: the request headers are still arriving */
    int cut;             /* 1: shut down at the deadline */
    int64_t deadline_ns; /* monotonic_ns() by which the headers must be in */
    struct conn_watch *prev, *next;
} conn_watch;

typedef struct key_digest {
    char *name;
    unsigned char digest[KEY_DIGEST_LEN];
} key_digest;

/* A streamed response (http_respond_stream).  suspended, woken and
 * closing are under lock, which is also held around MHD_suspend_connection
 * and MHD_resume_connection: a connection is resumed only after it was
 * suspended (anything else is undefined in libmicrohttpd), and a wake that
 * comes while fill runs is never lost (fill runs again instead of the
 * connection being suspended). */
struct http_stream {
    http_server *s; /* NULL until the response is queued */
    struct MHD_Connection *conn;
    http_stream_fill fill;
    void (*done)(void *ud);
    void *ud;
    pthread_mutex_t lock;
    int suspended, woken, closing;
    http_stream *prev, *next; /* the server's streams, under s->streams_lock */
};

struct http_server {
    struct MHD_Daemon *d;
    /* the streams being served; stopping: no new ones (http_stop) */
    pthread_mutex_t streams_lock;
    http_stream *streams;
    int stopping;
    const http_route *const *tables;
    http_fallback fallback;
    void (*on_authenticated)(void *ctx, const char *key_name);
    void *ctx;
    size_t max_body;
    key_digest *keys;
    size_t n_keys;
    int port;
    atomic_int deferred; /* deferred requests not yet answered (http_stop waits) */
    /* http_stop has begun: new requests are answered 503.  dispatching
     * counts the handlers running, so that http_stop sees every deferral
     * that one of them is about to make (both seq_cst: a handler either
     * sees closing or is counted). */
    atomic_int closing, dispatching;
    /* the header deadline: every connection, and the thread that cuts the
     * ones past it */
    int64_t header_timeout_ns;
    pthread_mutex_t watch_lock;
    pthread_cond_t watch_cond;
    conn_watch *watched;
    pthread_t watchdog;
    int watchdog_started, watch_stopping;
};

/* ---- request accessors -------------------------------------------------- */

const char *http_method(const http_request *r)
{
    return r->method;
}

const char *http_path(const http_request *r)
{
    return r->path;
}

const char *http_header(const http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const http_request *r, const char *name)
{
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!v) {
        /* "?flag" has no value: MHD reports it only when asked this way */
        int present = MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, name,
                                                    strlen(name), NULL, NULL) == MHD_YES;
        return present ? "" : NULL;
    }
    return v;
}

const char *http_body(const http_request *r, size_t *len)
{
    if (len)
        *len = r->body_len;
    return r->body ? r->body : "";
}

const char *http_param(const http_request *r, const char *name)
{
    for (size_t i = 0; i < r->n_params; i++) {
        if (!strcmp(r->param_names[i], name))
            return r->param_values[i];
    }
    return NULL;
}

const char *http_auth_name(const http_request *r)
{
    return r->auth_name;
}

typedef struct header_walk {
    http_header_fn fn;
    void *ud;
} header_walk;

static enum MHD_Result header_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    header_walk *w = cls;
    (void)kind;
    return w->fn(w->ud, key, value ? value : "") ? MHD_NO : MHD_YES;
}

void http_each_header(const http_request *r, http_header_fn fn, void *ud)
{
    header_walk w = {fn, ud};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, header_iter, &w);
}

void http_each_query(const http_request *r, http_header_fn fn, void *ud)
{
    header_walk w = {fn, ud};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, header_iter, &w);
}

const char *http_remote_addr(const http_request *r, char *buf, size_t len)
{
    if (!len)
        return buf;
    buf[0] = '\0';
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (!sa)
        return buf;
    socklen_t sl = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    if (getnameinfo(sa, sl, buf, (socklen_t)len, NULL, 0, NI_NUMERICHOST) != 0)
        buf[0] = '\0';
    return buf;
}

/* ---- responses ---------------------------------------------------------- */

void http_respond_raw(http_response *res, int status, const char *content_type, char *body,
                      size_t len)
{
    free(res->body);
    res->status = status;
    res->content_type = content_type;
    res->body = body;
    res->body_len = body ? len : 0;
}

void http_respond_json(http_response *res, int status, cJSON *body)
{
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (body && !text) {
        http_respond_raw(res, 500, "application/json", NULL, 0);
        return;
    }
    http_respond_raw(res, status, "application/json", text, text ? strlen(text) : 0);
}

void http_respond_error(http_response *res, int status, const char *code, const diag *details,
                        const char *fmt, ...)
{
    char *message = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&message, fmt, ap) < 0)
        message = NULL;
    va_end(ap);
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", message ? message : code);
    cJSON *list = cJSON_AddArrayToObject(err, "details");
    for (size_t i = 0; details && i < details->count; i++) {
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "path", details->items[i].path);
        cJSON_AddStringToObject(item, "reason", details->items[i].reason);
        cJSON_AddItemToArray(list, item);
    }
    free(message);
    http_respond_json(res, status, root);
}

void http_response_header(http_response *res, const char *name, const char *value)
{
    if (res->n_headers == HTTP_MAX_RESPONSE_HEADERS)
        return;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    res->header_names[res->n_headers] = n;
    res->header_values[res->n_headers] = v;
    res->n_headers++;
}

static void stream_free(void *cls);

static void response_release(http_response *res)
{
    if (res->stream) /* never handed to libmicrohttpd */
        stream_free(res->stream);
    res->stream = NULL;
    free(res->body);
    for (size_t i = 0; i < res->n_headers; i++) {
        free(res->header_names[i]);
        free(res->header_values[i]);
    }
}

/* ---- streamed responses --------------------------------------------------- */

http_stream *http_respond_stream(http_response *res, int status, const char *content_type,
                                 http_stream_fill fill, void (*done)(void *ud), void *ud)
{
    http_stream *hs = calloc(1, sizeof *hs);
    if (!hs) {
        done(ud);
        http_respond_error(res, 500, "internal", NULL, "out of memory");
        return NULL;
    }
    hs->fill = fill;
    hs->done = done;
    hs->ud = ud;
    pthread_mutex_init(&hs->lock, NULL);
    http_respond_raw(res, status, content_type, NULL, 0);
    if (res->stream)
        stream_free(res->stream);
    res->stream = hs;
    return hs;
}

void http_stream_wake(http_stream *hs)
{
    pthread_mutex_lock(&hs->lock);
    hs->woken = 1;
    if (hs->suspended) {
        hs->suspended = 0;
        MHD_resume_connection(hs->conn);
    }
    pthread_mutex_unlock(&hs->lock);
}

/* libmicrohttpd's content reader: fill, or sleep until a wake. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    http_stream *hs = cls;
    (void)pos;
    for (;;) {
        pthread_mutex_lock(&hs->lock);
        int closing = hs->closing;
        hs->woken = 0;
        pthread_mutex_unlock(&hs->lock);
        if (closing)
            return MHD_CONTENT_READER_END_OF_STREAM;
        long n = hs->fill(hs->ud, buf, max);
        if (n > 0)
            return (ssize_t)n;
        if (n < 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&hs->lock);
        if (hs->woken || hs->closing) {
            pthread_mutex_unlock(&hs->lock);
            continue;
        }
        /* nothing to send: give the thread back until http_stream_wake */
        hs->suspended = 1;
        MHD_suspend_connection(hs->conn);
        pthread_mutex_unlock(&hs->lock);
        return 0;
    }
}

/* The response is gone (libmicrohttpd's free callback), or was never sent. */
static void stream_free(void *cls)
{
    http_stream *hs = cls;
    http_server *s = hs->s;
    if (s) {
        pthread_mutex_lock(&s->streams_lock);
        if (hs->prev)
            hs->prev->next = hs->next;
        else
            s->streams = hs->next;
        if (hs->next)
            hs->next->prev = hs->prev;
        pthread_mutex_unlock(&s->streams_lock);
    }
    /* after done, nobody wakes hs any more (http.h) */
    hs->done(hs->ud);
    pthread_mutex_destroy(&hs->lock);
    free(hs);
}

static enum MHD_Result send_stream(http_server *s, struct MHD_Connection *c, http_response *res)
{
    http_stream *hs = res->stream;
    res->stream = NULL;
    hs->conn = c;
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, EVH_HTTP_STREAM_BLOCK, stream_read, hs, stream_free);
    if (!r) {
        stream_free(hs);
        response_release(res);
        return MHD_NO;
    }
    pthread_mutex_lock(&s->streams_lock);
    hs->s = s;
    hs->closing = s->stopping;
    hs->next = s->streams;
    if (s->streams)
        s->streams->prev = hs;
    s->streams = hs;
    pthread_mutex_unlock(&s->streams_lock);
    if (res->content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
    for (size_t i = 0; i < res->n_headers; i++)
        MHD_add_response_header(r, res->header_names[i], res->header_values[i]);
    /* no idle timeout: a stream is quiet between events; its keepalives
     * find a client that vanished */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)res->status, r);
    MHD_destroy_response(r); /* stream_free runs once the connection is done with it */
    response_release(res);
    return ok;
}

static enum MHD_Result send_response(http_server *s, struct MHD_Connection *c,
                                     http_response *res)
{
    if (res->stream)
        return send_stream(s, c, res);
    char *body = res->body;
    res->body = NULL; /* MHD frees it from here on */
    struct MHD_Response *r =
        MHD_create_response_from_buffer(res->body_len, body ? body : (char *)"",
                                        body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        response_release(res);
        return MHD_NO;
    }
    if (res->content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
    for (size_t i = 0; i < res->n_headers; i++)
        MHD_add_response_header(r, res->header_names[i], res->header_values[i]);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)res->status, r);
    MHD_destroy_response(r);
    response_release(res);
    return ok;
}

static enum MHD_Result send_error(http_server *s, struct MHD_Connection *c, int status,
                                  const char *code, const char *message)
{
    http_response res = {0};
    http_respond_error(&res, status, code, NULL, "%s", message);
    return send_response(s, c, &res);
}

/* ---- authentication --------------------------------------------------- */

static void digest_of(const char *text, size_t len, unsigned char out[KEY_DIGEST_LEN])
{
    unsigned int n = 0;
    EVP_Digest(text, len, out, &n, EVP_sha256(), NULL);
}

/* The key name the request carries, or NULL.  Comparing digests in
 * constant time hides both the keys' contents and their lengths; every key
 * is compared, so timing does not tell which one matched. */
static const char *authenticate(const http_server *s, struct MHD_Connection *c)
{
    const char *token = NULL;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (auth && !strncasecmp(auth, "Bearer ", 7))
        token = auth + 7;
    if (!token)
        token = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-API-Key");
    if (!token)
        return NULL;
    unsigned char d[KEY_DIGEST_LEN];
    digest_of(token, strlen(token), d);
    const char *found = NULL;
    for (size_t i = 0; i < s->n_keys; i++) {
        if (CRYPTO_memcmp(d, s->keys[i].digest, KEY_DIGEST_LEN) == 0)
            found = s->keys[i].name;
    }
    return found;
}

/* ---- routing ------------------------------------------------------------ */

/* Split "/a/b/c" into segments (in place in buf). */
static size_t split_path(char *buf, char **segs, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (n == max)
            return max + 1;
        segs[n++] = t;
    }
    return n;
}

/* 1 when pattern matches path; {name} values go to r's params. */
static int route_match(const char *pattern, char **segs, size_t n, http_request *r)
{
    char pbuf[256];
    char *psegs[MAX_SEGMENTS];
    snprintf(pbuf, sizeof pbuf, "%s", pattern);
    size_t pn = split_path(pbuf, psegs, MAX_SEGMENTS);
    if (pn != n)
        return 0;
    size_t n_params = 0;
    for (size_t i = 0; i < n; i++) {
        if (psegs[i][0] == '{')
            n_params++;
        else if (strcmp(psegs[i], segs[i]) != 0)
            return 0;
    }
    if (!r || n_params > MAX_PARAMS)
        return 1;
    for (size_t i = 0; i < n; i++) {
        if (psegs[i][0] != '{')
            continue;
        /* "{id}" -> "id" */
        snprintf(r->param_names[r->n_params], sizeof r->param_names[0], "%.*s",
                 (int)strcspn(psegs[i] + 1, "}"), psegs[i] + 1);
        if (!(r->param_values[r->n_params] = strdup(segs[i])))
            return 0;
        r->n_params++;
    }
    return 1;
}

static void dispatch(http_server *s, http_request *r, http_response *res)
{
    char buf[1024];
    char *segs[MAX_SEGMENTS];
    if (strlen(r->path) >= sizeof buf) {
        http_respond_error(res, 414, "uri_too_long", NULL, "the path is longer than %zu bytes",
                           sizeof buf - 1);
        return;
    }
    snprintf(buf, sizeof buf, "%s", r->path);
    size_t n = split_path(buf, segs, MAX_SEGMENTS);
    const http_route *hit = NULL;
    char allow[128] = "";
    for (size_t t = 0; s->tables[t] && !hit; t++) {
        for (const http_route *rt = s->tables[t]; rt->pattern && !hit; rt++) {
            if (n > MAX_SEGMENTS || !route_match(rt->pattern, segs, n, NULL))
                continue;
            if (!strcmp(rt->method, r->method))
                hit = rt;
            else if (!strstr(allow, rt->method))
                snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
                         allow[0] ? ", " : "", rt->method);
        }
    }
    if (!hit) {
        if (allow[0]) {
            http_respond_error(res, 405, "method_not_allowed", NULL,
                               "%s is not allowed on %s (allowed: %s)", r->method, r->path,
                               allow);
            http_response_header(res, "Allow", allow);
            return;
        }
        /* Before (and without) the API-key check, on purpose: see
         * http_fallback in http.h. */
        if (s->fallback && s->fallback(s->ctx, r, res))
            return;
        http_respond_error(res, 404, "not_found", NULL, "no such endpoint: %s %s", r->method,
                           r->path);
        return;
    }
    if (s->n_keys && !hit->public_route) {
        r->auth_name = authenticate(s, r->conn);
        if (!r->auth_name) {
            http_respond_error(res, 401, "unauthorized", NULL,
                               "an API key is required: send 'Authorization: Bearer <key>'");
            http_response_header(res, "WWW-Authenticate", "Bearer realm=\"evhost\"");
            return;
        }
        if (s->on_authenticated)
            s->on_authenticated(s->ctx, r->auth_name);
    }
    snprintf(buf, sizeof buf, "%s", r->path); /* split_path cut it up */
    split_path(buf, segs, MAX_SEGMENTS);
    route_match(hit->pattern, segs, n, r);
    hit->handler(s->ctx, r, res);
    if (!res->status)
        http_respond_error(res, 500, "internal", NULL, "the handler gave no answer");
}

/* ---- the header deadline ------------------------------------------------ */

/*
 * libmicrohttpd's connection timeout is an idle timeout: every byte received
 * starts it over, so a client sending its headers one byte per second (slow
 * loris) held a connection for ever, and server.max_connections of them
 * locked everyone else out.  So a connection must also deliver each
 * request's complete headers within server.connection_timeout_s of its
 * start (or of the end of its previous request); a watchdog thread shuts
 * down the ones that do not, and libmicrohttpd then closes them as it would
 * a client that went away.  The body is not covered: its size is capped by
 * server.max_body_bytes and a stalled body by the idle timeout.
 */

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_watch *w = ci ? calloc(1, sizeof *w) : NULL;
        if (w)
            w->fd = fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0);
        if (w && w->fd < 0) {
            free(w); /* out of descriptors: the idle timeout still applies */
            w = NULL;
        }
        *socket_context = w;
        if (!w)
            return;
        pthread_mutex_lock(&s->watch_lock);
        w->waiting = 1;
        w->deadline_ns = monotonic_ns() + s->header_timeout_ns;
        w->next = s->watched;
        if (s->watched)
            s->watched->prev = w;
        s->watched = w;
        pthread_mutex_unlock(&s->watch_lock);
        return;
    }
    conn_watch *w = *socket_context;
    if (!w)
        return;
    pthread_mutex_lock(&s->watch_lock);
    if (w->prev)
        w->prev->next = w->next;
    else
        s->watched = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pthread_mutex_unlock(&s->watch_lock);
    close(w->fd);
    free(w);
    *socket_context = NULL;
}

static conn_watch *watch_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* The headers of the current request are complete. */
static void watch_headers_done(http_server *s, struct MHD_Connection *c)
{
    conn_watch *w = watch_of(c);
    if (!w)
        return;
    pthread_mutex_lock(&s->watch_lock);
    w->waiting = 0;
    pthread_mutex_unlock(&s->watch_lock);
}

/* A request ended: a keep-alive connection's next one gets the full time. */
static void watch_next_request(http_server *s, struct MHD_Connection *c)
{
    conn_watch *w = watch_of(c);
    if (!w)
        return;
    pthread_mutex_lock(&s->watch_lock);
    w->waiting = 1;
    w->deadline_ns = monotonic_ns() + s->header_timeout_ns;
    pthread_mutex_unlock(&s->watch_lock);
}

static void *watchdog_main(void *arg)
{
    http_server *s = arg;
    pthread_mutex_lock(&s->watch_lock);
    while (!s->watch_stopping) {
        int64_t now = monotonic_ns();
        for (conn_watch *w = s->watched; w; w = w->next) {
            if (w->waiting && !w->cut && now >= w->deadline_ns) {
                w->cut = 1;
                shutdown(w->fd, SHUT_RDWR);
                log_debug("http", "closed a connection that sent no complete request headers "
                                  "within server.connection_timeout_s");
            }
        }
        /* a quarter of a second is precise enough for a timeout in seconds */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->watch_cond, &s->watch_lock, &until);
    }
    pthread_mutex_unlock(&s->watch_lock);
    return NULL;
}

static void watchdog_stop(http_server *s)
{
    if (!s->watchdog_started)
        return;
    pthread_mutex_lock(&s->watch_lock);
    s->watch_stopping = 1;
    pthread_cond_signal(&s->watch_cond);
    pthread_mutex_unlock(&s->watch_lock);
    pthread_join(s->watchdog, NULL);
    s->watchdog_started = 0;
}

/* ---- libmicrohttpd callbacks ------------------------------------------- */

static enum MHD_Result deferred_step(http_server *s, http_request *r, struct MHD_Connection *c);

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    http_server *s = cls;
    http_request *r = *con_cls;
    (void)version;
    if (!r) {
        watch_headers_done(s, c);
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->conn = c;
        r->server = s;
        r->method = method;
        r->path = url;
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->max_body) {
            r->too_large = 1;
            return send_error(s, c, 413, "payload_too_large",
                              "the request body is larger than the limit (server.max_body_bytes)");
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->too_large)
            return MHD_YES;
        if (r->body_len + n > s->max_body) {
            r->too_large = 1; /* a chunked body grew past the limit */
            free(r->body);
            r->body = NULL;
            r->body_len = 0;
            return MHD_YES;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 4096;
            while (cap < r->body_len + n + 1)
                cap *= 2;
            char *b = realloc(r->body, cap);
            if (!b)
                return MHD_NO;
            r->body = b;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload_data, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return MHD_YES;
    }
    if (r->too_large)
        return send_error(s, c, 413, "payload_too_large",
                          "the request body is larger than the limit (server.max_body_bytes)");
    if (r->deferred)
        return deferred_step(s, r, c); /* resumed */
    http_response res = {0};
    atomic_fetch_add(&s->dispatching, 1);
    if (atomic_load(&s->closing)) {
        atomic_fetch_sub(&s->dispatching, 1);
        http_respond_error(&res, 503, "stopping", NULL, "the server is stopping: retry later");
        http_response_header(&res, "Retry-After", "1");
        http_response_header(&res, "Connection", "close");
        return send_response(s, c, &res);
    }
    dispatch(s, r, &res);
    atomic_fetch_sub(&s->dispatching, 1);
    if (r->deferred) {
        response_release(&res);
        return deferred_step(s, r, c);
    }
    return send_response(s, c, &res);
}

/* ---- deferred answers (http.h) ----------------------------------------------- */

http_deferred *http_defer(const http_request *req, http_resume_fn resume, void *arg)
{
    http_request *r = (http_request *)req;
    if (r->deferred)
        return NULL; /* one per request */
    http_deferred *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    pthread_mutex_init(&d->lock, NULL);
    d->refs = 2;
    d->conn = r->conn;
    d->server = r->server;
    d->resume = resume;
    d->arg = arg;
    r->deferred = d;
    atomic_fetch_add(&r->server->deferred, 1);
    return d;
}

void http_undefer(const http_request *req)
{
    http_request *r = (http_request *)req;
    http_deferred *d = r->deferred;
    if (!d)
        return;
    r->deferred = NULL;
    atomic_fetch_sub(&r->server->deferred, 1);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* Drop a reference; the last one frees d (and arg, through resume, when
 * no answer was made). */
static void deferred_unref(http_deferred *d)
{
    pthread_mutex_lock(&d->lock);
    int last = --d->refs == 0;
    pthread_mutex_unlock(&d->lock);
    if (!last)
        return;
    if (!d->answered) {
        d->resume(d->server->ctx, NULL, NULL, d->arg);
        atomic_fetch_sub(&d->server->deferred, 1);
    }
    pthread_mutex_destroy(&d->lock);
    free(d);
}

void http_wake(http_deferred *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->woken = 1;
    /* A suspended connection is never closed by the server before it is
     * resumed (http_stop waits for the deferred ones), so conn is alive. */
    if (d->suspended && !d->closed)
        MHD_resume_connection(d->conn);
    pthread_mutex_unlock(&d->lock);
    deferred_unref(d);
}

/* After the handler returned (or the connection was resumed): answer when
 * woken, else suspend until http_wake. */
static enum MHD_Result deferred_step(http_server *s, http_request *r, struct MHD_Connection *c)
{
    http_deferred *d = r->deferred;
    pthread_mutex_lock(&d->lock);
    if (!d->woken) {
        if (!d->suspended) {
            MHD_suspend_connection(c);
            d->suspended = 1;
        }
        pthread_mutex_unlock(&d->lock);
        return MHD_YES;
    }
    d->answered = 1;
    pthread_mutex_unlock(&d->lock);
    http_response res = {0};
    d->resume(s->ctx, r, &res, d->arg);
    atomic_fetch_sub(&s->deferred, 1);
    if (!res.status)
        http_respond_error(&res, 500, "internal", NULL, "the request was not answered");
    return send_response(s, c, &res);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_request *r = *con_cls;
    (void)toe;
    watch_next_request(cls, c);
    if (!r)
        return;
    if (r->deferred) {
        pthread_mutex_lock(&r->deferred->lock);
        r->deferred->closed = 1;
        pthread_mutex_unlock(&r->deferred->lock);
        deferred_unref(r->deferred);
    }
    free(r->body);
    for (size_t i = 0; i < r->n_params; i++)
        free(r->param_values[i]);
    free(r);
    *con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt,
                                                            va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_debug("http", "%s", line);
}

/* ---- start and stop ----------------------------------------------------- */

static void server_free(http_server *s)
{
    pthread_mutex_destroy(&s->streams_lock);
    watchdog_stop(s);
    /* libmicrohttpd reports every connection closed when it stops; this is
     * for a start that failed half-way */
    while (s->watched) {
        conn_watch *w = s->watched;
        s->watched = w->next;
        close(w->fd);
        free(w);
    }
    pthread_cond_destroy(&s->watch_cond);
    pthread_mutex_destroy(&s->watch_lock);
    for (size_t i = 0; i < s->n_keys; i++)
        free(s->keys[i].name);
    free(s->keys);
    free(s);
}

http_server *http_start(const http_options *o, const http_route *const *tables,
                        http_fallback fallback, void *ctx, char **err)
{
    *err = NULL;
    http_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->streams_lock, NULL);
    s->tables = tables;
    s->fallback = fallback;
    s->on_authenticated = o->on_authenticated;
    s->ctx = ctx;
    s->max_body = o->max_body ? o->max_body : EVH_HTTP_DEFAULT_MAX_BODY;
    unsigned timeout_s = (unsigned)(o->timeout_s > 0 ? o->timeout_s : 30);
    s->header_timeout_ns = (int64_t)timeout_s * 1000000000LL;
    pthread_mutex_init(&s->watch_lock, NULL);
    pthread_cond_init(&s->watch_cond, NULL);
    s->keys = o->n_keys ? calloc(o->n_keys, sizeof *s->keys) : NULL;
    for (size_t i = 0; i < o->n_keys && s->keys; i++) {
        s->keys[i].name = strdup(o->keys[i].name);
        digest_of(o->keys[i].key, strlen(o->keys[i].key), s->keys[i].digest);
        s->n_keys++;
    }
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int gai = getaddrinfo(o->host, port, &hints, &ai);
    if (gai != 0) {
        if (asprintf(err, "listen address '%s': %s", o->host, gai_strerror(gai)) < 0)
            *err = NULL;
        server_free(s);
        return NULL;
    }
    /* suspend and resume: a stream waiting for its next event, or an
     * answer waiting for another thread (http_defer), holds no thread of
     * the pool.  MHD_USE_ITC (also implied by MHD_ALLOW_SUSPEND_RESUME):
     * without it, stopping wakes the workers through the listening socket,
     * which a worker at max_connections no longer polls: http_stop then
     * hung for ever (test_security test_limits) */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    unsigned threads = o->threads ? o->threads : EVH_HTTP_THREADS;
    s->d = MHD_start_daemon(
        flags, (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(o->max_connections > 0 ? o->max_connections : 256),
        MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)EVH_HTTP_HEADER_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
        s, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        if (asprintf(err, "cannot listen on %s:%d: %s", o->host, o->port,
                     errno ? strerror(errno) : "libmicrohttpd refused the settings") < 0)
            *err = NULL;
        server_free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : o->port;
    int e = pthread_create(&s->watchdog, NULL, watchdog_main, s);
    if (e != 0) {
        if (asprintf(err, "cannot start the HTTP header watchdog: %s", strerror(e)) < 0)
            *err = NULL;
        MHD_stop_daemon(s->d);
        server_free(s);
        return NULL;
    }
    s->watchdog_started = 1;
    return s;
}

int http_port(const http_server *s)
{
    return s->port;
}

void http_stop(http_server *s)
{
    if (!s)
        return;
    /* End every stream first: a suspended connection must be resumed
     * before MHD_stop_daemon (which aborts otherwise), and its client
     * should see the end of the body rather than a reset.  New streams
     * start closed from here on. */
    pthread_mutex_lock(&s->streams_lock);
    s->stopping = 1;
    for (http_stream *hs = s->streams; hs; hs = hs->next) {
        pthread_mutex_lock(&hs->lock);
        hs->closing = 1;
        if (hs->suspended) {
            hs->suspended = 0;
            MHD_resume_connection(hs->conn);
        }
        pthread_mutex_unlock(&hs->lock);
    }
    pthread_mutex_unlock(&s->streams_lock);
    /* a moment for the ends to go out (a client that reads nothing would
     * hold them back: bounded) */
    for (int waited = 0; waited < EVH_HTTP_STREAM_CLOSE_MS; waited += 10) {
        pthread_mutex_lock(&s->streams_lock);
        int left = s->streams != NULL;
        pthread_mutex_unlock(&s->streams_lock);
        if (!left)
            break;
        usleep(10000);
    }
    /* Answer new requests 503, then let the handlers running and the
     * deferred requests finish: a suspended connection must not be closed
     * under a waker.  Their wakers (the event writer) keep running until
     * after this returns.
     *
     * Not MHD_quiesce_daemon: with MHD_USE_EPOLL and a thread pool it races
     * the workers' own removal of the listening socket from their epoll
     * sets, and the loser calls MHD_PANIC ("Failed to remove listen FD from
     * epoll set", libmicrohttpd 0.9.75 as in Debian 12).  It aborted
     * test_workflow_validate once in CI; a loop of start, traffic and
     * quiesce aborts within seconds (test_api_http test_stop_under_traffic
     * is that loop).  MHD_stop_daemon alone only signals the workers and
     * joins them. */
    atomic_store(&s->closing, 1);
    for (int i = 0; i < 3000 && (atomic_load(&s->deferred) > 0 || atomic_load(&s->dispatching) > 0);
         i++) {
        struct timespec ms = {0, 10 * 1000000L};
        nanosleep(&ms, NULL);
    }
    if (atomic_load(&s->deferred) > 0)
        log_warn("http", "%d deferred request(s) still waiting at stop",
                 atomic_load(&s->deferred));
    watchdog_stop(s);
    MHD_stop_daemon(s->d);
    server_free(s);
}

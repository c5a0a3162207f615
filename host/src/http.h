/*
 * http.h - the HTTP server (libmicrohttpd lives behind this file only).
 *
 * Requests are routed through tables of {method, pattern, handler}; a
 * pattern is a path whose "{name}" segments match one path segment each
 * ("/api/triggers/{id}/test").  Handlers run on the server's worker threads
 * (several at once), read the request through the accessors below, and fill
 * an http_response.  The server enforces, before any handler runs:
 *   - the body limit (413, checked against Content-Length and while reading),
 *     the header size limit (431), the connection limit, the idle timeout,
 *     and a deadline of the same length for each request's complete headers
 *     (slow loris);
 *   - API keys: when keys are configured, every route not marked public
 *     needs "Authorization: Bearer <key>" (or "X-API-Key: <key>"), compared
 *     in constant time; otherwise 401;
 *   - 404 for an unknown path, 405 (with Allow) for a known path and another
 *     method.
 * Every error body is {"error": {"code", "message", "details": [...]}}.
 */
#ifndef EVH_HTTP_H
#define EVH_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "diag.h"

typedef struct http_request http_request;

const char *http_method(const http_request *r);
/* The path without the query string, percent-decoded by the server. */
const char *http_path(const http_request *r);
/* A request header (name case-insensitive) or NULL. */
const char *http_header(const http_request *r, const char *name);
/* A query argument (decoded) or NULL; "" for "?flag". */
const char *http_query(const http_request *r, const char *name);
/* The body (NUL-terminated for convenience; may hold NUL bytes) and its
 * length; "" and 0 when there is none. */
const char *http_body(const http_request *r, size_t *len);
/* The value of pattern segment {name}, or NULL. */
const char *http_param(const http_request *r, const char *name);
/* The name of the API key the request authenticated with, or NULL (no keys
 * configured, or a public route). */
const char *http_auth_name(const http_request *r);
/* Every request header, in order; return non-zero from fn to stop. */
typedef int (*http_header_fn)(void *ud, const char *name, const char *value);
void http_each_header(const http_request *r, http_header_fn fn, void *ud);
/* Every query argument (decoded), in order; "?flag" has value "". */
void http_each_query(const http_request *r, http_header_fn fn, void *ud);
/* The peer's numeric IP address into buf ("" when unknown); returns buf. */
const char *http_remote_addr(const http_request *r, char *buf, size_t len);

#define HTTP_MAX_RESPONSE_HEADERS 8

typedef struct http_stream http_stream;

typedef struct http_response {
    int status;
    char *body; /* malloc'd, or NULL */
    size_t body_len;
    const char *content_type; /* static string */
    char *header_names[HTTP_MAX_RESPONSE_HEADERS];
    char *header_values[HTTP_MAX_RESPONSE_HEADERS];
    size_t n_headers;
    http_stream *stream; /* http_respond_stream: a streamed body instead */
} http_response;

/* JSON body (takes ownership of body; NULL means no body). */
void http_respond_json(http_response *res, int status, cJSON *body);
/* Any body (takes ownership of body, malloc'd). */
void http_respond_raw(http_response *res, int status, const char *content_type, char *body,
                      size_t len);
/* {"error": {"code": code, "message": message, "details": [{"path", "reason"}...]}};
 * details may be NULL.  message is printf-style. */
void http_respond_error(http_response *res, int status, const char *code, const diag *details,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Add a response header (copied). */
void http_response_header(http_response *res, const char *name, const char *value);

/*
 * A streamed body (chunked), for as long as the client stays and fill has
 * more: Server-Sent Events.  The server calls fill(ud, buf, max) on one of
 * its threads whenever the connection can take data:
 *   > 0  that many bytes were put into buf (at most max);
 *   0    nothing now: the connection sleeps, holding no thread, until
 *        http_stream_wake;
 *   < 0  the body is complete.
 * done(ud) is called once when the stream is over for any reason (fill
 * ended it, the client left, the server stops, or the response could not
 * be sent): after it returns, fill is not called again and ud is the
 * caller's to free.  A stream has no idle timeout (its writes, such as
 * keepalives, find a vanished client); http_stop ends every stream first
 * (fill is not called again; the client sees the end of the body).
 * Returns the handle for http_stream_wake, or NULL (and done(ud) called,
 * a 500 answered) on out-of-memory.
 */
typedef long (*http_stream_fill)(void *ud, char *buf, size_t max);
http_stream *http_respond_stream(http_response *res, int status, const char *content_type,
                                 http_stream_fill fill, void (*done)(void *ud), void *ud);
/* fill has something new: call it again soon.  Any thread, any time until
 * done(ud) returned; never blocks on the network. */
void http_stream_wake(http_stream *s);

typedef void (*http_handler)(void *ctx, const http_request *req, http_response *res);

/*
 * Deferred answers.  A handler whose answer waits for another thread (an
 * ingest waiting for its event's commit) calls http_defer and returns
 * without filling res.  The connection is then suspended: no server thread
 * waits for it, so thousands of requests can wait for one commit.  Once
 * http_wake(d) has been called (from any thread, once per defer; it may
 * come before the handler returned), resume(ctx, req, res, arg) runs on a
 * server thread and answers.  If the connection went away first, resume
 * is called with req and res NULL, only to free arg.  A server stopping
 * (http_stop) waits for every deferred request to be woken and answered.
 */
typedef struct http_deferred http_deferred;
typedef void (*http_resume_fn)(void *ctx, const http_request *req, http_response *res,
                               void *arg);
http_deferred *http_defer(const http_request *req, http_resume_fn resume, void *arg);
void http_wake(http_deferred *d);
/* Take a deferral back before any http_wake: the handler answers in res
 * after all (resume is not called; arg is the caller's again). */
void http_undefer(const http_request *req);

typedef struct http_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/api/triggers/{id}" */
    http_handler handler;
    int public_route;    /* 1: no API key needed (health) */
} http_route;

/* Called for a path no table knows (plugin webhook endpoints): return 1
 * when it handled the request, 0 for the server's 404.  May be NULL.
 * Deliberately WITHOUT the API-key check: webhook endpoints are called by
 * third parties that cannot send our key, so whatever answers here must
 * authenticate requests itself (http_auth_name is NULL).  A path that a
 * table knows never gets here (405 instead), so the fallback cannot be
 * used to reach a keyed route without a key. */
typedef int (*http_fallback)(void *ctx, const http_request *req, http_response *res);

typedef struct http_options {
    const char *host;  /* "127.0.0.1", "0.0.0.0", "::1" */
    int port;          /* 0: any free port (see http_port) */
    size_t max_body;
    int max_connections;
    int timeout_s;
    unsigned threads;  /* worker threads; 0: EVH_HTTP_THREADS */
    const evh_api_key *keys;
    size_t n_keys;
    /* Called (may be NULL) with the server's ctx each time a request
     * authenticated with an API key, before its handler runs, on the
     * request's thread: keep it short (the system source's user_login). */
    void (*on_authenticated)(void *ctx, const char *key_name);
} http_options;

typedef struct http_server http_server;

/*
 * Start serving.  tables is a NULL-terminated list of route tables, each
 * ending with a {0} entry; ctx is passed to every handler.  Returns NULL and
 * a malloc'd reason in *err when the address cannot be bound.
 */
http_server *http_start(const http_options *o, const http_route *const *tables,
                        http_fallback fallback, void *ctx, char **err);
/* The port actually bound. */
int http_port(const http_server *s);
/* End the streams, answer new requests 503 ("stopping"), finish the requests
 * in flight and the deferred ones, free. */
void http_stop(http_server *s);

#endif

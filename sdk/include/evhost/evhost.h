/*
 * evhost.h - the evhost plugin SDK.
 *
 * This is the only file an evhost plugin includes, and the whole contract
 * between a plugin and the host.  It is self-contained (it needs only
 * <stddef.h>, <stdint.h> and <stdarg.h>), compiles as C99 and C11, and is
 * versioned:
 *
 *   EVH_ABI_MAJOR  changes only when something in here changes incompatibly.
 *                  The host refuses a plugin of another major.
 *   EVH_ABI_MINOR  grows when something is appended.  A plugin built against
 *                  minor N loads in any host of minor >= the minor its
 *                  plugin.json requires ("abi": "1.0"), so building against a
 *                  newer header never raises the host a plugin needs: the
 *                  requirement is declared in plugin.json, not implied.
 *
 * Rules that keep that promise (the host test suite pins every offset):
 *   - every struct that crosses the boundary starts with `uint32_t
 *     struct_size`, is append-only, and uses fixed-width fields only (no
 *     enums, no bool);
 *   - plugins never link host symbols: everything the host offers is in the
 *     function table (evh_host_api) handed to init;
 *   - JSON crosses the boundary as UTF-8 text plus length, never as a
 *     library object.
 *
 * A plugin is a shared object (.so) in its own folder next to a plugin.json.
 * It exports exactly one function, evh_plugin_entry(), declared by
 * EVH_DECLARE_SOURCE() or EVH_DECLARE_STEP() below, that returns its
 * descriptor.  Build it with hidden visibility; the macro exports the entry:
 *
 *     cc -std=c99 -shared -fPIC -fvisibility=hidden -I sdk/include \
 *        -o my-timer.so my_timer.c
 *
 * Ownership, in one sentence: what the host passes in is borrowed for the
 * duration of the call; what the plugin passes to the host is copied before
 * the call returns; what the plugin hands back to the host (step output,
 * error messages) is allocated with api->alloc and freed by the host.
 */
#ifndef EVHOST_EVHOST_H
#define EVHOST_EVHOST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Versions
 * ------------------------------------------------------------------------- */

#define EVH_ABI_MAJOR 1
#define EVH_ABI_MINOR 2

/* The same, as the text plugin.json uses in its "abi" field. */
#define EVH_ABI_STRING "1.2"

/*
 * What each minor appended (a plugin uses something of minor N only when its
 * plugin.json declares "abi": "1.N" or later):
 *   1.0  everything not listed below.
 *   1.1  evh_source.http with evh_http_field, evh_http_request and
 *        evh_http_response: HTTP requests to the manifest's
 *        "webhookEndpoint" (see "HTTP requests to an event source").
 *        evh_host_api.condition_eval (conditions in the trigger language)
 *        and evh_host_api.emit_id (emit, and learn the event's id).
 *        evh_step_output.flags with EVH_STEP_STOP_WORKFLOW (a step ends
 *        its workflow early, as succeeded).
 *        (These last three were appended to 1.1 before 1.1 was released,
 *        so they did not need a minor of their own: a host of ABI 1.1
 *        has all of them.)
 *   1.2  evh_step.validate with EVH_STEP_HAS and evh_is_template: a step
 *        checks its config when the workflow loads (see "Checking a step's
 *        config at load").  Advisory: a plugin that sets it needs no
 *        "abi": "1.2" in plugin.json, since an older host just never calls
 *        it and the same problems then fail init or the run, as before.
 *
 * Source code: initialize the descriptor tables with designated
 * initializers (.init = my_init, ...), as the examples below do.  A table
 * initialized by position still works, but since fields get appended,
 * -Wextra then warns about the ones a newer header added.
 */

/* ---------------------------------------------------------------------------
 * Status codes
 *
 * Every function in this SDK that can fail returns int32_t: EVH_OK (0) or one
 * of the negative codes below.  The list only ever grows; a code keeps its
 * number forever.  evh_status_name() and evh_status_message() turn a code
 * into text; they are inline, so plugins need no host symbol for them.
 * ------------------------------------------------------------------------- */

#define EVH_STATUS_LIST(X)                                                     \
    X(EVH_OK, 0, "success")                                                    \
    X(EVH_E_INVALID, -1, "invalid argument")                                   \
    X(EVH_E_NOMEM, -2, "out of memory")                                        \
    X(EVH_E_QUEUE_FULL, -3, "event queue is full; retry later")                \
    X(EVH_E_UNDECLARED_TYPE, -4,                                               \
      "event type is not declared in the plugin's plugin.json")                \
    X(EVH_E_SCHEMA, -5, "data does not match the schema")                      \
    X(EVH_E_STOPPING, -6, "the host is stopping")                              \
    X(EVH_E_TIMEOUT, -7, "operation timed out")                                \
    X(EVH_E_ABI, -8, "SDK ABI version mismatch")                               \
    X(EVH_E_MANIFEST, -9, "invalid plugin.json")                               \
    X(EVH_E_LOAD, -10, "plugin library could not be loaded")                   \
    X(EVH_E_PERMISSION, -11, "unsafe file permissions")                        \
    X(EVH_E_DUPLICATE, -12, "duplicate id")                                    \
    X(EVH_E_NOT_FOUND, -13, "not found")                                       \
    X(EVH_E_CONFIG, -14, "invalid configuration")                              \
    X(EVH_E_PLUGIN, -15, "the plugin reported a failure")                      \
    X(EVH_E_IO, -16, "input/output error")                                     \
    X(EVH_E_JSON, -17, "malformed JSON")                                       \
    X(EVH_E_UNSUPPORTED, -18, "not supported")                                 \
    X(EVH_E_STATE, -19, "not allowed in the current state")

#define EVH_STATUS_ENUM_(name, value, msg) name = value,
enum evh_status { EVH_STATUS_LIST(EVH_STATUS_ENUM_) EVH_E_LAST_ = -20 };
#undef EVH_STATUS_ENUM_

/* "EVH_E_QUEUE_FULL" for EVH_E_QUEUE_FULL; "EVH_E_UNKNOWN" for any other. */
static inline const char *evh_status_name(int32_t status)
{
#define EVH_STATUS_NAME_(name, value, msg)                                     \
    if (status == (value))                                                     \
        return #name;
    EVH_STATUS_LIST(EVH_STATUS_NAME_)
#undef EVH_STATUS_NAME_
    return "EVH_E_UNKNOWN";
}

/* A one-line, lowercase, human description of a status code. */
static inline const char *evh_status_message(int32_t status)
{
#define EVH_STATUS_MSG_(name, value, msg)                                      \
    if (status == (value))                                                     \
        return msg;
    EVH_STATUS_LIST(EVH_STATUS_MSG_)
#undef EVH_STATUS_MSG_
    return "unknown status code";
}

/* ---------------------------------------------------------------------------
 * Constants
 * ------------------------------------------------------------------------- */

/* Plugin kinds (evh_plugin.kind); they match plugin.json "type". */
#define EVH_KIND_SOURCE 1 /* "event-source" */
#define EVH_KIND_STEP 2   /* "workflow-step" */

/* Log levels for evh_host_api.log. */
#define EVH_LOG_ERROR 0
#define EVH_LOG_WARN 1
#define EVH_LOG_INFO 2
#define EVH_LOG_DEBUG 3

/* Pass as a length to mean "the text is NUL-terminated; use strlen". */
#define EVH_NUL_TERMINATED ((size_t)-1)

#if defined(__GNUC__) || defined(__clang__)
#define EVH_PRINTF_(fmt_index, first_arg)                                      \
    __attribute__((format(printf, fmt_index, first_arg)))
#define EVH_EXPORT_ __attribute__((visibility("default")))
#else
#define EVH_PRINTF_(fmt_index, first_arg)
#define EVH_EXPORT_
#endif

/* ---------------------------------------------------------------------------
 * The host API table
 *
 * An opaque handle (evh_host *) names one plugin instance to the host.  It is
 * passed to init together with the function table and is valid until fini
 * returns.  Keep both in your context.
 *
 * Use a function that was appended in a later minor only after checking that
 * the host has it:  if (EVH_API_HAS(api, some_new_fn)) api->some_new_fn(...);
 * Everything present in ABI 1.0 is always there.
 * ------------------------------------------------------------------------- */

typedef struct evh_host evh_host;

typedef struct evh_host_api {
    uint32_t struct_size; /* sizeof(evh_host_api) of the host's header */
    uint16_t abi_major;   /* the host's EVH_ABI_MAJOR */
    uint16_t abi_minor;   /* the host's EVH_ABI_MINOR */

    /* --- ABI 1.0 ------------------------------------------------------- */

    /*
     * emit: hand one event to the host (event sources, and steps that
     * declare eventTypes in their plugin.json).
     *
     *   event_type  one of the "type" values of the plugin's eventTypes.
     *   data_json   the event's data: a JSON object, data_len bytes long
     *               (or EVH_NUL_TERMINATED).
     *   user_id     who caused the event, or NULL; it becomes
     *               metadata.user_id of the envelope.
     *
     * The host builds the envelope itself: it assigns the event id and the
     * timestamp and stamps `source` with this plugin's id, so a plugin cannot
     * emit under another source's id.  Everything is copied before emit
     * returns.  Thread-safe: call it from any thread of the plugin while the
     * instance is initialized.
     *
     * Returns:
     *   EVH_OK                 accepted; the host owns the event now.
     *   EVH_E_QUEUE_FULL       backpressure: the host's queue stayed full for
     *                          its bounded wait (never longer); nothing was
     *                          kept.  Slow down and retry.
     *   EVH_E_UNDECLARED_TYPE  event_type is not declared in plugin.json.
     *   EVH_E_SCHEMA           data_json is not JSON or breaks the event
     *                          type's schema; the host logs each problem.
     *   EVH_E_STOPPING         the host is shutting down; return from run().
     *   EVH_E_INVALID          a NULL argument.
     */
    int32_t (*emit)(evh_host *host, const char *event_type,
                    const char *data_json, size_t data_len,
                    const char *user_id);

    /* log: a printf-style line in the host log, tagged with the plugin id.
     * Thread-safe.  No trailing newline needed. */
    void (*log)(evh_host *host, int32_t level, const char *fmt, ...)
        EVH_PRINTF_(3, 4);

    /*
     * config_json: this instance's configuration as a JSON object text,
     * already validated against the manifest's configSchema with defaults
     * filled in; "{}" when there is none.  For an event source it comes from
     * the host configuration; for a workflow step, from the step's `with:`
     * block in the workflow.  Borrowed: valid until fini returns.  *len (if
     * not NULL) receives the length.
     */
    const char *(*config_json)(evh_host *host, size_t *len);

    /*
     * wait: sleep up to timeout_ms milliseconds, returning early when the
     * host starts to stop.  Returns EVH_OK when the full time elapsed and
     * EVH_E_STOPPING when the host is stopping (then return from run()).
     * This is how a source's run loop should sleep.
     */
    int32_t (*wait)(evh_host *host, uint64_t timeout_ms);

    /* stopping: 1 when the host has asked this instance to stop, else 0. */
    int32_t (*stopping)(evh_host *host);

    /* data_dir: an existing directory private to this plugin, for its files
     * and state.  Borrowed: valid until fini returns. */
    const char *(*data_dir)(evh_host *host);

    /*
     * metric: from inside a step's run(), record a named number for the
     * current run (for example "rows_inserted" = 42).  The host stores it
     * with the step run and reports it in lifecycle events.  A later value
     * for the same name replaces the earlier one.  The name is copied.
     * Returns EVH_E_STATE outside run().
     */
    int32_t (*metric)(evh_host *host, const char *name, double value);

    /* The host's allocator.  Anything the plugin hands back to the host
     * (evh_step_output fields, *errmsg of init) must come from alloc (or
     * strdup/mprintf, which use it); the host frees it with free. */
    void *(*alloc)(size_t size);
    void (*free)(void *ptr);
    char *(*strdup)(const char *text);
    /* printf into a new buffer from alloc; NULL when out of memory. */
    char *(*mprintf)(const char *fmt, ...) EVH_PRINTF_(1, 2);

    /*
     * Reading JSON without a JSON library.  `path` is dotted with array
     * indexes: "auth.token", "items[0].sku"; "" is the whole document.
     *
     * config_string/int/number/bool read this instance's config (see
     * config_json); they return `fallback` when the path is missing or has
     * another type.  config_string's result is borrowed until fini.
     */
    const char *(*config_string)(evh_host *host, const char *path,
                                 const char *fallback);
    int64_t (*config_int)(evh_host *host, const char *path, int64_t fallback);
    double (*config_number)(evh_host *host, const char *path,
                            double fallback);
    int32_t (*config_bool)(evh_host *host, const char *path,
                           int32_t fallback);

    /*
     * json_get: the value at `path` inside a JSON text (json_len bytes or
     * EVH_NUL_TERMINATED), as new JSON text from alloc (free it with
     * api->free), or NULL when the text is not JSON or the path is missing.
     * For a string value, json_get_string returns the decoded string
     * instead (NULL when missing or not a string).
     */
    char *(*json_get)(const char *json, size_t json_len, const char *path);
    char *(*json_get_string)(const char *json, size_t json_len,
                             const char *path);

    /* json_quote: `text` as a quoted, escaped JSON string, from alloc; for
     * building event data safely: {"name": <quoted>}. */
    char *(*json_quote)(const char *text);

    /* --- ABI 1.1 ------------------------------------------------------- */

    /*
     * condition_eval: evaluate conditions written in the trigger language
     * (docs/pipeline.md, "Triggers") against a document; the host compiles
     * them with the same code as triggers, so a plugin never re-implements
     * the language.
     *
     *   conditions_json  one condition ({all: [...]}, {any: [...]},
     *                    {not: ...} or a clause {field, op, value}) or a
     *                    list of them (read as all), as JSON text of
     *                    conditions_len bytes (or EVH_NUL_TERMINATED).
     *   context_json     {"event": <envelope>, "steps": <earlier steps>}
     *                    (context_len bytes or EVH_NUL_TERMINATED): the
     *                    fields of the clauses are paths into it, written
     *                    as in triggers:  id, event_type, source, data.*
     *                    and metadata.* name the event's envelope (under
     *                    "event"), and steps.<id>.output.* an earlier
     *                    step's output (under "steps").  In a step's run,
     *                    pass in->event_json and in->steps_json that way.
     *                    A missing part simply has no fields.
     *   error            when not NULL and the result is negative, receives
     *                    a message from api->alloc naming every problem
     *                    with its path ("all[0].op: unknown operator
     *                    'equals' (one of eq, ne, ...)"); free it with
     *                    api->free.  Otherwise set to NULL.
     *
     * Returns 1 when the conditions hold, 0 when they do not (a clause over
     * a missing field is false, as in triggers), or:
     *   EVH_E_CONFIG  the conditions are malformed (unknown operator or key,
     *                 a field outside id/event_type/source/data/metadata/
     *                 steps, a regex that does not compile, ...);
     *   EVH_E_JSON    either text is not JSON, or the context not an object;
     *   EVH_E_INVALID a NULL argument;  EVH_E_NOMEM.
     * Thread-safe; compiles the conditions on every call (microseconds, a
     * `matches` regex somewhat more).  Check EVH_API_HAS(api,
     * condition_eval) first.
     */
    int32_t (*condition_eval)(evh_host *host, const char *conditions_json,
                              size_t conditions_len, const char *context_json,
                              size_t context_len, char **error);

    /*
     * emit_id: emit exactly as emit does (same checks, same return codes,
     * same chain depth), and on EVH_OK also write the id the host gave the
     * event, NUL-terminated, into id_out (EVH_EVENT_ID_SIZE bytes; may be
     * NULL).  For steps that report what they emitted.  Check
     * EVH_API_HAS(api, emit_id) first.
     */
    int32_t (*emit_id)(evh_host *host, const char *event_type,
                       const char *data_json, size_t data_len,
                       const char *user_id, char *id_out);

    /* --- appended in later minors go below this line, never above ------ */
} evh_host_api;

/* Bytes emit_id writes: a UUID ("6f1c0f5e-3d1b-4d0e-9a57-2c4f1f0b7a10")
 * and its NUL. */
#define EVH_EVENT_ID_SIZE 37

/* True when the host's table is long enough to contain `field`. */
#define EVH_API_HAS(api, field)                                                \
    ((api)->struct_size >=                                                     \
     offsetof(evh_host_api, field) + sizeof((api)->field))

/* ---------------------------------------------------------------------------
 * HTTP requests to an event source (ABI 1.1)
 *
 * An event source whose plugin.json declares "webhookEndpoint" (for example
 * "/api/webhooks/github") receives the HTTP requests the host's server gets
 * for that path through evh_source.http: that is how a source takes
 * webhooks from third parties (GitHub, Stripe, Slack) without opening a
 * port of its own.
 *
 * Which requests:  every method, to exactly the declared path, with any
 *   query.  As for the host's own routes, a trailing "/" or a doubled "/"
 *   in the request makes no difference; sub-paths below the endpoint are NOT
 *   delivered (they get the host's 404).  An endpoint that ends in "/" after
 *   at least one segment ("/api/webhooks/") is a prefix endpoint instead: it
 *   receives its own path and every path below it ("/api/webhooks/a",
 *   "/api/webhooks/a/b"); read req->path to tell them apart.  When several
 *   endpoints match a path, the most specific wins: an exact
 *   "/api/webhooks/github" of one source over the prefix "/api/webhooks/" of
 *   another.  The host's API routes win over an endpoint that collides with
 *   one of them: put endpoints under "/api/webhooks/".  Two sources cannot
 *   declare the same endpoint, "/a" and "/a/" counting as the same (the
 *   second is refused).
 *
 * No API key:  these requests do NOT pass the host's API-key check, because
 *   the third parties that call webhooks cannot send evhost's key.  The
 *   plugin MUST authenticate every request itself, typically by an HMAC
 *   signature over the raw body (GitHub's X-Hub-Signature-256, Stripe's
 *   Stripe-Signature, Standard Webhooks' webhook-signature) with a secret
 *   from its config, compared in constant time, and answer 401 otherwise.
 *
 * Limits:  the host's body limit (server.max_body_bytes: 413) and header
 *   limit (431) are enforced before the plugin is called.
 *
 * Threads:  http runs on one of the host's HTTP worker threads, and several
 *   calls may run at the same time, concurrently with each other and with
 *   run() and stop(): lock whatever state they share.  Calls happen only
 *   after init succeeded (possibly before run() started, or after it
 *   returned); the host finishes every call in flight before it calls stop
 *   or fini.
 *
 * Emitting:  api->emit is thread-safe and may be called from http.  Called
 *   on the thread running http, it returns only once the host has STORED
 *   the event (elsewhere it returns once the event is queued), so a 2xx
 *   sent after EVH_OK truthfully tells the sender, which will not retry,
 *   that the event is safe.  There it may also return the error of storing
 *   it (EVH_E_IO, for instance): answer 5xx so that the sender retries.
 *
 * Time:  the host does not interrupt a call, and a slow call holds one of
 *   the host's few HTTP threads while the sender waits (senders give up
 *   after a few seconds; GitHub after 10).  Check, emit, answer; leave slow
 *   work to run().  The host logs calls that take longer than 5 seconds.
 *
 * Answers:  the host presets res (status 200, everything else NULL/0).
 *   Return EVH_OK and the host sends what res holds.  Any other return
 *   becomes 500 {"error": {"code": "plugin_error", ...}} naming the status
 *   code, and the host still frees res->body and res->headers.  A source
 *   whose plugin.json declares webhookEndpoint but whose library has no http
 *   callback (built against SDK 1.0, or http left NULL) gets 501 for its
 *   requests; one that is not ready or running (failed, inactive, stopped)
 *   gets 503.
 * ------------------------------------------------------------------------- */

/* A request header or query argument; both texts NUL-terminated. */
typedef struct evh_http_field {
    const char *name;
    const char *value;
} evh_http_field;

/* Everything in it is borrowed for the duration of the call. */
typedef struct evh_http_request {
    uint32_t struct_size; /* sizeof(evh_http_request) of the host */
    uint32_t n_headers;   /* entries in headers */
    const char *method;   /* "POST", "GET", ... */
    /* Percent-decoded, without the query.  For a prefix endpoint
     * ("/api/webhooks/") it tells which path below it was requested. */
    const char *path;
    /* The request headers in the order received, names spelled as the
     * client sent them: compare names case-insensitively. */
    const evh_http_field *headers;
    /* The query arguments, percent-decoded, in order ("?a=1&flag" is
     * {"a","1"}, {"flag",""}); the raw query text is not available. */
    const evh_http_field *query;
    uint32_t n_query;   /* entries in query */
    uint32_t reserved_; /* zero */
    /* The body as received: body_len bytes that may contain NUL bytes,
     * followed by a NUL for convenience; "" and 0 when there is none. */
    const char *body;
    size_t body_len;
    /* The peer's IP address ("203.0.113.7", "::1"), "" when unknown.
     * Behind a reverse proxy this is the proxy's address. */
    const char *remote_addr;
} evh_http_request;

typedef struct evh_http_response {
    uint32_t struct_size; /* sizeof(evh_http_response) of the host */
    int32_t status;       /* preset 200; the plugin sets 200..599 (any other
                             value becomes a 500) */
    /* The Content-Type, or NULL: none without a body, else
     * "application/octet-stream".  Borrowed: the host copies it after http
     * returned and never frees it, so use a string literal. */
    const char *content_type;
    char *body;      /* NULL, or from api->alloc; the host frees it */
    size_t body_len; /* bytes of body; 0 or EVH_NUL_TERMINATED: the body is
                        NUL-terminated */
    /* Extra response headers, or NULL: "Name: value" lines separated by
     * "\n" ("Retry-After: 30\nX-Request-Id: 7"), from api->alloc; the host
     * frees it.  At most 7 are sent.  A line that is not a valid header
     * (a name that is not an HTTP token, a control character in the value),
     * and the headers the host owns (Content-Type, Content-Length,
     * Transfer-Encoding, Connection, Date), are dropped with a log line. */
    char *headers;
} evh_http_response;

/* ---------------------------------------------------------------------------
 * Event sources
 *
 * Lifecycle of one instance, all calls with the ctx that init stored:
 *
 *   init   on a host thread (not the one run gets), within the host's init
 *          deadline (plugins.init_timeout_ms): past it the plugin is
 *          marked failed and never called again.  Read config with
 *          api->config_json, allocate your context, store it in *ctx.
 *          Return EVH_OK, or a negative code and optionally *errmsg (from
 *          api->alloc; the host frees it) saying why; the host then skips
 *          the plugin and calls nothing else.
 *   run    on a thread the host creates for this instance.  Produce events
 *          with api->emit until the host stops: sleep with api->wait (it
 *          returns EVH_E_STOPPING) or poll api->stopping.  Return EVH_OK
 *          when done; a negative return is logged as the source failing.
 *   stop   optional (may be NULL); called from another host thread when the
 *          host wants run() to return, for sources that block in their own
 *          system calls (read, poll) and need a wake-up.  Return at once:
 *          stop and run() returning share the host's stop deadline
 *          (plugins.stop_timeout_ms), past which the instance is abandoned
 *          (never called, finalized or unloaded again).
 *   fini   on a host thread after run has returned (or when run was never
 *          started), and after any http call in flight; free everything.
 *          At a hot reload the new version's init runs while the old
 *          version still runs (the old one is stopped only once the new
 *          one's init succeeded): take exclusive resources (a port, a lock
 *          file) in run, not in init.
 *   http   optional, ABI 1.1: HTTP requests to the manifest's
 *          webhookEndpoint, on the host's HTTP threads (see above).
 *
 * The host never calls fini while run, stop or http is in flight.
 * ------------------------------------------------------------------------- */

typedef struct evh_source {
    uint32_t struct_size; /* sizeof(evh_source) */
    uint32_t reserved_;   /* zero */
    int32_t (*init)(const evh_host_api *api, evh_host *host, void **ctx,
                    char **errmsg);
    int32_t (*run)(void *ctx);
    void (*stop)(void *ctx);
    void (*fini)(void *ctx);

    /* --- ABI 1.1 ------------------------------------------------------- */

    /*
     * http: optional (NULL: none).  Handles a request to the manifest's
     * webhookEndpoint; see "HTTP requests to an event source" above for
     * which requests, threads, time limits and who frees what.  A plugin
     * that sets it must declare "abi": "1.1" (or later) in plugin.json, and
     * the host refuses it otherwise: a 1.0 host would load it and silently
     * answer its webhooks with 404.
     */
    int32_t (*http)(void *ctx, const evh_http_request *req,
                    evh_http_response *res);

    /* --- appended in later minors go below this line ------------------- */
} evh_source;

/* True when a source table is long enough to contain `field`: the host
 * reads a field appended after 1.0 only then, so a plugin built against an
 * older header (a shorter table) simply lacks it. */
#define EVH_SOURCE_HAS(src, field)                                             \
    ((src)->struct_size >=                                                     \
     offsetof(evh_source, field) + sizeof((src)->field))

/* ---------------------------------------------------------------------------
 * Workflow steps
 *
 * A step instance exists for one step of one workflow, configured by that
 * step's `with:` block (api->config_json).  The host may create several
 * instances of the same step (one per worker thread); each gets its own
 * init/fini and context.
 *
 *   init   on the worker thread that will run the instance, before its first
 *          run (lazily, when the step first runs).  Return codes and
 *          *errmsg as for sources; a failed init fails that step run.
 *   run    on that worker thread.  Calls on ONE instance never
 *          overlap; calls on different instances may run in parallel, so
 *          shared state across instances (statics) needs your own locking.
 *          Inputs are borrowed for the call.  On success set out->output_json
 *          to a JSON object text (from api->alloc, or leave NULL for "{}")
 *          and return EVH_OK.  On failure return a negative code and set
 *          out->error_message (from api->alloc) to the reason.  The host
 *          frees both.  Report numbers with api->metric during run.
 *          ABI 1.1: a successful run may also set EVH_STEP_STOP_WORKFLOW in
 *          out->flags to end the workflow here, as succeeded (see
 *          evh_step_output).
 *   fini   on the worker thread or, at shutdown, the host's main thread;
 *          never while a run of the instance is in flight.
 * ------------------------------------------------------------------------- */

typedef struct evh_step_input {
    uint32_t struct_size; /* sizeof(evh_step_input) of the host */
    uint32_t attempt;     /* 1 for the first try, 2 for the first retry ... */
    /* The triggering event's envelope:
     * {"id", "event_type", "source", "data", "metadata"}. */
    const char *event_json;
    size_t event_len;
    /* Earlier steps' results: {"<step id>": {"output": {...}}, ...}. */
    const char *steps_json;
    size_t steps_len;
    const char *execution_id; /* the workflow execution's id */
    const char *workflow_id;
    const char *step_id; /* this step's id in the workflow */
    /* This run's config: the step's `with:` block with every template
     * ({{ event.data.x }}, {{ steps.fetch.output.y }}) resolved against
     * this event and the earlier outputs, and the configSchema's defaults
     * filled in (as for init).  init saw the same block with the
     * templates unresolved (via config_json); read per-run values here. */
    const char *config_json;
    size_t config_len;
} evh_step_input;

typedef struct evh_step_output {
    uint32_t struct_size;  /* set by the host */
    uint32_t reserved_;    /* zero */
    char *output_json;     /* plugin sets (api->alloc); host frees */
    size_t output_len;     /* 0 or EVH_NUL_TERMINATED: output_json is
                              NUL-terminated */
    char *error_message;   /* plugin sets on failure (api->alloc); host frees */

    /* --- ABI 1.1 ------------------------------------------------------- */

    /*
     * flags: EVH_STEP_* bits the plugin sets (the host presets 0).  Write it
     * only when EVH_STEP_OUTPUT_HAS(out, flags): a 1.0 host hands a shorter
     * struct, and writing past its struct_size corrupts the host's memory.
     * Read only when run returns EVH_OK; ignored on failure.
     *
     *   EVH_STEP_STOP_WORKFLOW  this step succeeded, and the workflow ends
     *       here: the remaining steps are not run (each is recorded as a
     *       'skipped' run saying which step stopped it), and the execution
     *       succeeds.  This step's output is stored as usual.  The filter
     *       step uses it; a plugin that needs it should declare "abi": "1.1"
     *       in plugin.json, so that a 1.0 host refuses it instead of running
     *       the steps it meant to stop.
     */
    uint32_t flags;
    uint32_t reserved2_; /* zero; keeps the next appended field past the
                            end of the 1.1 struct (no tail padding) */
} evh_step_output;

#define EVH_STEP_STOP_WORKFLOW 0x1u

/* True when the host's output struct is long enough to contain `field`. */
#define EVH_STEP_OUTPUT_HAS(out, field)                                        \
    ((out)->struct_size >=                                                     \
     offsetof(evh_step_output, field) + sizeof((out)->field))

/* ---------------------------------------------------------------------------
 * Checking a step's config at load (ABI 1.2)
 *
 * The host checks a step's `with:` block against the configSchema of
 * plugin.json when it loads the workflow.  What a schema cannot say (a
 * folder that does not exist, SQL that does not compile against its
 * database, a program that is not installed) the plugin checks in its
 * optional validate callback, so that such a workflow is refused when it
 * loads, naming the field, instead of failing its first run.
 *
 * When:  at every load of the workflow holding the step: at start, and at
 *   each reload of workflows (SIGHUP, a plugin reloaded, a trigger changed
 *   through the API), on the thread loading them.  Not before each run, and
 *   with no instance: init is not called before it nor fini after it.  It
 *   may run at the same time as init, run and fini of this plugin's
 *   instances (a reload while workflows run), and the host waits for it
 *   with no deadline (in process isolation, its process is killed after
 *   10 s): keep to local, bounded checks (stat, access, a prepare against
 *   a local file) and never use the network.
 *
 * The handle:  `host` is made for this one call and is invalid once
 *   validate returns.  api->config_json and config_string/int/number/bool
 *   read the step's config as init will see it (checked against
 *   configSchema, defaults filled in); data_dir and log work; emit,
 *   emit_id and metric return EVH_E_STATE.
 *
 * Templates:  a value the workflow writes with a template ("{{ event.data.
 *   path }}", "/in/{{ event.data.name }}") is passed as that text,
 *   unresolved: its value is known only per run, so skip every check of a
 *   string for which evh_is_template() is true (the host checked nothing of
 *   it either, not even its type against the schema).  Every other value
 *   is exactly what each run receives.
 *
 * Returns EVH_OK when the config passes, and also when a check cannot be
 *   made now (a database busy, a file unreadable for a reason that may pass):
 *   init and run still report those.  Otherwise a negative code (usually
 *   EVH_E_CONFIG or EVH_E_NOT_FOUND) with
 *     *field   the config path of the offending value, as in config_string
 *              ("roots[0]", "params.id"), or NULL / "" for the config as a
 *              whole;
 *     *errmsg  why, one line, lowercase, without the field ("'/srv/in'
 *              does not exist");
 *   both from api->alloc (or NULL); the host frees them.  Report the first
 *   problem found.  The host prints "<file>:<line>:<column>: steps[<i>].
 *   with.<field>: <errmsg>" at the field's line and skips that workflow
 *   (the other workflows load).
 * ------------------------------------------------------------------------- */

/* 1 when `text` holds a template ("{{"): the host resolves it per run. */
static inline int32_t evh_is_template(const char *text)
{
    for (; text && text[0]; text++) {
        if (text[0] == '{' && text[1] == '{')
            return 1;
    }
    return 0;
}

typedef struct evh_step {
    uint32_t struct_size; /* sizeof(evh_step) */
    uint32_t reserved_;   /* zero */
    int32_t (*init)(const evh_host_api *api, evh_host *host, void **ctx,
                    char **errmsg);
    int32_t (*run)(void *ctx, const evh_step_input *in, evh_step_output *out);
    void (*fini)(void *ctx);

    /* --- ABI 1.2 ------------------------------------------------------- */

    /*
     * validate: optional (NULL: none).  Checks the config of one workflow
     * step when the workflow loads; see "Checking a step's config at load"
     * above for when, what the handle offers, templates, and the answer.
     * Share the code with init and run (call the same functions that read
     * and check the config there) so that load and run never disagree.
     */
    int32_t (*validate)(const evh_host_api *api, evh_host *host,
                        char **field, char **errmsg);

    /* --- appended in later minors go below this line ------------------- */
} evh_step;

/* True when a step table is long enough to contain `field` (a plugin built
 * against an older header has a shorter table that lacks it). */
#define EVH_STEP_HAS(step, field)                                              \
    ((step)->struct_size >=                                                    \
     offsetof(evh_step, field) + sizeof((step)->field))

/* ---------------------------------------------------------------------------
 * The plugin descriptor and its entry function
 * ------------------------------------------------------------------------- */

typedef struct evh_plugin {
    uint32_t struct_size; /* sizeof(evh_plugin) */
    uint16_t abi_major;   /* EVH_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;   /* EVH_ABI_MINOR the plugin was built with */
    int32_t kind;         /* EVH_KIND_SOURCE or EVH_KIND_STEP */
    uint32_t reserved_;   /* zero */
    const char *id;       /* must equal plugin.json "id" */
    const evh_source *source; /* kind == EVH_KIND_SOURCE, else NULL */
    const evh_step *step;     /* kind == EVH_KIND_STEP, else NULL */
} evh_plugin;

/* The one symbol a plugin exports.  The host resolves it with dlsym after
 * plugin.json passed every check, calls it once, and reads the descriptor;
 * it must return a pointer to static storage. */
#define EVH_ENTRY_SYMBOL "evh_plugin_entry"
typedef const evh_plugin *(*evh_plugin_entry_fn)(void);

/*
 * Declare the entry function.  Use one of these once, at file scope:
 *
 *     static const evh_source my_source = {
 *         .struct_size = sizeof(evh_source),
 *         .init = my_init, .run = my_run, .fini = my_fini};
 *     EVH_DECLARE_SOURCE("my-timer", &my_source)
 *
 *     static const evh_step my_step = {
 *         .struct_size = sizeof(evh_step),
 *         .init = my_init, .run = my_run, .fini = my_fini};
 *     EVH_DECLARE_STEP("my-step", &my_step)
 */
#define EVH_DECLARE_PLUGIN_(id_, kind_, source_, step_)                        \
    EVH_EXPORT_ const evh_plugin *evh_plugin_entry(void);                      \
    EVH_EXPORT_ const evh_plugin *evh_plugin_entry(void)                       \
    {                                                                          \
        static const evh_plugin evh_desc_ = {sizeof(evh_plugin),               \
                                        EVH_ABI_MAJOR,                         \
                                        EVH_ABI_MINOR,                         \
                                        (kind_),                               \
                                        0,                                     \
                                        (id_),                                 \
                                        (source_),                             \
                                        (step_)};                              \
        return &evh_desc_;                                                     \
    }

#define EVH_DECLARE_SOURCE(id, source_ptr)                                     \
    EVH_DECLARE_PLUGIN_(id, EVH_KIND_SOURCE, source_ptr, NULL)
#define EVH_DECLARE_STEP(id, step_ptr)                                         \
    EVH_DECLARE_PLUGIN_(id, EVH_KIND_STEP, NULL, step_ptr)

#ifdef __cplusplus
}
#endif

#endif /* EVHOST_EVHOST_H */

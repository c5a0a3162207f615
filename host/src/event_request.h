/*
 * event_request.h - what a POST /api/events/process request says, read
 * without the server: its body, Content-Type, ce-* headers and
 * Idempotency-Key into one event to ingest, whatever its shape:
 *   - the seed's envelope (application/json):
 *       {"event_type", "source", "data", "user_id"?, "metadata"?}
 *   - CloudEvents 1.0, structured mode (application/cloudevents+json)
 *   - CloudEvents 1.0, binary mode (ce-* headers; the body is the data)
 * Every problem of the request's shape goes into one diag, so a client fixes
 * everything in one round.  The checks that need the host (is the source
 * loaded, does it declare the type, does the data fit its schema) are
 * api_events.c's.  Kept apart from the handler so that a fuzzer
 * (tests/fuzz/fuzz_events.c) reaches all of it without a server.
 */
#ifndef EVH_EVENT_REQUEST_H
#define EVH_EVENT_REQUEST_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "diag.h"
#include "http.h"

/* The request's headers, as http.h's accessors give them. */
typedef struct event_request_headers {
    void *ud;
    /* The first header named name (case-insensitive), or NULL. */
    const char *(*get)(void *ud, const char *name);
    /* Every header in order; fn returns non-zero to stop. */
    void (*each)(void *ud, http_header_fn fn, void *fn_ud);
} event_request_headers;

/* One event to ingest.  Strings are borrowed from doc and attrs, which the
 * struct owns; event_request_release frees what it owns. */
typedef struct event_request {
    const char *source, *event_type;     /* NULL when missing (a problem) */
    const char *source_path, *type_path; /* how the request names them */
    const cJSON *data;                   /* NULL: {} */
    const char *user_id;                 /* NULL: none */
    cJSON *additional;                   /* metadata.additional_data; NULL: none */
    char *key;                           /* idempotency key; NULL: none */
    cJSON *attrs;                        /* binary mode: the ce-* headers read */
    cJSON *doc;                          /* the body */
} event_request;

/*
 * Read a request (body borrowed, need not be NUL-terminated).  Returns 0
 * with *out filled and every shape problem in d (none: the request is
 * well-formed), or -1 when the body is refused before it is read (415: not
 * a JSON media type; 400: malformed JSON or not an object) with *why filled
 * (the caller frees why->message) and *out empty.  Either way call
 * event_request_release(out).
 */
int event_request_read(const char *body, size_t len, const event_request_headers *h,
                       event_request *out, diag *d, api_refusal *why);
void event_request_release(event_request *r);

#endif

/*
 * fuzz_events.c - the body and headers of POST /api/events/process
 * (event_request.c, api_body_parse in api.c): the seed envelope and both
 * CloudEvents modes, without a server.  Input: HTTP-style header lines
 * ("Name: value"), an empty line, then the body:
 *
 *   Content-Type: application/cloudevents+json
 *   Idempotency-Key: abc
 *
 *   {"specversion": "1.0", ...}
 *
 * The checks that need a host (is the source loaded) are not reached.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "event_request.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEADERS 64

typedef struct headers {
    const char *names[MAX_HEADERS], *values[MAX_HEADERS];
    size_t count;
} headers;

/* As MHD_lookup_connection_value: the first one, name case-insensitive. */
static const char *get(void *ud, const char *name)
{
    const headers *h = ud;
    for (size_t i = 0; i < h->count; i++) {
        if (!strcasecmp(h->names[i], name))
            return h->values[i];
    }
    return NULL;
}

static void each(void *ud, http_header_fn fn, void *fn_ud)
{
    const headers *h = ud;
    for (size_t i = 0; i < h->count && !fn(fn_ud, h->names[i], h->values[i]); i++)
        ;
}

/* Split text (NUL-terminated, modified) into header lines. */
static void read_headers(char *text, headers *h)
{
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && h->count < MAX_HEADERS;
         line = strtok_r(NULL, "\n", &save)) {
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
            continue;
        *colon = '\0';
        char *value = colon + 1;
        while (*value == ' ')
            value++;
        h->names[h->count] = line;
        h->values[h->count++] = value;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *blank = memmem(s, size, "\n\n", 2);
    size_t head_len = blank ? (size_t)(blank - s) : size;
    char *head = malloc(head_len + 1);
    if (!head)
        return 0;
    memcpy(head, s, head_len);
    head[head_len] = '\0'; /* a NUL inside ends the headers, as in a C string */
    headers h = {.count = 0};
    read_headers(head, &h);
    /* the body exactly as long as it is, so a read past it is caught */
    size_t body_len = blank ? size - head_len - 2 : 0;
    char *body = malloc(body_len ? body_len : 1);
    if (body_len)
        memcpy(body, blank + 2, body_len);

    event_request_headers eh = {&h, get, each};
    event_request r;
    api_refusal why;
    diag d;
    diag_init(&d, NULL);
    if (event_request_read(body, body_len, &eh, &r, &d, &why) != 0) {
        free(why.message);
    } else if (!d.count) {
        /* what ingest serializes next */
        char *text = r.data ? cJSON_PrintUnformatted(r.data) : NULL;
        char *extra = r.additional ? cJSON_PrintUnformatted(r.additional) : NULL;
        free(text);
        free(extra);
    }
    fuzz_print_diag(&d);
    event_request_release(&r);
    diag_free(&d);
    free(body);
    free(head);
    return 0;
}

/*
 * api_console.c - the web console (docs/console.md).
 *
 *   GET /                  the console's page (host/console/index.html)
 *   GET /console/{file}    its scripts, styles and icon
 *
 * The files are compiled in (console_assets.h).  These routes are public:
 * the page holds no data of its own, it asks for the API key and sends it
 * with every API call, and an operator who configured keys must be able to
 * load the page that asks for one.
 *
 * Every answer carries a strict Content-Security-Policy (only this daemon's
 * own scripts, styles, images and API; no inline script or style, no
 * framing), nosniff, and an ETag with Cache-Control: no-cache, so a browser
 * revalidates each file (a 304 costs a few bytes) and never runs a stale
 * script against a newer daemon.
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "console_assets.h"

static const char console_csp[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

static const console_asset *find_asset(const char *name)
{
    for (const console_asset *a = console_assets; name && a->name; a++) {
        if (!strcmp(a->name, name))
            return a;
    }
    return NULL;
}

/* If-None-Match holds our ETag (it may list several, weak or not) or "*". */
static int etag_matches(const char *if_none_match, const char *etag)
{
    if (!if_none_match)
        return 0;
    if (!strcmp(if_none_match, "*"))
        return 1;
    /* the ETag includes its quotes, so a substring hit is a whole tag */
    return strstr(if_none_match, etag) != NULL;
}

static void serve(const http_request *req, http_response *res, const console_asset *a)
{
    http_response_header(res, "ETag", a->etag);
    http_response_header(res, "Cache-Control", "no-cache");
    http_response_header(res, "X-Content-Type-Options", "nosniff");
    http_response_header(res, "Content-Security-Policy", console_csp);
    http_response_header(res, "Referrer-Policy", "no-referrer");
    if (etag_matches(http_header(req, "If-None-Match"), a->etag)) {
        http_respond_raw(res, 304, NULL, NULL, 0);
        return;
    }
    /* the server frees the body it sends: hand it a copy */
    char *body = malloc(a->len ? a->len : 1);
    if (!body) {
        http_respond_error(res, 500, "internal", NULL, "out of memory");
        return;
    }
    memcpy(body, a->data, a->len);
    http_respond_raw(res, 200, a->content_type, body, a->len);
}

static void get_index(void *ctx, const http_request *req, http_response *res)
{
    (void)ctx;
    const console_asset *a = find_asset("index.html");
    if (!a) {
        http_respond_error(res, 404, "not_found", NULL, "this build has no web console");
        return;
    }
    serve(req, res, a);
}

static void get_asset(void *ctx, const http_request *req, http_response *res)
{
    (void)ctx;
    const char *name = http_param(req, "file");
    const console_asset *a = find_asset(name);
    if (!a) {
        http_respond_error(res, 404, "not_found", NULL, "no such console file: %s",
                           name ? name : "");
        return;
    }
    serve(req, res, a);
}

const http_route api_routes_console[] = {
    {"GET", "/", get_index, 1},
    {"GET", "/console/{file}", get_asset, 1},
    {0},
};

/*
 * api_health.c - liveness, readiness and Prometheus metrics.
 */
#include "api.h"

#include <evhost/evhost.h>

#include "event.h"

/* GET /api/health: the process answers.  Public, so that load balancers
 * and Docker's HEALTHCHECK need no key. */
static void get_health(void *ctx, const http_request *req, http_response *res)
{
    api_ctx *a = ctx;
    (void)req;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "version", EVH_VERSION);
    cJSON_AddStringToObject(o, "abi", EVH_ABI_STRING);
    cJSON_AddNumberToObject(o, "uptime_s", (double)(monotonic_ns() - a->started_ns) / 1e9);
    http_respond_json(res, 200, o);
}

const http_route api_routes_health[] = {
    {"GET", "/api/health", get_health, 1},
    {0},
};

/*
 * api_plugins.c - event sources and steps; plugin webhook endpoints.
 */
#include "api.h"

const http_route api_routes_plugins[] = {
    {0},
};

int api_plugin_route(void *ctx, const http_request *req, http_response *res)
{
    (void)ctx;
    (void)req;
    (void)res;
    return 0;
}

/*
 * api_events.c - POST /api/events/process, GET /api/events, GET /api/events/{id}.
 */
#include "api.h"

const http_route api_routes_events[] = {
    {0},
};

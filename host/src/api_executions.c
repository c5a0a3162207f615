/*
 * api_executions.c - executions, step runs, replay.
 */
#include "api.h"

const http_route api_routes_executions[] = {
    {0},
};

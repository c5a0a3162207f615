/*
 * api_triggers.c - triggers CRUD, dry run; workflows.
 */
#include "api.h"

const http_route api_routes_triggers[] = {
    {0},
};

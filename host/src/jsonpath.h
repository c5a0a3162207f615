/*
 * jsonpath.h - dotted paths into JSON documents: "data.items[0].sku".
 *
 * One syntax everywhere a user names a field: trigger conditions, workflow
 * templates, and the SDK's json_get/config_* helpers.  Keys are separated by
 * '.', array elements are selected with [n].  A key containing '.' or '['
 * cannot be named (documented limitation).
 */
#ifndef EVH_JSONPATH_H
#define EVH_JSONPATH_H

#include <cjson/cJSON.h>

/* The node at path under root, or NULL when any part is missing, indexes a
 * non-array, or the path is malformed.  "" returns root. */
const cJSON *json_path_get(const cJSON *root, const char *path);

/* 1 when path is well-formed ("a", "a.b", "a[0].b", "[1]"), else 0. */
int json_path_valid(const char *path);

/* The SDK helpers of evh_host_api (see evhost.h), on malloc'd results. */
char *jsonpath_api_get(const char *json, size_t json_len, const char *path);
char *jsonpath_api_get_string(const char *json, size_t json_len,
                              const char *path);
char *jsonpath_api_quote(const char *text);

#endif

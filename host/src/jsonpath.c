/*
 * jsonpath.c - dotted path lookup (see jsonpath.h).
 */
#include "jsonpath.h"

#include <errno.h>
#include <stdint.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "jsonutil.h"
#include "evh_limits.h"

/* Parse one segment starting at *p: either "[digits]" or a key up to the next
 * '.' or '['.  Returns 1 and advances *p, 0 on malformed input. */
static int next_segment(const char **p, char *key, size_t keycap, long *index)
{
    const char *s = *p;
    if (*s == '[') {
        char *end;
        if (!isdigit((unsigned char)s[1]))
            return 0;
        errno = 0;
        long v = strtol(s + 1, &end, 10);
        /* cJSON indexes arrays with int: a larger index would wrap around
         * to a real element instead of being missing */
        if (*end != ']' || v < 0 || v > INT32_MAX || errno)
            return 0;
        *index = v;
        key[0] = '\0';
        *p = end + 1;
        return 1;
    }
    size_t n = strcspn(s, ".[");
    if (n == 0 || n >= keycap)
        return 0;
    memcpy(key, s, n);
    key[n] = '\0';
    *index = -1;
    *p = s + n;
    return 1;
}

static const cJSON *walk(const cJSON *root, const char *path, int check_only)
{
    const char *p = path;
    const cJSON *node = root;
    char key[EVH_ID_MAX_LEN * 2];
    long index;
    int first = 1;
    while (*p) {
        if (!first && *p == '.')
            p++;
        else if (!first && *p != '[')
            return NULL;
        first = 0;
        if (!next_segment(&p, key, sizeof key, &index))
            return NULL;
        if (check_only)
            continue;
        if (index >= 0) {
            if (!cJSON_IsArray(node))
                return NULL;
            node = cJSON_GetArrayItem(node, (int)index);
        } else {
            if (!cJSON_IsObject(node))
                return NULL;
            node = cJSON_GetObjectItemCaseSensitive(node, key);
        }
        if (!node)
            return NULL;
    }
    return check_only ? root : node;
}

const cJSON *json_path_get(const cJSON *root, const char *path)
{
    if (!root || !path)
        return NULL;
    return walk(root, path, 0);
}

int json_path_valid(const char *path)
{
    static const cJSON dummy;
    return path && walk(&dummy, path, 1) != NULL;
}

static cJSON *parse_api_json(const char *json, size_t json_len)
{
    char err[160];
    if (!json)
        return NULL;
    if (json_len == EVH_NUL_TERMINATED)
        json_len = strlen(json);
    return json_parse_limited(json, json_len, EVH_EVENT_MAX_BYTES * 16,
                              EVH_JSON_MAX_DEPTH, err, sizeof err);
}

char *jsonpath_api_get(const char *json, size_t json_len, const char *path)
{
    cJSON *doc = parse_api_json(json, json_len);
    const cJSON *node = json_path_get(doc, path ? path : "");
    char *out = node ? cJSON_PrintUnformatted(node) : NULL;
    cJSON_Delete(doc);
    return out;
}

char *jsonpath_api_get_string(const char *json, size_t json_len,
                              const char *path)
{
    cJSON *doc = parse_api_json(json, json_len);
    const cJSON *node = json_path_get(doc, path ? path : "");
    char *out = cJSON_IsString(node) ? strdup(node->valuestring) : NULL;
    cJSON_Delete(doc);
    return out;
}

char *jsonpath_api_quote(const char *text)
{
    if (!text)
        return NULL;
    cJSON *s = cJSON_CreateString(text);
    char *out = s ? cJSON_PrintUnformatted(s) : NULL;
    cJSON_Delete(s);
    return out;
}

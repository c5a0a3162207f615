/*
 * fuzz_common.h - what the libFuzzer targets share (tests/fuzz/README.md).
 *
 * Targets that take two documents (a schema and an instance, a condition
 * tree and an envelope, a config and a context) read them from one input
 * split at the first line holding only "%%": text before it is the first
 * document, text after it the second (empty when there is no separator).
 * The mutator finds and keeps the separator from the seeds.
 */
#ifndef EVH_FUZZ_COMMON_H
#define EVH_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "diag.h"
#include "evh_limits.h"
#include "jsonutil.h"

#define FUZZ_SEPARATOR "\n%%\n"

/* Split data at the first FUZZ_SEPARATOR: [*a, *a + *alen) and
 * [*b, *b + *blen). */
static inline void fuzz_split(const uint8_t *data, size_t size, const char **a, size_t *alen,
                              const char **b, size_t *blen)
{
    const char *s = (const char *)data;
    const char *sep = size >= 4 ? memmem(s, size, FUZZ_SEPARATOR, 4) : NULL;
    *a = s;
    *alen = sep ? (size_t)(sep - s) : size;
    *b = sep ? sep + 4 : s + size;
    *blen = sep ? size - *alen - 4 : 0;
}

/* JSON the way the host parses outside input: size and depth bounded. */
static inline cJSON *fuzz_json(const char *text, size_t len)
{
    char err[160];
    return json_parse_limited(text, len, 1024 * 1024, EVH_JSON_MAX_DEPTH, err, sizeof err);
}

/* Every message formatted, as the host would print them (a bad format
 * argument shows up here, not in a user's terminal). */
static inline void fuzz_print_diag(const diag *d)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    if (devnull)
        diag_print(d, devnull);
}

#endif

/*
 * test_regexcost.c - regexes that unroll too far are refused before regcomp
 * (regexcost.h).  Found while fuzzing trigger conditions and schemas: the
 * 21-byte "((a{255}){255}){255}" took glibc's regcomp over 2 GB and half a
 * minute, from a plugin.json pattern or a trigger created through the API.
 * The estimate is checked on that pattern; schema_compile and
 * conditions_compile are checked on one just over the limit, which glibc
 * would compile quickly, so a regression fails here instead of exhausting
 * the machine.  The inputs are in tests/fuzz/corpus/{schema,conditions}/.
 */
/* cmocka needs these first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "diag.h"
#include "evh_limits.h"
#include "regexcost.h"
#include "schema.h"
#include "triggers.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define OVER ((unsigned long)EVH_REGEX_MAX_EXPANSION + 1)

static void test_expansion_table(void **state)
{
    (void)state;
    static const struct {
        const char *re;
        unsigned long want;
    } cases[] = {
        {"", 0},
        {"abc", 3},
        {"^report-[0-9]{4}\\.csv$", 17},
        {"\\.[pP][dD][fF]$", 5},
        {"a{3}", 3},
        {"a{2,5}", 5},
        {"a{2,}", 3},
        {"a+b*c?", 4},
        {"(ab){3}", 6},
        {"(a|bc){2}", 6},
        {"[]a{}]{4}", 4}, /* ']' and '{' inside a bracket are members */
        {"[[:alpha:]]{10}", 10},
        {"x{", 2}, /* no bound: a literal, regcomp decides */
        {".{1,1000}", 1000},
        {"(a{100}){100}", 10000},
        {"(a{100}){101}", OVER},
        {"((a{255}){255}){255}", OVER}, /* the fuzzing find */
        {"a{99999999999999999999}", OVER},
        {"(((", 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        unsigned long got = regex_expansion(cases[i].re);
        if (got != cases[i].want)
            print_error("'%s': got %lu, want %lu\n", cases[i].re, got, cases[i].want);
        assert_int_equal(got, cases[i].want);
    }
    /* nesting deeper than the estimate follows counts as too large */
    char deep[200];
    memset(deep, '(', 100);
    memcpy(deep + 100, "a", 2);
    assert_int_equal(regex_expansion(deep), OVER);
}

static void test_schema_refuses_large_pattern(void **state)
{
    (void)state;
    cJSON *j = cJSON_Parse("{\"type\":\"string\",\"pattern\":\"^(a{100}){101}$\"}");
    assert_non_null(j);
    diag d;
    diag_init(&d, NULL);
    schema *s = schema_compile(j, "configSchema", &d);
    assert_null(s);
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].path, "configSchema.pattern");
    assert_non_null(strstr(d.items[0].reason, "is too large: it unrolls to more than 10000"));
    diag_free(&d);
    cJSON_Delete(j);

    /* the limit itself is allowed */
    j = cJSON_Parse("{\"type\":\"string\",\"pattern\":\"(a{100}){100}\"}");
    diag_init(&d, NULL);
    s = schema_compile(j, "configSchema", &d);
    assert_non_null(s);
    assert_int_equal(d.count, 0);
    schema_free(s);
    diag_free(&d);
    cJSON_Delete(j);
}

static void test_conditions_refuse_large_regex(void **state)
{
    (void)state;
    cJSON *j =
        cJSON_Parse("{\"field\":\"data.name\",\"op\":\"matches\",\"value\":\"(a{100}){101}\"}");
    assert_non_null(j);
    diag d;
    diag_init(&d, NULL);
    cond_node *c = conditions_compile(j, "conditions", 0, &d);
    assert_null(c);
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].path, "conditions.value");
    assert_non_null(strstr(d.items[0].reason, "regex '(a{100}){101}' is too large"));
    diag_free(&d);
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expansion_table),
        cmocka_unit_test(test_schema_refuses_large_pattern),
        cmocka_unit_test(test_conditions_refuse_large_regex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_regexcost.c - regexes too costly for glibc's regcomp are refused
 * before it is called (regexcost.h).  Found while fuzzing schemas and
 * conditions: "((a{255}){255}){255}" (21 bytes) took regcomp over 2 GB and
 * half a minute, and fuzz_schema found "a????????????????+++++" (stacked
 * repetitions), which did not compile within 20 s, and fuzz_conditions
 * "((){255}){255}", which overflowed regcomp's stack; all can come from a
 * plugin.json pattern or a trigger created through the API.  The estimate
 * is checked on those patterns; schema_compile and conditions_compile on
 * ones just over the limits that glibc compiles quickly, so a regression
 * fails here instead of exhausting the machine.  The inputs are in
 * tests/fuzz/corpus/{schema,conditions}/.
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

static void test_measure_table(void **state)
{
    (void)state;
    static const struct {
        const char *re;
        unsigned long elements;
        int depth;
        int ok;
    } cases[] = {
        {"", 0, 0, 1},
        {"abc", 3, 0, 1},
        {"^report-[0-9]{4}\\.csv$", 17, 1, 1},
        {"\\.[pP][dD][fF]$", 5, 0, 1},
        {"^[a-z0-9]+(-[a-z0-9]+)*$", 8, 2, 1},
        {"a{3}", 3, 1, 1},
        {"a{2,5}", 5, 1, 1},
        {"a{2,}", 3, 1, 1},
        {"a+b*c?", 4, 1, 1},
        {"(ab){3}", 9, 1, 1},
        {"(a|bc){2}", 10, 1, 1},
        {"[]a{}]{4}", 4, 1, 1}, /* ']' and '{' inside a bracket are members */
        {"[[:alpha:]]{10}", 10, 1, 1},
        {"x{", 2, 0, 1}, /* no bound: a literal, regcomp decides */
        {".{1,1000}", 1000, 1, 1},
        {"(a{9}){100}", 1000, 2, 1},
        {"(a{10}){101}", OVER, 2, 0},
        {"a?+", 2, 2, 1},
        {"((a?)+)*", 5, 3, 0},
        {"((a{255}){255}){255}", OVER, 3, 0},  /* the first find */
        {"a????????????????+++++", 32, 21, 0}, /* fuzz_schema's find */
        {"a{99999999999999999999}", OVER, 1, 0},
        {"(((", 3, 0, 1},
        {"((){30}){30}", 930, 2, 1},
        {"((){255}){255}", OVER, 2, 0}, /* fuzz_conditions': a stack overflow */
        {"((){255}){,255}", OVER, 2, 0}, /* its later find: "{,n}" is {0,n} */
        {"a{,5}", 5, 1, 1},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        regex_cost c = regex_measure(cases[i].re);
        if (c.elements != cases[i].elements || c.repeat_depth != cases[i].depth)
            print_error("'%s': got %lu elements, depth %d\n", cases[i].re, c.elements,
                        c.repeat_depth);
        assert_int_equal(c.elements, cases[i].elements);
        assert_int_equal(c.repeat_depth, cases[i].depth);
        assert_int_equal(regex_cost_ok(cases[i].re), cases[i].ok);
    }
    /* groups nested deeper than the estimate follows are refused */
    char deep[200];
    memset(deep, '(', 100);
    memcpy(deep + 100, "a", 2);
    assert_false(regex_cost_ok(deep));
}

static void test_schema_refuses_large_pattern(void **state)
{
    (void)state;
    cJSON *j = cJSON_Parse("{\"type\":\"string\",\"pattern\":\"^(a{10}){101}$\"}");
    assert_non_null(j);
    diag d;
    diag_init(&d, NULL);
    schema *s = schema_compile(j, "configSchema", &d);
    assert_null(s);
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].path, "configSchema.pattern");
    assert_non_null(strstr(d.items[0].reason, "is too costly to compile: at most 1000 elements"));
    diag_free(&d);
    cJSON_Delete(j);

    /* the limit itself is allowed */
    j = cJSON_Parse("{\"type\":\"string\",\"pattern\":\"(a{9}){100}\"}");
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
    cJSON *j = cJSON_Parse("{\"field\":\"data.name\",\"op\":\"matches\",\"value\":\"((a?)+)*\"}");
    assert_non_null(j);
    diag d;
    diag_init(&d, NULL);
    cond_node *c = conditions_compile(j, "conditions", 0, &d);
    assert_null(c);
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].path, "conditions.value");
    assert_non_null(strstr(d.items[0].reason, "regex '((a?)+)*' is too costly to compile"));
    diag_free(&d);
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_measure_table),
        cmocka_unit_test(test_schema_refuses_large_pattern),
        cmocka_unit_test(test_conditions_refuse_large_regex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_yamldoc.c - YAML -> cJSON with positions: typing, shapes, positions,
 * errors with exact line:column, env substitution, aliases and limits.
 */
/* cmocka.h needs these first, in this order */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "yamldoc.h"

/* Parse text as "t.yaml"; d is initialised here and freed by the caller. */
static yamldoc *parse(const char *text, int subst, diag *d)
{
    diag_init(d, "t.yaml");
    return yamldoc_parse(text, strlen(text), subst, d);
}

/* The compact JSON of a document that must parse cleanly (malloc). */
static char *json_of(const char *text, int subst)
{
    diag d;
    yamldoc *y = parse(text, subst, &d);
    if (!y || d.count)
        diag_print(&d, stderr);
    assert_non_null(y);
    assert_int_equal(d.count, 0);
    char *out = cJSON_PrintUnformatted(yamldoc_root(y));
    yamldoc_free(y);
    diag_free(&d);
    return out;
}

static void assert_json(const char *text, int subst, const char *want)
{
    char *got = json_of(text, subst);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* Parsing text must fail with exactly one problem, printed as want. */
static void assert_one_error(const char *text, int subst, const char *want)
{
    diag d;
    yamldoc *y = parse(text, subst, &d);
    assert_null(y);
    if (d.count != 1)
        diag_print(&d, stderr);
    assert_int_equal(d.count, 1);
    char *got = diag_format_item(&d, 0);
    assert_string_equal(got, want);
    free(got);
    diag_free(&d);
}

static void test_scalar_typing(void **state)
{
    (void)state;
    static const struct {
        const char *yaml;
        const char *json;
    } table[] = {
        /* clang-format off */
        {"~", "null"},                      {"null", "null"},
        {"Null", "null"},                   {"NULL", "null"},
        {"", "null"},                       {"true", "true"},
        {"True", "true"},                   {"TRUE", "true"},
        {"false", "false"},                 {"False", "false"},
        {"FALSE", "false"},                 {"0", "0"},
        {"42", "42"},                       {"-17", "-17"},
        {"+5", "5"},                        {"0x1f", "31"},
        {"0o17", "15"},                     {"0644", "644"},
        {"1.5", "1.5"},                     {"-2e3", "-2000"},
        {".5", "0.5"},                      {"1.", "1"},
        {"6.02E2", "602"},                  {"123456789012", "123456789012"},
        {"yes", "\"yes\""},                 {"no", "\"no\""},
        {"on", "\"on\""},                   {"tRue", "\"tRue\""},
        {".inf", "\".inf\""},               {"-.inf", "\"-.inf\""},
        {".nan", "\".nan\""},               {"0x", "\"0x\""},
        {"1_000", "\"1_000\""},             {"0b101", "\"0b101\""},
        {"1.2.3", "\"1.2.3\""},             {"hello world", "\"hello world\""},
        {"12:30", "\"12:30\""},             {"--5", "\"--5\""},
        {"e5", "\"e5\""},
        /* clang-format on */
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char text[128], want[128];
        snprintf(text, sizeof text, "v: %s\n", table[i].yaml);
        snprintf(want, sizeof want, "{\"v\":%s}", table[i].json);
        char *got = json_of(text, 0);
        if (strcmp(got, want) != 0)
            fprintf(stderr, "for '%s': got %s, want %s\n", table[i].yaml, got, want);
        assert_string_equal(got, want);
        free(got);
    }
    /* 2^53 is the largest integer a JSON number (double) holds exactly */
    diag d;
    yamldoc *y = parse("[9007199254740992, -9007199254740992, 0x20000000000000]\n", 0, &d);
    assert_non_null(y);
    assert_true(cJSON_GetArrayItem(yamldoc_root(y), 0)->valuedouble == 9007199254740992.0);
    assert_true(cJSON_GetArrayItem(yamldoc_root(y), 1)->valuedouble == -9007199254740992.0);
    assert_true(cJSON_GetArrayItem(yamldoc_root(y), 2)->valuedouble == 9007199254740992.0);
    yamldoc_free(y);
    diag_free(&d);
    assert_one_error("v: 9007199254740993\n", 0,
                     "t.yaml:1:4: integer is too large for a JSON number (beyond 2^53); quote it "
                     "to keep it as text");
}

static void test_quoted_are_strings(void **state)
{
    (void)state;
    assert_json("a: '1'\nb: \"true\"\nc: \"\"\nd: 'null'\ne: \"0x10\"\n", 0,
                "{\"a\":\"1\",\"b\":\"true\",\"c\":\"\",\"d\":\"null\",\"e\":\"0x10\"}");
    assert_json("a: |\n  12\nb: >\n  true\n", 0, "{\"a\":\"12\\n\",\"b\":\"true\\n\"}");
    assert_json("a: \"tab\\there\"\nb: 'it''s'\n", 0, "{\"a\":\"tab\\there\",\"b\":\"it's\"}");
    /* keys are always strings */
    assert_json("1: a\ntrue: b\nnull: c\n", 0, "{\"1\":\"a\",\"true\":\"b\",\"null\":\"c\"}");
}

static void test_tags(void **state)
{
    (void)state;
    assert_json("a: !!str 12\nb: !!int 12\nc: !!float 1\nd: !!bool true\ne: !!null ~\n"
                "f: ! 12\ng: !!seq [1]\nh: !!map {x: 1}\n",
                0,
                "{\"a\":\"12\",\"b\":12,\"c\":1,\"d\":true,\"e\":null,\"f\":\"12\","
                "\"g\":[1],\"h\":{\"x\":1}}");
    assert_one_error("a: !foo x\n", 0, "t.yaml:1:4: unsupported tag '!foo'");
    assert_one_error("a: !!int 1.5\n", 0, "t.yaml:1:4: value is not a valid !!int");
    assert_one_error("a: !!bool yes\n", 0, "t.yaml:1:4: value is not a valid !!bool");
    assert_one_error("a: !!map [1]\n", 0, "t.yaml:1:4: unsupported tag '!!map' on a list");
}

static void test_nested_shape(void **state)
{
    (void)state;
    assert_json("server:\n"
                "  listen: 127.0.0.1:8000\n"
                "  keys:\n"
                "    - name: a\n"
                "      n: 1\n"
                "    - [x, {y: 2}]\n"
                "    -\n"
                "empty_map: {}\n"
                "empty_list: []\n"
                "flow: {a: [1, 2], b: {c: null}}\n",
                0,
                "{\"server\":{\"listen\":\"127.0.0.1:8000\",\"keys\":[{\"name\":\"a\",\"n\":1},"
                "[\"x\",{\"y\":2}],null]},\"empty_map\":{},\"empty_list\":[],"
                "\"flow\":{\"a\":[1,2],\"b\":{\"c\":null}}}");
    /* key order is kept */
    assert_json("z: 1\na: 2\nm: 3\n", 0, "{\"z\":1,\"a\":2,\"m\":3}");
    assert_json("- 1\n- two\n", 0, "[1,\"two\"]");
    assert_json("just text\n", 0, "\"just text\"");
}

static void assert_pos(const yamldoc *y, const cJSON *node, int line, int column)
{
    int l = -1, c = -1;
    assert_non_null(node);
    assert_int_equal(yamldoc_pos(y, node, &l, &c), 1);
    assert_int_equal(l, line);
    assert_int_equal(c, column);
}

static void assert_key_pos(const yamldoc *y, const cJSON *obj, const char *key, int line,
                           int column)
{
    int l = -1, c = -1;
    assert_int_equal(yamldoc_key_pos(y, obj, key, &l, &c), 1);
    assert_int_equal(l, line);
    assert_int_equal(c, column);
}

static void test_positions(void **state)
{
    (void)state;
    diag d;
    yamldoc *y = parse("# comment\n"
                       "id: demo\n"
                       "steps:\n"
                       "  - name: first\n"
                       "    retry:   3\n"
                       "  - {name: \"second\", x: [1, 2]}\n"
                       "empty:\n"
                       "last: 'q'\n",
                       0, &d);
    assert_non_null(y);
    const cJSON *root = yamldoc_root(y);
    assert_pos(y, root, 2, 1);
    assert_key_pos(y, root, "id", 2, 1);
    assert_pos(y, cJSON_GetObjectItem(root, "id"), 2, 5);
    const cJSON *steps = cJSON_GetObjectItem(root, "steps");
    assert_key_pos(y, root, "steps", 3, 1);
    assert_pos(y, steps, 4, 3);
    const cJSON *s0 = cJSON_GetArrayItem(steps, 0);
    assert_pos(y, s0, 4, 5);
    assert_key_pos(y, s0, "name", 4, 5);
    assert_pos(y, cJSON_GetObjectItem(s0, "name"), 4, 11);
    assert_key_pos(y, s0, "retry", 5, 5);
    assert_pos(y, cJSON_GetObjectItem(s0, "retry"), 5, 14);
    const cJSON *s1 = cJSON_GetArrayItem(steps, 1);
    assert_pos(y, s1, 6, 5);
    assert_key_pos(y, s1, "name", 6, 6);
    assert_pos(y, cJSON_GetObjectItem(s1, "name"), 6, 12);
    assert_pos(y, cJSON_GetArrayItem(cJSON_GetObjectItem(s1, "x"), 1), 6, 29);
    /* an empty value is placed at its key, not at the next line */
    assert_pos(y, cJSON_GetObjectItem(root, "empty"), 7, 1);
    assert_pos(y, cJSON_GetObjectItem(root, "last"), 8, 7);

    /* unknown: returns 0 and leaves the outputs alone */
    int l = 77, c = 88;
    assert_int_equal(yamldoc_key_pos(y, root, "nope", &l, &c), 0);
    assert_int_equal(yamldoc_key_pos(y, steps, "name", &l, &c), 0);
    cJSON *stranger = cJSON_CreateNull();
    assert_int_equal(yamldoc_pos(y, stranger, &l, &c), 0);
    assert_int_equal(yamldoc_pos(y, NULL, &l, &c), 0);
    assert_int_equal(yamldoc_pos(NULL, root, &l, &c), 0);
    assert_int_equal(l, 77);
    assert_int_equal(c, 88);
    cJSON_Delete(stranger);
    yamldoc_free(y);
    diag_free(&d);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    assert_one_error("a: 1\nb: 2\na: 3\n", 0, "t.yaml:3:1: duplicate key 'a' (first at line 1)");
    assert_one_error("top:\n  x: 1\n  y: 2\n  x: {z: 1}\n", 0,
                     "t.yaml:4:3: duplicate key 'x' (first at line 2)");
    assert_one_error("{a: 1, a: 2}\n", 0, "t.yaml:1:8: duplicate key 'a' (first at line 1)");
    /* the same key in different mappings is fine */
    assert_json("a: {x: 1}\nb: {x: 2}\n", 0, "{\"a\":{\"x\":1},\"b\":{\"x\":2}}");

    /* every duplicate is reported, not only the first */
    diag d;
    yamldoc *y = parse("a: 1\na: 2\nb: 1\nb: 2\n", 0, &d);
    assert_null(y);
    assert_int_equal(d.count, 2);
    diag_free(&d);
}

static void test_non_scalar_keys(void **state)
{
    (void)state;
    assert_one_error("? [a, b]\n: 1\n", 0,
                     "t.yaml:1:3: a mapping key must be plain text, not a list");
    assert_one_error("{? {a: 1} : 2}\n", 0,
                     "t.yaml:1:4: a mapping key must be plain text, not a mapping");
    assert_one_error("<<: {a: 1}\n", 0,
                     "t.yaml:1:1: merge keys ('<<') are not supported; write the keys out or "
                     "alias the whole mapping");
}

static void test_parse_errors(void **state)
{
    (void)state;
    assert_one_error("a:\n\tb: 1\n", 0,
                     "t.yaml:2:1: found character that cannot start any token while scanning "
                     "for the next token; tabs cannot be used for indentation, use spaces");
    assert_one_error("a: 1\nb: \"abc\nc: 2\n", 0,
                     "t.yaml:4:1: found unexpected end of stream while scanning a quoted scalar "
                     "(started at line 2, column 4)");
    assert_one_error("a: 'abc\n", 0,
                     "t.yaml:2:1: found unexpected end of stream while scanning a quoted scalar "
                     "(started at line 1, column 4)");
    assert_one_error("a:\n  b: 1\n c: 2\n", 0,
                     "t.yaml:3:2: did not find expected key while parsing a block mapping "
                     "(started at line 1, column 1)");
    assert_one_error("a: b: c\n", 0, "t.yaml:1:5: mapping values are not allowed in this context");
    assert_one_error("a: [1, 2\n", 0,
                     "t.yaml:2:1: did not find expected ',' or ']' while parsing a flow sequence "
                     "(started at line 1, column 4)");
    assert_one_error("a: \"\\0\"\n", 0, "t.yaml:1:4: text may not contain NUL characters");
    assert_one_error("a: \x01\n", 0, "t.yaml:1:4: control characters are not allowed (byte 0x01)");
    assert_one_error("a: ok\nb: \xff\n", 0, "t.yaml:2:4: invalid leading UTF-8 octet (byte 0xff)");
    assert_one_error("a: 123456789012345678901\n", 0,
                     "t.yaml:1:4: integer is too large for a JSON number (beyond 2^53); quote it "
                     "to keep it as text");
    assert_one_error("a: 1e999\n", 0,
                     "t.yaml:1:4: number is out of range; quote it to keep it as text");
}

static void test_multiple_documents(void **state)
{
    (void)state;
    assert_one_error("a: 1\n---\nb: 2\n", 0, "t.yaml:2:1: only one YAML document per file");
    assert_one_error("--- 1\n--- 2\n", 0, "t.yaml:2:1: only one YAML document per file");
    /* explicit start and end markers around one document are fine */
    assert_json("---\na: 1\n...\n", 0, "{\"a\":1}");
}

static void test_empty_document(void **state)
{
    (void)state;
    const char *empties[] = {"", "\n\n", "# only a comment\n", "---\n", "--- # x\n...\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        diag d;
        yamldoc *y = parse(empties[i], 0, &d);
        assert_non_null(y);
        assert_int_equal(d.count, 0);
        assert_null(yamldoc_root(y));
        yamldoc_free(y);
        diag_free(&d);
    }
    /* an explicit null is a value, not an empty document */
    assert_json("~\n", 0, "null");
}

static void test_env_substitution(void **state)
{
    (void)state;
    setenv("EVH_T_SECRET", "s3cr3t value", 1);
    setenv("EVH_T_NUM", "0123", 1);
    setenv("EVH_T_BOOL", "true", 1);
    setenv("EVH_T_EMPTY", "", 1);
    unsetenv("EVH_T_UNSET");
    /* substituted values are always strings, even when they look typed */
    assert_json("a: ${EVH_T_SECRET}\nb: ${EVH_T_NUM}\nc: ${EVH_T_BOOL}\n"
                "d: \"x-${EVH_T_NUM}-${EVH_T_NUM}\"\ne: '${EVH_T_EMPTY}'\n",
                1,
                "{\"a\":\"s3cr3t value\",\"b\":\"0123\",\"c\":\"true\",\"d\":\"x-0123-0123\","
                "\"e\":\"\"}");
    /* $${ is a literal ${; other dollars are left alone */
    assert_json("a: $${EVH_T_NUM}\nb: \"$$ and $x and $\"\nc: cost $5\n", 1,
                "{\"a\":\"${EVH_T_NUM}\",\"b\":\"$$ and $x and $\",\"c\":\"cost $5\"}");
    /* keys are never substituted; without subst_env nothing is */
    assert_json("${EVH_T_NUM}: 1\n", 1, "{\"${EVH_T_NUM}\":1}");
    assert_json("a: ${EVH_T_UNSET}\nb: $${x}\n", 0, "{\"a\":\"${EVH_T_UNSET}\",\"b\":\"$${x}\"}");
    /* unset: an error at the reference itself */
    assert_one_error("key: ${EVH_T_UNSET}\n", 1,
                     "t.yaml:1:6: environment variable 'EVH_T_UNSET' is not set");
    assert_one_error("list:\n  - \"abc ${EVH_T_UNSET}\"\n", 1,
                     "t.yaml:2:10: environment variable 'EVH_T_UNSET' is not set");
    assert_one_error("a: ${1X}\n", 1,
                     "t.yaml:1:4: malformed '${': write ${NAME} (letters, digits, '_') or '$${' "
                     "for a literal '${'");
    assert_one_error("a: \"${EVH_T_NUM\"\n", 1,
                     "t.yaml:1:5: malformed '${': write ${NAME} (letters, digits, '_') or '$${' "
                     "for a literal '${'");
    assert_one_error("a: !!int ${EVH_T_NUM}\n", 1,
                     "t.yaml:1:4: a value with ${...} is always a string; remove the tag '!!int'");
}

static void test_env_marks_and_never_prints(void **state)
{
    (void)state;
    setenv("EVH_T_SECRET", "s3cr3t value", 1);
    diag d;
    yamldoc *y = parse("a: ${EVH_T_SECRET}\nb: plain\nc: $${x}\n", 1, &d);
    assert_non_null(y);
    const cJSON *root = yamldoc_root(y);
    assert_int_equal(yamldoc_substituted(y, cJSON_GetObjectItem(root, "a")), 1);
    assert_int_equal(yamldoc_substituted(y, cJSON_GetObjectItem(root, "b")), 0);
    assert_int_equal(yamldoc_substituted(y, cJSON_GetObjectItem(root, "c")), 0);
    yamldoc_free(y);
    diag_free(&d);

    /* problems next to a secret never show it */
    y = parse("a: ${EVH_T_SECRET}\nb: ${EVH_T_SECRET} ${EVH_T_UNSET}\nc: !!int ${EVH_T_SECRET}\n"
              "a: ${EVH_T_SECRET}\n",
              1, &d);
    assert_null(y);
    assert_int_equal(d.count, 3);
    char *all = diag_join(&d);
    assert_null(strstr(all, "s3cr3t"));
    free(all);
    diag_free(&d);
}

static void test_aliases(void **state)
{
    (void)state;
    assert_json("base: &b {retries: 3, tags: [x, y]}\none: *b\ntwo: [*b, &n 5, *n]\n", 0,
                "{\"base\":{\"retries\":3,\"tags\":[\"x\",\"y\"]},"
                "\"one\":{\"retries\":3,\"tags\":[\"x\",\"y\"]},"
                "\"two\":[{\"retries\":3,\"tags\":[\"x\",\"y\"]},5,5]}");
    /* a re-defined anchor: later aliases take the newer one */
    assert_json("- &a 1\n- *a\n- &a 2\n- *a\n", 0, "[1,1,2,2]");

    diag d;
    yamldoc *y = parse("base: &b\n  retries: 3\ncopy: *b\n", 0, &d);
    assert_non_null(y);
    const cJSON *root = yamldoc_root(y);
    const cJSON *copy = cJSON_GetObjectItem(root, "copy");
    /* the copy is a distinct node placed at the alias; its insides point at
     * the text they came from */
    assert_ptr_not_equal(copy, cJSON_GetObjectItem(root, "base"));
    assert_pos(y, copy, 3, 7);
    assert_key_pos(y, root, "copy", 3, 1);
    assert_pos(y, cJSON_GetObjectItem(copy, "retries"), 2, 12);
    assert_key_pos(y, copy, "retries", 2, 3);
    yamldoc_free(y);
    diag_free(&d);

    assert_one_error("a: *nope\n", 0,
                     "t.yaml:1:4: alias '*nope' has no complete anchor '&nope' "
                     "before it");
    /* a node cannot contain itself */
    assert_one_error("a: &x [1, *x]\n", 0,
                     "t.yaml:1:11: alias '*x' has no complete anchor '&x' before it");
    assert_one_error("a: &k x\n*k : 1\n", 0, "t.yaml:2:1: aliases cannot be used as mapping keys");
    assert_one_error("&k a: 1\n", 0, "t.yaml:1:1: anchors on mapping keys are not supported");
}

static void test_alias_bomb(void **state)
{
    (void)state;
    /* "billion laughs": 10^9 nodes if expanded; stopped at the cap */
    char text[2048] = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i <= 9; i++) {
        size_t used = strlen(text);
        used += (size_t)snprintf(text + used, sizeof text - used, "a%d: &a%d [", i, i);
        for (int j = 0; j < 10; j++)
            used +=
                (size_t)snprintf(text + used, sizeof text - used, "%s*a%d", j ? ", " : "", i - 1);
        snprintf(text + used, sizeof text - used, "]\n");
    }
    diag d;
    yamldoc *y = parse(text, 0, &d);
    assert_null(y);
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].reason, "alias '*a4' expands the document past 1000000 "
                                           "nodes (aliases nested too deep?)");
    assert_int_equal(d.items[0].line, 6); /* a5 would hold 1111111 */
    diag_free(&d);
}

static void test_node_limit(void **state)
{
    (void)state;
    /* 1000001 scalars in one flow list, well under the size cap */
    size_t n = YAMLDOC_MAX_NODES + 1, len = 2 * n + 2;
    char *text = malloc(len + 1);
    assert_non_null(text);
    text[0] = '[';
    for (size_t i = 0; i < n; i++)
        memcpy(text + 1 + 2 * i, "1,", 2);
    memcpy(text + len - 1, "]", 2);
    diag d;
    diag_init(&d, "t.yaml");
    assert_null(yamldoc_parse(text, len, 0, &d));
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].reason, "document has more than 1000000 nodes");
    diag_free(&d);
    free(text);
}

static void test_nesting_limit(void **state)
{
    (void)state;
    char text[512];
    /* 64 levels are fine, 65 are not */
    memset(text, '[', 64);
    memset(text + 64, ']', 64);
    strcpy(text + 128, "\n");
    diag d;
    yamldoc *y = parse(text, 0, &d);
    assert_non_null(y);
    yamldoc_free(y);
    diag_free(&d);
    memset(text, '[', 65);
    memset(text + 65, ']', 65);
    strcpy(text + 130, "\n");
    assert_one_error(text, 0, "t.yaml:1:65: nesting deeper than 64 levels");

    /* expanding an alias cannot go past the limit either */
    size_t n = 0;
    n += (size_t)snprintf(text + n, sizeof text - n, "a: &a ");
    for (int i = 0; i < 40; i++)
        text[n++] = '[';
    for (int i = 0; i < 40; i++)
        text[n++] = ']';
    n += (size_t)snprintf(text + n, sizeof text - n, "\nb: ");
    for (int i = 0; i < 30; i++)
        text[n++] = '[';
    n += (size_t)snprintf(text + n, sizeof text - n, "*a");
    for (int i = 0; i < 30; i++)
        text[n++] = ']';
    strcpy(text + n, "\n");
    assert_one_error(text, 0,
                     "t.yaml:2:34: nesting deeper than 64 levels once alias '*a' is "
                     "expanded");
}

static void test_load_file(void **state)
{
    (void)state;
    char *dir = tu_tempdir("yamldoc");
    char *path = tu_join(dir, "doc.yaml");
    assert_int_equal(tu_write_file(path, "name: x\nlist: [1, 2]\n"), 0);
    diag d;
    diag_init(&d, path);
    yamldoc *y = yamldoc_load(path, 0, &d);
    assert_non_null(y);
    assert_int_equal(d.count, 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(yamldoc_root(y), "list")), 2);
    yamldoc_free(y);
    diag_free(&d);

    /* I/O problems carry no position */
    char *missing = tu_join(dir, "missing.yaml");
    diag_init(&d, missing);
    assert_null(yamldoc_load(missing, 0, &d));
    assert_int_equal(d.count, 1);
    assert_string_equal(d.items[0].reason, "cannot open: No such file or directory");
    assert_int_equal(d.items[0].line, 0);
    diag_free(&d);

    /* larger than the cap: refused before parsing */
    char *big = tu_join(dir, "big.yaml");
    FILE *f = fopen(big, "w");
    assert_non_null(f);
    for (int i = 0; i <= YAMLDOC_MAX_BYTES / 16; i++)
        fputs("# padding .....\n", f);
    fclose(f);
    diag_init(&d, big);
    assert_null(yamldoc_load(big, 0, &d));
    assert_int_equal(d.count, 1);
    assert_non_null(strstr(d.items[0].reason, "larger than"));
    diag_free(&d);

    tu_rmtree(dir);
    free(big);
    free(missing);
    free(path);
    free(dir);
}

/* Every prefix and many byte mutations of a document that uses most of
 * YAML: each must end as a tree or as problems, never a crash (ASan/UBSan
 * builds check the rest). */
static void test_garbage_never_crashes(void **state)
{
    (void)state;
    static const char doc[] =
        "%YAML 1.2\n---\n"
        "server: {listen: \"127.0.0.1:8000\", keys: [a, 'b', \"c\\n\"]}\n"
        "base: &b\n  retries: 3\n  text: |\n    line\n    two\n"
        "steps:\n  - <<: *b\n  - name: ${HOME}\n    x: !!int 5\n  - ? complex\n    : value\n"
        "fold: >-\n  a\n  b\n...\n";
    char buf[sizeof doc];
    unsigned seed = 12345;
    for (size_t len = 0; len < sizeof doc; len++) {
        diag d;
        diag_init(&d, "t.yaml");
        yamldoc *y = yamldoc_parse(doc, len, 1, &d);
        assert_true((y != NULL) == (d.count == 0));
        yamldoc_free(y);
        diag_free(&d);
    }
    static const char junk[] = "\t\n :-[]{}&*!|>'\"%@`#,?\\\x01\x80\xff\xc3";
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, doc, sizeof doc);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % (sizeof doc - 1);
            seed = seed * 1103515245u + 12345u;
            buf[at] = junk[(seed >> 8) % (sizeof junk - 1)];
        }
        diag d;
        diag_init(&d, "t.yaml");
        yamldoc *y = yamldoc_parse(buf, sizeof doc - 1, round & 1, &d);
        assert_true((y != NULL) == (d.count == 0));
        yamldoc_free(y);
        diag_free(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar_typing),
        cmocka_unit_test(test_quoted_are_strings),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_nested_shape),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_non_scalar_keys),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_multiple_documents),
        cmocka_unit_test(test_empty_document),
        cmocka_unit_test(test_env_substitution),
        cmocka_unit_test(test_env_marks_and_never_prints),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_alias_bomb),
        cmocka_unit_test(test_node_limit),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_garbage_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

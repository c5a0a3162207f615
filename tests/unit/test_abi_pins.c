/*
 * test_abi_pins.c - the binary layout of every public struct of evhost.h,
 * pinned to numbers on x86_64 / LP64.
 *
 * These numbers are the ABI that compiled plugins depend on.  A field
 * inserted mid-struct, a field whose type changes width, or a reordering
 * moves an offset and fails the build here.  Appending a field at the end
 * (the only allowed change, with EVH_ABI_MINOR + 1) changes only the sizeof
 * line: update it, add a pin for the new field, and pin where the older
 * minor's struct ended (END_OF below), which must never move.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <evhost/evhost.h>

#include "hostapi.h"

#if defined(__x86_64__) && defined(__LP64__)
#define PIN(type, field, offset)                                                           \
    _Static_assert(offsetof(type, field) == (offset), #type "." #field " moved")
#define PIN_SIZE(type, size) _Static_assert(sizeof(type) == (size), "sizeof " #type " changed")
#else
/* Other ABIs have other numbers; the checks below still run there. */
#define PIN(type, field, offset) _Static_assert(1, "")
#define PIN_SIZE(type, size) _Static_assert(1, "")
#endif

PIN_SIZE(evh_host_api, 168); /* 152 in ABI 1.0 */
PIN(evh_host_api, struct_size, 0);
PIN(evh_host_api, abi_major, 4);
PIN(evh_host_api, abi_minor, 6);
PIN(evh_host_api, emit, 8);
PIN(evh_host_api, log, 16);
PIN(evh_host_api, config_json, 24);
PIN(evh_host_api, wait, 32);
PIN(evh_host_api, stopping, 40);
PIN(evh_host_api, data_dir, 48);
PIN(evh_host_api, metric, 56);
PIN(evh_host_api, alloc, 64);
PIN(evh_host_api, free, 72);
PIN(evh_host_api, strdup, 80);
PIN(evh_host_api, mprintf, 88);
PIN(evh_host_api, config_string, 96);
PIN(evh_host_api, config_int, 104);
PIN(evh_host_api, config_number, 112);
PIN(evh_host_api, config_bool, 120);
PIN(evh_host_api, json_get, 128);
PIN(evh_host_api, json_get_string, 136);
PIN(evh_host_api, json_quote, 144);

/* Where a struct of an older minor ended: the struct_size such a plugin
 * reports, which the host's *_HAS checks compare against. */
#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

_Static_assert(END_OF(evh_host_api, json_quote) == 152, "the ABI 1.0 evh_host_api size moved");
PIN(evh_host_api, condition_eval, 152); /* ABI 1.1 */
PIN(evh_host_api, emit_id, 160);        /* ABI 1.1 */

PIN_SIZE(evh_source, 48); /* 40 in ABI 1.0 */
PIN(evh_source, struct_size, 0);
PIN(evh_source, reserved_, 4);
PIN(evh_source, init, 8);
PIN(evh_source, run, 16);
PIN(evh_source, stop, 24);
PIN(evh_source, fini, 32);
_Static_assert(END_OF(evh_source, fini) == 40, "the ABI 1.0 evh_source size moved");
PIN(evh_source, http, 40); /* ABI 1.1 */

/* ABI 1.1 */
PIN_SIZE(evh_http_field, 16);
PIN(evh_http_field, name, 0);
PIN(evh_http_field, value, 8);

PIN_SIZE(evh_http_request, 72);
PIN(evh_http_request, struct_size, 0);
PIN(evh_http_request, n_headers, 4);
PIN(evh_http_request, method, 8);
PIN(evh_http_request, path, 16);
PIN(evh_http_request, headers, 24);
PIN(evh_http_request, query, 32);
PIN(evh_http_request, n_query, 40);
PIN(evh_http_request, reserved_, 44);
PIN(evh_http_request, body, 48);
PIN(evh_http_request, body_len, 56);
PIN(evh_http_request, remote_addr, 64);

PIN_SIZE(evh_http_response, 40);
PIN(evh_http_response, struct_size, 0);
PIN(evh_http_response, status, 4);
PIN(evh_http_response, content_type, 8);
PIN(evh_http_response, body, 16);
PIN(evh_http_response, body_len, 24);
PIN(evh_http_response, headers, 32);

PIN_SIZE(evh_step, 40); /* 32 in ABI 1.0 and 1.1 */
PIN(evh_step, struct_size, 0);
PIN(evh_step, reserved_, 4);
PIN(evh_step, init, 8);
PIN(evh_step, run, 16);
PIN(evh_step, fini, 24);
_Static_assert(END_OF(evh_step, fini) == 32, "the ABI 1.0/1.1 evh_step size moved");
PIN(evh_step, validate, 32); /* ABI 1.2 */

PIN_SIZE(evh_step_input, 80);
PIN(evh_step_input, struct_size, 0);
PIN(evh_step_input, attempt, 4);
PIN(evh_step_input, event_json, 8);
PIN(evh_step_input, event_len, 16);
PIN(evh_step_input, steps_json, 24);
PIN(evh_step_input, steps_len, 32);
PIN(evh_step_input, execution_id, 40);
PIN(evh_step_input, workflow_id, 48);
PIN(evh_step_input, step_id, 56);
PIN(evh_step_input, config_json, 64);
PIN(evh_step_input, config_len, 72);

PIN_SIZE(evh_step_output, 40); /* 32 in ABI 1.0 */
PIN(evh_step_output, struct_size, 0);
PIN(evh_step_output, reserved_, 4);
PIN(evh_step_output, output_json, 8);
PIN(evh_step_output, output_len, 16);
PIN(evh_step_output, error_message, 24);
_Static_assert(END_OF(evh_step_output, error_message) == 32,
               "the ABI 1.0 evh_step_output size moved");
PIN(evh_step_output, flags, 32);      /* ABI 1.1 */
PIN(evh_step_output, reserved2_, 36); /* ABI 1.1 */

PIN_SIZE(evh_plugin, 40);
PIN(evh_plugin, struct_size, 0);
PIN(evh_plugin, abi_major, 4);
PIN(evh_plugin, abi_minor, 6);
PIN(evh_plugin, kind, 8);
PIN(evh_plugin, reserved_, 12);
PIN(evh_plugin, id, 16);
PIN(evh_plugin, source, 24);
PIN(evh_plugin, step, 32);

/* The same pins at run time, so a report names the number that moved. */
typedef struct pin {
    const char *name;
    size_t actual;
    size_t expected;
} pin;

#define P(type, field, off) {#type "." #field, offsetof(type, field), (off)}
#define S(type, size) {"sizeof " #type, sizeof(type), (size)}

static void test_layout(void **state)
{
    (void)state;
#if !(defined(__x86_64__) && defined(__LP64__))
    skip();
#endif
    static const pin pins[] = {
        S(evh_host_api, 168),
        P(evh_host_api, struct_size, 0),
        P(evh_host_api, abi_major, 4),
        P(evh_host_api, abi_minor, 6),
        P(evh_host_api, emit, 8),
        P(evh_host_api, log, 16),
        P(evh_host_api, config_json, 24),
        P(evh_host_api, wait, 32),
        P(evh_host_api, stopping, 40),
        P(evh_host_api, data_dir, 48),
        P(evh_host_api, metric, 56),
        P(evh_host_api, alloc, 64),
        P(evh_host_api, free, 72),
        P(evh_host_api, strdup, 80),
        P(evh_host_api, mprintf, 88),
        P(evh_host_api, config_string, 96),
        P(evh_host_api, config_int, 104),
        P(evh_host_api, config_number, 112),
        P(evh_host_api, config_bool, 120),
        P(evh_host_api, json_get, 128),
        P(evh_host_api, json_get_string, 136),
        P(evh_host_api, json_quote, 144),
        {"end of evh_host_api 1.0", END_OF(evh_host_api, json_quote), 152},
        P(evh_host_api, condition_eval, 152),
        P(evh_host_api, emit_id, 160),
        S(evh_source, 48),
        P(evh_source, struct_size, 0),
        P(evh_source, reserved_, 4),
        P(evh_source, init, 8),
        P(evh_source, run, 16),
        P(evh_source, stop, 24),
        P(evh_source, fini, 32),
        {"end of evh_source 1.0", END_OF(evh_source, fini), 40},
        P(evh_source, http, 40),
        S(evh_http_field, 16),
        P(evh_http_field, name, 0),
        P(evh_http_field, value, 8),
        S(evh_http_request, 72),
        P(evh_http_request, struct_size, 0),
        P(evh_http_request, n_headers, 4),
        P(evh_http_request, method, 8),
        P(evh_http_request, path, 16),
        P(evh_http_request, headers, 24),
        P(evh_http_request, query, 32),
        P(evh_http_request, n_query, 40),
        P(evh_http_request, reserved_, 44),
        P(evh_http_request, body, 48),
        P(evh_http_request, body_len, 56),
        P(evh_http_request, remote_addr, 64),
        S(evh_http_response, 40),
        P(evh_http_response, struct_size, 0),
        P(evh_http_response, status, 4),
        P(evh_http_response, content_type, 8),
        P(evh_http_response, body, 16),
        P(evh_http_response, body_len, 24),
        P(evh_http_response, headers, 32),
        S(evh_step, 40),
        P(evh_step, struct_size, 0),
        P(evh_step, reserved_, 4),
        P(evh_step, init, 8),
        P(evh_step, run, 16),
        P(evh_step, fini, 24),
        P(evh_step, validate, 32),
        S(evh_step_input, 80),
        P(evh_step_input, struct_size, 0),
        P(evh_step_input, attempt, 4),
        P(evh_step_input, event_json, 8),
        P(evh_step_input, event_len, 16),
        P(evh_step_input, steps_json, 24),
        P(evh_step_input, steps_len, 32),
        P(evh_step_input, execution_id, 40),
        P(evh_step_input, workflow_id, 48),
        P(evh_step_input, step_id, 56),
        P(evh_step_input, config_json, 64),
        P(evh_step_input, config_len, 72),
        S(evh_step_output, 40),
        P(evh_step_output, struct_size, 0),
        P(evh_step_output, reserved_, 4),
        P(evh_step_output, output_json, 8),
        P(evh_step_output, output_len, 16),
        P(evh_step_output, error_message, 24),
        {"end of evh_step_output 1.0", END_OF(evh_step_output, error_message), 32},
        P(evh_step_output, flags, 32),
        P(evh_step_output, reserved2_, 36),
        S(evh_plugin, 40),
        P(evh_plugin, struct_size, 0),
        P(evh_plugin, abi_major, 4),
        P(evh_plugin, abi_minor, 6),
        P(evh_plugin, kind, 8),
        P(evh_plugin, reserved_, 12),
        P(evh_plugin, id, 16),
        P(evh_plugin, source, 24),
        P(evh_plugin, step, 32),
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof pins / sizeof pins[0]; i++) {
        if (pins[i].actual != pins[i].expected) {
            print_error("%s is %zu, pinned %zu\n", pins[i].name, pins[i].actual,
                        pins[i].expected);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* Field widths that must never depend on the compiler (no enum, no bool). */
static void test_field_widths(void **state)
{
    (void)state;
    evh_plugin d;
    evh_host_api a;
    evh_step_input in;
    evh_http_request rq;
    evh_http_response rs;
    assert_int_equal(sizeof d.struct_size, 4);
    assert_int_equal(sizeof d.abi_major, 2);
    assert_int_equal(sizeof d.abi_minor, 2);
    assert_int_equal(sizeof d.kind, 4);
    assert_int_equal(sizeof a.abi_major, 2);
    assert_int_equal(sizeof in.attempt, 4);
    assert_int_equal(sizeof rq.struct_size, 4);
    assert_int_equal(sizeof rq.n_headers, 4);
    assert_int_equal(sizeof rq.n_query, 4);
    assert_int_equal(sizeof rs.struct_size, 4);
    assert_int_equal(sizeof rs.status, 4);
    assert_int_equal(EVH_KIND_SOURCE, 1);
    assert_int_equal(EVH_KIND_STEP, 2);
    assert_int_equal(EVH_LOG_ERROR, 0);
    assert_int_equal(EVH_LOG_WARN, 1);
    assert_int_equal(EVH_LOG_INFO, 2);
    assert_int_equal(EVH_LOG_DEBUG, 3);
    assert_true(EVH_NUL_TERMINATED == SIZE_MAX);
    assert_string_equal(EVH_ENTRY_SYMBOL, "evh_plugin_entry");
}

static void test_host_table(void **state)
{
    (void)state;
    const evh_host_api *api = hostapi_table();
    assert_int_equal(api->struct_size, sizeof(evh_host_api));
    assert_int_equal(api->abi_major, EVH_ABI_MAJOR);
    assert_int_equal(api->abi_minor, EVH_ABI_MINOR);
    char version[16];
    snprintf(version, sizeof version, "%d.%d", EVH_ABI_MAJOR, EVH_ABI_MINOR);
    assert_string_equal(version, EVH_ABI_STRING);

    /* everything of ABI 1.0 is there, and filled in */
    assert_true(EVH_API_HAS(api, emit) && api->emit);
    assert_true(EVH_API_HAS(api, log) && api->log);
    assert_true(EVH_API_HAS(api, config_json) && api->config_json);
    assert_true(EVH_API_HAS(api, wait) && api->wait);
    assert_true(EVH_API_HAS(api, stopping) && api->stopping);
    assert_true(EVH_API_HAS(api, data_dir) && api->data_dir);
    assert_true(EVH_API_HAS(api, metric) && api->metric);
    assert_true(EVH_API_HAS(api, alloc) && api->alloc);
    assert_true(EVH_API_HAS(api, free) && api->free);
    assert_true(EVH_API_HAS(api, strdup) && api->strdup);
    assert_true(EVH_API_HAS(api, mprintf) && api->mprintf);
    assert_true(EVH_API_HAS(api, config_string) && api->config_string);
    assert_true(EVH_API_HAS(api, config_int) && api->config_int);
    assert_true(EVH_API_HAS(api, config_number) && api->config_number);
    assert_true(EVH_API_HAS(api, config_bool) && api->config_bool);
    assert_true(EVH_API_HAS(api, json_get) && api->json_get);
    assert_true(EVH_API_HAS(api, json_get_string) && api->json_get_string);
    assert_true(EVH_API_HAS(api, json_quote) && api->json_quote);
    /* and of ABI 1.1 */
    assert_true(EVH_API_HAS(api, condition_eval) && api->condition_eval);
    assert_true(EVH_API_HAS(api, emit_id) && api->emit_id);

    /* an older, shorter table lacks what it does not cover */
    evh_host_api older;
    memcpy(&older, api, sizeof older);
    older.struct_size = (uint32_t)offsetof(evh_host_api, json_quote);
    assert_true(EVH_API_HAS(&older, json_get_string));
    assert_false(EVH_API_HAS(&older, json_quote));
    older.struct_size = (uint32_t)END_OF(evh_host_api, json_quote); /* ABI 1.0 */
    assert_true(EVH_API_HAS(&older, json_quote));
    assert_false(EVH_API_HAS(&older, condition_eval));
    assert_false(EVH_API_HAS(&older, emit_id));
    older.struct_size = 8;
    assert_false(EVH_API_HAS(&older, emit));
}

/* EVH_STEP_OUTPUT_HAS: a 1.0 host's output struct (32 bytes) has no
 * flags, and a plugin must not write them there. */
static void test_step_output_has(void **state)
{
    (void)state;
    assert_int_equal(EVH_STEP_STOP_WORKFLOW, 1);
    evh_step_output o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    assert_true(EVH_STEP_OUTPUT_HAS(&o, error_message));
    assert_true(EVH_STEP_OUTPUT_HAS(&o, flags));
    o.struct_size = (uint32_t)END_OF(evh_step_output, error_message); /* ABI 1.0 */
    assert_int_equal(o.struct_size, 32);
    assert_true(EVH_STEP_OUTPUT_HAS(&o, error_message));
    assert_false(EVH_STEP_OUTPUT_HAS(&o, flags));
    assert_int_equal(EVH_EVENT_ID_SIZE, 37);
}

/* EVH_SOURCE_HAS reads the appended field of a 1.1 table only: a table of
 * 1.0's size (a plugin built against SDK 1.0) lacks it. */
static void test_source_has(void **state)
{
    (void)state;
    assert_int_equal(EVH_ABI_MAJOR, 1);
    assert_int_equal(EVH_ABI_MINOR, 2);
    assert_string_equal(EVH_ABI_STRING, "1.2");
    evh_source s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    assert_true(EVH_SOURCE_HAS(&s, fini));
    assert_true(EVH_SOURCE_HAS(&s, http));
    s.struct_size = (uint32_t)END_OF(evh_source, fini); /* ABI 1.0 */
    assert_int_equal(s.struct_size, 40);
    assert_true(EVH_SOURCE_HAS(&s, init));
    assert_true(EVH_SOURCE_HAS(&s, fini));
    assert_false(EVH_SOURCE_HAS(&s, http));
    s.struct_size = (uint32_t)END_OF(evh_source, http) - 1;
    assert_false(EVH_SOURCE_HAS(&s, http));
}

/* EVH_STEP_HAS reads validate (ABI 1.2) only from a table long enough:
 * one built against SDK 1.0 or 1.1 (32 bytes) lacks it. */
static void test_step_has(void **state)
{
    (void)state;
    evh_step s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    assert_true(EVH_STEP_HAS(&s, fini));
    assert_true(EVH_STEP_HAS(&s, validate));
    s.struct_size = (uint32_t)END_OF(evh_step, fini); /* ABI 1.0 and 1.1 */
    assert_int_equal(s.struct_size, 32);
    assert_true(EVH_STEP_HAS(&s, init));
    assert_true(EVH_STEP_HAS(&s, fini));
    assert_false(EVH_STEP_HAS(&s, validate));
    s.struct_size = (uint32_t)END_OF(evh_step, validate) - 1;
    assert_false(EVH_STEP_HAS(&s, validate));
}

/* evh_is_template says what the host resolves per run: any "{{". */
static void test_is_template(void **state)
{
    (void)state;
    assert_false(evh_is_template(NULL));
    assert_false(evh_is_template(""));
    assert_false(evh_is_template("/srv/in"));
    assert_false(evh_is_template("{ not } {one"));
    assert_false(evh_is_template("{"));
    assert_true(evh_is_template("{{ event.data.path }}"));
    assert_true(evh_is_template("/in/{{ event.data.name }}.pdf"));
    assert_true(evh_is_template("x{{"));
}

static void test_status_codes(void **state)
{
    (void)state;
    static const struct {
        int32_t code;
        const char *name;
        const char *message;
    } codes[] = {
        {EVH_OK, "EVH_OK", "success"},
        {EVH_E_INVALID, "EVH_E_INVALID", "invalid argument"},
        {EVH_E_NOMEM, "EVH_E_NOMEM", "out of memory"},
        {EVH_E_QUEUE_FULL, "EVH_E_QUEUE_FULL", "event queue is full; retry later"},
        {EVH_E_UNDECLARED_TYPE, "EVH_E_UNDECLARED_TYPE",
         "event type is not declared in the plugin's plugin.json"},
        {EVH_E_SCHEMA, "EVH_E_SCHEMA", "data does not match the schema"},
        {EVH_E_STOPPING, "EVH_E_STOPPING", "the host is stopping"},
        {EVH_E_TIMEOUT, "EVH_E_TIMEOUT", "operation timed out"},
        {EVH_E_ABI, "EVH_E_ABI", "SDK ABI version mismatch"},
        {EVH_E_MANIFEST, "EVH_E_MANIFEST", "invalid plugin.json"},
        {EVH_E_LOAD, "EVH_E_LOAD", "plugin library could not be loaded"},
        {EVH_E_PERMISSION, "EVH_E_PERMISSION", "unsafe file permissions"},
        {EVH_E_DUPLICATE, "EVH_E_DUPLICATE", "duplicate id"},
        {EVH_E_NOT_FOUND, "EVH_E_NOT_FOUND", "not found"},
        {EVH_E_CONFIG, "EVH_E_CONFIG", "invalid configuration"},
        {EVH_E_PLUGIN, "EVH_E_PLUGIN", "the plugin reported a failure"},
        {EVH_E_IO, "EVH_E_IO", "input/output error"},
        {EVH_E_JSON, "EVH_E_JSON", "malformed JSON"},
        {EVH_E_UNSUPPORTED, "EVH_E_UNSUPPORTED", "not supported"},
        {EVH_E_STATE, "EVH_E_STATE", "not allowed in the current state"},
    };
    /* the numbers are forever: pinned like the offsets */
    static const int32_t numbers[] = {0,   -1,  -2,  -3,  -4,  -5,  -6,  -7,  -8,  -9,
                                      -10, -11, -12, -13, -14, -15, -16, -17, -18, -19};
    assert_int_equal(sizeof codes / sizeof codes[0], sizeof numbers / sizeof numbers[0]);
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_int_equal(codes[i].code, numbers[i]);
        assert_string_equal(evh_status_name(codes[i].code), codes[i].name);
        assert_string_equal(evh_status_message(codes[i].code), codes[i].message);
    }
    assert_int_equal(EVH_E_LAST_, -20);
    assert_string_equal(evh_status_name(EVH_E_LAST_), "EVH_E_UNKNOWN");
    assert_string_equal(evh_status_name(1), "EVH_E_UNKNOWN");
    assert_string_equal(evh_status_message(-1000), "unknown status code");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_field_widths),
        cmocka_unit_test(test_host_table),
        cmocka_unit_test(test_source_has),
        cmocka_unit_test(test_step_has),
        cmocka_unit_test(test_is_template),
        cmocka_unit_test(test_step_output_has),
        cmocka_unit_test(test_status_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

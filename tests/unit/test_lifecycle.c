/*
 * test_lifecycle.c - the lifecycle envelope as text (lifecycle.c): every
 * member in the seed's order, strings escaped so that any error message
 * or name parses back to itself, the job's parts where they belong.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "lifecycle.h"

/* The names of an object's members, in order, joined by ','. */
static void member_names(const cJSON *o, char *out, size_t size)
{
    out[0] = '\0';
    const cJSON *m;
    cJSON_ArrayForEach(m, o)
    {
        if (out[0])
            strncat(out, ",", size - strlen(out) - 1);
        strncat(out, m->string, size - strlen(out) - 1);
    }
}

static void test_plugin_error_envelope(void **state)
{
    (void)state;
    /* quotes, backslashes, every control character, and UTF-8 */
    char error[64 + 32];
    size_t k = 0;
    for (int c = 1; c < 0x20; c++)
        error[k++] = (char)c;
    static const char tail[] = "\"q\" \\ caf\xc3\xa9 \xe2\x9c\x93";
    memcpy(error + k, tail, sizeof tail); /* its '\0' too */
    lifecycle_job_part job = {.id = "0197-job",
                              .config_text = "{\"workflow_id\":\"wf\",\"steps\":[]}",
                              .done = 1,
                              .total = 3,
                              .step = "step \"two\""};
    size_t len = 0;
    char *text = lifecycle_envelope_text(LC_PLUGIN_ERROR, "0197-job", "http-request", NULL, error,
                                         &job, "2026-11-26T07:00:00.000Z", &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    cJSON *env = cJSON_Parse(text);
    assert_non_null(env);
    char names[256];
    member_names(env, names, sizeof names);
    assert_string_equal(names, "event,data,timestamp");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(env, "event")), "pluginError");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(env, "timestamp")),
                        "2026-11-26T07:00:00.000Z");
    const cJSON *data = cJSON_GetObjectItem(env, "data");
    member_names(data, names, sizeof names);
    assert_string_equal(names, "jobId,pluginName,error,job");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(data, "pluginName")),
                        "http-request");
    assert_string_equal(
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(data, "error"), "message")),
        error);
    const cJSON *j = cJSON_GetObjectItem(data, "job");
    member_names(j, names, sizeof names);
    assert_string_equal(names, "id,config,progress");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "id")), "0197-job");
    assert_string_equal(
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "config"), "workflow_id")),
        "wf");
    const cJSON *p = cJSON_GetObjectItem(j, "progress");
    member_names(p, names, sizeof names);
    assert_string_equal(names, "done,total,step");
    assert_int_equal(cJSON_GetObjectItem(p, "done")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(p, "total")->valueint, 3);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(p, "step")), "step \"two\"");
    cJSON_Delete(env);
    free(text);
}

static void test_job_complete_envelope(void **state)
{
    (void)state;
    cJSON *metrics = cJSON_Parse("{\"rows\": 3}");
    cJSON *result = cJSON_Parse("{\"metrics\":[{\"step\":\"a\",\"plugin\":\"p\",\"metrics\":"
                                "{\"rows\":3}}],\"summary\":{\"status\":\"succeeded\","
                                "\"duration_ms\":12}}");
    lifecycle_job_part job = {.id = "j", .config_text = NULL, .done = 2, .total = 2,
                              .result = result};
    char *text = lifecycle_envelope_text(LC_JOB_COMPLETE, "j", NULL, NULL, NULL, &job,
                                         "2026-11-26T07:00:00.000Z", NULL);
    assert_non_null(text);
    /* no pluginName, metrics or error; config null without a workflow; no
     * progress.step; the result after the progress */
    assert_string_equal(text, "{\"event\":\"jobComplete\",\"data\":{\"jobId\":\"j\",\"job\":{"
                              "\"id\":\"j\",\"config\":null,\"progress\":{\"done\":2,\"total\":2},"
                              "\"result\":{\"metrics\":[{\"step\":\"a\",\"plugin\":\"p\","
                              "\"metrics\":{\"rows\":3}}],\"summary\":{\"status\":\"succeeded\","
                              "\"duration_ms\":12}}}},\"timestamp\":\"2026-11-26T07:00:00.000Z\"}");
    free(text);
    text = lifecycle_envelope_text(LC_PLUGIN_COMPLETE, "j", "p", metrics, NULL, NULL,
                                   "2026-11-26T07:00:00.000Z", NULL);
    assert_string_equal(text, "{\"event\":\"pluginComplete\",\"data\":{\"jobId\":\"j\","
                              "\"pluginName\":\"p\",\"metrics\":{\"rows\":3}},"
                              "\"timestamp\":\"2026-11-26T07:00:00.000Z\"}");
    free(text);
    cJSON_Delete(metrics);
    cJSON_Delete(result);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plugin_error_envelope),
        cmocka_unit_test(test_job_complete_envelope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

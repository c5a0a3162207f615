/*
 * test_config.c - host.yaml: defaults, every setting, problems with their
 * positions, environment API keys, redaction, plugin config passthrough.
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

#include <evhost/evhost.h>

#include "config.h"
#include "testutil.h"

static int clean_env(void **state)
{
    (void)state;
    unsetenv("EVH_API_KEYS");
    return 0;
}

/* Parse text as "host.yaml"; d is initialised here, freed by the caller. */
static int parse(const char *text, evh_config **out, diag *d)
{
    diag_init(d, NULL);
    return config_parse_text(text, strlen(text), "host.yaml", out, d);
}

static evh_config *parse_ok(const char *text)
{
    evh_config *c = NULL;
    diag d;
    int rc = parse(text, &c, &d);
    if (rc != EVH_OK)
        diag_print(&d, stderr);
    assert_int_equal(rc, EVH_OK);
    assert_int_equal(d.count, 0);
    assert_non_null(c);
    diag_free(&d);
    return c;
}

/* All problems of a failing text, one per line (malloc). */
static char *problems_of(const char *text)
{
    evh_config *c = (evh_config *)1;
    diag d;
    assert_int_equal(parse(text, &c, &d), EVH_E_CONFIG);
    assert_null(c);
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    diag_print(&d, f);
    fclose(f);
    diag_free(&d);
    return out;
}

static void assert_problems(const char *text, const char *want)
{
    char *got = problems_of(text);
    assert_string_equal(got, want);
    free(got);
}

static char *printed(const evh_config *c)
{
    /* read back through a temporary file: gcc 12 -O2 wrongly flags a
     * memstream buffer as dangling once it is returned */
    FILE *f = tmpfile();
    assert_non_null(f);
    config_print_redacted(c, f);
    long size = ftell(f);
    assert_true(size > 0);
    char *out = calloc(1, (size_t)size + 1);
    assert_non_null(out);
    rewind(f);
    assert_int_equal(fread(out, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    return out;
}

static void assert_defaults(const evh_config *c)
{
    assert_string_equal(c->listen, "127.0.0.1:8000");
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8000);
    assert_int_equal(c->n_api_keys, 0);
    assert_int_equal(c->max_body_bytes, 1048576);
    assert_int_equal(c->max_connections, 256);
    assert_int_equal(c->connection_timeout_s, 30);
    assert_int_equal(c->n_plugin_dirs, 0);
    assert_int_equal(c->plugins_builtin, 1);
    char *pc = cJSON_PrintUnformatted(c->plugin_config);
    assert_string_equal(pc, "{\"timer\":{\"interval_ms\":5000}}");
    free(pc);
    assert_string_equal(c->storage_path, "./evhost-data/evhost.db");
    assert_string_equal(c->storage_synchronous, "normal");
    assert_int_equal(c->retention_max_age_days, 30);
    assert_int_equal(c->retention_max_executions, 100000);
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->queue_size, 65536);
    assert_int_equal(c->emit_wait_ms, 100);
    assert_int_equal(c->max_chain_depth, 8);
    assert_int_equal(c->n_workflow_dirs, 0);
    assert_int_equal(c->n_trigger_files, 0);
    assert_int_equal(c->log_level, EVH_LOG_INFO);
    assert_string_equal(c->data_dir, "./evhost-data");
    assert_int_equal(c->shutdown_timeout_s, 10);
}

static void test_defaults_without_file(void **state)
{
    (void)state;
    evh_config *c = NULL;
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(config_load(NULL, &c, &d), EVH_OK);
    assert_int_equal(d.count, 0);
    assert_defaults(c);
    assert_string_equal(c->source, "(built-in defaults)");
    config_free(c);
    diag_free(&d);

    /* an empty file, or one with empty sections, changes nothing */
    c = parse_ok("");
    assert_defaults(c);
    config_free(c);
    c = parse_ok("# nothing yet\nserver:\nlog:\nplugins:\n  dirs:\n");
    assert_defaults(c);
    config_free(c);
}

static void test_default_text_is_the_defaults(void **state)
{
    (void)state;
    const char *text = config_default_yaml();
    assert_non_null(strstr(text, "listen: \"127.0.0.1:8000\""));
    assert_non_null(strstr(text, "EVH_API_KEYS"));
    evh_config *c = parse_ok(text);
    assert_defaults(c);
    config_free(c);
}

static void test_every_setting(void **state)
{
    (void)state;
    setenv("EVH_T_KEY", "k-0123456789", 1);
    evh_config *c = parse_ok("server:\n"
                             "  listen: \"[::1]:0\"\n"
                             "  api_keys:\n"
                             "    - {name: ci, key: \"${EVH_T_KEY}\"}\n"
                             "    - name: ops.team-1\n"
                             "      key: \"0123\"\n"
                             "  max_body_bytes: 2048\n"
                             "  max_connections: 9\n"
                             "  connection_timeout_s: 5\n"
                             "plugins:\n"
                             "  dirs: [/opt/a, ./b]\n"
                             "  builtin: false\n"
                             "  config:\n"
                             "    webhook: {url: \"http://x\", retries: [1, 2]}\n"
                             "storage:\n"
                             "  path: /var/lib/evh/db.sqlite\n"
                             "  synchronous: full\n"
                             "  retention: {max_age_days: 0, max_executions: 5}\n"
                             "pipeline:\n"
                             "  workers: 4\n"
                             "  queue_size: 128\n"
                             "  emit_wait_ms: 0\n"
                             "  max_chain_depth: 3\n"
                             "workflows:\n"
                             "  dirs: [wf]\n"
                             "triggers:\n"
                             "  files: [t1.yaml, t2.yaml]\n"
                             "log:\n"
                             "  level: debug\n"
                             "data_dir: /tmp/evh\n"
                             "shutdown_timeout_s: 3\n");
    assert_string_equal(c->listen, "[::1]:0");
    assert_string_equal(c->listen_host, "::1");
    assert_int_equal(c->listen_port, 0);
    assert_int_equal(c->n_api_keys, 2);
    assert_string_equal(c->api_keys[0].name, "ci");
    assert_string_equal(c->api_keys[0].key, "k-0123456789");
    assert_string_equal(c->api_keys[1].name, "ops.team-1");
    assert_int_equal(c->max_body_bytes, 2048);
    assert_int_equal(c->max_connections, 9);
    assert_int_equal(c->connection_timeout_s, 5);
    assert_int_equal(c->n_plugin_dirs, 2);
    assert_string_equal(c->plugin_dirs[0], "/opt/a");
    assert_string_equal(c->plugin_dirs[1], "./b");
    assert_int_equal(c->plugins_builtin, 0);
    assert_string_equal(c->storage_path, "/var/lib/evh/db.sqlite");
    assert_string_equal(c->storage_synchronous, "full");
    assert_int_equal(c->retention_max_age_days, 0);
    assert_int_equal(c->retention_max_executions, 5);
    assert_int_equal(c->workers, 4);
    assert_int_equal(c->queue_size, 128);
    assert_int_equal(c->emit_wait_ms, 0);
    assert_int_equal(c->max_chain_depth, 3);
    assert_int_equal(c->n_workflow_dirs, 1);
    assert_string_equal(c->workflow_dirs[0], "wf");
    assert_int_equal(c->n_trigger_files, 2);
    assert_string_equal(c->trigger_files[1], "t2.yaml");
    assert_int_equal(c->log_level, EVH_LOG_DEBUG);
    assert_string_equal(c->data_dir, "/tmp/evh");
    assert_int_equal(c->shutdown_timeout_s, 3);
    config_free(c);
}

static void test_api_key_must_be_text(void **state)
{
    (void)state;
    /* a plain 0123 is the number 123 in YAML: a key must be a string, and the
     * message must not show it */
    char *got = problems_of("server:\n  api_keys:\n    - name: ci\n      key: 0123\n");
    assert_string_equal(got, "host.yaml:4:12: server.api_keys[0].key: must be a non-empty "
                             "string\n");
    free(got);
}

static void test_unknown_keys(void **state)
{
    (void)state;
    assert_problems("servr:\n  listen: \"0.0.0.0:1\"\n",
                    "host.yaml:1:1: unknown key 'servr'; did you mean 'server'?\n");
    assert_problems("server:\n  Listen: \"0.0.0.0:1\"\n",
                    "host.yaml:2:3: server: unknown key 'Listen'; did you mean 'listen'?\n");
    assert_problems("storage:\n  retention:\n    max_age: 3\n",
                    "host.yaml:3:5: storage.retention: unknown key 'max_age' (known keys: "
                    "max_age_days, max_executions)\n");
    assert_problems("pipeline: {worker: 2}\n",
                    "host.yaml:1:12: pipeline: unknown key 'worker'; did you mean 'workers'?\n");
    assert_problems("colour: blue\n",
                    "host.yaml:1:1: unknown key 'colour' (known keys: server, plugins, storage, "
                    "pipeline, workflows, triggers, log, data_dir, shutdown_timeout_s, "
                    "notifications)\n");
    assert_problems("server:\n  api_keys:\n    - {name: a, key: b, scope: all}\n",
                    "host.yaml:3:25: server.api_keys[0]: unknown key 'scope' (known keys: name, "
                    "key)\n");
}

static void test_type_and_range_errors(void **state)
{
    (void)state;
    assert_problems("server:\n"
                    "  listen: 8000\n"
                    "  max_body_bytes: 10\n"
                    "plugins:\n"
                    "  dirs: [ok, 3, \"\"]\n"
                    "  builtin: yes\n"
                    "storage:\n"
                    "  synchronous: fast\n"
                    "  retention: 7\n"
                    "pipeline:\n"
                    "  workers: many\n"
                    "  queue_size: 1.5\n"
                    "  max_chain_depth: 65\n"
                    "workflows: {dirs: wf}\n"
                    "log: {level: verbose}\n"
                    "data_dir: ''\n"
                    "shutdown_timeout_s: null\n",
                    "host.yaml:2:11: server.listen: must be \"host:port\" with a port from 0 to "
                    "65535 (IPv6: \"[::1]:8000\"), got 8000\n"
                    "host.yaml:3:19: server.max_body_bytes: must be an integer from 1024 to "
                    "1073741824, got 10\n"
                    "host.yaml:5:14: plugins.dirs[1]: must be a non-empty path, got 3\n"
                    "host.yaml:5:17: plugins.dirs[2]: must be a non-empty path, got \"\"\n"
                    "host.yaml:6:12: plugins.builtin: must be true or false, got \"yes\"\n"
                    "host.yaml:8:16: storage.synchronous: must be \"normal\" or \"full\", got "
                    "\"fast\"\n"
                    "host.yaml:9:14: storage.retention: must be a mapping, got 7\n"
                    "host.yaml:11:12: pipeline.workers: must be an integer from 0 to 1024, got "
                    "\"many\"\n"
                    "host.yaml:12:15: pipeline.queue_size: must be an integer from 16 to "
                    "16777216, got 1.5\n"
                    "host.yaml:13:20: pipeline.max_chain_depth: must be an integer from 1 to 64, "
                    "got 65\n"
                    "host.yaml:14:19: workflows.dirs: must be a list of paths, got \"wf\"\n"
                    "host.yaml:15:14: log.level: must be one of \"error\", \"warn\", \"info\" or "
                    "\"debug\", got \"verbose\"\n"
                    "host.yaml:16:11: data_dir: must be a non-empty string, got \"\"\n"
                    "host.yaml:17:21: shutdown_timeout_s: must be an integer from 1 to 3600, got "
                    "nothing (null)\n");
    assert_problems("- a\n- b\n", "host.yaml:1:1: the settings must be a mapping (server:, "
                                  "plugins:, ...), got a list\n");
    /* YAML problems come through with their positions */
    assert_problems("server:\n  listen: \"x\n",
                    "host.yaml:3:1: found unexpected end of stream while scanning a quoted "
                    "scalar (started at line 2, column 11)\n");
    assert_problems("log:\n  level: info\nlog:\n  level: warn\n",
                    "host.yaml:3:1: duplicate key 'log' (first at line 1)\n");
}

static void test_listen_forms(void **state)
{
    (void)state;
    evh_config *c = parse_ok("server: {listen: \"localhost:65535\"}\n");
    assert_string_equal(c->listen_host, "localhost");
    assert_int_equal(c->listen_port, 65535);
    config_free(c);
    const char *bad[] = {"localhost", ":80",     "h:",   "h:65536", "h:8x",
                         "::1:80",    "[::1]80", "[]:1", "h:-1",    "h:123456"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "server: {listen: \"%s\"}\n", bad[i]);
        char *got = problems_of(text);
        assert_non_null(strstr(got, "server.listen: must be \"host:port\""));
        free(got);
    }
}

static void test_env_api_keys(void **state)
{
    (void)state;
    setenv("EVH_T_KEY", "from-file-secret", 1);
    setenv("EVH_API_KEYS", " ci:from-env-secret , extra:xyz:with:colons,", 1);
    evh_config *c = parse_ok("server:\n  api_keys:\n"
                             "    - {name: ci, key: \"${EVH_T_KEY}\"}\n"
                             "    - {name: other, key: plain-secret}\n");
    assert_int_equal(c->n_api_keys, 3);
    assert_string_equal(c->api_keys[0].name, "ci");
    assert_string_equal(c->api_keys[0].key, "from-env-secret");
    assert_string_equal(c->api_keys[1].name, "other");
    assert_string_equal(c->api_keys[2].name, "extra");
    assert_string_equal(c->api_keys[2].key, "xyz:with:colons");
    config_free(c);

    /* also without a file */
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(config_load(NULL, &c, &d), EVH_OK);
    assert_int_equal(c->n_api_keys, 2);
    config_free(c);
    diag_free(&d);

    /* a bad entry is reported by its number, never by its text */
    setenv("EVH_API_KEYS", "good:k1,justasecretwithoutname,bad name:k2,empty:", 1);
    char *got = problems_of("");
    assert_null(strstr(got, "justasecret"));
    assert_null(strstr(got, "k1"));
    assert_non_null(strstr(got, "host.yaml: EVH_API_KEYS: entry 2 must be name:key"));
    assert_non_null(strstr(got, "entry 3 must be"));
    assert_non_null(strstr(got, "entry 4 must be"));
    free(got);
    unsetenv("EVH_API_KEYS");

    /* the file's own references must be set */
    unsetenv("EVH_T_UNSET_KEY");
    assert_problems("server:\n  api_keys:\n    - {name: ci, key: \"${EVH_T_UNSET_KEY}\"}\n",
                    "host.yaml:3:24: environment variable 'EVH_T_UNSET_KEY' is not set\n");
    assert_problems("server:\n  api_keys:\n    - {name: ci, key: a}\n    - {name: ci, key: b}\n",
                    "host.yaml:4:14: server.api_keys[1].name: duplicate API key name 'ci'\n");
}

static void test_redacted_print(void **state)
{
    (void)state;
    setenv("EVH_T_KEY", "file-secret-1", 1);
    setenv("EVH_T_TOKEN", "plugin-secret-2", 1);
    setenv("EVH_API_KEYS", "envkey:env-secret-3", 1);
    evh_config *c = parse_ok("server:\n  api_keys:\n"
                             "    - {name: ci, key: \"${EVH_T_KEY}\"}\n"
                             "    - {name: ops, key: literal-secret-4}\n"
                             "plugins:\n  config:\n"
                             "    webhook: {url: \"http://h/${EVH_T_TOKEN}\", tries: [1, "
                             "\"${EVH_T_TOKEN}\"], note: \"$${x}\"}\n");
    unsetenv("EVH_API_KEYS");
    char *text = printed(c);
    assert_null(strstr(text, "secret-1"));
    assert_null(strstr(text, "secret-2"));
    assert_null(strstr(text, "secret-3"));
    assert_null(strstr(text, "secret-4"));
    assert_non_null(strstr(text, "- {name: \"ci\", key: \"***\"}"));
    assert_non_null(strstr(text, "- {name: \"envkey\", key: \"***\"}"));
    assert_non_null(
        strstr(text, "\"webhook\": {\"url\":\"***\",\"tries\":[1,\"***\"],\"note\":\"$${x}\"}"));
    assert_non_null(strstr(text, "listen: \"127.0.0.1:8000\""));
    assert_non_null(strstr(text, "level: info"));
    /* the plugin itself still gets the real values */
    const cJSON *hook = cJSON_GetObjectItem(c->plugin_config, "webhook");
    assert_string_equal(cJSON_GetObjectItem(hook, "url")->valuestring, "http://h/plugin-secret-2");
    assert_string_equal(cJSON_GetObjectItem(hook, "note")->valuestring, "${x}");

    /* what is printed is a valid host.yaml with the same settings */
    const char *body = strchr(text, '\n') + 1;
    evh_config *again = parse_ok(body);
    assert_int_equal(again->n_api_keys, 3);
    assert_string_equal(again->api_keys[0].key, "***");
    assert_string_equal(again->storage_path, c->storage_path);
    hook = cJSON_GetObjectItem(again->plugin_config, "webhook");
    assert_string_equal(cJSON_GetObjectItem(hook, "note")->valuestring, "${x}");
    assert_string_equal(cJSON_GetObjectItem(hook, "url")->valuestring, "***");
    config_free(again);
    free(text);
    config_free(c);

    c = parse_ok("");
    text = printed(c);
    assert_non_null(strstr(text, "api_keys: []\n"));
    evh_config *defaults = parse_ok(strchr(text, '\n') + 1);
    assert_defaults(defaults);
    config_free(defaults);
    free(text);
    config_free(c);
}

static void test_plugin_config_passthrough(void **state)
{
    (void)state;
    evh_config *c = parse_ok("plugins:\n"
                             "  config:\n"
                             "    http-poll:\n"
                             "      url: https://example.com/feed\n"
                             "      headers: {Accept: application/json}\n"
                             "      every_s: 30\n"
                             "      codes: [200, 204]\n"
                             "      enabled: true\n"
                             "      extra: ~\n"
                             "    quiet:\n");
    char *json = cJSON_PrintUnformatted(c->plugin_config);
    /* the file's plugins.config replaces the default one as a whole */
    assert_string_equal(json, "{\"http-poll\":{\"url\":\"https://example.com/feed\","
                              "\"headers\":{\"Accept\":\"application/json\"},\"every_s\":30,"
                              "\"codes\":[200,204],\"enabled\":true,\"extra\":null},"
                              "\"quiet\":{}}");
    free(json);
    config_free(c);

    c = parse_ok("plugins:\n  config: {}\n");
    assert_int_equal(cJSON_GetArraySize(c->plugin_config), 0);
    config_free(c);

    assert_problems("plugins:\n  config:\n    timer: 5\n    log: [a]\n",
                    "host.yaml:3:12: plugins.config.timer: must be a mapping (the plugin's "
                    "config), got 5\n"
                    "host.yaml:4:10: plugins.config.log: must be a mapping (the plugin's "
                    "config), got a list\n");
    assert_problems("plugins:\n  config: [timer]\n",
                    "host.yaml:2:11: plugins.config: must be a mapping of plugin id to its "
                    "settings, got a list\n");
}

static void test_load_file(void **state)
{
    (void)state;
    char *dir = tu_tempdir("config");
    char *path = tu_join(dir, "host.yaml");
    assert_int_equal(tu_write_file(path, "pipeline:\n  workers: 2\n"), 0);
    evh_config *c = NULL;
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(config_load(path, &c, &d), EVH_OK);
    assert_int_equal(c->workers, 2);
    assert_int_equal(c->queue_size, 65536);
    assert_string_equal(c->source, path);
    config_free(c);
    diag_free(&d);

    assert_int_equal(tu_write_file(path, "pipeline:\n  workers: -1\n"), 0);
    diag_init(&d, NULL);
    assert_int_equal(config_load(path, &c, &d), EVH_E_CONFIG);
    assert_null(c);
    char *line = diag_format_item(&d, 0);
    char want[512];
    snprintf(want, sizeof want,
             "%s:2:12: pipeline.workers: must be an integer from 0 to 1024, got -1", path);
    assert_string_equal(line, want);
    free(line);
    diag_free(&d);

    char *missing = tu_join(dir, "nope.yaml");
    diag_init(&d, NULL);
    assert_int_equal(config_load(missing, &c, &d), EVH_E_IO);
    assert_null(c);
    line = diag_format_item(&d, 0);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
    assert_string_equal(line, want);
    free(line);
    diag_free(&d);

    tu_rmtree(dir);
    free(missing);
    free(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_without_file, clean_env),
        cmocka_unit_test_setup(test_default_text_is_the_defaults, clean_env),
        cmocka_unit_test_setup(test_every_setting, clean_env),
        cmocka_unit_test_setup(test_api_key_must_be_text, clean_env),
        cmocka_unit_test_setup(test_unknown_keys, clean_env),
        cmocka_unit_test_setup(test_type_and_range_errors, clean_env),
        cmocka_unit_test_setup(test_listen_forms, clean_env),
        cmocka_unit_test_setup(test_env_api_keys, clean_env),
        cmocka_unit_test_setup(test_redacted_print, clean_env),
        cmocka_unit_test_setup(test_plugin_config_passthrough, clean_env),
        cmocka_unit_test_setup(test_load_file, clean_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

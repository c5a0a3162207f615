/*
 * test_cli.c - the evhost binary as a user runs it: --version, COMMAND
 * --help, plugins validate on bad folders (each problem once), `evhost new
 * --dir` into a directory still to be made, an out-of-tree plugin compiled
 * with plain `cc` against the SDK header alone, and `evhost run` on its
 * embedded default.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include <evhost/evhost.h>

static void write_plugin(const char *root, const char *folder, const char *manifest)
{
    char *dir = tu_join(root, folder);
    assert_int_equal(mkdir(dir, 0755), 0);
    char *file = tu_join(dir, "plugin.json");
    assert_int_equal(tu_write_file(file, manifest), 0);
    free(file);
    free(dir);
}

static void test_version(void **state)
{
    (void)state;
    char *out = NULL;
    char *argv[] = {EVH_BINARY, "--version", NULL};
    assert_int_equal(tu_run(argv, &out, NULL, 10000), 0);
    assert_non_null(strstr(out, "evhost "));
    assert_non_null(strstr(out, "SDK ABI " EVH_ABI_STRING));
    free(out);
}

/* --help or -h after any command prints that command's usage on stdout,
 * exit 0, instead of an "unknown option" error; `evhost help COMMAND` too. */
static void test_command_help(void **state)
{
    (void)state;
    static const struct {
        const char *args[4];
        const char *shows;
    } cases[] = {
        {{"run", "--help"}, "run [--config host.yaml] [--plugin-dir DIR]..."},
        {{"run", "--plugin-dir", "x", "-h"}, "--print-config"},
        {{"plugins", "validate", "--help"}, "plugins validate DIR..."},
        {{"plugins", "--help"}, "plugins list [DIR...]"},
        {{"events", "list", "-h"}, "[--source S]"},
        {{"executions", "show", "--help"}, "executions show ID"},
        {{"new", "source", "--help"}, "new source|step NAME [--dir DIR]"},
        {{"health", "--help"}, "health [--url URL"},
        {{"help", "run"}, "[--print-config]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *argv[6] = {EVH_BINARY};
        for (size_t j = 0; j < 4 && cases[i].args[j]; j++)
            argv[j + 1] = (char *)cases[i].args[j];
        char *out = NULL, *err = NULL;
        int rc = tu_run(argv, &out, &err, 10000);
        if (rc != 0 || !strstr(out, cases[i].shows) || *err)
            fprintf(stderr, "evhost %s %s: exit %d\nstdout:\n%s\nstderr:\n%s\n", argv[1],
                    argv[2] ? argv[2] : "", rc, out, err);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, cases[i].shows));
        assert_string_equal(err, "");
        free(out);
        free(err);
    }
    /* one command's usage, not all of them */
    char *out = NULL;
    char *run[] = {EVH_BINARY, "run", "--help", NULL};
    assert_int_equal(tu_run(run, &out, NULL, 10000), 0);
    assert_null(strstr(out, "executions"));
    free(out);
    /* an operand after "--" is not a request for help */
    char *err = NULL;
    char *operand[] = {EVH_BINARY, "new", "source", "--", "-h", NULL};
    assert_int_equal(tu_run(operand, NULL, &err, 10000), 2);
    assert_non_null(strstr(err, "usage: evhost new"));
    free(err);
}

static void test_validate_reports_every_problem(void **state)
{
    (void)state;
    char *root = tu_tempdir("validate");
    write_plugin(root, "no-label",
                 "{\"type\":\"event-source\",\"id\":\"no-label\",\"name\":\"N\","
                 "\"description\":\"d\",\"version\":\"1.0.0\",\"abi\":\"1.0\","
                 "\"eventTypes\":[{\"type\":\"a\",\"description\":\"d\"}]}");
    write_plugin(root, "two-problems",
                 "{\"type\":\"event-source\",\"id\":\"My-Timer\",\"name\":\"N\","
                 "\"description\":\"d\",\"version\":\"1.0\",\"abi\":\"1.0\","
                 "\"eventTypes\":[{\"type\":\"a\",\"label\":\"A\",\"description\":\"d\"}]}");
    write_plugin(root, "broken", "{\"type\": \"event-source\",\n \"id\": \"x\"\n \"name\": 1}");
    write_plugin(root, "empty", "");

    char *out = NULL;
    char *argv[] = {EVH_BINARY, "plugins", "validate", root, NULL};
    assert_int_equal(tu_run(argv, &out, NULL, 20000), 1);
    assert_non_null(strstr(out, "no-label/plugin.json: eventTypes[0].label: "));
    assert_non_null(strstr(out, "two-problems/plugin.json: id: "));
    assert_non_null(strstr(out, "two-problems/plugin.json: version: "));
    assert_non_null(strstr(out, "broken/plugin.json: "));
    assert_non_null(strstr(out, "line 3"));
    assert_non_null(strstr(out, "empty/plugin.json: "));
    free(out);
    tu_rmtree(root);
    free(root);
}

static size_t count_of(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* One line per problem, naming the file that has it once: the library for
 * a library's problem, plugin.json for the manifest's; the loader's own log
 * line is not repeated on stderr; dlopen failing on a file the ELF check
 * already found broken is not a second problem. */
static void test_validate_names_each_file_once(void **state)
{
    (void)state;
    char *root = tu_tempdir("validate-once");
    assert_int_equal(tu_copy_fixture("ok-minimal", root, "gw"), 0);
    char *gw_so = tu_join(root, "gw/ok-minimal.so");
    assert_int_equal(chmod(gw_so, 0775), 0);
    assert_int_equal(tu_copy_fixture("ok-minimal", root, "junk"), 0);
    char *junk_so = tu_join(root, "junk/ok-minimal.so");
    assert_int_equal(unlink(junk_so), 0);
    assert_int_equal(tu_write_file(junk_so, "not a library\n"), 0);
    assert_int_equal(tu_copy_fixture("wrong-abi-major", root, NULL), 0);
    char *abi_json = tu_join(root, "wrong-abi-major/plugin.json");

    char *out = NULL, *err = NULL;
    char *argv[] = {EVH_BINARY, "plugins", "validate", root, NULL};
    assert_int_equal(tu_run(argv, &out, &err, 20000), 1);
    char *gw_line = NULL, *junk_line = NULL, *abi_line = NULL;
    assert_true(asprintf(&gw_line,
                         "%s: writable by group or others (mode 0775), so anyone could change "
                         "the code evhost runs: chmod go-w it\n",
                         gw_so) > 0);
    assert_true(asprintf(&junk_line, "%s: not an ELF file", junk_so) > 0);
    assert_true(asprintf(&abi_line, "%s: requires SDK ABI 2.0;", abi_json) > 0);
    if (!strstr(out, gw_line) || count_of(out, "\n") != 3 || strstr(err, "ERROR"))
        fprintf(stderr, "stdout:\n%s\nstderr:\n%s\n", out, err);
    assert_non_null(strstr(out, gw_line));
    assert_non_null(strstr(out, junk_line));
    assert_non_null(strstr(out, abi_line));
    assert_int_equal(count_of(out, gw_so), 1);
    assert_int_equal(count_of(out, junk_so), 1);
    assert_int_equal(count_of(out, abi_json), 1);
    assert_int_equal(count_of(out, "/plugin.json: "), 1); /* the ABI's problem only */
    assert_int_equal(count_of(out, "\n"), 3);             /* three problems, three lines */
    assert_null(strstr(err, "ERROR"));
    assert_null(strstr(err, "[loader]"));
    assert_non_null(strstr(err, "3 plugin folder(s) checked, 3 problem(s)"));
    free(gw_line);
    free(junk_line);
    free(abi_line);
    free(out);
    free(err);
    free(abi_json);
    free(junk_so);
    free(gw_so);
    tu_rmtree(root);
    free(root);
}

/* `evhost new ... --dir DIR` creates DIR and its missing parents (0755 less
 * the umask), then DIR/NAME; a DIR under a file fails naming that path. */
static void test_new_creates_dir(void **state)
{
    (void)state;
    char *root = tu_tempdir("new-dir");
    char *dir = tu_join(root, "rp/plugins");
    char *argv[] = {EVH_BINARY, "new", "source", "rp-probe", "--dir", dir, NULL};
    char *out = NULL, *err = NULL;
    int rc = tu_run(argv, &out, &err, 20000);
    if (rc != 0)
        fprintf(stderr, "stdout:\n%s\nstderr:\n%s\n", out, err);
    assert_int_equal(rc, 0);
    free(out);
    free(err);
    mode_t mask = umask(0);
    umask(mask);
    const char *made[] = {"rp", "rp/plugins", "rp/plugins/rp-probe"};
    for (size_t i = 0; i < sizeof made / sizeof *made; i++) {
        char *path = tu_join(root, made[i]);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0755 & ~mask);
        free(path);
    }
    char *json = tu_join(dir, "rp-probe/plugin.json");
    assert_int_equal(access(json, R_OK), 0);

    char *file = tu_join(root, "a-file");
    assert_int_equal(tu_write_file(file, "not a directory\n"), 0);
    char *under = tu_join(file, "plugins");
    char *bad[] = {EVH_BINARY, "new", "source", "rp-probe", "--dir", under, NULL};
    err = NULL;
    assert_int_equal(tu_run(bad, NULL, &err, 20000), 1);
    assert_non_null(strstr(err, under));
    assert_non_null(strstr(err, "Not a directory"));
    free(err);
    free(under);
    free(file);
    free(json);
    free(dir);
    tu_rmtree(root);
    free(root);
}

/* A third party's plugin: its own folder, compiled with plain cc and only
 * the SDK include path.  It emits one valid event, one of an undeclared
 * type and one breaking its schema, and logs what emit answered. */
static const char *oot_source =
    "#include <evhost/evhost.h>\n"
    "static const evh_host_api *A; static evh_host *H;\n"
    "static int32_t init(const evh_host_api *api, evh_host *host, void **ctx, char **e)\n"
    "{ A = api; H = host; *ctx = 0; (void)e; return EVH_OK; }\n"
    "static int32_t run(void *ctx) {\n"
    "  (void)ctx;\n"
    "  int32_t a = A->emit(H, \"order_placed\", \"{\\\"order_id\\\":\\\"o-1\\\",\\\"amount\\\":12.5}\",\n"
    "                      EVH_NUL_TERMINATED, \"user-7\");\n"
    "  int32_t b = A->emit(H, \"random_event\", \"{}\", EVH_NUL_TERMINATED, 0);\n"
    "  int32_t c = A->emit(H, \"order_placed\", \"{\\\"amount\\\":\\\"lots\\\"}\", EVH_NUL_TERMINATED, 0);\n"
    "  A->log(H, EVH_LOG_INFO, \"results valid=%s undeclared=%s schema=%s\",\n"
    "         evh_status_name(a), evh_status_name(b), evh_status_name(c));\n"
    "  while (A->wait(H, 60000) == EVH_OK) {}\n"
    "  return EVH_OK; }\n"
    "static void fini(void *ctx) { (void)ctx; }\n"
    "static const evh_source src = { sizeof(evh_source), 0, init, run, 0, fini };\n"
    "EVH_DECLARE_SOURCE(\"acme-orders\", &src)\n";

static const char *oot_manifest =
    "{\"type\":\"event-source\",\"id\":\"acme-orders\",\"name\":\"Acme Orders\","
    "\"description\":\"Orders from the shop\",\"version\":\"0.1.0\",\"abi\":\"1.0\","
    "\"library\":\"acme-orders.so\",\"eventTypes\":[{\"type\":\"order_placed\","
    "\"label\":\"Order Placed\",\"description\":\"A customer placed an order\","
    "\"schema\":{\"type\":\"object\",\"properties\":{\"order_id\":{\"type\":\"string\"},"
    "\"amount\":{\"type\":\"number\",\"minimum\":0}},\"required\":[\"order_id\",\"amount\"]}}]}";

static void test_out_of_tree_plugin_runs(void **state)
{
    (void)state;
    char *root = tu_tempdir("oot");
    char *plugins = tu_join(root, "plugins");
    assert_int_equal(mkdir(plugins, 0755), 0);
    write_plugin(plugins, "acme-orders", oot_manifest);
    char *dir = tu_join(plugins, "acme-orders");
    char *src = tu_join(dir, "acme_orders.c");
    char *so = tu_join(dir, "acme-orders.so");
    assert_int_equal(tu_write_file(src, oot_source), 0);
    char *cc[] = {"cc", "-std=c99", "-Wall", "-Werror", "-shared", "-fPIC",
                  "-fvisibility=hidden", "-I", EVH_SOURCE_DIR "/sdk/include", "-o", so, src, NULL};
    char *err = NULL;
    int rc = tu_run(cc, NULL, &err, 60000);
    if (rc != 0)
        fprintf(stderr, "cc failed: %s\n", err);
    assert_int_equal(rc, 0);
    free(err);

    char *log = tu_join(root, "daemon.log");
    char *data = tu_join(root, "data");
    char *argv[] = {EVH_BINARY, "run",  "--plugin-dir", plugins, "--data-dir",
                    data,       "--listen", "127.0.0.1:0", NULL};
    pid_t pid = tu_spawn(argv, log);
    assert_true(pid > 0);
    int seen = tu_wait_for_text(log, "results valid=EVH_OK undeclared=EVH_E_UNDECLARED_TYPE "
                                     "schema=EVH_E_SCHEMA", 20000);
    /* the valid event is stored, as the host stamped it */
    char *db = tu_join(data, "evhost.db");
    char *events = NULL;
    int accepted = 0;
    for (long long end = tu_now_ms() + 10000; !accepted && tu_now_ms() < end;) {
        char *list[] = {EVH_BINARY, "events", "list", "--db", db, "--json", NULL};
        free(events);
        events = NULL;
        accepted = tu_run(list, &events, NULL, 10000) == 0 && events &&
                   strstr(events, "\"order_id\":\t\"o-1\"");
        if (!accepted)
            usleep(100000);
    }
    kill(pid, SIGTERM);
    int status = tu_wait(pid, 20000);
    char *text = tu_read_file(log);
    if (!seen || !accepted || status != 0)
        fprintf(stderr, "daemon log:\n%s\nevents:\n%s\n", text ? text : "(none)",
                events ? events : "(none)");
    assert_true(seen);
    assert_true(accepted);
    assert_int_equal(status, 0);
    /* user_id from emit is in the envelope; the refused ones are not stored */
    assert_non_null(strstr(events, "\"user_id\":\t\"user-7\""));
    assert_null(strstr(events, "random_event"));
    assert_non_null(strstr(text, "data.amount"));
    free(events);
    free(db);
    free(text);
    free(log);
    free(data);
    free(so);
    free(src);
    free(dir);
    free(plugins);
    tu_rmtree(root);
    free(root);
}

static void test_run_embedded_default(void **state)
{
    (void)state;
    char *root = tu_tempdir("default");
    char *log = tu_join(root, "daemon.log");
    char *data = tu_join(root, "data");
    char *argv[] = {EVH_BINARY, "run", "--data-dir", data, "--listen", "127.0.0.1:0", NULL};
    pid_t pid = tu_spawn(argv, log);
    assert_true(pid > 0);
    /* the timer's default interval is 5 s; the example trigger runs the
     * two-step example workflow for each tick */
    int ran = tu_wait_for_text(log, "report for tick 1 done", 20000);
    kill(pid, SIGINT);
    int status = tu_wait(pid, 20000);
    if (!ran || status != 0) {
        char *text = tu_read_file(log);
        fprintf(stderr, "daemon log:\n%s\n", text ? text : "(none)");
        free(text);
    }
    assert_true(ran);
    assert_int_equal(status, 0);
    /* the execution and its two step runs are in the database */
    char *db = tu_join(data, "evhost.db");
    char *list[] = {EVH_BINARY, "executions", "list", "--db", db, "--workflow",
                    "generate-report", "--status", "succeeded", NULL};
    char *out = NULL;
    assert_int_equal(tu_run(list, &out, NULL, 10000), 0);
    assert_non_null(strstr(out, "generate-report"));
    assert_non_null(strstr(out, "daily-report"));
    char id[37] = "";
    const char *line = strchr(out, '\n');
    assert_non_null(line);
    memcpy(id, line + 1, 36);
    free(out);
    char *show[] = {EVH_BINARY, "executions", "show", id, "--db", db, NULL};
    out = NULL;
    assert_int_equal(tu_run(show, &out, NULL, 10000), 0);
    assert_non_null(strstr(out, "announce"));
    assert_non_null(strstr(out, "summary"));
    assert_non_null(strstr(out, "succeeded"));
    free(out);
    /* a missing database is an error that says so, not a new empty file */
    char *missing = tu_join(root, "nope.db");
    char *bad[] = {EVH_BINARY, "events", "list", "--db", missing, NULL};
    char *err = NULL;
    assert_int_equal(tu_run(bad, NULL, &err, 10000), 1);
    assert_non_null(strstr(err, "nope.db"));
    assert_int_equal(access(missing, F_OK), -1);
    free(err);
    free(missing);
    free(db);
    free(log);
    free(data);
    tu_rmtree(root);
    free(root);
}

/* The plugin-author guide's example, exactly as the docs ship it: copied
 * out of the tree, built with plain cc and the SDK include path, validated,
 * and run by the daemon; its events are stored under its own id.  As in the
 * guide (`evhost run --plugin-dir "$PWD"` with the default ./evhost-data),
 * the data directory, with the database in it, sits in the plugin
 * directory: it is never taken for a plugin folder, at start or by the
 * rescans its database's changes could cause. */
static void test_docs_example_plugin(void **state)
{
    (void)state;
    char *root = tu_tempdir("docs-example");
    char *plugins = tu_join(root, "plugins");
    char *dir = tu_join(plugins, "my-timer");
    assert_int_equal(mkdir(plugins, 0755), 0);
    assert_int_equal(tu_copytree(EVH_SOURCE_DIR "/docs/examples/my-timer", dir), 0);
    char *src = tu_join(dir, "my_timer.c");
    char *so = tu_join(dir, "my-timer.so");
    char *cc[] = {"cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                  "-fvisibility=hidden", "-I", EVH_SOURCE_DIR "/sdk/include", "-o", so, src,
                  NULL};
    char *err = NULL;
    int rc = tu_run(cc, NULL, &err, 60000);
    if (rc != 0)
        fprintf(stderr, "cc failed: %s\n", err);
    assert_int_equal(rc, 0);
    free(err);
    char *validate[] = {EVH_BINARY, "plugins", "validate", dir, NULL};
    assert_int_equal(tu_run(validate, NULL, NULL, 30000), 0);

    char *cfg = tu_join(root, "host.yaml");
    char *text = NULL;
    assert_true(asprintf(&text,
                         "server: {listen: \"127.0.0.1:0\"}\n"
                         "plugins: {dirs: [\"%s\"], config: {my-timer: {interval_ms: 50}}}\n"
                         "storage: {path: \"%s/evhost-data/evhost.db\"}\n"
                         "data_dir: \"%s/evhost-data\"\n",
                         plugins, plugins, plugins) > 0);
    assert_int_equal(tu_write_file(cfg, text), 0);
    free(text);
    char *log = tu_join(root, "daemon.log");
    char *argv[] = {EVH_BINARY, "run", "--config", cfg, NULL};
    pid_t pid = tu_spawn(argv, log);
    assert_true(pid > 0);
    /* the daemon creates the database; read it only once that is done */
    assert_true(tu_wait_for_text(log, "running;", 15000));
    char *db = tu_join(plugins, "evhost-data/evhost.db");
    char *events = NULL;
    int stored = 0;
    for (long long end = tu_now_ms() + 15000; !stored && tu_now_ms() < end;) {
        char *list[] = {EVH_BINARY, "events", "list", "--db", db, "--source", "my-timer", NULL};
        free(events);
        events = NULL;
        stored = tu_run(list, &events, NULL, 10000) == 0 && events &&
                 strstr(events, "my-timer/timer_fired");
        if (!stored)
            usleep(100000);
    }
    kill(pid, SIGTERM);
    int status = tu_wait(pid, 20000);
    char *l = tu_read_file(log);
    if (!stored || status != 0)
        fprintf(stderr, "daemon log:\n%s\nevents:\n%s\n", l ? l : "", events ? events : "");
    assert_true(stored);
    assert_int_equal(status, 0);
    assert_non_null(l);
    assert_non_null(strstr(l, " plugin(s) ready, 0 failed"));
    if (strstr(l, "evhost-data/plugin.json") || strstr(l, "evhost-data is"))
        fprintf(stderr, "daemon log:\n%s\n", l);
    assert_null(strstr(l, "evhost-data/plugin.json"));
    assert_null(strstr(l, "evhost-data is"));
    free(l);
    free(events);
    free(db);
    free(log);
    free(cfg);
    free(so);
    free(src);
    free(dir);
    free(plugins);
    tu_rmtree(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_command_help),
        cmocka_unit_test(test_validate_reports_every_problem),
        cmocka_unit_test(test_validate_names_each_file_once),
        cmocka_unit_test(test_new_creates_dir),
        cmocka_unit_test(test_out_of_tree_plugin_runs),
        cmocka_unit_test(test_docs_example_plugin),
        cmocka_unit_test(test_run_embedded_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

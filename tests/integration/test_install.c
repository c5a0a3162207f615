/*
 * test_install.c - evhost as authors and operators get it: `cmake --install`
 * of this build tree into a temporary prefix; out-of-tree plugins built
 * against the installed SDK with pkg-config and plain cc, and with the CMake
 * package, loaded and run by the INSTALLED daemon; the `evhost new`
 * scaffold built, validated and run unchanged (its check.sh too);
 * `plugins validate` reading a library's exports and dependencies; `evhost
 * health`; the daemon refusing to listen beyond loopback without API keys.
 */
/* cmocka.h needs these first, in this order */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <evhost/evhost.h>

#include "testutil.h"

static char *g_root;   /* everything this test writes */
static char *g_prefix; /* the install prefix */

/* Daemons started and not yet stopped: a failed assertion leaves its test
 * early, so the group teardown ends whatever is still running. */
#define MAX_DAEMONS 16
static pid_t g_daemons[MAX_DAEMONS];

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

/* Run argv; fail the test, showing its output, unless it exits `want`.
 * Returns its stdout (malloc'd). */
static char *run_expect(char *const argv[], int want, int timeout_ms)
{
    char *out = NULL, *err = NULL;
    int rc = tu_run(argv, &out, &err, timeout_ms);
    if (rc != want) {
        fprintf(stderr, "command exited %d, expected %d:", rc, want);
        for (int i = 0; argv[i]; i++)
            fprintf(stderr, " %s", argv[i]);
        fprintf(stderr, "\nstdout:\n%s\nstderr:\n%s\n", out ? out : "", err ? err : "");
    }
    assert_int_equal(rc, want);
    free(err);
    return out;
}

static void run_ok(char *const argv[], int timeout_ms)
{
    free(run_expect(argv, 0, timeout_ms));
}

/* Run argv, expecting exit code `want`; returns stdout and stderr joined. */
static char *run_both(char *const argv[], int want, int timeout_ms)
{
    char *out = NULL, *err = NULL;
    int rc = tu_run(argv, &out, &err, timeout_ms);
    char *both = fmt("%s%s", out ? out : "", err ? err : "");
    if (rc != want)
        fprintf(stderr, "exit %d, expected %d; output:\n%s\n", rc, want, both);
    assert_int_equal(rc, want);
    free(out);
    free(err);
    return both;
}

static void write_at(const char *dir, const char *name, const char *text)
{
    char *path = tu_join(dir, name);
    assert_int_equal(tu_write_file(path, text), 0);
    free(path);
}

static char *make_dir(const char *parent, const char *name)
{
    char *dir = tu_join(parent, name);
    assert_int_equal(mkdir(dir, 0755), 0);
    return dir;
}

static void assert_file(const char *dir, const char *name)
{
    char *path = tu_join(dir, name);
    if (access(path, F_OK) != 0)
        fprintf(stderr, "missing: %s\n", path);
    assert_int_equal(access(path, F_OK), 0);
    free(path);
}

static char *installed(const char *rel)
{
    return tu_join(g_prefix, rel);
}

/* ---- setup: install this build tree once --------------------------------- */

static int install_setup(void **state)
{
    (void)state;
    g_root = tu_tempdir("install");
    g_prefix = tu_join(g_root, "prefix");
    char *argv[] = {EVH_CMAKE_COMMAND, "--install", EVH_BUILD_DIR, "--prefix", g_prefix, NULL};
    char *out = NULL, *err = NULL;
    int rc = tu_run(argv, &out, &err, 120000);
    if (rc != 0)
        fprintf(stderr, "cmake --install failed (%d):\n%s\n%s\n", rc, out, err);
    free(out);
    free(err);
    /* What an author's shell has after installing evhost to a prefix. */
    char *pc = installed("lib/pkgconfig");
    char *bin = installed("bin");
    const char *path = getenv("PATH");
    char *new_path = fmt("%s:%s", bin, path ? path : "/usr/bin:/bin");
    setenv("PKG_CONFIG_PATH", pc, 1);
    setenv("PATH", new_path, 1);
    unsetenv("EVH_API_KEYS");
    free(new_path);
    free(bin);
    free(pc);
    return rc == 0 ? 0 : -1;
}

static int install_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < MAX_DAEMONS; i++) {
        if (g_daemons[i] > 0) {
            kill(g_daemons[i], SIGKILL);
            tu_wait(g_daemons[i], 10000);
        }
    }
    tu_rmtree(g_root);
    free(g_root);
    free(g_prefix);
    return 0;
}

/* ---- the daemon ------------------------------------------------------------ */

typedef struct test_daemon {
    pid_t pid;
    char *dir, *log, *db;
} test_daemon;

/* Start `binary run` with its own settings under dir: workflows from
 * dir/wf, triggers from dir/triggers.yaml, the database in dir; more_yaml
 * is appended to host.yaml. */
static void daemon_show_log(const test_daemon *d)
{
    char *text = tu_read_file(d->log);
    fprintf(stderr, "daemon log:\n%s\n", text ? text : "(none)");
    free(text);
}

/* The same; listen: the --listen option, or NULL for host.yaml's. */
static void daemon_start_at(test_daemon *d, const char *binary, const char *dir,
                            const char *plugin_dir, const char *more_yaml, const char *listen)
{
    d->dir = strdup(dir);
    d->log = tu_join(dir, "daemon.log");
    d->db = tu_join(dir, "evhost.db");
    char *yaml = fmt("workflows: {dirs: [\"%s/wf\"]}\ntriggers: {files: [\"%s/triggers.yaml\"]}\n"
                     "storage: {path: \"%s\"}\ndata_dir: \"%s/data\"\n%s",
                     dir, dir, d->db, dir, more_yaml);
    write_at(dir, "host.yaml", yaml);
    free(yaml);
    char *config = tu_join(dir, "host.yaml");
    char *argv[] = {(char *)binary,     "run",      "--config",     config, "--plugin-dir",
                    (char *)plugin_dir, "--listen", (char *)listen, NULL};
    if (!listen)
        argv[6] = NULL;
    d->pid = tu_spawn(argv, d->log);
    assert_true(d->pid > 0);
    for (size_t i = 0; i < MAX_DAEMONS; i++) {
        if (g_daemons[i] <= 0) {
            g_daemons[i] = d->pid;
            break;
        }
    }
    free(config);
    /* The API is served once the database exists and is migrated; reading
     * it before that races the daemon creating it. */
    if (!tu_wait_for_text(d->log, "API on http", 20000))
        daemon_show_log(d);
}

static void daemon_start(test_daemon *d, const char *binary, const char *dir,
                         const char *plugin_dir, const char *more_yaml)
{
    daemon_start_at(d, binary, dir, plugin_dir, more_yaml, "127.0.0.1:0");
}

/* SIGTERM; the daemon must drain and exit 0. */
static void daemon_stop(test_daemon *d)
{
    kill(d->pid, SIGTERM);
    int status = tu_wait(d->pid, 30000);
    for (size_t i = 0; i < MAX_DAEMONS && status != -2; i++) {
        if (g_daemons[i] == d->pid)
            g_daemons[i] = 0;
    }
    if (status != 0)
        daemon_show_log(d);
    assert_int_equal(status, 0);
    free(d->dir);
    free(d->log);
    free(d->db);
}

/* Poll argv until its stdout contains needle; returns that stdout. */
static char *poll_output(const test_daemon *d, char *const argv[], const char *needle)
{
    char *out = NULL, *err = NULL;
    for (long long end = tu_now_ms() + 20000; tu_now_ms() < end; usleep(100000)) {
        free(out);
        free(err);
        out = err = NULL;
        if (tu_run(argv, &out, &err, 10000) == 0 && out && strstr(out, needle)) {
            free(err);
            return out;
        }
    }
    daemon_show_log(d);
    fprintf(stderr, "last output:\n%s\n%s\n", out ? out : "", err ? err : "");
    free(out);
    free(err);
    fail_msg("'%s' did not appear in the output of %s %s", needle, argv[1], argv[2]);
    return NULL;
}

/* The id of the newest succeeded execution of workflow wf, once there is one. */
static char *wait_for_execution(const test_daemon *d, const char *binary, const char *wf)
{
    char *argv[] = {(char *)binary, "executions", "list",     "--db",      d->db,
                    "--workflow",   (char *)wf,   "--status", "succeeded", NULL};
    char *out = poll_output(d, argv, wf);
    const char *line = strchr(out, '\n');
    assert_non_null(line);
    char *id = strndup(line + 1, 36);
    free(out);
    return id;
}

static char *execution_json(const test_daemon *d, const char *binary, const char *id)
{
    char *argv[] = {(char *)binary, "executions", "show",   (char *)id,
                    "--db",         d->db,        "--json", NULL};
    return run_expect(argv, 0, 10000);
}

/* ---- out-of-tree plugins ----------------------------------------------------- */

static const char *acme_orders_c =
    "/* a third party's event source: one order when it starts */\n"
    "#include <evhost/evhost.h>\n"
    "typedef struct orders { const evh_host_api *api; evh_host *host; } orders;\n"
    "static int32_t orders_init(const evh_host_api *api, evh_host *host, void **ctx,\n"
    "                           char **errmsg)\n"
    "{\n"
    "    (void)errmsg;\n"
    "    orders *o = api->alloc(sizeof *o);\n"
    "    if (!o) return EVH_E_NOMEM;\n"
    "    o->api = api; o->host = host; *ctx = o;\n"
    "    return EVH_OK;\n"
    "}\n"
    "static int32_t orders_run(void *ctx)\n"
    "{\n"
    "    orders *o = ctx;\n"
    "    int32_t rc = o->api->emit(o->host, \"order_placed\",\n"
    "        \"{\\\"order_id\\\":\\\"o-1\\\",\\\"amount\\\":12.5}\", EVH_NUL_TERMINATED, NULL);\n"
    "    o->api->log(o->host, EVH_LOG_INFO, \"first order: %s\", evh_status_name(rc));\n"
    "    while (o->api->wait(o->host, 60000) == EVH_OK) {}\n"
    "    return EVH_OK;\n"
    "}\n"
    "static void orders_fini(void *ctx) { orders *o = ctx; o->api->free(o); }\n"
    "static const evh_source orders_source = {.struct_size = sizeof(evh_source),\n"
    "    .init = orders_init, .run = orders_run, .fini = orders_fini};\n"
    "EVH_DECLARE_SOURCE(\"acme-orders\", &orders_source)\n";

static const char *acme_orders_json =
    "{\"type\": \"event-source\", \"id\": \"acme-orders\", \"name\": \"Acme Orders\",\n"
    " \"description\": \"Orders from the shop\", \"version\": \"0.1.0\", \"abi\": \"1.0\",\n"
    " \"eventTypes\": [{\"type\": \"order_placed\", \"label\": \"Order Placed\",\n"
    "   \"description\": \"A customer placed an order\",\n"
    "   \"schema\": {\"type\": \"object\", \"required\": [\"order_id\", \"amount\"],\n"
    "     \"properties\": {\"order_id\": {\"type\": \"string\"},\n"
    "                    \"amount\": {\"type\": \"number\", \"minimum\": 0}}}}]}\n";

static const char *acme_upper_c =
    "/* a third party's workflow step: its `text` setting in capitals */\n"
    "#include <evhost/evhost.h>\n"
    "#include <ctype.h>\n"
    "typedef struct upper { const evh_host_api *api; } upper;\n"
    "static int32_t upper_init(const evh_host_api *api, evh_host *host, void **ctx,\n"
    "                          char **errmsg)\n"
    "{\n"
    "    (void)host; (void)errmsg;\n"
    "    upper *u = api->alloc(sizeof *u);\n"
    "    if (!u) return EVH_E_NOMEM;\n"
    "    u->api = api; *ctx = u;\n"
    "    return EVH_OK;\n"
    "}\n"
    "static int32_t upper_run(void *ctx, const evh_step_input *in, evh_step_output *out)\n"
    "{\n"
    "    const evh_host_api *api = ((upper *)ctx)->api;\n"
    "    char *text = api->json_get_string(in->config_json, in->config_len, \"text\");\n"
    "    if (!text) { out->error_message = api->strdup(\"text: missing\"); return EVH_E_CONFIG; }\n"
    "    for (char *p = text; *p; p++) *p = (char)toupper((unsigned char)*p);\n"
    "    char *q = api->json_quote(text);\n"
    "    out->output_json = q ? api->mprintf(\"{\\\"upper\\\":%s}\", q) : NULL;\n"
    "    api->free(q); api->free(text);\n"
    "    return out->output_json ? EVH_OK : EVH_E_NOMEM;\n"
    "}\n"
    "static void upper_fini(void *ctx) { upper *u = ctx; u->api->free(u); }\n"
    "static const evh_step upper_step = {.struct_size = sizeof(evh_step),\n"
    "    .init = upper_init, .run = upper_run, .fini = upper_fini};\n"
    "EVH_DECLARE_STEP(\"acme-upper\", &upper_step)\n";

static const char *acme_upper_json =
    "{\"type\": \"workflow-step\", \"id\": \"acme-upper\", \"name\": \"Acme Upper\",\n"
    " \"description\": \"Capitals\", \"version\": \"0.1.0\", \"abi\": \"1.0\",\n"
    " \"configSchema\": {\"type\": \"object\", \"required\": [\"text\"],\n"
    "   \"properties\": {\"text\": {\"type\": \"string\"}}}}\n";

static const char *acme_workflow = "id: acme-flow\n"
                                   "name: Acme flow\n"
                                   "steps:\n"
                                   "  - id: shout\n"
                                   "    uses: acme-upper\n"
                                   "    with: {text: \"{{ event.data.order_id }}\"}\n";

static const char *acme_triggers =
    "triggers:\n"
    "  - {id: acme-orders-placed, name: Acme orders placed, source: acme-orders,\n"
    "     event_type: order_placed, workflow: acme-flow}\n";

/* dir/<id>/ with plugin.json and the source file. */
static char *plugin_folder(const char *dir, const char *id, const char *json, const char *file,
                           const char *code)
{
    char *folder = make_dir(dir, id);
    write_at(folder, "plugin.json", json);
    write_at(folder, file, code);
    return folder;
}

/* `pkg-config --cflags evhost-sdk` (with PKG_CONFIG_PATH as it is): one
 * -I<dir> that must be prefix's include directory, the installed header
 * rather than the source tree's.  Returns the flag. */
static char *pkg_config_include(const char *prefix)
{
    char *pc[] = {"pkg-config", "--cflags", "evhost-sdk", NULL};
    char *cflags = run_expect(pc, 0, 10000);
    cflags[strcspn(cflags, " \n")] = '\0'; /* one -I<dir> */
    assert_int_equal(strncmp(cflags, "-I", 2), 0);
    char *got = realpath(cflags + 2, NULL);
    char *want_dir = tu_join(prefix, "include");
    char *want = realpath(want_dir, NULL);
    assert_non_null(got);
    assert_non_null(want);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "pkg-config gave %s, expected %s\n", cflags, want);
    assert_string_equal(got, want);
    free(want);
    free(want_dir);
    free(got);
    return cflags;
}

/* The plugin's .so, built with plain cc and `pkg-config --cflags evhost-sdk`. */
static void cc_with_pkg_config(const char *folder, const char *id, const char *file)
{
    char *cflags = pkg_config_include(g_prefix);
    char *so = fmt("%s/%s.so", folder, id);
    char *src = tu_join(folder, file);
    char *cc[] = {"cc",
                  "-std=c99",
                  "-Wall",
                  "-Wextra",
                  "-Werror",
                  "-shared",
                  "-fPIC",
                  "-fvisibility=hidden",
                  "-Wl,--no-undefined",
                  cflags,
                  "-o",
                  so,
                  src,
                  NULL};
    run_ok(cc, 60000);
    free(src);
    free(so);
    free(cflags);
}

/* Run the installed daemon over plugin_dir: the source's event is stored
 * and the step runs in the workflow it triggers. */
static void run_installed(const char *plugin_dir, const char *tag)
{
    char *evhost = installed("bin/evhost");
    char *dir = make_dir(g_root, tag);
    char *wf = make_dir(dir, "wf");
    write_at(wf, "acme.yaml", acme_workflow);
    write_at(dir, "triggers.yaml", acme_triggers);
    test_daemon d;
    daemon_start(&d, evhost, dir, plugin_dir, "");
    assert_true(tu_wait_for_text(d.log, "plugin 'acme-orders' 0.1.0 (event-source) ready", 20000));
    assert_true(tu_wait_for_text(d.log, "plugin 'acme-upper' 0.1.0 (workflow-step) ready", 20000));
    char *events[] = {evhost,     "events",      "list",   "--db", d.db,
                      "--source", "acme-orders", "--json", NULL};
    free(poll_output(&d, events, "o-1"));
    char *id = wait_for_execution(&d, evhost, "acme-flow");
    char *json = execution_json(&d, evhost, id);
    assert_non_null(strstr(json, "O-1"));
    /* the built-in plugins came from the installed tree, found from the binary */
    char *real = realpath(g_prefix, NULL);
    char *timer = fmt("ready from %s/lib/evhost/plugins/event-sources/timer", real);
    char *text = tu_read_file(d.log);
    if (!strstr(text, timer))
        daemon_show_log(&d);
    assert_non_null(strstr(text, timer));
    daemon_stop(&d);
    free(text);
    free(timer);
    free(real);
    free(json);
    free(id);
    free(wf);
    free(dir);
    free(evhost);
}

static void test_installed_layout(void **state)
{
    (void)state;
    char *evhost = installed("bin/evhost");
    assert_int_equal(access(evhost, X_OK), 0);
    assert_file(g_prefix, "include/evhost/evhost.h");
    assert_file(g_prefix, "lib/pkgconfig/evhost-sdk.pc");
    assert_file(g_prefix, "lib/cmake/evhost-sdk/evhost-sdkConfig.cmake");
    assert_file(g_prefix, "lib/cmake/evhost-sdk/evhost-sdkConfigVersion.cmake");
    assert_file(g_prefix, "lib/cmake/evhost-sdk/EvhPluginModule.cmake");
    assert_file(g_prefix, "share/evhost/examples/workflows/generate-report.yaml");
    assert_file(g_prefix, "share/evhost/examples/triggers/examples.yaml");

    /* every built-in plugin, whoever added it, is an installed plugin folder
     * that the installed binary finds and validates */
    char *list[] = {evhost, "plugins", "list", NULL};
    char *listing = run_expect(list, 0, 60000);
    char *builtins = strdup(EVH_BUILTIN_PLUGINS); /* "event-sources/timer,steps/log,..." */
    int n = 0;
    for (char *save = NULL, *p = strtok_r(builtins, ",", &save); p;
         p = strtok_r(NULL, ",", &save), n++) {
        char *folder = fmt("%s/lib/evhost/plugins/%s", g_prefix, p);
        assert_file(folder, "plugin.json");
        const char *id = strchr(p, '/') + 1;
        char *row = fmt("\n%s ", id);
        if (!strstr(listing, row))
            fprintf(stderr, "'%s' missing from `evhost plugins list`:\n%s\n", id, listing);
        assert_non_null(strstr(listing, row));
        free(row);
        free(folder);
    }
    assert_true(n >= 2);
    if (strstr(listing, " failed "))
        fprintf(stderr, "%s\n", listing);
    assert_null(strstr(listing, " failed "));
    char *validate_dir = installed("lib/evhost/plugins/steps");
    char *validate[] = {evhost, "plugins", "validate", validate_dir, NULL};
    char *out = run_expect(validate, 0, 60000);
    assert_null(strstr(out, "warning"));

    /* the SDK's version is its ABI */
    char *mod[] = {"pkg-config", "--modversion", "evhost-sdk", NULL};
    char *version = run_expect(mod, 0, 10000);
    assert_string_equal(version, EVH_ABI_STRING "\n");
    char *atleast[] = {"pkg-config", "--atleast-version=1.0", "evhost-sdk", NULL};
    run_ok(atleast, 10000);

    /* the tree is relocatable: a copy finds its own plugins and header */
    char *moved = tu_join(g_root, "moved");
    char *cp[] = {"cp", "-a", g_prefix, moved, NULL};
    run_ok(cp, 60000);
    char *moved_evhost = tu_join(moved, "bin/evhost");
    char *moved_list[] = {moved_evhost, "plugins", "list", NULL};
    char *moved_listing = run_expect(moved_list, 0, 60000);
    char *real_moved = realpath(moved, NULL);
    char *from_moved = fmt(" %s/lib/evhost/plugins/event-sources/timer\n", real_moved);
    if (!strstr(moved_listing, from_moved))
        fprintf(stderr, "expected%s in:\n%s\n", from_moved, moved_listing);
    assert_non_null(strstr(moved_listing, from_moved));
    char *moved_pc = tu_join(moved, "lib/pkgconfig");
    char *installed_pc = strdup(getenv("PKG_CONFIG_PATH"));
    setenv("PKG_CONFIG_PATH", moved_pc, 1);
    free(pkg_config_include(moved));
    setenv("PKG_CONFIG_PATH", installed_pc, 1);
    free(installed_pc);
    free(moved_pc);
    free(from_moved);
    free(real_moved);
    free(moved_listing);
    free(moved_evhost);
    free(moved);
    free(version);
    free(out);
    free(validate_dir);
    free(builtins);
    free(listing);
    free(evhost);
}

static void test_out_of_tree_plugins(void **state)
{
    (void)state;
    char *oot = make_dir(g_root, "oot");

    /* 1. pkg-config and plain cc, each plugin in its own folder */
    char *pc = make_dir(oot, "pc");
    char *orders =
        plugin_folder(pc, "acme-orders", acme_orders_json, "acme_orders.c", acme_orders_c);
    char *upper = plugin_folder(pc, "acme-upper", acme_upper_json, "acme_upper.c", acme_upper_c);
    cc_with_pkg_config(orders, "acme-orders", "acme_orders.c");
    cc_with_pkg_config(upper, "acme-upper", "acme_upper.c");

    /* 2. the CMake package: a project of two plugins, a two-line
     * CMakeLists.txt each, built and installed into a plugin directory */
    char *cm = make_dir(oot, "cm");
    write_at(cm, "CMakeLists.txt",
             "cmake_minimum_required(VERSION 3.18)\n"
             "project(acme LANGUAGES C)\n"
             "find_package(evhost-sdk 1.0 REQUIRED)\n"
             "add_subdirectory(acme-orders)\n"
             "add_subdirectory(acme-upper)\n");
    char *cm_orders =
        plugin_folder(cm, "acme-orders", acme_orders_json, "acme_orders.c", acme_orders_c);
    char *cm_upper = plugin_folder(cm, "acme-upper", acme_upper_json, "acme_upper.c", acme_upper_c);
    write_at(cm_orders, "CMakeLists.txt",
             "evh_add_plugin(acme-orders KIND source SOURCES acme_orders.c)\n");
    write_at(cm_upper, "CMakeLists.txt",
             "evh_add_plugin(acme-upper KIND step SOURCES acme_upper.c)\n");
    char *build = tu_join(oot, "cm-build");
    char *prefix_path = fmt("-DCMAKE_PREFIX_PATH=%s", g_prefix);
    char *configure[] = {EVH_CMAKE_COMMAND, "-S", cm, "-B", build, prefix_path, NULL};
    run_ok(configure, 120000);
    char *make[] = {EVH_CMAKE_COMMAND, "--build", build, NULL};
    run_ok(make, 120000);
    char *built = tu_join(build, "plugins");
    assert_file(built, "acme-orders/plugin.json");
    assert_file(built, "acme-orders/acme-orders.so");
    assert_file(built, "acme-upper/acme-upper.so");
    char *plugin_dir = tu_join(oot, "plugins");
    char *install[] = {EVH_CMAKE_COMMAND, "--install", build, "--prefix", plugin_dir, NULL};
    run_ok(install, 60000);

    /* both builds pass validate with no warning: one export, no missing
     * library */
    char *evhost = installed("bin/evhost");
    char *v1[] = {evhost, "plugins", "validate", pc, NULL};
    char *out = run_expect(v1, 0, 60000);
    assert_null(strstr(out, "warning"));
    free(out);
    char *v2[] = {evhost, "plugins", "validate", plugin_dir, NULL};
    out = run_expect(v2, 0, 60000);
    assert_null(strstr(out, "warning"));
    free(out);

    run_installed(pc, "run-pkg-config");
    run_installed(plugin_dir, "run-cmake");

    free(evhost);
    free(plugin_dir);
    free(built);
    free(prefix_path);
    free(build);
    free(cm_upper);
    free(cm_orders);
    free(cm);
    free(upper);
    free(orders);
    free(pc);
    free(oot);
}

/* ---- the scaffold ------------------------------------------------------------ */

static void cc_with_sdk(const char *folder, const char *id, const char *file)
{
    char *so = fmt("%s/%s.so", folder, id);
    char *src = tu_join(folder, file);
    char *cc[] = {"cc",
                  "-std=c99",
                  "-Wall",
                  "-Wextra",
                  "-Wpedantic",
                  "-Werror",
                  "-shared",
                  "-fPIC",
                  "-fvisibility=hidden",
                  "-Wl,--no-undefined",
                  "-I",
                  EVH_SOURCE_DIR "/sdk/include",
                  "-o",
                  so,
                  src,
                  NULL};
    run_ok(cc, 60000);
    free(src);
    free(so);
}

static void test_scaffold(void **state)
{
    (void)state;
    char *dir = make_dir(g_root, "scaffold");
    char *plugins = make_dir(dir, "plugins");

    /* names and kinds that are refused, with the reason */
    char *bad_name[] = {EVH_BINARY, "new", "source", "My_Probe", "--dir", plugins, NULL};
    char *out = run_both(bad_name, 2, 10000);
    assert_non_null(strstr(out, "'My_Probe' is not a valid plugin id: use kebab-case"));
    free(out);
    char *digit[] = {EVH_BINARY, "new", "step", "9-lives", "--dir", plugins, NULL};
    free(run_both(digit, 2, 10000));
    char *bad_kind[] = {EVH_BINARY, "new", "widget", "my-widget", NULL};
    out = run_both(bad_kind, 2, 10000);
    assert_non_null(strstr(out, "use source or step"));
    free(out);
    char *no_name[] = {EVH_BINARY, "new", "source", NULL};
    out = run_both(no_name, 2, 10000);
    assert_non_null(strstr(out, "usage: evhost new"));
    free(out);

    char *new_source[] = {EVH_BINARY, "new", "source", "my-probe", "--dir", plugins, NULL};
    out = run_expect(new_source, 0, 10000);
    assert_non_null(strstr(out, "check.sh"));
    free(out);
    char *new_step[] = {EVH_BINARY, "new", "step", "my-stamp", "--dir", plugins, NULL};
    run_ok(new_step, 10000);
    out = run_both(new_source, 1, 10000); /* never overwrites */
    assert_non_null(strstr(out, "nothing is overwritten"));
    free(out);

    char *probe = tu_join(plugins, "my-probe");
    char *stamp = tu_join(plugins, "my-stamp");
    const char *files[] = {"plugin.json", "CMakeLists.txt", "README.md", "check.sh"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        assert_file(probe, files[i]);
        assert_file(stamp, files[i]);
    }
    char *readme_path = tu_join(probe, "README.md");
    char *readme = tu_read_file(readme_path);
    assert_non_null(strstr(readme, "cc -std=c99 "));
    assert_non_null(strstr(readme, "$(pkg-config --cflags evhost-sdk) -o my-probe.so my_probe.c"));

    /* unchanged, they build (strict warnings), validate and run */
    cc_with_sdk(probe, "my-probe", "my_probe.c");
    cc_with_sdk(stamp, "my-stamp", "my_stamp.c");
    char *validate[] = {EVH_BINARY, "plugins", "validate", plugins, NULL};
    out = run_expect(validate, 0, 60000);
    assert_null(strstr(out, "warning"));
    free(out);

    char *run_dir = make_dir(dir, "run");
    char *wf = make_dir(run_dir, "wf");
    write_at(wf, "probe.yaml",
             "id: probe-flow\nname: Probe flow\nsteps:\n"
             "  - {id: stamp, uses: my-stamp, with: {prefix: stamped}}\n");
    write_at(run_dir, "triggers.yaml",
             "triggers:\n  - {id: probe-beat, name: Probe beat, source: my-probe,\n"
             "     event_type: heartbeat, workflow: probe-flow}\n");
    test_daemon d;
    daemon_start(&d, EVH_BINARY, run_dir, plugins,
                 "plugins: {builtin: false, config: {my-probe: {interval_ms: 100}}}\n");
    char *events[] = {EVH_BINARY, "events", "list", "--db", d.db, "--json", NULL};
    out = poll_output(&d, events, "\"heartbeat\"");
    assert_non_null(strstr(out, "\"my-probe\""));
    assert_non_null(strstr(out, "hello from my-probe"));
    free(out);
    char *id = wait_for_execution(&d, EVH_BINARY, "probe-flow");
    char *json = execution_json(&d, EVH_BINARY, id);
    assert_non_null(strstr(json, "stamped: heartbeat from my-probe"));
    daemon_stop(&d);

    /* its check.sh, with the installed evhost and SDK as an author has them */
    char *check_probe = tu_join(probe, "check.sh");
    char *c1[] = {check_probe, NULL};
    out = run_expect(c1, 0, 120000);
    assert_non_null(strstr(out, "ok: my-probe builds, loads, and its events are stored"));
    free(out);
    char *check_stamp = tu_join(stamp, "check.sh");
    char *c2[] = {check_stamp, NULL};
    out = run_expect(c2, 0, 120000);
    assert_non_null(strstr(out, "ok: my-stamp builds, loads, and ran in a workflow"));
    free(out);

    /* its CMakeLists.txt, against the installed package */
    char *build = tu_join(dir, "probe-build");
    char *prefix_path = fmt("-DCMAKE_PREFIX_PATH=%s", g_prefix);
    char *configure[] = {EVH_CMAKE_COMMAND, "-S", probe, "-B", build, prefix_path, NULL};
    run_ok(configure, 120000);
    char *make[] = {EVH_CMAKE_COMMAND, "--build", build, NULL};
    run_ok(make, 120000);
    char *built = tu_join(build, "plugins");
    assert_file(built, "my-probe/my-probe.so");
    char *validate_built[] = {EVH_BINARY, "plugins", "validate", built, NULL};
    out = run_expect(validate_built, 0, 60000);
    assert_null(strstr(out, "warning"));
    free(out);

    free(built);
    free(prefix_path);
    free(build);
    free(check_stamp);
    free(check_probe);
    free(json);
    free(id);
    free(wf);
    free(run_dir);
    free(readme);
    free(readme_path);
    free(stamp);
    free(probe);
    free(plugins);
    free(dir);
}

/* ---- validate reads the library ------------------------------------------------ */

static const char *tiny_source_c =
    "#include <evhost/evhost.h>\n"
    "#ifdef NEEDS_LIB\n"
    "int evh_needy_answer(void);\n"
    "#endif\n"
    "int leaky_counter;\n"
    "int leaky_helper(void) { return ++leaky_counter; }\n"
    "static int32_t t_init(const evh_host_api *a, evh_host *h, void **ctx, char **e)\n"
    "{\n"
    "    (void)a; (void)h; (void)e; *ctx = 0;\n"
    "#ifdef NEEDS_LIB\n"
    "    return evh_needy_answer() == 42 ? EVH_OK : EVH_E_PLUGIN;\n"
    "#else\n"
    "    return leaky_helper() ? EVH_OK : EVH_E_PLUGIN;\n"
    "#endif\n"
    "}\n"
    "static int32_t t_run(void *ctx) { (void)ctx; return EVH_OK; }\n"
    "static void t_fini(void *ctx) { (void)ctx; }\n"
    "static const evh_source t_src = {.struct_size = sizeof(evh_source), .init = t_init,\n"
    "                                 .run = t_run, .fini = t_fini};\n"
    "EVH_DECLARE_SOURCE(PLUGIN_ID, &t_src)\n";

static char *tiny_folder(const char *dir, const char *id)
{
    char *json =
        fmt("{\"type\": \"event-source\", \"id\": \"%s\", \"name\": \"T\", "
            "\"description\": \"d\", \"version\": \"1.0.0\", \"abi\": \"1.0\", "
            "\"eventTypes\": [{\"type\": \"t\", \"label\": \"T\", \"description\": \"d\"}]}",
            id);
    char *folder = plugin_folder(dir, id, json, "t.c", tiny_source_c);
    free(json);
    return folder;
}

/* cc the tiny source into folder/<id>.so; extra: more cc arguments. */
static void cc_tiny(const char *folder, const char *id, char *const extra[])
{
    char *so = fmt("%s/%s.so", folder, id);
    char *src = tu_join(folder, "t.c");
    char *define = fmt("-DPLUGIN_ID=\"%s\"", id);
    char *argv[32] = {"cc",   "-std=c99", "-shared", "-fPIC", "-I", EVH_SOURCE_DIR "/sdk/include",
                      define, "-o",       so,        src};
    size_t n = 10;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    run_ok(argv, 60000);
    free(define);
    free(src);
    free(so);
}

static void test_validate_reads_the_library(void **state)
{
    (void)state;
    char *dir = make_dir(g_root, "elf");

    /* built without -fvisibility=hidden: more than the entry is exported */
    char *leaky = tiny_folder(dir, "leaky");
    cc_tiny(leaky, "leaky", NULL);
    char *v1[] = {EVH_BINARY, "plugins", "validate", leaky, NULL};
    char *out = run_expect(v1, 0, 30000); /* a warning, not a problem */
    assert_non_null(
        strstr(out, "leaky.so: warning: exports 2 symbol(s) besides evh_plugin_entry:"));
    assert_non_null(strstr(out, "leaky_helper"));
    assert_non_null(strstr(out, "leaky_counter"));
    assert_non_null(strstr(out, "-fvisibility=hidden"));
    free(out);

    /* a library it needs, then removed: named, and an error */
    char *libdir = make_dir(dir, "lib");
    write_at(libdir, "needy.c", "int evh_needy_answer(void) { return 42; }\n");
    char *lib_src = tu_join(libdir, "needy.c");
    char *lib = tu_join(libdir, "libevhneedy.so");
    char *cc_lib[] = {"cc", "-shared", "-fPIC", "-Wl,-soname,libevhneedy.so",
                      "-o", lib,       lib_src, NULL};
    run_ok(cc_lib, 60000);
    char *needy = tiny_folder(dir, "needy");
    char *ldir = fmt("-L%s", libdir);
    char *needy_extra[] = {"-fvisibility=hidden", "-DNEEDS_LIB",        ldir,
                           "-levhneedy",          "-Wl,--no-undefined", NULL};
    cc_tiny(needy, "needy", needy_extra);

    /* the same, beside the library and linked with an $ORIGIN RUNPATH: found,
     * as the dynamic linker would find it there */
    char *bundled = tiny_folder(dir, "bundled");
    char *copy = tu_join(bundled, "libevhneedy.so");
    char *cp[] = {"cp", lib, copy, NULL};
    run_ok(cp, 10000);
    char *bdir = fmt("-L%s", bundled);
    char *bundled_extra[] = {"-fvisibility=hidden", "-DNEEDS_LIB",        bdir,
                             "-levhneedy",          "-Wl,-rpath,$ORIGIN", NULL};
    cc_tiny(bundled, "bundled", bundled_extra);
    assert_int_equal(unlink(lib), 0);

    char *v2[] = {EVH_BINARY, "plugins", "validate", needy, NULL};
    out = run_expect(v2, 1, 30000);
    assert_non_null(strstr(out, "needy.so: needs libevhneedy.so, which is not found"));
    free(out);
    char *v3[] = {EVH_BINARY, "plugins", "validate", bundled, NULL};
    out = run_expect(v3, 0, 30000);
    assert_null(strstr(out, "not found"));
    assert_null(strstr(out, "warning"));
    free(out);

    /* not a shared object at all */
    char *junk = tiny_folder(dir, "junk");
    write_at(junk, "junk.so", "this is not a library\n");
    char *v4[] = {EVH_BINARY, "plugins", "validate", junk, NULL};
    out = run_expect(v4, 1, 30000);
    assert_non_null(strstr(out, "junk.so: not an ELF file"));
    free(out);

    free(junk);
    free(bdir);
    free(copy);
    free(bundled);
    free(ldir);
    free(needy);
    free(lib);
    free(lib_src);
    free(libdir);
    free(leaky);
    free(dir);
}

/* ---- health, and API keys beyond loopback ------------------------------------- */

/* The port in the daemon's "API on http://HOST:PORT/" line. */
static int api_port(const test_daemon *d, const char *host)
{
    int port = tu_wait_api_port(d->log, host, 20000);
    if (!port)
        daemon_show_log(d);
    assert_true(port > 0);
    return port;
}

static void start_exposed(test_daemon *d, const char *dir, const char *more_yaml)
{
    char *empty = make_dir(dir, "plugins");
    char *wf = make_dir(dir, "wf");
    write_at(dir, "triggers.yaml", "triggers: []\n");
    char *yaml = fmt("plugins: {builtin: false}\n%s", more_yaml);
    daemon_start_at(d, EVH_BINARY, dir, empty, yaml, NULL);
    free(yaml);
    free(wf);
    free(empty);
}

static void test_health_and_exposure(void **state)
{
    (void)state;
    char *dir = make_dir(g_root, "exposure");
    char *data = tu_join(dir, "data");

    /* beyond loopback without keys: refused, naming the settings */
    char *open_run[] = {EVH_BINARY, "run", "--data-dir", data, "--listen", "0.0.0.0:0", NULL};
    char *out = run_both(open_run, 2, 20000);
    assert_non_null(strstr(out, "server.listen '0.0.0.0:0' is beyond loopback"));
    assert_non_null(strstr(out, "server.api_keys"));
    assert_non_null(strstr(out, "EVH_API_KEYS"));
    assert_non_null(strstr(out, "server.allow_unauthenticated"));
    free(out);

    /* with a key it starts, and `evhost health` asks it */
    setenv("EVH_API_KEYS", "ci:k-0123456789", 1);
    char *keyed = make_dir(dir, "keyed");
    test_daemon d;
    start_exposed(&d, keyed, "server: {listen: \"0.0.0.0:0\"}\n");
    int port = api_port(&d, "0.0.0.0");
    unsetenv("EVH_API_KEYS");
    char *url = fmt("http://127.0.0.1:%d/api/health", port);
    char *h1[] = {EVH_BINARY, "health", "--url", url, NULL};
    out = run_expect(h1, 0, 20000);
    assert_non_null(strstr(out, "\"status\""));
    assert_non_null(strstr(out, "ok"));
    free(out);
    char *bare = fmt("http://127.0.0.1:%d", port); /* no path: /api/health */
    char *h2[] = {EVH_BINARY, "health", "--url", bare, NULL};
    free(run_expect(h2, 0, 20000));
    char *yaml = fmt("server: {listen: \"0.0.0.0:%d\"}\n", port); /* the wildcard: loopback */
    write_at(keyed, "probe.yaml", yaml);
    char *probe_yaml = tu_join(keyed, "probe.yaml");
    char *h3[] = {EVH_BINARY, "health", "--config", probe_yaml, NULL};
    free(run_expect(h3, 0, 20000));
    char *nope = fmt("http://127.0.0.1:%d/api/nope", port);
    char *h4[] = {EVH_BINARY, "health", "--url", nope, NULL};
    out = run_both(h4, 1, 20000);
    assert_non_null(strstr(out, "HTTP 4"));
    free(out);
    daemon_stop(&d);

    char *closed[] = {EVH_BINARY, "health", "--url", url, "--timeout", "2", NULL};
    out = run_both(closed, 1, 20000);
    assert_non_null(strstr(out, "cannot connect"));
    free(out);
    char *bad_url[] = {EVH_BINARY, "health", "--url", "ftp://127.0.0.1/", NULL};
    free(run_both(bad_url, 2, 10000));

    /* the explicit opt-out starts, and says so */
    char *optout = make_dir(dir, "optout");
    start_exposed(&d, optout, "server: {listen: \"0.0.0.0:0\", allow_unauthenticated: true}\n");
    api_port(&d, "0.0.0.0");
    assert_true(tu_wait_for_text(d.log, "server.allow_unauthenticated is true", 5000));
    daemon_stop(&d);

    free(optout);
    free(nope);
    free(probe_yaml);
    free(yaml);
    free(bare);
    free(url);
    free(keyed);
    free(data);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_installed_layout),
        cmocka_unit_test(test_out_of_tree_plugins),
        cmocka_unit_test(test_scaffold),
        cmocka_unit_test(test_validate_reads_the_library),
        cmocka_unit_test(test_health_and_exposure),
    };
    return cmocka_run_group_tests(tests, install_setup, install_teardown);
}

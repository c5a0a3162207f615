/*
 * test_loader.c - plugin folders through the loader: the good fixture gets
 * ready, each bad one fails with its own code and a message naming the file
 * and the reason, incompatible libraries are never dlopen'ed, and the
 * registry answers what is there.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <evhost/evhost.h>

#include "hostapi.h"
#include "loader.h"
#include "registry.h"
#include "runtime.h"
#include "testutil.h"

typedef struct env {
    char *root;    /* the test's temporary directory */
    char *plugins; /* <root>/plugins: where fixtures are copied */
    runtime *rt;
    registry *r;
} env;

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->root = tu_tempdir("loader");
    e->plugins = tu_join(e->root, "plugins");
    assert_int_equal(mkdir(e->plugins, 0755), 0);
    char *data = tu_join(e->root, "data");
    e->rt = runtime_new(64, data, 10);
    free(data);
    e->r = registry_new();
    assert_non_null(e->rt);
    assert_non_null(e->r);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    loader_unload_all(e->r);
    registry_free(e->r);
    runtime_stop(e->rt);
    runtime_free(e->rt);
    tu_rmtree(e->root);
    free(e->plugins);
    free(e->root);
    free(e);
    unsetenv("EVH_TEST_MARKER");
    return 0;
}

/* Copy fixture `name` to <plugins>/<as>; returns the folder (malloc'd). */
static char *copy_fixture(env *e, const char *name, const char *as)
{
    assert_int_equal(tu_copy_fixture(name, e->plugins, as), 0);
    return tu_join(e->plugins, as ? as : name);
}

/* Load one folder into the registry (which then owns the record). */
static plugin *load_dir(env *e, const char *dir, const loader_options *opt)
{
    loader_options none = {0};
    plugin *p = loader_load_one(e->rt, dir, opt ? opt : &none);
    assert_non_null(p);
    assert_int_equal(registry_add(e->r, p), EVH_OK);
    return p;
}

static plugin *load_fixture(env *e, const char *name, const loader_options *opt)
{
    char *dir = copy_fixture(e, name, NULL);
    plugin *p = load_dir(e, dir, opt);
    free(dir);
    return p;
}

#define assert_contains(haystack, needle)                                                  \
    do {                                                                                   \
        const char *h_ = (haystack);                                                       \
        if (!h_ || !strstr(h_, (needle))) {                                                \
            print_error("'%s' not found in '%s'\n", (needle), h_ ? h_ : "(null)");          \
            fail();                                                                        \
        }                                                                                  \
    } while (0)

static void assert_failed(const plugin *p, int code, const char *text1, const char *text2)
{
    if (p->state != PLUGIN_FAILED || p->error_code != code)
        print_error("state %s, code %s, error %s\n", plugin_state_name(p->state),
                    evh_status_name(p->error_code), p->error ? p->error : "(none)");
    assert_int_equal(p->state, PLUGIN_FAILED);
    assert_int_equal(p->error_code, code);
    assert_non_null(p->error);
    assert_null(strchr(p->error, '\n'));
    assert_contains(p->error, text1);
    if (text2)
        assert_contains(p->error, text2);
    assert_null(p->host);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- the good ones ------------------------------------------------------ */

static void test_ok_minimal_ready(void **state)
{
    env *e = *state;
    plugin *p = load_fixture(e, "ok-minimal", NULL);
    assert_int_equal(p->state, PLUGIN_READY);
    assert_int_equal(p->error_code, EVH_OK);
    assert_null(p->error);
    assert_string_equal(p->id, "ok-minimal");
    assert_int_equal(p->kind, EVH_KIND_SOURCE);
    assert_non_null(p->m);
    assert_non_null(p->dl);
    assert_non_null(p->desc);
    assert_string_equal(p->desc->id, "ok-minimal");
    assert_non_null(p->host);
    assert_contains(p->library_path, "ok-minimal/ok-minimal.so");
    /* no config given: the configSchema defaults */
    assert_contains(p->config_text, "\"interval_ms\":60000");
    assert_contains(p->config_text, "\"greeting\":\"hello\"");
    assert_string_equal(plugin_state_name(p->state), "ready");
}

static void test_ok_step_ready_without_init(void **state)
{
    env *e = *state;
    plugin *p = load_fixture(e, "ok-step", NULL);
    assert_int_equal(p->state, PLUGIN_READY);
    assert_int_equal(p->kind, EVH_KIND_STEP);
    assert_null(p->host); /* steps are initialized per workflow step */
    assert_non_null(p->desc->step);
}

/* ---- refused before dlopen ---------------------------------------------- */

static void test_wrong_abi_major(void **state)
{
    env *e = *state;
    char *marker = tu_join(e->root, "marker");
    setenv("EVH_TEST_MARKER", marker, 1);
    plugin *p = load_fixture(e, "wrong-abi-major", NULL);
    assert_failed(p, EVH_E_ABI, "wrong-abi-major/plugin.json",
                  "requires SDK ABI 2.0; this host provides " EVH_ABI_STRING
                  ": rebuild the plugin against "
                  "SDK 1.x");
    assert_null(p->dl);
    assert_false(file_exists(marker));
    free(marker);
}

static void test_newer_minor_never_dlopened(void **state)
{
    env *e = *state;
    char *marker = tu_join(e->root, "marker");
    setenv("EVH_TEST_MARKER", marker, 1);
    plugin *p = load_fixture(e, "newer-minor", NULL);
    assert_failed(p, EVH_E_ABI, "newer-minor/plugin.json",
                  "requires SDK ABI 1.99; this host provides " EVH_ABI_STRING
                  ": upgrade evhost or declare \"abi\": \"" EVH_ABI_STRING
                  "\" if the plugin does not use newer functions");
    assert_null(p->dl);
    assert_false(file_exists(marker));

    /* The marker does work: loading the library by hand leaves it. */
    char *lib = tu_join(EVH_FIXTURE_DIR, "newer-minor/newer-minor.so");
    void *dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(dl);
    assert_true(file_exists(marker));
    dlclose(dl);
    free(lib);
    free(marker);
}

static void test_missing_library(void **state)
{
    env *e = *state;
    plugin *p = load_fixture(e, "missing-library", NULL);
    assert_failed(p, EVH_E_NOT_FOUND, "missing-library/nope.so", "does not exist");
    assert_null(p->dl);
}

static void test_broken_manifest(void **state)
{
    env *e = *state;
    char *dir = tu_join(e->plugins, "broken");
    assert_int_equal(mkdir(dir, 0755), 0);
    char *file = tu_join(dir, "plugin.json");
    assert_int_equal(tu_write_file(file, "{\"type\": \"event-source\",\n \"id\": \n"), 0);
    plugin *p = load_dir(e, dir, NULL);
    assert_int_equal(p->state, PLUGIN_FAILED);
    assert_true(p->error_code == EVH_E_JSON || p->error_code == EVH_E_MANIFEST);
    assert_contains(p->error, "broken/plugin.json");
    assert_contains(p->error, "invalid plugin.json");
    assert_string_equal(p->id, "broken"); /* the folder name until the manifest passes */
    assert_null(p->m);
    free(file);
    free(dir);
}

/* ---- refused after dlopen ----------------------------------------------- */

static void test_missing_entry(void **state)
{
    env *e = *state;
    plugin *p = load_fixture(e, "missing-entry", NULL);
    assert_failed(p, EVH_E_LOAD, "missing-entry/missing-entry.so",
                  "does not export evh_plugin_entry: declare it with EVH_DECLARE_SOURCE or "
                  "EVH_DECLARE_STEP");
}

static void test_id_mismatch(void **state)
{
    env *e = *state;
    plugin *p = load_fixture(e, "id-mismatch", NULL);
    assert_failed(p, EVH_E_MANIFEST, "'some-other-id'", "\"id\": \"id-mismatch\"");
    assert_contains(p->error, "id-mismatch/id-mismatch.so");
}

static void test_kind_mismatch(void **state)
{
    env *e = *state;
    plugin *p = load_fixture(e, "kind-mismatch", NULL);
    assert_failed(p, EVH_E_MANIFEST, "the library is a workflow-step",
                  "\"type\": \"event-source\"");
}

static void test_init_fails(void **state)
{
    env *e = *state;
    plugin *p = load_fixture(e, "init-fails", NULL);
    assert_failed(p, EVH_E_CONFIG, "init-fails/init-fails.so", "cannot open device");
    assert_contains(p->error, "init failed");
}

/* ---- permissions -------------------------------------------------------- */

static void test_world_writable_refused(void **state)
{
    env *e = *state;
    char *dir = copy_fixture(e, "world-writable", NULL);
    char *file = tu_join(dir, "plugin.json");
    assert_int_equal(chmod(file, 0666), 0);
    plugin *p = load_dir(e, dir, NULL);
    assert_failed(p, EVH_E_PERMISSION, "world-writable/plugin.json",
                  "writable by group or others (mode 0666)");
    assert_null(p->dl);

    /* the same plugin is fine when the test says permissions do not count */
    loader_options skip = {.skip_permission_check = 1};
    registry *other = registry_new();
    plugin *q = loader_load_one(e->rt, dir, &skip);
    assert_int_equal(q->state, PLUGIN_READY);
    assert_int_equal(registry_add(other, q), EVH_OK);
    loader_unload_all(other);
    registry_free(other);
    free(file);
    free(dir);
}

static void test_writable_folder_and_library_refused(void **state)
{
    env *e = *state;
    char *dir = copy_fixture(e, "world-writable", "loose-folder");
    assert_int_equal(chmod(dir, 0777), 0);
    plugin *p = load_dir(e, dir, NULL);
    assert_failed(p, EVH_E_PERMISSION, "loose-folder", "writable by group or others");
    assert_null(p->dl);
    free(dir);

    dir = copy_fixture(e, "world-writable", "loose-library");
    char *lib = tu_join(dir, "world-writable.so");
    assert_int_equal(chmod(lib, 0775), 0);
    p = load_dir(e, dir, NULL);
    assert_failed(p, EVH_E_PERMISSION, "loose-library/world-writable.so",
                  "writable by group or others (mode 0775)");
    assert_null(p->dl);
    free(lib);
    free(dir);
}

static void test_foreign_owner_refused(void **state)
{
    env *e = *state;
    if (geteuid() != 0)
        skip(); /* only root can give a file away */
    char *dir = copy_fixture(e, "world-writable", NULL);
    char *file = tu_join(dir, "plugin.json");
    assert_int_equal(chown(file, 12345, 12345), 0);
    plugin *p = load_dir(e, dir, NULL);
    assert_failed(p, EVH_E_PERMISSION, "world-writable/plugin.json", "owned by uid 12345");
    free(file);
    free(dir);
}

static void test_library_symlinks(void **state)
{
    env *e = *state;
    /* pointing outside the folder: refused */
    char *dir = copy_fixture(e, "ok-minimal", "outside-link");
    char *lib = tu_join(dir, "ok-minimal.so");
    char *target = tu_join(EVH_FIXTURE_DIR, "ok-minimal/ok-minimal.so");
    assert_int_equal(unlink(lib), 0);
    assert_int_equal(symlink(target, lib), 0);
    plugin *p = load_dir(e, dir, NULL);
    assert_failed(p, EVH_E_PERMISSION, "outside-link/ok-minimal.so",
                  "is a symlink pointing outside the plugin folder");
    assert_null(p->dl);
    free(target);
    free(lib);
    free(dir);

    /* pointing inside the folder: fine (a versioned library name) */
    registry *other = registry_new();
    dir = copy_fixture(e, "ok-minimal", "inside-link");
    lib = tu_join(dir, "ok-minimal.so");
    char *real = tu_join(dir, "ok-minimal.so.1.0.0");
    assert_int_equal(rename(lib, real), 0);
    assert_int_equal(symlink("ok-minimal.so.1.0.0", lib), 0);
    p = loader_load_one(e->rt, dir, NULL);
    assert_int_equal(registry_add(other, p), EVH_OK);
    assert_int_equal(p->state, PLUGIN_READY);
    loader_unload_all(other);
    registry_free(other);
    free(real);
    free(lib);
    free(dir);
}

/* ---- directories, duplicates and the registry --------------------------- */

static void test_duplicate_ids(void **state)
{
    env *e = *state;
    char *first = copy_fixture(e, "ok-minimal", "a-first");
    char *second = copy_fixture(e, "ok-minimal", "b-second");
    diag d;
    diag_init(&d, e->plugins);
    assert_int_equal(loader_scan_dir(e->r, e->rt, e->plugins, NULL, &d), 1);
    assert_int_equal(d.count, 0);
    assert_int_equal(e->r->count, 2);
    plugin *a = e->r->items[0], *b = e->r->items[1];
    assert_string_equal(a->dir, first);
    assert_int_equal(a->state, PLUGIN_READY);
    assert_failed(b, EVH_E_DUPLICATE, "duplicate id 'ok-minimal': already loaded from",
                  first);
    assert_contains(b->error, "b-second/plugin.json");
    assert_null(b->dl); /* its library was never opened */
    assert_ptr_equal(registry_find(e->r, "ok-minimal"), a);
    diag_free(&d);
    free(first);
    free(second);
}

static void test_mixed_directory(void **state)
{
    env *e = *state;
    const char *names[] = {"wrong-abi-major", "ok-step", "init-fails", "ok-minimal",
                           "missing-entry"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        free(copy_fixture(e, names[i], NULL));
    /* neither a file nor a dot-folder is a plugin */
    char *readme = tu_join(e->plugins, "README");
    assert_int_equal(tu_write_file(readme, "not a plugin\n"), 0);
    char *hidden = copy_fixture(e, "ok-minimal", ".hidden");

    diag d;
    diag_init(&d, e->plugins);
    assert_int_equal(loader_scan_dir(e->r, e->rt, e->plugins, NULL, &d), 2);
    assert_int_equal(d.count, 0);
    assert_int_equal(e->r->count, 5);
    /* in name order */
    assert_string_equal(e->r->items[0]->id, "init-fails");
    assert_string_equal(e->r->items[1]->id, "missing-entry");
    assert_string_equal(e->r->items[2]->id, "ok-minimal");
    assert_string_equal(e->r->items[3]->id, "ok-step");
    assert_string_equal(e->r->items[4]->id, "wrong-abi-major");

    assert_int_equal(registry_count(e->r, 0, -1), 5);
    assert_int_equal(registry_count(e->r, 0, PLUGIN_FAILED), 3);
    assert_int_equal(registry_count(e->r, 0, PLUGIN_READY), 2);
    assert_int_equal(registry_count(e->r, EVH_KIND_SOURCE, PLUGIN_READY), 1);
    assert_int_equal(registry_count(e->r, EVH_KIND_STEP, PLUGIN_READY), 1);
    assert_int_equal(registry_count(e->r, EVH_KIND_STEP, -1), 1);

    assert_non_null(registry_find(e->r, "ok-minimal"));
    assert_non_null(registry_find(e->r, "ok-step"));
    assert_null(registry_find(e->r, "init-fails"));
    plugin *failed = registry_find_any(e->r, "init-fails");
    assert_non_null(failed);
    assert_int_equal(failed->state, PLUGIN_FAILED);
    assert_null(registry_find(e->r, "nope"));
    assert_null(registry_find_any(e->r, "nope"));
    assert_null(registry_find_any(e->r, ".hidden"));
    assert_null(registry_find(NULL, "ok-minimal"));

    diag_free(&d);
    free(hidden);
    free(readme);
}

static void test_scan_missing_directory(void **state)
{
    env *e = *state;
    char *dir = tu_join(e->root, "does-not-exist");
    diag d;
    diag_init(&d, dir);
    assert_int_equal(loader_scan_dir(e->r, e->rt, dir, NULL, &d), EVH_E_NOT_FOUND);
    assert_int_equal(d.count, 1);
    assert_contains(d.items[0].reason, "cannot read plugin directory");
    assert_int_equal(e->r->count, 0);
    diag_free(&d);
    free(dir);
}

static void test_validate_only(void **state)
{
    env *e = *state;
    free(copy_fixture(e, "ok-minimal", NULL));
    free(copy_fixture(e, "init-fails", NULL));
    free(copy_fixture(e, "ok-step", NULL));
    free(copy_fixture(e, "id-mismatch", NULL));
    loader_options opt = {.validate_only = 1};
    /* no runtime: validation never needs one */
    assert_int_equal(loader_scan_dir(e->r, NULL, e->plugins, &opt, NULL), 3);
    plugin *ok = registry_find(e->r, "ok-minimal");
    plugin *init = registry_find(e->r, "init-fails");
    assert_int_equal(ok->state, PLUGIN_LOADED);
    assert_null(ok->host);
    assert_null(ok->config_text);
    assert_non_null(ok->desc);
    assert_int_equal(init->state, PLUGIN_LOADED); /* init never ran */
    assert_int_equal(registry_find(e->r, "ok-step")->state, PLUGIN_LOADED);
    assert_failed(registry_find_any(e->r, "id-mismatch"), EVH_E_MANIFEST, "some-other-id",
                  NULL);
    assert_int_equal(loader_start_sources(e->r), 0);
}

/* Rewrite the copied manifest of `dir`, replacing `from` by `to`. */
static void patch_manifest(const char *dir, const char *from, const char *to)
{
    char *file = tu_join(dir, "plugin.json");
    char *text = tu_read_file(file);
    assert_non_null(text);
    char *at = strstr(text, from);
    assert_non_null(at);
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    assert_int_equal(tu_write_file(file, out), 0);
    free(out);
    free(text);
    free(file);
}

static void test_inactive(void **state)
{
    env *e = *state;
    char *dir = copy_fixture(e, "ok-minimal", NULL);
    patch_manifest(dir, "\"abi\": \"1.0\",", "\"abi\": \"1.0\", \"status\": \"inactive\",");
    plugin *p = load_dir(e, dir, NULL);
    assert_int_equal(p->state, PLUGIN_INACTIVE);
    assert_null(p->host);
    assert_int_equal(loader_start_sources(e->r), 0);
    free(dir);
}

/* ---- configuration ------------------------------------------------------ */

static plugin *load_with_config(env *e, const char *as, const char *configs_json)
{
    cJSON *configs = cJSON_Parse(configs_json);
    assert_non_null(configs);
    loader_options opt = {.plugin_configs = configs};
    char *dir = copy_fixture(e, "ok-minimal", as);
    plugin *p = load_dir(e, dir, &opt);
    cJSON_Delete(configs);
    free(dir);
    return p;
}

static void test_config_defaults_filled(void **state)
{
    env *e = *state;
    plugin *p = load_with_config(e, NULL, "{\"ok-minimal\": {\"interval_ms\": 5}}");
    assert_int_equal(p->state, PLUGIN_READY);
    assert_contains(p->config_text, "\"interval_ms\":5");
    assert_contains(p->config_text, "\"greeting\":\"hello\"");
    /* what the plugin sees */
    const evh_host_api *api = hostapi_table();
    size_t len = 0;
    assert_string_equal(api->config_json(p->host, &len), p->config_text);
    assert_int_equal(len, strlen(p->config_text));
    assert_int_equal(api->config_int(p->host, "interval_ms", 0), 5);
    assert_string_equal(api->config_string(p->host, "greeting", "?"), "hello");
}

static void test_bad_config_refused_with_path(void **state)
{
    env *e = *state;
    plugin *p = load_with_config(e, "a", "{\"ok-minimal\": {\"interval_ms\": \"fast\"}}");
    assert_failed(p, EVH_E_CONFIG, "config.interval_ms", "a/plugin.json");

    /* another registry: in this one the id is taken by the first record */
    env e2 = *e;
    e2.r = registry_new();
    p = load_with_config(&e2, "b", "{\"ok-minimal\": 5}");
    assert_failed(p, EVH_E_CONFIG, "must be an object", NULL);
    registry_free(e2.r);
}

/* ---- step instances ------------------------------------------------------ */

static void test_step_instance(void **state)
{
    env *e = *state;
    plugin *p = load_fixture(e, "ok-step", NULL);
    assert_int_equal(p->state, PLUGIN_READY);
    evh_host *h = NULL;
    void *ctx = NULL;
    char *err = NULL;
    assert_int_equal(loader_step_instance_new(p, e->rt, "{\"key\":\"k\"}", &h, &ctx, &err),
                     EVH_OK);
    assert_null(err);
    assert_non_null(h);
    assert_contains(h->config_text, "\"times\":1"); /* default filled */

    const char *event = "{\"id\":\"x\",\"data\":{\"n\":3}}";
    const char *config = "{\"key\":\"k\",\"times\":2}";
    evh_step_input in = {.struct_size = sizeof in, .attempt = 1, .event_json = event,
                         .event_len = strlen(event), .steps_json = "{}", .steps_len = 2,
                         .execution_id = "e", .workflow_id = "w", .step_id = "s",
                         .config_json = config, .config_len = strlen(config)};
    evh_step_output out = {.struct_size = sizeof out};
    hostapi_run_begin(h);
    assert_int_equal(p->desc->step->run(ctx, &in, &out), EVH_OK);
    hostapi_run_end(h);
    assert_string_equal(out.output_json, "{\"k\":{\"n\":3},\"times\":2}");
    free(out.output_json);
    assert_int_equal(h->n_metrics, 2);
    assert_string_equal(h->metric_names[0], "calls");
    assert_true(h->metric_values[0] == 1.0); /* the later value replaced the 0 */
    assert_string_equal(h->metric_names[1], "data_bytes");
    loader_step_instance_free(p, h, ctx);

    /* a templated value is resolved per run: not checked at init */
    assert_int_equal(loader_step_instance_new(p, e->rt, "{\"times\":\"{{ event.data.n }}\"}",
                                              &h, &ctx, &err), EVH_OK);
    loader_step_instance_free(p, h, ctx);

    /* a literal that breaks configSchema is refused, with its path */
    assert_int_equal(loader_step_instance_new(p, e->rt, "{\"times\":0}", &h, &ctx, &err),
                     EVH_E_CONFIG);
    assert_null(h);
    assert_contains(err, "config.times");
    assert_contains(err, "ok-step");
    free(err);
    assert_int_equal(loader_step_instance_new(p, e->rt, "[1]", &h, &ctx, &err), EVH_E_CONFIG);
    free(err);
    assert_int_equal(loader_step_instance_new(p, e->rt, NULL, &h, &ctx, &err), EVH_OK);
    loader_step_instance_free(p, h, ctx);
    assert_int_equal(loader_step_instance_new(NULL, e->rt, NULL, &h, &ctx, &err),
                     EVH_E_INVALID);
}

static void test_step_instance_needs_ready_step(void **state)
{
    env *e = *state;
    plugin *src = load_fixture(e, "ok-minimal", NULL);
    evh_host *h = NULL;
    void *ctx = NULL;
    char *err = NULL;
    assert_int_equal(loader_step_instance_new(src, e->rt, "{}", &h, &ctx, &err), EVH_E_STATE);
    assert_contains(err, "not a workflow step");
    free(err);
    plugin *failed = load_fixture(e, "init-fails", NULL);
    assert_int_equal(loader_step_instance_new(failed, e->rt, "{}", &h, &ctx, &err),
                     EVH_E_STATE);
    assert_contains(err, "cannot open device");
    free(err);
    assert_null(h);
}

/* ---- the http callback (ABI 1.1) ---------------------------------------- */

static void test_http_source_ready(void **state)
{
    env *e = *state;
    plugin *p = load_fixture(e, "webhook-source", NULL);
    assert_int_equal(p->state, PLUGIN_READY);
    assert_int_equal(p->desc->abi_minor, EVH_ABI_MINOR); /* built with this header */
    assert_string_equal(p->m->webhook_endpoint, "/api/webhooks/test");
    assert_true(EVH_SOURCE_HAS(p->desc->source, http));
    assert_non_null(p->desc->source->http);
}

/* A library built against SDK 1.0 (a 40-byte source table, no http field)
 * still loads; its table is never read past its struct_size. */
static void test_abi_1_0_source_still_loads(void **state)
{
    env *e = *state;
    plugin *p = load_fixture(e, "webhook-abi10", NULL);
    assert_int_equal(p->state, PLUGIN_READY);
    assert_int_equal(p->desc->abi_minor, 0);
    assert_int_equal(p->desc->source->struct_size, 40);
    assert_false(EVH_SOURCE_HAS(p->desc->source, http));
    assert_int_equal(loader_start_sources(e->r), 1);
    loader_stop_sources(e->r);
    assert_int_equal(p->state, PLUGIN_STOPPED);
}

/* Using http requires declaring 1.1: a 1.0 host would load the plugin and
 * never deliver its webhooks. */
static void test_http_needs_abi_1_1(void **state)
{
    env *e = *state;
    char *dir = copy_fixture(e, "webhook-source", NULL);
    patch_manifest(dir, "\"abi\": \"1.1\"", "\"abi\": \"1.0\"");
    plugin *p = load_dir(e, dir, NULL);
    assert_failed(p, EVH_E_ABI, "webhook-source/webhook-source.so",
                  "has an http callback, which needs SDK ABI 1.1, but");
    assert_contains(p->error, "declare \"abi\": \"1.1\"");
    free(dir);
}

/* One endpoint, one source: the first active one keeps it. */
static void test_duplicate_endpoint(void **state)
{
    env *e = *state;
    char *first = copy_fixture(e, "webhook-source", "a-first");
    char *second = copy_fixture(e, "webhook-source", "b-second");
    patch_manifest(second, "\"id\": \"webhook-source\"", "\"id\": \"webhook-other\"");
    patch_manifest(second, "\"/api/webhooks/test\"", "\"/api/webhooks/test/\"");
    diag d;
    diag_init(&d, e->plugins);
    assert_int_equal(loader_scan_dir(e->r, e->rt, e->plugins, NULL, &d), 1);
    assert_int_equal(e->r->count, 2);
    assert_int_equal(e->r->items[0]->state, PLUGIN_READY);
    plugin *b = e->r->items[1];
    assert_failed(b, EVH_E_DUPLICATE, "duplicate webhookEndpoint '/api/webhooks/test/'",
                  "already claimed by plugin 'webhook-source'");
    assert_null(b->dl);
    diag_free(&d);
    free(first);
    free(second);
}

/* Nested endpoints are not duplicates: a prefix endpoint ("/api/webhooks/")
 * and an exact one below it both load; the more specific one wins each
 * request (api_plugins.c, tests/integration/test_builtin_webhooks.c). */
static void test_nested_endpoints_load(void **state)
{
    env *e = *state;
    char *first = copy_fixture(e, "webhook-source", "a-exact");
    /* the built-in api-webhook declares the prefix "/api/webhooks/" */
    char *second = tu_join(e->plugins, "b-prefix");
    assert_int_equal(tu_copytree(EVH_BUILD_PLUGIN_DIR "/event-sources/api-webhook", second), 0);
    diag d;
    diag_init(&d, e->plugins);
    assert_int_equal(loader_scan_dir(e->r, e->rt, e->plugins, NULL, &d), 2);
    assert_int_equal(e->r->count, 2);
    assert_int_equal(e->r->items[0]->state, PLUGIN_READY);
    assert_int_equal(e->r->items[1]->state, PLUGIN_READY);
    assert_string_equal(e->r->items[1]->m->webhook_endpoint, "/api/webhooks/");
    diag_free(&d);
    free(first);
    free(second);
}

/* ---- source threads ----------------------------------------------------- */

static void test_start_and_stop_sources(void **state)
{
    env *e = *state;
    char *record = tu_join(e->root, "record.txt");
    char configs[4096];
    snprintf(configs, sizeof configs, "{\"ok-minimal\": {\"record_file\": \"%s\"}}", record);
    plugin *p = load_with_config(e, NULL, configs);
    assert_int_equal(p->state, PLUGIN_READY);
    assert_int_equal(loader_start_sources(e->r), 1);
    assert_int_equal(p->state, PLUGIN_RUNNING);
    assert_int_equal(loader_start_sources(e->r), 0); /* not twice */
    assert_true(tu_wait_for_text(record, "done", 10000));

    /* run() sleeps in wait(60 s): stopping must cut that short */
    long long t0 = tu_now_ms();
    loader_stop_sources(e->r);
    long long took = tu_now_ms() - t0;
    assert_true(took < 5000);
    assert_int_equal(p->state, PLUGIN_STOPPED);
    assert_int_equal(p->thread_started, 0);
    assert_int_equal(p->run_result, EVH_OK);
    char *text = tu_read_file(record);
    assert_string_equal(text, "done\nstopped\n");
    free(text);

    loader_unload_all(e->r);
    assert_null(p->host);
    assert_null(p->dl);
    loader_unload_all(e->r); /* idempotent */
    free(record);
}

int main(void)
{
    umask(022); /* the fixtures' modes must not depend on the caller's umask */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ok_minimal_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ok_step_ready_without_init, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_abi_major, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_minor_never_dlopened, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_library, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kind_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_world_writable_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writable_folder_and_library_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_foreign_owner_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_library_symlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mixed_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_missing_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inactive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_defaults_filled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config_refused_with_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_instance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_instance_needs_ready_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_and_stop_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_source_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abi_1_0_source_still_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_needs_abi_1_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_endpoints_load, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * apitest.c - see apitest.h.
 */
#include "apitest.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <evhost/evhost.h>

#include "event.h"
#include "lifecycle.h"
#include "loader.h"
#include "notify.h"
#include "stream.h"
#include "testutil.h"

static const char *const default_fixtures[] = {"ok-minimal", "test-step", NULL};

static void load_fixtures(apitest *t, const at_options *o)
{
    const char *const *names = o->fixtures ? o->fixtures : default_fixtures;
    cJSON *configs = o->plugin_configs ? cJSON_Parse(o->plugin_configs) : NULL;
    loader_options lo = {.plugin_configs = configs};
    for (size_t i = 0; names[i]; i++) {
        assert_int_equal(tu_copy_fixture(names[i], t->plugins, NULL), 0);
        char *dir = tu_join(t->plugins, names[i]);
        plugin *p = loader_load_one(t->rt, dir, &lo);
        assert_non_null(p);
        if (p->state != PLUGIN_READY)
            print_error("%s: %s\n", names[i], p->error ? p->error : "?");
        assert_int_equal(registry_add(t->r, p), EVH_OK);
        free(dir);
    }
    for (size_t i = 0; o->builtins && o->builtins[i]; i++) {
        char *dir = NULL;
        struct stat st;
        assert_true(asprintf(&dir, "%s/event-sources/%s", EVH_BUILD_PLUGIN_DIR,
                             o->builtins[i]) > 0);
        if (stat(dir, &st) != 0) {
            free(dir);
            assert_true(asprintf(&dir, "%s/steps/%s", EVH_BUILD_PLUGIN_DIR, o->builtins[i]) > 0);
        }
        char *copy = tu_join(t->plugins, o->builtins[i]);
        assert_int_equal(tu_copytree(dir, copy), 0);
        plugin *p = loader_load_one(t->rt, copy, &lo);
        assert_non_null(p);
        if (p->state != PLUGIN_READY)
            print_error("%s: %s\n", o->builtins[i], p->error ? p->error : "?");
        assert_int_equal(registry_add(t->r, p), EVH_OK);
        free(copy);
        free(dir);
    }
    cJSON_Delete(configs);
}

static void write_pipeline(apitest *t, const at_options *o)
{
    for (size_t i = 0; o->workflows && o->workflows[i]; i++) {
        char name[32];
        snprintf(name, sizeof name, "wf%zu.yaml", i);
        char *path = tu_join(t->wfdir, name);
        assert_int_equal(tu_write_file(path, o->workflows[i]), 0);
        free(path);
    }
    assert_int_equal(tu_write_file(t->trigfile, o->triggers ? o->triggers : "triggers: []\n"), 0);
}

apitest *at_start(const at_options *o)
{
    static const at_options none = {0};
    if (!o)
        o = &none;
    apitest *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->root = tu_tempdir("api");
    t->plugins = tu_join(t->root, "plugins");
    t->data = tu_join(t->root, "data");
    t->wfdir = tu_join(t->root, "workflows");
    t->trigfile = tu_join(t->root, "triggers.yaml");
    t->db = o->db ? strdup(o->db) : tu_join(t->root, "evhost.db");
    assert_int_equal(mkdir(t->plugins, 0755), 0);
    assert_int_equal(mkdir(t->wfdir, 0755), 0);
    assert_int_equal(mkdir(t->data, 0700), 0);

    const char *yaml = o->host_yaml ? o->host_yaml : "{}";
    diag d;
    diag_init(&d, NULL);
    if (config_parse_text(yaml, strlen(yaml), "test host.yaml", &t->cfg, &d) != EVH_OK) {
        diag_print(&d, stderr);
        fail_msg("bad test host.yaml");
    }
    diag_free(&d);
    /* always loopback, on a free port: tests run side by side */
    free(t->cfg->listen_host);
    t->cfg->listen_host = strdup("127.0.0.1");
    t->cfg->listen_port = 0;

    size_t queue = o->queue ? o->queue : 1024;
    t->rt = runtime_new(queue, t->data, 50);
    t->r = registry_new();
    load_fixtures(t, o);
    write_pipeline(t, o);

    engine_options eo = {.db_path = t->db,
                         .workers = o->workers ? o->workers : 2,
                         .dispatch_queue = queue,
                         .max_chain_depth = 4};
    char *err = NULL;
    /* the main database first: it may move an old outbox to its file */
    store_options so = {.path = t->db};
    assert_int_equal(store_open(&so, &t->st, &err), EVH_OK);
    t->outbox = store_outbox_path(t->db);
    assert_non_null(t->outbox);
    notify_options no = {.outbox_path = t->outbox,
                         .concurrency = (unsigned)t->cfg->notify_concurrency,
                         .queue = t->cfg->notify_queue_size,
                         .timeout_ms = (uint32_t)t->cfg->notify_timeout_ms,
                         .max_attempts = (uint32_t)t->cfg->notify_max_attempts,
                         .backoff_base_ms = t->cfg->notify_backoff_base_ms,
                         .backoff_cap_ms = t->cfg->notify_backoff_cap_ms,
                         .config_subs = t->cfg->subscriptions,
                         .n_config_subs = t->cfg->n_subscriptions};
    t->notify = notifier_new(&no, &err);
    if (!t->notify)
        fail_msg("notifier: %s", err ? err : "?");
    t->lc = lifecycle_new(t->notify);
    assert_non_null(t->lc);
    eo.lifecycle = t->lc;
    t->e = engine_new(t->rt, t->r, &eo, &err);
    if (!t->e)
        fail_msg("engine: %s", err ? err : "?");

    t->wf_dirs[0] = t->wfdir;
    t->trig_files[0] = t->trigfile;
    t->src = (pipeline_sources){t->wf_dirs, 1, t->trig_files, 1, t->rt};
    t->rl = (pipeline_reloader){.e = t->e, .r = t->r, .src = &t->src, .st = NULL};
    pthread_mutex_init(&t->rl.lock, NULL);
    /* the reloader writes the trigger table through its own connection */
    assert_int_equal(store_open(&so, &t->rl.st, &err), EVH_OK);
    assert_int_equal(pipeline_reload(&t->rl, NULL), EVH_OK);
    assert_int_equal(engine_start(t->e), EVH_OK);
    assert_int_equal(notifier_start(t->notify), EVH_OK);

    api_ctx_init(&t->api);
    t->api.rt = t->rt;
    t->api.reg = t->r;
    t->api.eng = t->e;
    t->api.cfg = t->cfg;
    t->api.db_path = t->db;
    t->api.outbox_path = t->outbox;
    t->api.reload = pipeline_reload;
    t->api.reload_ud = &t->rl;
    t->api.started_ns = monotonic_ns();
    t->api.notify = t->notify;
    t->hub = api_stream_hub_new(t->cfg, t->lc);
    assert_non_null(t->hub);
    t->api.stream = t->hub;
    t->http = api_start(&t->api, &err);
    if (!t->http)
        fail_msg("api: %s", err ? err : "?");
    t->port = http_port(t->http);
    assert_true(t->port > 0);
    loader_start_sources(t->r);
    return t;
}

char *at_reload_problems(apitest *t)
{
    diag d;
    diag_init(&d, NULL);
    assert_int_equal(pipeline_reload(&t->rl, &d), EVH_OK);
    size_t len = 0, cap = 1;
    char *out = calloc(1, cap);
    for (size_t i = 0; out && i < d.count; i++) {
        char *line = diag_format_item(&d, i);
        size_t n = line ? strlen(line) : 0;
        char *grown = realloc(out, cap + n + 1);
        if (grown) {
            out = grown;
            memcpy(out + len, line, n);
            len += n;
            out[len++] = '\n';
            out[len] = '\0';
            cap += n + 1;
        }
        free(line);
    }
    diag_free(&d);
    assert_non_null(out);
    return out;
}

void at_stop(apitest *t)
{
    http_stop(t->http);
    loader_stop_sources(t->r);
    runtime_stop(t->rt);
    engine_stop(t->e, 5000);
    notifier_stop(t->notify, 5000);
    engine_free(t->e);
    stream_hub_free(t->hub);
    notifier_free(t->notify);
    lifecycle_free(t->lc);
    api_ctx_release(&t->api);
    store_close(t->rl.st);
    pthread_mutex_destroy(&t->rl.lock);
    store_close(t->st);
    loader_unload_all(t->r);
    registry_free(t->r);
    runtime_free(t->rt);
    config_free(t->cfg);
    tu_rmtree(t->root);
    free(t->root);
    free(t->plugins);
    free(t->data);
    free(t->wfdir);
    free(t->trigfile);
    free(t->db);
    free(t->outbox);
    free(t);
}


int at_request(apitest *t, const char *method, const char *path, const char *const *headers,
               const char *body, size_t body_len, at_response *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char url[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", t->port, path);
    tu_buf b = {0}, h = {0};
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    hl = curl_slist_append(hl, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tu_buf_append);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, tu_buf_append);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(body_len == (size_t)-1 ? strlen(body) : body_len));
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    out->body = b.data ? b.data : strdup("");
    out->body_len = b.len;
    out->headers = h.data ? h.data : strdup("");
    out->json = cJSON_Parse(out->body);
    return rc == CURLE_OK ? 0 : -1;
}

int at_json(apitest *t, const char *method, const char *path, const char *body,
            at_response *out)
{
    static const char *const h[] = {"Content-Type: application/json", NULL};
    return at_request(t, method, path, h, body, (size_t)-1, out);
}

void at_response_free(at_response *r)
{
    free(r->body);
    free(r->headers);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

char *at_header(const at_response *r, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        if (!end)
            end = line + strlen(line);
        if ((size_t)(end - line) > n && !strncasecmp(line, name, n) && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            return strndup(v, (size_t)(end - v));
        }
        line = *end ? end + 2 : end;
    }
    return NULL;
}

void at_wait_settled(apitest *t, unsigned long long events)
{
    long long end = tu_now_ms() + 20000;
    engine_stats s;
    do {
        engine_get_stats(t->e, &s);
        if (s.dispatched + s.unmatched + s.chain_cut >= events)
            return;
        usleep(5000);
    } while (tu_now_ms() < end);
    fail_msg("only %llu of %llu events settled",
             (unsigned long long)(s.dispatched + s.unmatched), events);
}

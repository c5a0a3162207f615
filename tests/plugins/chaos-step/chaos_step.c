/* chaos-step: appends "<execution_id> <step_id> <attempt> <pid>\n" to
 * record_file when a run starts (before any work, so a run the daemon is
 * killed in is recorded too), sleeps sleep_ms (a window for the kill to land
 * in), then fails while attempt <= fail_times and succeeds after.  The chaos
 * test counts the lines: how often each step of each execution really ran,
 * and in which daemon process. */
#include <evhost/evhost.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef struct cstep {
    const evh_host_api *api;
    evh_host *host;
} cstep;

static int32_t cstep_init(const evh_host_api *api, evh_host *host, void **out, char **errmsg)
{
    cstep *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    *out = c;
    (void)errmsg;
    return EVH_OK;
}

static long config_long(const evh_host_api *api, const evh_step_input *in, const char *key)
{
    char *v = api->json_get(in->config_json, in->config_len, key);
    long n = v ? atol(v) : 0;
    api->free(v);
    return n;
}

static int32_t cstep_run(void *p, const evh_step_input *in, evh_step_output *out)
{
    cstep *c = p;
    const evh_host_api *api = c->api;
    char *path = api->json_get_string(in->config_json, in->config_len, "record_file");
    int fd = path ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    api->free(path);
    if (fd < 0) {
        out->error_message = api->mprintf("cannot open record_file");
        return EVH_E_IO;
    }
    char line[160];
    int n = snprintf(line, sizeof line, "%s %s %u %ld\n", in->execution_id, in->step_id,
                     in->attempt, (long)getpid());
    /* one write(2) with O_APPEND: lines of concurrent runs never interleave */
    ssize_t w = n > 0 && (size_t)n < sizeof line ? write(fd, line, (size_t)n) : -1;
    close(fd);
    if (w != n) {
        out->error_message = api->mprintf("cannot write record_file");
        return EVH_E_IO;
    }
    long ms = config_long(api, in, "sleep_ms");
    if (ms > 0) {
        struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&t, NULL);
    }
    if (in->attempt <= (uint32_t)config_long(api, in, "fail_times")) {
        out->error_message = api->mprintf("failing attempt %u on purpose", in->attempt);
        return EVH_E_PLUGIN;
    }
    out->output_json = api->mprintf("{\"attempt\":%u}", in->attempt);
    return EVH_OK;
}

static void cstep_fini(void *p)
{
    cstep *c = p;
    c->api->free(c);
}

static const evh_step desc = {
    .struct_size = sizeof(evh_step), .init = cstep_init, .run = cstep_run, .fini = cstep_fini};
EVH_DECLARE_STEP("chaos-step", &desc)

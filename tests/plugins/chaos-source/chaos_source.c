/* chaos-source: emits "tick" {life, seq} events, seq 0, 1, 2, ... at `rate`
 * per second, and after each emit that returned EVH_OK appends
 * "<life> <seq>\n" to record_file and fsyncs it, so the chaos test knows
 * exactly which emits were acknowledged when it SIGKILLs the daemon.  The
 * record comes after the emit: an event can be acknowledged and not yet
 * recorded, never recorded and not acknowledged.  "posted" is declared for
 * the events the test sends through the REST API as this source.  emit:
 * false makes it emit nothing (the test's last, draining daemon). */
#include <evhost/evhost.h>

#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

typedef struct cs {
    const evh_host_api *api;
    evh_host *host;
} cs;

static int32_t cs_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    cs *c = api->alloc(sizeof *c);
    if (!c)
        return EVH_E_NOMEM;
    c->api = api;
    c->host = host;
    *ctx = c;
    (void)errmsg;
    return EVH_OK;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int32_t cs_run(void *ctx)
{
    cs *c = ctx;
    const evh_host_api *api = c->api;
    const char *path = api->config_string(c->host, "record_file", NULL);
    long long life = (long long)api->config_int(c->host, "life", 0);
    int64_t rate = api->config_int(c->host, "rate", 300);
    int fd = path ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    if (fd < 0) {
        api->log(c->host, EVH_LOG_ERROR, "cannot open record_file '%s'", path ? path : "");
        return EVH_E_IO;
    }
    int emit = api->config_bool(c->host, "emit", 1);
    int64_t start = now_ns();
    for (long long seq = 0; emit && !api->stopping(c->host);) {
        /* pace: tick seq is due at start + seq/rate seconds */
        int64_t due = start + seq * 1000000000 / rate;
        struct timespec t = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        char data[64];
        snprintf(data, sizeof data, "{\"life\":%lld,\"seq\":%lld}", life, seq);
        int32_t rc = api->emit(c->host, "tick", data, EVH_NUL_TERMINATED, NULL);
        if (rc == EVH_E_QUEUE_FULL)
            continue; /* the same seq again: numbers stay gapless */
        if (rc != EVH_OK)
            break;
        char line[64];
        int n = snprintf(line, sizeof line, "%lld %lld\n", life, seq);
        /* one write(2) per line with O_APPEND: a kill never leaves half a
         * line followed by another */
        if (write(fd, line, (size_t)n) != n || fdatasync(fd) != 0) {
            api->log(c->host, EVH_LOG_ERROR, "cannot write record_file '%s'", path);
            break;
        }
        seq++;
    }
    close(fd);
    while (api->wait(c->host, 1000) == EVH_OK)
        ;
    return EVH_OK;
}

static void cs_fini(void *ctx)
{
    cs *c = ctx;
    c->api->free(c);
}

static const evh_source cs_source = {.struct_size = sizeof(evh_source),
                                     .init = cs_init,
                                     .run = cs_run,
                                     .fini = cs_fini};
EVH_DECLARE_SOURCE("chaos-source", &cs_source)

/*
 * http_floor.c - the floor under the HTTP ingest benchmark: a libmicrohttpd
 * server that reads each POST body and answers 202 with an event id, doing
 * nothing else (no JSON, no database).  bench/api.sh --floor runs wrk
 * against it exactly as against the daemon, so the two figures compare:
 * no ingest on this machine can answer faster than this server does.
 *
 *   http_floor PORT [THREADS]      serves until killed
 *
 * Configured as host/src/http.c configures the daemon's server (internal
 * epoll thread pool, the same per-connection memory), except for what only
 * costs: no suspend/resume, no limits.
 */
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char BODY[] = "{\"id\":\"01a215d5-25cb-7ec7-a605-ef75a6c327b8\",\"status\":\"accepted\"}";

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    static int started;
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload;
    if (!*state) { /* headers only: the body comes in the next calls */
        *state = &started;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0; /* taken */
        return MHD_YES;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof BODY - 1, (void *)BODY, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_ACCEPTED, r);
    MHD_destroy_response(r);
    return ret;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: http_floor PORT [THREADS]\n");
        return 2;
    }
    unsigned threads = argc > 2 ? (unsigned)atoi(argv[2]) : 8;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)atoi(argv[1]), NULL, NULL,
        on_request, NULL, MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT, 1024u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "http_floor: cannot listen on port %s\n", argv[1]);
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}

/*
 * receiver.h - the webhook receiver the benchmarks deliver to:
 * libmicrohttpd in the benchmark's own process, on 127.0.0.1 and a port
 * of the kernel's choosing, a pool of threads (epoll) that read each body
 * and answer 204 at once, keep-alive.  Header-only, for bench_webhooks.c
 * and curl_floor.c (which links libcurl and libmicrohttpd alone), so that
 * both measure against the same receiver.
 */
#ifndef EVH_BENCH_RECEIVER_H
#define EVH_BENCH_RECEIVER_H

#include <stdatomic.h>
#include <stddef.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>

/* Requests answered, and TCP connections accepted, so far. */
static atomic_long received, connections;

/* While held (receiver_hold), every request waits for its answer, and so
 * does everything else its receiver thread serves: the sender's transfers
 * stay on the wire and it sends nothing more. */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_released = PTHREAD_COND_INITIALIZER;
static int held;

static inline void receiver_hold(int on)
{
    pthread_mutex_lock(&hold_lock);
    held = on;
    if (!on)
        pthread_cond_broadcast(&hold_released);
    pthread_mutex_unlock(&hold_lock);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    if (!*con_cls) {
        *con_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* the body is read and dropped */
        return MHD_YES;
    }
    *con_cls = NULL;
    pthread_mutex_lock(&hold_lock);
    while (held)
        pthread_cond_wait(&hold_released, &hold_lock);
    pthread_mutex_unlock(&hold_lock);
    atomic_fetch_add(&received, 1);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, 204, r);
    MHD_destroy_response(r);
    return ret;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls, (void)c, (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&connections, 1);
}

/* Start it with threads threads; *port is where it listens.  NULL when it
 * cannot start. */
static struct MHD_Daemon *receiver_start(unsigned threads, int *port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY, 0, NULL, NULL, on_request,
        NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE,
        threads, MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        NULL, MHD_OPTION_END);
    if (d)
        *port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return d;
}

#endif

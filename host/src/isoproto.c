/*
 * isoproto.c - frames over the host <-> plugin child socket (see isoproto.h).
 */
#include "isoproto.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "event.h"

#define HEADER_LEN 5
/* How long the rest of a frame may take once its first byte arrived. */
#define FRAME_REST_MS 10000

/* Milliseconds until deadline_ns (0: none -> -1 = forever), at least 0. */
static int ms_until(int64_t deadline_ns)
{
    if (deadline_ns == 0)
        return -1;
    int64_t left = deadline_ns - monotonic_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > 1000000000 ? 1000000000 : (int)ms;
}

/* Wait for fd to be ready for events (POLLIN/POLLOUT) within wait_ms
 * (-1: forever).  1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int wait_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, wait_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        return n > 0;
    }
}

static int write_all(int fd, const char *buf, size_t len, int64_t deadline_ns)
{
    while (len > 0) {
        int w = wait_fd(fd, POLLOUT, ms_until(deadline_ns));
        if (w <= 0)
            return -1;
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int iso_send(int fd, uint8_t type, const cJSON *head, const void *raw, size_t raw_len,
             int64_t deadline_ns)
{
    char *text = head ? cJSON_PrintUnformatted(head) : strdup("{}");
    if (!text)
        return -1;
    size_t head_len = strlen(text);
    size_t payload = head_len + (raw ? 1 + raw_len : 0);
    if (payload > ISO_FRAME_MAX || payload < head_len) {
        free(text);
        return -1;
    }
    char *buf = malloc(HEADER_LEN + payload);
    if (!buf) {
        free(text);
        return -1;
    }
    uint32_t n = (uint32_t)payload;
    buf[0] = (char)(n & 0xff);
    buf[1] = (char)((n >> 8) & 0xff);
    buf[2] = (char)((n >> 16) & 0xff);
    buf[3] = (char)((n >> 24) & 0xff);
    buf[4] = (char)type;
    memcpy(buf + HEADER_LEN, text, head_len);
    if (raw) {
        buf[HEADER_LEN + head_len] = '\0';
        if (raw_len)
            memcpy(buf + HEADER_LEN + head_len + 1, raw, raw_len);
    }
    free(text);
    int rc = write_all(fd, buf, HEADER_LEN + payload, deadline_ns);
    free(buf);
    return rc;
}

/* Read exactly len bytes before deadline_ns.  0 done, 1 EOF before the first
 * byte (only when allow_eof), -1 error, EOF mid-way or timeout. */
static int read_all(int fd, char *buf, size_t len, int64_t deadline_ns, int allow_eof)
{
    size_t got = 0;
    while (got < len) {
        int w = wait_fd(fd, POLLIN, ms_until(deadline_ns));
        if (w <= 0)
            return -1;
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n == 0 && got == 0 && allow_eof)
            return 1;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

int iso_recv(int fd, iso_frame *f, int wait_ms, int64_t deadline_ns)
{
    memset(f, 0, sizeof *f);
    int w = wait_fd(fd, POLLIN, wait_ms);
    if (w == 0)
        return ISO_RECV_IDLE;
    if (w < 0)
        return ISO_RECV_BROKEN;
    int64_t rest = monotonic_ns() + (int64_t)FRAME_REST_MS * 1000000;
    if (deadline_ns > rest)
        rest = deadline_ns;
    unsigned char hdr[HEADER_LEN];
    int r = read_all(fd, (char *)hdr, sizeof hdr, rest, 1);
    if (r == 1)
        return ISO_RECV_EOF;
    if (r != 0)
        return ISO_RECV_BROKEN;
    uint32_t n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
                 (uint32_t)hdr[3] << 24;
    if (n > ISO_FRAME_MAX)
        return ISO_RECV_BROKEN;
    f->type = hdr[4];
    f->data = malloc((size_t)n + 1);
    if (!f->data)
        return ISO_RECV_BROKEN;
    if (read_all(fd, f->data, n, rest, 0) != 0) {
        iso_frame_free(f);
        return ISO_RECV_BROKEN;
    }
    f->data[n] = '\0';
    f->len = n;
    size_t head_len = strnlen(f->data, n);
    if (head_len < n) {
        f->raw = f->data + head_len + 1;
        f->raw_len = n - head_len - 1;
    }
    f->head = cJSON_ParseWithLength(f->data, head_len);
    if (f->head && !cJSON_IsObject(f->head)) {
        cJSON_Delete(f->head);
        f->head = NULL;
    }
    return ISO_RECV_FRAME;
}

void iso_frame_free(iso_frame *f)
{
    if (!f)
        return;
    cJSON_Delete(f->head);
    free(f->data);
    memset(f, 0, sizeof *f);
}

const char *iso_str(const iso_frame *f, const char *key)
{
    const cJSON *v = f->head ? cJSON_GetObjectItemCaseSensitive(f->head, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int64_t iso_int(const iso_frame *f, const char *key, int64_t fallback)
{
    const cJSON *v = f->head ? cJSON_GetObjectItemCaseSensitive(f->head, key) : NULL;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= -9.2e18 && v->valuedouble <= 9.2e18))
        return fallback;
    return (int64_t)v->valuedouble;
}

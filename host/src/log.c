/*
 * log.c - the host log (see log.h).
 *
 * Each message is formatted completely in memory and handed to the kernel
 * with one write() under a mutex, so lines from concurrent threads (plugin
 * threads included) never interleave.  Control characters in a message are
 * replaced, so a plugin cannot forge extra log lines with '\n'.
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "event.h"

/* Longer messages are cut: a log line is for people, not for payloads. */
#define LOG_LINE_MAX (64 * 1024)

static atomic_int log_level = EVH_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* Padded to one width so the columns after it line up. */
static const char *const level_tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

void log_set_level(int level)
{
    if (level < EVH_LOG_ERROR)
        level = EVH_LOG_ERROR;
    if (level > EVH_LOG_DEBUG)
        level = EVH_LOG_DEBUG;
    atomic_store(&log_level, level);
}

int log_get_level(void)
{
    return atomic_load(&log_level);
}

int log_level_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = EVH_LOG_ERROR; i <= EVH_LOG_DEBUG; i++) {
        if (!strcasecmp(name, level_names[i]))
            return i;
    }
    if (!strcasecmp(name, "warning"))
        return EVH_LOG_WARN;
    return -1;
}

/* One line: no control characters except tab inside the message. */
static void flatten(char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            *s = ' ';
    }
}

static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* nowhere left to report a failing log */
        buf += n;
        len -= (size_t)n;
    }
}

/* The attribute lets the compiler check that fmt is used as a format. */
__attribute__((format(printf, 3, 0))) void log_msgv(int level, const char *component,
                                                    const char *fmt, va_list ap)
{
    if (level < EVH_LOG_ERROR)
        level = EVH_LOG_ERROR;
    if (level > EVH_LOG_DEBUG)
        level = EVH_LOG_DEBUG;
    if (level > atomic_load(&log_level) || !fmt)
        return;
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    if (msg && strlen(msg) > LOG_LINE_MAX)
        strcpy(msg + LOG_LINE_MAX - 3, "...");
    if (msg)
        flatten(msg);
    char ts[EVH_TIMESTAMP_LEN + 1];
    rfc3339_now(ts);
    char *line = NULL;
    int n = asprintf(&line, "%s %s [%s] %s\n", ts, level_tags[level],
                     component ? component : "host", msg ? msg : "(out of memory)");
    free(msg);
    if (n < 0)
        return;
    pthread_mutex_lock(&log_lock);
    write_all(line, (size_t)n);
    pthread_mutex_unlock(&log_lock);
    free(line);
}

void log_msg(int level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_msgv(level, component, fmt, ap);
    va_end(ap);
}

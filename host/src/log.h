/*
 * log.h - the host log: one line per message on stderr,
 *   2026-11-23T10:30:00.123Z INFO  [loader] plugin 'my-timer' loaded
 * Thread-safe (one write per line).  Secrets must never be passed here.
 */
#ifndef EVH_LOG_H
#define EVH_LOG_H

#include <stdarg.h>

#include <evhost/evhost.h>

/* Messages above this level (EVH_LOG_ERROR .. EVH_LOG_DEBUG) are dropped. */
void log_set_level(int level);
int log_get_level(void);
/* "error", "warn", "info", "debug" -> level; -1 when unknown. */
int log_level_parse(const char *name);

void log_msg(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_msgv(int level, const char *component, const char *fmt, va_list ap);

#define log_error(comp, ...) log_msg(EVH_LOG_ERROR, comp, __VA_ARGS__)
#define log_warn(comp, ...) log_msg(EVH_LOG_WARN, comp, __VA_ARGS__)
#define log_info(comp, ...) log_msg(EVH_LOG_INFO, comp, __VA_ARGS__)
#define log_debug(comp, ...) log_msg(EVH_LOG_DEBUG, comp, __VA_ARGS__)

#endif

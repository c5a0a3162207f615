/*
 * crash.h - plugin crashes: the crash record file, and attributing a fatal
 * signal of the host to the in-process plugin whose code caused it.
 *
 * The record file is <data_dir>/crashes.log, one line per crash, appended
 * with write(2) (O_APPEND) so that even a signal handler can add to it:
 *
 *     <unix seconds> <plugin id> <in-process|process> <what>
 *     1764000000 crashy in-process SIGSEGV at crashy.so+0x1139
 *     1764000042 crashy process SIGABRT
 *
 * At start the daemon reads it (crash_open), keeps the lines young enough
 * to matter and rewrites it with just those, so it never grows without
 * bound.  isolate.c counts the lines of a plugin within plugins.
 * crash_window_s to quarantine it (see isolate.h).
 *
 * In-process attribution: crash_install_handlers sets a handler for
 * SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT.  It looks the faulting
 * instruction (or, when that is in libc or the host, the return addresses
 * on the stack) up in the address ranges of the loaded plugin libraries,
 * which crash_register took from the dynamic linker when each was dlopened
 * (the dladdr information, precomputed, because dladdr itself takes a lock
 * and is not async-signal-safe).  It then writes one log line naming the
 * plugin to stderr and one record line to the file, with write(2) only and
 * preformatted data, restores the default action and lets the signal kill
 * the process as it would have without the handler (exit status and core
 * dump unchanged).  A crash while a library is being dlopened (its
 * constructors) is attributed to the plugin being loaded.  Not attributed:
 * a stack overflow (the handler has no stack to run on) and a crash in the
 * host's own code.
 */
#ifndef EVH_CRASH_H
#define EVH_CRASH_H

#include <stddef.h>
#include <stdint.h>

#include "evh_limits.h"

#define CRASH_FILE_NAME "crashes.log"

typedef struct crash_entry {
    int64_t at; /* unix seconds */
    char id[EVH_ID_MAX_LEN + 1];
    char mode[16];  /* "in-process" or "process" */
    char what[160]; /* "SIGSEGV at crashy.so+0x1139", "exited with status 3" */
} crash_entry;

/*
 * Read <data_dir>/crashes.log, keep the records of the last keep_s seconds
 * (in memory and in the file, which is rewritten), and open it for
 * appending.  Returns 0, or -1 when it cannot (logged; crashes are then only
 * counted in memory).  Calling it again closes the previous file first.
 */
int crash_open(const char *data_dir, int keep_s);
void crash_close(void);

/* Append a record (from normal code: crashes of isolated plugins). */
void crash_append(const char *id, const char *mode, const char *what);

/* The records of plugin id at or after `since` (unix seconds): their count,
 * and the newest in *last (may be NULL). */
size_t crash_count(const char *id, int64_t since, crash_entry *last);

/* Install the fatal-signal handler (the daemon, once, before loading
 * plugins). */
void crash_install_handlers(void);

/* Around the dlopen of an in-process plugin: crash_loading names the plugin
 * being loaded; crash_loaded (dl NULL when the dlopen failed) records the
 * address ranges of its library (named by `library` in messages) and ends
 * the loading. */
void crash_loading(const char *id);
void crash_loaded(const char *id, const char *library, void *dl);
/* Before dlclose. */
void crash_unregister(void *dl);

#endif

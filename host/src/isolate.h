/*
 * isolate.h - crash isolation: plugins in child processes, crash counting,
 * restart backoff and quarantine.
 *
 * Which plugins: plugin.json "isolation": "process" (default "in-process"),
 * overridden per plugin by host.yaml plugins.isolation: {<id>: process |
 * in-process}.
 *
 * An isolated plugin is never dlopened by the host.  The loader asks a
 * short-lived child to dlopen it and describe its descriptor
 * (isolate_open), and gives the plugin record a stand-in descriptor with the
 * same facts (ids, ABI, sizes, which callbacks exist) whose callbacks are
 * proxies: the loader's checks, the source threads, the executor and the
 * webhook route then work on it exactly as on an in-process plugin.  Each
 * instance (the source's one, each step instance) gets its own child
 * (`evhost __plugin-child`, see plugin_child.h) running the plugin's init,
 * run, stop, http and fini; the protocol is in isoproto.h.
 *
 * When a child dies without being asked to (a signal, an exit), the call in
 * flight fails with "plugin '<id>' crashed: SIGSEGV" (a step run), or the
 * source is restarted in a new child after a capped, jittered backoff
 * (100 ms doubling to 30 s, each delay drawn from its upper half).  A step
 * run past its timeout is ended by killing its child (SIGKILL); the next run
 * gets a new one.  Every crash is appended to <data_dir>/crashes.log (see
 * crash.h).  A plugin with plugins.crash_limit crashes (default 3) within
 * plugins.crash_window_s (default 300) is QUARANTINED: no new child, its
 * runs fail at once saying so, and the API shows state "quarantined" with
 * the reason.  The quarantine lasts until the host restarts; at start, a
 * plugin whose recorded crashes (in-process ones included, see crash.h)
 * within the window reach the limit is quarantined again without being
 * loaded, unless its library changed since (a newer mtime).
 */
#ifndef EVH_ISOLATE_H
#define EVH_ISOLATE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "registry.h"

#define ISOLATE_DEFAULT_CRASH_LIMIT 3
#define ISOLATE_DEFAULT_CRASH_WINDOW_S 300

typedef struct isolate_settings {
    /* The binary started as `<helper> __plugin-child <id>`; NULL: the
     * running binary (/proc/self/exe), which is always exactly as new as
     * the host.  A test program that loads isolated plugins must name the
     * evhost binary here: /proc/self/exe would be the test program. */
    const char *helper;
    /* host.yaml plugins.isolation: {"<id>": "process" | "in-process"};
     * copied; NULL: none. */
    const cJSON *overrides;
    int crash_limit;    /* <= 0: ISOLATE_DEFAULT_CRASH_LIMIT */
    int crash_window_s; /* <= 0: ISOLATE_DEFAULT_CRASH_WINDOW_S */
} isolate_settings;

/* Set the settings (before loading plugins); NULL: the defaults. */
void isolate_configure(const isolate_settings *s);

/* 1 when plugin p (its plugin.json read) runs in a child process. */
int isolate_wanted(const plugin *p);

/*
 * The loader, before any code of p runs: quarantine p when its recorded
 * crashes within the window reach the limit.  Returns EVH_OK, or
 * EVH_E_STATE with p->state PLUGIN_QUARANTINED, p->error the reason, and a
 * log line.  A plugin with fewer crashes is reported in the log.
 */
int isolate_check_quarantine(plugin *p);

/* The loader's dlopen step for an isolated plugin: p->desc becomes the
 * stand-in descriptor and p->iso its state.  Otherwise a code and *why
 * (malloc'd).  copy_dir (loader_options.library_copy_dir, may be NULL): the
 * children load a private copy of the library made there, kept until
 * isolate_close, so that a replaced file never changes the code a
 * restarted child runs. */
int isolate_open(plugin *p, const char *copy_dir, char **why);

/* Drop the stand-in of p (p->desc and p->iso become NULL).  EVH_E_STATE,
 * keeping it, while instances of p still live. */
int isolate_close(plugin *p);

/* The executor, right before an isolated step's run on this thread: its
 * timeout in ms (0: none).  The child is killed when it passes. */
void isolate_set_call_timeout(uint32_t timeout_ms);

/* For the API. */
typedef struct isolate_status {
    const char *isolation; /* "process" or "in-process" */
    int quarantined;
    char reason[512];       /* why, when quarantined */
    unsigned crashes;       /* recorded within the window */
    int window_s;
    int limit;
    char last_crash[256];   /* "SIGSEGV (process) at 2026-...Z", "" when none */
} isolate_status;

void isolate_plugin_status(const plugin *p, isolate_status *st);

#endif

/*
 * deadline.h - deadlines on the calls into plugins that have none of their
 * own: a source's init and stop request (stop callback, then run()
 * returning), a step's init and validate.  Step runs have theirs in the
 * workflow (execute.c).
 *
 * A call into a plugin cannot be interrupted safely in-process.  So a call
 * with a deadline runs on a helper thread, and when the deadline passes the
 * caller stops waiting and ABANDONS it: the helper thread is left running
 * (detached), the plugin is never called again, never finalized and its
 * library never unloaded (its code may still be running).  The caller
 * reports it and goes on, so a hung plugin cannot hang a reload or the
 * shutdown.
 *
 * The deadlines are process-wide (host.yaml plugins.init_timeout_ms and
 * plugins.stop_timeout_ms; the daemon sets them at start).  0 means no
 * deadline: the call runs on the caller's thread and is waited for.
 */
#ifndef EVH_DEADLINE_H
#define EVH_DEADLINE_H

#include <stdint.h>

#include <evhost/evhost.h>

#define DEADLINE_INIT_DEFAULT_MS 10000
#define DEADLINE_STOP_DEFAULT_MS 5000

void deadline_set_init_ms(uint32_t ms);
uint32_t deadline_init_ms(void);
void deadline_set_stop_ms(uint32_t ms);
uint32_t deadline_stop_ms(void);

/*
 * s->init(hostapi_table(), h, ctx, errmsg) with the init deadline.  Returns
 * what init returned, and *abandoned = 0; or, when init did not return in
 * time, EVH_E_TIMEOUT and *abandoned = 1: the helper thread owns h from
 * then on (the caller must not free it), and if init ever returns it
 * finalizes what init made (fini when init succeeded) and frees h.
 */
int32_t deadline_source_init(const evh_source *s, evh_host *h, void **ctx, char **errmsg,
                             int *abandoned);

/* s->stop(ctx) (which must not be NULL), waiting at most timeout_ms (0: no
 * deadline).  0 when it returned, -1 when it was abandoned. */
int deadline_source_stop(const evh_source *s, void *ctx, uint32_t timeout_ms);

/* s->init with the init deadline, as deadline_source_init. */
int32_t deadline_step_init(const evh_step *s, evh_host *h, void **ctx, char **errmsg,
                           int *abandoned);

/* s->validate(hostapi_table(), h, field, errmsg) with the init deadline
 * (workflow loading waits on it).  When abandoned (EVH_E_TIMEOUT,
 * *abandoned = 1) the helper thread owns h and frees it, and whatever
 * validate returns, if it ever does. */
int32_t deadline_step_validate(const evh_step *s, evh_host *h, char **field, char **errmsg,
                               int *abandoned);

#endif

/*
 * recorder.h - group commit for execution records.
 *
 * Workers used to write each record (execution created, running, each step
 * run, finished, event status) in a transaction of its own: ~6 SQLite
 * transactions per execution, ~100 us each, and every worker serialized on
 * the database's one write lock (docs/BENCHMARKS.md).  Now a worker hands
 * its record writes to the recorder's thread, which applies whatever has
 * queued up in one transaction, in the order they were handed in, and goes
 * on at once: the same group commit that stores events.
 *
 * What stays true (docs/pipeline.md, "Exactly one execution per trigger and
 * event"): a step's result is committed before the next step of that
 * execution, or the step's next retry, starts (execute.c waits for it with
 * recorder_wait), so after a crash only the attempt that was running, or
 * had just finished and was not yet recorded, runs again.  Counters handed with a write (the engine's
 * executions_ok, dispatched ...) move only once it is committed, so whoever
 * waits on them reads the records in the database.
 *
 * Every function but recorder_new/free may be called from any thread.
 */
#ifndef EVH_RECORDER_H
#define EVH_RECORDER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct recorder recorder;

/* Opens its own connection to the database (o->path); capacity bounds the
 * writes waiting (a worker handing in more waits: memory stays bounded). */
recorder *recorder_new(const store_options *o, size_t capacity, char **err);
int recorder_start(recorder *r);
/* Commit everything handed in so far and end the thread. */
void recorder_stop(recorder *r);
void recorder_free(recorder *r);

/*
 * The writes.  Each copies what it needs and returns a ticket for
 * recorder_wait, or 0 when out of memory (the write is lost, as if the
 * process had died: recovery covers it).  `count`, when not NULL, is
 * incremented by `by` once the write is committed.
 */
uint64_t recorder_execution_create(recorder *r, const store_execution *x);
uint64_t recorder_execution_status(recorder *r, const char *id, const char *status,
                                   const char *error, atomic_ullong *count);
uint64_t recorder_step_run(recorder *r, const store_step_run *run);
uint64_t recorder_events_status(recorder *r, const char *const *ids, size_t n,
                                const char *status, atomic_ullong *count);
/* No write: only the count, once everything handed in before is committed. */
uint64_t recorder_count(recorder *r, atomic_ullong *count, unsigned long long by);

/* Block until the write with this ticket (and every earlier one) is
 * committed or was given up on.  EVH_OK, or EVH_E_IO when its transaction
 * failed (logged).  Ticket 0 returns at once. */
int recorder_wait(recorder *r, uint64_t ticket);

/* The ticket of the last write handed in (for a wait covering all). */
uint64_t recorder_last_ticket(recorder *r);

/* Its connection, to hand its checkpoints to another thread
 * (store_defer_checkpoints) before recorder_start. */
store *recorder_store(recorder *r);

#endif

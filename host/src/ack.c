/*
 * ack.c - waiting for an event to be durable (see evh_ack in event.h).
 *
 * One mutex and one condition variable for the whole process: the writer
 * completes a batch of events at a time and wakes everyone once per batch,
 * which costs one broadcast per commit instead of one wake-up per event.
 */
#include <pthread.h>

#include "event.h"

static pthread_mutex_t ack_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ack_cond = PTHREAD_COND_INITIALIZER;

void ack_complete(evh_event *const *evs, size_t n, int rc)
{
    int any = 0;
    evh_ack *callbacks = NULL;
    pthread_mutex_lock(&ack_lock);
    for (size_t i = 0; i < n; i++) {
        evh_ack *a = evs[i]->ack;
        if (!a)
            continue;
        evs[i]->ack = NULL; /* the waiter's stack frame is not ours to touch */
        a->rc = rc;
        if (a->notify) {
            a->next_notify = callbacks;
            callbacks = a;
        } else {
            a->done = 1;
            any = 1;
        }
    }
    pthread_mutex_unlock(&ack_lock);
    if (any)
        pthread_cond_broadcast(&ack_cond);
    while (callbacks) {
        evh_ack *a = callbacks;
        callbacks = a->next_notify; /* read first: notify may free a */
        a->done = 1;
        a->notify(a);
    }
}

int ack_wait(evh_ack *a)
{
    pthread_mutex_lock(&ack_lock);
    while (!a->done)
        pthread_cond_wait(&ack_cond, &ack_lock);
    pthread_mutex_unlock(&ack_lock);
    return a->rc;
}

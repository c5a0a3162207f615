/*
 * watch.h - the thread behind hot reload (reload.h).
 *
 * With inotify on, it watches every plugin directory and each plugin folder
 * in them (IN_CREATE, IN_MOVED_TO, IN_MOVED_FROM, IN_DELETE, IN_CLOSE_WRITE,
 * IN_ATTRIB), but not the data directory should it sit there
 * (reloader_is_data); a folder being copied makes many events, so it waits until
 * the directories were quiet for debounce_ms (or at most 10 x debounce_ms
 * after the first event, should they never be) and then rescans
 * (reloader_rescan).  A directory that is missing or goes away is watched
 * again once it is back (checked every second).
 *
 * The watches are in place when watcher_start returns, and the thread
 * then rescans once (changes made between the first load and the watches
 * are found by their fingerprints).  With or without inotify, it
 * unloads drained plugins (reloader_reap) every second.
 */
#ifndef EVH_WATCH_H
#define EVH_WATCH_H

#include "reload.h"

typedef struct watcher watcher;

/* NULL when the thread cannot be started (logged). */
watcher *watcher_start(reloader *rl, int use_inotify, unsigned debounce_ms);
/* Stop and join the thread (a rescan in progress finishes first). */
void watcher_stop(watcher *w);

#endif

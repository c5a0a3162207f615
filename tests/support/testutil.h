/*
 * testutil.h - helpers shared by the tests: temporary directories that clean
 * up after themselves, copying fixture plugin folders, writing files.
 */
#ifndef EVH_TESTUTIL_H
#define EVH_TESTUTIL_H

#include <stddef.h>

/* mkdtemp under $TMPDIR (or /tmp) with the given tag; returns a malloc'd
 * path.  Aborts the test program on failure. */
char *tu_tempdir(const char *tag);

/* rm -rf without a shell. */
void tu_rmtree(const char *path);

/* Copy a directory tree (regular files and folders), keeping file modes. */
int tu_copytree(const char *src, const char *dst);

/* Copy fixture plugin folder EVH_FIXTURE_DIR/<name> to <dst_dir>/<as>
 * (as == NULL: the same name).  Returns 0 on success. */
int tu_copy_fixture(const char *name, const char *dst_dir, const char *as);

/* Write text to path (mode 0644), creating or truncating.  0 on success. */
int tu_write_file(const char *path, const char *text);

/* A malloc'd "a/b". */
char *tu_join(const char *a, const char *b);

/* A malloc'd copy of a whole file, NULL when unreadable. */
char *tu_read_file(const char *path);

#include <sys/types.h>

/* Run argv (no shell) with stdout and stderr captured into malloc'd strings
 * (may be NULL to discard).  Kills the child after timeout_ms.  Returns the
 * exit status (0..255), 128+signal when killed, or -1 when it could not
 * start. */
int tu_run(char *const argv[], char **out, char **err, int timeout_ms);

/* Start argv in the background with stderr (and stdout) appended to
 * log_path.  Returns the pid, or -1. */
pid_t tu_spawn(char *const argv[], const char *log_path);

/* Wait up to timeout_ms for pid; returns the exit status as tu_run does, or
 * -2 on timeout (the process is then left running). */
int tu_wait(pid_t pid, int timeout_ms);

/* Poll until `needle` appears in the file at path (up to timeout_ms).
 * Returns 1 when found. */
int tu_wait_for_text(const char *path, const char *needle, int timeout_ms);

/* The port of a daemon's API, from the "API on http://HOST:PORT/" line of
 * its log at path (host: "127.0.0.1", or what it listens on), waiting up to
 * timeout_ms; 0 when the line did not come. */
int tu_wait_api_port(const char *path, const char *host, int timeout_ms);

/* Milliseconds of a monotonic clock. */
long long tu_now_ms(void);

/* A growing, NUL-terminated buffer, and a libcurl write callback (userdata:
 * the tu_buf) that appends to it; it answers 0, which makes curl fail the
 * transfer, when memory runs out. */
typedef struct tu_buf {
    char *data;
    size_t len;
} tu_buf;
size_t tu_buf_append(char *p, size_t size, size_t n, void *tu_buf_ptr);

#endif

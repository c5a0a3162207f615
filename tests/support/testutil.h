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

#endif

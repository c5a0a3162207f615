/* file - writes, appends, copies, moves or deletes one file, inside the root
 * folders its config names and nowhere else.
 *
 * Paths usually come from templates, that is from event data, so the step
 * treats them as hostile:
 *
 *   - a path is relative to the first root, or absolute and then under a
 *     root (as configured or as resolved) before anything is opened; any
 *     ".." component is refused outright (no clean-up that could be fooled);
 *   - the parent directory is opened and its real location (the kernel's
 *     name for the open descriptor, /proc/self/fd, else realpath) must be a
 *     root or below one: a symlinked directory leading outside is refused;
 *   - the final component is always reached through that directory
 *     descriptor (openat, renameat, unlinkat) and never followed when it is
 *     a symbolic link (O_NOFOLLOW, or lstat before rename/unlink), so a
 *     link planted inside a root cannot be written, read or deleted through;
 *   - only regular files are touched (no FIFOs, devices or directories), and
 *     a file with other hard links (one may be outside) is not written in
 *     place;
 *   - missing parent directories are created only with mkdirs: true, one
 *     at a time with mkdirat and re-opened with O_NOFOLLOW, below a
 *     directory already checked to be inside a root.
 *
 * Roots are fixed at init: each must be an existing directory (relative
 * ones are relative to the plugin's data directory), and a missing one
 * fails init naming it.  validate (SDK 1.2) runs the same init when the
 * workflow loads, so such a workflow is refused then.
 *
 * Output: {"action", "path" (the real path acted on), "bytes"} plus "from"
 * for copy and move and "existed" for delete.  Metric: bytes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <evhost/evhost.h>

#include "../common/config_error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

typedef struct file_step {
    const evh_host_api *api;
    evh_host *host;
    char **roots; /* real paths (malloc) */
    size_t n_roots;
    /* the roots' real paths and, when it differs, each root as configured
     * (normalized): an absolute path must be below one of these before the
     * step opens anything, so it cannot probe the rest of the file system */
    char **lexical;
    size_t n_lexical;
    /* init's config (defaults filled in): a run's config is the `with:`
     * block with templates resolved, and holds only what the workflow
     * says, so options it leaves out are read here. */
    cJSON *defaults;
} file_step;

static int32_t fail(const evh_host_api *api, char **err, int32_t rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int32_t fail(const evh_host_api *api, char **err, int32_t rc, const char *fmt, ...)
{
    if (err && !*err) {
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        *err = api->strdup(buf);
    }
    return rc;
}

static char *join(const char *dir, const char *name)
{
    char *out = NULL;
    size_t n = strlen(dir);
    if (asprintf(&out, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name) < 0)
        return NULL;
    return out;
}

/* ---- roots ---------------------------------------------------------------- */

/* Is `path` (absolute, normalized) one of `dirs` or below one? */
static int below(char *const *dirs, size_t n_dirs, const char *path)
{
    for (size_t i = 0; i < n_dirs; i++) {
        const char *r = dirs[i];
        size_t n = strlen(r);
        if (!strcmp(r, "/"))
            return 1;
        if (!strncmp(path, r, n) && (path[n] == '\0' || path[n] == '/'))
            return 1;
    }
    return 0;
}

/* "/" followed by the first k components joined with "/". */
static char *prefix_of(char *const *comp, size_t k)
{
    size_t len = 2;
    for (size_t i = 0; i < k; i++)
        len += strlen(comp[i]) + 1;
    char *p = malloc(len);
    if (!p)
        return NULL;
    char *o = p;
    *o++ = '/';
    for (size_t i = 0; i < k; i++) {
        size_t n = strlen(comp[i]);
        memcpy(o, comp[i], n);
        o += n;
        if (i + 1 < k)
            *o++ = '/';
    }
    *o = '\0';
    return p;
}

/* Split an absolute path into its components (pointers into `path`, which
 * is modified), skipping empty ones and ".".  Returns the count, or -1 when
 * a component is "..". */
static long split(char *path, char **comp)
{
    long n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(path, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (!strcmp(tok, "."))
            continue;
        if (!strcmp(tok, ".."))
            return -1;
        comp[n++] = tok;
    }
    return n;
}

/* `path` without ".", "//" and a trailing "/"; NULL when it has "..". */
static char *normalized(const char *path)
{
    char *copy = strdup(path);
    char **comp = copy ? malloc((strlen(copy) / 2 + 2) * sizeof *comp) : NULL;
    long n = comp ? split(copy, comp) : -1;
    char *out = n >= 0 ? prefix_of(comp, (size_t)n) : NULL;
    free(comp);
    free(copy);
    return out;
}

static int32_t load_roots(file_step *s, const cJSON *roots, char **err)
{
    const evh_host_api *api = s->api;
    int n = cJSON_GetArraySize(roots);
    if (!cJSON_IsArray(roots) || n < 1)
        return fail(api, err, EVH_E_CONFIG, "roots: at least one directory is required");
    s->roots = calloc((size_t)n, sizeof *s->roots);
    s->lexical = calloc(2 * (size_t)n, sizeof *s->lexical);
    if (!s->roots || !s->lexical)
        return EVH_E_NOMEM;
    for (int i = 0; i < n; i++) {
        const char *given = cJSON_GetStringValue(cJSON_GetArrayItem(roots, i));
        if (!given || !*given)
            return fail(api, err, EVH_E_CONFIG, "roots[%d]: must be a directory path", i);
        if (strstr(given, "{{"))
            return fail(api, err, EVH_E_CONFIG,
                        "roots[%d]: templates are not allowed here (roots are fixed at init)", i);
        char *path = NULL;
        if (given[0] == '/') {
            path = strdup(given);
        } else {
            const char *dir = api->data_dir(s->host);
            if (!dir)
                return fail(api, err, EVH_E_IO,
                            "roots[%d]: '%s' is relative, but the plugin has no data directory", i,
                            given);
            path = join(dir, given);
        }
        if (!path)
            return EVH_E_NOMEM;
        char *real = realpath(path, NULL);
        int e = errno;
        struct stat st;
        if (!real) {
            int32_t rc =
                fail(api, err, e == ENOENT ? EVH_E_NOT_FOUND : EVH_E_CONFIG, "roots[%d]: '%s' %s",
                     i, path, e == ENOENT ? "does not exist" : strerror(e));
            free(path);
            return rc;
        }
        if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
            int32_t rc =
                fail(api, err, EVH_E_CONFIG, "roots[%d]: '%s' is not a directory", i, path);
            free(path);
            free(real);
            return rc;
        }
        s->roots[s->n_roots++] = real;
        s->lexical[s->n_lexical] = strdup(real);
        if (s->lexical[s->n_lexical])
            s->n_lexical++;
        char *as_given = normalized(path);
        if (as_given && strcmp(as_given, real) != 0)
            s->lexical[s->n_lexical++] = as_given;
        else
            free(as_given);
        free(path);
    }
    return EVH_OK;
}

/* ---- resolving a path ----------------------------------------------------- */

typedef struct target {
    int dirfd;  /* the checked parent directory */
    char *base; /* the final component, reached only through dirfd */
    char *real; /* real path of the directory + "/" + base */
} target;

static void target_free(target *t)
{
    if (t->dirfd >= 0)
        close(t->dirfd);
    free(t->base);
    free(t->real);
    *t = (target){-1, NULL, NULL};
}

/* The real path of an open directory: the kernel's own name for the
 * descriptor (no window between checking a name and opening it), else
 * realpath of the name it was opened by. */
static char *dir_real(int fd, const char *opened_as)
{
    char link[64], buf[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, sizeof buf - 1);
    if (n > 0 && buf[0] == '/') {
        buf[n] = '\0';
        return strdup(buf);
    }
    return realpath(opened_as, NULL);
}

/*
 * Resolve `path` (config field `field`) to a checked parent directory
 * descriptor and a final component.  With mkdirs, missing parent
 * directories are created.
 */
static int32_t resolve(const file_step *s, const char *field, const char *path, int mkdirs,
                       target *t, char **err)
{
    const evh_host_api *api = s->api;
    *t = (target){-1, NULL, NULL};
    if (!path || !*path)
        return fail(api, err, EVH_E_INVALID, "%s: must name a file", field);
    size_t len = strlen(path);
    if (len >= PATH_MAX)
        return fail(api, err, EVH_E_INVALID, "%s: longer than %d bytes", field, PATH_MAX);
    const char *last = strrchr(path, '/');
    last = last ? last + 1 : path;
    if (!*last || !strcmp(last, "."))
        return fail(api, err, EVH_E_INVALID, "%s: '%s' names a directory, not a file", field, path);
    char *full = path[0] == '/' ? strdup(path) : join(s->roots[0], path);
    char **comp = full ? malloc((strlen(full) / 2 + 2) * sizeof *comp) : NULL;
    if (!comp) {
        free(full);
        return fail(api, err, EVH_E_NOMEM, "out of memory");
    }
    int32_t rc = EVH_OK;
    long n = split(full, comp);
    if (n < 0) {
        rc = fail(api, err, EVH_E_PERMISSION,
                  "%s: '%s' has a '..' component; paths may not leave the roots", field, path);
        goto out;
    }
    size_t nc = (size_t)n;
    char *norm = nc ? prefix_of(comp, nc) : NULL;
    int lexically_inside = norm && below(s->lexical, s->n_lexical, norm);
    free(norm);
    if (!lexically_inside) {
        rc = fail(api, err, EVH_E_PERMISSION, "%s: '%s' is outside the configured roots", field,
                  path);
        goto out;
    }

    /* The deepest existing directory on the way: the parent itself, or
     * (mkdirs) an ancestor below which the rest gets created. */
    size_t k = nc - 1;
    int fd = -1;
    char *prefix = NULL;
    for (;;) {
        prefix = prefix_of(comp, k);
        if (!prefix) {
            rc = fail(api, err, EVH_E_NOMEM, "out of memory");
            goto out;
        }
        fd = open(prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0)
            break;
        int e = errno;
        if (e == ENOENT && mkdirs && k > 0) {
            free(prefix);
            k--;
            continue;
        }
        if (e == ENOENT)
            rc = fail(api, err, EVH_E_NOT_FOUND, "%s: directory '%s' does not exist%s", field,
                      prefix, mkdirs ? "" : " (mkdirs: true creates it)");
        else if (e == ENOTDIR)
            rc = fail(api, err, EVH_E_INVALID, "%s: '%s' is not a directory", field, prefix);
        else
            rc = fail(api, err, EVH_E_IO, "%s: cannot open directory '%s': %s", field, prefix,
                      strerror(e));
        free(prefix);
        goto out;
    }
    char *real = dir_real(fd, prefix);
    free(prefix);
    if (!real || !below(s->roots, s->n_roots, real)) {
        rc = fail(api, err, EVH_E_PERMISSION, "%s: '%s' is outside the configured roots", field,
                  path);
        free(real);
        close(fd);
        goto out;
    }
    /* Create what is missing, one level at a time, never following a link
     * that might have appeared meanwhile. */
    for (size_t j = k; j + 1 < nc; j++) {
        if (mkdirat(fd, comp[j], 0755) != 0 && errno != EEXIST) {
            rc = fail(api, err, EVH_E_IO, "%s: cannot create directory '%s/%s': %s", field, real,
                      comp[j], strerror(errno));
        } else {
            int sub = openat(fd, comp[j], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0)
                rc = fail(api, err, errno == ELOOP ? EVH_E_PERMISSION : EVH_E_IO,
                          "%s: cannot open directory '%s/%s': %s", field, real, comp[j],
                          strerror(errno));
            close(fd);
            fd = sub;
            char *next = join(real, comp[j]);
            free(real);
            real = next;
            if (!real && rc == EVH_OK)
                rc = fail(api, err, EVH_E_NOMEM, "out of memory");
        }
        if (rc != EVH_OK) {
            if (fd >= 0)
                close(fd);
            free(real);
            goto out;
        }
    }
    t->dirfd = fd;
    t->base = strdup(comp[nc - 1]);
    t->real = join(real, comp[nc - 1]);
    free(real);
    if (!t->base || !t->real) {
        target_free(t);
        rc = fail(api, err, EVH_E_NOMEM, "out of memory");
    }
out:
    free(comp);
    free(full);
    return rc;
}

/* ---- the final component ------------------------------------------------- */

static int32_t final_error(const evh_host_api *api, char **err, const char *field, const target *t,
                           int e)
{
    if (e == ELOOP)
        return fail(api, err, EVH_E_PERMISSION,
                    "%s: '%s' is a symbolic link; the step never follows one", field, t->real);
    if (e == ENOENT)
        return fail(api, err, EVH_E_NOT_FOUND, "%s: '%s' does not exist", field, t->real);
    if (e == EISDIR)
        return fail(api, err, EVH_E_INVALID, "%s: '%s' is a directory", field, t->real);
    if (e == ENXIO || e == EAGAIN || e == EWOULDBLOCK)
        return fail(api, err, EVH_E_INVALID, "%s: '%s' is not a regular file", field, t->real);
    return fail(api, err, EVH_E_IO, "%s: '%s': %s", field, t->real, strerror(e));
}

/* What the final component is now, without following it: 0 when it is a
 * regular file or (missing_ok) missing; an error otherwise. */
static int32_t check_final(const evh_host_api *api, char **err, const char *field, const target *t,
                           int missing_ok, struct stat *st, int *exists)
{
    *exists = 0;
    if (fstatat(t->dirfd, t->base, st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT && missing_ok)
            return EVH_OK;
        return final_error(api, err, field, t, errno);
    }
    *exists = 1;
    if (S_ISLNK(st->st_mode))
        return final_error(api, err, field, t, ELOOP);
    if (S_ISDIR(st->st_mode))
        return final_error(api, err, field, t, EISDIR);
    if (!S_ISREG(st->st_mode))
        return final_error(api, err, field, t, ENXIO);
    return EVH_OK;
}

static int nonblock_off(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

/* Open the final component for reading: a regular file, never a link. */
static int32_t open_source(const evh_host_api *api, char **err, const char *field, const target *t,
                           int *fd_out, struct stat *st)
{
    int fd = openat(t->dirfd, t->base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return final_error(api, err, field, t, errno);
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || nonblock_off(fd) != 0) {
        close(fd);
        return final_error(api, err, field, t, ENXIO);
    }
    *fd_out = fd;
    return EVH_OK;
}

/* ---- writing -------------------------------------------------------------- */

/* What to write: bytes in memory, or the rest of an open file. */
typedef struct payload {
    const char *buf;
    size_t len;
    int fd;                    /* >= 0: copy from this file */
    const struct stat *src_st; /* its stat, to refuse copying onto itself */
    int newline;               /* add "\n" after the bytes */
} payload;

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write the payload to fd; *bytes receives the count.  -1 with errno. */
static int put(int fd, const payload *pl, uint64_t *bytes)
{
    *bytes = 0;
    if (pl->fd >= 0) {
        char buf[65536];
        for (;;) {
            ssize_t r = read(pl->fd, buf, sizeof buf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return -1;
            if (r == 0)
                break;
            if (write_all(fd, buf, (size_t)r) != 0)
                return -1;
            *bytes += (uint64_t)r;
        }
    } else {
        if (write_all(fd, pl->buf, pl->len) != 0)
            return -1;
        *bytes = pl->len;
    }
    if (pl->newline) {
        if (write_all(fd, "\n", 1) != 0)
            return -1;
        *bytes += 1;
    }
    return 0;
}

enum { WRITE_TRUNC, WRITE_APPEND, WRITE_ATOMIC };

/* Atomic: a temporary file beside the target, fsync, rename over it, fsync
 * the directory.  Readers see the old file or the new one, never half. */
static int32_t write_atomic(const file_step *s, char **err, const char *field, const target *t,
                            const payload *pl, mode_t mode, uint64_t *bytes)
{
    const evh_host_api *api = s->api;
    struct stat st;
    int exists;
    int32_t rc = check_final(api, err, field, t, 1, &st, &exists);
    if (rc != EVH_OK)
        return rc;
    static atomic_uint counter;
    char tmp[NAME_MAX + 1];
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(tmp, sizeof tmp, ".%.200s.tmp-%ld-%x-%lx", t->base, (long)getpid(),
                 atomic_fetch_add(&counter, 1), (unsigned long)now.tv_nsec);
        fd = openat(t->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0)
        return fail(api, err, EVH_E_IO, "%s: cannot create a temporary file beside '%s': %s", field,
                    t->real, strerror(errno));
    int ok = put(fd, pl, bytes) == 0 && fchmod(fd, mode) == 0 && fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (ok && renameat(t->dirfd, tmp, t->dirfd, t->base) != 0) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        unlinkat(t->dirfd, tmp, 0);
        return fail(api, err, EVH_E_IO, "%s: cannot write '%s': %s", field, t->real, strerror(e));
    }
    fsync(t->dirfd); /* the rename itself survives a crash */
    return EVH_OK;
}

static int32_t write_target(const file_step *s, char **err, const char *field, const target *t,
                            const payload *pl, int how, mode_t mode, uint64_t *bytes)
{
    const evh_host_api *api = s->api;
    if (how == WRITE_ATOMIC)
        return write_atomic(s, err, field, t, pl, mode, bytes);
    int flags =
        O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (how == WRITE_APPEND ? O_APPEND : 0);
    /* O_EXCL first, to know whether the file is new (it gets `mode`); an
     * existing one keeps its permissions.  O_EXCL never follows a link. */
    int created = 1;
    int fd = openat(t->dirfd, t->base, flags | O_CREAT | O_EXCL, mode);
    if (fd < 0 && errno == EEXIST) {
        created = 0;
        fd = openat(t->dirfd, t->base, flags);
    }
    if (fd < 0)
        return final_error(api, err, field, t, errno);
    struct stat st;
    int32_t rc = EVH_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = final_error(api, err, field, t, ENXIO);
    else if (pl->src_st && st.st_dev == pl->src_st->st_dev && st.st_ino == pl->src_st->st_ino)
        rc = fail(api, err, EVH_E_INVALID, "%s: '%s' is the file being copied", field, t->real);
    else if (st.st_nlink > 1) /* the other name may be outside the roots */
        rc = fail(api, err, EVH_E_PERMISSION,
                  "%s: '%s' has other hard links; the step does not write through them%s", field,
                  t->real, how == WRITE_APPEND ? "" : " (atomic: true replaces it instead)");
    else if (nonblock_off(fd) != 0 || (created && fchmod(fd, mode) != 0) ||
             (how == WRITE_TRUNC && ftruncate(fd, 0) != 0) || put(fd, pl, bytes) != 0)
        rc = fail(api, err, EVH_E_IO, "%s: cannot write '%s': %s", field, t->real, strerror(errno));
    if (close(fd) != 0 && rc == EVH_OK)
        rc = fail(api, err, EVH_E_IO, "%s: cannot write '%s': %s", field, t->real, strerror(errno));
    return rc;
}

/* ---- options -------------------------------------------------------------- */

/* A run's value for `key`, else init's (which has the schema's default). */
static const cJSON *opt(const file_step *s, const cJSON *run, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(run, key);
    return v ? v : cJSON_GetObjectItemCaseSensitive(s->defaults, key);
}

static int opt_bool(const file_step *s, const cJSON *run, const char *key)
{
    return cJSON_IsTrue(opt(s, run, key));
}

/* mode: "0644" or "644"; *mode keeps its value when the option is absent. */
static int32_t opt_mode(const file_step *s, const cJSON *run, mode_t *mode, char **err)
{
    const cJSON *v = opt(s, run, "mode");
    if (!v)
        return EVH_OK;
    const char *m = cJSON_GetStringValue(v);
    size_t n = m ? strlen(m) : 0;
    int ok = n == 3 || (n == 4 && m[0] == '0');
    for (size_t i = 0; ok && i < n; i++)
        ok = m[i] >= '0' && m[i] <= '7';
    if (!ok)
        return fail(s->api, err, EVH_E_INVALID,
                    "mode: must be octal permission bits such as \"0644\"");
    *mode = (mode_t)strtol(m, NULL, 8);
    return EVH_OK;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void free_step(file_step *s)
{
    for (size_t i = 0; i < s->n_roots; i++)
        free(s->roots[i]);
    free(s->roots);
    for (size_t i = 0; i < s->n_lexical; i++)
        free(s->lexical[i]);
    free(s->lexical);
    cJSON_Delete(s->defaults);
    s->api->free(s);
}

static int32_t file_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    file_step *s = api->alloc(sizeof *s);
    if (!s)
        return EVH_E_NOMEM;
    memset(s, 0, sizeof *s);
    s->api = api;
    s->host = host;
    size_t len = 0;
    const char *text = api->config_json(host, &len);
    s->defaults = cJSON_ParseWithLength(text, len);
    int32_t rc = s->defaults
                     ? load_roots(s, cJSON_GetObjectItemCaseSensitive(s->defaults, "roots"), errmsg)
                     : fail(api, errmsg, EVH_E_CONFIG, "config is not a JSON object");
    if (rc != EVH_OK) {
        free_step(s);
        return rc;
    }
    *ctx = s;
    return EVH_OK;
}

typedef struct run_result {
    const char *action;
    const char *path; /* the real path acted on */
    const char *from; /* copy, move */
    int existed;      /* delete: -1 when not reported */
    uint64_t bytes;
} run_result;

static int32_t do_write(const file_step *s, const cJSON *run, int append, run_result *r, target *t,
                        char **err)
{
    const evh_host_api *api = s->api;
    const cJSON *content = opt(s, run, "content");
    if (!content)
        return fail(api, err, EVH_E_INVALID, "content: required for %s",
                    append ? "append" : "write");
    mode_t mode = 0644;
    int32_t rc = opt_mode(s, run, &mode, err);
    if (rc == EVH_OK)
        rc = resolve(s, "path", cJSON_GetStringValue(opt(s, run, "path")),
                     opt_bool(s, run, "mkdirs"), t, err);
    if (rc != EVH_OK)
        return rc;
    /* A string is written as it is; any other value as compact JSON. */
    char *json = cJSON_IsString(content) ? NULL : cJSON_PrintUnformatted(content);
    const char *bytes = json ? json : cJSON_GetStringValue(content);
    if (!bytes)
        return fail(api, err, EVH_E_NOMEM, "out of memory");
    payload pl = {bytes, strlen(bytes), -1, NULL, opt_bool(s, run, "newline")};
    int how = append ? WRITE_APPEND : opt_bool(s, run, "atomic") ? WRITE_ATOMIC : WRITE_TRUNC;
    rc = write_target(s, err, "path", t, &pl, how, mode, &r->bytes);
    cJSON_free(json);
    r->path = t->real;
    return rc;
}

/* copy, or move (rename; across file systems copy then unlink). */
static int32_t do_copy_move(const file_step *s, const cJSON *run, int move, run_result *r,
                            target *src, target *dst, char **err)
{
    const evh_host_api *api = s->api;
    const char *to = cJSON_GetStringValue(opt(s, run, "to"));
    if (!to)
        return fail(api, err, EVH_E_INVALID, "to: required for %s", move ? "move" : "copy");
    int32_t rc = resolve(s, "path", cJSON_GetStringValue(opt(s, run, "path")), 0, src, err);
    if (rc == EVH_OK)
        rc = resolve(s, "to", to, opt_bool(s, run, "mkdirs"), dst, err);
    if (rc != EVH_OK)
        return rc;
    r->from = src->real;
    r->path = dst->real;
    struct stat st;
    int exists;
    int fd = -1;
    rc = move ? check_final(api, err, "path", src, 0, &st, &exists)
              : open_source(api, err, "path", src, &fd, &st);
    if (rc != EVH_OK)
        return rc;
    /* a copy gets the source's permissions unless `mode` says otherwise; a
     * moved file keeps its own (a rename cannot change them safely) */
    mode_t mode = st.st_mode & 0777;
    if (!move)
        rc = opt_mode(s, run, &mode, err);
    if (rc == EVH_OK && move) {
        struct stat dst_st;
        rc = check_final(api, err, "to", dst, 1, &dst_st, &exists);
        if (rc == EVH_OK && renameat(src->dirfd, src->base, dst->dirfd, dst->base) == 0) {
            r->bytes = (uint64_t)st.st_size;
            return EVH_OK;
        }
        if (rc == EVH_OK && errno != EXDEV)
            return fail(api, err, EVH_E_IO, "to: cannot move '%s' to '%s': %s", src->real,
                        dst->real, strerror(errno));
        if (rc == EVH_OK) /* another file system: copy, then remove */
            rc = open_source(api, err, "path", src, &fd, &st);
    }
    if (rc == EVH_OK) {
        payload pl = {NULL, 0, fd, &st, 0};
        int how = move || opt_bool(s, run, "atomic") ? WRITE_ATOMIC : WRITE_TRUNC;
        rc = write_target(s, err, "to", dst, &pl, how, mode, &r->bytes);
    }
    if (fd >= 0)
        close(fd);
    if (rc == EVH_OK && move && unlinkat(src->dirfd, src->base, 0) != 0)
        rc = fail(api, err, EVH_E_IO, "path: copied to '%s' but cannot remove '%s': %s", dst->real,
                  src->real, strerror(errno));
    return rc;
}

static int32_t do_delete(const file_step *s, const cJSON *run, run_result *r, target *t, char **err)
{
    const char *path = cJSON_GetStringValue(opt(s, run, "path"));
    int missing_ok = opt_bool(s, run, "missing_ok");
    r->path = path;
    r->existed = 0;
    char *why = NULL;
    int32_t rc = resolve(s, "path", path, 0, t, &why);
    if (rc == EVH_E_NOT_FOUND && missing_ok) { /* its directory is missing */
        s->api->free(why);
        return EVH_OK;
    }
    if (rc != EVH_OK) {
        *err = why;
        return rc;
    }
    r->path = t->real;
    struct stat st;
    int exists;
    rc = check_final(s->api, err, "path", t, missing_ok, &st, &exists);
    if (rc != EVH_OK || !exists)
        return rc;
    if (unlinkat(t->dirfd, t->base, 0) != 0)
        return final_error(s->api, err, "path", t, errno);
    r->existed = 1;
    r->bytes = (uint64_t)st.st_size;
    return EVH_OK;
}

static int32_t file_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    file_step *s = ctx;
    const evh_host_api *api = s->api;
    char **err = &out->error_message;
    cJSON *run = cJSON_ParseWithLength(in->config_json, in->config_len);
    if (!run)
        return fail(api, err, EVH_E_CONFIG, "config is not a JSON object");
    run_result r = {.existed = -1};
    r.action = cJSON_GetStringValue(opt(s, run, "action"));
    target a = {-1, NULL, NULL}, b = {-1, NULL, NULL};
    int32_t rc;
    if (!r.action)
        rc = fail(api, err, EVH_E_INVALID, "action: required");
    else if (!strcmp(r.action, "write") || !strcmp(r.action, "append"))
        rc = do_write(s, run, r.action[0] == 'a', &r, &a, err);
    else if (!strcmp(r.action, "copy") || !strcmp(r.action, "move"))
        rc = do_copy_move(s, run, r.action[0] == 'm', &r, &a, &b, err);
    else if (!strcmp(r.action, "delete"))
        rc = do_delete(s, run, &r, &a, err);
    else
        rc = fail(api, err, EVH_E_INVALID,
                  "action: '%s' is not one of write, append, copy, move, delete", r.action);
    if (rc == EVH_OK) {
        cJSON *o = cJSON_CreateObject();
        int ok = o && cJSON_AddStringToObject(o, "action", r.action) &&
                 cJSON_AddStringToObject(o, "path", r.path ? r.path : "") &&
                 cJSON_AddNumberToObject(o, "bytes", (double)r.bytes) &&
                 (!r.from || cJSON_AddStringToObject(o, "from", r.from)) &&
                 (r.existed < 0 || cJSON_AddBoolToObject(o, "existed", r.existed));
        char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
        /* the host frees the output with its free: copy into api->alloc */
        out->output_json = text ? api->strdup(text) : NULL;
        cJSON_free(text);
        cJSON_Delete(o);
        if (!out->output_json)
            rc = fail(api, err, EVH_E_NOMEM, "out of memory");
        else
            api->metric(s->host, "bytes", (double)r.bytes);
    }
    target_free(&a);
    target_free(&b);
    cJSON_Delete(run);
    return rc;
}

static void file_fini(void *ctx)
{
    free_step(ctx);
}


/* At load: exactly init's checks (the roots), then nothing is kept. */
static int32_t file_validate(const evh_host_api *api, evh_host *host, char **field,
                             char **errmsg)
{
    void *ctx = NULL;
    char *msg = NULL;
    int32_t rc = file_init(api, host, &ctx, &msg);
    if (rc == EVH_OK) {
        file_fini(ctx);
        api->free(msg);
        return EVH_OK;
    }
    evh_steps_split_field(api, msg, field, errmsg);
    api->free(msg);
    return rc;
}

static const evh_step file_desc = {.struct_size = sizeof(evh_step),
                                   .init = file_init,
                                   .run = file_run,
                                   .fini = file_fini,
                                   .validate = file_validate};

EVH_DECLARE_STEP("file", &file_desc)

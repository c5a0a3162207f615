/* exec - a workflow step that runs a program with an argument list and
 * outputs
 *
 *     {"exit_code": 0, "signal": null, "stdout": "...", "stderr": "...",
 *      "truncated": false}
 *
 * Never through a shell: command[0] is an absolute path or a name looked up
 * in the program's PATH here (not by execvp, which would hand a file that
 * is not a binary to /bin/sh), and the arguments go to execve as they are,
 * so "; rm -rf ~" in an argument is just text.
 *
 * The program is started with posix_spawn (glibc: clone with a private
 * stack and CLONE_VFORK, only async-signal-safe work in the child), which
 * is safe in the host's multi-threaded process: in its own process group,
 * with an empty signal mask and default signal dispositions (the daemon
 * blocks SIGTERM/SIGINT/SIGHUP and ignores SIGPIPE; a child must not
 * inherit that), stdin/stdout/stderr on pipes and every other descriptor
 * closed.  Our ends of the pipes are O_CLOEXEC, so a program another worker
 * starts at the same moment cannot inherit them.  The pipes are serviced
 * with poll, so a program that fills stdout while we write its stdin cannot
 * deadlock.  On timeout (or when the host stops) the whole process group
 * gets SIGTERM, then SIGKILL after kill_grace_ms.
 *
 * The plugin links libcjson (the host API cannot walk the members of a JSON
 * object, which env needs); JSON still crosses the SDK boundary as text.
 */
/* pipe2, posix_spawn_file_actions_addchdir_np, sigabbrev_np, explicit_bzero,
 * asprintf and the GNU strerror_r: the plugin also builds on its own with cc. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <evhost/evhost.h>

#include "../common/config_error.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

extern char **environ;

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_GRACE_MS 2000
#define DEFAULT_MAX_OUTPUT (64 * 1024)
/* After the program exited, how long something it left behind may keep its
 * stdout/stderr open before the process group is killed. */
#define LINGER_MS 500
/* poll slice: how soon an exit is noticed while pipes stay open */
#define TICK_MS 20
#define EXCERPT_BYTES 200

typedef struct exec_step {
    const evh_host_api *api;
    evh_host *host;
    char *pass_env; /* pass_env as written in the workflow (JSON text), or NULL */
} exec_step;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* strerror is not thread-safe; the GNU strerror_r returns the text. */
static const char *errtext(int e, char *buf, size_t len)
{
    return strerror_r(e, buf, len);
}

/* ---- UTF-8: program output goes into JSON, so it must be valid text ------ */

static size_t utf8_seq(const unsigned char *s, size_t n, size_t i)
{
    unsigned char c = s[i];
    if (c >= 0x01 && c < 0x80)
        return 1;
    size_t len = c >= 0xC2 && c <= 0xDF   ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    if (!len || n - i < len)
        return 0;
    uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

/* Valid UTF-8 (malloc): invalid bytes and NUL become U+FFFD. */
static char *utf8_clean(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t need = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(s, n, i);
        need += l ? l : 3;
        i += l ? l : 1;
    }
    char *o = malloc(need + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(s, n, i);
        if (l) {
            memcpy(o + j, s + i, l);
            j += l;
            i += l;
        } else {
            memcpy(o + j, "\xEF\xBF\xBD", 3);
            j += 3;
            i++;
        }
    }
    o[j] = '\0';
    return o;
}

/* The last EXCERPT_BYTES of a valid UTF-8 text, on one line (malloc):
 * a failing program says why at the end of its stderr. */
static char *tail_excerpt(const char *text)
{
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
        n--;
    size_t from = n > EXCERPT_BYTES ? n - EXCERPT_BYTES : 0;
    while (from < n && ((unsigned char)text[from] & 0xC0) == 0x80)
        from++;
    char *o = malloc(n - from + 4);
    if (!o)
        return NULL;
    size_t j = 0;
    if (from > 0) {
        memcpy(o, "...", 3);
        j = 3;
    }
    for (size_t i = from; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        o[j++] = c < 0x20 || c == 0x7F ? ' ' : (char)c;
    }
    o[j] = '\0';
    return o;
}

/* ---- this run's config --------------------------------------------------- */

typedef struct spec {
    char **argv; /* NULL-terminated */
    size_t argc;
    char *path;  /* the program to execve */
    char **envp; /* NULL-terminated "NAME=value" */
    size_t envc, envcap;
    const char *cwd;
    char *input; /* stdin text, or NULL: /dev/null */
    size_t input_len;
    long long timeout_ms, grace_ms, max_out;
    int fail_on_nonzero;
} spec;

static void spec_free(spec *sp)
{
    for (size_t i = 0; sp->argv && i < sp->argc; i++)
        free(sp->argv[i]);
    free(sp->argv);
    free(sp->path);
    for (size_t i = 0; i < sp->envc; i++) {
        /* values may be secrets (pass_env) */
        explicit_bzero(sp->envp[i], strlen(sp->envp[i]));
        free(sp->envp[i]);
    }
    free(sp->envp);
    free(sp->input);
}

static int fail(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0)
        *err = NULL;
    va_end(ap);
    return -1;
}

static int get_int(const cJSON *cfg, const char *key, long long lo, long long hi, long long dflt,
                   long long *out, char **err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    if (!cJSON_IsNumber(v) || d < (double)lo || d > (double)hi || d != (double)(long long)d)
        return fail(err, "config: %s: must be an integer from %lld to %lld", key, lo, hi);
    *out = (long long)d;
    return 0;
}

static int get_bool(const cJSON *cfg, const char *key, int dflt, int *out, char **err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return fail(err, "config: %s: must be true or false", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* Strings as they are; numbers printed (a whole-value template such as
 * "{{ event.data.n }}" keeps the number type).  malloc; NULL otherwise. */
static char *scalar_text(const cJSON *v)
{
    if (cJSON_IsString(v))
        return strdup(v->valuestring);
    if (cJSON_IsNumber(v))
        return cJSON_PrintUnformatted(v);
    return NULL;
}

/* Set NAME=value in the environment being built, replacing an earlier one. */
static int env_set(spec *sp, const char *name, const char *value)
{
    size_t nlen = strlen(name);
    char *entry = NULL;
    if (asprintf(&entry, "%s=%s", name, value) < 0)
        return -1;
    for (size_t i = 0; i < sp->envc; i++) {
        if (!strncmp(sp->envp[i], name, nlen) && sp->envp[i][nlen] == '=') {
            explicit_bzero(sp->envp[i], strlen(sp->envp[i]));
            free(sp->envp[i]);
            sp->envp[i] = entry;
            return 0;
        }
    }
    if (sp->envc + 2 > sp->envcap) {
        size_t cap = sp->envcap ? sp->envcap * 2 : 16;
        char **e = realloc(sp->envp, cap * sizeof *e);
        if (!e) {
            free(entry);
            return -1;
        }
        sp->envp = e;
        sp->envcap = cap;
    }
    sp->envp[sp->envc++] = entry;
    sp->envp[sp->envc] = NULL;
    return 0;
}

static int valid_env_name(const char *name)
{
    return name[0] != '\0' && strchr(name, '=') == NULL;
}

static int read_env(const exec_step *s, spec *sp, const cJSON *cfg, char **err)
{
    int inherit = 0;
    if (get_bool(cfg, "inherit_env", 0, &inherit, err) != 0)
        return -1;
    if (inherit) {
        /* the daemon's environment: read, never changed, by the host */
        for (char **e = environ; e && *e; e++) {
            const char *eq = strchr(*e, '=');
            if (!eq)
                continue;
            char *name = strndup(*e, (size_t)(eq - *e));
            int rc = name ? env_set(sp, name, eq + 1) : -1;
            free(name);
            if (rc != 0)
                return fail(err, "out of memory");
        }
    } else if (env_set(sp, "PATH", DEFAULT_PATH) != 0) {
        return fail(err, "out of memory");
    }
    const cJSON *pass = cJSON_GetObjectItemCaseSensitive(cfg, "pass_env");
    if (pass) {
        /* Only the list init saw written in the workflow: a template must
         * not let an event pick which of the daemon's variables to hand out. */
        char *given = cJSON_PrintUnformatted(pass);
        int same = given && s->pass_env && !strcmp(given, s->pass_env);
        free(given);
        if (!same)
            return fail(err, "config: pass_env: must be written literally in the workflow, "
                             "not produced by a template");
        if (!cJSON_IsArray(pass))
            return fail(err, "config: pass_env: must be a list of variable names");
        const cJSON *n;
        cJSON_ArrayForEach(n, pass)
        {
            if (!cJSON_IsString(n) || !valid_env_name(n->valuestring))
                return fail(err, "config: pass_env: must be a list of variable names");
            const char *v = getenv(n->valuestring);
            if (v && env_set(sp, n->valuestring, v) != 0)
                return fail(err, "out of memory");
        }
    }
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(cfg, "env");
    if (env && !cJSON_IsObject(env))
        return fail(err, "config: env: must be an object of NAME: value");
    const cJSON *e;
    cJSON_ArrayForEach(e, env)
    {
        if (!valid_env_name(e->string))
            return fail(err, "config: env: '%s' is not a valid variable name", e->string);
        char *value = scalar_text(e);
        if (!value)
            return fail(err, "config: env.%s: must be a string", e->string);
        int rc = env_set(sp, e->string, value);
        explicit_bzero(value, strlen(value));
        free(value);
        if (rc != 0)
            return fail(err, "out of memory");
    }
    if (!sp->envp && env_set(sp, "PATH", DEFAULT_PATH) != 0) /* inherit of an empty env */
        return fail(err, "out of memory");
    return 0;
}

static const char *env_get(const spec *sp, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sp->envc; i++) {
        if (!strncmp(sp->envp[i], name, n) && sp->envp[i][n] == '=')
            return sp->envp[i] + n + 1;
    }
    return NULL;
}

static int is_executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* command[0] as an absolute path, or the first executable regular file of
 * that name in the program's PATH (absolute entries only). */
static int resolve_program(spec *sp, char **err)
{
    const char *name = sp->argv[0];
    char eb[128];
    if (!name[0])
        return fail(err, "config: command[0]: must not be empty");
    if (strchr(name, '/')) {
        if (name[0] != '/')
            return fail(err,
                        "config: command[0]: '%s' must be an absolute path or a program "
                        "name looked up in PATH",
                        name);
        if (access(name, X_OK) != 0)
            return fail(err, "config: command[0]: cannot run '%s': %s", name,
                        errtext(errno, eb, sizeof eb));
        sp->path = strdup(name);
        return sp->path ? 0 : fail(err, "out of memory");
    }
    const char *path = env_get(sp, "PATH");
    if (!path)
        path = DEFAULT_PATH;
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        if (n > 0 && p[0] == '/') {
            char *cand = NULL;
            if (asprintf(&cand, "%.*s/%s", (int)n, p, name) < 0)
                return fail(err, "out of memory");
            if (is_executable_file(cand)) {
                sp->path = cand;
                return 0;
            }
            free(cand);
        }
        p += n;
        if (*p == ':')
            p++;
    }
    return fail(err, "config: command[0]: '%s' not found in PATH (%s)", name, path);
}

static int check_cwd(const cJSON *cwd, char **err)
{
    struct stat st;
    char eb[128];
    if (!cJSON_IsString(cwd) || !cwd->valuestring[0])
        return fail(err, "config: cwd: must be a directory path");
    if (stat(cwd->valuestring, &st) != 0)
        return fail(err, "config: cwd: '%s': %s", cwd->valuestring,
                    errtext(errno, eb, sizeof eb));
    if (!S_ISDIR(st.st_mode))
        return fail(err, "config: cwd: '%s' is not a directory", cwd->valuestring);
    return 0;
}

static int read_spec(const exec_step *s, spec *sp, const cJSON *cfg, char **err)
{
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(cfg, "command");
    if (!cmd)
        return fail(err, "config: command: required property is missing");
    int argc = cJSON_GetArraySize(cmd);
    if (!cJSON_IsArray(cmd) || argc < 1)
        return fail(err, "config: command: must be a non-empty list: [program, args...]");
    sp->argv = calloc((size_t)argc + 1, sizeof *sp->argv);
    if (!sp->argv)
        return fail(err, "out of memory");
    const cJSON *a;
    cJSON_ArrayForEach(a, cmd)
    {
        char *text = scalar_text(a);
        if (!text)
            return fail(err, "config: command[%zu]: must be a string", sp->argc);
        sp->argv[sp->argc++] = text;
    }
    if (get_int(cfg, "timeout_ms", 1, 86400000, DEFAULT_TIMEOUT_MS, &sp->timeout_ms, err) ||
        get_int(cfg, "kill_grace_ms", 0, 60000, DEFAULT_GRACE_MS, &sp->grace_ms, err) ||
        get_int(cfg, "max_output_bytes", 0, 16777216, DEFAULT_MAX_OUTPUT, &sp->max_out, err) ||
        get_bool(cfg, "fail_on_nonzero", 1, &sp->fail_on_nonzero, err))
        return -1;
    const cJSON *cwd = cJSON_GetObjectItemCaseSensitive(cfg, "cwd");
    if (cwd) {
        if (check_cwd(cwd, err) != 0)
            return -1;
        sp->cwd = cwd->valuestring;
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(cfg, "stdin");
    if (in && !cJSON_IsNull(in)) {
        /* text as it is; any other value (a whole-value template such as
         * "{{ event.data }}") as JSON */
        sp->input = cJSON_IsString(in) ? strdup(in->valuestring) : cJSON_PrintUnformatted(in);
        if (!sp->input)
            return fail(err, "out of memory");
        sp->input_len = strlen(sp->input);
    }
    if (read_env(s, sp, cfg, err) != 0)
        return -1;
    return resolve_program(sp, err);
}

/* ---- running it ------------------------------------------------------------- */

typedef struct stream {
    int fd;
    char *buf;
    size_t len, total;
    int truncated;
} stream;

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* A pipe with both ends O_CLOEXEC and above 2: the child's dup2 onto 0..2
 * must never find a pipe end already sitting there. */
static int pipe_high(int p[2])
{
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        if (p[i] < 3) {
            int fd = fcntl(p[i], F_DUPFD_CLOEXEC, 3);
            if (fd < 0) {
                close(p[0]);
                close(p[1]);
                return -1;
            }
            close(p[i]);
            p[i] = fd;
        }
    }
    return 0;
}

/* One read: keep up to max bytes, count and drop the rest. */
static void read_some(stream *st, size_t max)
{
    char chunk[16384];
    ssize_t n = read(st->fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) { /* EOF, or an error we cannot do better with */
        close_fd(&st->fd);
        return;
    }
    st->total += (size_t)n;
    size_t keep = max - st->len < (size_t)n ? max - st->len : (size_t)n;
    if (keep < (size_t)n)
        st->truncated = 1;
    if (keep && st->buf) {
        memcpy(st->buf + st->len, chunk, keep);
        st->len += keep;
    }
}

typedef struct result {
    int status;    /* from waitpid */
    int timed_out; /* our deadline killed it */
    int stopped;   /* the host stopping killed it */
    int escalated; /* SIGKILL after the grace period */
    int lost;      /* somebody else reaped the child */
} result;

static int spawn(const spec *sp, int in_fd, int out_fd, int err_fd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0)
        return rc;
    rc = posix_spawnattr_init(&at);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return rc;
    }
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (in_fd >= 0)
        rc = posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    else
        rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!rc)
        rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    if (!rc)
        rc = posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    if (!rc && sp->cwd)
        rc = posix_spawn_file_actions_addchdir_np(&fa, sp->cwd);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    /* whatever else the host holds without O_CLOEXEC stays out of the child */
    if (!rc)
        rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
    if (!rc)
        rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                               POSIX_SPAWN_SETSIGDEF);
    if (!rc)
        rc = posix_spawnattr_setpgroup(&at, 0); /* a new group, led by the child */
    if (!rc)
        rc = posix_spawnattr_setsigmask(&at, &none);
    if (!rc)
        rc = posix_spawnattr_setsigdefault(&at, &all);
    if (!rc)
        rc = posix_spawn(pid, sp->path, &fa, &at, sp->argv, sp->envp);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

/* Service the pipes until the program is gone; kill its group at the
 * deadline, or when the host stops. */
static void supervise(const exec_step *s, const spec *sp, pid_t pid, int *in_fd, stream *out,
                      stream *err, result *res)
{
    int64_t start = now_ms(), deadline = start + sp->timeout_ms, kill_at = 0, exited_at = 0;
    int exited = 0, termed = 0, killed = 0;
    size_t written = 0;
    for (;;) {
        int64_t now = now_ms();
        if (!exited) {
            /* WNOWAIT: the zombie keeps its pid, so the process group id
             * cannot be reused before we signal the group for the last time */
            siginfo_t si;
            memset(&si, 0, sizeof si);
            if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0) {
                if (si.si_pid == pid) {
                    exited = 1;
                    exited_at = now;
                }
            } else if (errno == ECHILD) {
                exited = 1;
                exited_at = now;
                res->lost = 1;
            }
        }
        if (exited)
            close_fd(in_fd);
        if (exited && out->fd < 0 && err->fd < 0)
            break;
        if (exited && now - exited_at >= LINGER_MS) {
            /* something it started still holds stdout/stderr: end it */
            if (!res->lost)
                kill(-pid, SIGKILL);
            close_fd(&out->fd);
            close_fd(&err->fd);
            break;
        }
        if (!exited && !termed) {
            int stop = s->api->stopping(s->host);
            if (now >= deadline || stop) {
                res->timed_out = !stop;
                res->stopped = stop;
                kill(-pid, sp->grace_ms > 0 ? SIGTERM : SIGKILL);
                termed = 1;
                killed = sp->grace_ms == 0;
                res->escalated = killed;
                kill_at = now + sp->grace_ms;
            }
        }
        if (termed && !killed && now >= kill_at) {
            kill(-pid, SIGKILL);
            killed = 1;
            res->escalated = 1;
        }
        int64_t wait = TICK_MS;
        if (!termed && deadline - now < wait)
            wait = deadline - now;
        if (termed && !killed && kill_at - now < wait)
            wait = kill_at - now;
        if (exited && exited_at + LINGER_MS - now < wait)
            wait = exited_at + LINGER_MS - now;
        if (wait < 0)
            wait = 0;
        struct pollfd fds[3];
        int nfds = 0, i_in = -1, i_out = -1, i_err = -1;
        if (*in_fd >= 0) {
            fds[nfds] = (struct pollfd){.fd = *in_fd, .events = POLLOUT};
            i_in = nfds++;
        }
        if (out->fd >= 0) {
            fds[nfds] = (struct pollfd){.fd = out->fd, .events = POLLIN};
            i_out = nfds++;
        }
        if (err->fd >= 0) {
            fds[nfds] = (struct pollfd){.fd = err->fd, .events = POLLIN};
            i_err = nfds++;
        }
        int n = poll(fds, (nfds_t)nfds, (int)wait);
        if (n <= 0)
            continue; /* timeout or EINTR: re-check the clock and the child */
        if (i_in >= 0 && fds[i_in].revents) {
            if (fds[i_in].revents & POLLOUT) {
                size_t left = sp->input_len - written;
                ssize_t w = write(*in_fd, sp->input + written, left < 65536 ? left : 65536);
                if (w > 0)
                    written += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR)
                    close_fd(in_fd); /* EPIPE: it stopped reading; not an error */
                if (written == sp->input_len)
                    close_fd(in_fd); /* EOF for the program */
            } else {
                close_fd(in_fd);
            }
        }
        if (i_out >= 0 && fds[i_out].revents)
            read_some(out, (size_t)sp->max_out);
        if (i_err >= 0 && fds[i_err].revents)
            read_some(err, (size_t)sp->max_out);
    }
    res->status = 0;
    if (!res->lost) {
        while (waitpid(pid, &res->status, 0) < 0) {
            if (errno != EINTR) {
                res->lost = 1;
                break;
            }
        }
    }
}

static char *output_of(const evh_host_api *api, const result *res, const stream *out,
                       const stream *err)
{
    cJSON *o = cJSON_CreateObject();
    char *so = utf8_clean(out->buf ? out->buf : "", out->len);
    char *se = utf8_clean(err->buf ? err->buf : "", err->len);
    char *text = NULL;
    if (o && so && se) {
        if (WIFEXITED(res->status))
            cJSON_AddNumberToObject(o, "exit_code", WEXITSTATUS(res->status));
        else
            cJSON_AddNullToObject(o, "exit_code");
        if (WIFSIGNALED(res->status))
            cJSON_AddNumberToObject(o, "signal", WTERMSIG(res->status));
        else
            cJSON_AddNullToObject(o, "signal");
        cJSON_AddStringToObject(o, "stdout", so);
        cJSON_AddStringToObject(o, "stderr", se);
        cJSON_AddBoolToObject(o, "truncated", out->truncated || err->truncated);
        text = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(o);
    free(so);
    free(se);
    char *copy = text ? api->strdup(text) : NULL;
    free(text);
    return copy;
}

/* The failure message for a finished program, or NULL when it succeeded. */
static char *failure_of(const spec *sp, const result *res, const stream *err, int32_t *rc)
{
    char *msg = NULL;
    int n = 0;
    const char *prog = sp->argv[0];
    if (res->timed_out || res->stopped) {
        char how[96];
        if (res->escalated && sp->grace_ms > 0)
            snprintf(how, sizeof how, "SIGTERM, then SIGKILL after %lld ms", sp->grace_ms);
        else
            snprintf(how, sizeof how, "%s", res->escalated ? "SIGKILL" : "SIGTERM");
        if (res->stopped)
            n = asprintf(&msg, "host stopping ('%s' killed: %s to its process group)", prog, how);
        else
            n = asprintf(&msg, "timed out after %lld ms ('%s' killed: %s to its process group)",
                         sp->timeout_ms, prog, how);
        *rc = res->stopped ? EVH_E_STOPPING : EVH_E_TIMEOUT;
        return n < 0 ? NULL : msg;
    }
    if (res->lost) {
        *rc = EVH_E_PLUGIN;
        return strdup("the exit status of the program was lost (reaped elsewhere: is SIGCHLD "
                      "ignored in this process?)");
    }
    int bad = (WIFEXITED(res->status) && WEXITSTATUS(res->status) != 0) || WIFSIGNALED(res->status);
    if (!bad || !sp->fail_on_nonzero)
        return NULL;
    char *text = utf8_clean(err->buf ? err->buf : "", err->len);
    char *tail = text ? tail_excerpt(text) : NULL;
    const char *sep = tail && tail[0] ? ": " : "";
    if (WIFEXITED(res->status)) {
        n = asprintf(&msg, "'%s' exited with status %d%s%s", prog, WEXITSTATUS(res->status), sep,
                     tail ? tail : "");
    } else {
        const char *abbrev = sigabbrev_np(WTERMSIG(res->status));
        n = asprintf(&msg, "'%s' was killed by signal %d (SIG%s)%s%s", prog, WTERMSIG(res->status),
                     abbrev ? abbrev : "?", sep, tail ? tail : "");
    }
    free(tail);
    free(text);
    *rc = EVH_E_PLUGIN;
    return n < 0 ? strdup("out of memory") : msg;
}

static int32_t exec_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    exec_step *s = ctx;
    const evh_host_api *api = s->api;
    spec sp = {0};
    stream so = {.fd = -1}, se = {.fd = -1};
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    char *err = NULL;
    char eb[128];
    int32_t rc = EVH_E_CONFIG;
    int masked = 0;
    sigset_t pipe_only, old_mask;
    cJSON *cfg = cJSON_ParseWithLength(in->config_json, in->config_len);
    if (!cJSON_IsObject(cfg)) {
        err = strdup("config: must be a JSON object");
        goto done;
    }
    if (read_spec(s, &sp, cfg, &err) != 0)
        goto done;
    rc = EVH_E_IO;
    so.buf = malloc((size_t)sp.max_out + 1);
    se.buf = malloc((size_t)sp.max_out + 1);
    if (!so.buf || !se.buf) {
        rc = EVH_E_NOMEM;
        err = strdup("out of memory");
        goto done;
    }
    if ((sp.input && pipe_high(in_pipe) != 0) || pipe_high(out_pipe) != 0 ||
        pipe_high(err_pipe) != 0) {
        fail(&err, "cannot create pipes: %s", errtext(errno, eb, sizeof eb));
        goto done;
    }
    if (sp.input) {
        /* A program that exits without reading all its input makes our
         * write fail with EPIPE and raise SIGPIPE, which would kill a host
         * that does not ignore it: block it on this thread for the run and
         * discard one that became pending here. */
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_only, &old_mask);
        masked = 1;
    }
    sigset_t pending_before;
    sigpending(&pending_before);
    int64_t started = now_ms();
    pid_t pid = 0;
    int sr = spawn(&sp, in_pipe[0], out_pipe[1], err_pipe[1], &pid);
    close_fd(&in_pipe[0]);
    close_fd(&out_pipe[1]);
    close_fd(&err_pipe[1]);
    if (sr != 0) {
        fail(&err, "cannot run '%s': %s%s", sp.path, errtext(sr, eb, sizeof eb),
             sr == ENOEXEC ? " (not a binary and no #! line; no shell is used)" : "");
        goto done;
    }
    so.fd = out_pipe[0];
    se.fd = err_pipe[0];
    out_pipe[0] = err_pipe[0] = -1;
    fcntl(so.fd, F_SETFL, O_NONBLOCK);
    fcntl(se.fd, F_SETFL, O_NONBLOCK);
    if (in_pipe[1] >= 0)
        fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
    result res = {0};
    supervise(s, &sp, pid, &in_pipe[1], &so, &se, &res);
    api->metric(s->host, "duration_ms", (double)(now_ms() - started));
    api->metric(s->host, "stdout_bytes", (double)so.total);
    api->metric(s->host, "stderr_bytes", (double)se.total);
    rc = EVH_OK;
    err = failure_of(&sp, &res, &se, &rc);
    if (!err) {
        rc = EVH_OK;
        out->output_json = output_of(api, &res, &so, &se);
        if (!out->output_json) {
            rc = EVH_E_NOMEM;
            err = strdup("out of memory");
        }
    }
    if (masked && !sigismember(&pending_before, SIGPIPE)) {
        sigset_t now_pending;
        sigpending(&now_pending);
        if (sigismember(&now_pending, SIGPIPE)) {
            struct timespec zero = {0, 0};
            sigtimedwait(&pipe_only, NULL, &zero);
        }
    }
done:
    if (masked)
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (rc != EVH_OK)
        out->error_message = api->strdup(err ? err : evh_status_message(rc));
    free(err);
    for (int i = 0; i < 2; i++) {
        close_fd(&in_pipe[i]);
        close_fd(&out_pipe[i]);
        close_fd(&err_pipe[i]);
    }
    close_fd(&so.fd);
    close_fd(&se.fd);
    free(so.buf);
    free(se.buf);
    spec_free(&sp);
    cJSON_Delete(cfg);
    return rc;
}

/* ---- lifecycle ------------------------------------------------------------- */

static void exec_fini(void *ctx)
{
    exec_step *s = ctx;
    if (!s)
        return;
    free(s->pass_env);
    s->api->free(s);
}

static int32_t exec_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    exec_step *s = api->alloc(sizeof *s);
    if (!s)
        return EVH_E_NOMEM;
    memset(s, 0, sizeof *s);
    s->api = api;
    s->host = host;
    /* init sees the workflow's `with:` unresolved: remember pass_env as
     * written there, and refuse a template in it */
    size_t len = 0;
    const char *cfg = api->config_json(host, &len);
    char *pass = api->json_get(cfg, len, "pass_env");
    if (pass && strstr(pass, "{{")) {
        *errmsg = api->strdup("pass_env: must name environment variables literally, not "
                              "through templates");
        api->free(pass);
        exec_fini(s);
        return EVH_E_CONFIG;
    }
    if (pass) {
        s->pass_env = strdup(pass);
        api->free(pass);
        if (!s->pass_env) {
            exec_fini(s);
            return EVH_E_NOMEM;
        }
    }
    *ctx = s;
    return EVH_OK;
}

/* ---- at load (SDK 1.2) ------------------------------------------------------ */

static int templated(const cJSON *v)
{
    return cJSON_IsString(v) && evh_is_template(v->valuestring);
}

/* What every run would check the same way, with run's own code: the
 * program (found and executable, in the PATH the run gets) and cwd, unless
 * a template decides them per run.  0, or -1 with *err. */
static int check_static(const exec_step *s, const cJSON *cfg, char **err)
{
    const cJSON *cwd = cJSON_GetObjectItemCaseSensitive(cfg, "cwd");
    if (cwd && !templated(cwd) && check_cwd(cwd, err) != 0)
        return -1;
    const cJSON *prog = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cfg, "command"), 0);
    if (!cJSON_IsString(prog) || templated(prog))
        return 0;
    spec sp = {0};
    int rc = read_env(s, &sp, cfg, err);
    const char *path = env_get(&sp, "PATH");
    /* a name looked up in a PATH the event chooses: known per run only */
    if (rc == 0 && (prog->valuestring[0] == '/' || !path || !evh_is_template(path))) {
        sp.argv = calloc(2, sizeof *sp.argv);
        if (sp.argv && (sp.argv[0] = strdup(prog->valuestring)) != NULL)
            sp.argc = 1;
        rc = sp.argc ? resolve_program(&sp, err) : fail(err, "out of memory");
    }
    spec_free(&sp);
    return rc;
}


static int32_t exec_validate(const evh_host_api *api, evh_host *host, char **field,
                             char **errmsg)
{
    void *ctx = NULL;
    char *msg = NULL;
    int32_t rc = exec_init(api, host, &ctx, &msg); /* pass_env written literally */
    if (rc != EVH_OK) {
        evh_steps_split_field(api, msg, field, errmsg);
        api->free(msg);
        return rc;
    }
    size_t len = 0;
    const char *text = api->config_json(host, &len);
    cJSON *cfg = cJSON_ParseWithLength(text, len);
    char *err = NULL;
    if (cfg && check_static(ctx, cfg, &err) != 0) {
        rc = EVH_E_CONFIG;
        evh_steps_split_field(api, err ? err : "out of memory", field, errmsg);
    }
    free(err);
    cJSON_Delete(cfg);
    exec_fini(ctx);
    api->free(msg);
    return rc;
}

static const evh_step exec_step_desc = {.struct_size = sizeof(evh_step),
                                        .init = exec_init,
                                        .run = exec_run,
                                        .fini = exec_fini,
                                        .validate = exec_validate};

EVH_DECLARE_STEP("exec", &exec_step_desc)

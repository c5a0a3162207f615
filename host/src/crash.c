/*
 * crash.c - the crash record file and in-process crash attribution (see
 * crash.h).
 *
 * Everything the signal handler touches is static storage filled in
 * advance: the plugins' address ranges (slots), the file descriptor of the
 * record file, its path.  The handler itself uses only async-signal-safe
 * calls (write, clock_gettime, sigaction, raise, pause) plus backtrace(),
 * which is warmed up at install time so that it does not load libgcc_s (and
 * allocate) inside the handler.
 */
#include "crash.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "jsonutil.h"
#include "log.h"

/* Records kept in memory (the newest); the file holds the same. */
#define CRASH_MEMORY_MAX 4096
/* The record file is read up to this much (its tail). */
#define CRASH_FILE_READ_MAX (4 * 1024 * 1024)

/* ---- the record file ---------------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static crash_entry *entries;
static size_t n_entries;
static volatile int record_fd = -1; /* read by the signal handler */
static char record_path[PATH_MAX];

/* One character-safe token: no spaces or control characters. */
static void token(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c <= 0x20 || c == 0x7f ? '_' : (char)c;
    }
    dst[i] = '\0';
}

static void remember(const crash_entry *e)
{
    if (n_entries == CRASH_MEMORY_MAX) {
        memmove(entries, entries + 1, (CRASH_MEMORY_MAX - 1) * sizeof *entries);
        n_entries--;
    }
    if (!entries && !(entries = calloc(CRASH_MEMORY_MAX, sizeof *entries)))
        return;
    entries[n_entries++] = *e;
}

/* "<at> <id> <mode> <what>" into e; 0, or -1 when malformed. */
static int parse_line(char *line, crash_entry *e)
{
    char *end;
    errno = 0;
    long long at = strtoll(line, &end, 10);
    if (errno || end == line || *end != ' ')
        return -1;
    char *id = end + 1, *sp = strchr(id, ' ');
    if (!sp)
        return -1;
    *sp = '\0';
    char *mode = sp + 1, *sp2 = strchr(mode, ' ');
    if (sp2)
        *sp2 = '\0';
    memset(e, 0, sizeof *e);
    e->at = at;
    token(e->id, sizeof e->id, id);
    token(e->mode, sizeof e->mode, mode);
    snprintf(e->what, sizeof e->what, "%s", sp2 ? sp2 + 1 : "");
    return e->id[0] ? 0 : -1;
}

static void format_line(const crash_entry *e, char *buf, size_t size)
{
    snprintf(buf, size, "%lld %s %s %s\n", (long long)e->at, e->id, e->mode, e->what);
}

/* Rewrite the file with the entries in memory (tmp + rename). */
static void rewrite(void)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", record_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    int ok = 1;
    for (size_t i = 0; ok && i < n_entries; i++) {
        char line[sizeof(crash_entry) + 64];
        format_line(&entries[i], line, sizeof line);
        ok = write(fd, line, strlen(line)) == (ssize_t)strlen(line);
    }
    ok = fsync(fd) == 0 && ok;
    close(fd);
    if (!ok || rename(tmp, record_path) != 0)
        unlink(tmp);
}

int crash_open(const char *data_dir, int keep_s)
{
    crash_close();
    if (!data_dir)
        return -1;
    pthread_mutex_lock(&lock);
    snprintf(record_path, sizeof record_path, "%s/%s", data_dir, CRASH_FILE_NAME);
    char err[256];
    size_t len = 0;
    char *text = NULL;
    struct stat st;
    if (stat(record_path, &st) == 0 && st.st_size > CRASH_FILE_READ_MAX) {
        /* only the tail matters: the newest records */
        int fd = open(record_path, O_RDONLY | O_CLOEXEC);
        text = fd >= 0 ? malloc(CRASH_FILE_READ_MAX + 1) : NULL;
        ssize_t n = text ? pread(fd, text, CRASH_FILE_READ_MAX,
                                 st.st_size - CRASH_FILE_READ_MAX)
                         : -1;
        if (fd >= 0)
            close(fd);
        if (n > 0) {
            text[n] = '\0';
            len = (size_t)n;
        } else {
            free(text);
            text = NULL;
        }
    } else {
        text = file_read_all(record_path, CRASH_FILE_READ_MAX, &len, err, sizeof err);
    }
    int64_t since = (int64_t)time(NULL) - keep_s;
    size_t read = 0, kept = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        crash_entry e;
        if (parse_line(line, &e) != 0)
            continue;
        read++;
        if (e.at >= since) {
            remember(&e);
            kept++;
        }
    }
    free(text);
    if (read != kept)
        rewrite();
    int fd = open(record_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        log_error("crash", "cannot open %s: %s; plugin crashes are not recorded across "
                  "restarts", record_path, strerror(errno));
    record_fd = fd;
    pthread_mutex_unlock(&lock);
    return fd >= 0 ? 0 : -1;
}

void crash_close(void)
{
    pthread_mutex_lock(&lock);
    if (record_fd >= 0)
        close(record_fd);
    record_fd = -1;
    free(entries);
    entries = NULL;
    n_entries = 0;
    pthread_mutex_unlock(&lock);
}

void crash_append(const char *id, const char *mode, const char *what)
{
    crash_entry e = {.at = (int64_t)time(NULL)};
    token(e.id, sizeof e.id, id ? id : "?");
    token(e.mode, sizeof e.mode, mode ? mode : "?");
    snprintf(e.what, sizeof e.what, "%s", what ? what : "");
    for (char *c = e.what; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    }
    char line[sizeof(crash_entry) + 64];
    format_line(&e, line, sizeof line);
    pthread_mutex_lock(&lock);
    remember(&e);
    if (record_fd >= 0 && write(record_fd, line, strlen(line)) < 0)
        log_warn("crash", "cannot append to %s: %s", record_path, strerror(errno));
    pthread_mutex_unlock(&lock);
}

size_t crash_count(const char *id, int64_t since, crash_entry *last)
{
    size_t n = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; id && i < n_entries; i++) {
        if (entries[i].at < since || strcmp(entries[i].id, id) != 0)
            continue;
        n++;
        if (last)
            *last = entries[i];
    }
    pthread_mutex_unlock(&lock);
    return n;
}

/* ---- the address ranges of in-process plugins --------------------------- */

#define CRASH_SLOTS 512
#define CRASH_SEGMENTS 8

typedef struct slot {
    atomic_int used;
    void *dl;
    char id[EVH_ID_MAX_LEN + 1];
    char lib[96]; /* the library's file name, for the log */
    uintptr_t base;
    int n_seg;
    uintptr_t lo[CRASH_SEGMENTS], hi[CRASH_SEGMENTS];
} slot;

static slot slots[CRASH_SLOTS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
/* The id of the plugin being dlopened, "" when none (static storage). */
static char loading_id[EVH_ID_MAX_LEN + 1];
static atomic_int loading;

typedef struct find_segments {
    uintptr_t base;
    const char *name;
    slot *s;
} find_segments;

static int on_object(struct dl_phdr_info *info, size_t size, void *ud)
{
    (void)size;
    find_segments *f = ud;
    if (info->dlpi_addr != f->base || !info->dlpi_name || strcmp(info->dlpi_name, f->name))
        return 0;
    for (int i = 0; i < info->dlpi_phnum && f->s->n_seg < CRASH_SEGMENTS; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        f->s->lo[f->s->n_seg] = info->dlpi_addr + ph->p_vaddr;
        f->s->hi[f->s->n_seg] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        f->s->n_seg++;
    }
    return 1;
}

void crash_loading(const char *id)
{
    pthread_mutex_lock(&slots_lock);
    snprintf(loading_id, sizeof loading_id, "%s", id ? id : "?");
    atomic_store(&loading, 1);
    pthread_mutex_unlock(&slots_lock);
}

void crash_loaded(const char *id, const char *library, void *dl)
{
    pthread_mutex_lock(&slots_lock);
    atomic_store(&loading, 0);
    struct link_map *lm = NULL;
    slot *s = NULL;
    for (size_t i = 0; dl && i < CRASH_SLOTS && !s; i++) {
        if (!atomic_load(&slots[i].used))
            s = &slots[i];
    }
    if (s && dlinfo(dl, RTLD_DI_LINKMAP, &lm) == 0 && lm) {
        memset(s->lo, 0, sizeof s->lo);
        memset(s->hi, 0, sizeof s->hi);
        s->n_seg = 0;
        s->dl = dl;
        s->base = lm->l_addr;
        snprintf(s->id, sizeof s->id, "%s", id ? id : "?");
        const char *path = library ? library : lm->l_name ? lm->l_name : "?";
        const char *name = strrchr(path, '/');
        snprintf(s->lib, sizeof s->lib, "%s", name ? name + 1 : path);
        find_segments f = {.base = lm->l_addr, .name = lm->l_name ? lm->l_name : "", .s = s};
        dl_iterate_phdr(on_object, &f);
        if (s->n_seg > 0)
            atomic_store(&s->used, 1);
    } else if (dl) {
        log_warn("crash", "plugin '%s': its code cannot be told apart in a crash (%s)",
                 id ? id : "?", s ? "no link map" : "too many plugins loaded");
    }
    pthread_mutex_unlock(&slots_lock);
}

void crash_unregister(void *dl)
{
    pthread_mutex_lock(&slots_lock);
    for (size_t i = 0; dl && i < CRASH_SLOTS; i++) {
        if (atomic_load(&slots[i].used) && slots[i].dl == dl)
            atomic_store(&slots[i].used, 0);
    }
    pthread_mutex_unlock(&slots_lock);
}

/* ---- the handler (async-signal-safe from here on) ------------------------ */

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
static atomic_int crashing;

typedef struct out {
    char buf[1024];
    size_t len;
} out;

static void put(out *o, const char *s)
{
    while (s && *s && o->len + 1 < sizeof o->buf)
        o->buf[o->len++] = *s++;
}

static void put_num(out *o, unsigned long long v, unsigned base, int min_digits)
{
    char tmp[32];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v && n < (int)sizeof tmp);
    while (n < min_digits && n < (int)sizeof tmp)
        tmp[n++] = '0';
    while (n > 0 && o->len + 1 < sizeof o->buf)
        o->buf[o->len++] = tmp[--n];
}

static void put_hex(out *o, uintptr_t v)
{
    put(o, "0x");
    put_num(o, v, 16, 1);
}

/* RFC 3339 UTC with milliseconds, as log.c writes it. */
static void put_timestamp(out *o, const struct timespec *ts)
{
    long long days = ts->tv_sec / 86400, secs = ts->tv_sec % 86400;
    /* civil from days (H. Hinnant's algorithm) */
    long long z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
    long long mo = mp < 10 ? mp + 3 : mp - 9;
    y += mo <= 2;
    put_num(o, (unsigned long long)y, 10, 4);
    put(o, "-");
    put_num(o, (unsigned long long)mo, 10, 2);
    put(o, "-");
    put_num(o, (unsigned long long)d, 10, 2);
    put(o, "T");
    put_num(o, (unsigned long long)(secs / 3600), 10, 2);
    put(o, ":");
    put_num(o, (unsigned long long)(secs / 60 % 60), 10, 2);
    put(o, ":");
    put_num(o, (unsigned long long)(secs % 60), 10, 2);
    put(o, ".");
    put_num(o, (unsigned long long)(ts->tv_nsec / 1000000), 10, 3);
    put(o, "Z");
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGILL:
        return "SIGILL";
    case SIGFPE:
        return "SIGFPE";
    case SIGABRT:
        return "SIGABRT";
    }
    return "a fatal signal";
}

static const slot *slot_of(uintptr_t addr)
{
    for (size_t i = 0; addr && i < CRASH_SLOTS; i++) {
        const slot *s = &slots[i];
        if (!atomic_load_explicit(&s->used, memory_order_acquire))
            continue;
        for (int k = 0; k < s->n_seg; k++) {
            if (addr >= s->lo[k] && addr < s->hi[k])
                return s;
        }
    }
    return NULL;
}

static uintptr_t pc_of(const void *ucv)
{
    const ucontext_t *uc = ucv;
    if (!uc)
        return 0;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__i386__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_EIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    return 0;
#endif
}

static void write_all_fd(int fd, const char *buf, size_t len)
{
    while (fd >= 0 && len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static void on_fatal(int sig, siginfo_t *si, void *ucv)
{
    int saved_errno = errno;
    if (atomic_exchange(&crashing, 1)) {
        /* another thread is reporting its crash and then ends the process */
        for (;;)
            pause();
    }
    uintptr_t pc = pc_of(ucv), where = pc;
    const slot *s = slot_of(pc);
    if (!s) {
        /* the fault is in libc or the host, called by the plugin: the
         * first return address on the stack inside a plugin */
        void *frames[64];
        int n = backtrace(frames, 64);
        for (int i = 0; i < n && !s; i++) {
            s = slot_of((uintptr_t)frames[i]);
            if (s)
                where = (uintptr_t)frames[i];
        }
    }
    const char *id = s ? s->id : atomic_load(&loading) ? loading_id : NULL;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);

    out line = {.len = 0};
    put_timestamp(&line, &now);
    put(&line, " ERROR [crash] ");
    if (id) {
        put(&line, "plugin '");
        put(&line, id);
        put(&line, "' crashed the host: ");
        put(&line, signal_name(sig));
        if (s) {
            put(&line, " at ");
            put(&line, s->lib);
            put(&line, "+");
            put_hex(&line, where - s->base);
        } else {
            put(&line, " while its library was being loaded");
        }
    } else {
        put(&line, "evhost crashed: ");
        put(&line, signal_name(sig));
        put(&line, " at ");
        put_hex(&line, pc);
        put(&line, ", not in the code of any in-process plugin");
    }
    if (sig == SIGSEGV || sig == SIGBUS) {
        put(&line, " (fault address ");
        put_hex(&line, si ? (uintptr_t)si->si_addr : 0);
        put(&line, ")");
    }
    int fd = record_fd;
    if (id && fd >= 0) {
        put(&line, "; recorded in ");
        put(&line, record_path);
    }
    put(&line, "; the process ends now\n");
    write_all_fd(STDERR_FILENO, line.buf, line.len);

    if (id && fd >= 0) {
        out rec = {.len = 0};
        put_num(&rec, (unsigned long long)now.tv_sec, 10, 1);
        put(&rec, " ");
        put(&rec, id);
        put(&rec, " in-process ");
        put(&rec, signal_name(sig));
        if (s) {
            put(&rec, " at ");
            put(&rec, s->lib);
            put(&rec, "+");
            put_hex(&rec, where - s->base);
        } else {
            put(&rec, " while loading");
        }
        put(&rec, "\n");
        write_all_fd(fd, rec.buf, rec.len);
    }

    /* The default action, as if there had been no handler: a fault
     * re-executes and ends the process; a sent signal is raised again (it
     * is blocked until this handler returns). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (!si || si->si_code <= 0 || sig == SIGABRT)
        raise(sig);
    errno = saved_errno;
}

void crash_install_handlers(void)
{
    void *warm[4];
    backtrace(warm, 4); /* loads the unwinder now, not in the handler */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++)
        sigaction(fatal_signals[i], &sa, NULL);
}

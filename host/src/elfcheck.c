/*
 * elfcheck.c - a plugin library's exports and dependencies from its ELF
 * file (see elfcheck.h).  The file is untrusted: every offset, size and
 * string index is checked against the mapping before use, and every
 * structure is copied out with memcpy (the file need not be aligned).
 */
#include "elfcheck.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <link.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <evhost/evhost.h>

#include "evh_limits.h"

/* ElfW() (<link.h>) names the native structures; these the native macros. */
#if __SIZEOF_POINTER__ == 8
#define SYM_BIND(info) ELF64_ST_BIND(info)
#define SYM_VISIBILITY(other) ELF64_ST_VISIBILITY(other)
#else
#define SYM_BIND(info) ELF32_ST_BIND(info)
#define SYM_VISIBILITY(other) ELF32_ST_VISIBILITY(other)
#endif

/* Nesting of "include" lines in /etc/ld.so.conf that is followed. */
#define LDSO_CONF_MAX_DEPTH 8

/* The ELF identity this process runs as; a library must match it. */
typedef struct native {
    unsigned char elf_class, data;
    uint16_t machine;
} native;

typedef struct image {
    const unsigned char *p;
    size_t size;
} image;

typedef struct strlist {
    char **items;
    size_t n;
    int oom;
} strlist;

static void list_add(strlist *l, const char *s, size_t len)
{
    char **grown = realloc(l->items, (l->n + 1) * sizeof *grown);
    char *copy = grown ? strndup(s, len) : NULL;
    if (grown)
        l->items = grown;
    if (!copy) {
        l->oom = 1;
        return;
    }
    l->items[l->n++] = copy;
}

static void list_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int set_err(char **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_err(char **err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0)
        *err = NULL;
    va_end(ap);
    return code;
}

/* ---- bounds-checked access ---------------------------------------------- */

static const unsigned char *at(const image *im, uint64_t off, uint64_t len)
{
    if (off > im->size || len > im->size - off)
        return NULL;
    return im->p + off;
}

/* The NUL-terminated string at index idx of string table sec, or NULL. */
static const char *str_at(const image *im, const ElfW(Shdr) *sec, uint64_t idx)
{
    if (sec->sh_type != SHT_STRTAB || idx >= sec->sh_size)
        return NULL;
    const unsigned char *s = at(im, sec->sh_offset + idx, sec->sh_size - idx);
    if (!s || !memchr(s, '\0', sec->sh_size - idx))
        return NULL;
    return (const char *)s;
}

static int section(const image *im, const ElfW(Ehdr) *eh, size_t i, ElfW(Shdr) *out)
{
    const unsigned char *p = at(im, eh->e_shoff + (uint64_t)i * sizeof *out, sizeof *out);
    if (!p)
        return -1;
    memcpy(out, p, sizeof *out);
    return 0;
}

/* ---- the ELF header ----------------------------------------------------- */

static const char *header_problem(const ElfW(Ehdr) *eh, const native *nat)
{
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
        return "not an ELF file";
    if (eh->e_ident[EI_CLASS] != nat->elf_class || eh->e_ident[EI_DATA] != nat->data)
        return "an ELF file for another word size or byte order than this host's";
    if (eh->e_machine != nat->machine)
        return "an ELF file for another processor architecture than this host's";
    if (eh->e_type != ET_DYN)
        return "an ELF file that is not a shared object (build it with -shared -fPIC)";
    return NULL;
}

/* This process's identity, from its own executable; the compile-time class
 * and byte order when /proc is not there. */
static void native_identity(native *nat)
{
    nat->elf_class = sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32;
    nat->data = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB;
    nat->machine = EM_NONE;
    ElfW(Ehdr) eh;
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && read(fd, &eh, sizeof eh) == (ssize_t)sizeof eh)
        nat->machine = eh.e_machine;
    if (fd >= 0)
        close(fd);
}

/* ---- finding a needed library ------------------------------------------- */

/* 1 when path is a readable ELF shared object for this machine. */
static int usable_library(const char *path, const native *nat)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ElfW(Ehdr) eh;
    int ok = read(fd, &eh, sizeof eh) == (ssize_t)sizeof eh && !header_problem(&eh, nat);
    close(fd);
    return ok;
}

/* dir with "$ORIGIN" / "${ORIGIN}" replaced by origin; NULL for other
 * dynamic string tokens ($LIB, $PLATFORM), which are not worth guessing. */
static char *expand_origin(const char *dir, size_t len, const char *origin)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f)
        return NULL;
    int bad = 0;
    for (size_t i = 0; i < len && !bad; i++) {
        if (dir[i] != '$') {
            fputc(dir[i], f);
        } else if (len - i >= 7 && !strncmp(dir + i, "$ORIGIN", 7)) {
            fputs(origin, f);
            i += 6;
        } else if (len - i >= 9 && !strncmp(dir + i, "${ORIGIN}", 9)) {
            fputs(origin, f);
            i += 8;
        } else {
            bad = 1;
        }
    }
    fclose(f);
    if (bad) {
        free(out);
        return NULL;
    }
    return out;
}

/* 1 when name is in one of the directories of list, separated by any of
 * seps; an empty entry is the current directory, as for ld.so. */
static int in_dirs(const char *list, const char *seps, const char *origin, const char *name,
                   const native *nat)
{
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, seps);
        char *dir = len ? expand_origin(p, len, origin) : strdup(".");
        char *path;
        int found = 0;
        if (dir && asprintf(&path, "%s/%s", dir, name) >= 0) {
            found = usable_library(path, nat);
            free(path);
        }
        free(dir);
        if (found)
            return 1;
        p += len;
        if (*p)
            p++;
    }
    return 0;
}

/* The directories /etc/ld.so.conf names, following "include" globs. */
static void ldso_conf_dirs(const char *file, int depth, strlist *out)
{
    FILE *f = depth <= LDSO_CONF_MAX_DEPTH ? fopen(file, "re") : NULL;
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        line[strcspn(line, "#\n")] = '\0';
        char *s = line + strspn(line, " \t");
        if (!strncmp(s, "include", 7) && (s[7] == ' ' || s[7] == '\t')) {
            s += 7 + strspn(s + 7, " \t");
            s[strcspn(s, " \t")] = '\0';
            char *pattern = NULL;
            const char *slash = strrchr(file, '/');
            if (s[0] == '/' || !slash)
                pattern = strdup(s);
            else if (asprintf(&pattern, "%.*s/%s", (int)(slash - file), file, s) < 0)
                pattern = NULL;
            glob_t g;
            if (pattern && glob(pattern, 0, NULL, &g) == 0) {
                for (size_t i = 0; i < g.gl_pathc; i++)
                    ldso_conf_dirs(g.gl_pathv[i], depth + 1, out);
                globfree(&g);
            }
            free(pattern);
        } else if (!strncmp(s, "hwcap", 5)) {
            continue;
        } else {
            for (char *tok = s; *tok;) {
                size_t len = strcspn(tok, " \t:,=");
                if (len)
                    list_add(out, tok, len);
                tok += len;
                tok += strspn(tok, " \t:,=");
            }
        }
    }
    free(line);
    fclose(f);
}

/* The directories this process itself searches (LD_LIBRARY_PATH, its
 * RUNPATH, the system's default directories), as the dynamic linker
 * reports them. */
static void host_search_dirs(strlist *out)
{
#ifdef RTLD_DI_SERINFO
    void *self = dlopen(NULL, RTLD_LAZY);
    Dl_serinfo size;
    if (self && dlinfo(self, RTLD_DI_SERINFOSIZE, &size) == 0) {
        Dl_serinfo *si = malloc(size.dls_size);
        if (si) {
            si->dls_size = size.dls_size;
            si->dls_cnt = size.dls_cnt;
            if (dlinfo(self, RTLD_DI_SERINFO, si) == 0) {
                for (unsigned i = 0; i < si->dls_cnt; i++)
                    list_add(out, si->dls_serpath[i].dls_name, strlen(si->dls_serpath[i].dls_name));
            }
            free(si);
        }
    }
    if (self)
        dlclose(self);
#else
    (void)out;
#endif
}

typedef struct search_ctx {
    const native *nat;
    const char *origin;  /* the plugin library's directory */
    const char *rpath;   /* DT_RPATH, or NULL */
    const char *runpath; /* DT_RUNPATH, or NULL */
    strlist system;      /* ld.so.conf, the host's search path, defaults */
} search_ctx;

static int already_loaded(const char *name)
{
    void *h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
    if (h)
        dlclose(h);
    return h != NULL;
}

static int find_needed(const search_ctx *s, const char *name)
{
    if (strchr(name, '/'))
        return usable_library(name, s->nat);
    if (already_loaded(name))
        return 1;
    if (in_dirs(s->runpath, ":", s->origin, name, s->nat) ||
        in_dirs(s->rpath, ":", s->origin, name, s->nat) ||
        in_dirs(getenv("LD_LIBRARY_PATH"), ":;", s->origin, name, s->nat))
        return 1;
    for (size_t i = 0; i < s->system.n; i++) {
        char *path;
        if (asprintf(&path, "%s/%s", s->system.items[i], name) < 0)
            continue;
        int found = usable_library(path, s->nat);
        free(path);
        if (found)
            return 1;
    }
    return 0;
}

static void search_init(search_ctx *s, const native *nat, const char *lib_path)
{
    memset(s, 0, sizeof *s);
    s->nat = nat;
    char *real = realpath(lib_path, NULL);
    char *slash = real ? strrchr(real, '/') : NULL;
    if (slash)
        *slash = '\0';
    s->origin = real ? real : strdup(".");
    ldso_conf_dirs("/etc/ld.so.conf", 0, &s->system);
    host_search_dirs(&s->system);
    static const char *const defaults[] = {"/lib64", "/usr/lib64", "/lib", "/usr/lib"};
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++)
        list_add(&s->system, defaults[i], strlen(defaults[i]));
}

static void search_release(search_ctx *s)
{
    free((char *)s->origin);
    list_free(&s->system);
}

/* ---- the tables --------------------------------------------------------- */

/* Symbols the linker defines in every shared object on some toolchains. */
static int linker_made(const char *name)
{
    static const char *const names[] = {"_init", "_fini", "_edata", "_end", "__bss_start"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(name, names[i]))
            return 1;
    return 0;
}

static int read_exports(const image *im, const ElfW(Ehdr) *eh, const ElfW(Shdr) *dynsym,
                        elf_report *r, strlist *extra, char **err)
{
    ElfW(Shdr) strtab;
    if (dynsym->sh_entsize != sizeof(ElfW(Sym)) || section(im, eh, dynsym->sh_link, &strtab) ||
        !at(im, dynsym->sh_offset, dynsym->sh_size))
        return set_err(err, EVH_E_LOAD, "malformed dynamic symbol table");
    size_t count = dynsym->sh_size / sizeof(ElfW(Sym));
    for (size_t i = 1; i < count; i++) {
        ElfW(Sym) sym;
        memcpy(&sym, im->p + dynsym->sh_offset + i * sizeof sym, sizeof sym);
        unsigned bind = SYM_BIND(sym.st_info);
        unsigned vis = SYM_VISIBILITY(sym.st_other);
        if (sym.st_shndx == SHN_UNDEF || sym.st_shndx == SHN_ABS ||
            (bind != STB_GLOBAL && bind != STB_WEAK && bind != STB_GNU_UNIQUE) ||
            (vis != STV_DEFAULT && vis != STV_PROTECTED))
            continue;
        const char *name = str_at(im, &strtab, sym.st_name);
        if (!name)
            return set_err(err, EVH_E_LOAD, "malformed dynamic symbol table (symbol %zu)", i);
        if (!strcmp(name, EVH_ENTRY_SYMBOL))
            r->exports_entry = 1;
        else if (*name && !linker_made(name))
            list_add(extra, name, strlen(name));
    }
    return EVH_OK;
}

static int read_dynamic(const image *im, const ElfW(Ehdr) *eh, const ElfW(Shdr) *dyn,
                        strlist *needed, const char **rpath, const char **runpath, char **err)
{
    ElfW(Shdr) strtab;
    if (dyn->sh_entsize != sizeof(ElfW(Dyn)) || section(im, eh, dyn->sh_link, &strtab) ||
        !at(im, dyn->sh_offset, dyn->sh_size))
        return set_err(err, EVH_E_LOAD, "malformed dynamic section");
    size_t count = dyn->sh_size / sizeof(ElfW(Dyn));
    for (size_t i = 0; i < count; i++) {
        ElfW(Dyn) d;
        memcpy(&d, im->p + dyn->sh_offset + i * sizeof d, sizeof d);
        if (d.d_tag == DT_NULL)
            break;
        if (d.d_tag != DT_NEEDED && d.d_tag != DT_RPATH && d.d_tag != DT_RUNPATH)
            continue;
        const char *s = str_at(im, &strtab, d.d_un.d_val);
        if (!s)
            return set_err(err, EVH_E_LOAD, "malformed dynamic section (entry %zu)", i);
        if (d.d_tag == DT_NEEDED)
            list_add(needed, s, strlen(s));
        else if (d.d_tag == DT_RPATH)
            *rpath = s;
        else
            *runpath = s;
    }
    return EVH_OK;
}

static int read_image(const image *im, const char *path, const native *nat, elf_report *r,
                      char **err)
{
    ElfW(Ehdr) eh;
    if (im->size < sizeof eh)
        return set_err(err, EVH_E_LOAD, "not an ELF file (%zu bytes)", im->size);
    memcpy(&eh, im->p, sizeof eh);
    const char *why = header_problem(&eh, nat);
    if (why)
        return set_err(err, EVH_E_LOAD, "%s", why);
    if (eh.e_shnum == 0 || eh.e_shentsize != sizeof(ElfW(Shdr)))
        return set_err(err, EVH_E_LOAD, "no section headers to read the symbols from");
    ElfW(Shdr) dynsym = {0}, dyn = {0};
    for (size_t i = 0; i < eh.e_shnum; i++) {
        ElfW(Shdr) sh;
        if (section(im, &eh, i, &sh))
            return set_err(err, EVH_E_LOAD, "section header %zu is outside the file", i);
        if (sh.sh_type == SHT_DYNSYM)
            dynsym = sh;
        else if (sh.sh_type == SHT_DYNAMIC)
            dyn = sh;
    }
    strlist extra = {0}, needed = {0};
    const char *rpath = NULL, *runpath = NULL;
    int rc = EVH_OK;
    if (dynsym.sh_type == SHT_DYNSYM)
        rc = read_exports(im, &eh, &dynsym, r, &extra, err);
    if (rc == EVH_OK && dyn.sh_type == SHT_DYNAMIC)
        rc = read_dynamic(im, &eh, &dyn, &needed, &rpath, &runpath, err);
    strlist missing = {0};
    if (rc == EVH_OK && needed.n) {
        search_ctx s;
        search_init(&s, nat, path);
        s.rpath = rpath;
        s.runpath = runpath;
        for (size_t i = 0; i < needed.n; i++)
            if (!find_needed(&s, needed.items[i]))
                list_add(&missing, needed.items[i], strlen(needed.items[i]));
        search_release(&s);
    }
    if (rc == EVH_OK && (extra.oom || needed.oom || missing.oom))
        rc = set_err(err, EVH_E_NOMEM, "out of memory");
    r->extra_exports = extra.items;
    r->n_extra_exports = extra.n;
    r->needed = needed.items;
    r->n_needed = needed.n;
    r->missing = missing.items;
    r->n_missing = missing.n;
    return rc;
}

int elfcheck_library(const char *path, elf_report *r, char **err)
{
    memset(r, 0, sizeof *r);
    *err = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return set_err(err, EVH_E_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return set_err(err, EVH_E_IO, "not a regular file");
    }
    if (st.st_size > EVH_PLUGIN_LIBRARY_MAX_BYTES) {
        close(fd);
        return set_err(err, EVH_E_LOAD, "larger than %ld bytes: not read",
                       (long)EVH_PLUGIN_LIBRARY_MAX_BYTES);
    }
    image im = {NULL, (size_t)st.st_size};
    void *map = im.size ? mmap(NULL, im.size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (im.size && map == MAP_FAILED)
        return set_err(err, EVH_E_IO, "cannot read: %s", strerror(errno));
    im.p = im.size ? map : (const unsigned char *)"";
    native nat;
    native_identity(&nat);
    int rc = read_image(&im, path, &nat, r, err);
    if (im.size)
        munmap(map, im.size);
    return rc;
}

void elf_report_release(elf_report *r)
{
    strlist l = {r->extra_exports, r->n_extra_exports, 0};
    list_free(&l);
    l = (strlist){r->needed, r->n_needed, 0};
    list_free(&l);
    l = (strlist){r->missing, r->n_missing, 0};
    list_free(&l);
    memset(r, 0, sizeof *r);
}

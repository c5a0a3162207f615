/*
 * cli_plugins.c - `evhost plugins list` and `evhost plugins validate`.
 *
 * validate runs the same checks as the daemon's loader up to (and including)
 * dlopen and the descriptor cross-check, but never calls into the plugin's
 * init, so it is safe on untrusted folders' manifests; it prints every
 * problem once, on its own line, as "file: json.path: reason" or "file:
 * reason", the file being the one that has the problem (the loader's own
 * log line is left out: it would say the same again).  Before the loader
 * dlopens the library, it reads the library as an ELF file (elfcheck.c):
 * exported symbols besides the entry function are a warning, DT_NEEDED
 * libraries that cannot be found are problems, each named.
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <evhost/evhost.h>

#include "cli.h"
#include "diag.h"
#include "elfcheck.h"
#include "loader.h"
#include "manifest.h"
#include "registry.h"

static int is_dir(const char *path);

/* The first directory of: <dir of the binary>/<name> (a build tree),
 * <dir of the binary>/../<installed_rel> (an installed tree wherever it was
 * copied: `cmake --install --prefix`, DESTDIR staging, a Docker COPY), else
 * the path configured at build time. */
static char *builtin_dir(const char *name, const char *installed_rel, const char *installed)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = '\0';
        char *candidate = NULL;
        if (asprintf(&candidate, "%s/%s", exe, name) < 0)
            return NULL;
        if (is_dir(candidate))
            return candidate;
        free(candidate);
        if (asprintf(&candidate, "%s/../%s", exe, installed_rel) < 0)
            return NULL;
        char *real = is_dir(candidate) ? realpath(candidate, NULL) : NULL;
        free(candidate);
        if (real)
            return real;
    }
    return strdup(installed);
}

char *cli_default_plugin_root(void)
{
    return builtin_dir("plugins", "lib/evhost/plugins", EVH_INSTALL_PLUGIN_DIR);
}

char *cli_default_examples_root(void)
{
    return builtin_dir("examples", "share/evhost/examples", EVH_INSTALL_EXAMPLES_DIR);
}

static int has_manifest(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/plugin.json", dir);
    return stat(path, &st) == 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The plugin folders an argument names: itself when it holds a plugin.json,
 * else its sub-folders (sorted).  Returns a malloc'd array of paths. */
static char **plugin_folders(const char *arg, size_t *count)
{
    char **out = NULL;
    size_t n = 0, cap = 0;
    *count = 0;
    if (has_manifest(arg) || !is_dir(arg)) {
        out = malloc(sizeof *out);
        if (out && (out[0] = strdup(arg)) != NULL)
            *count = 1;
        return out;
    }
    DIR *d = opendir(arg);
    if (!d)
        return NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *path = NULL;
        if (asprintf(&path, "%s/%s", arg, e->d_name) < 0)
            break;
        if (!is_dir(path)) {
            free(path);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(out, cap * sizeof *out);
            if (!grown) {
                free(path);
                break;
            }
            out = grown;
        }
        out[n++] = path;
    }
    closedir(d);
    if (n > 1) /* out is NULL when nothing was found */
        qsort(out, n, sizeof *out, name_cmp);
    *count = n;
    return out;
}

static void free_folders(char **folders, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(folders[i]);
    free(folders);
}

/* Exported symbols listed in a warning; more are counted. */
#define VALIDATE_LIST_SYMBOLS 10

/* The built library, read as an ELF file before the loader dlopens it: its
 * exports (exactly evh_plugin_entry; others are a warning) and its
 * DT_NEEDED libraries (each must be found: an error per missing one).
 * Nothing is printed when the library does not exist: the loader says so.
 * Returns the number of problems printed (warnings do not count). */
static int check_library_file(const char *dir, const manifest *m)
{
    char *lib = NULL;
    struct stat st;
    if ((m->library && *m->library ? asprintf(&lib, "%s/%s", dir, m->library)
                                   : asprintf(&lib, "%s/%s.so", dir, m->id)) < 0)
        return 0;
    if (stat(lib, &st) != 0 || !S_ISREG(st.st_mode)) {
        free(lib);
        return 0;
    }
    elf_report r;
    char *err = NULL;
    int problems = 0;
    if (elfcheck_library(lib, &r, &err) != EVH_OK) {
        fprintf(stdout, "%s: %s\n", lib, err ? err : "out of memory");
        problems++;
    }
    for (size_t i = 0; i < r.n_missing; i++) {
        fprintf(stdout, "%s: needs %s, which is not found (searched its RUNPATH, "
                "LD_LIBRARY_PATH, /etc/ld.so.conf and the system library directories): "
                "install it where evhost runs, or link it into the plugin statically\n",
                lib, r.missing[i]);
        problems++;
    }
    if (r.n_extra_exports) {
        fprintf(stdout, "%s: warning: exports %zu symbol(s) besides %s:", lib,
                r.n_extra_exports, EVH_ENTRY_SYMBOL);
        for (size_t i = 0; i < r.n_extra_exports && i < VALIDATE_LIST_SYMBOLS; i++)
            fprintf(stdout, "%s %s", i ? "," : "", r.extra_exports[i]);
        if (r.n_extra_exports > VALIDATE_LIST_SYMBOLS)
            fprintf(stdout, " and %zu more", r.n_extra_exports - VALIDATE_LIST_SYMBOLS);
        fprintf(stdout, ": build with -fvisibility=hidden (evh_add_plugin does); the plugin's "
                "own calls to exported functions can bind to same-named symbols of the host's "
                "libraries instead\n");
    }
    elf_report_release(&r);
    free(err);
    free(lib);
    return problems;
}

/* Validate one plugin folder; prints problems; returns the id on success
 * (malloc'd) or NULL. */
static char *validate_folder(const char *dir, int *problems)
{
    char *file = NULL;
    if (asprintf(&file, "%s/plugin.json", dir) < 0)
        return NULL;
    if (!is_dir(dir)) {
        fprintf(stdout, "%s: not a directory\n", dir);
        (*problems)++;
        free(file);
        return NULL;
    }
    diag d;
    diag_init(&d, file);
    manifest *m = NULL;
    char *id = NULL;
    if (manifest_load(file, &m, &d) != EVH_OK) {
        diag_print(&d, stdout);
        *problems += d.count ? (int)d.count : 1;
        goto out;
    }
    int library_problems = check_library_file(dir, m);
    *problems += library_problems;
    loader_options opt = {.validate_only = 1};
    plugin *p = loader_load_one(NULL, dir, &opt);
    if (!p) {
        fprintf(stdout, "%s: out of memory\n", dir);
        (*problems)++;
    } else if (p->state == PLUGIN_FAILED) {
        /* The loader's error already names the file that has the problem
         * ("<library>: writable by group or others ...").  dlopen failing
         * on a library the ELF check found broken (not ELF, a dependency
         * missing) is the problem printed above, not another one. */
        if (!(library_problems && p->error_code == EVH_E_LOAD)) {
            fprintf(stdout, "%s\n", p->error ? p->error : evh_status_message(p->error_code));
            (*problems)++;
        }
    } else {
        id = strdup(m->id);
        fprintf(stderr, "ok: %s (%s %s, %s)\n", dir, m->id, m->version,
                m->kind == EVH_KIND_SOURCE ? "event-source" : "workflow-step");
    }
    if (p) {
        registry *tmp = registry_new();
        if (tmp && registry_add(tmp, p) == EVH_OK) {
            loader_unload_all(tmp);
        } else {
            plugin_free(p);
        }
        registry_free(tmp);
    }
out:
    manifest_free(m);
    diag_free(&d);
    free(file);
    return id;
}

int cli_plugins_validate(int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "usage: evhost plugins validate DIR...\n");
        return 2;
    }
    int problems = 0, checked = 0;
    char **ids = NULL;
    char **where = NULL;
    size_t nids = 0;
    for (int a = 0; a < argc; a++) {
        size_t n = 0;
        char **folders = plugin_folders(argv[a], &n);
        for (size_t i = 0; i < n; i++) {
            checked++;
            char *id = validate_folder(folders[i], &problems);
            if (!id)
                continue;
            for (size_t j = 0; j < nids; j++) {
                if (!strcmp(ids[j], id)) {
                    fprintf(stdout, "%s/plugin.json: id: duplicate id '%s' (also in %s)\n",
                            folders[i], id, where[j]);
                    problems++;
                }
            }
            char **grown_ids = realloc(ids, (nids + 1) * sizeof *ids);
            char **grown_where = realloc(where, (nids + 1) * sizeof *where);
            if (!grown_ids || !grown_where)
                abort();
            ids = grown_ids;
            where = grown_where;
            ids[nids] = id;
            where[nids] = strdup(folders[i]);
            nids++;
        }
        free_folders(folders, n);
    }
    free_folders(ids, nids);
    free_folders(where, nids);
    if (checked == 0) {
        fprintf(stdout, "no plugin folders found in the given directories\n");
        return 1;
    }
    fprintf(stderr, "%d plugin folder(s) checked, %d problem(s)\n", checked, problems);
    return problems ? 1 : 0;
}

int cli_plugins_list(int argc, char **argv)
{
    char *root = NULL;
    char *defaults[2] = {NULL, NULL};
    if (argc == 0) {
        root = cli_default_plugin_root();
        if (asprintf(&defaults[0], "%s/event-sources", root) < 0 ||
            asprintf(&defaults[1], "%s/steps", root) < 0)
            return 1;
        argv = defaults;
        argc = 2;
    }
    registry *r = registry_new();
    loader_options opt = {.validate_only = 1};
    for (int a = 0; a < argc; a++) {
        diag d;
        diag_init(&d, argv[a]);
        loader_scan_dir(r, NULL, argv[a], &opt, &d);
        diag_print(&d, stderr);
        diag_free(&d);
    }
    printf("%-28s %-14s %-10s %-9s %s\n", "ID", "TYPE", "VERSION", "STATUS", "FOLDER / ERROR");
    for (size_t i = 0; i < r->count; i++) {
        const plugin *p = r->items[i];
        const char *kind = p->kind == EVH_KIND_SOURCE ? "event-source"
                           : p->kind == EVH_KIND_STEP ? "workflow-step"
                                                      : "?";
        const char *state = p->state == PLUGIN_FAILED ? "failed"
                            : p->state == PLUGIN_INACTIVE ? "inactive"
                                                          : "ok";
        printf("%-28s %-14s %-10s %-9s %s\n", p->id, kind, p->m ? p->m->version : "-",
               state, p->state == PLUGIN_FAILED && p->error ? p->error : p->dir);
    }
    loader_unload_all(r);
    registry_free(r);
    free(defaults[0]);
    free(defaults[1]);
    free(root);
    return 0;
}

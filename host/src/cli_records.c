/*
 * cli_records.c - `evhost events list`, `evhost executions list|show`: what
 * operators ask the database without writing SQL.  Read-only; safe while
 * the daemon runs (WAL readers never block its writer).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evhost/evhost.h>

#include "cli.h"
#include "config.h"
#include "store.h"

typedef struct records_args {
    const char *db;
    const char *config;
    store_filter f;
    int json;
    const char *id; /* executions show */
} records_args;

static void records_usage(FILE *f)
{
    fprintf(f, "usage: evhost events list [options]\n"
               "       evhost executions list [options]\n"
               "       evhost executions show ID [--json]\n"
               "options:\n"
               "  --db FILE          the database (default: storage.path of the settings)\n"
               "  --config FILE      host.yaml whose storage.path to read\n"
               "  --source S --type T --status S --workflow W --trigger T\n"
               "  --since TIME --until TIME   RFC 3339 (since inclusive, until exclusive)\n"
               "  --limit N          rows per page (default 50, at most 500)\n"
               "  --cursor C         the next page (printed after a full page)\n"
               "  --json             JSON instead of a table\n");
}

static int parse_records_args(int argc, char **argv, int want_id, records_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--json")) {
            a->json = 1;
            continue;
        }
        if (o[0] != '-' && want_id && !a->id) {
            a->id = o;
            continue;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        const char **slot = !strcmp(o, "--db")         ? &a->db
                            : !strcmp(o, "--config")   ? &a->config
                            : !strcmp(o, "--source")   ? &a->f.source
                            : !strcmp(o, "--type")     ? &a->f.event_type
                            : !strcmp(o, "--status")   ? &a->f.status
                            : !strcmp(o, "--workflow") ? &a->f.workflow_id
                            : !strcmp(o, "--trigger")  ? &a->f.trigger_id
                            : !strcmp(o, "--since")    ? &a->f.since
                            : !strcmp(o, "--until")    ? &a->f.until
                            : !strcmp(o, "--cursor")   ? &a->f.cursor
                                                       : NULL;
        if (!strcmp(o, "--limit") && v) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > STORE_LIST_MAX_LIMIT) {
                fprintf(stderr, "evhost: --limit: '%s' is not a number from 1 to %d\n", v,
                        STORE_LIST_MAX_LIMIT);
                return -1;
            }
            a->f.limit = (size_t)n;
            continue;
        }
        if (!slot || !v) {
            fprintf(stderr, "evhost: unknown or incomplete option '%s'\n\n", o);
            records_usage(stderr);
            return -1;
        }
        *slot = v;
    }
    if (want_id && !a->id) {
        fprintf(stderr, "evhost executions show: which execution? give its id\n");
        return -1;
    }
    return 0;
}

/* The database named by --db, else by the settings' storage.path. */
static store *open_db(const records_args *a)
{
    char *path = a->db ? strdup(a->db) : NULL;
    if (!path) {
        evh_config *c = NULL;
        diag d;
        diag_init(&d, a->config);
        if (config_load(a->config, &c, &d) != EVH_OK) {
            diag_print(&d, stderr);
            diag_free(&d);
            return NULL;
        }
        diag_free(&d);
        path = strdup(c->storage_path);
        config_free(c);
    }
    if (!path)
        return NULL;
    /* Opening would create an empty database; say what is wrong instead. */
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "evhost: database '%s': %s (has `evhost run` used it yet? --db names "
                        "another)\n", path, strerror(errno));
        free(path);
        return NULL;
    }
    store_options so = {.path = path, .read_only = 1};
    store *st = NULL;
    char *err = NULL;
    if (store_open(&so, &st, &err) != EVH_OK) {
        fprintf(stderr, "evhost: database '%s': %s\n", path, err ? err : "cannot open");
        st = NULL;
    }
    free(err);
    free(path);
    return st;
}

static const char *str_at(const cJSON *o, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s ? s : "-";
}

static void print_json(const cJSON *j)
{
    char *text = cJSON_Print(j);
    if (text)
        puts(text);
    free(text);
}

static int list_common(int argc, char **argv, int executions)
{
    records_args a;
    if (parse_records_args(argc, argv, 0, &a))
        return 2;
    store *st = open_db(&a);
    if (!st)
        return 1;
    char *next = NULL;
    cJSON *rows = executions ? store_executions_list(st, &a.f, &next)
                             : store_events_list(st, &a.f, &next);
    if (!rows) {
        fprintf(stderr, "evhost: %s\n", store_errmsg(st));
        store_close(st);
        return 1;
    }
    if (a.json) {
        cJSON *page = cJSON_CreateObject();
        cJSON_AddItemToObject(page, "items", rows);
        cJSON_AddItemToObject(page, "next_cursor",
                              next ? cJSON_CreateString(next) : cJSON_CreateNull());
        print_json(page);
        cJSON_Delete(page);
    } else {
        const cJSON *r;
        if (executions)
            printf("%-36s  %-24s  %-9s  %-24s  %s\n", "ID", "WORKFLOW", "STATUS", "CREATED",
                   "TRIGGER");
        else
            printf("%-36s  %-24s  %-24s  %-10s  %s\n", "ID", "SOURCE/TYPE", "TIMESTAMP", "STATUS",
                   "USER");
        cJSON_ArrayForEach(r, rows)
        {
            if (executions) {
                printf("%-36s  %-24s  %-9s  %-24s  %s\n", str_at(r, "id"),
                       str_at(r, "workflow_id"), str_at(r, "status"), str_at(r, "created_at"),
                       str_at(r, "trigger_id"));
            } else {
                const cJSON *md = cJSON_GetObjectItemCaseSensitive(r, "metadata");
                char kind[256];
                snprintf(kind, sizeof kind, "%s/%s", str_at(r, "source"),
                         str_at(r, "event_type"));
                printf("%-36s  %-24s  %-24s  %-10s  %s\n", str_at(r, "id"), kind,
                       str_at(md, "timestamp"), str_at(r, "status"), str_at(md, "user_id"));
            }
        }
        if (next)
            printf("more: --cursor %s\n", next);
        cJSON_Delete(rows);
    }
    free(next);
    store_close(st);
    return 0;
}

int cli_events_list(int argc, char **argv)
{
    return list_common(argc, argv, 0);
}

int cli_executions_list(int argc, char **argv)
{
    return list_common(argc, argv, 1);
}

int cli_executions_show(int argc, char **argv)
{
    records_args a;
    if (parse_records_args(argc, argv, 1, &a))
        return 2;
    store *st = open_db(&a);
    if (!st)
        return 1;
    cJSON *x = store_execution_get(st, a.id);
    int rc = 0;
    if (!x) {
        fprintf(stderr, "evhost: no execution '%s' in %s\n", a.id, store_path(st));
        rc = 1;
    } else if (a.json) {
        print_json(x);
    } else {
        printf("execution %s\n  workflow  %s (version %s)\n  trigger   %s\n  event     %s\n"
               "  status    %s\n  created   %s\n  started   %s\n  finished  %s\n",
               str_at(x, "id"), str_at(x, "workflow_id"), str_at(x, "workflow_version"),
               str_at(x, "trigger_id"), str_at(x, "event_id"), str_at(x, "status"),
               str_at(x, "created_at"), str_at(x, "started_at"), str_at(x, "finished_at"));
        if (cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "error")))
            printf("  error     %s\n", str_at(x, "error"));
        printf("  steps:\n");
        const cJSON *s;
        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(x, "steps"))
        {
            const cJSON *dur = cJSON_GetObjectItemCaseSensitive(s, "duration_ms");
            const cJSON *att = cJSON_GetObjectItemCaseSensitive(s, "attempt");
            printf("    %-20s %-16s attempt %d  %-9s %8.1f ms", str_at(s, "step_id"),
                   str_at(s, "plugin"), cJSON_IsNumber(att) ? att->valueint : 0,
                   str_at(s, "status"), cJSON_IsNumber(dur) ? dur->valuedouble : 0.0);
            if (cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "error")))
                printf("  error: %s", str_at(s, "error"));
            printf("\n");
        }
    }
    cJSON_Delete(x);
    store_close(st);
    return rc;
}

/* sqlite - runs ONE parameterized SQL statement against a SQLite database
 * file and outputs the rows it returned and the changes it made.
 *
 * The plugin links libsqlite3 and opens its own connection; it never touches
 * the host's database.  Rules, checked at init so that a bad step fails
 * before any statement of it runs:
 *
 *   - `sql` is exactly one statement.  sqlite3_prepare_v2 compiles the first
 *     statement and returns the rest as its tail; a tail holding anything
 *     but whitespace and comments is refused, so "...; DROP TABLE x" cannot
 *     ride along.  Each `setup` entry is one statement by the same rule.
 *   - `database`, `sql` and `setup` hold no templates.  Values reach the
 *     statement only through `params`, bound with sqlite3_bind_*: event data
 *     is never spliced into SQL text.
 *   - `params` fits the statement: an array has one value per parameter
 *     (?, ?NNN, :name by position), an object one key per named parameter
 *     (:name, @name or $name) and no other key.
 *
 * validate (SDK 1.2) makes the same checks when the workflow loads, with
 * the same code, changing nothing: a file that does not exist yet (create:
 * true) is stood in for by an empty in-memory database, the journal mode is
 * left alone, and setup runs inside a transaction that is rolled back.  A
 * lock it cannot get in time, a setup statement that cannot run inside a
 * transaction (VACUUM), or a table that does not exist yet (another step's
 * setup, or another workflow's, may create it first) leaves the verdict to
 * init.
 *
 * One connection and one prepared statement per instance, made at init.  The
 * SDK never overlaps runs of one instance, but several instances (one per
 * worker thread, and other workflows) may use the same file at once: the
 * connection uses WAL (readers do not block the writer) and a busy timeout
 * (writers wait for each other instead of failing).
 *
 * Output: {"rows": [{column: value, ...}, ...], "row_count": n,
 *          "truncated": bool, "changes": n, "last_insert_rowid": n}
 * INTEGER columns become JSON integers (all 64 bits), REAL numbers, TEXT
 * strings, BLOB base64 strings, NULL null.  Metrics: rows, changes.
 */
#include <evhost/evhost.h>

#include "../common/config_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

typedef struct sql_step {
    const evh_host_api *api;
    evh_host *host;
    sqlite3 *db;
    sqlite3_stmt *stmt; /* `sql`, prepared once, reset after each run */
    int64_t max_rows;
    int validating; /* made by validate: change nothing (see the top) */
    int unsure;     /* validate could not tell: init will */
} sql_step;

/* Format a message into *err (from api->alloc, as the SDK requires) unless
 * one is already there; returns rc. */
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

/* An SQLite result code as an SDK status. */
static int32_t status_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return EVH_E_TIMEOUT; /* still locked after busy_timeout_ms */
    case SQLITE_NOMEM:
        return EVH_E_NOMEM;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return EVH_E_IO;
    default:
        return EVH_E_PLUGIN;
    }
}

static int has_template(const char *text)
{
    return strstr(text, "{{") != NULL;
}

/*
 * Prepare exactly one statement from `text`.  The tail that
 * sqlite3_prepare_v2 leaves is prepared in turn: it may only yield "no
 * statement" (whitespace, comments, stray semicolons), never a statement
 * and never an error (which would mean something that is not a comment).
 */
static int32_t prepare_one(sql_step *s, const char *field, const char *text, sqlite3_stmt **out,
                           char **err)
{
    *out = NULL;
    const char *tail = NULL;
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(s->db, text, -1, &stmt, &tail);
    /* At load a table may still be missing that another step, workflow or
     * program creates before this one runs: only init can tell. */
    s->unsure |= s->validating && rc == SQLITE_ERROR &&
                 !strncmp(sqlite3_errmsg(s->db), "no such table: ", 15);
    if (rc != SQLITE_OK) /* SQLITE_ERROR: bad SQL, an unknown table: the config's fault */
        return fail(s->api, err, rc == SQLITE_ERROR ? EVH_E_CONFIG : status_of(rc), "%s: %s", field,
                    sqlite3_errmsg(s->db));
    if (!stmt)
        return fail(s->api, err, EVH_E_CONFIG, "%s: holds no SQL statement", field);
    while (tail && *tail) {
        sqlite3_stmt *extra = NULL;
        const char *next = NULL;
        rc = sqlite3_prepare_v2(s->db, tail, -1, &extra, &next);
        sqlite3_finalize(extra);
        if (rc != SQLITE_OK || extra) {
            sqlite3_finalize(stmt);
            return fail(s->api, err, EVH_E_CONFIG,
                        "%s: must be a single SQL statement, but text follows the first one: "
                        "'%.60s'",
                        field, tail);
        }
        if (next == tail)
            break;
        tail = next;
    }
    *out = stmt;
    return EVH_OK;
}

/* ---- parameters ----------------------------------------------------------- */

/* The params key a named parameter takes its value from: ":label" ->
 * "label"; NULL for positional ones (?, ?NNN). */
static const char *param_key(sqlite3_stmt *stmt, int i)
{
    const char *name = sqlite3_bind_parameter_name(stmt, i);
    if (!name || name[0] == '?')
        return NULL;
    return name + 1;
}

/* The statement's index for params key `key`, or 0. */
static int param_index(sqlite3_stmt *stmt, const char *key)
{
    static const char prefixes[] = ":@$";
    char name[256];
    for (const char *p = prefixes; *p; p++) {
        int n = snprintf(name, sizeof name, "%c%s", *p, key);
        if (n < 0 || (size_t)n >= sizeof name)
            return 0;
        int i = sqlite3_bind_parameter_index(stmt, name);
        if (i > 0)
            return i;
    }
    return 0;
}

/* Does `params` (NULL: absent) fit the statement?  At init the values may
 * still be templates; only the shape is checked. */
static int32_t check_params(sql_step *s, const cJSON *params, char **err)
{
    int count = sqlite3_bind_parameter_count(s->stmt);
    if (!params || cJSON_IsNull(params)) {
        if (count > 0)
            return fail(s->api, err, EVH_E_CONFIG,
                        "params: missing, but the statement has %d parameter%s", count,
                        count == 1 ? "" : "s");
        return EVH_OK;
    }
    if (cJSON_IsArray(params)) {
        int n = cJSON_GetArraySize(params);
        if (n != count)
            return fail(s->api, err, EVH_E_CONFIG,
                        "params: has %d value%s, but the statement has %d parameter%s", n,
                        n == 1 ? "" : "s", count, count == 1 ? "" : "s");
        return EVH_OK;
    }
    if (!cJSON_IsObject(params))
        return fail(s->api, err, EVH_E_CONFIG, "params: must be an array or an object");
    for (int i = 1; i <= count; i++) {
        const char *key = param_key(s->stmt, i);
        if (!key)
            return fail(s->api, err, EVH_E_CONFIG,
                        "params: an object binds named parameters (:name) only, but parameter "
                        "%d is positional; use an array",
                        i);
        if (!cJSON_GetObjectItemCaseSensitive(params, key))
            return fail(s->api, err, EVH_E_CONFIG, "params.%s: missing (parameter %s)", key,
                        sqlite3_bind_parameter_name(s->stmt, i));
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, params)
    {
        if (!param_index(s->stmt, item->string))
            return fail(s->api, err, EVH_E_CONFIG, "params.%s: the statement has no parameter :%s",
                        item->string, item->string);
    }
    return EVH_OK;
}

/* Bind one JSON value: null, 0/1 for booleans, integers as INTEGER, other
 * numbers as REAL, strings as TEXT, arrays and objects as their JSON text. */
static int bind_value(sqlite3_stmt *stmt, int i, const cJSON *v)
{
    if (cJSON_IsNull(v))
        return sqlite3_bind_null(stmt, i);
    if (cJSON_IsBool(v))
        return sqlite3_bind_int64(stmt, i, cJSON_IsTrue(v) ? 1 : 0);
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        /* in range first: converting an out-of-range double is undefined */
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
            d == (double)(sqlite3_int64)d)
            return sqlite3_bind_int64(stmt, i, (sqlite3_int64)d);
        return sqlite3_bind_double(stmt, i, d);
    }
    if (cJSON_IsString(v))
        return sqlite3_bind_text64(stmt, i, v->valuestring, strlen(v->valuestring),
                                   SQLITE_TRANSIENT, SQLITE_UTF8);
    char *text = cJSON_PrintUnformatted(v);
    if (!text)
        return SQLITE_NOMEM;
    int rc = sqlite3_bind_text64(stmt, i, text, strlen(text), SQLITE_TRANSIENT, SQLITE_UTF8);
    cJSON_free(text);
    return rc;
}

static int32_t bind_params(sql_step *s, const cJSON *params, char **err)
{
    int32_t st = check_params(s, params, err);
    if (st != EVH_OK)
        return st == EVH_E_CONFIG ? EVH_E_INVALID : st;
    int count = sqlite3_bind_parameter_count(s->stmt);
    for (int i = 1; i <= count; i++) {
        const cJSON *v = cJSON_IsArray(params)
                             ? cJSON_GetArrayItem(params, i - 1)
                             : cJSON_GetObjectItemCaseSensitive(params, param_key(s->stmt, i));
        int rc = bind_value(s->stmt, i, v);
        if (rc != SQLITE_OK)
            return fail(s->api, err, status_of(rc), "params: cannot bind parameter %d: %s", i,
                        sqlite3_errstr(rc));
    }
    return EVH_OK;
}

/* ---- rows as JSON --------------------------------------------------------- */

static char *base64(const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = cJSON_malloc(4 * ((n + 2) / 3) + 1);
    if (!out)
        return NULL;
    char *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0);
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

/* An integer as raw JSON text, so values beyond 2^53 keep every digit. */
static cJSON *int_json(sqlite3_int64 v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_CreateRaw(buf);
}

static cJSON *column_json(sqlite3_stmt *stmt, int i)
{
    switch (sqlite3_column_type(stmt, i)) {
    case SQLITE_INTEGER:
        return int_json(sqlite3_column_int64(stmt, i));
    case SQLITE_FLOAT:
        return cJSON_CreateNumber(sqlite3_column_double(stmt, i));
    case SQLITE_TEXT: {
        const unsigned char *t = sqlite3_column_text(stmt, i);
        return t ? cJSON_CreateString((const char *)t) : NULL;
    }
    case SQLITE_BLOB: {
        const void *b = sqlite3_column_blob(stmt, i);
        char *text = base64(b, (size_t)sqlite3_column_bytes(stmt, i));
        cJSON *v = text ? cJSON_CreateString(text) : NULL;
        cJSON_free(text);
        return v;
    }
    default:
        return cJSON_CreateNull();
    }
}

static cJSON *row_json(sqlite3_stmt *stmt)
{
    cJSON *row = cJSON_CreateObject();
    int n = sqlite3_column_count(stmt);
    for (int i = 0; row && i < n; i++) {
        const char *name = sqlite3_column_name(stmt, i);
        if (!name)
            goto nomem;
        if (cJSON_GetObjectItemCaseSensitive(row, name))
            continue; /* a repeated column name: the first one wins; use AS */
        cJSON *v = column_json(stmt, i);
        if (!v || !cJSON_AddItemToObject(row, name, v)) {
            cJSON_Delete(v);
            goto nomem;
        }
    }
    return row;
nomem:
    cJSON_Delete(row);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void close_step(sql_step *s)
{
    sqlite3_finalize(s->stmt);
    sqlite3_close_v2(s->db);
    s->api->free(s);
}

/* Run one setup statement to completion. */
static int32_t run_setup(sql_step *s, int idx, const char *text, char **err)
{
    char field[32];
    snprintf(field, sizeof field, "setup[%d]", idx);
    if (has_template(text))
        return fail(s->api, err, EVH_E_CONFIG, "%s: templates are not allowed here", field);
    sqlite3_stmt *stmt = NULL;
    int32_t st = prepare_one(s, field, text, &stmt, err);
    if (st != EVH_OK)
        return st;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        ;
    s->unsure |= s->validating && rc != SQLITE_DONE;
    if (rc != SQLITE_DONE)
        st = fail(s->api, err, status_of(rc), "%s: %s", field, sqlite3_errmsg(s->db));
    sqlite3_finalize(stmt);
    return st;
}

/* Switch the file to WAL, its mode into mode.  The switch needs the file
 * to itself for a moment, and when several instances open a new file at
 * once SQLite answers SQLITE_BUSY straight away to those that lose, without
 * calling the busy handler: each holds the read lock the others wait for,
 * so waiting there could deadlock.  Having let go of it, retry here, with a
 * pause that grows to 50 ms, for up to busy_ms (test_builtin_steps_b's four
 * writers on a new file failed 1 run in 25 before). */
static int set_wal(sqlite3 *db, int busy_ms, char mode[16])
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long pause_ns = 1000000L;
    for (;;) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *m = (const char *)sqlite3_column_text(st, 0);
            snprintf(mode, 16, "%s", m ? m : "");
        }
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            rc = SQLITE_OK;
        sqlite3_finalize(st);
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long waited_ms =
            (now.tv_sec - t0.tv_sec) * 1000LL + (now.tv_nsec - t0.tv_nsec) / 1000000L;
        if ((rc & 0xff) != SQLITE_BUSY || waited_ms >= busy_ms)
            return rc;
        struct timespec pause = {0, pause_ns};
        nanosleep(&pause, NULL);
        if (pause_ns < 50000000L)
            pause_ns *= 2;
    }
}

static int32_t open_database(sql_step *s, const cJSON *cfg, char **err)
{
    const evh_host_api *api = s->api;
    const char *database = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg, "database"));
    if (!database || !*database)
        return fail(api, err, EVH_E_CONFIG, "database: required");
    if (has_template(database))
        return fail(api, err, EVH_E_CONFIG,
                    "database: templates are not allowed here (the file is opened once, at "
                    "init)");
    char path[8192];
    int n;
    if (database[0] == '/') {
        n = snprintf(path, sizeof path, "%s", database);
    } else {
        const char *dir = api->data_dir(s->host);
        if (!dir)
            return fail(api, err, EVH_E_IO,
                        "database: '%s' is relative, but the plugin has no data directory",
                        database);
        n = snprintf(path, sizeof path, "%s/%s", dir, database);
    }
    if (n < 0 || (size_t)n >= sizeof path)
        return fail(api, err, EVH_E_CONFIG, "database: path too long");
    int create = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cfg, "create"));
    int exists = access(path, F_OK) == 0;
    if (!create && !exists)
        return fail(api, err, EVH_E_NOT_FOUND, "database: '%s' does not exist (create is false)",
                    path);
    const char *open_as = path;
    if (s->validating && !exists) {
        /* init would create it: its folder must be there */
        char *slash = strrchr(path, '/');
        struct stat st;
        if (slash && slash != path) {
            *slash = '\0';
            int dir_ok = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
            *slash = '/';
            if (!dir_ok)
                return fail(api, err, EVH_E_NOT_FOUND,
                            "database: cannot create '%s': its folder does not exist", path);
        }
        open_as = ":memory:";
    }
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(open_as, &s->db, flags, NULL);
    if (rc != SQLITE_OK)
        return fail(api, err, status_of(rc), "database: cannot open '%s': %s", path,
                    s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    sqlite3_extended_result_codes(s->db, 1);
    /* Refuse SQL that could corrupt the file (writable_schema and the like). */
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    const cJSON *bt = cJSON_GetObjectItemCaseSensitive(cfg, "busy_timeout_ms");
    int busy_ms = cJSON_IsNumber(bt) ? (int)bt->valuedouble : 5000;
    /* loading workflows waits for validate: a lock held elsewhere only
     * briefly, then init decides */
    sqlite3_busy_timeout(s->db, s->validating && busy_ms > 1000 ? 1000 : busy_ms);
    if (s->validating) /* the journal mode is init's to set */
        return sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK
                   ? EVH_OK
                   : fail(api, err, EVH_E_IO, "database: '%s': %s", path, sqlite3_errmsg(s->db));
    /* WAL: readers and one writer at a time, across instances. */
    char mode[16] = "";
    rc = set_wal(s->db, busy_ms, mode);
    if (rc != SQLITE_OK)
        return fail(api, err, status_of(rc), "database: '%s': %s", path, sqlite3_errstr(rc));
    if (strcmp(mode, "wal") != 0)
        api->log(s->host, EVH_LOG_WARN, "%s: journal mode is '%s', not WAL", path,
                 mode[0] ? mode : "?");
    return EVH_OK;
}

/* init's work, shared with validate (validating: change nothing). */
static int32_t sql_open(const evh_host_api *api, evh_host *host, int validating, sql_step **out,
                        char **errmsg)
{
    sql_step *s = api->alloc(sizeof *s);
    if (!s)
        return EVH_E_NOMEM;
    memset(s, 0, sizeof *s);
    s->api = api;
    s->host = host;
    s->validating = validating;
    /* init's config: the `with:` block, defaults filled, templates not yet
     * resolved. */
    size_t len = 0;
    const char *text = api->config_json(host, &len);
    cJSON *cfg = cJSON_ParseWithLength(text, len);
    int32_t st = cfg ? EVH_OK : fail(api, errmsg, EVH_E_CONFIG, "config is not a JSON object");
    if (st == EVH_OK)
        st = open_database(s, cfg, errmsg);
    const cJSON *setup = cJSON_GetObjectItemCaseSensitive(cfg, "setup");
    int idx = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, setup)
    {
        if (st != EVH_OK)
            break;
        st = cJSON_IsString(item) ? run_setup(s, idx, item->valuestring, errmsg)
                                  : fail(api, errmsg, EVH_E_CONFIG, "setup[%d]: not a string", idx);
        idx++;
    }
    /* `sql` after setup: it usually names the tables setup creates. */
    const char *sql = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg, "sql"));
    if (st == EVH_OK && !sql)
        st = fail(api, errmsg, EVH_E_CONFIG, "sql: required");
    if (st == EVH_OK && has_template(sql))
        st = fail(api, errmsg, EVH_E_CONFIG,
                  "sql: templates are not allowed here; bind values with params "
                  "(\"... WHERE id = :id\" with params: {id: \"{{ event.data.id }}\"})");
    if (st == EVH_OK)
        st = prepare_one(s, "sql", sql, &s->stmt, errmsg);
    /* params' shape is known now unless params is one whole template
     * ("{{ event.data }}"): then it is checked at each run. */
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(cfg, "params");
    if (st == EVH_OK && !(cJSON_IsString(params) && has_template(params->valuestring)))
        st = check_params(s, params, errmsg);
    const cJSON *mr = cJSON_GetObjectItemCaseSensitive(cfg, "max_rows");
    s->max_rows = cJSON_IsNumber(mr) && mr->valuedouble >= 0 ? (int64_t)mr->valuedouble : 1000;
    cJSON_Delete(cfg);
    if (st != EVH_OK && !s->unsure) {
        close_step(s);
        return st;
    }
    *out = s;
    return st;
}

static int32_t sql_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    sql_step *s = NULL;
    int32_t st = sql_open(api, host, 0, &s, errmsg);
    if (st == EVH_OK)
        *ctx = s;
    return st;
}

static int32_t sql_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    sql_step *s = ctx;
    const evh_host_api *api = s->api;
    char **err = &out->error_message;
    /* This run's config: only params matter (sql and database are fixed at
     * init); their templates are resolved now. */
    cJSON *cfg = cJSON_ParseWithLength(in->config_json, in->config_len);
    if (!cfg)
        return fail(api, err, EVH_E_CONFIG, "config is not a JSON object");
    cJSON *result = cJSON_CreateObject();
    cJSON *rows = cJSON_AddArrayToObject(result, "rows");
    int32_t st = rows ? EVH_OK : fail(api, err, EVH_E_NOMEM, "out of memory");

    sqlite3_reset(s->stmt);
    sqlite3_clear_bindings(s->stmt);
    if (st == EVH_OK)
        st = bind_params(s, cJSON_GetObjectItemCaseSensitive(cfg, "params"), err);

    int64_t n = 0;
    int truncated = 0;
    sqlite3_int64 changes = 0, rowid = 0;
    if (st == EVH_OK) {
        /* last_insert_rowid is per connection: clear it so that a statement
         * that inserts nothing reports 0, not an earlier run's row. */
        sqlite3_set_last_insert_rowid(s->db, 0);
        sqlite3_int64 before = sqlite3_total_changes64(s->db);
        int rc;
        while ((rc = sqlite3_step(s->stmt)) == SQLITE_ROW) {
            if (n >= s->max_rows) {
                /* An INSERT ... RETURNING made all its changes at the first
                 * step, so stopping early loses nothing. */
                truncated = 1;
                rc = SQLITE_DONE;
                break;
            }
            cJSON *row = row_json(s->stmt);
            if (!row || !cJSON_AddItemToArray(rows, row)) {
                cJSON_Delete(row);
                rc = SQLITE_NOMEM;
                break;
            }
            n++;
        }
        if (rc != SQLITE_DONE) {
            st = fail(api, err, status_of(rc), "%s (%s)",
                      rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(s->db),
                      sqlite3_errstr(rc));
        } else {
            /* sqlite3_changes64 keeps the last INSERT/UPDATE/DELETE's count
             * through later statements; the total tells whether this one
             * changed anything at all. */
            changes = sqlite3_total_changes64(s->db) != before ? sqlite3_changes64(s->db) : 0;
            rowid = sqlite3_last_insert_rowid(s->db);
        }
    }
    /* Reset now, not at the next run: a statement left mid-way holds a
     * read transaction (and the WAL) open. */
    sqlite3_reset(s->stmt);
    sqlite3_clear_bindings(s->stmt);
    cJSON_Delete(cfg);

    if (st == EVH_OK) {
        cJSON *v;
        if (!cJSON_AddNumberToObject(result, "row_count", (double)n) ||
            !cJSON_AddBoolToObject(result, "truncated", truncated) || !(v = int_json(changes)) ||
            !cJSON_AddItemToObject(result, "changes", v) || !(v = int_json(rowid)) ||
            !cJSON_AddItemToObject(result, "last_insert_rowid", v))
            st = fail(api, err, EVH_E_NOMEM, "out of memory");
    }
    if (st == EVH_OK) {
        char *text = cJSON_PrintUnformatted(result);
        /* The host frees the output with its free: copy into api->alloc. */
        out->output_json = text ? api->strdup(text) : NULL;
        cJSON_free(text);
        if (!out->output_json)
            st = fail(api, err, EVH_E_NOMEM, "out of memory");
    }
    cJSON_Delete(result);
    if (st == EVH_OK) {
        api->metric(s->host, "rows", (double)n);
        api->metric(s->host, "changes", (double)changes);
    }
    return st;
}

static void sql_fini(void *ctx)
{
    close_step(ctx);
}


/* At load: init's checks against the real database, rolled back. */
static int32_t sql_validate(const evh_host_api *api, evh_host *host, char **field, char **errmsg)
{
    sql_step *s = NULL;
    char *msg = NULL;
    int32_t st = sql_open(api, host, 1, &s, &msg);
    if (s && s->unsure) { /* a setup statement that only init can run */
        st = EVH_OK;
    } else if (st == EVH_E_TIMEOUT) { /* locked elsewhere for now */
        st = EVH_OK;
    }
    if (s) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        close_step(s);
    }
    if (st == EVH_OK) {
        api->free(msg);
        return EVH_OK;
    }
    evh_steps_split_field(api, msg, field, errmsg);
    api->free(msg);
    return st;
}

static const evh_step sql_desc = {.struct_size = sizeof(evh_step),
                                  .init = sql_init,
                                  .run = sql_run,
                                  .fini = sql_fini,
                                  .validate = sql_validate};

EVH_DECLARE_STEP("sqlite", &sql_desc)

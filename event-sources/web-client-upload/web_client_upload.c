/* web-client-upload - takes multipart/form-data uploads at its
 * webhookEndpoint (/api/uploads), stores each file part under its data
 * directory and emits file_upload for it.
 *
 * A request (POST only) goes through, in order:
 *   - authentication: the host checks no API key on plugin endpoints, so
 *     this source does: "Authorization: Bearer <token>" of a configured
 *     client (user_id = its name), or none when allow_anonymous (user_id
 *     then from the form field user_id or X-User-Id, unverified): 401;
 *   - the Content-Type: multipart/form-data with a boundary (415, 400);
 *   - the body, split by multipart.c, which is bounded and strict (400);
 *   - the caps: max_files file parts, max_bytes of content in all (400,
 *     413).  The host's server.max_body_bytes caps the request before it
 *     reaches us;
 *   - each file is written to "<upload_id>-<safe name>" in the configured
 *     subfolder, through a directory descriptor opened at init without
 *     following symbolic links, as a hidden ".part" file that is fsynced and
 *     renamed into place (the folder is fsynced too), so a stored path always
 *     names a complete file.  The name is a fresh random UUID plus the
 *     client's name reduced to [A-Za-z0-9._-]: nothing the client sends can
 *     climb out of the folder;
 *   - one event per file, emitted from the http call: emit returns once the
 *     event is stored, so the 202 means the files and events are durable.
 *     When an emit fails, the files not yet announced are removed again.
 *
 * http runs on several host threads at once; everything it reads is set by
 * init and never changes, so it needs no lock.  run() only waits. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <evhost/evhost.h>

#include "../common/http_source.h"

#include "multipart.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PLUGIN_ID "web-client-upload"
#define MAX_FORM_FIELDS 32          /* non-file parts of one request */
#define FIELD_VALUE_MAX 4096        /* bytes of one non-file field */
#define PART_HEADER_MAX 8192        /* bytes of one part's header block */
#define USER_ID_MAX 128             /* bytes of a user_id from the client */
#define DISPLAY_NAME_MAX 255        /* bytes of the filename in the event */
#define SAFE_NAME_MAX 100           /* bytes of the name part of a stored file */
#define CONTENT_TYPE_MAX 255        /* bytes of a part's Content-Type */
#define SHA256_LEN 32

typedef struct client {
    char *name;
    char *token;
} client;

typedef struct wcu {
    const evh_host_api *api;
    evh_host *host;
    int dirfd;      /* the upload folder, opened without following links */
    char *dir;      /* its absolute path */
    long long max_bytes;
    long long max_files;
    int anonymous;
    client *clients;
    size_t n_clients;
} wcu;

/* One file of a request, on its way to being an event. */
typedef struct upload {
    const mp_part *part;
    char id[37];
    char *display;     /* the client's name, cleaned (malloc) */
    char *stored_name; /* in the folder (malloc) */
    char sha256[2 * SHA256_LEN + 1];
    int stored;
    char event_id[EVH_EVENT_ID_SIZE]; /* once emitted; "" when unknown */
} upload;

/* ---- small helpers ------------------------------------------------------- */

/* Valid UTF-8 of at most max bytes: invalid sequences become U+FFFD, and
 * so do control characters when no_controls (cut at a character
 * boundary).  New string (malloc), NULL when out of memory. */
static char *utf8_clean(const char *s, size_t n, size_t max, int no_controls)
{
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p;
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                                  : (c & 0xf8) == 0xf0 ? 4 : 0;
        int ok = len > 0 && c != 0 && (size_t)(end - p) >= len &&
                 !(no_controls && (c < 0x20 || c == 0x7f));
        unsigned cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (size_t i = 1; ok && i < len; i++) {
            ok = (p[i] & 0xc0) == 0x80;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
                   (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
                   (cp >= 0xd800 && cp <= 0xdfff)))
            ok = 0;
        size_t add = ok ? len : 3;
        if ((size_t)(o - out) + add > max)
            break;
        memcpy(o, ok ? (const char *)p : "\xef\xbf\xbd", add);
        o += add;
        p += ok ? len : 1;
    }
    *o = '\0';
    return out;
}

static int new_uuid(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return 0;
}

/* ---- names ----------------------------------------------------------------- */

/* The client's file name for display: its last path component (after "/"
 * or "\"), valid UTF-8 without control characters, at most
 * DISPLAY_NAME_MAX bytes; "upload" when nothing is left. */
static char *display_name(const char *sent)
{
    const char *base = sent;
    for (const char *p = sent; *p; p++) {
        if (*p == '/' || *p == '\\')
            base = p + 1;
    }
    char *name = utf8_clean(base, strlen(base), DISPLAY_NAME_MAX, 1);
    if (name && (!*name || !strcmp(name, ".") || !strcmp(name, ".."))) {
        free(name);
        name = strdup("upload");
    }
    return name;
}

/* "<id>-<name reduced to [A-Za-z0-9._-], no leading dot>". */
static char *stored_name(const char *id, const char *display)
{
    char safe[SAFE_NAME_MAX + 1];
    size_t n = 0;
    for (const char *p = display; *p && n < SAFE_NAME_MAX; p++) {
        unsigned char c = (unsigned char)*p;
        int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '.' || c == '_' || c == '-';
        /* no leading dot: no hidden file, never "." or ".." */
        safe[n] = keep && !(n == 0 && c == '.') ? (char)c : '_';
        n++;
    }
    safe[n] = '\0';
    char *out = NULL;
    if (asprintf(&out, "%s-%s", id, n ? safe : "file") < 0)
        return NULL;
    return out;
}

/* ---- configuration -------------------------------------------------------- */

static void wcu_free(wcu *w)
{
    if (w->dirfd >= 0)
        close(w->dirfd);
    free(w->dir);
    for (size_t i = 0; i < w->n_clients; i++) {
        free(w->clients[i].name);
        if (w->clients[i].token) {
            OPENSSL_cleanse(w->clients[i].token, strlen(w->clients[i].token));
            free(w->clients[i].token);
        }
    }
    free(w->clients);
    w->api->free(w);
}

/* Open (creating) the folder `subdir` below `root`, one segment at a time,
 * never following a symbolic link; its descriptor, or -1 with *why. */
static int open_subdir(const char *root, const char *subdir, char *why, size_t why_cap)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_cap, "cannot open the data directory %s: %s", root, strerror(errno));
        return -1;
    }
    char *copy = strdup(subdir), *save = NULL;
    if (!copy) {
        close(fd);
        snprintf(why, why_cap, "out of memory");
        return -1;
    }
    for (char *seg = strtok_r(copy, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        if (!strcmp(seg, ".") || !strcmp(seg, "..")) {
            snprintf(why, why_cap, "subdir: '%s' must not contain '.' or '..'", subdir);
            close(fd);
            fd = -1;
            break;
        }
        if (mkdirat(fd, seg, 0750) != 0 && errno != EEXIST) {
            snprintf(why, why_cap, "subdir: cannot create '%s': %s", seg, strerror(errno));
            close(fd);
            fd = -1;
            break;
        }
        int next = openat(fd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int err = errno;
        close(fd);
        fd = next;
        if (fd < 0) {
            snprintf(why, why_cap, "subdir: '%s' is not a directory (symbolic links are not "
                     "followed): %s", seg, strerror(err));
            break;
        }
    }
    free(copy);
    return fd;
}

/* An error message for init (from api->mprintf). */
static char *read_config(wcu *w, const cJSON *cfg)
{
    const evh_host_api *api = w->api;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "max_bytes");
    w->max_bytes = cJSON_IsNumber(v) ? (long long)v->valuedouble : 10485760;
    v = cJSON_GetObjectItemCaseSensitive(cfg, "max_files");
    w->max_files = cJSON_IsNumber(v) ? (long long)v->valuedouble : 10;
    w->anonymous = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "allow_anonymous"));
    if (w->max_bytes < 1 || w->max_files < 1 || w->max_files > 1000)
        return api->strdup("max_bytes, max_files: out of range");

    const cJSON *list = cJSON_GetObjectItemCaseSensitive(cfg, "tokens"), *it;
    size_t n = (size_t)cJSON_GetArraySize(list);
    if (n && !(w->clients = calloc(n, sizeof *w->clients)))
        return api->strdup("out of memory");
    cJSON_ArrayForEach(it, list)
    {
        size_t i = w->n_clients;
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
        const char *token = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "token"));
        if (!name || !*name || !token || !*token)
            return api->mprintf("tokens[%zu]: needs a name and a token", i);
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(w->clients[j].name, name))
                return api->mprintf("tokens[%zu].name: '%s' is already tokens[%zu]", i, name, j);
            if (!strcmp(w->clients[j].token, token))
                return api->mprintf("tokens[%zu].token: the same as tokens[%zu]'s: every "
                                    "client needs its own", i, j);
        }
        w->clients[i].name = strdup(name);
        w->clients[i].token = strdup(token);
        w->n_clients++;
        if (!w->clients[i].name || !w->clients[i].token)
            return api->strdup("out of memory");
    }

    const char *subdir = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg, "subdir"));
    if (!subdir)
        subdir = "uploads";
    const char *data = api->data_dir(w->host);
    char root[PATH_MAX];
    if (!data || !realpath(data, root))
        return api->mprintf("cannot resolve the plugin's data directory %s",
                            data ? data : "(none)");
    char why[PATH_MAX + 128];
    if ((w->dirfd = open_subdir(root, subdir, why, sizeof why)) < 0)
        return api->strdup(why);
    if (asprintf(&w->dir, "%s/%s", root, subdir) < 0) {
        w->dir = NULL;
        return api->strdup("out of memory");
    }
    return NULL;
}

static int32_t wcu_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    wcu *w = api->alloc(sizeof *w);
    if (!w)
        return EVH_E_NOMEM;
    memset(w, 0, sizeof *w);
    w->api = api;
    w->host = host;
    w->dirfd = -1;
    size_t len = 0;
    const char *text = api->config_json(host, &len);
    cJSON *cfg = cJSON_ParseWithLength(text, len);
    char *err = read_config(w, cfg);
    cJSON_Delete(cfg);
    if (err) {
        *errmsg = err;
        wcu_free(w);
        return EVH_E_CONFIG;
    }
    if (!w->n_clients && !w->anonymous)
        api->log(host, EVH_LOG_INFO, "no tokens and allow_anonymous is false: uploads to "
                 "/api/uploads are refused (401) until one is configured");
    else if (w->anonymous)
        api->log(host, EVH_LOG_WARN, "allow_anonymous: anyone who can reach /api/uploads "
                 "can store files in %s", w->dir);
    api->log(host, EVH_LOG_INFO, "storing uploads in %s (at most %lld bytes, %lld files a "
             "request)", w->dir, w->max_bytes, w->max_files);
    *ctx = w;
    return EVH_OK;
}

static int32_t wcu_run(void *ctx)
{
    wcu *w = ctx;
    while (w->api->wait(w->host, 60000) == EVH_OK)
        ;
    return EVH_OK;
}

static void wcu_fini(void *ctx)
{
    wcu_free(ctx);
}

/* ---- authentication ------------------------------------------------------- */

/* 0: allowed, *user the client's name or NULL (anonymous); else the reason. */
static const char *authenticate(const wcu *w, const evh_http_request *req, const char **user)
{
    *user = NULL;
    const char *auth = evh_sources_header(req, "Authorization");
    if (!auth) {
        if (w->anonymous)
            return NULL;
        return w->n_clients ? "missing Authorization: Bearer token"
                            : "uploads are not enabled: configure tokens (or allow_anonymous) "
                              "for web-client-upload";
    }
    if (strncasecmp(auth, "Bearer ", 7) != 0)
        return "Authorization is not a Bearer token";
    const char *token = auth + 7;
    while (*token == ' ')
        token++;
    /* look at every client, so the time taken does not say which matched */
    const client *found = NULL;
    for (size_t i = 0; i < w->n_clients; i++) {
        if (evh_sources_same_secret(token, strlen(token), w->clients[i].token))
            found = &w->clients[i];
    }
    if (!found)
        return "wrong token"; /* never fall back to anonymous with a bad token */
    *user = found->name;
    return NULL;
}

/* A user_id the client claims: 1..USER_ID_MAX bytes of printable UTF-8. */
static int user_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > USER_ID_MAX)
        return 0;
    char *clean = utf8_clean(s, n, n, 1);
    int ok = clean && strlen(clean) == n && memcmp(clean, s, n) == 0;
    free(clean);
    return ok;
}

/* ---- storing -------------------------------------------------------------- */

/* Write the file as ".<name>.part", fsync, rename to name.  0, or errno. */
static int store_file(const wcu *w, const char *name, const char *data, size_t len)
{
    char tmp[256];
    snprintf(tmp, sizeof tmp, ".%.200s.part", name);
    int fd = openat(w->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0)
        return errno;
    int err = 0;
    for (size_t off = 0; off < len && !err;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EINTR)
            err = errno;
    }
    if (!err && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && !err)
        err = errno;
    if (!err && renameat(w->dirfd, tmp, w->dirfd, name) != 0)
        err = errno;
    if (err)
        unlinkat(w->dirfd, tmp, 0);
    return err;
}

static void sha256_hex(const char *data, size_t len, char out[2 * SHA256_LEN + 1])
{
    unsigned char md[SHA256_LEN];
    unsigned int n = 0;
    if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL))
        n = 0;
    for (unsigned i = 0; i < SHA256_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", i < n ? md[i] : 0);
}

/* obj[name] = value, or ", value" appended; 0 on success. */
static int add_field(cJSON *obj, const char *name, const char *value, size_t len)
{
    char *v = utf8_clean(value, len, FIELD_VALUE_MAX * 3, 0);
    if (!v)
        return -1;
    cJSON *old = cJSON_GetObjectItemCaseSensitive(obj, name);
    char *joined = NULL;
    if (old && asprintf(&joined, "%s, %s", old->valuestring, v) < 0)
        joined = NULL;
    cJSON *item = cJSON_CreateString(old ? joined : v);
    int ok = item && (old ? cJSON_ReplaceItemInObjectCaseSensitive(obj, name, item)
                          : cJSON_AddItemToObject(obj, name, item));
    if (!ok)
        cJSON_Delete(item);
    free(joined);
    free(v);
    return ok && (!old || joined) ? 0 : -1;
}

/* The event data of one upload (cJSON_malloc), NULL when out of memory. */
static char *event_data(const wcu *w, const upload *u, const char *user, const cJSON *fields,
                        const char *at)
{
    const mp_part *p = u->part;
    char *ctype = p->content_type && *p->content_type
                      ? utf8_clean(p->content_type, strlen(p->content_type), CONTENT_TYPE_MAX, 1)
                      : strdup("application/octet-stream");
    char *field = utf8_clean(p->name, strlen(p->name), 255, 1);
    char *path = NULL;
    if (asprintf(&path, "%s/%s", w->dir, u->stored_name) < 0)
        path = NULL;
    cJSON *o = cJSON_CreateObject();
    int ok = o && ctype && field && path && cJSON_AddStringToObject(o, "upload_id", u->id) &&
             cJSON_AddStringToObject(o, "filename", u->display) &&
             cJSON_AddNumberToObject(o, "file_size", (double)p->len) &&
             cJSON_AddStringToObject(o, "content_type", *ctype ? ctype : "application/octet-stream") &&
             cJSON_AddStringToObject(o, "sha256", u->sha256) &&
             cJSON_AddStringToObject(o, "stored_path", path) &&
             cJSON_AddItemToObject(o, "user_id",
                                   user ? cJSON_CreateString(user) : cJSON_CreateNull()) &&
             cJSON_AddStringToObject(o, "field", field) &&
             cJSON_AddItemToObject(o, "fields", cJSON_Duplicate(fields, 1)) &&
             cJSON_AddStringToObject(o, "received_at", at);
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    free(ctype);
    free(field);
    free(path);
    return text;
}

/* ---- http ------------------------------------------------------------------ */

typedef struct request {
    mp_form form;
    upload *uploads;
    size_t n_uploads;
    cJSON *fields;
    char *claimed_user; /* user_id from the form (malloc) */
} request;

static void request_release(const wcu *w, request *r, size_t keep)
{
    /* files from `keep` on were not announced by an event: remove them */
    for (size_t i = 0; i < r->n_uploads; i++) {
        if (i >= keep && r->uploads[i].stored)
            unlinkat(w->dirfd, r->uploads[i].stored_name, 0);
        free(r->uploads[i].display);
        free(r->uploads[i].stored_name);
    }
    free(r->uploads);
    cJSON_Delete(r->fields);
    free(r->claimed_user);
    mp_form_free(&r->form);
}

/* Sort the parts into files, the claimed user_id and other fields; a
 * client error answered (status != 0) or EVH_E_NOMEM. */
static int32_t classify(const wcu *w, request *r, int *status, const char **msg)
{
    unsigned long long total = 0;
    size_t n_fields = 0;
    if (!(r->uploads = calloc(r->form.n ? r->form.n : 1, sizeof *r->uploads)) ||
        !(r->fields = cJSON_CreateObject()))
        return EVH_E_NOMEM;
    for (size_t i = 0; i < r->form.n; i++) {
        const mp_part *p = &r->form.parts[i];
        if (p->filename) {
            /* a browser's empty file input: filename="" and no content */
            if (!*p->filename && p->len == 0)
                continue;
            total += p->len;
            r->uploads[r->n_uploads++].part = p;
            continue;
        }
        if (!strcmp(p->name, "user_id")) {
            if (r->claimed_user || !user_id_ok(p->data, p->len)) {
                *status = 400;
                *msg = "user_id must be given once, 1 to 128 bytes of printable UTF-8";
                return EVH_OK;
            }
            if (!(r->claimed_user = strndup(p->data, p->len)))
                return EVH_E_NOMEM;
            continue;
        }
        if (++n_fields > MAX_FORM_FIELDS || p->len > FIELD_VALUE_MAX) {
            *status = 400;
            *msg = "too many form fields (32) or a field over 4096 bytes";
            return EVH_OK;
        }
        char *name = utf8_clean(p->name, strlen(p->name), 255, 1);
        int rc = name ? add_field(r->fields, name, p->data, p->len) : -1;
        free(name);
        if (rc)
            return EVH_E_NOMEM;
    }
    if (r->n_uploads == 0) {
        *status = 400;
        *msg = "the form has no file part (a part with a filename)";
    } else if ((long long)r->n_uploads > w->max_files) {
        *status = 400;
        *msg = "the form has more file parts than max_files";
    } else if (total > (unsigned long long)w->max_bytes) {
        *status = 413;
        *msg = "the files are larger than max_bytes in all";
    }
    return EVH_OK;
}

/* Store every upload; 0, or the errno of the first failure. */
static int store_all(const wcu *w, request *r)
{
    for (size_t i = 0; i < r->n_uploads; i++) {
        upload *u = &r->uploads[i];
        if (new_uuid(u->id) != 0)
            return EIO;
        if (!(u->display = display_name(u->part->filename)) ||
            !(u->stored_name = stored_name(u->id, u->display)))
            return ENOMEM;
        sha256_hex(u->part->data, u->part->len, u->sha256);
        int err = store_file(w, u->stored_name, u->part->data, u->part->len);
        if (err)
            return err;
        u->stored = 1;
    }
    return fsync(w->dirfd) == 0 ? 0 : errno;
}

/* {"accepted": true, "files": [{id (the event's), upload_id, filename,
 * file_size, sha256}]} */
static char *summary(const request *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "accepted");
    cJSON *files = cJSON_AddArrayToObject(o, "files");
    for (size_t i = 0; i < r->n_uploads; i++) {
        const upload *u = &r->uploads[i];
        cJSON *f = cJSON_CreateObject();
        if (u->event_id[0])
            cJSON_AddStringToObject(f, "id", u->event_id);
        else
            cJSON_AddNullToObject(f, "id");
        cJSON_AddStringToObject(f, "upload_id", u->id);
        cJSON_AddStringToObject(f, "filename", u->display);
        cJSON_AddNumberToObject(f, "file_size", (double)u->part->len);
        cJSON_AddStringToObject(f, "sha256", u->sha256);
        cJSON_AddItemToArray(files, f);
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static int32_t emit_all(const wcu *w, request *r, const char *user, evh_http_response *res)
{
    const evh_host_api *api = w->api;
    char at[32];
    evh_sources_now_iso(at);
    for (size_t i = 0; i < r->n_uploads; i++) {
        char *data = event_data(w, &r->uploads[i], user, r->fields, at);
        if (!data) {
            request_release(w, r, i);
            return EVH_E_NOMEM;
        }
        /* emit_id (ABI 1.1) also tells the event's id, for the answer */
        upload *u = &r->uploads[i];
        int32_t rc = EVH_API_HAS(api, emit_id)
                         ? api->emit_id(w->host, "file_upload", data, EVH_NUL_TERMINATED, user,
                                        u->event_id)
                         : api->emit(w->host, "file_upload", data, EVH_NUL_TERMINATED, user);
        cJSON_free(data);
        if (rc != EVH_OK) {
            request_release(w, r, i);
            api->log(w->host, rc == EVH_E_QUEUE_FULL || rc == EVH_E_STOPPING ? EVH_LOG_WARN
                                                                              : EVH_LOG_ERROR,
                     "emit refused upload %zu of %zu: %s (%s); its files were removed", i + 1,
                     r->n_uploads, evh_status_message(rc), evh_status_name(rc));
            /* earlier files of the request were announced: say so */
            char msg[160];
            snprintf(msg, sizeof msg, "the event for file %zu of %zu could not be stored (%s); "
                     "%zu file(s) before it were accepted", i + 1, r->n_uploads,
                     evh_status_name(rc), i);
            return evh_sources_answer_error(w->api, res, 503, "unavailable", msg,
                                            rc == EVH_E_QUEUE_FULL ? "Retry-After: 1"
                                                                   : "Retry-After: 5");
        }
    }
    char *text = summary(r);
    request_release(w, r, r->n_uploads);
    if (!text)
        return EVH_E_NOMEM;
    res->status = 202;
    res->content_type = "application/json";
    res->body = api->strdup(text);
    res->body_len = EVH_NUL_TERMINATED;
    cJSON_free(text);
    return res->body ? EVH_OK : EVH_E_NOMEM;
}

static int32_t wcu_http(void *ctx, const evh_http_request *req, evh_http_response *res)
{
    wcu *w = ctx;
    const evh_host_api *api = w->api;
    if (strcmp(req->method, "POST") != 0)
        return evh_sources_answer_error(w->api, res, 405, "method_not_allowed",
                                        "upload files with POST multipart/form-data",
                                        "Allow: POST");
    const char *user = NULL;
    const char *why = authenticate(w, req, &user);
    if (why) {
        api->log(w->host, EVH_LOG_WARN, "refused an upload from %s: %s",
                 req->remote_addr && *req->remote_addr ? req->remote_addr : "?", why);
        return evh_sources_answer_error(w->api, res, 401, "unauthorized", why,
                                        "WWW-Authenticate: Bearer");
    }
    char boundary[MP_BOUNDARY_MAX + 1];
    why = NULL;
    int rc = mp_boundary(evh_sources_header(req, "Content-Type"), boundary, &why);
    if (rc == MP_NOT_MULTIPART)
        return evh_sources_answer_error(w->api, res, 415, "unsupported_media_type",
                                        "send the files as multipart/form-data", NULL);
    if (rc == MP_NOMEM)
        return EVH_E_NOMEM;
    if (rc != MP_OK)
        return evh_sources_answer_error(w->api, res, 400, "invalid_body", why, NULL);

    request r = {0};
    /* room for every allowed file plus the form fields and user_id */
    mp_limits lim = {.max_parts = (size_t)w->max_files + MAX_FORM_FIELDS + 1,
                     .max_header_bytes = PART_HEADER_MAX};
    rc = mp_parse(req->body, req->body_len, boundary, &lim, &r.form, &why);
    if (rc == MP_NOMEM)
        return EVH_E_NOMEM;
    if (rc != MP_OK) {
        char msg[200];
        snprintf(msg, sizeof msg, "malformed multipart body: %s", why);
        return evh_sources_answer_error(w->api, res, 400, "invalid_body", msg, NULL);
    }
    int status = 0;
    const char *msg = NULL;
    int32_t st = classify(w, &r, &status, &msg);
    if (st != EVH_OK || status) {
        request_release(w, &r, 0);
        return st != EVH_OK
                   ? st
                   : evh_sources_answer_error(w->api, res, status,
                                              status == 413 ? "payload_too_large" : "invalid_body",
                                              msg, NULL);
    }
    if (!user && r.claimed_user)
        user = r.claimed_user;
    else if (!user) {
        const char *h = evh_sources_header(req, "X-User-Id");
        if (h && !user_id_ok(h, strlen(h))) {
            request_release(w, &r, 0);
            return evh_sources_answer_error(w->api, res, 400, "invalid_body",
                                            "X-User-Id must be 1 to 128 bytes of printable UTF-8",
                                            NULL);
        }
        user = h;
    }
    int err = store_all(w, &r);
    if (err) {
        api->log(w->host, EVH_LOG_ERROR, "cannot store an upload in %s: %s", w->dir,
                 strerror(err));
        request_release(w, &r, 0);
        if (err == ENOMEM)
            return EVH_E_NOMEM;
        return evh_sources_answer_error(w->api, res, err == ENOSPC || err == EDQUOT ? 507 : 500,
                                        err == ENOSPC || err == EDQUOT ? "insufficient_storage"
                                                                       : "internal",
                                        "the file could not be stored", NULL);
    }
    return emit_all(w, &r, user, res);
}

static const evh_source wcu_source = {.struct_size = sizeof(evh_source),
                                      .init = wcu_init,
                                      .run = wcu_run,
                                      .fini = wcu_fini,
                                      .http = wcu_http};
EVH_DECLARE_SOURCE(PLUGIN_ID, &wcu_source)

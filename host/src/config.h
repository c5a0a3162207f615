/*
 * config.h - host.yaml -> read-only settings.
 *
 * The defaults are themselves a YAML document compiled into the host
 * (config_default_yaml()); a host.yaml only overrides what it names, so the
 * two cannot disagree.  Every problem is reported as file:line:column with
 * the setting's dotted name and the reason, all of them in one pass; an
 * unknown key is an error (with a "did you mean" when it is a near miss),
 * because a silently ignored typo is a setting that never took effect.
 *
 * ${NAME} in values is replaced from the environment (see yamldoc.h), and
 * EVH_API_KEYS="name:key,name2:key2" adds API keys (replacing file entries of
 * the same name).  API key values are secrets: nothing here prints them, and
 * config_print_redacted shows them as "***".
 *
 * Relative paths (storage.path, data_dir, plugin/workflow directories,
 * trigger files) are kept as written and so are relative to the daemon's
 * current directory, not to host.yaml's folder, the way command-line paths
 * behave.
 */
#ifndef EVH_CONFIG_H
#define EVH_CONFIG_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>

#include "diag.h"

typedef struct evh_api_key {
    char *name; /* shown in logs and the audit trail */
    char *key;  /* secret: never log or print it */
} evh_api_key;

/* Every string and array is owned by the struct; config_free releases them. */
typedef struct evh_config {
    char *source; /* the file the settings came from, or "(built-in defaults)" */

    /* server */
    char *listen; /* "host:port" as written; port 0 picks a free port */
    char *listen_host;
    int listen_port;
    evh_api_key *api_keys;
    size_t n_api_keys; /* 0: the API is served without authentication */
    /* 1: serve without API keys even beyond loopback (daemon.c refuses to
     * otherwise): for a proxy in front that authenticates, or a container
     * port published on loopback only */
    int allow_unauthenticated;
    size_t max_body_bytes;
    int max_connections;
    int connection_timeout_s;
    /* the live stream (stream.h, api_stream.c) */
    int max_streams;
    int stream_keepalive_s;
    size_t stream_buffer_events;
    size_t stream_buffer_bytes;

    /* plugins */
    char **plugin_dirs;
    size_t n_plugin_dirs;
    int plugins_builtin;  /* 1: also load the built-in plugins */
    int plugins_watch;    /* 1: hot reload on changes (inotify; reload.h) */
    int plugins_reload_debounce_ms;
    int plugins_init_timeout_ms; /* deadline.h */
    int plugins_stop_timeout_ms;
    cJSON *plugin_config; /* object: plugin id -> config object; never NULL */
    /* crash isolation (isolate.h): plugin id -> "process" | "in-process",
     * overriding plugin.json "isolation"; never NULL */
    cJSON *plugin_isolation;
    int plugins_crash_limit;    /* crashes within the window that quarantine */
    int plugins_crash_window_s;

    /* storage */
    char *storage_path;
    char *storage_synchronous;          /* "normal" or "full" (SQLite PRAGMA synchronous) */
    int retention_max_age_days;         /* 0: keep regardless of age */
    long long retention_max_executions; /* 0: no count limit */

    /* pipeline */
    int workers; /* 0: one per core */
    size_t queue_size;
    int emit_wait_ms;
    int max_chain_depth;

    char **workflow_dirs; /* empty: the built-in examples */
    size_t n_workflow_dirs;
    char **trigger_files; /* empty: the built-in examples */
    size_t n_trigger_files;

    int log_level; /* EVH_LOG_ERROR .. EVH_LOG_DEBUG */
    char *data_dir;
    int shutdown_timeout_s;

    /* notifications: outbound webhooks of lifecycle events (notify.h) */
    int notify_concurrency;
    int notify_timeout_ms;
    int notify_max_attempts;
    long long notify_backoff_base_ms;
    long long notify_backoff_cap_ms;
    size_t notify_queue_size;
    struct subscription **subscriptions; /* notifications.subscriptions (subscription.h) */
    size_t n_subscriptions;

    /* plugin_config with every value that came from ${...} replaced by
     * "***": what config_print_redacted shows.  Not for plugins. */
    cJSON *plugin_config_shown;
} evh_config;

/* Read host.yaml at path, or the built-in defaults when path is NULL.
 * Returns EVH_OK and a new config in *out, or EVH_E_CONFIG (EVH_E_IO when
 * the file cannot be read, EVH_E_NOMEM) with every problem in d and *out
 * NULL.  d's file name is set to path when d has none. */
int config_load(const char *path_or_null, evh_config **out, diag *d);

/* The same for len bytes of YAML text; name is used in messages only. */
int config_parse_text(const char *text, size_t len, const char *name, evh_config **out, diag *d);

void config_free(evh_config *c);

/* The built-in default host.yaml (a static string, documented in place). */
const char *config_default_yaml(void);

/* The effective settings as YAML, API keys and ${...} values of plugin
 * config shown as "***". */
void config_print_redacted(const evh_config *c, FILE *f);

/* "host:port" or "[v6]:port" into a malloc'd host and a port; 0 on
 * success, -1 when malformed. */
int config_split_listen(const char *text, char **host, int *port);

/* "error", "warn", "info", "debug" for a level. */
const char *config_log_level_name(int level);

#endif

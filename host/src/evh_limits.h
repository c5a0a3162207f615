/*
 * evh_limits.h - every size and time limit of the host, in one place.
 *
 * Each limit that holds outside input has a name here; the ones a user would
 * want to change are also settings in host.yaml (config.c names them).
 */
#ifndef EVH_LIMITS_H
#define EVH_LIMITS_H

/* plugin.json larger than this is refused before parsing. */
#define EVH_MANIFEST_MAX_BYTES (1024 * 1024)

/* JSON nesting deeper than this is refused (cJSON's own limit is 1000, far
 * too deep for anything we read; a deep document is an attack, not data). */
#define EVH_JSON_MAX_DEPTH 64

/* Event data larger than this is refused by emit (EVH_E_SCHEMA). */
#define EVH_EVENT_MAX_BYTES (1024 * 1024)

/* Ids (plugin ids, event types) longer than this are refused. */
#define EVH_ID_MAX_LEN 128

/* In-memory event queue length; backpressure beyond it (host.yaml queue_size). */
#define EVH_QUEUE_DEFAULT_CAPACITY 65536

/* How long emit waits for room in a full queue before EVH_E_QUEUE_FULL. */
#define EVH_EMIT_DEFAULT_WAIT_MS 100

/* Plugin directories holding more sub-folders than this are cut off. */
#define EVH_PLUGINS_PER_DIR_MAX 4096

/* Distinct metrics one step run may report. */
#define EVH_STEP_METRICS_MAX 64

/* Problems collected in one validation pass before it stops listing. */
#define EVH_DIAG_MAX_ITEMS 200

/* Trigger conditions: nesting of all/any/not, and clauses per trigger. */
#define TRIGGER_MAX_DEPTH 16
#define TRIGGER_MAX_CLAUSES 256

/* A regex (schema "pattern", the "matches" operator) that unrolls to more
 * elements than this, or nests repetitions deeper, is refused before
 * regcomp (regexcost.h): glibc builds a copy per repetition count, and its
 * epsilon closures grow exponentially with nested optional repetitions.
 * Within both, the worst patterns found compile in 0.05 s and 32 MB; real
 * ones are far inside ("[0-9]{4}-[0-9]{2}" is 8 elements, depth 1;
 * "^([a-z0-9]+\.)*[a-z]+$" depth 2; ".{1,1000}" 1000 elements). */
#define EVH_REGEX_MAX_EXPANSION 1000
#define EVH_REGEX_MAX_REPEAT_DEPTH 2

/* A string that templates render into (template.c) longer than this fails
 * the step: one event must not turn a small config into a huge one. */
#define TEMPLATE_MAX_OUTPUT_BYTES (1024 * 1024)

/* HTTP server: default body limit (host.yaml server.max_body_bytes), the
 * memory libmicrohttpd may use per connection for the request line and
 * headers (larger headers get 431), and its worker threads.  Ingest waits
 * for the durable commit on the worker thread, so there are more threads
 * than cores: while some wait for the writer, others parse. */
#define EVH_HTTP_DEFAULT_MAX_BODY (1024 * 1024)
#define EVH_HTTP_HEADER_MEMORY (64 * 1024)
#define EVH_HTTP_THREADS 8
/* A streamed response (Server-Sent Events) is written in blocks of this
 * size; on shutdown its end gets this long to go out before the server
 * closes the connection anyway. */
#define EVH_HTTP_STREAM_BLOCK (16 * 1024)
#define EVH_HTTP_STREAM_CLOSE_MS 1000

/* A plugin's http callback (webhook endpoints) that takes longer than this
 * is logged: it holds one of the HTTP threads while its sender waits. */
#define EVH_PLUGIN_HTTP_SLOW_MS 5000

/* /metrics (metrics.c): distinct label sets one metric family keeps before
 * further ones go to its overflow series, and the bytes of one label value
 * (longer values are cut). */
#define EVH_METRICS_MAX_SERIES 10000
#define EVH_METRICS_LABEL_MAX_BYTES 128

/* /api/ready: how long the database write check waits for the writer's
 * lock before the database counts as not writable. */
#define EVH_READY_DB_TIMEOUT_MS 2000

/* `evhost plugins validate` reads a plugin library's ELF headers; a file
 * larger than this is reported instead of mapped (elfcheck.c). */
#define EVH_PLUGIN_LIBRARY_MAX_BYTES (512L * 1024 * 1024)

/* `evhost health` (cli_health.c): the default time for connect, request and
 * answer together, and the most of the answer it reads. */
#define EVH_HEALTH_DEFAULT_TIMEOUT_S 5
#define EVH_HEALTH_MAX_RESPONSE_BYTES (64 * 1024)

#endif

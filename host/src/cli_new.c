/*
 * cli_new.c - `evhost new source|step NAME [--dir DIR]`: a plugin folder
 * that builds and loads as it is, for an author to grow from.
 *
 *   DIR/NAME/plugin.json     manifest with schemas (event data or config)
 *   DIR/NAME/<name>.c        every callback of the kind, stubbed and commented
 *   DIR/NAME/CMakeLists.txt  find_package(evhost-sdk) + evh_add_plugin
 *   DIR/NAME/README.md       the one-line cc build, validate, run
 *   DIR/NAME/check.sh        builds, validates, runs it in a real daemon
 *
 * DIR (default ".") and its missing parents are created, mode 0755; NAME
 * must not exist: nothing is ever overwritten.
 *
 * The templates are the C string constants below; "@ID@" is the plugin id,
 * "@CID@" the id as a C identifier (my-timer: my_timer), "@TITLE@" its
 * display name, "@KIND@" source or step, and the README's "@..._TEXT@" the
 * kind's own paragraphs.  tests/integration/test_install.c builds what
 * they make, loads it and runs it, so they cannot rot.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "manifest.h"

/* clang-format off */
static const char tmpl_source_manifest[] =
    "{\n"
    "  \"type\": \"event-source\",\n"
    "  \"id\": \"@ID@\",\n"
    "  \"name\": \"@TITLE@\",\n"
    "  \"description\": \"Emits a heartbeat event when it starts and every interval_ms after\",\n"
    "  \"version\": \"0.1.0\",\n"
    "  \"abi\": \"1.0\",\n"
    "  \"library\": \"@ID@.so\",\n"
    "  \"eventTypes\": [\n"
    "    {\n"
    "      \"type\": \"heartbeat\",\n"
    "      \"label\": \"Heartbeat\",\n"
    "      \"description\": \"The source is alive: one event per interval\",\n"
    "      \"schema\": {\n"
    "        \"type\": \"object\",\n"
    "        \"properties\": {\n"
    "          \"count\": {\"type\": \"integer\", \"minimum\": 1, \"description\": \"1 for the first event\"},\n"
    "          \"message\": {\"type\": \"string\", \"maxLength\": 200}\n"
    "        },\n"
    "        \"required\": [\"count\", \"message\"],\n"
    "        \"additionalProperties\": false\n"
    "      }\n"
    "    }\n"
    "  ],\n"
    "  \"configSchema\": {\n"
    "    \"type\": \"object\",\n"
    "    \"properties\": {\n"
    "      \"interval_ms\": {\"type\": \"integer\", \"minimum\": 10, \"maximum\": 86400000, \"default\": 5000,\n"
    "                      \"description\": \"Milliseconds between two heartbeats\"},\n"
    "      \"message\": {\"type\": \"string\", \"maxLength\": 200, \"default\": \"hello from @ID@\",\n"
    "                  \"description\": \"Copied into every event\"}\n"
    "    },\n"
    "    \"additionalProperties\": false\n"
    "  }\n"
    "}\n";

static const char tmpl_step_manifest[] =
    "{\n"
    "  \"type\": \"workflow-step\",\n"
    "  \"id\": \"@ID@\",\n"
    "  \"name\": \"@TITLE@\",\n"
    "  \"description\": \"Outputs a line naming the event that started the workflow\",\n"
    "  \"version\": \"0.1.0\",\n"
    "  \"abi\": \"1.0\",\n"
    "  \"library\": \"@ID@.so\",\n"
    "  \"configSchema\": {\n"
    "    \"type\": \"object\",\n"
    "    \"properties\": {\n"
    "      \"prefix\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 200, \"default\": \"seen\",\n"
    "                 \"description\": \"Put before the event's type and source in the output\"}\n"
    "    },\n"
    "    \"additionalProperties\": false\n"
    "  }\n"
    "}\n";

static const char tmpl_source_c[] =
    "/*\n"
    " * @ID@ - an evhost event source, made by `evhost new source @ID@`.\n"
    " *\n"
    " * It emits a \"heartbeat\" event when it starts and then every interval_ms\n"
    " * milliseconds, until the host stops it.  Replace run() with what your source\n"
    " * watches (a socket, a directory, an API) and plugin.json's eventTypes with\n"
    " * what it reports.\n"
    " *\n"
    " * evhost/evhost.h is the whole contract: every function of `api`, who frees\n"
    " * what, and on which thread each callback runs.  The host checks each event\n"
    " * against the schema plugin.json declares for its type, and stamps its source\n"
    " * (\"@ID@\") itself.\n"
    " */\n"
    "#include <evhost/evhost.h>\n"
    "\n"
    "/* One instance's state: init allocates it, fini frees it. */\n"
    "typedef struct @CID@_state {\n"
    "    const evh_host_api *api;\n"
    "    evh_host *host;\n"
    "    int64_t interval_ms;\n"
    "    const char *message; /* borrowed from the host's config copy until fini */\n"
    "    long long count;\n"
    "} @CID@_state;\n"
    "\n"
    "/*\n"
    " * init: on the host's main thread, once, before run.  The config was checked\n"
    " * against plugin.json's configSchema and its defaults filled in; checks that\n"
    " * span fields are yours.  Store the state in *ctx and return EVH_OK, or\n"
    " * return a negative EVH_E_* code with *errmsg from api->mprintf or\n"
    " * api->strdup (the host frees it): then nothing else of the plugin is called.\n"
    " */\n"
    "static int32_t @CID@_init(const evh_host_api *api, evh_host *host, void **ctx,\n"
    "                          char **errmsg)\n"
    "{\n"
    "    (void)errmsg;\n"
    "    @CID@_state *s = api->alloc(sizeof *s);\n"
    "    if (!s)\n"
    "        return EVH_E_NOMEM;\n"
    "    s->api = api;\n"
    "    s->host = host;\n"
    "    s->interval_ms = api->config_int(host, \"interval_ms\", 5000);\n"
    "    s->message = api->config_string(host, \"message\", \"hello\");\n"
    "    s->count = 0;\n"
    "    *ctx = s;\n"
    "    return EVH_OK;\n"
    "}\n"
    "\n"
    "/*\n"
    " * run: on a thread of its own.  Emit events until the host stops: api->wait\n"
    " * sleeps, and returns EVH_E_STOPPING at once when the host is stopping.  emit\n"
    " * is thread-safe and copies everything before it returns.\n"
    " */\n"
    "static int32_t @CID@_run(void *ctx)\n"
    "{\n"
    "    @CID@_state *s = ctx;\n"
    "    const evh_host_api *api = s->api;\n"
    "    do {\n"
    "        char *message = api->json_quote(s->message); /* JSON-escaped, from alloc */\n"
    "        char *data = message ? api->mprintf(\"{\\\"count\\\":%lld,\\\"message\\\":%s}\", ++s->count,\n"
    "                                            message)\n"
    "                             : NULL;\n"
    "        api->free(message);\n"
    "        if (!data)\n"
    "            return EVH_E_NOMEM;\n"
    "        int32_t rc = api->emit(s->host, \"heartbeat\", data, EVH_NUL_TERMINATED, NULL);\n"
    "        api->free(data);\n"
    "        if (rc == EVH_E_STOPPING)\n"
    "            break;\n"
    "        /* EVH_E_QUEUE_FULL is backpressure (skip or retry later);\n"
    "         * EVH_E_SCHEMA means the data breaks plugin.json (the log says where). */\n"
    "        if (rc != EVH_OK)\n"
    "            api->log(s->host, EVH_LOG_WARN, \"heartbeat %lld not accepted: %s (%s)\", s->count,\n"
    "                     evh_status_message(rc), evh_status_name(rc));\n"
    "    } while (api->wait(s->host, (uint64_t)s->interval_ms) == EVH_OK);\n"
    "    return EVH_OK;\n"
    "}\n"
    "\n"
    "/*\n"
    " * stop: optional (NULL is fine).  Called from another thread when the host\n"
    " * wants run() to return.  Only a run() that blocks in calls of its own\n"
    " * (read, poll, accept) needs it, to wake them up (write to a pipe run polls,\n"
    " * say).  This run() sleeps in api->wait, which the host wakes itself.\n"
    " */\n"
    "static void @CID@_stop(void *ctx)\n"
    "{\n"
    "    (void)ctx;\n"
    "}\n"
    "\n"
    "/* fini: on the host's main thread, after run() returned (or when it never\n"
    " * started).  Free everything init and run allocated. */\n"
    "static void @CID@_fini(void *ctx)\n"
    "{\n"
    "    @CID@_state *s = ctx;\n"
    "    s->api->free(s);\n"
    "}\n"
    "\n"
    "/*\n"
    " * http: optional, SDK ABI 1.1.  Receives the daemon's HTTP requests for the\n"
    " * path in plugin.json's \"webhookEndpoint\" (e.g. \"/api/webhooks/@ID@\"), on\n"
    " * the HTTP server's threads, several at once.  The host does NOT check API\n"
    " * keys for them: verify the sender (an HMAC over req->body with a secret from\n"
    " * your config) and answer 401 otherwise.  To take webhooks: add\n"
    " * \"webhookEndpoint\" to plugin.json, set its \"abi\" to \"1.1\", and set .http in\n"
    " * the table below.\n"
    " */\n"
    "static int32_t @CID@_http(void *ctx, const evh_http_request *req, evh_http_response *res)\n"
    "    __attribute__((unused));\n"
    "static int32_t @CID@_http(void *ctx, const evh_http_request *req, evh_http_response *res)\n"
    "{\n"
    "    (void)ctx;\n"
    "    (void)req;\n"
    "    res->status = 501; /* to do: authenticate, then api->emit the body */\n"
    "    return EVH_OK;\n"
    "}\n"
    "\n"
    "/* Initialize tables by name: later SDK minors append fields. */\n"
    "static const evh_source @CID@_source = {\n"
    "    .struct_size = sizeof(evh_source),\n"
    "    .init = @CID@_init,\n"
    "    .run = @CID@_run,\n"
    "    .stop = @CID@_stop,\n"
    "    .fini = @CID@_fini,\n"
    "    /* .http = @CID@_http, (needs \"abi\": \"1.1\" and \"webhookEndpoint\") */\n"
    "};\n"
    "\n"
    "/* The one symbol the library exports; the id must equal plugin.json's \"id\". */\n"
    "EVH_DECLARE_SOURCE(\"@ID@\", &@CID@_source)\n";

static const char tmpl_step_c[] =
    "/*\n"
    " * @ID@ - an evhost workflow step, made by `evhost new step @ID@`.\n"
    " *\n"
    " * A workflow runs it as one of its steps:\n"
    " *\n"
    " *     steps:\n"
    " *       - id: stamp\n"
    " *         uses: @ID@\n"
    " *         with: {prefix: \"seen\"}\n"
    " *\n"
    " * and each run outputs {\"text\": \"<prefix>: <event type> from <source>\"},\n"
    " * which later steps read as {{ steps.stamp.output.text }}.  Replace run()\n"
    " * with your step's work and plugin.json's configSchema with its settings.\n"
    " *\n"
    " * evhost/evhost.h is the whole contract: every function of `api`, who frees\n"
    " * what, and on which thread each callback runs.\n"
    " */\n"
    "#include <evhost/evhost.h>\n"
    "#include <string.h>\n"
    "\n"
    "/* One step instance's state: init allocates it, fini frees it. */\n"
    "typedef struct @CID@_state {\n"
    "    const evh_host_api *api;\n"
    "    evh_host *host;\n"
    "} @CID@_state;\n"
    "\n"
    "/*\n"
    " * init: once per instance (a step of a workflow, per worker thread), on the\n"
    " * thread that will run it, before its first run.  api->config_json is the\n"
    " * step's `with:` block, checked against configSchema, with its templates\n"
    " * ({{ event.data.x }}) NOT resolved yet: read per-run values in run().\n"
    " * Return EVH_OK with the state in *ctx, or a negative EVH_E_* code with\n"
    " * *errmsg from api->mprintf or api->strdup (the host frees it): that run of\n"
    " * the step fails.\n"
    " */\n"
    "static int32_t @CID@_init(const evh_host_api *api, evh_host *host, void **ctx,\n"
    "                          char **errmsg)\n"
    "{\n"
    "    (void)errmsg;\n"
    "    @CID@_state *s = api->alloc(sizeof *s);\n"
    "    if (!s)\n"
    "        return EVH_E_NOMEM;\n"
    "    s->api = api;\n"
    "    s->host = host;\n"
    "    *ctx = s;\n"
    "    return EVH_OK;\n"
    "}\n"
    "\n"
    "/*\n"
    " * run: one execution of the step.  Calls on one instance never overlap;\n"
    " * different instances run in parallel, so state shared between them\n"
    " * (statics) needs a lock.  Everything in `in` is borrowed for the call:\n"
    " * in->event_json is the triggering event, in->steps_json the earlier steps'\n"
    " * outputs, in->config_json this run's `with:` block, templates resolved.\n"
    " * Success: out->output_json = a JSON object from api->alloc (or NULL for\n"
    " * {}), return EVH_OK.  Failure: out->error_message from api->alloc and a\n"
    " * negative code; the workflow's retry settings decide what follows.  The\n"
    " * host frees both.\n"
    " */\n"
    "static int32_t @CID@_run(void *ctx, const evh_step_input *in, evh_step_output *out)\n"
    "{\n"
    "    @CID@_state *s = ctx;\n"
    "    const evh_host_api *api = s->api;\n"
    "    char *prefix = api->json_get_string(in->config_json, in->config_len, \"prefix\");\n"
    "    char *type = api->json_get_string(in->event_json, in->event_len, \"event_type\");\n"
    "    char *source = api->json_get_string(in->event_json, in->event_len, \"source\");\n"
    "    char *text = api->mprintf(\"%s: %s from %s\", prefix ? prefix : \"seen\", type ? type : \"?\",\n"
    "                              source ? source : \"?\");\n"
    "    char *quoted = text ? api->json_quote(text) : NULL;\n"
    "    out->output_json = quoted ? api->mprintf(\"{\\\"text\\\":%s}\", quoted) : NULL;\n"
    "    size_t len = text ? strlen(text) : 0;\n"
    "    api->metric(s->host, \"text_bytes\", (double)len); /* shown with the step run */\n"
    "    api->free(quoted);\n"
    "    api->free(text);\n"
    "    api->free(source);\n"
    "    api->free(type);\n"
    "    api->free(prefix);\n"
    "    if (!out->output_json) {\n"
    "        out->error_message = api->strdup(\"out of memory\");\n"
    "        return EVH_E_NOMEM;\n"
    "    }\n"
    "    return EVH_OK;\n"
    "}\n"
    "\n"
    "/* fini: on the worker thread or, at shutdown, the host's main thread; never\n"
    " * while a run of the instance is in flight.  Free everything. */\n"
    "static void @CID@_fini(void *ctx)\n"
    "{\n"
    "    @CID@_state *s = ctx;\n"
    "    s->api->free(s);\n"
    "}\n"
    "\n"
    "/* Initialize tables by name: later SDK minors append fields.  Optional:\n"
    " * .validate (SDK 1.2) checks a step's config when its workflow loads, for\n"
    " * what configSchema cannot say (docs/plugin-authors.md). */\n"
    "static const evh_step @CID@_step = {\n"
    "    .struct_size = sizeof(evh_step),\n"
    "    .init = @CID@_init,\n"
    "    .run = @CID@_run,\n"
    "    .fini = @CID@_fini,\n"
    "};\n"
    "\n"
    "/* The one symbol the library exports; the id must equal plugin.json's \"id\". */\n"
    "EVH_DECLARE_STEP(\"@ID@\", &@CID@_step)\n";

static const char tmpl_cmake_lists[] =
    "# Builds @ID@ against an installed evhost SDK:\n"
    "#   cmake -S . -B build && cmake --build build\n"
    "# (add -DCMAKE_PREFIX_PATH=<evhost's prefix> when evhost is not installed in\n"
    "# a standard place).  The plugin folder appears as build/plugins/@ID@/: load\n"
    "# it with `evhost run --plugin-dir build/plugins`, or put it in a plugin\n"
    "# directory with `cmake --install build --prefix <that directory>`.\n"
    "cmake_minimum_required(VERSION 3.18)\n"
    "project(@ID@ LANGUAGES C)\n"
    "\n"
    "find_package(evhost-sdk 1.0 REQUIRED)\n"
    "evh_add_plugin(@ID@ KIND @KIND@ SOURCES @CID@.c)\n"
    "set_target_properties(@ID@ PROPERTIES C_STANDARD 99 C_EXTENSIONS OFF)\n"
    "target_compile_options(@ID@ PRIVATE -Wall -Wextra)\n";

static const char tmpl_readme[] =
    "# @ID@\n"
    "\n"
    "An evhost @KIND_TEXT@, made by `evhost new @KIND@ @ID@`:\n"
    "\n"
    "| file | what |\n"
    "|---|---|\n"
    "| `plugin.json` | the manifest: id, version, the SDK ABI it needs, @SCHEMA_TEXT@ |\n"
    "| `@CID@.c` | every callback, stubbed and commented |\n"
    "| `CMakeLists.txt` | the same build with CMake and the installed SDK package |\n"
    "| `check.sh` | builds, validates and runs it in a real evhost |\n"
    "\n"
    "## Build\n"
    "\n"
    "With nothing but a C compiler and the SDK header (when evhost is not\n"
    "installed, replace the `pkg-config` part with `-I /path/to/evhost/sdk/include`):\n"
    "\n"
    "    cc -std=c99 -Wall -Wextra -shared -fPIC -fvisibility=hidden -Wl,--no-undefined $(pkg-config --cflags evhost-sdk) -o @ID@.so @CID@.c\n"
    "\n"
    "or with CMake (`find_package(evhost-sdk)`): `cmake -S . -B build && cmake --build build`\n"
    "makes the plugin folder `build/plugins/@ID@/`.\n"
    "\n"
    "evhost refuses plugin files that others may change: with a umask of 002 the\n"
    "compiler makes `@ID@.so` group-writable, so run `chmod go-w . @ID@.so`.\n"
    "\n"
    "## Check and run\n"
    "\n"
    "    evhost plugins validate .    # manifest, ABI, exported symbols, libraries, descriptor\n"
    "    ./check.sh                   # all of it, end to end\n"
    "\n"
    "@USE_TEXT@\n"
    "evhost's guide, docs/plugin-authors.md, explains threads, ownership, ABI\n"
    "versions and the exact error evhost gives for each common mistake.\n";

static const char tmpl_source_use[] =
    "To run it, give evhost the directory that holds this folder, and look at what\n"
    "it stored:\n"
    "\n"
    "    evhost run --plugin-dir \"$(dirname \"$PWD\")\"\n"
    "    evhost events list --source @ID@\n"
    "\n"
    "A trigger (`source: @ID@`, `event_type: heartbeat`) runs a workflow for each\n"
    "event.\n";

static const char tmpl_step_use[] =
    "To use it, give evhost the directory that holds this folder\n"
    "(`evhost run --plugin-dir \"$(dirname \"$PWD\")\"`) and name it in a workflow:\n"
    "\n"
    "    steps:\n"
    "      - id: stamp\n"
    "        uses: @ID@\n"
    "        with: {prefix: \"seen\"}\n"
    "\n"
    "`evhost executions show <id>` shows each run's output.\n";

static const char tmpl_source_check[] =
    "#!/bin/sh\n"
    "# check.sh - build @ID@, validate it, and run it in a real evhost until one of\n"
    "# its events is stored.  Needs `evhost` on PATH (or EVHOST=/path/to/evhost) and\n"
    "# the SDK: `pkg-config evhost-sdk`, or EVH_SDK_INCLUDE=/path/to/sdk/include.\n"
    "set -eu\n"
    "cd \"$(dirname \"$0\")\"\n"
    "evhost=${EVHOST:-evhost}\n"
    "if [ -n \"${EVH_SDK_INCLUDE:-}\" ]; then sdk=\"-I$EVH_SDK_INCLUDE\"; else sdk=$(pkg-config --cflags evhost-sdk); fi\n"
    "${CC:-cc} -std=c99 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden -Wl,--no-undefined \\\n"
    "    $sdk -o @ID@.so @CID@.c\n"
    "chmod go-w . @ID@.so plugin.json   # evhost refuses files others could change\n"
    "\"$evhost\" plugins validate .\n"
    "\n"
    "tmp=$(mktemp -d)\n"
    "pid=\n"
    "trap '[ -z \"$pid\" ] || kill \"$pid\" 2>/dev/null; rm -rf \"$tmp\"' EXIT\n"
    "mkdir \"$tmp/plugins\" \"$tmp/workflows\"\n"
    "ln -s \"$PWD\" \"$tmp/plugins/@ID@\"\n"
    "echo \"triggers: []\" > \"$tmp/triggers.yaml\"\n"
    "cat > \"$tmp/host.yaml\" <<EOF\n"
    "plugins: {builtin: false, config: {@ID@: {interval_ms: 200}}}\n"
    "workflows: {dirs: [\"$tmp/workflows\"]}\n"
    "triggers: {files: [\"$tmp/triggers.yaml\"]}\n"
    "storage: {path: \"$tmp/evhost.db\"}\n"
    "data_dir: \"$tmp/data\"\n"
    "EOF\n"
    "\"$evhost\" run --config \"$tmp/host.yaml\" --plugin-dir \"$tmp/plugins\" --listen 127.0.0.1:0 \\\n"
    "    > \"$tmp/log\" 2>&1 &\n"
    "pid=$!\n"
    "for _ in $(seq 50); do\n"
    "    # read the database only once evhost made it: it serves its API after that\n"
    "    if grep -q \"API on http\" \"$tmp/log\" &&\n"
    "        \"$evhost\" events list --db \"$tmp/evhost.db\" --source @ID@ 2>/dev/null | grep -q heartbeat; then\n"
    "        kill -TERM \"$pid\"\n"
    "        if wait \"$pid\"; then pid=; echo \"ok: @ID@ builds, loads, and its events are stored\"; exit 0; fi\n"
    "        pid=\n"
    "        break\n"
    "    fi\n"
    "    sleep 0.2\n"
    "done\n"
    "echo \"check.sh: no heartbeat of @ID@ stored within 10 s, or evhost did not stop cleanly; its log:\" >&2\n"
    "cat \"$tmp/log\" >&2\n"
    "exit 1\n";

static const char tmpl_step_check[] =
    "#!/bin/sh\n"
    "# check.sh - build @ID@, validate it, and run it in a real evhost: the\n"
    "# built-in timer source triggers a workflow whose one step is @ID@, until one\n"
    "# execution succeeded.  Needs `evhost` on PATH (or EVHOST=/path/to/evhost) and\n"
    "# the SDK: `pkg-config evhost-sdk`, or EVH_SDK_INCLUDE=/path/to/sdk/include.\n"
    "set -eu\n"
    "cd \"$(dirname \"$0\")\"\n"
    "evhost=${EVHOST:-evhost}\n"
    "if [ -n \"${EVH_SDK_INCLUDE:-}\" ]; then sdk=\"-I$EVH_SDK_INCLUDE\"; else sdk=$(pkg-config --cflags evhost-sdk); fi\n"
    "${CC:-cc} -std=c99 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden -Wl,--no-undefined \\\n"
    "    $sdk -o @ID@.so @CID@.c\n"
    "chmod go-w . @ID@.so plugin.json   # evhost refuses files others could change\n"
    "\"$evhost\" plugins validate .\n"
    "\n"
    "tmp=$(mktemp -d)\n"
    "pid=\n"
    "trap '[ -z \"$pid\" ] || kill \"$pid\" 2>/dev/null; rm -rf \"$tmp\"' EXIT\n"
    "mkdir \"$tmp/plugins\" \"$tmp/workflows\"\n"
    "ln -s \"$PWD\" \"$tmp/plugins/@ID@\"\n"
    "cat > \"$tmp/workflows/check.yaml\" <<EOF\n"
    "id: check-@ID@\n"
    "name: check @ID@\n"
    "steps:\n"
    "  - id: probe\n"
    "    uses: @ID@\n"
    "    with: {prefix: \"checked\"}\n"
    "EOF\n"
    "cat > \"$tmp/triggers.yaml\" <<EOF\n"
    "triggers:\n"
    "  - {id: check-@ID@, name: check @ID@, source: timer, event_type: timer_fired, workflow: check-@ID@}\n"
    "EOF\n"
    "cat > \"$tmp/host.yaml\" <<EOF\n"
    "plugins: {builtin: true, config: {timer: {interval_ms: 200}}}\n"
    "workflows: {dirs: [\"$tmp/workflows\"]}\n"
    "triggers: {files: [\"$tmp/triggers.yaml\"]}\n"
    "storage: {path: \"$tmp/evhost.db\"}\n"
    "data_dir: \"$tmp/data\"\n"
    "EOF\n"
    "\"$evhost\" run --config \"$tmp/host.yaml\" --plugin-dir \"$tmp/plugins\" --listen 127.0.0.1:0 \\\n"
    "    > \"$tmp/log\" 2>&1 &\n"
    "pid=$!\n"
    "for _ in $(seq 50); do\n"
    "    # read the database only once evhost made it: it serves its API after that\n"
    "    if grep -q \"API on http\" \"$tmp/log\" &&\n"
    "        \"$evhost\" executions list --db \"$tmp/evhost.db\" --workflow check-@ID@ --status succeeded \\\n"
    "        2>/dev/null | grep -q check-@ID@; then\n"
    "        kill -TERM \"$pid\"\n"
    "        if wait \"$pid\"; then pid=; echo \"ok: @ID@ builds, loads, and ran in a workflow\"; exit 0; fi\n"
    "        pid=\n"
    "        break\n"
    "    fi\n"
    "    sleep 0.2\n"
    "done\n"
    "echo \"check.sh: no succeeded run of @ID@ within 10 s, or evhost did not stop cleanly; its log:\" >&2\n"
    "cat \"$tmp/log\" >&2\n"
    "exit 1\n";
/* clang-format on */

typedef struct kind_templates {
    const char *kind;      /* "source" or "step": evh_add_plugin's KIND */
    const char *kind_text; /* for people */
    const char *schema_text;
    const char *manifest;
    const char *code;
    const char *use;
    const char *check;
} kind_templates;

static const kind_templates kinds[] = {
    {"source", "event source", "its event types with their data schema and its configSchema",
     tmpl_source_manifest, tmpl_source_c, tmpl_source_use, tmpl_source_check},
    {"step", "workflow step", "its configSchema (the `with:` block of a workflow step)",
     tmpl_step_manifest, tmpl_step_c, tmpl_step_use, tmpl_step_check},
};

typedef struct vars {
    const char *id, *cid, *title;
    const kind_templates *k;
} vars;

/* The value of placeholder name (between the @s), or NULL. */
static const char *var(const vars *v, const char *name, size_t len)
{
    const struct {
        const char *name, *value;
    } table[] = {{"ID", v->id},
                 {"CID", v->cid},
                 {"TITLE", v->title},
                 {"KIND", v->k->kind},
                 {"KIND_TEXT", v->k->kind_text},
                 {"SCHEMA_TEXT", v->k->schema_text},
                 {"USE_TEXT", v->k->use}};
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (strlen(table[i].name) == len && !strncmp(name, table[i].name, len))
            return table[i].value;
    return NULL;
}

/* text with every @NAME@ replaced (recursively: USE_TEXT holds @ID@);
 * malloc'd, NULL when out of memory. */
static char *expand(const char *text, const vars *v, int depth)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f)
        return NULL;
    for (const char *p = text; *p;) {
        const char *end = *p == '@' ? strchr(p + 1, '@') : NULL;
        const char *value = end ? var(v, p + 1, (size_t)(end - p - 1)) : NULL;
        if (!value) {
            fputc(*p++, f);
            continue;
        }
        char *inner = depth < 2 ? expand(value, v, depth + 1) : NULL;
        fputs(inner ? inner : value, f);
        free(inner);
        p = end + 1;
    }
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* "my-timer" -> "My Timer". */
static char *title_of(const char *id)
{
    char *t = strdup(id);
    for (char *p = t; p && *p; p++) {
        if (*p == '-')
            *p = ' ';
        if (p == t || p[-1] == ' ')
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    }
    return t;
}

static int write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    while (len) {
        ssize_t n = write(fd, text, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return -1;
        }
        text += n;
        len -= (size_t)n;
    }
    return close(fd);
}

typedef struct out_file {
    const char *name; /* template of the file name */
    const char *text; /* template of the content */
    mode_t mode;
} out_file;

/* Write the folder's files; on failure remove what was written (and the
 * folder) and return -1 with errno set. */
static int write_folder(const char *folder, const vars *v, char **written, size_t *count)
{
    char *code_name = expand("@CID@.c", v, 0);
    const out_file files[] = {
        {"plugin.json", v->k->manifest, 0644},
        {code_name, v->k->code, 0644},
        {"CMakeLists.txt", tmpl_cmake_lists, 0644},
        {"README.md", tmpl_readme, 0644},
        {"check.sh", v->k->check, 0755},
    };
    int rc = code_name ? 0 : -1;
    *count = 0;
    for (size_t i = 0; rc == 0 && i < sizeof files / sizeof *files; i++) {
        char *path = NULL, *text = expand(files[i].text, v, 0);
        if (!text || asprintf(&path, "%s/%s", folder, files[i].name) < 0) {
            free(text);
            errno = ENOMEM;
            rc = -1;
            break;
        }
        rc = write_file(path, text, files[i].mode);
        free(text);
        if (rc == 0)
            written[(*count)++] = path;
        else
            free(path);
    }
    free(code_name);
    if (rc != 0) {
        int err = errno;
        for (size_t i = 0; i < *count; i++) {
            unlink(written[i]);
            free(written[i]);
        }
        *count = 0;
        rmdir(folder);
        errno = err;
    }
    return rc;
}

/* mkdir -p DIR (mode 0755): `--dir DIR` names where the folder goes, and a
 * DIR that does not exist yet is part of the request, not a mistake.  Each
 * prefix of path is made in turn; *first_made is the length of the first
 * one this call created (0: none), for remove_made.  On -1 path is cut at
 * the prefix that could not be made, errno says why. */
static int make_dirs(char *path, size_t *first_made)
{
    *first_made = 0;
    if (!*path)
        return 0; /* nothing to make */
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0755) == 0) {
            if (!*first_made)
                *first_made = (size_t)(p - path);
        } else if (errno != EEXIST) {
            return -1;
        }
        *p = c;
        if (!c)
            return 0;
    }
}

/* Remove the directories make_dirs created (rmdir: only while empty). */
static void remove_made(const char *dir, size_t first_made)
{
    char *p = first_made ? strdup(dir) : NULL;
    for (size_t i = p ? strlen(p) : 0; p && i >= first_made; i--) {
        if (p[i] == '/' || p[i] == '\0') {
            p[i] = '\0';
            rmdir(p);
        }
    }
    free(p);
}

static int usage(void)
{
    fprintf(stderr, "usage: evhost new source|step NAME [--dir DIR]\n"
                    "  creates DIR/NAME (DIR defaults to the current directory, and is created\n"
                    "  if missing): plugin.json, the C source, CMakeLists.txt, README.md and\n"
                    "  check.sh\n");
    return 2;
}

/* Plugin ids are kebab-case (manifest.c); the scaffold also derives C
 * names from the id, so it must start with a letter. */
static int check_name(const char *name)
{
    if (is_kebab_id(name) && name[0] >= 'a' && name[0] <= 'z')
        return 0;
    fprintf(stderr,
            "evhost new: '%s' is not a valid plugin id: use kebab-case, lowercase "
            "letters, digits and single hyphens, starting with a letter (e.g. "
            "\"my-timer\")\n",
            name);
    return -1;
}

int cli_new(int argc, char **argv)
{
    const char *positional[2] = {NULL, NULL}, *dir = ".";
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (argv[i][0] == '-' || npos == 2)
            return usage();
        else
            positional[npos++] = argv[i];
    }
    if (npos != 2)
        return usage();
    const kind_templates *k = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strcmp(positional[0], kinds[i].kind))
            k = &kinds[i];
    if (!k) {
        fprintf(stderr, "evhost new: '%s' is not a kind of plugin: use source or step\n",
                positional[0]);
        return 2;
    }
    const char *id = positional[1];
    if (check_name(id))
        return 2;

    int rc = 1;
    char *folder = NULL, *cid = strdup(id), *title = title_of(id), *parents = strdup(dir);
    char *written[8];
    size_t count = 0, first_made = 0;
    for (char *p = cid; p && *p; p++)
        *p = *p == '-' ? '_' : *p;
    if (!cid || !title || !parents || asprintf(&folder, "%s/%s", dir, id) < 0) {
        fprintf(stderr, "evhost new: out of memory\n");
        folder = NULL;
        goto out;
    }
    if (make_dirs(parents, &first_made) != 0) {
        fprintf(stderr, "evhost new: cannot create '%s' (for --dir %s): %s\n", parents, dir,
                strerror(errno));
        goto undo_dirs;
    }
    if (mkdir(folder, 0755) != 0) {
        fprintf(stderr, "evhost new: cannot create '%s': %s%s\n", folder, strerror(errno),
                errno == EEXIST ? " (choose another NAME or --dir; nothing is overwritten)" : "");
        goto undo_dirs;
    }
    vars v = {.id = id, .cid = cid, .title = title, .k = k};
    if (write_folder(folder, &v, written, &count) != 0) {
        fprintf(stderr, "evhost new: cannot write into '%s': %s (nothing was left behind)\n",
                folder, strerror(errno));
        goto undo_dirs;
    }
    printf("created %s %s/ with:\n", k->kind_text, folder);
    for (size_t i = 0; i < count; i++)
        printf("  %s\n", written[i]);
    printf("next: build, validate and run it with\n  %s/check.sh\n"
           "(it needs evhost on PATH and `pkg-config evhost-sdk`, or EVH_SDK_INCLUDE=<evhost>/"
           "sdk/include; see %s/README.md)\n",
           folder, folder);
    rc = 0;
    goto out;
undo_dirs:
    remove_made(dir, first_made);
out:
    for (size_t i = 0; i < count; i++)
        free(written[i]);
    free(parents);
    free(folder);
    free(title);
    free(cid);
    return rc;
}

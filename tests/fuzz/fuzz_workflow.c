/*
 * fuzz_workflow.c - the workflow YAML reader (workflow.c over yamldoc.c,
 * with template.c and schema.c for each step's `with:`).  Input: a workflow
 * file.  The steps it may use are the built-in step plugins, known by their
 * real plugin.json (read once from the source tree; nothing is dlopen'ed),
 * plus one that failed to load.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evhost/evhost.h>

#include "fuzz_common.h"
#include "manifest.h"
#include "registry.h"
#include "workflow.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static registry *steps; /* lives until exit */

static void add_step(const char *id, manifest *m, plugin_state state, const char *error)
{
    plugin *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->id = strdup(id);
    p->kind = EVH_KIND_STEP;
    p->m = m;
    p->state = state;
    p->error = error ? strdup(error) : NULL;
    if (registry_add(steps, p) != EVH_OK)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    steps = registry_new();
    const char *root = EVH_SOURCE_DIR "/workflows/steps";
    DIR *dir = opendir(root);
    if (!steps || !dir) {
        fprintf(stderr, "fuzz_workflow: cannot read %s\n", root);
        abort();
    }
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/plugin.json", root, e->d_name);
        diag d;
        diag_init(&d, path);
        manifest *m = NULL;
        if (manifest_load(path, &m, &d) == EVH_OK)
            add_step(m->id, m, PLUGIN_READY, NULL);
        diag_free(&d);
    }
    closedir(dir);
    add_step("broken", NULL, PLUGIN_FAILED, "broken/plugin.json: version: required");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    diag d;
    diag_init(&d, "fuzz.yaml");
    workflow *w = workflow_parse((const char *)data, size, "fuzz.yaml", steps, NULL, &d);
    fuzz_print_diag(&d);
    if (w) {
        cJSON *j = workflow_to_json(w);
        char *text = cJSON_PrintUnformatted(j);
        free(text);
        cJSON_Delete(j);
    }
    workflow_free(w);
    diag_free(&d);
    return 0;
}

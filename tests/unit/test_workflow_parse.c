/*
 * test_workflow_parse.c - workflow YAML read from text (workflow_parse):
 * inputs the fuzzer (tests/fuzz/fuzz_workflow.c) found crashing, each also
 * in tests/fuzz/corpus/workflow/.
 */
/* cmocka needs these first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <string.h>

#include "diag.h"
#include "registry.h"
#include "workflow.h"

static int has_problem(const diag *d, const char *text)
{
    for (size_t i = 0; i < d->count; i++) {
        if (strstr(d->items[i].reason, text))
            return 1;
    }
    return 0;
}

/* A step that is no mapping has no id; a later step's template naming a
 * step (steps.a) compared that missing id with strcmp(NULL, ...), crashing
 * the daemon at load or SIGHUP.  corpus/workflow/step-not-mapping.yaml */
static void test_step_not_mapping_then_step_template(void **state)
{
    (void)state;
    static const char yaml[] =
        "id: w\n"
        "steps:\n"
        "  - not-a-mapping\n"
        "  - {id: b, uses: log, with: {message: \"{{ steps.a.output.x }}\"}}\n";
    registry *r = registry_new();
    assert_non_null(r);
    diag d;
    diag_init(&d, "w.yaml");
    workflow *w = workflow_parse(yaml, sizeof yaml - 1, "w.yaml", r, NULL, &d);
    assert_null(w);
    assert_true(has_problem(&d, "steps[0]: must be a mapping with id and uses"));
    assert_true(has_problem(&d, "steps.a"));
    diag_free(&d);
    registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_not_mapping_then_step_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

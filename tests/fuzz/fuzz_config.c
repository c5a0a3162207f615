/*
 * fuzz_config.c - the host.yaml reader (config.c over yamldoc.c, with
 * ${NAME} substitution and the notification subscriptions it declares).
 * Input: a host.yaml.  FUZZ_SECRET is set so that substitution succeeds
 * sometimes; printing the settings (with secrets redacted) is exercised too.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("FUZZ_SECRET", "s3cr3t-0123", 1);
    unsetenv("EVH_API_KEYS"); /* the same input gives the same result */
    devnull = fopen("/dev/null", "w");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    diag d;
    diag_init(&d, NULL);
    evh_config *c = NULL;
    config_parse_text((const char *)data, size, "host.yaml", &c, &d);
    fuzz_print_diag(&d);
    if (c && devnull)
        config_print_redacted(c, devnull);
    config_free(c);
    diag_free(&d);
    return 0;
}

/*
 * config_error.h - shared by the built-in steps' validate (SDK 1.2): their
 * config errors read "[config: ]<field>: <reason>", and validate hands the
 * field and the reason back apart.  Header-only, so each plugin stays built
 * against the SDK alone.
 */
#ifndef EVH_STEPS_CONFIG_ERROR_H
#define EVH_STEPS_CONFIG_ERROR_H

#include <string.h>

#include <evhost/evhost.h>

/* msg is borrowed (NULL: *errmsg = NULL); *field (only when msg names one)
 * and *errmsg are from api->alloc. */
static inline void evh_steps_split_field(const evh_host_api *api, const char *msg, char **field,
                                         char **errmsg)
{
    const char *m = msg && !strncmp(msg, "config: ", 8) ? msg + 8 : msg;
    if (!m) {
        *errmsg = NULL;
        return;
    }
    size_t n = strspn(m, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.[]");
    if (n > 0 && !strncmp(m + n, ": ", 2)) {
        *field = api->mprintf("%.*s", (int)n, m);
        m += n + 2;
    }
    *errmsg = api->strdup(m);
}

#endif

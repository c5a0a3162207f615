/* Compiled as strict C99 with -pedantic by the build: the SDK header must
 * be self-contained and C99-compatible, or the build fails here. */
#include <evhost/evhost.h>

int evh_sdk_c99_check_(void);
int evh_sdk_c99_check_(void)
{
    static const evh_source src = {sizeof(evh_source), 0, 0, 0, 0, 0, 0};
    static const evh_step step = {sizeof(evh_step), 0, 0, 0, 0, 0};
    return (int)sizeof(evh_host_api) + (int)sizeof(evh_plugin) +
           (int)sizeof(evh_http_request) + (int)sizeof(evh_http_response) +
           (int)sizeof(evh_http_field) + EVH_SOURCE_HAS(&src, http) +
           EVH_STEP_HAS(&step, validate) + evh_is_template("{{ x }}") +
           (evh_status_name(EVH_E_QUEUE_FULL)[0] == 'E');
}

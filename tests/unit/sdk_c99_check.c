/* Compiled as strict C99 with -pedantic by the build: the SDK header must
 * be self-contained and C99-compatible, or the build fails here. */
#include <evhost/evhost.h>

int evh_sdk_c99_check_(void);
int evh_sdk_c99_check_(void)
{
    return (int)sizeof(evh_host_api) + (int)sizeof(evh_plugin) +
           (evh_status_name(EVH_E_QUEUE_FULL)[0] == 'E');
}

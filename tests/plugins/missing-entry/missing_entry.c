/* missing-entry: a library that exports a function, but not
 * evh_plugin_entry (no EVH_DECLARE_SOURCE / EVH_DECLARE_STEP). */
#include <evhost/evhost.h>

__attribute__((visibility("default"))) int32_t missing_entry_version(void);
__attribute__((visibility("default"))) int32_t missing_entry_version(void)
{
    return EVH_ABI_MAJOR;
}

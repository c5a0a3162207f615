/* step-abi11: a workflow step exactly as one built against SDK 1.1 looks to
 * the host: a descriptor saying 1.1 and a 32-byte step table with no
 * validate field at all.  The host must load it, run it, and never read
 * past the table when a workflow using it loads (under ASan, the redzone
 * after it would report such a read).  Its init refuses a `root` that does
 * not exist: without validate, that is found at the first run only. */
#include <evhost/evhost.h>

#include <sys/stat.h>

/* evh_step as SDK 1.0 and 1.1 declared it. */
typedef struct step_1_1 {
    uint32_t struct_size;
    uint32_t reserved_;
    int32_t (*init)(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg);
    int32_t (*run)(void *ctx, const evh_step_input *in, evh_step_output *out);
    void (*fini)(void *ctx);
} step_1_1;

_Static_assert(sizeof(step_1_1) == 32, "the SDK 1.1 step table is 32 bytes");

static int32_t sa_init(const evh_host_api *api, evh_host *host, void **ctx, char **errmsg)
{
    const char *root = api->config_string(host, "root", "/");
    struct stat st;
    if (stat(root, &st) != 0) {
        *errmsg = api->mprintf("root: '%s' does not exist", root);
        return EVH_E_NOT_FOUND;
    }
    *ctx = (void *)api;
    return EVH_OK;
}

static int32_t sa_run(void *ctx, const evh_step_input *in, evh_step_output *out)
{
    const evh_host_api *api = ctx;
    (void)in;
    out->output_json = api->strdup("{\"abi\":\"1.1\"}");
    return out->output_json ? EVH_OK : EVH_E_NOMEM;
}

static void sa_fini(void *ctx)
{
    (void)ctx;
}

static const step_1_1 sa_step = {sizeof(step_1_1), 0, sa_init, sa_run, sa_fini};

static const evh_plugin sa_desc = {sizeof(evh_plugin),
                                   1,
                                   1, /* built against SDK 1.1 */
                                   EVH_KIND_STEP,
                                   0,
                                   "step-abi11",
                                   NULL,
                                   (const evh_step *)(const void *)&sa_step};

EVH_EXPORT_ const evh_plugin *evh_plugin_entry(void);
EVH_EXPORT_ const evh_plugin *evh_plugin_entry(void)
{
    return &sa_desc;
}

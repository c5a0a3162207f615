/*
 * cli.h - the evhost subcommands; main.c only dispatches to these.
 * Each returns the process exit code.
 */
#ifndef EVH_CLI_H
#define EVH_CLI_H

int cli_plugins_list(int argc, char **argv);
int cli_plugins_validate(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_events_list(int argc, char **argv);
int cli_executions_list(int argc, char **argv);
int cli_executions_show(int argc, char **argv);
/* `evhost new source|step NAME [--dir DIR]`: a plugin folder (cli_new.c). */
int cli_new(int argc, char **argv);
/* `evhost health [--url URL | --config host.yaml] [--timeout S]`: GET
 * /api/health of a running daemon, exit 0 when it answers 200 (cli_health.c). */
int cli_health(int argc, char **argv);

/* The built-in plugin root: <dir of the binary>/plugins when it exists (a
 * build tree), else <dir of the binary>/../lib/evhost/plugins when it
 * exists (an installed tree, wherever it was copied), else the configured
 * <prefix>/lib/evhost/plugins.  Returns a malloc'd path. */
char *cli_default_plugin_root(void);

/* The example workflows and triggers the daemon runs when host.yaml names
 * none: <dir of the binary>/examples in a build tree, else
 * <dir of the binary>/../share/evhost/examples, else the configured
 * <prefix>/share/evhost/examples.  Holds workflows/ and triggers/. */
char *cli_default_examples_root(void);

#endif

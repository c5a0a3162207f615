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

/* The built-in plugin root: <dir of the binary>/plugins when it exists (a
 * build tree), else the installed <prefix>/lib/evhost/plugins.  Returns a
 * malloc'd path. */
char *cli_default_plugin_root(void);

/* The example workflows and triggers the daemon runs when host.yaml names
 * none: <dir of the binary>/examples in a build tree, else the installed
 * <prefix>/share/evhost/examples.  Holds workflows/ and triggers/. */
char *cli_default_examples_root(void);

#endif

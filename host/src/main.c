/*
 * main.c - evhost's entry point: arguments and dispatch, nothing else.
 */
#include <stdio.h>
#include <string.h>

#include <evhost/evhost.h>

#include "cli.h"
#include "plugin_child.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: evhost <command> [options]\n"
            "\n"
            "commands:\n"
            "  run [--config host.yaml] [--plugin-dir DIR]... [--data-dir DIR] [--db FILE]\n"
            "      [--listen HOST:PORT] [--workers N] [--queue-size N] [--log-level L]\n"
            "      [--print-config]\n"
            "                              run the daemon (embedded default settings when\n"
            "                              no --config: built-in plugins, example workflows)\n"
            "  plugins list [DIR...]       list plugins and their load status\n"
            "  plugins validate DIR...     check plugin folders (plugin.json, ABI, .so);\n"
            "                              exit 1 listing every problem\n"
            "  events list [--db FILE] [filters] [--json]\n"
            "                              accepted events, newest first\n"
            "  executions list [--db FILE] [filters] [--json]\n"
            "  executions show ID [--json] one execution with its step runs\n"
            "  new source|step NAME [--dir DIR]\n"
            "                              create a plugin folder DIR/NAME that builds\n"
            "                              and loads as it is (kebab-case NAME)\n"
            "  health [--url URL | --config host.yaml] [--timeout S]\n"
            "                              GET /api/health of a running daemon; exit 0\n"
            "                              when it answers 200 (Docker's HEALTHCHECK)\n"
            "  --version                   host version and SDK ABI\n"
            "  --help                      this text\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    /* hidden: the process of one isolated plugin, started by the daemon */
    if (!strcmp(cmd, "__plugin-child"))
        return plugin_child_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("evhost %s (SDK ABI %d.%d)\n", EVH_VERSION, EVH_ABI_MAJOR, EVH_ABI_MINOR);
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "run"))
        return cli_run(argc - 2, argv + 2);
    if (!strcmp(cmd, "plugins") && argc >= 3) {
        if (!strcmp(argv[2], "list"))
            return cli_plugins_list(argc - 3, argv + 3);
        if (!strcmp(argv[2], "validate"))
            return cli_plugins_validate(argc - 3, argv + 3);
    }
    if (!strcmp(cmd, "new"))
        return cli_new(argc - 2, argv + 2);
    if (!strcmp(cmd, "health"))
        return cli_health(argc - 2, argv + 2);
    if (!strcmp(cmd, "events") && argc >= 3 && !strcmp(argv[2], "list"))
        return cli_events_list(argc - 3, argv + 3);
    if (!strcmp(cmd, "executions") && argc >= 3) {
        if (!strcmp(argv[2], "list"))
            return cli_executions_list(argc - 3, argv + 3);
        if (!strcmp(argv[2], "show"))
            return cli_executions_show(argc - 3, argv + 3);
    }
    fprintf(stderr, "evhost: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}

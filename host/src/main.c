/*
 * main.c - evhost's entry point: arguments and dispatch, nothing else.
 */
#include <stdio.h>
#include <string.h>

#include <evhost/evhost.h>

#include "cli.h"
#include "plugin_child.h"

/* Each command's part of the usage: `evhost --help` prints them all,
 * `evhost COMMAND ... --help` (or -h, or `evhost help COMMAND`) its own. */
typedef struct command_usage {
    const char *name; /* argv[1] */
    const char *text;
} command_usage;

static const command_usage commands[] = {
    {"run", "  run [--config host.yaml] [--plugin-dir DIR]... [--data-dir DIR] [--db FILE]\n"
            "      [--listen HOST:PORT] [--workers N] [--queue-size N] [--log-level L]\n"
            "      [--print-config]\n"
            "                              run the daemon (embedded default settings when\n"
            "                              no --config: built-in plugins, example workflows)\n"},
    {"plugins", "  plugins list [DIR...]       list plugins and their load status\n"
                "  plugins validate DIR...     check plugin folders (plugin.json, ABI, .so);\n"
                "                              exit 1 listing every problem\n"},
    {"events", "  events list [--db FILE | --config host.yaml] [--source S] [--type T]\n"
               "      [--status S] [--since TIME] [--until TIME] [--limit N] [--cursor C]\n"
               "      [--json]\n"
               "                              accepted events, newest first\n"},
    {"executions",
     "  executions list [--db FILE | --config host.yaml] [--workflow W] [--trigger T]\n"
     "      [--status S] [--since TIME] [--until TIME] [--limit N] [--cursor C]\n"
     "      [--json]\n"
     "                              workflow executions, newest first\n"
     "  executions show ID [--db FILE | --config host.yaml] [--json]\n"
     "                              one execution with its step runs\n"},
    {"new", "  new source|step NAME [--dir DIR]\n"
            "                              create a plugin folder DIR/NAME that builds\n"
            "                              and loads as it is (kebab-case NAME; DIR is\n"
            "                              created if missing)\n"},
    {"health", "  health [--url URL | --config host.yaml] [--timeout S]\n"
               "                              GET /api/health of a running daemon; exit 0\n"
               "                              when it answers 200 (Docker's HEALTHCHECK)\n"},
};

static const command_usage *command_named(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    }
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: evhost <command> [options]\n"
               "\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fputs(commands[i].text, f);
    fprintf(f, "  --version                   host version and SDK ABI\n"
               "  --help                      this text\n"
               "  COMMAND --help              the usage of one command\n");
}

/* Whether the arguments after the command ask for help: --help or -h
 * anywhere before a "--" (after which everything is an operand). */
static int wants_help(int argc, char **argv)
{
    for (int i = 2; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    }
    return 0;
}

static int command_help(const command_usage *c)
{
    printf("usage: evhost <command> [options]\n\n%s\n(evhost --help: every command)\n", c->text);
    return 0;
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
        const command_usage *c = argc > 2 ? command_named(argv[2]) : NULL;
        if (c)
            return command_help(c);
        usage(stdout);
        return 0;
    }
    /* before the command parses its arguments: its usage, not an error */
    const command_usage *c = command_named(cmd);
    if (c && wants_help(argc, argv))
        return command_help(c);
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

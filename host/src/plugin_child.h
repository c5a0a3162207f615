/*
 * plugin_child.h - `evhost __plugin-child <id>`: the process one
 * process-isolated plugin runs in (see isolate.h for the host side and
 * isoproto.h for the protocol).
 *
 * The host starts it with fork + exec of its own binary (/proc/self/exe),
 * its end of a socketpair on fd 3, every other fd closed but 0-2, in a
 * process group of its own.  It dlopens the plugin, gives it a host API
 * table with the in-process semantics (emit, log and data_dir go to the host
 * over the socket; wait, stopping, metric, config and JSON helpers are
 * answered locally), and calls the plugin as the host tells it to.  A crash
 * of the plugin is a crash of this process, which the host sees with
 * waitpid.  It exits when the host says FINI or closes the socket.
 *
 * The subcommand is hidden: it is not in `evhost --help` and not meant to be
 * run by hand.
 */
#ifndef EVH_PLUGIN_CHILD_H
#define EVH_PLUGIN_CHILD_H

/* argv: what follows "__plugin-child" (the plugin id, for `ps` only).
 * Never returns. */
int plugin_child_main(int argc, char **argv);

#endif

/* Subcommands for people at a terminal: look at calls, follow events. */
#ifndef CALLHOOK_CLI_H
#define CALLHOOK_CLI_H

/*
 * Each returns the process exit status: 0 on success, 1 when the thing
 * asked for failed (not found, Redis unreachable), 2 for a usage error.
 * argv[0] is the subcommand name.
 */
int cli_status(int argc, char **argv);
int cli_watch(int argc, char **argv);

#endif

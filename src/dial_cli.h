/*
 * `callhook dial`: validates one dial job given on the command line and
 * pushes it onto dial:queue for a running callhook to place.
 */
#ifndef CALLHOOK_DIAL_CLI_H
#define CALLHOOK_DIAL_CLI_H

/* argv[0] is "dial". Returns the process exit status. */
int dial_cli_main(int argc, char **argv);

#endif

#ifndef CALLHOOK_SUPERVISE_H
#define CALLHOOK_SUPERVISE_H

#include "config.h"

/*
 * Runs the --workers supervisor. Returns -1 in a forked worker, with
 * *worker_index set and cfg adjusted for it (the caller then runs the
 * server); in the parent it returns the exit status once every worker has
 * stopped.
 */
int supervise(struct config *cfg, int *worker_index);

#endif

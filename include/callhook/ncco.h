/*
 * Checks of a Nexmo Call Control Object: the JSON array of actions the
 * answer webhook returns and the dialer sends with a call.
 */
#ifndef CALLHOOK_NCCO_H
#define CALLHOOK_NCCO_H

#include <stddef.h>

/*
 * Returns 0 when text is a non-empty JSON array of objects, each with a
 * known "action" and that action's required parameters of the right type.
 * Otherwise returns -1 and writes the first problem, with the index of the
 * action, into err.
 */
int ncco_check(const char *text, size_t len, char *err, size_t errlen);

/* Builds [{"action":"talk","text":TEXT}]; the caller frees the result. */
char *ncco_talk(const char *text);

#endif

/*
 * Fuzzes ncco_check with the input as an NCCO, and ncco_talk with the
 * input as the text to speak: the NCCO built must pass ncco_check and
 * carry the text unchanged.
 */
#include "callhook/ncco.h"

#include "fuzz_target.h"

#include <string.h>

#include <jansson.h>

static void
check_verdict(const uint8_t *data, size_t size)
{
    char err[256];
    json_t *root;

    memset(err, 0, sizeof(err));
    if (ncco_check((const char *)data, size, err, sizeof(err)) != 0) {
        FUZZ_ASSERT(err[0] != '\0');
        return;
    }
    root = json_loadb((const char *)data, size, 0, NULL);
    FUZZ_ASSERT(json_is_array(root));
    FUZZ_ASSERT(json_array_size(root) >= 1);
    json_decref(root);
}

static void
check_talk(const uint8_t *data, size_t size)
{
    char *text, *ncco;
    char err[256];
    json_t *root, *spoken;

    if (memchr(data, '\0', size) != NULL)
        return;
    text = malloc(size + 1);
    FUZZ_ASSERT(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    ncco = ncco_talk(text);
    spoken = json_string(text);
    /* ncco_talk fails exactly where jansson rejects the text, which it
     * does for invalid UTF-8. */
    FUZZ_ASSERT((ncco == NULL) == (spoken == NULL));
    if (ncco != NULL) {
        FUZZ_ASSERT(ncco_check(ncco, strlen(ncco), err, sizeof(err)) == 0);
        root = json_loads(ncco, 0, NULL);
        FUZZ_ASSERT(json_array_size(root) == 1);
        FUZZ_ASSERT(json_equal(
            json_object_get(json_array_get(root, 0), "text"), spoken));
        json_decref(root);
    }
    json_decref(spoken);
    free(ncco);
    free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_verdict(data, size);
    check_talk(data, size);
    return 0;
}

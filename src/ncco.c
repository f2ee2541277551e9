#include "callhook/ncco.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#define NCCO_MAX_ACTIONS 100

/* Actions of the Voice API and the parameter each cannot do without. */
static const struct {
    const char *action;
    const char *required;
    json_type type;
} actions[] = {
    {"talk", "text", JSON_STRING},
    {"stream", "streamUrl", JSON_ARRAY},
    {"connect", "endpoint", JSON_ARRAY},
    {"conversation", "name", JSON_STRING},
    {"notify", "eventUrl", JSON_ARRAY},
    {"input", NULL, JSON_NULL},
    {"record", NULL, JSON_NULL},
    {"wait", NULL, JSON_NULL},
};

static const char *
type_name(json_type type)
{
    switch (type) {
    case JSON_STRING:
        return "a string";
    case JSON_ARRAY:
        return "an array";
    default:
        return "a value";
    }
}

int
ncco_check(const char *text, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root, *item;
    size_t index;
    int rc = -1;

    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "NCCO is not valid JSON: %s (line %d)",
                 jerr.text, jerr.line);
        return -1;
    }
    if (!json_is_array(root) || json_array_size(root) == 0) {
        snprintf(err, errlen, "NCCO must be a non-empty JSON array of actions");
        goto out;
    }
    if (json_array_size(root) > NCCO_MAX_ACTIONS) {
        snprintf(err, errlen, "NCCO has more than %d actions",
                 NCCO_MAX_ACTIONS);
        goto out;
    }

    json_array_foreach(root, index, item)
    {
        const char *name;
        size_t k;

        if (!json_is_object(item)) {
            snprintf(err, errlen, "NCCO action %zu is not a JSON object",
                     index);
            goto out;
        }
        name = json_string_value(json_object_get(item, "action"));
        if (name == NULL) {
            snprintf(err, errlen,
                     "NCCO action %zu has no \"action\" string", index);
            goto out;
        }
        for (k = 0; k < sizeof(actions) / sizeof(actions[0]); k++) {
            if (strcmp(name, actions[k].action) == 0)
                break;
        }
        if (k == sizeof(actions) / sizeof(actions[0])) {
            snprintf(err, errlen,
                     "NCCO action %zu: unknown action \"%.40s\" (expected "
                     "talk, stream, input, record, connect, conversation, "
                     "notify or wait)",
                     index, name);
            goto out;
        }
        if (actions[k].required != NULL) {
            json_t *param = json_object_get(item, actions[k].required);

            if (param == NULL || json_typeof(param) != actions[k].type) {
                snprintf(err, errlen,
                         "NCCO action %zu (%s) needs \"%s\" as %s", index,
                         name, actions[k].required,
                         type_name(actions[k].type));
                goto out;
            }
        }
    }
    rc = 0;

out:
    json_decref(root);
    return rc;
}

char *
ncco_talk(const char *text)
{
    json_t *ncco = json_pack("[{s:s,s:s}]", "action", "talk", "text", text);
    char *out;

    if (ncco == NULL)
        return NULL;
    out = json_dumps(ncco, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ncco);
    return out;
}
